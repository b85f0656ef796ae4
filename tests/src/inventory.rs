//! The agent's inventory (SQLite) and `imds-agent report`, for the inventory tests: running
//! the report, reading the agent's closing `inventory ...` log line, a keep-alive burst
//! client, raw counts read with Python's `sqlite3` module (no Rust SQLite dependency), and a
//! process holding a lock on a database.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::agent::{Agent, run_to_exit};
use crate::cgroup::TestCgroup;
use crate::child::{Collector, terminate, wait_timeout};
use crate::client::spawn_client;
use crate::env;
use crate::netns::{IMDS_V4, NetNs};

/// A finished `imds-agent report`.
#[derive(Debug)]
pub struct ReportRun {
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ReportRun {
    /// stdout parsed as the JSON report (panics, showing both streams, if it is not JSON).
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "report stdout is not JSON ({e}); exit {:?}\nstdout:\n{}\nstderr:\n{}",
                self.code, self.stdout, self.stderr
            )
        })
    }

    /// The non-empty stderr lines.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

impl std::fmt::Display for ReportRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?} ({})\nstdout:\n{}\nstderr:\n{}",
            self.code, self.status, self.stdout, self.stderr
        )
    }
}

/// `imds-agent report ARGS` to completion (at most 20 s).
#[track_caller]
pub fn report<S: AsRef<OsStr>>(args: &[S]) -> ReportRun {
    let mut argv = vec![OsString::from("report")];
    argv.extend(args.iter().map(|a| a.as_ref().to_owned()));
    let (status, stdout, stderr) =
        run_to_exit(&[], &argv, None).unwrap_or_else(|e| panic!("running the report: {e:#}"));
    ReportRun {
        code: status.code(),
        status,
        stdout,
        stderr,
    }
}

/// `imds-agent report --db DB --since SINCE --format json`, which must not fail (exit 0 or 1);
/// returns the exit code and the parsed report.
#[track_caller]
pub fn json_report(db: &Path, since: &str) -> (i32, Value) {
    let run = report(&[
        OsStr::new("--db"),
        db.as_os_str(),
        OsStr::new("--since"),
        OsStr::new(since),
        OsStr::new("--format"),
        OsStr::new("json"),
    ]);
    let code = run.code.unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "the report must succeed (exit 0 READY or 1 NOT READY):\n{run}"
    );
    assert!(!run.stderr.contains("panicked"), "{run}");
    (code, run.json())
}

/// `summary.<key>` of a JSON report, as a number.
#[track_caller]
pub fn summary_u64(report: &Value, key: &str) -> u64 {
    report["summary"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("summary.{key} is not a number in:\n{report:#}"))
}

/// The workload rows of a JSON report whose identity has `process.executable.name == exe`.
pub fn rows_of_exe<'a>(report: &'a Value, exe: &str) -> Vec<&'a Value> {
    report["workloads"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter(|r| r["identity"]["process.executable.name"].as_str() == Some(exe))
                .collect()
        })
        .unwrap_or_default()
}

/// The agent's closing line `inventory <DB>: <N> events in <T> transactions, <D> dropped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InventoryStats {
    pub events: u64,
    pub transactions: u64,
    pub dropped: u64,
}

/// Finds and parses the closing `inventory ...` line in the agent's stderr.
pub fn inventory_stats(stderr: &str) -> Option<InventoryStats> {
    stderr.lines().rev().find_map(|line| {
        let at = line.find("inventory ")?;
        let (_, rest) = line[at..].rsplit_once(": ")?;
        let words: Vec<&str> = rest.split_whitespace().collect();
        match words.as_slice() {
            [n, "events", "in", t, "transactions,", d, "dropped"] => Some(InventoryStats {
                events: n.parse().ok()?,
                transactions: t.parse().ok()?,
                dropped: d.parse().ok()?,
            }),
            _ => None,
        }
    })
}

/// Like [`inventory_stats`], panicking with the stderr when the line is missing.
#[track_caller]
pub fn expect_inventory_stats(stderr: &str) -> InventoryStats {
    inventory_stats(stderr).unwrap_or_else(|| {
        panic!("no `inventory <DB>: N events in T transactions, D dropped` line in:\n{stderr}")
    })
}

