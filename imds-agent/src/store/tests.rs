#![expect(clippy::unwrap_used, reason = "tests")]

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use rusqlite::Connection;
use serde_json::{Value, json};

use super::*;

const HOUR: Duration = Duration::from_secs(3600);
/// Set in the child process of [`sigkill_mid_burst_leaves_consistent_db`]: the DB path.
const CRASH_CHILD_ENV: &str = "IMDS_STORE_CRASH_CHILD_DB";

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// An event as the agent prints it (the keys the store reads, plus a few it keeps).
fn event(
    workload: &str,
    version: Option<&str>,
    status: Option<u16>,
    path: &str,
    t: SystemTime,
) -> Value {
    let mut e = json!({
        "time": rfc3339(t),
        "imds.version": version,
        "imds.request.kind": if path == "/latest/api/token" { "token" } else { "metadata" },
        "url.path": path,
        "workload": workload,
        "process.pid": 4242,
        "process.executable.name": "python3",
        "process.command_line": format!("python3 job.py --at {}", rfc3339(t)),
        "container.id": "0123456789ab",
        "k8s.pod.name": "nightly-export-abc",
    });
    match status {
        Some(s) => e["http.response.status_code"] = json!(s),
        None => e["imds.unanswered"] = json!(true),
    }
    if version == Some("v1") {
        e["imds.v1_cause"] = json!("sdk_too_old");
        e["imds.v1_advice"] = json!("upgrade botocore from 1.12.253 to at least 1.13.25");
        e["imds.sdk.name"] = json!("botocore");
        e["imds.sdk.version"] = json!("1.12.253");
    }
    e
}

fn cfg(dir: &Path) -> StoreConfig {
    StoreConfig {
        path: dir.join("sub/dir/inventory.sqlite"),
        flush_interval: Duration::from_millis(50),
        ..StoreConfig::default()
    }
}

fn run() -> RunInfo {
    RunInfo::current("/system.slice")
}

fn now() -> SystemTime {
    SystemTime::now()
}

fn epoch() -> SystemTime {
    SystemTime::UNIX_EPOCH
}

fn raw_count(path: &Path, sql: &str) -> i64 {
    let c = Connection::open(path).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn defaults_are_documented_values() {
    let StoreConfig {
        path,
        retention,
        max_events,
        flush_interval,
        max_batch,
    } = StoreConfig::default();
    assert_eq!(path, PathBuf::from("/var/lib/imds-agent/inventory.sqlite"));
    assert_eq!(retention, Duration::from_secs(30 * 86400));
    assert_eq!(max_events, 100_000);
    assert_eq!(flush_interval, Duration::from_millis(500));
    assert_eq!(max_batch, 5000);
}

#[test]
fn burst_of_10000_events_costs_a_handful_of_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        path: dir.path().join("inventory.sqlite"),
        ..StoreConfig::default()
    };
    let path = cfg.path.clone();
    let store = Store::open(cfg, run()).unwrap();
    let events: Vec<Value> = (0..10_000)
        .map(|i| {
            let v = if i % 3 == 0 { "v1" } else { "v2" };
            event(
                &format!("workload {}", i % 20),
                Some(v),
                Some(200),
                "/latest/meta-data/x",
                now(),
            )
        })
        .collect();
    let start = Instant::now();
    for e in &events {
        store.record(e);
    }
    let queued = start.elapsed();
    let stats = store.close().unwrap();
    let elapsed = start.elapsed();
    println!(
        "10,000-event burst: {} transactions, {} ms until committed and closed \
         (record() calls took {} ms in all)",
        stats.transactions,
        elapsed.as_millis(),
        queued.as_millis()
    );
    assert_eq!(stats.events, 10_000);
    assert_eq!(stats.dropped, 0);
    assert!(stats.transactions <= 5, "{stats:?}");
    let r = Reader::open(&path).unwrap();
    assert_eq!(r.event_count().unwrap(), 10_000);
    let total: u64 = r
        .workloads(epoch())
        .unwrap()
        .iter()
        .map(|w| w.v1_count + w.v2_count)
        .sum();
    assert_eq!(total, 10_000);
}

