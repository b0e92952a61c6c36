//! [`Health`]: what the ledger's latest statements said about the database, shared by every
//! clone of a ledger (both backends), for `/healthz`, the dashboard and the worker pool.

use std::sync::{Mutex, MutexGuard};

use tracing::{error, info, warn};

use super::LedgerError;
use crate::timestamp::Timestamp;

/// SQLite primary result codes the ledger reacts to (<https://www.sqlite.org/rescode.html>).
const SQLITE_CORRUPT: i64 = 11;
const SQLITE_NOTADB: i64 = 26;

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

/// Whether SQLite says the file is damaged or not a database (never true of a PostgreSQL error:
/// the server guards its own storage).
pub(super) fn is_corruption(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = error else {
        return false;
    };
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_none() {
        return false;
    }
    let primary = db
        .code()
        .and_then(|c| c.parse::<i64>().ok())
        .map(|c| c & 0xff);
    matches!(primary, Some(SQLITE_CORRUPT | SQLITE_NOTADB))
}
