//! The durable job ledger (DESIGN §2, §7): every unit of work is a row with a state, a lease, an
//! attempt count and a schedule. All SQL of gunsync lives in this module (and in the `gunsync-pg`
//! crate it calls); nothing else touches the database. The public API ([`Ledger`], its methods
//! in `api.rs`) speaks only the backend-neutral types of [`model`], [`query`] and [`state`], and
//! dispatches to one of two backends chosen by the database URL:
//!
//! - SQLite, the embedded default (`sqlite.rs`, and one file per concern beside it: `enqueue.rs`,
//!   `lease.rs`, `finish.rs`, …): one writer connection, up to three readers;
//! - PostgreSQL, for several nodes on one ledger (`postgres/`, its statements in `gunsync-pg`):
//!   `FOR UPDATE SKIP LOCKED` leasing, `LISTEN/NOTIFY` wake-ups, an advisory lock per sync cycle.
//!
//! Both pass the same specification tests (`tests.rs`, `both_backends!`).

mod admin;
mod api;
pub mod backoff;
mod cycles;
pub mod dashboard;
mod enqueue;
mod export;
mod finish;
mod health;
pub mod lease;
mod lookup;
pub mod model;
pub mod operator;
mod postgres;
pub mod query;
mod reclaim;
mod sqlite;
pub mod state;
mod status;
mod write;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::timestamp::Timestamp;

pub use admin::{Cancelled, Pruned, Requeue, RequeueReport, Space, Vacuum};
pub use backoff::Backoff;
pub use cycles::{CycleCounts, CycleId};
pub use dashboard::{Bucket, DeadReason, Throughput};
pub use health::{LedgerHealth, WriteFailure};
pub use lookup::{Deletion, REFUSED_KEY};
pub use model::{
    Completion, EnqueueReport, Enqueued, Finish, Finished, JobId, LeaseToken, LeasedJob, NewJob,
    Reclaimed, Uniqueness,
};
pub use postgres::import::Copied;
pub use query::{AttemptView, CycleView, JobFilter, JobView, Stats};
pub use state::{JobKind, JobState, UnknownName};
pub use status::CircuitView;

use postgres::PgLedger;
use sqlite::SqliteLedger;

/// Default ledger location (DESIGN §2).
pub const DEFAULT_DATABASE: &str = "./data/gunsync.db";

/// How long a statement waits for another process's write lock before failing.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// PostgreSQL only: the most connections this process opens (one of them listens for
    /// other nodes' wake-ups). SQLite always uses one writer and three readers.
    pub max_connections: u32,
}

/// Connections per process to a PostgreSQL ledger, unless configured otherwise.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 8;

impl LedgerOptions {
    pub fn new(database: impl Into<String>) -> Self {
        LedgerOptions {
            database: database.into(),
            synchronous: Synchronous::Full,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }

    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    pub fn max_connections(mut self, max_connections: u32) -> Self {
        self.max_connections = max_connections;
        self
    }
}

/// Everything that can go wrong in the ledger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// A command that only reads was pointed at a file that does not exist.
    #[error("no ledger at {path} (check --database / GUNSYNC_DATABASE)")]
    NoLedger { path: String },
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
    #[error(
        "{path}: the ledger has schema version {found}, older than this gunsync ({known}), and \
         the file is read-only; run `gunsync migrate` where it is writable"
    )]
    SchemaTooOld {
        path: String,
        found: i64,
        known: i64,
    },
    /// `PRAGMA quick_check` found damage: the file must not be worked on.
    #[error("{path}: the ledger file is damaged ({problems}); restore it from a backup")]
    Corrupt { path: String, problems: String },
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

impl LedgerError {
    /// Whether SQLite reported the file damaged: the caller must stop using this ledger.
    pub fn is_corruption(&self) -> bool {
        match self {
            LedgerError::Corrupt { .. } => true,
            LedgerError::Database(e) => health::is_corruption(e),
            _ => false,
        }
    }
}