#[test]
fn aggregates_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(dir.path());
    let path = cfg.path.clone();
    let store = Store::open(cfg, run()).unwrap();
    let t0 = now() - Duration::from_secs(600);
    let at = |s: u64| t0 + Duration::from_secs(s);
    let a = "k8s batch/cronjob/nightly-export container export: python3 (/usr/bin/python3.11)";
    // First batch.
    store.record(&event(a, Some("v2"), None, "/latest/api/token", at(10)));
    store.record(&event(
        a,
        Some("v1"),
        Some(200),
        "/latest/meta-data/p0",
        at(11),
    ));
    store.record(&event(
        a,
        Some("v1"),
        Some(200),
        "/latest/meta-data/p1",
        at(12),
    ));
    store.record(&event(
        "other",
        Some("v2"),
        Some(200),
        "/latest/meta-data/q",
        at(5),
    ));
    store.flush().unwrap();
    // Second batch, out of order in time, with a 401 and more paths than are kept.
    store.record(&event(
        a,
        Some("v2"),
        Some(401),
        "/latest/meta-data/p2",
        at(30),
    ));
    for i in 3..8 {
        store.record(&event(
            a,
            Some("v1"),
            Some(404),
            &format!("/latest/meta-data/p{i}"),
            at(20 + i),
        ));
    }
    store.record(&event(
        a,
        Some("v2"),
        Some(200),
        "/latest/meta-data/p0",
        at(1),
    ));
    let stats = store.close().unwrap();
    assert_eq!(stats.events, 11);

    let r = Reader::open(&path).unwrap();
    let rows = r.workloads(epoch()).unwrap();
    assert_eq!(rows.len(), 2);
    let w = &rows[0];
    assert_eq!(w.workload, a);
    assert_eq!(
        (
            w.v1_count,
            w.v2_count,
            w.rejected_count,
            w.unanswered_token_requests
        ),
        (7, 3, 1, 1)
    );
    let secs = |t: SystemTime| to_ms(t) / 1000;
    assert_eq!(secs(w.first_seen), secs(at(1)));
    assert_eq!(secs(w.last_seen), secs(at(30)));
    assert_eq!(w.last_v1_seen.map(secs), Some(secs(at(27))));
    assert_eq!(w.example_paths.len(), EXAMPLE_PATHS);
    assert_eq!(w.example_paths[0], "/latest/api/token");
    assert_eq!(w.example_paths[1], "/latest/meta-data/p0");
    // Last by event time: the 401 at +30 s.
    assert_eq!(w.last_status, Some(401));
    assert_eq!(w.sdk_name.as_deref(), Some("botocore"));
    assert_eq!(w.sdk_version.as_deref(), Some("1.12.253"));
    assert_eq!(w.v1_cause.as_deref(), Some("sdk_too_old"));
    assert!(w.v1_advice.as_deref().unwrap().contains("1.13.25"));
    assert_eq!(w.identity["container.id"], "0123456789ab");
    assert_eq!(w.identity["k8s.pod.name"], "nightly-export-abc");
    assert_eq!(
        w.identity["process.command_line"],
        format!("python3 job.py --at {}", rfc3339(at(30)))
    );
    assert!(
        w.identity.get("process.pid").is_none(),
        "pids change; identity keeps stable keys"
    );
    let o = &rows[1];
    assert_eq!(
        (o.workload.as_str(), o.v1_count, o.v2_count, o.last_v1_seen),
        ("other", 0, 1, None)
    );
    assert_eq!(o.sdk_name, None);
    // Stored all-time totals agree with the hourly counters and the raw events.
    assert_eq!(
        raw_count(
            &path,
            "SELECT sum(v1_count + v2_count + other_count) FROM workloads"
        ),
        11
    );
    assert_eq!(
        raw_count(&path, "SELECT sum(v1 + v2 + other) FROM workload_buckets"),
        11
    );
}

