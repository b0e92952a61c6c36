//! The `sync_cycles` table: one row per cycle and peer, so operators can see what each cycle
//! read and enqueued, and `/healthz` can tell when the last one finished.

use super::health::Track;
use super::model::bounded_error;
use super::{LedgerError, SqliteLedger};
use crate::timestamp::Timestamp;

/// A `sync_cycles` row id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct CycleId(pub i64);

/// What one cycle saw and did on one peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CycleCounts {
    /// DIDs read from the deletion registry.
    pub deletions_seen: u64,
    /// Record souls read from the type indexes.
    pub records_seen: u64,
    pub delete_enqueued: u64,
    pub discover_enqueued: u64,
    /// Entries skipped because a peer sent an invalid soul or DID, or an index entry that does
    /// not name its record.
    pub rejected: u64,
    /// Deletion-registry entries of a peer not in `GUNSYNC_DELETION_PEERS`, ignored.
    pub deletions_ignored: u64,
}

impl SqliteLedger {
    pub async fn start_cycle(&self, peer: &str, now: Timestamp) -> Result<CycleId, LedgerError> {
        let mut tx = self.begin_write().await?;
        let id = sqlx::query_scalar!(
            r#"INSERT INTO sync_cycles (peer, started_at) VALUES (?1, ?2) RETURNING id AS "id!: i64""#,
            peer,
            now,
        )
        .fetch_one(&mut *tx)
        .await
        .on_write(&self.health)?;
        tx.commit().await?;
        Ok(CycleId(id))
    }

    pub async fn finish_cycle(
        &self,
        id: CycleId,
        counts: CycleCounts,
        error: Option<&str>,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        let error = error.map(bounded_error);
        let (deletions, records, deletes, discovers, rejected, ignored) = (
            counts.deletions_seen as i64,
            counts.records_seen as i64,
            counts.delete_enqueued as i64,
            counts.discover_enqueued as i64,
            counts.rejected as i64,
            counts.deletions_ignored as i64,
        );
        let mut tx = self.begin_write().await?;
        sqlx::query!(
            "UPDATE sync_cycles
             SET finished_at = ?1, deletions_seen = ?2, records_seen = ?3, delete_enqueued = ?4,
                 discover_enqueued = ?5, rejected = ?6, deletions_ignored = ?7, error = ?8
             WHERE id = ?9",
            now,
            deletions,
            records,
            deletes,
            discovers,
            rejected,
            ignored,
            error,
            id.0,
        )
        .execute(&mut *tx)
        .await
        .on_write(&self.health)?;
        tx.commit().await
    }

    pub async fn last_cycle_finished_at(&self) -> Result<Option<Timestamp>, LedgerError> {
        let at =
            sqlx::query_scalar!(r#"SELECT max(finished_at) AS "at: Timestamp" FROM sync_cycles"#)
                .fetch_one(&self.reader)
                .await
                .on_read(&self.health)?;
        Ok(at)
    }

    pub async fn prune_cycles(&self, cutoff: Timestamp) -> Result<u64, LedgerError> {
        let mut pruned = 0;
        loop {
            let mut tx = self.begin_write().await?;
            let deleted = sqlx::query!(
                "DELETE FROM sync_cycles WHERE id IN (
                     SELECT id FROM sync_cycles WHERE started_at < ?1 ORDER BY started_at LIMIT 500)",
                cutoff,
            )
            .execute(&mut *tx)
            .await
            .on_write(&self.health)?
            .rows_affected();
            tx.commit().await?;
            pruned += deleted;
            if deleted < 500 {
                return Ok(pruned);
            }
        }
    }
}
