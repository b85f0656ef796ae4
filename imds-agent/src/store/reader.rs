//! Read-only access for `imds-agent report`, safe while the agent writes (WAL).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use rusqlite::{Connection, OpenFlags, Row};
use serde_json::Value;

use super::{BUCKET_MS, LIVE_MS, StoreError, from_ms, schema, to_ms};

/// How long a reader waits for a lock before saying the database is locked.
pub const READER_BUSY_TIMEOUT: Duration = Duration::from_millis(1500);

/// One workload, as `imds-agent report` lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadRow {
    pub workload: String,
    /// `container.id`, `k8s.*`, `systemd.*`, `jupyter.*`, `process.executable.*`, the last
    /// `process.command_line`, ... from the latest event that had them.
    pub identity: Value,
    pub sdk_name: Option<String>,
    pub sdk_version: Option<String>,
    pub v1_cause: Option<String>,
    pub v1_advice: Option<String>,
    /// Counts in the window: the hours that overlap it (exact when `since` is on the hour).
    pub v1_count: u64,
    pub v2_count: u64,
    /// Responses 401 (a token that was not accepted).
    pub rejected_count: u64,
    /// Token PUTs that got no answer (typically the hop limit).
    pub unanswered_token_requests: u64,
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
    pub last_v1_seen: Option<SystemTime>,
    /// Up to 5 distinct `url.path` values, the first ones seen.
    pub example_paths: Vec<String>,
    pub last_status: Option<u16>,
}

/// One workload's v1 calls: `(bucket start, count)` per bucket, oldest first.
pub type V1Series = (String, Vec<(SystemTime, u64)>);

/// One run of the agent.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRow {
    pub id: i64,
    pub started: SystemTime,
    /// The last heartbeat or batch: the run observed everything up to here.
    pub last_seen: SystemTime,
    /// When it stopped, if it stopped cleanly (otherwise it crashed, was killed, or runs).
    pub stopped: Option<SystemTime>,
    pub clean_stop: bool,
    pub host_name: String,
    pub agent_version: String,
    pub cgroup: String,
    pub events: u64,
}

/// A read-only view of the inventory.
pub struct Reader {
    conn: Connection,
    path: PathBuf,
}

impl Reader {
    /// Opens the inventory read-only. Says clearly when the file is missing, locked,
    /// corrupted, not an inventory, or of a schema this build does not read.
    pub fn open(path: &Path) -> Result<Reader, StoreError> {
        Self::open_with_timeout(path, READER_BUSY_TIMEOUT)
    }

