//! The SQLite backend (the embedded default, DESIGN §2): opening and checking the file, its
//! writer and readers. The statements are in the files beside this one (`enqueue.rs`,
//! `lease.rs`, …), each an `impl SqliteLedger` block.
//!
//! Connections: one writer (SQLite has one writer anyway; a single connection means writes
//! queue in-process instead of spinning on `SQLITE_BUSY`) and up to three readers.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, SqliteConnection};

use super::health::{Health, LedgerHealth, Track};
use super::write::WriteTx;
use super::{LedgerError, LedgerOptions, Synchronous};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// The SQLite ledger. Cheap to clone: two connection pools and a shared health record.
#[derive(Clone, Debug)]
pub(crate) struct SqliteLedger {
    pub(super) writer: SqlitePool,
    pub(super) reader: SqlitePool,
    path: PathBuf,
    pub(super) health: Arc<Health>,
}

impl SqliteLedger {
    /// Opens (creating if needed) the ledger and brings its schema up to date.
    ///
    /// # Errors
    /// [`LedgerError::NotALedger`] for a file that is not SQLite or holds another application's
    /// tables (checked before any setting of the file is changed),
    /// [`LedgerError::SchemaTooNew`] for a ledger written by a newer gunsync.
    pub async fn open(options: LedgerOptions) -> Result<SqliteLedger, LedgerError> {
        // Processes creating the same new ledger at once (a daemon and a CLI started together)
        // meet SQLITE_BUSY where SQLite does not wait on its busy handler (switching the journal
        // mode): try again until the busy timeout is spent.
        let deadline = tokio::time::Instant::now() + options.busy_timeout;
        loop {
            match SqliteLedger::open_once(&options).await {
                Err(e) if is_busy(&e) && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                result => return result,
            }
        }
    }

