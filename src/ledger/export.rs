//! Reading a whole ledger out, for `gunsync migrate --from sqlite:…` (copying it into
//! PostgreSQL): chunks of each table in id order, all read in one read transaction, so the copy
//! is one consistent snapshot even while a daemon keeps writing the file.

use std::sync::Arc;

use serde_json::Value;
use sqlx::SqliteConnection;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::Sqlite;

use super::health::{Health, Track};
use super::{LedgerError, SqliteLedger};
use crate::timestamp::Timestamp;

/// A `jobs` row, every column.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct ExportedJob {
    pub id: i64,
    pub kind: String,
    pub key: String,
    pub payload: Value,
    pub state: String,
    pub priority: i64,
    pub attempts: i64,
    pub max_attempts: i64,
    pub run_at: Timestamp,
    pub lease_expires_at: Option<Timestamp>,
    pub lease_token: Option<String>,
    pub leased_by: Option<String>,
    pub leased_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub processed_at: Option<Timestamp>,
    pub revision: Option<i64>,
}

/// A `job_attempts` row, every column.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct ExportedAttempt {
    pub id: i64,
    pub job_id: i64,
    pub attempt: i64,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub outcome: String,
    pub error: Option<String>,
    pub http_status: Option<i64>,
    pub leased_by: Option<String>,
    pub lease_token: Option<String>,
}

/// A `sync_cycles` row, every column.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct ExportedCycle {
    pub id: i64,
    pub peer: String,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub deletions_seen: i64,
    pub records_seen: i64,
    pub delete_enqueued: i64,
    pub discover_enqueued: i64,
    pub rejected: i64,
    pub error: Option<String>,
    pub deletions_ignored: i64,
}

/// An `index_reads` row.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct ExportedIndexRead {
    pub peer: String,
    pub record_type: String,
    pub entries: i64,
    pub read_at: Timestamp,
}

/// An open read transaction (`BEGIN`, deferred: it takes no write lock) on one reader connection:
/// every chunk read through it sees the snapshot of its first read. Dropped without
/// [`finish`](Self::finish), its connection is closed instead of returned to the pool, so no
/// connection is reused inside a transaction.
pub(super) struct ExportTx {
    conn: Option<PoolConnection<Sqlite>>,
    health: Arc<Health>,
}

impl SqliteLedger {
    /// Starts reading the ledger out (see [`ExportTx`]).
    pub(super) async fn begin_export(&self) -> Result<ExportTx, LedgerError> {
        let mut conn = self.reader.acquire().await.on_read(&self.health)?;
        if let Err(e) = sqlx::query!("BEGIN").execute(&mut *conn).await {
            conn.close_on_drop();
            return Err(self.health.read_failed(e));
        }
        Ok(ExportTx {
            conn: Some(conn),
            health: self.health.clone(),
        })
    }
}

impl ExportTx {
    fn conn(&mut self) -> &mut SqliteConnection {
        self.conn
            .as_deref_mut()
            .expect("an export holds its connection")
    }

    /// Up to `limit` jobs with an id above `after`, by id.
    pub(super) async fn jobs(
        &mut self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ExportedJob>, LedgerError> {
        sqlx::query_as!(
            ExportedJob,
            r#"SELECT id AS "id!: i64", kind AS "kind!: String", key AS "key!: String",
                      payload AS "payload!: Value", state AS "state!: String",
                      priority AS "priority!: i64", attempts AS "attempts!: i64",
                      max_attempts AS "max_attempts!: i64", run_at AS "run_at!: Timestamp",
                      lease_expires_at AS "lease_expires_at: Timestamp", lease_token, leased_by,
                      leased_at AS "leased_at: Timestamp", last_error,
                      created_at AS "created_at!: Timestamp", updated_at AS "updated_at!: Timestamp",
                      processed_at AS "processed_at: Timestamp", revision
               FROM jobs WHERE id > ?1 ORDER BY id LIMIT ?2"#,
            after,
            limit,
        )
        .fetch_all(self.conn())
        .await
        .on_read(&self.health)
    }

    /// Up to `limit` attempts with an id above `after`, by id.
    pub(super) async fn attempts(
        &mut self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ExportedAttempt>, LedgerError> {
        sqlx::query_as!(
            ExportedAttempt,
            r#"SELECT id AS "id!: i64", job_id AS "job_id!: i64", attempt AS "attempt!: i64",
                      started_at AS "started_at!: Timestamp", finished_at AS "finished_at!: Timestamp",
                      outcome AS "outcome!: String", error, http_status, leased_by, lease_token
               FROM job_attempts WHERE id > ?1 ORDER BY id LIMIT ?2"#,
            after,
            limit,
        )
        .fetch_all(self.conn())
        .await
        .on_read(&self.health)
    }

    /// Up to `limit` sync cycles with an id above `after`, by id.
    pub(super) async fn cycles(
        &mut self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ExportedCycle>, LedgerError> {
        sqlx::query_as!(
            ExportedCycle,
            r#"SELECT id AS "id!: i64", peer AS "peer!: String", started_at AS "started_at!: Timestamp",
                      finished_at AS "finished_at: Timestamp", deletions_seen AS "deletions_seen!: i64",
                      records_seen AS "records_seen!: i64", delete_enqueued AS "delete_enqueued!: i64",
                      discover_enqueued AS "discover_enqueued!: i64", rejected AS "rejected!: i64",
                      error, deletions_ignored AS "deletions_ignored!: i64"
               FROM sync_cycles WHERE id > ?1 ORDER BY id LIMIT ?2"#,
            after,
            limit,
        )
        .fetch_all(self.conn())
        .await
        .on_read(&self.health)
    }

    /// Every index read (one row per peer and record type: a handful).
    pub(super) async fn index_reads(&mut self) -> Result<Vec<ExportedIndexRead>, LedgerError> {
        sqlx::query_as!(
            ExportedIndexRead,
            r#"SELECT peer AS "peer!: String", record_type AS "record_type!: String",
                      entries AS "entries!: i64", read_at AS "read_at!: Timestamp"
               FROM index_reads ORDER BY peer, record_type"#
        )
        .fetch_all(self.conn())
        .await
        .on_read(&self.health)
    }

    /// Ends the read transaction and returns the connection to the pool.
    pub(super) async fn finish(mut self) -> Result<(), LedgerError> {
        let mut conn = self.conn.take().expect("an export holds its connection");
        if let Err(e) = sqlx::query!("COMMIT").execute(&mut *conn).await {
            conn.close_on_drop();
            return Err(self.health.read_failed(e));
        }
        Ok(())
    }
}

impl Drop for ExportTx {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            conn.close_on_drop();
        }
    }
}