/// SIGKILL the agent, wait until it is dead, and return the complete lines of its output
/// (the last line may have been cut by the kill; it is left out).
pub fn kill9(agent: Agent) -> Vec<Value> {
    let Some(pid) = agent.pid() else {
        return agent.events();
    };
    let _ = kill(
        Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX)),
        Signal::SIGKILL,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !exited(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let events = agent.events();
    drop(agent);
    events
}

/// Send `sig` to the agent and wait (at most `timeout`) until it has exited, without reaping
/// it (so [`Agent::stop`] still collects its output and status afterwards). Returns how long
/// the exit took, `None` on timeout.
pub fn signal_and_wait_exit(agent: &Agent, sig: Signal, timeout: Duration) -> Option<Duration> {
    let pid = agent.pid()?;
    let start = Instant::now();
    let _ = kill(Pid::from_raw(i32::try_from(pid).ok()?), sig);
    while !exited(pid) {
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Some(start.elapsed())
}

fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

/// Python: `N` tokenless GETs of the instance id on ONE keep-alive connection to IMDS, with
/// `PAUSE` seconds between them; prints `{"sent": .., "ok": ..}` when done (or on an error,
/// then exits 1).
///
/// The mock writes a response's headers and body in two `send`s, so with Nagle on its side
/// and delayed ACKs on ours every request would stall ~40 ms (10,000 requests: minutes).
/// `TCP_QUICKACK` before each response (it does not stick) acks the headers at once.
const BURST_CLIENT: &str = r#"
import http.client, json, socket, sys, time
n, host, pause = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
conn = http.client.HTTPConnection(host, 80, timeout=10)
sent = ok = 0
code = 0
try:
    for _ in range(n):
        conn.request("GET", "/latest/meta-data/instance-id")
        sent += 1
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        r = conn.getresponse()
        r.read()
        ok += r.status == 200
        if pause:
            time.sleep(pause)
except Exception as e:
    print(repr(e), file=sys.stderr)
    code = 1
conn.close()
print(json.dumps({"sent": sent, "ok": ok}), flush=True)
sys.exit(code)
"#;

/// A running [`BURST_CLIENT`].
pub struct Burst {
    child: Child,
    stdout: Collector,
    stderr: Collector,
}

/// What a burst did.
#[derive(Debug, Clone, Copy)]
pub struct BurstResult {
    /// Requests written.
    pub sent: u64,
    /// Of those, answered 200.
    pub ok: u64,
}

impl Burst {
    /// Start `n` keep-alive GETs in `cgroup` and `netns`, as fast as they go.
    pub fn start(netns: &NetNs, cgroup: &TestCgroup, n: u64) -> anyhow::Result<Self> {
        Self::start_paced(netns, cgroup, n, Duration::ZERO)
    }

    /// Like [`Burst::start`], pausing `pause` after each response.
    pub fn start_paced(
        netns: &NetNs,
        cgroup: &TestCgroup,
        n: u64,
        pause: Duration,
    ) -> anyhow::Result<Self> {
        let python = env::python3()?;
        let argv: Vec<OsString> = vec![
            python.into_os_string(),
            "-c".into(),
            BURST_CLIENT.into(),
            n.to_string().into(),
            IMDS_V4.into(),
            pause.as_secs_f64().to_string().into(),
        ];
        let mut child = spawn_client(netns, cgroup, &argv)?;
        let stdout = Collector::spawn(child.stdout.take().context("burst stdout")?, |_| {});
        let stderr = Collector::spawn(child.stderr.take().context("burst stderr")?, |_| {});
        Ok(Self {
            child,
            stdout,
            stderr,
        })
    }

    /// The client's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait (at most `timeout`) for the client to finish all its requests.
    pub fn finish(mut self, timeout: Duration) -> anyhow::Result<BurstResult> {
        let status = match wait_timeout(&mut self.child, timeout)? {
            Some(status) => status,
            None => {
                let _ = terminate(&mut self.child, Duration::from_secs(1));
                bail!("the burst client did not finish within {timeout:?}");
            }
        };
        let stdout = self.stdout.finish();
        let stderr = self.stderr.finish();
        if !status.success() {
            bail!("the burst client failed ({status}): stdout {stdout:?} stderr {stderr:?}");
        }
        let v: Value = serde_json::from_str(stdout.trim())
            .with_context(|| format!("burst client output {stdout:?}"))?;
        Ok(BurstResult {
            sent: v["sent"].as_u64().context("sent")?,
            ok: v["ok"].as_u64().context("ok")?,
        })
    }
}

/// Python: raw counts of an inventory, read-only, as one JSON object.
const SQL_COUNTS: &str = r#"
import json, sqlite3, sys
c = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True, timeout=5)
one = lambda q: c.execute(q).fetchone()[0]
print(json.dumps({
    "integrity": one("PRAGMA integrity_check"),
    "events": one("SELECT count(*) FROM events"),
    "events_v1": one("SELECT count(*) FROM events WHERE json_extract(json, '$.\"imds.version\"') = 'v1'"),
    "events_v2": one("SELECT count(*) FROM events WHERE json_extract(json, '$.\"imds.version\"') = 'v2'"),
    "bucket_v1": one("SELECT coalesce(sum(v1), 0) FROM workload_buckets"),
    "bucket_v2": one("SELECT coalesce(sum(v2), 0) FROM workload_buckets"),
    "bucket_all": one("SELECT coalesce(sum(v1 + v2 + other), 0) FROM workload_buckets"),
    "workload_v1": one("SELECT coalesce(sum(v1_count), 0) FROM workloads"),
    "workload_v2": one("SELECT coalesce(sum(v2_count), 0) FROM workloads"),
    "workload_all": one("SELECT coalesce(sum(v1_count + v2_count + other_count), 0) FROM workloads"),
    "runs": one("SELECT count(*) FROM runs"),
    "run_events": one("SELECT coalesce(sum(events), 0) FROM runs"),
    "clean_stops": one("SELECT coalesce(sum(clean_stop), 0) FROM runs"),
}))
"#;