    async fn open_once(options: &LedgerOptions) -> Result<SqliteLedger, LedgerError> {
        let base = connect_options(&options.database)?;
        let path = base.get_filename().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| LedgerError::Invalid {
                what: "database path",
                reason: format!("cannot create {}: {e}", dir.display()),
            })?;
        }
        let base = with_settings(base, options);
        let display = path.display().to_string();
        // Look at what the file holds before anything changes it (journal mode, schema).
        let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        let found = inspect(base.clone().create_if_missing(true), &display, known, true).await?;

        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(options.busy_timeout + Duration::from_secs(20))
            .connect_with(
                base.clone()
                    .journal_mode(SqliteJournalMode::Wal)
                    // The writer touches every index on each transition: 16 MiB of page cache
                    // (readers keep SQLite's 2 MiB) bounds memory and keeps hot pages in it.
                    .pragma("cache_size", "-16384"),
            )
            .await
            .map_err(|e| classify_open_error(&display, e))?;
        if found < known {
            migrate(&writer, known).await?;
        }
        let reader = SqlitePoolOptions::new()
            .max_connections(3)
            .min_connections(0)
            .idle_timeout(Duration::from_secs(60))
            .acquire_timeout(options.busy_timeout + Duration::from_secs(20))
            .connect_with(base)
            .await?;
        Ok(SqliteLedger {
            writer,
            reader,
            path,
            health: Arc::default(),
        })
    }

    /// Opens an existing ledger for reading only (`jobs`, `show`, `stats`): never creates a file
    /// or a directory, never changes a setting of the file. A file that is not writable (read-only
    /// media, a backup) is opened `immutable`. A ledger whose schema is older than this gunsync
    /// is upgraded first when the file is writable.
    ///
    /// # Errors
    /// [`LedgerError::NoLedger`] when the file does not exist; otherwise as [`SqliteLedger::open`].
    pub async fn open_read_only(options: LedgerOptions) -> Result<SqliteLedger, LedgerError> {
        let base = connect_options(&options.database)?;
        let path = base.get_filename().to_path_buf();
        let display = path.display().to_string();
        if !path.is_file() {
            return Err(LedgerError::NoLedger { path: display });
        }
        // Read-only media: SQLite cannot even take a shared lock there, so tell it the file
        // cannot change under it.
        let immutable = !writable(&path);
        let base = with_settings(base, &options)
            .read_only(true)
            .create_if_missing(false)
            .immutable(immutable);
        let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        let found = inspect(base.clone(), &display, known, false).await?;
        if found < known {
            if immutable {
                return Err(LedgerError::SchemaTooOld {
                    path: display,
                    found,
                    known,
                });
            }
            SqliteLedger::open(options.clone()).await?.close().await;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .min_connections(0)
            .acquire_timeout(options.busy_timeout + Duration::from_secs(20))
            .connect_with(base)
            .await
            .map_err(|e| classify_open_error(&display, e))?;
        Ok(SqliteLedger {
            writer: pool.clone(),
            reader: pool,
            path,
            health: Arc::default(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the writes (and any read that found damage) said about the database lately.
    pub fn health(&self) -> LedgerHealth {
        self.health.snapshot()
    }

    /// `PRAGMA quick_check`: the b-trees and pages are consistent (what `run` and `sync` check
    /// before they work on a ledger). Takes a while on a large file: it reads every page.
    ///
    /// # Errors
    /// [`LedgerError::Corrupt`] with SQLite's findings (the first few), or a database error.
    pub async fn quick_check(&self) -> Result<(), LedgerError> {
        let findings: Vec<String> = sqlx::query_scalar("PRAGMA quick_check(5)")
            .fetch_all(&self.reader)
            .await
            .on_read(&self.health)?;
        if findings.len() == 1 && findings[0] == "ok" {
            return Ok(());
        }
        Err(LedgerError::Corrupt {
            path: self.path.display().to_string(),
            problems: findings.join("; "),
        })
    }

    /// Closes both pools, checkpointing the WAL.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Starts a write transaction on the writer connection (see [`WriteTx`]).
    pub(super) async fn begin_write(&self) -> Result<WriteTx, LedgerError> {
        WriteTx::begin(&self.writer, self.health.clone()).await
    }
}

/// SQLite's "database is locked" (`SQLITE_BUSY`, primary code 5).
fn is_busy(error: &LedgerError) -> bool {
    let LedgerError::Database(sqlx::Error::Database(db)) = error else {
        return false;
    };
    db.code()
        .and_then(|c| c.parse::<i64>().ok())
        .is_some_and(|c| c & 0xff == 5)
}

/// Busy timeout, synchronous and the connection pragmas every connection of the ledger has.
fn with_settings(base: SqliteConnectOptions, options: &LedgerOptions) -> SqliteConnectOptions {
    base.busy_timeout(options.busy_timeout)
        .synchronous(match options.synchronous {
            Synchronous::Full => SqliteSynchronous::Full,
            Synchronous::Normal => SqliteSynchronous::Normal,
        })
        .foreign_keys(true)
        .pragma("temp_store", "memory")
}

/// Whether this process may write the file and create the WAL files beside it.
fn writable(path: &Path) -> bool {
    let file_ok = std::fs::OpenOptions::new().write(true).open(path).is_ok();
    let dir_ok = path
        .parent()
        .map(|d| {
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            }
        })
        .and_then(|d| std::fs::metadata(d).ok())
        .is_some_and(|m| !m.permissions().readonly());
    file_ok && dir_ok
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

/// Opens one plain connection (no journal mode set) and returns the schema version the file
/// holds (0 for an empty file), refusing files that belong to something else or to a newer
/// gunsync. An empty new file gets `auto_vacuum = INCREMENTAL` here, the only moment SQLite
/// accepts it cheaply, so `prune` can give space back.
async fn inspect(
    options: SqliteConnectOptions,
    path: &str,
    known: i64,
    may_initialise: bool,
) -> Result<i64, LedgerError> {
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| classify_open_error(path, e))?;
    let result = async {
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )
        .fetch_all(&mut conn)
        .await
        .map_err(|e| classify_open_error(path, e))?;
        if tables.is_empty() {
            if may_initialise {
                sqlx::query("PRAGMA auto_vacuum = INCREMENTAL")
                    .execute(&mut conn)
                    .await?;
            }
            return Ok(0);
        }
        if !tables.iter().any(|t| t == "_sqlx_migrations") {
            return Err(LedgerError::NotALedger {
                path: path.to_string(),
                reason: format!("it holds other tables: {}", tables.join(", ")),
            });
        }
        let found: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations")
            .fetch_one(&mut conn)
            .await?;
        let found = found.unwrap_or(0);
        if found > known {
            return Err(LedgerError::SchemaTooNew {
                path: path.to_string(),
                found,
                known,
            });
        }
        Ok(found)
    }
    .await;
    let _ = conn.close().await;
    result
}

/// Applies pending migrations. Safe when two processes open a new ledger at once: each migration
/// is its own transaction, so the one that loses a race on it fails ("table … already exists")
/// while the other is still applying the next ones; it waits for that process to finish (or
/// takes over where it stopped) instead of failing.
async fn migrate(pool: &SqlitePool, known: i64) -> Result<(), LedgerError> {
    let deadline = tokio::time::Instant::now() + MIGRATION_RACE_WAIT;
    loop {
        let first = match MIGRATOR.run(pool).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let found: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations")
            .fetch_one(pool)
            .await
            .unwrap_or(None);
        if found == Some(known) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(first.into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long a process waits for another one migrating the same ledger.
const MIGRATION_RACE_WAIT: Duration = Duration::from_secs(10);