    /// [`Reader::open`] waiting at most `busy` for a lock.
    pub fn open_with_timeout(path: &Path, busy: Duration) -> Result<Reader, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            Connection::open_with_flags(path, flags).map_err(|e| {
                match StoreError::sqlite(path, "opening", e) {
                    StoreError::Sqlite { path, source, .. } => StoreError::Open { path, source },
                    other => other,
                }
            })?;
        conn.busy_timeout(busy)
            .map_err(|e| StoreError::sqlite(path, "setting the busy timeout", e))?;
        schema::check_readable(&conn, path)?;
        Ok(Reader {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, what: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |e| StoreError::sqlite(&self.path, what, e)
    }

    /// Workloads seen since `since`, most v1 calls first. Counts come from the per-minute
    /// counters of the minutes overlapping the window (a workload whose last v1 call came
    /// before `since` has none in the window, exactly); names, identity, SDK and cause are as
    /// last seen; `first_seen` is the first time ever (within the retention).
    pub fn workloads(&self, since: SystemTime) -> Result<Vec<WorkloadRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT w.workload, w.identity, w.sdk_name, w.sdk_version, w.v1_cause, w.v1_advice,
                    coalesce(b.v1, 0), coalesce(b.v2, 0), coalesce(b.rejected, 0),
                    coalesce(b.unanswered_token, 0), w.first_seen_ms, w.last_seen_ms,
                    w.last_v1_seen_ms, w.example_paths, w.last_status
                 FROM workloads w LEFT JOIN (
                    SELECT workload, sum(v1) AS v1, sum(v2) AS v2, sum(rejected) AS rejected,
                           sum(unanswered_token) AS unanswered_token
                    FROM workload_buckets WHERE bucket_ms + ?2 > ?1 GROUP BY workload
                 ) b ON b.workload = w.workload
                 WHERE w.last_seen_ms >= ?1
                 ORDER BY coalesce(b.v1, 0) DESC, w.last_seen_ms DESC, w.workload",
            )
            .map_err(self.err("reading workloads"))?;
        let rows = stmt
            .query_map([to_ms(since), BUCKET_MS], workload_row)
            .map_err(self.err("reading workloads"))?;
        let mut rows: Vec<WorkloadRow> = rows
            .collect::<Result<_, _>>()
            .map_err(self.err("reading workloads"))?;
        // The first minute may start before the window: v1 calls there are not in it.
        for w in &mut rows {
            if w.last_v1_seen.is_none_or(|t| t < since) {
                w.v1_count = 0;
            }
        }
        rows.sort_by(|a, b| {
            b.v1_count
                .cmp(&a.v1_count)
                .then(b.last_seen.cmp(&a.last_seen))
                .then(a.workload.cmp(&b.workload))
        });
        Ok(rows)
    }

    /// Agent runs that overlap the window, oldest first.
    pub fn runs(&self, since: SystemTime) -> Result<Vec<RunRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, started_ms, last_seen_ms, stopped_ms, clean_stop, host_name,
                    agent_version, cgroup, events
                 FROM runs WHERE max(last_seen_ms, coalesce(stopped_ms, 0)) >= ?1
                    OR (stopped_ms IS NULL AND last_seen_ms >= ?2) ORDER BY id",
            )
            .map_err(self.err("reading runs"))?;
        let now_ms = to_ms(std::time::SystemTime::now());
        let rows = stmt
            .query_map([to_ms(since), now_ms - LIVE_MS], |r| {
                let last_seen_ms: i64 = r.get(2)?;
                let stopped: Option<i64> = r.get(3)?;
                // A run still heartbeating watches up to now, not only to its last write.
                let live = stopped.is_none() && last_seen_ms >= now_ms - LIVE_MS;
                Ok(RunRow {
                    id: r.get(0)?,
                    started: from_ms(r.get(1)?),
                    last_seen: from_ms(if live { now_ms.max(last_seen_ms) } else { last_seen_ms }),
                    stopped: stopped.map(from_ms),
                    clean_stop: r.get(4)?,
                    host_name: r.get(5)?,
                    agent_version: r.get(6)?,
                    cgroup: r.get(7)?,
                    events: r.get::<_, i64>(8)?.max(0).unsigned_abs(),
                })
            })
            .map_err(self.err("reading runs"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.err("reading runs"))
    }

    /// v1 calls per workload per `bucket` (a whole number of minutes, aligned to the epoch, so
    /// 24 h buckets are UTC days), from the hourly counters. Every series covers the same
    /// buckets, from the first with data in the window to the current one, zeros included.
    pub fn v1_timeline(
        &self,
        since: SystemTime,
        bucket: Duration,
    ) -> Result<Vec<V1Series>, StoreError> {
        let bucket_ms = i64::try_from(bucket.as_millis()).unwrap_or(0);
        if bucket_ms <= 0 || bucket_ms % BUCKET_MS != 0 {
            return Err(StoreError::InvalidBucket { bucket });
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT workload, bucket_ms, v1 FROM workload_buckets
                 WHERE v1 > 0 AND bucket_ms + ?2 > ?1 ORDER BY workload, bucket_ms",
            )
            .map_err(self.err("reading v1 counters"))?;
        let since_ms = to_ms(since);
        let rows = stmt
            .query_map([since_ms, BUCKET_MS], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(self.err("reading v1 counters"))?;
        let mut series: BTreeMap<String, BTreeMap<i64, u64>> = BTreeMap::new();
        let (mut first, mut last) = (i64::MAX, i64::MIN);
        for row in rows {
            let (workload, hour, v1) = row.map_err(self.err("reading v1 counters"))?;
            let b = hour.div_euclid(bucket_ms) * bucket_ms;
            first = first.min(b);
            last = last.max(b);
            *series.entry(workload).or_default().entry(b).or_default() += v1.max(0).unsigned_abs();
        }
        if series.is_empty() {
            return Ok(Vec::new());
        }
        let now = to_ms(SystemTime::now()).div_euclid(bucket_ms) * bucket_ms;
        let last = last.max(now);
        Ok(series
            .into_iter()
            .map(|(workload, counts)| {
                let points = (0..)
                    .map(|i| first + i * bucket_ms)
                    .take_while(|b| *b <= last)
                    .map(|b| (from_ms(b), counts.get(&b).copied().unwrap_or(0)))
                    .collect();
                (workload, points)
            })
            .collect())
    }

    /// Runs SQLite's integrity check; `Ok` when the file is sound.
    pub fn integrity_check(&self) -> Result<(), StoreError> {
        let result: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(self.err("checking integrity"))?;
        if result == "ok" {
            Ok(())
        } else {
            Err(StoreError::Corrupt {
                path: self.path.clone(),
                detail: result,
            })
        }
    }

    /// How many raw events the window holds.
    pub fn event_count(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))
            .map(|n| n.max(0).unsigned_abs())
            .map_err(self.err("counting events"))
    }

    /// The newest raw events (as the agent printed them), newest first.
    pub fn recent_events(&self, limit: usize) -> Result<Vec<Value>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT json FROM events ORDER BY id DESC LIMIT ?1")
            .map_err(self.err("reading events"))?;
        let rows = stmt
            .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                r.get::<_, String>(0)
            })
            .map_err(self.err("reading events"))?;
        let mut out = Vec::new();
        for row in rows {
            let json = row.map_err(self.err("reading events"))?;
            out.push(serde_json::from_str(&json).unwrap_or(Value::String(json)));
        }
        Ok(out)
    }
}

fn workload_row(r: &Row<'_>) -> rusqlite::Result<WorkloadRow> {
    let count = |i| r.get::<_, i64>(i).map(|n| n.max(0).unsigned_abs());
    let identity: String = r.get(1)?;
    let paths: String = r.get(13)?;
    Ok(WorkloadRow {
        workload: r.get(0)?,
        identity: serde_json::from_str(&identity).unwrap_or(Value::Null),
        sdk_name: r.get(2)?,
        sdk_version: r.get(3)?,
        v1_cause: r.get(4)?,
        v1_advice: r.get(5)?,
        v1_count: count(6)?,
        v2_count: count(7)?,
        rejected_count: count(8)?,
        unanswered_token_requests: count(9)?,
        first_seen: from_ms(r.get(10)?),
        last_seen: from_ms(r.get(11)?),
        last_v1_seen: r.get::<_, Option<i64>>(12)?.map(from_ms),
        example_paths: serde_json::from_str(&paths).unwrap_or_default(),
        last_status: r
            .get::<_, Option<i64>>(14)?
            .and_then(|s| u16::try_from(s).ok()),
    })
}
