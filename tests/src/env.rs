//! The machine the tests run on: privileges, tools, paths, the cgroup2 mount, and the
//! skip-or-fail policy.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context as _, bail};

/// Environment variable naming the agent binary under test.
pub const AGENT_BIN_ENV: &str = "IMDS_AGENT_BIN";
/// Set (to anything but `false`/`0`) by CI systems; turns every skip into a failure.
pub const CI_ENV: &str = "CI";
/// Prefix of every network namespace and cgroup the harness creates.
pub const NAME_PREFIX: &str = "imds-e2e-";

/// Whether we run under CI, where a test must fail rather than skip.
pub fn in_ci() -> bool {
    std::env::var(CI_ENV).is_ok_and(|v| {
        let v = v.trim();
        !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false")
    })
}

/// Under CI: panic with `why`. Elsewhere: print `skipped: <why>` and let the caller return.
pub fn skip_or_fail(why: impl std::fmt::Display) {
    if in_ci() {
        panic!("{CI_ENV}=true, so this is a failure, not a skip: {why}");
    }
    eprintln!("skipped: {why}");
}

/// Whether the effective user is root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The agent binary: `$IMDS_AGENT_BIN`, else `<workspace>/target/release/imds-agent`.
pub fn agent_bin() -> PathBuf {
    std::env::var_os(AGENT_BIN_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/release/imds-agent"))
}

/// `tests/mock_imds.py`.
pub fn mock_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("mock_imds.py")
}

/// A client script in `tests/clients/`.
pub fn client_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("clients")
        .join(name)
}

/// `name` looked up in `$PATH`, like `which`.
pub fn which(name: impl AsRef<OsStr>) -> Option<PathBuf> {
    let name = name.as_ref();
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `curl` from `$PATH`.
pub fn curl() -> anyhow::Result<PathBuf> {
    which("curl").context("`curl` is not on PATH")
}

/// The real Python interpreter (`sys.executable`), not a pyenv/asdf shim script, so that a
/// client's pid, comm and exe are Python's own from the first exec.
pub fn python3() -> anyhow::Result<PathBuf> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let out = Command::new("python3")
                .args(["-c", "import sys; print(sys.executable)"])
                .output()
                .map_err(|e| format!("running python3: {e}"))?;
            let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if !out.status.success() || path.is_empty() {
                return Err(format!(
                    "python3 could not report sys.executable: {}",
                    out.status
                ));
            }
            Ok(PathBuf::from(path))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// The mount point of the cgroup v2 hierarchy, read from `/proc/self/mounts` (hybrid hosts
/// mount it at `/sys/fs/cgroup/unified`, pure v2 hosts at `/sys/fs/cgroup`).
pub fn cgroup2_root() -> anyhow::Result<PathBuf> {
    let mounts =
        std::fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    parse_cgroup2_root(&mounts).context("no cgroup2 filesystem in /proc/self/mounts")
}

fn parse_cgroup2_root(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_source, target, fstype) = (fields.next()?, fields.next()?, fields.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(unescape_mount_field(target)))
    })
}

/// `/proc/self/mounts` escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(u8::try_from(value).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A name unique to this process and call: `imds-e2e-<pid>-<n>`. Used for both the network
/// namespace and the cgroup of one fixture.
pub fn unique_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{NAME_PREFIX}{}-{n}", std::process::id())
}

/// The pid encoded in a name made by [`unique_name`].
pub fn owner_pid(name: &str) -> Option<i32> {
    name.strip_prefix(NAME_PREFIX)?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// Whether a process with this pid exists.
pub fn pid_alive(pid: i32) -> bool {
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(errno) => errno != nix::errno::Errno::ESRCH,
    }
}

/// Everything the privileged tests need. `Err` carries a reason fit for [`skip_or_fail`].
pub fn preflight() -> anyhow::Result<()> {
    if !is_root() {
        bail!(
            "the end-to-end tests need root (network namespaces, cgroups, eBPF); run `sudo -E cargo xtask test`"
        );
    }
    for tool in ["ip", "curl", "python3"] {
        if which(tool).is_none() {
            bail!("`{tool}` is not on PATH");
        }
    }
    cgroup2_root()?;
    let bin = agent_bin();
    if !is_executable(&bin) {
        bail!(
            "agent binary {} not found; build it with `cargo xtask build` or set {AGENT_BIN_ENV}",
            bin.display()
        );
    }
    Ok(())
}

/// `bytes` random bytes from `/dev/urandom` as lower-case hex (e.g. a container id: 32).
pub fn random_hex(bytes: usize) -> String {
    use std::io::Read as _;
    let mut buf = vec![0u8; bytes];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
    if let Err(e) = read {
        panic!("reading /dev/urandom: {e}");
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Resolve symlinks (`/usr/bin/python3` → `/usr/bin/python3.11`).
pub fn realpath(path: &Path) -> anyhow::Result<PathBuf> {
    std::fs::canonicalize(path).with_context(|| format!("canonicalize {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_on_hybrid_and_unified_hosts() {
        let hybrid = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n\
                      cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
        assert_eq!(
            parse_cgroup2_root(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified = "cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n";
        assert_eq!(
            parse_cgroup2_root(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(parse_cgroup2_root("proc /proc proc rw 0 0\n"), None);
    }

    #[test]
    fn unescapes_octal_mount_fields() {
        assert_eq!(
            unescape_mount_field(r"/mnt/with\040space"),
            "/mnt/with space"
        );
        assert_eq!(unescape_mount_field(r"/plain"), "/plain");
        assert_eq!(unescape_mount_field(r"/trailing\04"), r"/trailing\04");
    }

    #[test]
    fn names_carry_the_owner_pid() {
        let name = unique_name();
        assert!(name.starts_with(NAME_PREFIX));
        assert_eq!(owner_pid(&name), i32::try_from(std::process::id()).ok());
        assert_eq!(owner_pid("something-else"), None);
    }
}
