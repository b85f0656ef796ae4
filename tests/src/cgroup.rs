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
            // Nested cgroups (a [`NestedCgroup`] that was not dropped first) go first.
            remove_children(&self.path);
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

/// `rmdir` every cgroup below `dir`, innermost first (best effort; a cgroup directory holds
/// only kernel files, which go with it).
fn remove_children(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_children(&entry.path());
            let _ = std::fs::remove_dir(entry.path());
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

/// Guard for a chain of nested cgroups under a [`TestCgroup`], e.g.
/// `kubepods.slice/kubepods-burstable.slice/.../cri-containerd-<id>.scope`, named like a
/// container runtime would. Only the innermost (leaf) cgroup is meant to hold processes
/// (cgroup v2's "no internal processes" rule). Drop kills what runs in the subtree and
/// removes the directories it created, innermost first; drop it before its [`TestCgroup`].
pub struct NestedCgroup {
    /// Every directory created, outermost first.
    created: Vec<PathBuf>,
    leaf: PathBuf,
    relative: String,
}

impl NestedCgroup {
    /// `mkdir -p <parent>/<relative>`; `relative` is `/`-separated and must not escape.
    pub fn create(parent: &TestCgroup, relative: &str) -> anyhow::Result<Self> {
        let mut nested = Self {
            created: Vec::new(),
            leaf: parent.path().to_path_buf(),
            relative: parent.relative().to_owned(),
        };
        for part in relative.split('/').filter(|p| !p.is_empty()) {
            anyhow::ensure!(
                part != ".." && part != ".",
                "bad cgroup path component {part:?} in {relative:?}"
            );
            nested.leaf.push(part);
            nested.relative.push('/');
            nested.relative.push_str(part);
            match std::fs::create_dir(&nested.leaf) {
                Ok(()) => nested.created.push(nested.leaf.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("creating cgroup {}", nested.leaf.display()));
                }
            }
        }
        Ok(nested)
    }

    /// The innermost cgroup's absolute path.
    pub fn path(&self) -> &Path {
        &self.leaf
    }

    /// The innermost cgroup relative to the cgroup2 root, as the agent reports it.
    pub fn relative(&self) -> &str {
        &self.relative
    }
}

impl Drop for NestedCgroup {
    fn drop(&mut self) {
        if let Some(top) = self.created.first() {
            // Kills the whole subtree, including racing forks (5.14+).
            let _ = std::fs::write(top.join("cgroup.kill"), "1");
        }
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        for dir in self.created.iter().rev() {
            loop {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if Instant::now() >= deadline => {
                        eprintln!("warning: could not remove cgroup {}: {e}", dir.display());
                        break;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }
}