#[test]
fn windowed_counts_and_v1_timeline_use_minute_counters() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(dir.path());
    let path = cfg.path.clone();
    let store = Store::open(cfg, run()).unwrap();
    let hour_ms = i64::try_from(HOUR.as_millis()).unwrap();
    let this_hour = from_ms(to_ms(now()).div_euclid(hour_ms) * hour_ms);
    let three_hours_ago = this_hour - 3 * HOUR + Duration::from_secs(60);
    for _ in 0..4 {
        store.record(&event("w", Some("v1"), Some(200), "/a", three_hours_ago));
    }
    store.record(&event(
        "w",
        Some("v1"),
        Some(200),
        "/a",
        this_hour + Duration::from_secs(1),
    ));
    store.record(&event(
        "w",
        Some("v2"),
        Some(200),
        "/a",
        this_hour + Duration::from_secs(2),
    ));
    store.record(&event(
        "v2 only",
        Some("v2"),
        Some(200),
        "/a",
        this_hour + Duration::from_secs(2),
    ));
    store.close().unwrap();
    let r = Reader::open(&path).unwrap();

    let all = r.workloads(epoch()).unwrap();
    assert_eq!(
        (all[0].workload.as_str(), all[0].v1_count, all[0].v2_count),
        ("w", 5, 1)
    );
    let recent = r.workloads(this_hour - HOUR).unwrap();
    assert_eq!((recent[0].v1_count, recent[0].v2_count), (1, 1));

    let tl = r.v1_timeline(this_hour - 5 * HOUR, HOUR).unwrap();
    assert_eq!(tl.len(), 1, "only workloads with v1 calls");
    let (name, points) = &tl[0];
    assert_eq!(name, "w");
    let counts: Vec<u64> = points.iter().map(|p| p.1).collect();
    assert_eq!(counts, vec![4, 0, 0, 1]);
    assert_eq!(points[0].0, this_hour - 3 * HOUR);
    let daily = r.v1_timeline(epoch(), 24 * HOUR).unwrap();
    assert_eq!(daily[0].1.iter().map(|p| p.1).sum::<u64>(), 5);
    assert!(matches!(
        r.v1_timeline(epoch(), Duration::from_secs(90)),
        Err(StoreError::InvalidBucket { .. })
    ));
    // A window starting inside the minute of the last v1 call, but after it: no v1 in it.
    let after = r.workloads(this_hour + Duration::from_millis(1500)).unwrap();
    let w = after.iter().find(|w| w.workload == "w").unwrap();
    assert_eq!((w.v1_count, w.v2_count), (0, 1));
}

#[test]
fn raw_window_never_exceeds_max_events() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        max_events: 100,
        max_batch: 30,
        ..cfg(dir.path())
    };
    let path = cfg.path.clone();
    let store = Store::open(cfg, run()).unwrap();
    let reader = Reader::open(&path).unwrap();
    for i in 0..1000 {
        store.record(&event("w", Some("v1"), Some(200), "/a", now()));
        if i % 97 == 0 {
            store.flush().unwrap();
            assert!(reader.event_count().unwrap() <= 100);
        }
    }
    store.close().unwrap();
    assert_eq!(reader.event_count().unwrap(), 100);
    // The newest are kept; aggregates are not limited by the window.
    assert_eq!(raw_count(&path, "SELECT min(id) FROM events"), 901);
    assert_eq!(reader.workloads(epoch()).unwrap()[0].v1_count, 1000);
}

