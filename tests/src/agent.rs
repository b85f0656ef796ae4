//! The agent under test, as a child process.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::signal::Signal;
use serde_json::Value;

use crate::child::{Collector, signal, terminate, wait_timeout};
use crate::env;

/// What the agent prints on stderr once its programs are attached.
pub const READY_LINE: &str = "imds-agent ready";
/// How long the agent may take to load and attach.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the agent may take to flush and exit after SIGTERM/SIGINT.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default wait for events to show up in the output.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Poll interval for the output file.
const POLL: Duration = Duration::from_millis(50);

/// Where the agent's JSON lines go.
#[derive(Debug, Clone, Default)]
pub enum Output {
    /// `--output <tmpdir>/events.jsonl` (readable while it runs).
    #[default]
    File,
    /// No `--output`: the agent's stdout is inherited (the demo prints to the terminal).
    InheritStdout,
}

/// How to start the agent.
#[derive(Debug, Clone, Default)]
pub struct AgentOptions {
    /// Binary (default [`env::agent_bin`]).
    pub bin: Option<PathBuf>,
    /// Where events go.
    pub output: Output,
    /// Copy the agent's stderr lines to ours as they come (demo).
    pub echo_stderr: bool,
    /// Start the agent in its own process group, so a terminal Ctrl-C reaches only us and
    /// we stop it in order (demo).
    pub own_process_group: bool,
}

/// A running agent. Drop kills it if [`Agent::stop`] was not called.
pub struct Agent {
    child: Option<Child>,
    output_file: Option<PathBuf>,
    stdout: Option<Collector>,
    stderr: Option<Collector>,
    /// The inventory the agent writes (`None` with `--no-db`).
    db: Option<PathBuf>,
    /// Holds the output file; removed on drop.
    _dir: tempfile::TempDir,
}

/// Everything the agent produced, after it exited.
#[derive(Debug)]
pub struct AgentOutput {
    /// Parsed JSON lines of the output file.
    pub events: Vec<Value>,
    /// The output file, verbatim.
    pub raw: String,
    /// The agent's stdout (empty with `--output`).
    pub stdout: String,
    /// The agent's stderr.
    pub stderr: String,
    /// The exit status.
    pub status: ExitStatus,
}

impl AgentOutput {
    /// Everything the agent wrote anywhere: output file, stdout and stderr.
    pub fn all_text(&self) -> String {
        format!("{}\n{}\n{}", self.raw, self.stdout, self.stderr)
    }
}

/// The agent could not get ready: not root, cannot load/attach, crashed, or timed out.
#[derive(Debug)]
pub struct StartError {
    /// What went wrong.
    pub reason: String,
    /// Its stderr up to then.
    pub stderr: String,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the agent did not get ready: {}; its stderr:\n{}",
            self.reason,
            self.stderr.trim_end()
        )
    }
}

impl std::error::Error for StartError {}

impl Agent {
    /// `imds-agent run --cgroup <cgroup> --output <tmpfile>`, waiting for [`READY_LINE`].
    pub fn start(cgroup: &Path) -> Result<Self, StartError> {
        Self::start_with(cgroup, &AgentOptions::default())
    }

    /// Like [`Agent::start`], with options.
    pub fn start_with(cgroup: &Path, options: &AgentOptions) -> Result<Self, StartError> {
        Self::start_with_args(cgroup, options, &[])
    }

