//! A child cgroup v2 directly under the cgroup2 root, for the agent to attach to and the
//! clients to run in.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::env;

/// How long Drop waits for the cgroup to empty.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Guard for `<cgroup2 root>/<name>`. Drop kills what is left in it and removes it.
pub struct TestCgroup {
    path: PathBuf,
    relative: String,
}

impl TestCgroup {
    /// `mkdir <cgroup2 root>/<name>`.
    pub fn create(name: &str) -> anyhow::Result<Self> {
        let root = env::cgroup2_root()?;
        let path = root.join(name);
        std::fs::create_dir(&path)
            .with_context(|| format!("creating cgroup {}", path.display()))?;
        Ok(Self {
            path,
            relative: format!("/{name}"),
        })
    }

    /// Absolute path in the cgroup2 mount.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Path relative to the cgroup2 root, as the agent reports it (`/imds-e2e-...`).
    pub fn relative(&self) -> &str {
        &self.relative
    }

    /// `cgroup.procs`; writing a pid (or `0`, "myself") moves a process here.
    pub fn procs_file(&self) -> PathBuf {
        self.path.join("cgroup.procs")
    }

    /// The pids currently in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.procs_file())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    fn kill_all(&self) {
        // cgroup.kill (5.14+) kills the whole subtree atomically, including racing forks.
        if std::fs::write(self.path.join("cgroup.kill"), "1").is_err() {
            for pid in self.pids() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        loop {
            if !self.pids().is_empty() {
                self.kill_all();
            }
            match std::fs::remove_dir(&self.path) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(e) if Instant::now() >= deadline => {
                    eprintln!(
                        "warning: could not remove cgroup {}: {e}",
                        self.path.display()
                    );
                    return;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

/// Remove cgroups left behind by earlier runs that were killed (their owner pid is gone).
pub fn remove_stale() {
    let Ok(root) = env::cgroup2_root() else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(&root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if env::owner_pid(&name).is_some_and(|pid| !env::pid_alive(pid)) {
            drop(TestCgroup {
                path: entry.path(),
                relative: format!("/{name}"),
            });
        }
    }
}
