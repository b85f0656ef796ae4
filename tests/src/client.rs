//! Clients that start life inside the test cgroup and network namespace.
//!
//! The forked child moves itself into the cgroup and joins the namespace *before* exec, so
//! the pid we get back from `spawn` is the very process that talks to IMDS: the pid, comm,
//! exe and argv the agent reports are the client's, with no wrapper (`ip netns exec`,
//! `nsenter`) in between.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context as _;

use crate::cgroup::TestCgroup;
use crate::child::{Collector, wait_timeout};
use crate::netns::NetNs;

/// The file in a cgroup v2 directory that moves a process there.
const PROCS_FILE: &str = "cgroup.procs";
/// A client gets this long before it is killed.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A finished client.
#[derive(Debug)]
pub struct ClientRun {
    /// Its pid (the one the agent must report).
    pub pid: u32,
    /// How it exited.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl ClientRun {
    /// Panic unless the client exited 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "client {} failed ({}): stdout {:?} stderr {:?}",
            self.pid,
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// A `Command` for `argv` that, between fork and exec, joins `cgroup` and `netns`.
pub fn command_in<S: AsRef<OsStr>>(
    netns: &NetNs,
    cgroup: &TestCgroup,
    argv: &[S],
) -> anyhow::Result<(Command, [File; 2])> {
    command_at(&netns.path(), &cgroup.procs_file(), argv)
}

/// Like [`command_in`] with paths: the namespace file to `setns(2)` into (`/run/netns/<name>`)
/// and the `cgroup.procs` file of the cgroup to join (any cgroup, e.g. a nested one).
pub fn command_at<S: AsRef<OsStr>>(
    netns: &Path,
    cgroup_procs: &Path,
    argv: &[S],
) -> anyhow::Result<(Command, [File; 2])> {
    let (program, args) = argv.split_first().context("empty argv")?;
    // Opened here, in the parent: between fork and exec only async-signal-safe calls are
    // allowed (no allocation), so the child just uses the descriptors. Rust opens them
    // O_CLOEXEC, so the client never inherits them.
    let procs = File::options()
        .write(true)
        .open(cgroup_procs)
        .with_context(|| format!("opening {}", cgroup_procs.display()))?;
    let ns = File::open(netns).with_context(|| format!("opening {}", netns.display()))?;
    let (procs_fd, ns_fd) = (procs.as_raw_fd(), ns.as_raw_fd());
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    // SAFETY: the closure runs in the forked child and only calls write(2) and setns(2),
    // both async-signal-safe, on descriptors kept open by the caller until after spawn.
    unsafe {
        cmd.pre_exec(move || {
            // "0" means "the writing process" (cgroup v2 cgroup.procs).
            if libc::write(procs_fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::setns(ns_fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok((cmd, [procs, ns]))
}

/// Spawn `argv` in `cgroup` and `netns` with stdout/stderr piped; the caller owns the child.
pub fn spawn_client<S: AsRef<OsStr>>(
    netns: &NetNs,
    cgroup: &TestCgroup,
    argv: &[S],
) -> anyhow::Result<Child> {
    let (mut cmd, fds) = command_in(netns, cgroup, argv)?;
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning client {:?}", display_argv(argv)))?;
    drop(fds);
    Ok(child)
}

/// Run `argv` to completion in `cgroup` and `netns` (killed after [`CLIENT_TIMEOUT`]).
pub fn run_client<S: AsRef<OsStr>>(
    netns: &NetNs,
    cgroup: &TestCgroup,
    argv: &[S],
) -> anyhow::Result<ClientRun> {
    let (cmd, fds) = command_in(netns, cgroup, argv)?;
    run_command(cmd, fds, argv)
}

/// Run `argv` to completion in the namespace file `netns` and the cgroup directory `cgroup`,
/// with a clean environment: only `PATH` (the test's) and `env`, so that what a client's
/// environment holds is exactly what the test gave it.
pub fn run_client_env<S: AsRef<OsStr>>(
    netns: &Path,
    cgroup: &Path,
    argv: &[S],
    env: &[(&str, &str)],
) -> anyhow::Result<ClientRun> {
    let (mut cmd, fds) = command_at(netns, &cgroup.join(PROCS_FILE), argv)?;
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.envs(env.iter().copied());
    run_command(cmd, fds, argv)
}

/// Spawn `cmd` (made by [`command_in`]/[`command_at`]) with piped output, close the parent's
/// copies of `fds`, and wait for it (killed after [`CLIENT_TIMEOUT`]).
pub fn run_command<S: AsRef<OsStr>>(
    mut cmd: Command,
    fds: [File; 2],
    argv: &[S],
) -> anyhow::Result<ClientRun> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning client {:?}", display_argv(argv)))?;
    drop(fds);
    let pid = child.id();
    let stdout = Collector::spawn(child.stdout.take().context("client stdout")?, |_| {});
    let stderr = Collector::spawn(child.stderr.take().context("client stderr")?, |_| {});
    let status = match wait_timeout(&mut child, CLIENT_TIMEOUT)? {
        Some(status) => status,
        None => {
            let _ = child.kill();
            child.wait()?;
            anyhow::bail!(
                "client {:?} (pid {pid}) did not finish within {CLIENT_TIMEOUT:?}",
                display_argv(argv)
            );
        }
    };
    Ok(ClientRun {
        pid,
        status,
        stdout: stdout.finish(),
        stderr: stderr.finish(),
    })
}

/// `argv` joined with spaces, for messages.
pub fn display_argv<S: AsRef<OsStr>>(argv: &[S]) -> String {
    argv.iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
