//! The inventory: every reported request, kept in an embedded SQLite database so that
//! `imds-agent report` can say which workloads still use IMDSv1 over days, not only while
//! someone watches stdout.
//!
//! One writer thread owns the only read-write connection. [`Store::record`] hands it the JSON
//! object the agent printed through a bounded channel and never waits for I/O; the writer
//! groups what arrives into one transaction per `flush_interval` or `max_batch` events. Each
//! transaction updates the raw event window (`events`), the per-workload aggregate
//! (`workloads`), the per-workload hourly counters (`workload_buckets`) and the run's
//! `last_seen` together, so a crash leaves either all of a batch or none of it, and nothing
//! is ever replayed (nothing can be counted twice). The database is in WAL mode, so
//! [`Reader`] (opened read-only) can read while the agent writes.
//!
//! Events are stored as the agent printed them: they are already redacted (no token value
//! reaches them), and the store adds nothing.

mod error;
mod reader;
mod schema;
mod writer;

#[cfg(test)]
mod tests;

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{self, SyncSender, TrySendError},
    },
    thread::JoinHandle,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

pub use error::StoreError;
pub use reader::{READER_BUSY_TIMEOUT, Reader, RunRow, V1Series, WorkloadRow};

/// Where the agent keeps its inventory unless told otherwise.
pub const DEFAULT_PATH: &str = "/var/lib/imds-agent/inventory.sqlite";
/// How long events, counters and runs are kept.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// How many raw events the `events` table keeps (the oldest go first).
pub const DEFAULT_MAX_EVENTS: u64 = 100_000;
/// The longest an event waits in memory before its transaction commits.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(500);
/// The most events one transaction carries.
pub const DEFAULT_MAX_BATCH: usize = 5000;
/// Queued events allowed per `max_batch` before [`Store::record`] starts dropping.
const QUEUE_BATCHES: usize = 4;
/// The queue never holds more than this many messages, whatever `max_batch` says.
const MAX_QUEUE: usize = 1 << 20;
/// How often the writer deletes what is older than the retention when idle or busy.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// Counters are kept per minute.
pub(crate) const BUCKET_MS: i64 = 60_000;
/// A run that has not stopped and wrote within this long is still watching (heartbeats
/// come every 10 s).
pub(crate) const LIVE_MS: i64 = 30_000;
/// Distinct `url.path` values kept per workload.
pub(crate) const EXAMPLE_PATHS: usize = 5;

/// Where and how much to keep.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// The database file; its directory is created if missing. Default [`DEFAULT_PATH`].
    pub path: PathBuf,
    /// Events, hourly counters, workloads and runs older than this are deleted.
    /// Default 30 days.
    pub retention: Duration,
    /// Raw events kept (aggregates and counters are not limited by this). Default 100,000.
    pub max_events: u64,
    /// At most this long between an event's arrival and its commit. Default 500 ms.
    pub flush_interval: Duration,
    /// At most this many events per transaction. Default 5000.
    pub max_batch: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from(DEFAULT_PATH),
            retention: DEFAULT_RETENTION,
            max_events: DEFAULT_MAX_EVENTS,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            max_batch: DEFAULT_MAX_BATCH,
        }
    }
}

/// What the store records about one run of the agent.
#[derive(Clone, Debug)]
pub struct RunInfo {
    pub started: SystemTime,
    pub host_name: String,
    pub agent_version: String,
    /// The cgroup the agent observes (its `--cgroup`).
    pub cgroup: String,
}

/// The host name, as the kernel knows it.
const HOSTNAME_FILE: &str = "/proc/sys/kernel/hostname";

/// This host's name, as the kernel knows it.
pub fn host_name() -> String {
    std::fs::read_to_string(HOSTNAME_FILE)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

impl RunInfo {
    /// A run starting now on this host, by this build of the agent.
    pub fn current(cgroup: impl Into<String>) -> Self {
        Self {
            started: SystemTime::now(),
            host_name: host_name(),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            cgroup: cgroup.into(),
        }
    }
}

/// What a store did, returned by [`Store::close`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Events committed.
    pub events: u64,
    /// Write transactions committed by the writer thread.
    pub transactions: u64,
    /// Events not stored: the queue was full, or their transaction failed.
    pub dropped: u64,
}

/// Shared between [`Store`] and its writer thread.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub events: AtomicU64,
    pub transactions: AtomicU64,
    pub dropped: AtomicU64,
    /// The queue-full warning was logged.
    pub warned_full: AtomicBool,
}

