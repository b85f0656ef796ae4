//! The inventory (SQLite) and the readiness report, end to end: restarts lose nothing and
//! count nothing twice, `kill -9` leaves a consistent database, a burst of 10,000 requests is
//! stored in few transactions, the report's exit codes and errors, and reading while the
//! agent writes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use imds_agent_e2e::agent::STOP_TIMEOUT;
use imds_agent_e2e::events::{pretty, str_of};
use imds_agent_e2e::inventory::{
    Burst, LockHolder, expect_inventory_stats, json_report, kill9, report, rows_of_exe,
    signal_and_wait_exit, sql_counts, summary_u64,
};
use imds_agent_e2e::{Agent, AgentOptions, MockOptions, NetNs, TestCgroup, env, imds_url};
use nix::sys::signal::Signal;
use serde_json::Value;

const INSTANCE_ID_PATH: &str = "/latest/meta-data/instance-id";
const TOKEN_PATH: &str = "/latest/api/token";
const TTL_HEADER: &str = "X-aws-ec2-metadata-token-ttl-seconds: 21600";
const TOKEN_HEADER: &str = "X-aws-ec2-metadata-token";

/// A namespace with the mock, a cgroup, and a directory for inventories, without an agent:
/// the tests start and stop agents on the same database themselves.
struct World {
    // Drop order: cgroup (kills leftover clients) before the namespace (stops the mock).
    cgroup: TestCgroup,
    netns: NetNs,
    dir: tempfile::TempDir,
}

impl World {
    /// `None` means skipped (never under `CI=true`, where it panics).
    fn create() -> Option<Self> {
        if let Err(why) = env::preflight() {
            env::skip_or_fail(format!("{why:#}"));
            return None;
        }
        let name = env::unique_name();
        let netns = NetNs::create(&name, &MockOptions::default())
            .unwrap_or_else(|e| panic!("creating netns {name}: {e:#}"));
        let cgroup =
            TestCgroup::create(&name).unwrap_or_else(|e| panic!("creating cgroup {name}: {e:#}"));
        let dir = tempfile::Builder::new()
            .prefix(env::NAME_PREFIX)
            .tempdir()
            .unwrap();
        Some(Self { cgroup, netns, dir })
    }