    /// Like [`Agent::start_with`], with more `run` flags (e.g. `--kubeconfig F`). Unless they
    /// hold `--db PATH` (an inventory kept across agents) or `--no-db`, the agent gets an
    /// inventory of its own in its temporary directory ([`Agent::db_path`]).
    pub fn start_with_args(
        cgroup: &Path,
        options: &AgentOptions,
        extra_args: &[OsString],
    ) -> Result<Self, StartError> {
        let fail = |reason: String| StartError {
            reason,
            stderr: String::new(),
        };
        let dir = tempfile::Builder::new()
            .prefix(env::NAME_PREFIX)
            .tempdir()
            .map_err(|e| fail(format!("creating a temporary directory: {e}")))?;
        let bin = options.bin.clone().unwrap_or_else(env::agent_bin);
        let mut cmd = Command::new(&bin);
        cmd.arg("run").arg("--cgroup").arg(cgroup);
        let db = db_flag(extra_args).unwrap_or_else(|| {
            // Each agent its own inventory, never the host's /var/lib/imds-agent.
            let path = dir.path().join("inventory.sqlite");
            cmd.arg("--db").arg(&path);
            Some(path)
        });
        cmd.args(extra_args)
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        let output_file = match options.output {
            Output::File => {
                let file = dir.path().join("events.jsonl");
                cmd.arg("--output").arg(&file).stdout(Stdio::piped());
                Some(file)
            }
            Output::InheritStdout => {
                cmd.stdout(Stdio::inherit());
                None
            }
        };
        if options.own_process_group {
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| fail(format!("spawning {}: {e}", bin.display())))?;

        let (ready_tx, ready_rx) = mpsc::channel();
        let echo = options.echo_stderr;
        let stderr = child.stderr.take().map(|pipe| {
            Collector::spawn(pipe, move |line| {
                if echo {
                    eprintln!("{line}");
                }
                if line.contains(READY_LINE) {
                    let _ = ready_tx.send(());
                }
            })
        });
        let stdout = child
            .stdout
            .take()
            .map(|pipe| Collector::spawn(pipe, |_| {}));
        let mut agent = Self {
            child: Some(child),
            output_file,
            stdout,
            stderr,
            db,
            _dir: dir,
        };

        // Ready, or stderr closed (the agent died), or timeout.
        let waited = ready_rx.recv_timeout(READY_TIMEOUT);
        if waited.is_ok() {
            return Ok(agent);
        }
        let reason = match agent
            .child
            .as_mut()
            .map(|c| wait_timeout(c, Duration::from_millis(500)))
        {
            Some(Ok(Some(status))) => {
                format!("it exited with {status} before printing {READY_LINE:?}")
            }
            _ => format!("no {READY_LINE:?} on stderr within {READY_TIMEOUT:?}"),
        };
        if let Some(mut child) = agent.child.take() {
            let _ = terminate(&mut child, Duration::from_secs(2));
        }
        let stderr = agent
            .stderr
            .take()
            .map(Collector::finish)
            .unwrap_or_default();
        Err(StartError { reason, stderr })
    }

    /// The agent's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The inventory (SQLite) this agent writes, `None` with `--no-db`.
    pub fn db_path(&self) -> Option<&Path> {
        self.db.as_deref()
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .as_ref()
            .map(Collector::text)
            .unwrap_or_default()
    }

    /// The output file's complete lines, parsed. A line that is not JSON is a test failure.
    pub fn events(&self) -> Vec<Value> {
        let Some(path) = &self.output_file else {
            return Vec::new();
        };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        // Only lines already terminated by '\n': the last one may be half written.
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        parse_lines(complete).unwrap_or_else(|e| panic!("{e:#}\nagent stderr:\n{}", self.stderr()))
    }

