//! Checks made before touching the kernel, so that the common mistakes end in one clear
//! line instead of an errno from deep inside the loader.

use std::path::{Path, PathBuf};

/// Capability bits (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(
        "imds-agent needs root (or CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_SYS_ADMIN) to load its eBPF programs; run it with sudo"
    )]
    NotPrivileged,
    #[error(
        "--cgroup {path}: no such cgroup; give a directory of the cgroup v2 filesystem mounted at {root}, absolute or relative to it"
    )]
    NoSuchCgroup { path: String, root: String },
    #[error(
        "--cgroup {path}: not a cgroup v2 directory (the cgroup v2 filesystem is mounted at {root}); cgroup v1 hierarchies cannot be observed"
    )]
    NotCgroup2 { path: String, root: String },
}

/// Effective capabilities of this process, from /proc/self/status.
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

/// Fails unless this process may load and attach cgroup BPF programs.
pub fn check_privileges() -> Result<(), PreflightError> {
    let caps = effective_caps().unwrap_or(0);
    let has = |c: u32| caps & (1u64 << c) != 0;
    let enough = has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON) && has(CAP_NET_ADMIN));
    if enough {
        Ok(())
    } else {
        Err(PreflightError::NotPrivileged)
    }
}

/// Resolves the `--cgroup` argument to a directory of the cgroup v2 filesystem mounted at
/// `root`. `None` means the root itself (the whole host).
pub fn resolve_cgroup(root: &Path, arg: Option<&Path>) -> Result<PathBuf, PreflightError> {
    let Some(arg) = arg else {
        return Ok(root.to_path_buf());
    };
    let candidates = [
        arg.to_path_buf(),
        root.join(arg.strip_prefix("/").unwrap_or(arg)),
    ];
    let found = candidates
        .iter()
        .find(|p| p.is_dir())
        .ok_or_else(|| PreflightError::NoSuchCgroup {
            path: arg.display().to_string(),
            root: root.display().to_string(),
        })?;
    let is_cgroup2 = nix::sys::statfs::statfs(found)
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false);
    if !is_cgroup2 {
        return Err(PreflightError::NotCgroup2 {
            path: arg.display().to_string(),
            root: root.display().to_string(),
        });
    }
    Ok(found.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_missing_and_non_cgroup_paths() {
        let root = Path::new("/sys/fs/cgroup");
        assert!(matches!(
            resolve_cgroup(root, Some(Path::new("/definitely/not/here"))),
            Err(PreflightError::NoSuchCgroup { .. })
        ));
        // /tmp exists but is not cgroup2.
        assert!(matches!(
            resolve_cgroup(Path::new("/"), Some(Path::new("/tmp"))),
            Err(PreflightError::NotCgroup2 { .. })
        ));
        assert_eq!(
            resolve_cgroup(root, None).ok(),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
    }
}