#[test]
fn retention_deletes_old_rows() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        retention: Duration::from_secs(86400),
        ..cfg(dir.path())
    };
    let path = cfg.path.clone();
    let old = now() - Duration::from_secs(3 * 86400);
    let store = Store::open(cfg.clone(), run()).unwrap();
    for _ in 0..3 {
        store.record(&event("old", Some("v1"), Some(200), "/a", old));
    }
    store.record(&event("new", Some("v1"), Some(200), "/a", now()));
    store.close().unwrap();
    // Old raw events go in the same transaction; the aggregates at the next pass (here: open).
    assert_eq!(raw_count(&path, "SELECT count(*) FROM events"), 1);
    assert_eq!(raw_count(&path, "SELECT count(*) FROM workloads"), 2);
    // An old run, too.
    Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO runs (started_ms, last_seen_ms, host_name, agent_version, cgroup)
             VALUES (?1, ?1, 'h', '0', '/')",
            [to_ms(old)],
        )
        .unwrap();
    Store::open(cfg, run()).unwrap().close().unwrap();
    let r = Reader::open(&path).unwrap();
    let names: Vec<String> = r
        .workloads(epoch())
        .unwrap()
        .into_iter()
        .map(|w| w.workload)
        .collect();
    assert_eq!(names, vec!["new"]);
    assert_eq!(raw_count(&path, "SELECT count(*) FROM workload_buckets"), 1);
    assert_eq!(r.runs(epoch()).unwrap().len(), 2);
    assert_eq!(r.v1_timeline(epoch(), HOUR).unwrap()[0].0, "new");
}

#[test]
fn reopen_keeps_everything_and_adds_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(dir.path());
    let path = cfg.path.clone();
    let s = Store::open(cfg.clone(), run()).unwrap();
    for _ in 0..10 {
        s.record(&event("w", Some("v1"), Some(200), "/a", now()));
    }
    s.heartbeat();
    let first = s.run_id();
    s.close().unwrap();
    let s = Store::open(cfg, run()).unwrap();
    assert_ne!(s.run_id(), first);
    for _ in 0..5 {
        s.record(&event("w", Some("v2"), Some(200), "/a", now()));
    }
    s.close().unwrap();
    let r = Reader::open(&path).unwrap();
    let runs = r.runs(epoch()).unwrap();
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r.clean_stop && r.stopped.is_some()));
    assert_eq!((runs[0].events, runs[1].events), (10, 5));
    assert_eq!(runs[0].cgroup, "/system.slice");
    assert_eq!(runs[0].agent_version, env!("CARGO_PKG_VERSION"));
    assert!(runs[0].last_seen >= runs[0].started);
    let w = &r.workloads(epoch()).unwrap()[0];
    assert_eq!((w.v1_count, w.v2_count), (10, 5));
    assert_eq!(r.event_count().unwrap(), 15);
}

#[test]
fn heartbeat_alone_extends_last_seen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(dir.path());
    let path = cfg.path.clone();
    let started = now() - HOUR;
    let store = Store::open(cfg, RunInfo { started, ..run() }).unwrap();
    let r = Reader::open(&path).unwrap();
    assert_eq!(to_ms(r.runs(epoch()).unwrap()[0].last_seen), to_ms(started));
    store.heartbeat();
    store.flush().unwrap();
    let run = &r.runs(epoch()).unwrap()[0];
    assert!(
        run.last_seen > started + HOUR - Duration::from_secs(60),
        "{run:?}"
    );
    assert_eq!(run.started, from_ms(to_ms(started)));
    drop(store);
}

#[test]
fn drop_without_close_commits_but_is_not_a_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(dir.path());
    let path = cfg.path.clone();
    let s = Store::open(cfg, run()).unwrap();
    for _ in 0..7 {
        s.record(&event("w", Some("v1"), Some(200), "/a", now()));
    }
    drop(s);
    let r = Reader::open(&path).unwrap();
    let runs = r.runs(epoch()).unwrap();
    assert_eq!(runs.len(), 1);
    assert!(!runs[0].clean_stop);
    assert_eq!(runs[0].stopped, None);
    assert_eq!(r.event_count().unwrap(), 7);
}