    /// Poll until `done(events)` holds, or panic after `timeout` showing what was there.
    #[track_caller]
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let events = self.events();
            if done(&events) {
                return events;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; events so far:\n{}\nagent stderr:\n{}",
                    crate::events::pretty(&events),
                    self.stderr()
                );
            }
            if self.child.as_ref().is_some_and(|c| pid_exited(c.id())) {
                panic!(
                    "the agent exited while waiting for {what}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Wait until at least `n` events match `filter` and return those events.
    #[track_caller]
    pub fn wait_for_events(&self, n: usize, filter: impl Fn(&Value) -> bool) -> Vec<Value> {
        let events = self.wait_until(&format!("{n} matching event(s)"), EVENT_TIMEOUT, |events| {
            events.iter().filter(|e| filter(e)).count() >= n
        });
        events.into_iter().filter(|e| filter(e)).collect()
    }

    /// Wait until at least `n` events from process `pid` arrived and return them.
    #[track_caller]
    pub fn wait_for_pid(&self, pid: u32, n: usize) -> Vec<Value> {
        self.wait_for_events(n, |e| crate::events::pid_of(e) == Some(pid))
    }

    /// SIGTERM, wait for exit, assert exit status 0, and return all output.
    #[track_caller]
    pub fn stop(self) -> AgentOutput {
        self.stop_with(Signal::SIGTERM)
    }

    /// Like [`Agent::stop`] with another signal (SIGINT).
    #[track_caller]
    pub fn stop_with(mut self, sig: Signal) -> AgentOutput {
        let output = match self.try_stop(sig) {
            Ok(output) => output,
            Err(e) => panic!(
                "stopping the agent: {e:#}\nagent stderr:\n{}",
                self.stderr()
            ),
        };
        assert!(
            output.status.success(),
            "the agent must exit 0 on {sig}, got {}; stderr:\n{}",
            output.status,
            output.stderr
        );
        output
    }

    /// Send `sig`, wait for the exit and collect the output, without asserting the status.
    pub fn try_stop(&mut self, sig: Signal) -> anyhow::Result<AgentOutput> {
        let mut child = self.child.take().context("agent already stopped")?;
        signal(&child, sig);
        let status = match wait_timeout(&mut child, STOP_TIMEOUT)? {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the agent did not exit within {STOP_TIMEOUT:?} of {sig}");
            }
        };
        let stderr = self
            .stderr
            .take()
            .map(Collector::finish)
            .unwrap_or_default();
        let stdout = self
            .stdout
            .take()
            .map(Collector::finish)
            .unwrap_or_default();
        let raw = match &self.output_file {
            Some(path) => std::fs::read_to_string(path).unwrap_or_default(),
            None => String::new(),
        };
        if !raw.is_empty() && !raw.ends_with('\n') {
            bail!("the output file does not end with a newline: {raw:?}");
        }
        let events = parse_lines(&raw)?;
        Ok(AgentOutput {
            events,
            raw,
            stdout,
            stderr,
            status,
        })
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = terminate(&mut child, Duration::from_secs(3));
        }
    }
}

/// The inventory `run` flags name: `Some(Some(path))` for `--db PATH` (or `--db=PATH`),
/// `Some(None)` for `--no-db`, `None` for neither.
fn db_flag(args: &[OsString]) -> Option<Option<PathBuf>> {
    let mut args = args.iter().map(|a| a.to_string_lossy());
    while let Some(arg) = args.next() {
        match arg.as_ref() {
            "--no-db" => return Some(None),
            "--db" => return Some(args.next().map(|p| PathBuf::from(p.as_ref()))),
            _ => {}
        }
        if let Some(path) = arg.strip_prefix("--db=") {
            return Some(Some(PathBuf::from(path)));
        }
    }
    None
}

/// Whether a child has exited (zombie or gone) without reaping it, so that
/// [`Agent::wait_until`] can stay `&self`.
fn pid_exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the ")" that closes comm.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

/// Parse JSON lines; every non-empty line must be a JSON object.
pub fn parse_lines(text: &str) -> anyhow::Result<Vec<Value>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            let value: Value = serde_json::from_str(line)
                .with_context(|| format!("output line {} is not JSON: {line:?}", i + 1))?;
            if !value.is_object() {
                bail!("output line {} is not a JSON object: {line:?}", i + 1);
            }
            Ok(value)
        })
        .collect()
}

/// Run the agent with `args` (optionally behind `wrapper`, e.g. `setpriv ...`) and expect it
/// to exit on its own within [`READY_TIMEOUT`]. Returns (status, stdout, stderr).
pub fn run_to_exit(
    wrapper: &[OsString],
    args: &[OsString],
    bin: Option<&Path>,
) -> anyhow::Result<(ExitStatus, String, String)> {
    let bin = bin.map_or_else(env::agent_bin, Path::to_path_buf);
    let mut cmd = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut cmd = Command::new(program);
            cmd.args(rest).arg(&bin);
            cmd
        }
        None => Command::new(&bin),
    };
    let mut child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))?;
    let stdout = Collector::spawn(child.stdout.take().context("stdout")?, |_| {});
    let stderr = Collector::spawn(child.stderr.take().context("stderr")?, |_| {});
    let Some(status) = wait_timeout(&mut child, READY_TIMEOUT)? else {
        let _ = terminate(&mut child, Duration::from_secs(2));
        bail!(
            "the agent kept running for {READY_TIMEOUT:?}; stderr:\n{}",
            stderr.finish()
        );
    };
    Ok((status, stdout.finish(), stderr.finish()))
}