/// The ledger. Cheap to clone: the backend's connection pools and a shared health record.
#[derive(Clone, Debug)]
pub struct Ledger {
    backend: Backend,
}

/// Where the jobs live, chosen by [`LedgerOptions::database`]: a `postgres://` or
/// `postgresql://` URL selects PostgreSQL, anything else is an SQLite file.
#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqliteLedger),
    Postgres(PgLedger),
}

impl Ledger {
    /// Opens (creating if needed) the ledger and brings its schema up to date.
    ///
    /// # Errors
    /// [`LedgerError::NotALedger`] for a file (or database) that holds another application's
    /// tables (checked before anything is changed), [`LedgerError::SchemaTooNew`] for a ledger
    /// written by a newer gunsync.
    pub async fn open(options: LedgerOptions) -> Result<Ledger, LedgerError> {
        let backend = if postgres::is_postgres_url(&options.database) {
            Backend::Postgres(PgLedger::open(&options).await?)
        } else {
            Backend::Sqlite(SqliteLedger::open(options).await?)
        };
        Ok(Ledger { backend })
    }

    /// Opens an existing ledger for reading only (`jobs`, `show`, `stats`): never creates an
    /// SQLite file or a directory, never changes a setting of the file; read-only media work.
    /// A PostgreSQL ledger is opened as by [`Ledger::open`] (the server owns its storage).
    ///
    /// # Errors
    /// [`LedgerError::NoLedger`] when the SQLite file does not exist; otherwise as [`Ledger::open`].
    pub async fn open_read_only(options: LedgerOptions) -> Result<Ledger, LedgerError> {
        let backend = if postgres::is_postgres_url(&options.database) {
            Backend::Postgres(PgLedger::open(&options).await?)
        } else {
            Backend::Sqlite(SqliteLedger::open_read_only(options).await?)
        };
        Ok(Ledger { backend })
    }

    /// A PostgreSQL `database` URL that keeps the ledger in `schema` of that database (created
    /// if missing; emptied first when `fresh`), e.g. the demo's, beside production tables.
    ///
    /// # Errors
    /// [`LedgerError::Invalid`] when `database` is not a PostgreSQL URL or `schema` is not a plain
    /// lower-case identifier; a database error when the server refuses.
    pub async fn postgres_schema(
        database: &str,
        schema: &str,
        fresh: bool,
    ) -> Result<String, LedgerError> {
        if !postgres::is_postgres_url(database) {
            return Err(LedgerError::Invalid {
                what: "database",
                reason: "a schema needs a postgres:// ledger".into(),
            });
        }
        postgres::in_schema(database, schema, fresh).await
    }

    /// Whether `database` names a PostgreSQL ledger (`postgres://` or `postgresql://`).
    pub fn is_postgres_url(database: &str) -> bool {
        postgres::is_postgres_url(database)
    }

    /// Where the ledger is, for messages: the SQLite file's path, or the PostgreSQL URL without
    /// its password.
    pub fn location(&self) -> String {
        match &self.backend {
            Backend::Sqlite(l) => l.path().display().to_string(),
            Backend::Postgres(l) => l.location().to_string(),
        }
    }

    /// Whether several processes on several machines may share this ledger (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// What the writes (and any read that found damage) said about the database lately.
    pub fn health(&self) -> LedgerHealth {
        match &self.backend {
            Backend::Sqlite(l) => l.health(),
            Backend::Postgres(l) => l.health.snapshot(),
        }
    }