impl Counters {
    fn stats(&self) -> StoreStats {
        StoreStats {
            events: self.events.load(Ordering::Relaxed),
            transactions: self.transactions.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// What the writer thread is asked to do.
pub(crate) enum Msg {
    Event(serde_json::Value),
    Heartbeat,
    /// Commit everything queued before this, then answer.
    Flush(SyncSender<Result<(), StoreError>>),
    /// Commit everything queued, mark the run stopped cleanly, and exit.
    Close,
}

/// The inventory, written by its own thread. Dropping it without [`Store::close`] commits
/// what is queued but leaves the run marked as not stopped cleanly.
pub struct Store {
    tx: Option<SyncSender<Msg>>,
    writer: Option<JoinHandle<Result<(), StoreError>>>,
    counters: Arc<Counters>,
    run_id: i64,
    path: PathBuf,
}

impl Store {
    /// Opens the database (creating its directory and file, switching to WAL, applying
    /// migrations, deleting what is past the retention), records a new run and starts the
    /// writer thread.
    pub fn open(cfg: StoreConfig, run: RunInfo) -> Result<Store, StoreError> {
        let mut conn = schema::open_writable(&cfg.path)?;
        let run_id = writer::start_run(&mut conn, &cfg.path, &run)?;
        writer::retention(
            &mut conn,
            &cfg.path,
            cfg.retention,
            run_id,
            SystemTime::now(),
        )?;
        let max_batch = cfg.max_batch.max(1);
        let (tx, rx) = mpsc::sync_channel(max_batch.saturating_mul(QUEUE_BATCHES).min(MAX_QUEUE));
        let counters = Arc::new(Counters::default());
        let path = cfg.path.clone();
        let w = writer::Writer::new(conn, cfg, run_id, Arc::clone(&counters));
        let writer = std::thread::Builder::new()
            .name("imds-store".into())
            .spawn(move || w.run(rx))
            .map_err(|source| StoreError::Thread { source })?;
        Ok(Store {
            tx: Some(tx),
            writer: Some(writer),
            counters,
            run_id,
            path,
        })
    }

    /// This run's id in the `runs` table.
    pub fn run_id(&self) -> i64 {
        self.run_id
    }

    /// Queues one event (the JSON object the agent printed). Never waits: when the queue is
    /// full the event is counted as dropped (and that is logged once).
    pub fn record(&self, event: &serde_json::Value) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(Msg::Event(event.clone())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.drop_one("the inventory queue is full"),
            Err(TrySendError::Disconnected(_)) => self.drop_one("the inventory writer stopped"),
        }
    }

    fn drop_one(&self, why: &str) {
        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        if !self.counters.warned_full.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                path = %self.path.display(),
                "{why}: events are being dropped from the inventory (stdout still has them); \
                 raise the batch size or check the disk"
            );
        }
    }

    /// Extends the run's `last_seen` (the writer also does so with every batch). Never waits.
    pub fn heartbeat(&self) {
        if let Some(tx) = &self.tx {
            // A full queue means a batch, which extends last_seen anyway, is on its way.
            let _ = tx.try_send(Msg::Heartbeat);
        }
    }

    /// Waits until everything queued so far is committed.
    pub fn flush(&self) -> Result<(), StoreError> {
        let tx = self.tx.as_ref().ok_or(StoreError::WriterGone)?;
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        tx.send(Msg::Flush(reply_tx))
            .map_err(|_| StoreError::WriterGone)?;
        reply_rx.recv().map_err(|_| StoreError::WriterGone)?
    }

    /// What the store did so far.
    pub fn stats(&self) -> StoreStats {
        self.counters.stats()
    }

    /// Commits everything queued, marks the run stopped cleanly and joins the writer.
    pub fn close(mut self) -> Result<StoreStats, StoreError> {
        if let Some(tx) = self.tx.take() {
            // A send error means the writer already exited; join tells why.
            let _ = tx.send(Msg::Close);
        }
        self.join()?;
        Ok(self.counters.stats())
    }

    fn join(&mut self) -> Result<(), StoreError> {
        match self.writer.take() {
            Some(handle) => handle.join().map_err(|_| StoreError::WriterGone)?,
            None => Ok(()),
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Disconnecting makes the writer commit what is queued and exit without marking the
        // run as stopped cleanly.
        self.tx = None;
        if let Err(error) = self.join() {
            tracing::warn!(%error, "inventory writer failed");
        }
    }
}

/// Milliseconds since the epoch (negative before it).
pub(crate) fn to_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// The time `ms` milliseconds after the epoch.
pub(crate) fn from_ms(ms: i64) -> SystemTime {
    let d = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}
