//! The `sync_cycles` table: one row per cycle and peer, so operators can see what each cycle
//! read and enqueued, and `/healthz` can tell when the last one finished.

use super::model::bounded_error;
use super::{Ledger, LedgerError};
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
    /// Entries skipped because a peer sent an invalid soul or DID.
    pub rejected: u64,
}

impl Ledger {
    /// Records that a cycle started on `peer`.
    pub async fn start_cycle(&self, peer: &str, now: Timestamp) -> Result<CycleId, LedgerError> {
        let id = sqlx::query_scalar!(
            r#"INSERT INTO sync_cycles (peer, started_at) VALUES (?1, ?2) RETURNING id AS "id!: i64""#,
            peer,
            now,
        )
        .fetch_one(&self.writer)
        .await?;
        Ok(CycleId(id))
    }

    /// Records how a cycle ended (`error` = why it stopped early, if it did).
    pub async fn finish_cycle(
        &self,
        id: CycleId,
        counts: CycleCounts,
        error: Option<&str>,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        let error = error.map(bounded_error);
        let (deletions, records, deletes, discovers, rejected) = (
            counts.deletions_seen as i64,
            counts.records_seen as i64,
            counts.delete_enqueued as i64,
            counts.discover_enqueued as i64,
            counts.rejected as i64,
        );
        sqlx::query!(
            "UPDATE sync_cycles
             SET finished_at = ?1, deletions_seen = ?2, records_seen = ?3, delete_enqueued = ?4,
                 discover_enqueued = ?5, rejected = ?6, error = ?7
             WHERE id = ?8",
            now,
            deletions,
            records,
            deletes,
            discovers,
            rejected,
            error,
            id.0,
        )
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// When the most recent cycle finished (`None` = no cycle has finished yet).
    pub async fn last_cycle_finished_at(&self) -> Result<Option<Timestamp>, LedgerError> {
        let at =
            sqlx::query_scalar!(r#"SELECT max(finished_at) AS "at: Timestamp" FROM sync_cycles"#)
                .fetch_one(&self.reader)
                .await?;
        Ok(at)
    }
}
