//! A network namespace holding the IMDS addresses and a mock IMDS (`tests/mock_imds.py`).
//!
//! Nothing leaves the namespace: it has only `lo`, and the IMDS addresses live on it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::child::{Collector, terminate};
use crate::env;

/// IPv4 IMDS endpoint.
pub const IMDS_V4: &str = "169.254.169.254";
/// IPv6 IMDS endpoint (Nitro).
pub const IMDS_V6: &str = "fd00:ec2::254";
/// Line the mock prints on stdout once it listens.
pub const MOCK_READY: &str = "mock-imds ready";
/// How long the mock may take to start.
const MOCK_START_TIMEOUT: Duration = Duration::from_secs(15);
/// Where `ip netns add` pins namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// `--mode` of the mock: the instance's `HttpTokens` setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TokenMode {
    /// Tokenless requests are answered (IMDSv1 allowed).
    #[default]
    Optional,
    /// Tokenless requests get 401.
    Required,
}

/// How to run the mock IMDS, and what else to put in the namespace.
#[derive(Debug, Clone, Default)]
pub struct MockOptions {
    /// `--mode`.
    pub mode: TokenMode,
    /// `--put-response-ttl N`.
    pub put_response_ttl: Option<u8>,
    /// `--ignore-put`.
    pub ignore_put: bool,
    /// Extra listeners (`ADDR:PORT`) besides `0.0.0.0:80` and `[::]:80`.
    pub extra_listen: Vec<String>,
    /// Extra addresses (`ADDR/PREFIX`) on `lo`, e.g. `169.254.169.253/32`.
    pub extra_addrs: Vec<String>,
}

/// Guard for `ip netns add <name>` with the IMDS addresses on `lo` and the mock running in it.
/// Drop stops the mock and deletes the namespace.
pub struct NetNs {
    name: String,
    mock: Option<Mock>,
}

impl NetNs {
    /// Create the namespace `name`, configure it and start the mock IMDS in it.
    pub fn create(name: &str, options: &MockOptions) -> anyhow::Result<Self> {
        ip(&["netns", "add", name])?;
        // From here on, Drop cleans up even if a later step fails.
        let mut netns = Self {
            name: name.to_owned(),
            mock: None,
        };
        netns.configure(options)?;
        netns.mock = Some(Mock::start(name, options)?);
        Ok(netns)
    }

    fn configure(&self, options: &MockOptions) -> anyhow::Result<()> {
        let n = self.name.as_str();
        ip(&["-n", n, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            n,
            "addr",
            "add",
            &format!("{IMDS_V4}/32"),
            "dev",
            "lo",
        ])?;
        ip(&[
            "-n",
            n,
            "-6",
            "addr",
            "add",
            &format!("{IMDS_V6}/128"),
            "dev",
            "lo",
            "nodad",
        ])?;
        for addr in &options.extra_addrs {
            let family = if addr.contains(':') { "-6" } else { "-4" };
            ip(&["-n", n, family, "addr", "add", addr, "dev", "lo"])?;
        }
        Ok(())
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`, the file to `setns(2)` into.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(&self.name)
    }

    /// What the mock logged on stderr so far (method, path, status per request).
    pub fn mock_log(&self) -> String {
        self.mock.as_ref().map(Mock::log).unwrap_or_default()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        drop(self.mock.take());
        if let Err(e) = ip(&["netns", "delete", &self.name]) {
            eprintln!("warning: could not delete netns {}: {e:#}", self.name);
        }
    }
}

/// The mock IMDS (`tests/mock_imds.py`) running in a network namespace. Drop stops it.
pub struct Mock {
    child: Child,
    stderr: Collector,
}

impl Mock {
    /// `ip netns exec <netns> python3 mock_imds.py ...`, waiting for [`MOCK_READY`]. It
    /// serves `0.0.0.0:80` and `[::]:80` (plus `options.extra_listen`), so it answers on
    /// every address the namespace holds.
    pub fn start(netns: &str, options: &MockOptions) -> anyhow::Result<Self> {
        let python = env::python3()?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns])
            .arg(&python)
            .arg(env::mock_script());
        if options.mode == TokenMode::Required {
            cmd.args(["--mode", "required"]);
        }
        if let Some(ttl) = options.put_response_ttl {
            cmd.args(["--put-response-ttl", &ttl.to_string()]);
        }
        if options.ignore_put {
            cmd.arg("--ignore-put");
        }
        if !options.extra_listen.is_empty() {
            cmd.args(["--listen", "0.0.0.0", "--listen", "[::]"]);
            for listen in &options.extra_listen {
                cmd.args(["--listen", listen]);
            }
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning the mock IMDS with `ip netns exec`")?;
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stdout, stderr) = match (child.stdout.take(), child.stderr.take()) {
            (Some(stdout), Some(stderr)) => (stdout, stderr),
            _ => {
                let _ = terminate(&mut child, Duration::from_secs(3));
                bail!("the mock's stdout/stderr were not piped");
            }
        };
        // `ip netns exec` execs the command, so the child is the mock itself; from here on
        // Drop stops it, even if it never gets ready.
        let mock = Self {
            child,
            stderr: Collector::spawn(stderr, |_| {}),
        };
        let stdout = Collector::spawn(stdout, move |line| {
            if line.contains(MOCK_READY) {
                let _ = ready_tx.send(());
            }
        });
        if ready_rx.recv_timeout(MOCK_START_TIMEOUT).is_err() {
            bail!(
                "mock IMDS in netns {netns} not ready within {MOCK_START_TIMEOUT:?}; stdout: {:?}; stderr: {:?}",
                stdout.text(),
                mock.log()
            );
        }
        Ok(mock)
    }

    /// What the mock logged on stderr so far (method, path, status per request).
    pub fn log(&self) -> String {
        self.stderr.text()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = terminate(&mut self.child, Duration::from_secs(3));
    }
}

/// Run `ip ARGS`, failing with its stderr.
pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Delete namespaces left behind by earlier runs that were killed (their owner pid is gone).
pub fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if env::owner_pid(&name).is_some_and(|pid| !env::pid_alive(pid)) {
            let _ = ip(&["netns", "delete", &name]);
        }
    }
}
