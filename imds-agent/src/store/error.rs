//! What can go wrong with the inventory, each saying what to do.

use std::{io, path::PathBuf, time::Duration};

use rusqlite::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "inventory {path} does not exist: start the agent with its inventory enabled first, \
         or pass the path the agent writes to"
    )]
    Missing { path: PathBuf },

    #[error(
        "cannot create the inventory directory {path}: {source}; create it or choose another path"
    )]
    CreateDir { path: PathBuf, source: io::Error },

    #[error("cannot open the inventory {path}: {source}; check the path and its permissions")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },

    #[error(
        "inventory {path}: database is locked by another process; wait for it to finish or \
         stop it (the agent itself never holds an exclusive lock)"
    )]
    Locked { path: PathBuf },

    #[error(
        "inventory {path} is not a valid SQLite database or is corrupted ({detail}); move it \
         aside and restart the agent, which creates a new one"
    )]
    Corrupt { path: PathBuf, detail: String },

    #[error(
        "{path} is a SQLite database but not an imds-agent inventory; pass the inventory's path"
    )]
    NotInventory { path: PathBuf },

    #[error(
        "inventory {path} has schema version {found}, newer than this imds-agent understands \
         ({supported}); use the imds-agent version that wrote it, or a newer one"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },

    #[error(
        "inventory {path} has schema version {found}, older than this imds-agent reads \
         ({supported}); start the agent once to upgrade it"
    )]
    OlderSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },

    #[error("inventory {path}: {what} failed: {source}")]
    Sqlite {
        path: PathBuf,
        what: &'static str,
        source: rusqlite::Error,
    },

    #[error(
        "chart bucket {bucket:?} is not a whole, non-zero number of hours (counters are hourly)"
    )]
    InvalidBucket { bucket: Duration },

    #[error(
        "a batch of events could not be stored ({detail}); check the disk and the inventory's permissions"
    )]
    BatchFailed { detail: String },

    #[error("cannot start the inventory writer thread: {source}")]
    Thread { source: io::Error },

    #[error("the inventory writer thread stopped unexpectedly; see the earlier log lines")]
    WriterGone,
}

impl StoreError {
    /// Names what a SQLite error means for the user: locked, corrupted, or other.
    pub(crate) fn sqlite(
        path: &std::path::Path,
        what: &'static str,
        source: rusqlite::Error,
    ) -> Self {
        let path = path.to_path_buf();
        match source.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StoreError::Locked { path }
            }
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
                path,
                detail: source.to_string(),
            },
            _ => StoreError::Sqlite { path, what, source },
        }
    }
}