/// Not a test on its own: the child of [`sigkill_mid_burst_leaves_consistent_db`], which
/// writes until it is killed.
#[test]
fn store_crash_child_entry() {
    let Some(path) = std::env::var_os(CRASH_CHILD_ENV) else {
        return;
    };
    let cfg = StoreConfig {
        path: PathBuf::from(path),
        flush_interval: Duration::from_millis(5),
        max_batch: 300,
        ..StoreConfig::default()
    };
    let store = Store::open(cfg, run()).unwrap();
    let start = Instant::now();
    let mut i = 0u64;
    // Bounded, in case the parent dies without killing us.
    while start.elapsed() < Duration::from_secs(60) {
        for _ in 0..100 {
            let v = if i.is_multiple_of(2) { "v1" } else { "v2" };
            store.record(&event(
                &format!("w{}", i % 7),
                Some(v),
                Some(200),
                "/a",
                now(),
            ));
            i += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn sigkill_mid_burst_leaves_consistent_db() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.sqlite");
    // Test names are module paths without the crate name.
    let module = module_path!().split_once("::").unwrap().1;
    let child_test = format!("{module}::store_crash_child_entry");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            child_test.as_str(),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD_ENV, &path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once a good number of batches are committed, while it keeps writing.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "the child committed too little");
        if let Ok(r) = Reader::open(&path)
            && r.event_count().unwrap_or(0) >= 3000
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let r = Reader::open(&path).unwrap();
    r.integrity_check().unwrap();
    let events = r.event_count().unwrap();
    assert!(events >= 3000);
    let rows = r.workloads(epoch()).unwrap();
    let counted: u64 = rows.iter().map(|w| w.v1_count + w.v2_count).sum();
    assert_eq!(counted, events, "hourly counters == raw events");
    assert_eq!(
        raw_count(&path, "SELECT sum(v1_count + v2_count) FROM workloads") as u64,
        events
    );
    let runs = r.runs(epoch()).unwrap();
    assert_eq!(runs.len(), 1);
    assert!(!runs[0].clean_stop);
    assert_eq!(
        runs[0].events, events,
        "the run's count is in the same transactions"
    );
    drop(r);

    // A restart never counts anything twice: it adds a run and nothing else.
    Store::open(
        StoreConfig {
            path: path.clone(),
            ..StoreConfig::default()
        },
        run(),
    )
    .unwrap()
    .close()
    .unwrap();
    let r = Reader::open(&path).unwrap();
    assert_eq!(r.event_count().unwrap(), events);
    let again: u64 = r
        .workloads(epoch())
        .unwrap()
        .iter()
        .map(|w| w.v1_count + w.v2_count)
        .sum();
    assert_eq!(again, events);
    assert_eq!(r.runs(epoch()).unwrap().len(), 2);
    println!("killed after {events} committed events: consistent");
}

#[test]
fn reader_reads_while_the_writer_holds_the_db() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(dir.path());
    let path = cfg.path.clone();
    let store = Store::open(cfg, run()).unwrap();
    store.record(&event("w", Some("v1"), Some(200), "/a", now()));
    store.flush().unwrap();
    let r = Reader::open(&path).unwrap();
    assert_eq!(r.workloads(epoch()).unwrap()[0].v1_count, 1);
    assert!(!r.runs(epoch()).unwrap()[0].clean_stop);
    store.record(&event("w", Some("v1"), Some(200), "/a", now()));
    store.heartbeat();
    store.flush().unwrap();
    assert_eq!(r.workloads(epoch()).unwrap()[0].v1_count, 2);
    assert_eq!(r.recent_events(1).unwrap()[0]["workload"], "w");
    store.close().unwrap();
    assert!(r.runs(epoch()).unwrap()[0].clean_stop);
}

