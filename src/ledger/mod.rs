//! The durable job ledger (DESIGN §2): every unit of work is a row in SQLite with a state, a lease,
//! an attempt count and a schedule. All SQL of gunsync lives in this module; nothing else touches
//! the database. The public API speaks only the backend-neutral types of [`model`], [`query`] and
//! [`state`], so a second backend (Postgres with `FOR UPDATE SKIP LOCKED`) is a second
//! implementation of the same methods.
//!
//! Connections: one writer (SQLite has one writer anyway; a single connection means writes
//! queue in-process instead of spinning on `SQLITE_BUSY`) and up to three readers.

mod admin;
pub mod backoff;
mod cycles;
mod enqueue;
mod finish;
pub mod lease;
mod lookup;
pub mod model;
pub mod query;
mod reclaim;
pub mod state;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use admin::{Cancelled, Pruned, Requeue, RequeueReport};
pub use backoff::Backoff;
pub use cycles::{CycleCounts, CycleId};
pub use model::{
    Completion, EnqueueReport, Enqueued, Finish, Finished, JobId, LeaseToken, LeasedJob, NewJob,
    Reclaimed, Uniqueness,
};
pub use query::{AttemptView, CycleView, JobFilter, JobView, Stats};
pub use state::{JobKind, JobState, UnknownName};

/// Default ledger location (DESIGN §2).
pub const DEFAULT_DATABASE: &str = "./data/gunsync.db";

/// How long a statement waits for another process's write lock before failing.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// `PRAGMA synchronous`: FULL (durable across power loss, the default) or NORMAL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    #[default]
    Full,
    Normal,
}

impl Synchronous {
    pub fn as_str(self) -> &'static str {
        match self {
            Synchronous::Full => "full",
            Synchronous::Normal => "normal",
        }
    }
}

/// How to open the ledger.
#[derive(Clone, Debug)]
pub struct LedgerOptions {
    /// A file path or a `sqlite:` URL.
    pub database: String,
    pub synchronous: Synchronous,
    pub busy_timeout: Duration,
}

impl LedgerOptions {
    pub fn new(database: impl Into<String>) -> Self {
        LedgerOptions {
            database: database.into(),
            synchronous: Synchronous::Full,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
        }
    }

    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }
}

/// Everything that can go wrong in the ledger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    #[error("{path}: not a gunsync database ({reason})")]
    NotALedger { path: String, reason: String },
    #[error(
        "{path}: the ledger has schema version {found}, newer than this gunsync knows ({known}); \
         upgrade gunsync"
    )]
    SchemaTooNew {
        path: String,
        found: i64,
        known: i64,
    },
    /// A fenced transition touched nothing: the lease expired and the job moved on. Expected
    /// control flow for a slow worker, not a failure of the ledger.
    #[error("lease lost: job {0} is no longer held by this lease")]
    LeaseLost(JobId),
    #[error("job {0} not found")]
    NotFound(JobId),
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// The ledger. Cheap to clone: it is two connection pools.
#[derive(Clone, Debug)]
pub struct Ledger {
    writer: SqlitePool,
    reader: SqlitePool,
    path: PathBuf,
}

impl Ledger {
    /// Opens (creating if needed) the ledger and brings its schema up to date.
    ///
    /// # Errors
    /// [`LedgerError::NotALedger`] for a file that is not SQLite or holds another application's
    /// tables, [`LedgerError::SchemaTooNew`] for a ledger written by a newer gunsync.
    pub async fn open(options: LedgerOptions) -> Result<Ledger, LedgerError> {
        let base = connect_options(&options.database)?;
        let path = base.get_filename().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| LedgerError::Invalid {
                what: "database path",
                reason: format!("cannot create {}: {e}", dir.display()),
            })?;
        }
        let base = base
            .busy_timeout(options.busy_timeout)
            .synchronous(match options.synchronous {
                Synchronous::Full => SqliteSynchronous::Full,
                Synchronous::Normal => SqliteSynchronous::Normal,
            })
            .foreign_keys(true)
            .pragma("temp_store", "memory");
        let display = path.display().to_string();

        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(options.busy_timeout + Duration::from_secs(20))
            .connect_with(
                base.clone()
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    // The writer touches every index on each transition: 16 MiB of page cache
                    // (readers keep SQLite's 2 MiB) bounds memory and keeps hot pages in it.
                    .pragma("cache_size", "-16384"),
            )
            .await
            .map_err(|e| classify_open_error(&display, e))?;
        migrate(&writer, &display).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(3)
            .min_connections(0)
            .idle_timeout(Duration::from_secs(60))
            .acquire_timeout(options.busy_timeout + Duration::from_secs(20))
            .connect_with(base)
            .await?;
        Ok(Ledger {
            writer,
            reader,
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes both pools, checkpointing the WAL.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Starts a write transaction that takes the write lock at once (`BEGIN IMMEDIATE`), so a
    /// transaction never fails half-way on a lock upgrade.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, LedgerError> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

fn connect_options(database: &str) -> Result<SqliteConnectOptions, LedgerError> {
    let invalid = |reason: String| LedgerError::Invalid {
        what: "database",
        reason,
    };
    if database.trim().is_empty() {
        return Err(invalid("the database path is empty".into()));
    }
    if database.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(database).map_err(|e| invalid(format!("{database}: {e}")))
    } else {
        Ok(SqliteConnectOptions::new().filename(database))
    }
}

fn classify_open_error(path: &str, error: sqlx::Error) -> LedgerError {
    match &error {
        sqlx::Error::Database(db) if db.message().contains("not a database") => {
            LedgerError::NotALedger {
                path: path.to_string(),
                reason: "the file is not an SQLite database".into(),
            }
        }
        _ => LedgerError::Database(error),
    }
}

/// Applies pending migrations, refusing databases that belong to something else or to a newer
/// gunsync. Safe when two processes open a new ledger at once: the loser re-checks.
async fn migrate(pool: &SqlitePool, path: &str) -> Result<(), LedgerError> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )
    .fetch_all(pool)
    .await
    .map_err(|e| classify_open_error(path, e))?;
    let has_migrations = tables.iter().any(|t| t == "_sqlx_migrations");
    if !tables.is_empty() && !has_migrations {
        return Err(LedgerError::NotALedger {
            path: path.to_string(),
            reason: format!("it holds other tables: {}", tables.join(", ")),
        });
    }
    let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    if has_migrations {
        let found: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations")
            .fetch_one(pool)
            .await?;
        let found = found.unwrap_or(0);
        if found > known {
            return Err(LedgerError::SchemaTooNew {
                path: path.to_string(),
                found,
                known,
            });
        }
        if found == known {
            return Ok(());
        }
    }
    match MIGRATOR.run(pool).await {
        Ok(()) => Ok(()),
        Err(first) => {
            // Another process may have applied the same migration a moment earlier.
            let found: Option<i64> =
                sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations")
                    .fetch_one(pool)
                    .await
                    .unwrap_or(None);
            if found == Some(known) {
                Ok(())
            } else {
                Err(first.into())
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod testutil;

#[cfg(test)]
mod tests;
