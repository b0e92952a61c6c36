//! The write path: [`WriteTx`], a `BEGIN IMMEDIATE` transaction on the single writer
//! connection, and [`Health`], what the last writes said about the database.
//!
//! The transaction is issued as plain `BEGIN IMMEDIATE` / `COMMIT` / `ROLLBACK` statements, not
//! through sqlx's `Transaction`: when SQLite itself rolls a transaction back (`SQLITE_FULL`,
//! an I/O error), sqlx's own transaction depth stayed out of step with SQLite's and every later
//! `begin` failed until the process restarted. Here a transaction that did not end cleanly
//! closes its connection, and the pool opens a fresh one for the next write.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};

use sqlx::SqliteConnection;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{Sqlite, SqlitePool};
use tracing::{error, info, warn};

use super::LedgerError;
use crate::timestamp::Timestamp;

/// SQLite primary result codes the ledger reacts to (<https://www.sqlite.org/rescode.html>).
const SQLITE_CORRUPT: i64 = 11;
const SQLITE_NOTADB: i64 = 26;

/// An open write transaction. Dereferences to the connection, so statements run on `&mut *tx`.
/// Dropped without [`commit`](Self::commit) or [`rollback`](Self::rollback) (an early `?`, a
/// cancelled future), its connection is closed instead of returned: SQLite rolls back what it
/// held, and no half-finished transaction can reach the next caller.
pub(super) struct WriteTx {
    conn: Option<PoolConnection<Sqlite>>,
    health: Arc<Health>,
}

impl WriteTx {
    /// Takes the writer connection and the database's write lock (`BEGIN IMMEDIATE`, so the
    /// transaction never fails half-way on a lock upgrade).
    pub(super) async fn begin(pool: &SqlitePool, health: Arc<Health>) -> Result<Self, LedgerError> {
        let mut conn = pool.acquire().await.map_err(|e| health.failed(e))?;
        if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
            // A connection left inside a transaction (it cannot be here, but a connection is
            // cheap and a wedged writer is not) is never reused.
            conn.close_on_drop();
            return Err(health.failed(e));
        }
        Ok(WriteTx {
            conn: Some(conn),
            health,
        })
    }

    /// Commits. On failure SQLite may already have rolled back; the connection is closed either
    /// way and the error returned.
    pub(super) async fn commit(mut self) -> Result<(), LedgerError> {
        let mut conn = self
            .conn
            .take()
            .expect("a transaction holds its connection");
        match sqlx::query("COMMIT").execute(&mut *conn).await {
            Ok(_) => {
                self.health.succeeded();
                Ok(())
            }
            Err(e) => {
                // Best effort: leave nothing open even if the connection were reused.
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                conn.close_on_drop();
                Err(self.health.failed(e))
            }
        }
    }

    /// Rolls back (nothing the transaction wrote is kept).
    pub(super) async fn rollback(mut self) -> Result<(), LedgerError> {
        let mut conn = self
            .conn
            .take()
            .expect("a transaction holds its connection");
        if let Err(e) = sqlx::query("ROLLBACK").execute(&mut *conn).await {
            conn.close_on_drop();
            return Err(self.health.failed(e));
        }
        Ok(())
    }
}

impl Deref for WriteTx {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        self.conn
            .as_deref()
            .expect("a transaction holds its connection")
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.conn
            .as_deref_mut()
            .expect("a transaction holds its connection")
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            conn.close_on_drop();
        }
    }
}

/// What the ledger's writes say about the database, for `/healthz` and the worker pool.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LedgerHealth {
    /// `Some` while writes fail: the latest error and since when they have been failing. A
    /// write that succeeds clears it.
    pub write_error: Option<WriteFailure>,
    /// `Some` once SQLite reported the file damaged (`SQLITE_CORRUPT`, `SQLITE_NOTADB`): the
    /// process must stop using it. Never cleared.
    pub corrupt: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WriteFailure {
    pub error: String,
    pub since: Timestamp,
}

/// Shared by every clone of a ledger.
#[derive(Debug, Default)]
pub(super) struct Health {
    state: Mutex<LedgerHealth>,
}

impl Health {
    pub(super) fn snapshot(&self) -> LedgerHealth {
        self.lock().clone()
    }

    pub(super) fn succeeded(&self) {
        let mut state = self.lock();
        if let Some(failure) = state.write_error.take() {
            info!(since = %failure.since, "ledger writes succeed again");
        }
    }

    /// Notes a failed write (or any statement that found the file corrupt).
    pub(super) fn failed(&self, error: sqlx::Error) -> LedgerError {
        let text = error.to_string();
        let mut state = self.lock();
        if is_corruption(&error) && state.corrupt.is_none() {
            error!(error = %text, "the ledger file is corrupt; stopping work on it");
            state.corrupt = Some(text.clone());
        }
        match &mut state.write_error {
            Some(failure) => failure.error = text,
            None => {
                warn!(error = %text, "ledger write failed");
                state.write_error = Some(WriteFailure {
                    error: text,
                    since: Timestamp::now(),
                });
            }
        }
        LedgerError::Database(error)
    }

    /// Notes a read that found the file corrupt (reads never touch the write state).
    pub(super) fn read_failed(&self, error: sqlx::Error) -> LedgerError {
        if is_corruption(&error) {
            let mut state = self.lock();
            if state.corrupt.is_none() {
                error!(error = %error, "the ledger file is corrupt; stopping work on it");
                state.corrupt = Some(error.to_string());
            }
        }
        LedgerError::Database(error)
    }

    fn lock(&self) -> MutexGuard<'_, LedgerHealth> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Statement results, recorded in the ledger's health on their way to the caller.
pub(super) trait Track<T> {
    /// A write's result: a failure is recorded (and corruption noticed).
    fn on_write(self, health: &Health) -> Result<T, LedgerError>;
    /// A read's result: only corruption is recorded.
    fn on_read(self, health: &Health) -> Result<T, LedgerError>;
}

impl<T> Track<T> for Result<T, sqlx::Error> {
    fn on_write(self, health: &Health) -> Result<T, LedgerError> {
        self.map_err(|e| health.failed(e))
    }

    fn on_read(self, health: &Health) -> Result<T, LedgerError> {
        self.map_err(|e| health.read_failed(e))
    }
}

/// Whether SQLite says the file is damaged or not a database.
pub(super) fn is_corruption(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = error else {
        return false;
    };
    let primary = db
        .code()
        .and_then(|c| c.parse::<i64>().ok())
        .map(|c| c & 0xff);
    matches!(primary, Some(SQLITE_CORRUPT | SQLITE_NOTADB))
}
