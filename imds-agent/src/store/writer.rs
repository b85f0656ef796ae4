//! The writer thread: batches events into transactions that update the raw window, the
//! aggregates and the hourly counters together.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::Ordering,
        mpsc::{Receiver, RecvTimeoutError},
    },
    time::{Duration, Instant, SystemTime},
};

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::{Map, Value};

use super::{
    BUCKET_MS, Counters, EXAMPLE_PATHS, Msg, RETENTION_EVERY, RunInfo, StoreConfig, StoreError,
    to_ms,
};

/// The workload of events that carry none.
pub(crate) const UNKNOWN_WORKLOAD: &str = "unknown";

/// Event keys (exact) kept in a workload's identity, as last seen.
const IDENTITY_KEYS: &[&str] = &[
    "process.executable.name",
    "process.executable.path",
    "process.command_line",
    "process.owner",
    "cgroup.path",
    "user_agent.original",
];
/// Event key prefixes kept in a workload's identity.
const IDENTITY_PREFIXES: &[&str] = &[
    "container.",
    "k8s.",
    "systemd.",
    "jupyter.",
    "aws.",
    "databricks.",
    "airflow.",
];

/// Inserts the run and returns its id.
pub(crate) fn start_run(
    conn: &mut Connection,
    path: &Path,
    run: &RunInfo,
) -> Result<i64, StoreError> {
    let RunInfo {
        started,
        host_name,
        agent_version,
        cgroup,
    } = run;
    let started = to_ms(*started);
    conn.execute(
        "INSERT INTO runs (started_ms, last_seen_ms, host_name, agent_version, cgroup)
         VALUES (?1, ?1, ?2, ?3, ?4)",
        params![started, host_name, agent_version, cgroup],
    )
    .map_err(|e| StoreError::sqlite(path, "recording the run", e))?;
    Ok(conn.last_insert_rowid())
}

/// Deletes events, counters, workloads and runs (except `run_id`) older than `retention`.
pub(crate) fn retention(
    conn: &mut Connection,
    path: &Path,
    retention: Duration,
    run_id: i64,
    now: SystemTime,
) -> Result<(), StoreError> {
    let err = |e| StoreError::sqlite(path, "deleting data past the retention", e);
    let cutoff =
        to_ms(now).saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
    let tx = conn.transaction().map_err(err)?;
    tx.execute("DELETE FROM events WHERE time_ms < ?1", [cutoff])
        .map_err(err)?;
    tx.execute(
        "DELETE FROM workload_buckets WHERE bucket_ms + ?2 <= ?1",
        [cutoff, BUCKET_MS],
    )
    .map_err(err)?;
    tx.execute("DELETE FROM workloads WHERE last_seen_ms < ?1", [cutoff])
        .map_err(err)?;
    tx.execute(
        "DELETE FROM runs WHERE last_seen_ms < ?1 AND id != ?2",
        [cutoff, run_id],
    )
    .map_err(err)?;
    tx.commit().map_err(err)
}

/// What one event contributes, read from its JSON.
struct Parsed {
    time_ms: i64,
    workload: String,
    json: String,
    version: Option<String>,
    status: Option<u16>,
    unanswered_token: bool,
    path: Option<String>,
    sdk: Option<(String, Option<String>)>,
    cause: Option<(String, Option<String>)>,
    identity: Map<String, Value>,
}