    fn db(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// An agent on this world's cgroup recording into `db`. `None`: skipped (not under CI).
    fn agent(&self, db: &Path) -> Option<Agent> {
        let args = [OsString::from("--db"), db.as_os_str().to_owned()];
        match Agent::start_with_args(self.cgroup.path(), &AgentOptions::default(), &args) {
            Ok(agent) => {
                assert_eq!(agent.db_path(), Some(db));
                Some(agent)
            }
            Err(e) => {
                env::skip_or_fail(e);
                None
            }
        }
    }

    /// Run a client in the cgroup and namespace; it must succeed. Returns its stdout.
    #[track_caller]
    fn run_ok(&self, argv: &[&str]) -> String {
        let run = imds_agent_e2e::run_client(&self.netns, &self.cgroup, argv)
            .unwrap_or_else(|e| panic!("{e:#}\nmock log:\n{}", self.netns.mock_log()));
        assert!(
            run.status.success(),
            "client `{}` failed ({}): {run:?}",
            argv.join(" "),
            run.status
        );
        run.stdout
    }

    fn v1_curls(&self, n: usize) {
        let url = imds_url(INSTANCE_ID_PATH);
        for _ in 0..n {
            self.run_ok(&["curl", "-sf", &url]);
        }
    }

    /// A token PUT with curl; returns the token.
    fn token(&self) -> String {
        let token = self.run_ok(&[
            "curl",
            "-sf",
            "-X",
            "PUT",
            "-H",
            TTL_HEADER,
            &imds_url(TOKEN_PATH),
        ]);
        assert!(token.trim().len() > 20, "no token from the mock: {token:?}");
        token.trim().to_owned()
    }

    fn v2_curls(&self, token: &str, n: usize) {
        let header = format!("{TOKEN_HEADER}: {token}");
        let url = imds_url(INSTANCE_ID_PATH);
        for _ in 0..n {
            self.run_ok(&["curl", "-sf", "-H", &header, &url]);
        }
    }
}

fn version_count(events: &[Value], version: &str) -> usize {
    events
        .iter()
        .filter(|e| str_of(e, "imds.version") == Some(version))
        .count()
}

/// The runs of the (single) host of a report.
fn runs(report: &Value) -> Vec<Value> {
    report["hosts"][0]["coverage"]["runs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The one workload row of `exe`, with its (v1, v2) counts.
#[track_caller]
fn exe_counts(report: &Value, exe: &str) -> (u64, u64) {
    let rows = rows_of_exe(report, exe);
    assert_eq!(rows.len(), 1, "one {exe} workload expected in:\n{report:#}");
    (
        rows[0]["v1_calls"].as_u64().unwrap(),
        rows[0]["v2_calls"].as_u64().unwrap(),
    )
}

#[test]
fn restart_loses_nothing_and_counts_nothing_twice() {
    let Some(world) = World::create() else { return };
    let db = world.db("inventory.sqlite");
    const N_V1_A: usize = 20;
    const M_V2_A: usize = 10;
    const K_V1_B: usize = 7;
    const K_V2_B: usize = 3;

    // Agent A: 20 tokenless GETs, one token PUT and 10 GETs with the token.
    let Some(agent) = world.agent(&db) else {
        return;
    };
    world.v1_curls(N_V1_A);
    let token = world.token();
    world.v2_curls(&token, M_V2_A);
    // No waiting: SIGTERM must flush what is in flight into the inventory too.
    let a = agent.stop();
    let a_events = (N_V1_A + 1 + M_V2_A) as u64;
    assert_eq!(a.events.len() as u64, a_events, "{}", pretty(&a.events));
    let stats = expect_inventory_stats(&a.stderr);
    assert_eq!(stats.events, a_events, "agent A stderr:\n{}", a.stderr);
    assert_eq!(stats.dropped, 0, "agent A stderr:\n{}", a.stderr);

    // Agent B on the same inventory: 7 tokenless GETs and 3 with the (still valid) token.
    let Some(agent) = world.agent(&db) else {
        return;
    };
    world.v1_curls(K_V1_B);
    world.v2_curls(&token, K_V2_B);
    let b = agent.stop();
    let b_events = (K_V1_B + K_V2_B) as u64;
    assert_eq!(b.events.len() as u64, b_events, "{}", pretty(&b.events));
    let stats = expect_inventory_stats(&b.stderr);
    assert_eq!(stats.events, b_events, "agent B stderr:\n{}", b.stderr);
    assert_eq!(stats.dropped, 0, "agent B stderr:\n{}", b.stderr);

    let want_v1 = (N_V1_A + K_V1_B) as u64;
    let want_v2 = (1 + M_V2_A + K_V2_B) as u64;
    let (code, report) = json_report(&db, "10m");
    assert_eq!(code, 1, "v1 calls: NOT READY:\n{report:#}");
    assert_eq!(report["schema"], 1);
    assert_eq!(report["verdict"], "NOT READY");
    assert_eq!(
        exe_counts(&report, "curl"),
        (want_v1, want_v2),
        "{report:#}"
    );
    assert_eq!(summary_u64(&report, "v1_calls"), want_v1, "{report:#}");
    assert_eq!(summary_u64(&report, "v2_calls"), want_v2, "{report:#}");
    let runs = runs(&report);
    assert_eq!(runs.len(), 2, "two runs recorded:\n{report:#}");
    assert!(
        runs.iter().all(|r| r["clean_stop"] == true),
        "both runs stopped cleanly:\n{report:#}"
    );
    // Raw events, aggregates and hourly counters agree: nothing replayed, nothing lost.
    let sql = sql_counts(&db).unwrap();
    assert_eq!(sql["integrity"], "ok", "{sql:#}");
    for key in ["events", "bucket_all", "workload_all", "run_events"] {
        assert_eq!(sql[key], want_v1 + want_v2, "{key} in {sql:#}");
    }
    for key in ["events_v1", "bucket_v1", "workload_v1"] {
        assert_eq!(sql[key], want_v1, "{key} in {sql:#}");
    }
    assert_eq!(sql["runs"], 2, "{sql:#}");
}

#[test]
fn kill9_mid_burst_leaves_a_consistent_db() {
    const BURST: u64 = 3000;
    const KILL_AFTER: u64 = 100;
    const MORE: usize = 5;
    let Some(world) = World::create() else { return };
    let db = world.db("inventory.sqlite");
    let Some(agent) = world.agent(&db) else {
        return;
    };

    // Paced (1 ms between requests, so ~4 s in all), so that the kill lands part-way.
    let burst =
        Burst::start_paced(&world.netns, &world.cgroup, BURST, Duration::from_millis(1)).unwrap();
    // Kill once the writer has committed something (read while it writes), with more coming.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let committed = sql_counts(&db).map(|c| c["events"].as_u64().unwrap_or(0));
        if committed.as_ref().is_ok_and(|n| *n >= KILL_AFTER) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than {KILL_AFTER} events committed after 20 s ({committed:?}); agent stderr:\n{}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let printed = kill9(agent);
    let burst = burst.finish(Duration::from_secs(60)).unwrap();
    assert_eq!(burst.sent, BURST);
    assert_eq!(burst.ok, BURST);

    let (code, report) = json_report(&db, "10m");
    let v1_after_kill = summary_u64(&report, "v1_calls");
    eprintln!(
        "kill -9 mid-burst: {} requests sent, {} printed by the agent before the kill, {} in the inventory (report exit {code})",
        burst.sent,
        printed.len(),
        v1_after_kill
    );
    assert!(
        v1_after_kill <= burst.sent,
        "more v1 calls stored than sent:\n{report:#}"
    );
    assert!(
        v1_after_kill < burst.sent,
        "the kill was meant to land part-way; the inventory has every request, so this test \
         did not test a kill mid-burst"
    );
    assert!(
        v1_after_kill >= KILL_AFTER,
        "committed events lost:\n{report:#}"
    );
    assert_eq!(summary_u64(&report, "v2_calls"), 0, "{report:#}");
    let runs_after_kill = runs(&report);
    assert_eq!(runs_after_kill.len(), 1, "{report:#}");
    assert_eq!(runs_after_kill[0]["clean_stop"], false, "{report:#}");
    // Raw events, aggregates, counters and the run's tally all come from whole transactions.
    let sql = sql_counts(&db).unwrap();
    assert_eq!(sql["integrity"], "ok", "{sql:#}");
    for key in [
        "events",
        "events_v1",
        "bucket_v1",
        "bucket_all",
        "workload_v1",
        "workload_all",
        "run_events",
    ] {
        assert_eq!(sql[key], v1_after_kill, "{key} in {sql:#}");
    }

    // A new agent on the same inventory, exactly 5 more requests.
    let Some(agent) = world.agent(&db) else {
        return;
    };
    world.v1_curls(MORE);
    let out = agent.stop();
    assert_eq!(out.events.len(), MORE, "{}", pretty(&out.events));
    assert_eq!(
        expect_inventory_stats(&out.stderr).events,
        MORE as u64,
        "{}",
        out.stderr
    );
    let (code, report) = json_report(&db, "10m");
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        summary_u64(&report, "v1_calls"),
        v1_after_kill + MORE as u64,
        "exactly {MORE} more:\n{report:#}"
    );
    assert_eq!(exe_counts(&report, "curl"), (MORE as u64, 0), "{report:#}");
    assert_eq!(runs(&report).len(), 2, "{report:#}");
    let sql = sql_counts(&db).unwrap();
    assert_eq!(sql["integrity"], "ok", "{sql:#}");
    assert_eq!(sql["events"], v1_after_kill + MORE as u64, "{sql:#}");
    assert_eq!(sql["bucket_v1"], v1_after_kill + MORE as u64, "{sql:#}");
}

#[test]
fn burst_of_10000_requests() {
    const BURST: u64 = 10_000;
    const MAX_TRANSACTIONS: u64 = 20;
    let Some(world) = World::create() else { return };
    let db = world.db("inventory.sqlite");
    let Some(agent) = world.agent(&db) else {
        return;
    };

    let start = Instant::now();
    let burst = Burst::start(&world.netns, &world.cgroup, BURST).unwrap();
    let pid = burst.pid();
    let burst = burst.finish(Duration::from_secs(90)).unwrap();
    let client_done = start.elapsed();
    assert_eq!((burst.sent, burst.ok), (BURST, BURST));
    // Timed to the agent's exit itself (not to our reading of its 10,000 output lines).
    let stop_took = signal_and_wait_exit(&agent, Signal::SIGTERM, STOP_TIMEOUT);
    let elapsed = start.elapsed();
    let out = agent.stop(); // reaps it, asserts exit 0, collects the output
    let stop_took = stop_took.unwrap_or_else(|| panic!("no exit within {STOP_TIMEOUT:?}"));

    let stats = expect_inventory_stats(&out.stderr);
    eprintln!(
        "burst of {BURST}: client done after {client_done:?}; agent exited {elapsed:?} after the \
         first request ({stop_took:?} after SIGTERM); inventory: {} events in {} transactions, {} dropped",
        stats.events, stats.transactions, stats.dropped
    );
    let mine = out
        .events
        .iter()
        .filter(|e| imds_agent_e2e::events::pid_of(e) == Some(pid))
        .count();
    assert_eq!(
        mine as u64, BURST,
        "every request printed (stderr:\n{})",
        out.stderr
    );
    assert_eq!(stats.events, BURST, "agent stderr:\n{}", out.stderr);
    assert_eq!(stats.dropped, 0, "agent stderr:\n{}", out.stderr);
    assert!(
        stats.transactions <= MAX_TRANSACTIONS,
        "{} transactions for {BURST} events (at most {MAX_TRANSACTIONS} expected)",
        stats.transactions
    );

    let (code, report) = json_report(&db, "10m");
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(summary_u64(&report, "v1_calls"), BURST, "{report:#}");
    let python_rows: Vec<&Value> = report["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["v1_calls"].as_u64() == Some(BURST))
        .collect();
    assert_eq!(
        python_rows.len(),
        1,
        "one workload with all {BURST}:\n{report:#}"
    );
}

#[test]
fn report_exit_codes_and_errors() {
    let Some(world) = World::create() else { return };
    let db = world.db("inventory.sqlite");

    // READY: an agent on the empty cgroup, watching the whole (short) window: it started
    // before the window, and a live run covers up to now. (A window starting before the
    // agent's first run is never READY: that time was not watched.)
    let Some(agent) = world.agent(&db) else {
        return;
    };
    std::thread::sleep(Duration::from_secs(3));
    let ready = report(&[
        "--db".as_ref(),
        db.as_os_str(),
        "--since".as_ref(),
        "2s".as_ref(),
        "--format".as_ref(),
        "json".as_ref(),
    ]);
    assert_eq!(ready.code, Some(0), "READY expected:\n{ready}");
    let ready_json = ready.json();
    assert_eq!(ready_json["verdict"], "READY", "{ready_json:#}");
    assert_eq!(
        ready_json["reasons"],
        serde_json::json!([]),
        "{ready_json:#}"
    );
    assert_eq!(
        ready_json["hosts"][0]["coverage"]["complete"], true,
        "{ready_json:#}"
    );
    // The table too (the default format) exits 0.
    let table = report(&[
        "--db".as_ref(),
        db.as_os_str(),
        "--since".as_ref(),
        "2s".as_ref(),
    ]);
    assert_eq!(table.code, Some(0), "{table}");
    assert!(table.stdout.contains("READY"), "{table}");

    // NOT READY: one tokenless curl.
    world.v1_curls(1);
    agent.wait_for_events(1, |e| str_of(e, "imds.version") == Some("v1"));
    std::thread::sleep(Duration::from_millis(1200)); // the batch commits within 500 ms
    let not_ready = report(&[
        "--db".as_ref(),
        db.as_os_str(),
        "--since".as_ref(),
        "1m".as_ref(),
        "--format".as_ref(),
        "json".as_ref(),
    ]);
    assert_eq!(not_ready.code, Some(1), "NOT READY expected:\n{not_ready}");
    let not_ready_json = not_ready.json();
    assert_eq!(not_ready_json["verdict"], "NOT READY");
    assert_eq!(
        summary_u64(&not_ready_json, "v1_calls"),
        1,
        "{not_ready_json:#}"
    );
    assert!(
        not_ready_json["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "v1_calls"),
        "{not_ready_json:#}"
    );
    drop(agent.stop());

    // Errors: exit 2 with one clear line, never a panic.
    let missing = world.db("missing.sqlite");
    let run = report(&["--db".as_ref(), missing.as_os_str()]);
    assert_error(&run, "missing database", &["does not exist"]);

    let garbage = world.db("garbage.sqlite");
    std::fs::write(
        &garbage,
        b"this is not a SQLite database, just text\n".repeat(200),
    )
    .unwrap();
    let run = report(&["--db".as_ref(), garbage.as_os_str()]);
    assert_error(
        &run,
        "corrupted database",
        &["not a valid SQLite database", "corrupt"],
    );

    // A lock: `BEGIN EXCLUSIVE` alone does not keep WAL readers out (SQLite documents that
    // readers and one writer coexist in WAL mode); the exclusive locking mode does.
    {
        let _lock = LockHolder::hold(&db, "exclusive").unwrap();
        let run = report(&[
            "--db".as_ref(),
            db.as_os_str(),
            "--since".as_ref(),
            "1m".as_ref(),
        ]);
        eprintln!(
            "report while another process holds BEGIN EXCLUSIVE (WAL): exit {:?}",
            run.code
        );
        assert!(
            matches!(run.code, Some(1)),
            "in WAL mode a reader is not blocked by a writer's transaction:\n{run}"
        );
    }
    {
        let _lock = LockHolder::hold(&db, "exclusive-locking-mode").unwrap();
        let started = Instant::now();
        let run = report(&[
            "--db".as_ref(),
            db.as_os_str(),
            "--since".as_ref(),
            "1m".as_ref(),
        ]);
        eprintln!(
            "report while another process holds the database in exclusive locking mode: exit {:?} after {:?}",
            run.code,
            started.elapsed()
        );
        assert_error(&run, "locked database", &["locked"]);
    }

    let run = report(&[
        "--db".as_ref(),
        db.as_os_str(),
        "--since".as_ref(),
        "x".as_ref(),
    ]);
    assert_eq!(run.code, Some(2), "bad --since: {run}");
    assert!(!run.stderr.contains("panicked"), "{run}");
    assert!(
        run.stderr.contains("--since"),
        "the error names the flag: {run}"
    );

    // --merge: one READY host and one NOT READY host (the reports came from one machine, so
    // their host names are rewritten to differ).
    let ready_file = world.db("host-ready.json");
    let not_ready_file = world.db("host-not-ready.json");
    std::fs::write(&ready_file, rename_host(&ready_json, "host-ready-e2e")).unwrap();
    std::fs::write(
        &not_ready_file,
        rename_host(&not_ready_json, "host-not-ready-e2e"),
    )
    .unwrap();
    let merged = report(&[
        "--merge".as_ref(),
        ready_file.as_os_str(),
        not_ready_file.as_os_str(),
        "--format".as_ref(),
        "json".as_ref(),
    ]);
    assert_eq!(merged.code, Some(1), "fleet NOT READY expected:\n{merged}");
    let fleet = merged.json();
    assert_eq!(fleet["verdict"], "NOT READY", "{fleet:#}");
    assert_eq!(summary_u64(&fleet, "hosts"), 2, "{fleet:#}");
    assert_eq!(summary_u64(&fleet, "v1_calls"), 1, "{fleet:#}");
    let hosts: Vec<&str> = fleet["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["host-not-ready-e2e", "host-ready-e2e"], "{fleet:#}");
    let markdown = report(&[
        "--merge".as_ref(),
        ready_file.as_os_str(),
        not_ready_file.as_os_str(),
        "--format".as_ref(),
        "markdown".as_ref(),
    ]);
    assert_eq!(markdown.code, Some(1), "{markdown}");
    for host in ["host-ready-e2e", "host-not-ready-e2e"] {
        assert!(
            markdown.stdout.contains(host),
            "{host} missing:\n{markdown}"
        );
    }
    assert!(markdown.stdout.contains("NOT READY"), "{markdown}");
    // The same host twice is an error, not a double count.
    let twice = report(&[
        "--merge".as_ref(),
        ready_file.as_os_str(),
        ready_file.as_os_str(),
    ]);
    assert_error(&twice, "a host merged twice", &["more than one report"]);
}

/// Exit 2, one stderr line mentioning one of `needles` (case-insensitive), no panic.
#[track_caller]
fn assert_error(run: &imds_agent_e2e::inventory::ReportRun, what: &str, needles: &[&str]) {
    assert_eq!(run.code, Some(2), "{what}: exit 2 expected:\n{run}");
    assert!(!run.stderr.contains("panicked"), "{what}: a panic:\n{run}");
    assert_eq!(
        run.stderr_lines().len(),
        1,
        "{what}: one stderr line expected:\n{run}"
    );
    let lower = run.stderr.to_lowercase();
    assert!(
        needles.iter().any(|n| lower.contains(&n.to_lowercase())),
        "{what}: stderr must mention one of {needles:?}:\n{run}"
    );
    assert!(
        run.stdout.trim().is_empty(),
        "{what}: no report on stdout:\n{run}"
    );
}

/// A JSON report with every host name replaced by `host`.
fn rename_host(report: &Value, host: &str) -> String {
    fn walk(v: &mut Value, host: &str) {
        match v {
            Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    if k == "host" && child.is_string() {
                        *child = Value::from(host);
                    } else {
                        walk(child, host);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|c| walk(c, host)),
            _ => {}
        }
    }
    let mut report = report.clone();
    walk(&mut report, host);
    serde_json::to_string_pretty(&report).unwrap()
}

#[test]
fn report_while_agent_runs() {
    let Some(world) = World::create() else { return };
    let db = world.db("inventory.sqlite");
    let Some(agent) = world.agent(&db) else {
        return;
    };
    world.v1_curls(3);
    let token = world.token();
    world.v2_curls(&token, 2);
    agent.wait_for_events(6, |_| true);
    std::thread::sleep(Duration::from_millis(1200)); // the batch commits within 500 ms

    // Read-only, while the writer holds its connection.
    let (code, live) = json_report(&db, "5m");
    assert_eq!(code, 1, "{live:#}");
    assert_eq!(exe_counts(&live, "curl"), (3, 3), "{live:#}");
    let live_runs = runs(&live);
    assert_eq!(live_runs.len(), 1, "{live:#}");
    assert_eq!(
        live_runs[0]["clean_stop"], false,
        "still running:\n{live:#}"
    );
    // The other formats read it too.
    for format in ["table", "markdown", "html"] {
        let run = report(&[
            "--db".as_ref(),
            db.as_os_str(),
            "--since".as_ref(),
            "5m".as_ref(),
            "--format".as_ref(),
            format.as_ref(),
        ]);
        assert_eq!(run.code, Some(1), "--format {format}:\n{run}");
        assert!(!run.stdout.trim().is_empty(), "--format {format}:\n{run}");
    }
    // The agent keeps recording after being read.
    world.v1_curls(1);
    let out = agent.stop();
    assert_eq!(
        version_count(&out.events, "v1"),
        4,
        "{}",
        pretty(&out.events)
    );
    assert_eq!(
        expect_inventory_stats(&out.stderr).events,
        7,
        "{}",
        out.stderr
    );

    let (_, after) = json_report(&db, "5m");
    assert_eq!(exe_counts(&after, "curl"), (4, 3), "{after:#}");
    let after_runs = runs(&after);
    assert_eq!(after_runs.len(), 1, "{after:#}");
    assert_eq!(after_runs[0]["clean_stop"], true, "{after:#}");
}

/// A running agent watched all of the last 2 s, so the report over them is READY. Today it
/// says `never_ran` (exit 1): `Reader::runs` keeps only runs with
/// `max(last_seen_ms, stopped_ms) >= window start`, and a running agent's `last_seen_ms`
/// advances only with a heartbeat (every 10 s) or a batch, so any window shorter than the
/// time since the last heartbeat or batch (up to 10 s) drops the run that is watching it.
#[test]
fn fresh_agent_is_ready_over_a_short_window_it_fully_watched() {
    let Some(world) = World::create() else { return };
    let db = world.db("inventory.sqlite");
    let Some(agent) = world.agent(&db) else {
        return;
    };
    std::thread::sleep(Duration::from_secs(4));
    let run = report(&[
        "--db".as_ref(),
        db.as_os_str(),
        "--since".as_ref(),
        "2s".as_ref(),
        "--format".as_ref(),
        "json".as_ref(),
    ]);
    drop(agent.stop());
    assert_eq!(run.code, Some(0), "READY expected:\n{run}");
    assert_eq!(run.json()["verdict"], "READY", "{run}");
}

/// A v1 call a few seconds before the window is not in the window, so it must not make the
/// window NOT READY. Today it does: `Reader::workloads` sums the hourly counters of every hour
/// that overlaps the window, so a window shorter than an hour counts the v1 calls of the whole
/// hour it starts in (up to ~1 h before it) for any workload also seen inside the window.
#[test]
fn v1_calls_before_the_window_do_not_count() {
    let Some(world) = World::create() else { return };
    let db = world.db("inventory.sqlite");
    let Some(agent) = world.agent(&db) else {
        return;
    };
    world.v1_curls(1);
    agent.wait_for_events(1, |_| true);
    std::thread::sleep(Duration::from_secs(4));
    // Inside the window: only a token PUT and a GET with it (same curl workload).
    let token = world.token();
    world.v2_curls(&token, 1);
    agent.wait_for_events(3, |_| true);
    std::thread::sleep(Duration::from_millis(1200)); // committed, and the run's last_seen with it
    let (code, report) = json_report(&db, "3s");
    drop(agent.stop());
    assert_eq!(
        summary_u64(&report, "v1_calls"),
        0,
        "the only v1 call was ~5 s before this 3 s window:\n{report:#}"
    );
    assert_eq!(summary_u64(&report, "v2_calls"), 2, "{report:#}");
    assert_eq!(code, 0, "{report:#}");
}
