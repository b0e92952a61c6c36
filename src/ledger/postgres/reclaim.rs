//! Rescuing jobs whose worker died, on PostgreSQL: one fenced statement that skips the jobs other
//! transactions hold, so every node runs its rescuer without coordinating.

use super::super::LedgerError;
use super::super::health::Track;
use super::super::model::Reclaimed;
use super::super::reclaim::LEASE_EXPIRED;
use super::PgLedger;
use crate::timestamp::Timestamp;

impl PgLedger {
    /// See [`Ledger::reclaim_expired`](super::super::Ledger::reclaim_expired). The jobs it makes
    /// runnable again wake the other nodes (in the same transaction, so only once it commits).
    pub(in crate::ledger) async fn reclaim_expired(
        &self,
        now: Timestamp,
    ) -> Result<Reclaimed, LedgerError> {
        let mut tx = self.begin().await?;
        let states =
            gunsync_pg::reclaim::reclaim_expired(&mut *tx, now.as_datetime(), LEASE_EXPIRED)
                .await
                .on_write(&self.health)?;
        let dead = states.iter().filter(|s| *s == "dead").count() as u64;
        let retrying = states.len() as u64 - dead;
        if retrying > 0 {
            gunsync_pg::notify::jobs_ready(&mut *tx)
                .await
                .on_write(&self.health)?;
        }
        self.commit(tx).await?;
        Ok(Reclaimed { retrying, dead })
    }
}