fn parse(event: &Value, now_ms: i64) -> Parsed {
    let s = |k: &str| event.get(k).and_then(Value::as_str);
    let time_ms = s("time")
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())
        .unwrap_or(now_ms);
    let status = event
        .get("http.response.status_code")
        .and_then(Value::as_u64)
        .and_then(|v| u16::try_from(v).ok());
    let unanswered_token = s("imds.request.kind") == Some("token")
        && event.get("imds.unanswered").and_then(Value::as_bool) == Some(true);
    let identity = match event {
        Value::Object(m) => m
            .iter()
            .filter(|(k, _)| {
                IDENTITY_KEYS.contains(&k.as_str())
                    || IDENTITY_PREFIXES.iter().any(|p| k.starts_with(p))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        _ => Map::new(),
    };
    Parsed {
        time_ms,
        workload: s("workload").unwrap_or(UNKNOWN_WORKLOAD).to_owned(),
        json: event.to_string(),
        version: s("imds.version").map(str::to_owned),
        status,
        unanswered_token,
        path: s("url.path").map(str::to_owned),
        sdk: s("imds.sdk.name").map(|n| (n.to_owned(), s("imds.sdk.version").map(str::to_owned))),
        cause: s("imds.v1_cause").map(|c| (c.to_owned(), s("imds.v1_advice").map(str::to_owned))),
        identity,
    }
}

/// Hourly counters of one workload.
#[derive(Default)]
struct Counts {
    v1: i64,
    v2: i64,
    other: i64,
    rejected: i64,
    unanswered_token: i64,
}

impl Counts {
    fn add(&mut self, p: &Parsed) {
        match p.version.as_deref() {
            Some("v1") => self.v1 += 1,
            Some("v2") => self.v2 += 1,
            _ => self.other += 1,
        }
        self.rejected += i64::from(p.status == Some(401));
        self.unanswered_token += i64::from(p.unanswered_token);
    }
}

/// One workload's share of a batch.
#[derive(Default)]
struct Delta {
    counts: Counts,
    first_ms: i64,
    last_ms: i64,
    last_v1_ms: Option<i64>,
    /// Latest (by event time) values seen in the batch.
    identity: Option<(i64, Map<String, Value>)>,
    sdk: Option<(i64, (String, Option<String>))>,
    cause: Option<(i64, (String, Option<String>))>,
    status: Option<(i64, u16)>,
    paths: Vec<String>,
}

fn latest<T>(slot: &mut Option<(i64, T)>, at: i64, value: Option<T>) {
    if let Some(v) = value
        && slot.as_ref().is_none_or(|(t, _)| *t <= at)
    {
        *slot = Some((at, v));
    }
}

impl Delta {
    fn add(&mut self, p: &Parsed) {
        if self.counts.v1 + self.counts.v2 + self.counts.other == 0 {
            self.first_ms = p.time_ms;
            self.last_ms = p.time_ms;
        }
        self.counts.add(p);
        self.first_ms = self.first_ms.min(p.time_ms);
        self.last_ms = self.last_ms.max(p.time_ms);
        if p.version.as_deref() == Some("v1") {
            self.last_v1_ms = Some(self.last_v1_ms.map_or(p.time_ms, |t| t.max(p.time_ms)));
        }
        let identity = (!p.identity.is_empty()).then(|| p.identity.clone());
        latest(&mut self.identity, p.time_ms, identity);
        latest(&mut self.sdk, p.time_ms, p.sdk.clone());
        latest(&mut self.cause, p.time_ms, p.cause.clone());
        latest(&mut self.status, p.time_ms, p.status);
        if let Some(path) = &p.path
            && self.paths.len() < EXAMPLE_PATHS
            && !self.paths.contains(path)
        {
            self.paths.push(path.clone());
        }
    }
}

pub(crate) struct Writer {
    conn: Connection,
    cfg: StoreConfig,
    run_id: i64,
    counters: Arc<Counters>,
}

impl Writer {
    pub(crate) fn new(
        conn: Connection,
        cfg: StoreConfig,
        run_id: i64,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            conn,
            cfg,
            run_id,
            counters,
        }
    }

    fn path(&self) -> PathBuf {
        self.cfg.path.clone()
    }

    /// Runs until [`Msg::Close`] or until every sender is gone.
    pub(crate) fn run(mut self, rx: Receiver<Msg>) -> Result<(), StoreError> {
        let max_batch = self.cfg.max_batch.max(1);
        let mut next_retention = Instant::now() + RETENTION_EVERY;
        loop {
            // Wait for something to do, or for the next retention pass.
            let first =
                match rx.recv_timeout(next_retention.saturating_duration_since(Instant::now())) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return Ok(()),
                };
            if Instant::now() >= next_retention {
                next_retention = Instant::now() + RETENTION_EVERY;
                let path = self.path();
                if let Err(error) = retention(
                    &mut self.conn,
                    &path,
                    self.cfg.retention,
                    self.run_id,
                    SystemTime::now(),
                ) {
                    tracing::warn!(%error, "inventory retention pass failed");
                } else {
                    self.counters.transactions.fetch_add(1, Ordering::Relaxed);
                }
            }
            let Some(first) = first else { continue };

            let mut batch = Vec::new();
            let mut flushes = Vec::new();
            let mut close = false;
            let mut disconnected = false;
            let deadline = Instant::now() + self.cfg.flush_interval;
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Event(e) => batch.push(e),
                    Msg::Heartbeat => {}
                    Msg::Flush(reply) => {
                        flushes.push(reply);
                        break;
                    }
                    Msg::Close => {
                        close = true;
                        break;
                    }
                }
                if batch.len() >= max_batch {
                    break;
                }
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(m) => next = Some(m),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => disconnected = true,
                }
            }
            let result = self.commit(&batch, close);
            if let Err(error) = &result {
                self.counters
                    .dropped
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                tracing::warn!(%error, events = batch.len(), "inventory batch not stored");
            }
            for reply in flushes {
                let _ = reply.send(match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(StoreError::BatchFailed {
                        detail: e.to_string(),
                    }),
                });
            }
            if close {
                return result;
            }
            if disconnected {
                return Ok(());
            }
        }
    }

    /// One transaction: the events, their aggregates and counters, the run's `last_seen`
    /// (and its clean stop when `close`), and the raw window's rotation.
    fn commit(&mut self, batch: &[Value], close: bool) -> Result<(), StoreError> {
        let path = self.path();
        let err = |what| {
            let path = path.clone();
            move |e| StoreError::sqlite(&path, what, e)
        };
        let now_ms = to_ms(SystemTime::now());
        let parsed: Vec<Parsed> = batch.iter().map(|e| parse(e, now_ms)).collect();
        let tx = self
            .conn
            .transaction()
            .map_err(err("starting a transaction"))?;
        insert_events(&tx, &parsed, self.run_id).map_err(err("inserting events"))?;
        update_aggregates(&tx, &parsed).map_err(err("updating aggregates"))?;
        rotate(&tx, self.cfg.max_events, self.cfg.retention, now_ms)
            .map_err(err("rotating events"))?;
        tx.execute(
            "UPDATE runs SET last_seen_ms = max(last_seen_ms, ?2), events = events + ?3,
                 stopped_ms = CASE WHEN ?4 THEN ?2 ELSE stopped_ms END,
                 clean_stop = CASE WHEN ?4 THEN 1 ELSE clean_stop END
             WHERE id = ?1",
            params![self.run_id, now_ms, parsed.len() as i64, close],
        )
        .map_err(err("updating the run"))?;
        tx.commit().map_err(err("committing"))?;
        self.counters.transactions.fetch_add(1, Ordering::Relaxed);
        self.counters
            .events
            .fetch_add(parsed.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

fn insert_events(tx: &Transaction<'_>, parsed: &[Parsed], run_id: i64) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO events (time_ms, run_id, workload, json) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for p in parsed {
        stmt.execute(params![p.time_ms, run_id, p.workload, p.json])?;
    }
    Ok(())
}

fn update_aggregates(tx: &Transaction<'_>, parsed: &[Parsed]) -> rusqlite::Result<()> {
    let mut deltas: HashMap<&str, Delta> = HashMap::new();
    let mut buckets: BTreeMap<(&str, i64), Counts> = BTreeMap::new();
    for p in parsed {
        deltas.entry(&p.workload).or_default().add(p);
        let bucket = p.time_ms.div_euclid(BUCKET_MS) * BUCKET_MS;
        buckets.entry((&p.workload, bucket)).or_default().add(p);
    }
    let mut bucket_stmt = tx.prepare_cached(
        "INSERT INTO workload_buckets (workload, bucket_ms, v1, v2, other, rejected, unanswered_token)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (workload, bucket_ms) DO UPDATE SET
             v1 = v1 + excluded.v1, v2 = v2 + excluded.v2, other = other + excluded.other,
             rejected = rejected + excluded.rejected,
             unanswered_token = unanswered_token + excluded.unanswered_token",
    )?;
    for ((workload, bucket), c) in &buckets {
        bucket_stmt.execute(params![
            workload,
            bucket,
            c.v1,
            c.v2,
            c.other,
            c.rejected,
            c.unanswered_token
        ])?;
    }
    let mut select =
        tx.prepare_cached("SELECT example_paths FROM workloads WHERE workload = ?1")?;
    // Values "as seen last" replace the stored ones only when the batch's are newer.
    let mut upsert = tx.prepare_cached(
        "INSERT INTO workloads (workload, identity, sdk_name, sdk_version, v1_cause, v1_advice,
             v1_count, v2_count, other_count, rejected_count, unanswered_token_requests,
             first_seen_ms, last_seen_ms, last_v1_seen_ms, example_paths, last_status)
         VALUES (?1, coalesce(?2, '{}'), ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
         ON CONFLICT (workload) DO UPDATE SET
             identity = CASE WHEN ?2 IS NOT NULL AND ?17 >= last_seen_ms THEN ?2 ELSE identity END,
             sdk_name = CASE WHEN ?3 IS NOT NULL AND ?18 >= last_seen_ms THEN ?3 ELSE sdk_name END,
             sdk_version = CASE WHEN ?3 IS NOT NULL AND ?18 >= last_seen_ms THEN ?4 ELSE sdk_version END,
             v1_cause = CASE WHEN ?5 IS NOT NULL AND ?19 >= last_seen_ms THEN ?5 ELSE v1_cause END,
             v1_advice = CASE WHEN ?5 IS NOT NULL AND ?19 >= last_seen_ms THEN ?6 ELSE v1_advice END,
             last_status = CASE WHEN ?16 IS NOT NULL AND ?20 >= last_seen_ms THEN ?16 ELSE last_status END,
             v1_count = v1_count + excluded.v1_count,
             v2_count = v2_count + excluded.v2_count,
             other_count = other_count + excluded.other_count,
             rejected_count = rejected_count + excluded.rejected_count,
             unanswered_token_requests = unanswered_token_requests + excluded.unanswered_token_requests,
             first_seen_ms = min(first_seen_ms, excluded.first_seen_ms),
             last_v1_seen_ms = CASE
                 WHEN last_v1_seen_ms IS NULL THEN excluded.last_v1_seen_ms
                 WHEN excluded.last_v1_seen_ms IS NULL THEN last_v1_seen_ms
                 ELSE max(last_v1_seen_ms, excluded.last_v1_seen_ms) END,
             example_paths = excluded.example_paths,
             last_seen_ms = max(last_seen_ms, excluded.last_seen_ms)",
    )?;
    for (workload, d) in deltas {
        let stored: Option<String> = select
            .query_row([workload], |r| r.get::<_, String>(0))
            .optional()?;
        let mut paths: Vec<String> = stored
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        for p in d.paths {
            if paths.len() >= EXAMPLE_PATHS {
                break;
            }
            if !paths.contains(&p) {
                paths.push(p);
            }
        }
        let paths = Value::from(paths).to_string();
        let (identity_at, identity) = match d.identity {
            Some((t, m)) => (t, Some(Value::Object(m).to_string())),
            None => (0, None),
        };
        let (sdk_at, sdk_name, sdk_version) = match d.sdk {
            Some((t, (n, v))) => (t, Some(n), v),
            None => (0, None, None),
        };
        let (cause_at, cause, advice) = match d.cause {
            Some((t, (c, a))) => (t, Some(c), a),
            None => (0, None, None),
        };
        let (status_at, status) = match d.status {
            Some((t, s)) => (t, Some(s)),
            None => (0, None),
        };
        let c = &d.counts;
        upsert.execute(params![
            workload,
            identity,
            sdk_name,
            sdk_version,
            cause,
            advice,
            c.v1,
            c.v2,
            c.other,
            c.rejected,
            c.unanswered_token,
            d.first_ms,
            d.last_ms,
            d.last_v1_ms,
            paths,
            status,
            identity_at,
            sdk_at,
            cause_at,
            status_at,
        ])?;
    }
    Ok(())
}

/// Keeps at most `max_events` raw events, none older than the retention.
fn rotate(
    tx: &Transaction<'_>,
    max_events: u64,
    retention: Duration,
    now_ms: i64,
) -> rusqlite::Result<()> {
    let cutoff = now_ms.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
    tx.prepare_cached("DELETE FROM events WHERE time_ms < ?1")?
        .execute([cutoff])?;
    if max_events == 0 {
        tx.execute("DELETE FROM events", [])?;
    } else {
        // Ids only grow, so at most `max_events` ids lie above max(id) - max_events: the
        // bound holds without counting rows (gaps left by retention only keep fewer).
        tx.prepare_cached("DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - ?1")?
            .execute([i64::try_from(max_events).unwrap_or(i64::MAX)])?;
    }
    Ok(())
}
