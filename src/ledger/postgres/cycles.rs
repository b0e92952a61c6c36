//! The `sync_cycles` table on PostgreSQL (see the SQLite backend's `cycles.rs`). Each write is
//! one statement, so it runs outside an explicit transaction.

use gunsync_pg::cycles as sql;

use super::super::LedgerError;
use super::super::cycles::{CycleCounts, CycleId};
use super::super::health::Track;
use super::super::model::bounded_error;
use super::PgLedger;
use crate::timestamp::Timestamp;

/// Cycles deleted per statement by `prune_cycles`.
const PRUNE_BATCH: i64 = 500;

impl PgLedger {
    /// Records that a cycle started on `peer`.
    pub(in crate::ledger) async fn start_cycle(
        &self,
        peer: &str,
        now: Timestamp,
    ) -> Result<CycleId, LedgerError> {
        let id = sql::start(&self.pool, peer, now.as_datetime())
            .await
            .on_write(&self.health)?;
        self.health.succeeded();
        Ok(CycleId(id))
    }

    /// Records how a cycle ended (`error` = why it stopped early, if it did).
    pub(in crate::ledger) async fn finish_cycle(
        &self,
        id: CycleId,
        counts: CycleCounts,
        error: Option<&str>,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        let error = error.map(bounded_error);
        let counts = sql::CycleCounts {
            deletions_seen: counts.deletions_seen as i64,
            records_seen: counts.records_seen as i64,
            delete_enqueued: counts.delete_enqueued as i64,
            discover_enqueued: counts.discover_enqueued as i64,
            rejected: counts.rejected as i64,
            deletions_ignored: counts.deletions_ignored as i64,
        };
        sql::finish(
            &self.pool,
            id.0,
            counts,
            error.as_deref(),
            now.as_datetime(),
        )
        .await
        .on_write(&self.health)?;
        self.health.succeeded();
        Ok(())
    }

    /// When the most recent cycle finished (`None` = no cycle has finished yet).
    pub(in crate::ledger) async fn last_cycle_finished_at(
        &self,
    ) -> Result<Option<Timestamp>, LedgerError> {
        let at = sql::last_finished_at(&self.pool)
            .await
            .on_read(&self.health)?;
        Ok(at.map(Timestamp::from))
    }

    /// Deletes the records of cycles that started before `cutoff`, in short batches; returns
    /// how many.
    pub(in crate::ledger) async fn prune_cycles(
        &self,
        cutoff: Timestamp,
    ) -> Result<u64, LedgerError> {
        let mut pruned = 0;
        loop {
            let deleted = sql::prune(&self.pool, cutoff.as_datetime(), PRUNE_BATCH)
                .await
                .on_write(&self.health)?;
            self.health.succeeded();
            pruned += deleted;
            if deleted < PRUNE_BATCH as u64 {
                return Ok(pruned);
            }
        }
    }
}
