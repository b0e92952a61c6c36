//! The SQLite write path: [`WriteTx`], a `BEGIN IMMEDIATE` transaction on the single writer
//! connection.
//!
//! The transaction is issued as plain `BEGIN IMMEDIATE` / `COMMIT` / `ROLLBACK` statements, not
//! through sqlx's `Transaction`: when SQLite itself rolls a transaction back (`SQLITE_FULL`,
//! an I/O error), sqlx's own transaction depth stayed out of step with SQLite's and every later
//! `begin` failed until the process restarted. Here a transaction that did not end cleanly
//! closes its connection, and the pool opens a fresh one for the next write.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use super::LedgerError;
use super::health::Health;
use sqlx::SqliteConnection;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{Sqlite, SqlitePool};

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