    /// SQLite: `PRAGMA quick_check`, the b-trees and pages are consistent (what `run` and
    /// `sync` check before they work on a ledger; it reads every page). PostgreSQL guards its
    /// own storage: nothing to check.
    ///
    /// # Errors
    /// [`LedgerError::Corrupt`] with SQLite's findings (the first few), or a database error.
    pub async fn quick_check(&self) -> Result<(), LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.quick_check().await,
            Backend::Postgres(_) => Ok(()),
        }
    }

    /// Closes the connection pools (checkpointing SQLite's WAL).
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(l) => l.close().await,
            Backend::Postgres(l) => l.close().await,
        }
    }

    /// The time to give the ledger's methods as `now`. On PostgreSQL, the database's clock (this
    /// node's clock corrected by the offset measured at open and by [`Ledger::sync_clock`]), so
    /// leases one node writes and another reclaims compare times of one clock. On SQLite, the
    /// machine's clock.
    pub fn now(&self) -> Timestamp {
        match &self.backend {
            Backend::Sqlite(_) => Timestamp::now(),
            Backend::Postgres(l) => l.now(),
        }
    }

    /// Measures the database clock again (PostgreSQL; nothing to do on SQLite).
    pub async fn sync_clock(&self) -> Result<(), LedgerError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(l) => l.sync_clock().await,
        }
    }

    /// Wakes `wake` whenever another process enqueues, requeues or gives back a job
    /// (PostgreSQL's `LISTEN`; `None` on SQLite, where other processes are seen at the idle
    /// poll). The task ends when the ledger is closed.
    pub fn listen(&self, wake: Arc<Notify>) -> Option<tokio::task::JoinHandle<()>> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(l) => Some(l.listen(wake)),
        }
    }

    /// Takes the right to run a sync cycle: `None` when another node is running one now
    /// (PostgreSQL's advisory lock, held until [`CycleLock::release`] or until this process
    /// dies). Always granted on SQLite.
    pub async fn try_cycle_lock(&self) -> Result<Option<CycleLock>, LedgerError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Some(CycleLock { session: None })),
            Backend::Postgres(l) => Ok(l.try_cycle_lock().await?.map(|session| CycleLock {
                session: Some(session),
            })),
        }
    }
}

impl Ledger {
    /// The README's operator queries in this backend's SQL (`sqlite3` or `psql`), each with its
    /// name for `bench scale`.
    pub fn operator_queries(&self) -> &'static [(&'static str, &'static str)] {
        match &self.backend {
            Backend::Sqlite(_) => operator::OPERATOR_QUERIES,
            Backend::Postgres(_) => postgres::operator::OPERATOR_QUERIES,
        }
    }

    /// Copies an SQLite ledger (`source`) into this empty PostgreSQL ledger: every job, attempt,
    /// sync cycle and index read, keeping their ids, in one transaction (all or nothing).
    /// `progress(table, rows)` follows it.
    ///
    /// # Errors
    /// [`LedgerError::Invalid`] when this ledger is not PostgreSQL, `source` is not SQLite, or
    /// this ledger already holds jobs or cycles.
    pub async fn copy_from(
        &self,
        source: &Ledger,
        progress: &mut dyn FnMut(&'static str, u64),
    ) -> Result<Copied, LedgerError> {
        match (&self.backend, &source.backend) {
            (Backend::Postgres(to), Backend::Sqlite(from)) => {
                to.copy_from_sqlite(from, progress).await
            }
            _ => Err(LedgerError::Invalid {
                what: "migrate --from",
                reason: "copies an SQLite ledger (--from sqlite:PATH) into a PostgreSQL one \
                         (--database postgres://…)"
                    .into(),
            }),
        }
    }
}

/// The right to run one sync cycle across every node sharing the ledger. Dropped without
/// [`CycleLock::release`], its session closes, which releases it too.
#[derive(Debug)]
pub struct CycleLock {
    session: Option<sqlx::PgConnection>,
}

impl CycleLock {
    /// Gives the right back, for the next cycle of any node.
    pub async fn release(mut self) {
        if let Some(session) = self.session.take() {
            PgLedger::cycle_unlock(session).await;
        }
    }
}

#[cfg(test)]
pub(crate) mod testutil;

#[cfg(test)]
mod tests;