#[test]
fn reader_says_when_the_file_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.sqlite");
    let e = Reader::open(&path).err().unwrap();
    assert!(matches!(e, StoreError::Missing { .. }), "{e}");
    assert!(e.to_string().contains("does not exist"), "{e}");
    assert!(!path.exists(), "a reader never creates the file");
}

#[test]
fn reader_and_store_say_when_the_file_is_corrupted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.sqlite");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let e = Reader::open(&path).err().unwrap();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("move it aside"), "{e}");
    let e = Store::open(
        StoreConfig {
            path: path.clone(),
            ..StoreConfig::default()
        },
        run(),
    )
    .err()
    .unwrap();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
}

#[test]
fn reader_says_when_the_file_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(dir.path());
    let path = cfg.path.clone();
    Store::open(cfg, run()).unwrap().close().unwrap();
    let holder = Connection::open(&path).unwrap();
    holder
        .execute_batch(
            "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;
             INSERT INTO meta (key, value) VALUES ('lock-test', '1');",
        )
        .unwrap();
    let start = Instant::now();
    let e = Reader::open_with_timeout(&path, Duration::from_millis(200))
        .err()
        .unwrap();
    assert!(matches!(e, StoreError::Locked { .. }), "{e:?}");
    assert!(e.to_string().contains("database is locked"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(5));
    holder.execute_batch("ROLLBACK").unwrap();
}

#[test]
fn newer_schema_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(dir.path());
    let path = cfg.path.clone();
    Store::open(cfg.clone(), run()).unwrap().close().unwrap();
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let e = Reader::open(&path).err().unwrap();
    assert!(
        matches!(e, StoreError::NewerSchema { found: 99, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("newer"), "{e}");
    let e = Store::open(cfg, run()).err().unwrap();
    assert!(
        matches!(e, StoreError::NewerSchema { found: 99, .. }),
        "{e}"
    );
}

#[test]
fn another_sqlite_file_is_not_an_inventory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.sqlite");
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let e = Reader::open(&path).err().unwrap();
    assert!(matches!(e, StoreError::NotInventory { .. }), "{e}");
    let e = Store::open(
        StoreConfig {
            path,
            ..StoreConfig::default()
        },
        run(),
    )
    .err()
    .unwrap();
    assert!(matches!(e, StoreError::NotInventory { .. }), "{e}");
}

#[test]
fn store_creates_missing_directories_and_uses_wal() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(dir.path());
    let path = cfg.path.clone();
    Store::open(cfg, run()).unwrap().close().unwrap();
    let c = Connection::open(&path).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(
        schema::user_version(&c, &path).unwrap(),
        schema::SCHEMA_VERSION
    );
}

#[test]
fn full_queue_drops_and_counts_instead_of_blocking() {
    let dir = tempfile::tempdir().unwrap();
    // A queue of 4 and a writer that waits 2 s before committing its first batch of 1.
    let cfg = StoreConfig {
        max_batch: 1,
        flush_interval: Duration::from_secs(2),
        ..cfg(dir.path())
    };
    let store = Store::open(cfg, run()).unwrap();
    let start = Instant::now();
    for _ in 0..1000 {
        store.record(&event("w", Some("v1"), Some(200), "/a", now()));
    }
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "record() never waits"
    );
    let stats = store.close().unwrap();
    assert!(stats.dropped > 0);
    assert_eq!(stats.events + stats.dropped, 1000);
}

#[test]
fn events_without_workload_or_time_still_count() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(dir.path());
    let path = cfg.path.clone();
    let store = Store::open(cfg, run()).unwrap();
    store.record(&json!({"imds.version": null, "imds.unparsed": true}));
    store.close().unwrap();
    let w = &Reader::open(&path).unwrap().workloads(epoch()).unwrap()[0];
    assert_eq!(
        (w.workload.as_str(), w.v1_count, w.v2_count),
        ("unknown", 0, 0)
    );
    assert!(w.last_seen <= now() && w.last_seen > now() - HOUR);
}