/// Raw counts of an inventory (see [`SQL_COUNTS`]), read with Python's `sqlite3` module.
pub fn sql_counts(db: &Path) -> anyhow::Result<Value> {
    let out = Command::new(env::python3()?)
        .args(["-c", SQL_COUNTS])
        .arg(db)
        .stdin(Stdio::null())
        .output()
        .context("running python3 sqlite3")?;
    if !out.status.success() {
        bail!(
            "reading {} with python sqlite3 failed ({}): {}",
            db.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("python sqlite3 output")
}

/// Python: open the database, take a lock per `mode`, say `locked`, hold it until stdin closes.
/// `exclusive`: `BEGIN EXCLUSIVE`. `exclusive-locking-mode`: `PRAGMA locking_mode=EXCLUSIVE`
/// then `BEGIN EXCLUSIVE` and a write (in WAL mode, the only way to keep readers out).
const LOCK_HOLDER: &str = r#"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)
if sys.argv[2] == "exclusive-locking-mode":
    c.execute("PRAGMA locking_mode=EXCLUSIVE")
c.execute("BEGIN EXCLUSIVE")
if sys.argv[2] == "exclusive-locking-mode":
    c.execute("UPDATE meta SET value = value WHERE key = 'kind'")
print("locked", flush=True)
sys.stdin.read()
c.execute("ROLLBACK")
"#;

/// A process holding a lock on a database. Drop releases it.
pub struct LockHolder {
    child: Child,
}

impl LockHolder {
    /// Take the lock (`mode` as in [`LOCK_HOLDER`]) and wait until it is held.
    pub fn hold(db: &Path, mode: &str) -> anyhow::Result<Self> {
        let mut child = Command::new(env::python3()?)
            .args(["-c", LOCK_HOLDER])
            .arg(db)
            .arg(mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning the python lock holder")?;
        let stdout = child.stdout.take().context("lock holder stdout")?;
        let holder = Self { child };
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("reading the lock holder")?;
        if line.trim() != "locked" {
            bail!("the lock holder did not take the lock: {line:?}");
        }
        Ok(holder)
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = terminate(&mut self.child, Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_inventory_line() {
        let stderr = "2026-11-24T10:00:00Z  INFO imds-agent ready: observing cgroup /x\n\
                      2026-11-24T10:00:05Z  INFO inventory /tmp/a b/inventory.sqlite: 10000 events in 7 transactions, 0 dropped\n\
                      2026-11-24T10:00:05Z  INFO stopped: 10000 requests reported";
        assert_eq!(
            inventory_stats(stderr),
            Some(InventoryStats {
                events: 10000,
                transactions: 7,
                dropped: 0
            })
        );
        assert_eq!(inventory_stats("no such line"), None);
    }
}
