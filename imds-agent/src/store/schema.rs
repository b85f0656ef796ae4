//! The database layout and its versioned migrations (`PRAGMA user_version` counts the
//! migrations applied; a migration is never edited once released, only appended).

use std::{path::Path, time::Duration};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::StoreError;

/// Applied in order; `user_version` = how many are applied.
const MIGRATIONS: &[&str] = &[
    // 1: the first layout. Times are milliseconds since the epoch.
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE runs (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        started_ms    INTEGER NOT NULL,
        last_seen_ms  INTEGER NOT NULL,
        stopped_ms    INTEGER,
        clean_stop    INTEGER NOT NULL DEFAULT 0,
        host_name     TEXT NOT NULL,
        agent_version TEXT NOT NULL,
        cgroup        TEXT NOT NULL,
        events        INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE workloads (
        workload                  TEXT PRIMARY KEY,
        identity                  TEXT NOT NULL DEFAULT '{}',
        sdk_name                  TEXT,
        sdk_version               TEXT,
        v1_cause                  TEXT,
        v1_advice                 TEXT,
        v1_count                  INTEGER NOT NULL DEFAULT 0,
        v2_count                  INTEGER NOT NULL DEFAULT 0,
        other_count               INTEGER NOT NULL DEFAULT 0,
        rejected_count            INTEGER NOT NULL DEFAULT 0,
        unanswered_token_requests INTEGER NOT NULL DEFAULT 0,
        first_seen_ms             INTEGER NOT NULL,
        last_seen_ms              INTEGER NOT NULL,
        last_v1_seen_ms           INTEGER,
        example_paths             TEXT NOT NULL DEFAULT '[]',
        last_status               INTEGER
    );
    CREATE INDEX workloads_last_seen ON workloads(last_seen_ms);
    CREATE TABLE workload_buckets (
        workload         TEXT NOT NULL,
        bucket_ms        INTEGER NOT NULL,
        v1               INTEGER NOT NULL DEFAULT 0,
        v2               INTEGER NOT NULL DEFAULT 0,
        other            INTEGER NOT NULL DEFAULT 0,
        rejected         INTEGER NOT NULL DEFAULT 0,
        unanswered_token INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (workload, bucket_ms)
    ) WITHOUT ROWID;
    CREATE INDEX workload_buckets_bucket ON workload_buckets(bucket_ms);
    CREATE TABLE events (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        time_ms  INTEGER NOT NULL,
        run_id   INTEGER NOT NULL,
        workload TEXT NOT NULL,
        json     TEXT NOT NULL
    );
    CREATE INDEX events_time ON events(time_ms);
    "#,
];

/// The schema version this build writes and reads.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;
/// `meta` key naming what the file is, so a reader can tell another SQLite file apart.
pub(crate) const META_KIND: &str = "kind";
pub(crate) const KIND: &str = "imds-agent inventory";
/// How long the writer waits for a lock held by someone else.
const WRITER_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens (creating) the database for writing, in WAL mode, migrated to [`SCHEMA_VERSION`].
pub(crate) fn open_writable(path: &Path) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags).map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let err = |what| move |e| StoreError::sqlite(path, what, e);
    conn.busy_timeout(WRITER_BUSY_TIMEOUT)
        .map_err(err("setting the busy timeout"))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(err("switching to WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), mode, "inventory is not in WAL mode; readers may wait for the agent");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(err("setting synchronous=NORMAL"))?;
    migrate(&mut conn, path)?;
    Ok(conn)
}

/// Applies the migrations not applied yet, each in its own transaction.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let err = |what| move |e| StoreError::sqlite(path, what, e);
    let found = user_version(conn, path)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found == 0 && has_tables(conn, path)? {
        return Err(StoreError::NotInventory {
            path: path.to_path_buf(),
        });
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        let tx = conn.transaction().map_err(err("starting a migration"))?;
        tx.execute_batch(sql).map_err(err("applying a migration"))?;
        if i == 0 {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2), ('created_by', ?3)",
                (META_KIND, KIND, env!("CARGO_PKG_VERSION")),
            )
            .map_err(err("writing meta"))?;
        }
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(err("recording the schema version"))?;
        tx.commit().map_err(err("committing a migration"))?;
    }
    Ok(())
}

pub(crate) fn user_version(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| StoreError::sqlite(path, "reading the schema version", e))
}

fn has_tables(conn: &Connection, path: &Path) -> Result<bool, StoreError> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
    .map_err(|e| StoreError::sqlite(path, "listing tables", e))
}

/// Checks that a read-only connection is on an inventory this build can read.
pub(crate) fn check_readable(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let found = user_version(conn, path)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found == 0 {
        return Err(StoreError::NotInventory {
            path: path.to_path_buf(),
        });
    }
    if found < SCHEMA_VERSION {
        return Err(StoreError::OlderSchema {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let kind: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [META_KIND], |r| {
            r.get(0)
        })
        .optional()
        .map_err(|e| StoreError::sqlite(path, "reading meta", e))?;
    if kind.as_deref() != Some(KIND) {
        return Err(StoreError::NotInventory {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}
