//! Ending attempts on PostgreSQL: a batch of completions in one transaction of two set-based
//! statements (`gunsync_pg::finish`), fenced by the lease tokens.

use sqlx::PgConnection;

use super::super::finish::completions_json;
use super::super::health::Track;
use super::super::lease::LeaseParams;
use super::super::model::{Completion, Finished, JobId, LeasedJob};
use super::super::{JobState, LedgerError, UnknownName};
use super::PgLedger;
use crate::timestamp::Timestamp;

impl PgLedger {
    /// See [`Ledger::finish_many`](super::super::Ledger::finish_many).
    pub(in crate::ledger) async fn finish_many(
        &self,
        completions: &[Completion],
        now: Timestamp,
    ) -> Result<Vec<Finished>, LedgerError> {
        if completions.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let finished = self.finish_in(&mut tx, completions, now).await?;
        self.commit(tx).await?;
        Ok(finished)
    }

    /// See [`Ledger::finish_and_lease`](super::super::Ledger::finish_and_lease): one transaction,
    /// one commit for a pool's whole exchange with the ledger.
    pub(in crate::ledger) async fn finish_and_lease(
        &self,
        completions: &[Completion],
        lease: LeaseParams<'_>,
        now: Timestamp,
    ) -> Result<(Vec<Finished>, Vec<LeasedJob>), LedgerError> {
        if completions.is_empty() && lease.max == 0 {
            return Ok((Vec::new(), Vec::new()));
        }
        let mut tx = self.begin().await?;
        let finished = if completions.is_empty() {
            Vec::new()
        } else {
            self.finish_in(&mut tx, completions, now).await?
        };
        let leased = self.lease_in(&mut tx, &lease, now).await?;
        self.commit(tx).await?;
        Ok((finished, leased))
    }

    /// [`PgLedger::finish_many`] inside the caller's transaction. A paused attempt makes its job
    /// runnable now, so other nodes are woken (delivered when the transaction commits).
    async fn finish_in(
        &self,
        conn: &mut PgConnection,
        completions: &[Completion],
        now: Timestamp,
    ) -> Result<Vec<Finished>, LedgerError> {
        let batch = completions_json(completions);
        let now = now.as_datetime();
        // The attempt rows first, while the jobs still carry the lease that matches them.
        gunsync_pg::finish::record_attempts(&mut *conn, &batch, now)
            .await
            .on_write(&self.health)?;
        let rows = gunsync_pg::finish::finish(&mut *conn, &batch, now)
            .await
            .on_write(&self.health)?;
        let finished = rows
            .into_iter()
            .map(|r| {
                let state = r
                    .state
                    .parse()
                    .map_err(|e: UnknownName| LedgerError::Invalid {
                        what: "state",
                        reason: e.to_string(),
                    })?;
                Ok(Finished {
                    id: JobId(r.id),
                    state,
                })
            })
            .collect::<Result<Vec<_>, LedgerError>>()?;
        if finished.iter().any(|f| f.state == JobState::Pending) {
            gunsync_pg::notify::jobs_ready(&mut *conn)
                .await
                .on_write(&self.health)?;
        }
        Ok(finished)
    }
}
