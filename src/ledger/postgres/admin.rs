//! Operator transitions on PostgreSQL: requeue, cancel and prune in batches of short
//! transactions (other nodes keep working meanwhile), and giving space back with `VACUUM`.

use std::collections::HashSet;

use super::super::admin::{
    ADMIN_BATCH, Cancelled, Pruned, Requeue, RequeueReport, Space, Vacuum, plan,
};
use super::super::health::Track;
use super::super::model::JobId;
use super::super::{JobState, LedgerError, UnknownName};
use super::PgLedger;
use crate::timestamp::Timestamp;

/// How often a requeue batch is tried again after it met a job of the same `(kind, key)` made
/// active at the same moment by another transaction (see `gunsync_pg::admin::requeue`).
const REQUEUE_TRIES: u32 = 3;

impl PgLedger {
    /// See [`Ledger::requeue`](super::super::Ledger::requeue). Each batch that requeued jobs wakes
    /// the other nodes.
    pub(in crate::ledger) async fn requeue(
        &self,
        request: &Requeue,
        now: Timestamp,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<RequeueReport, LedgerError> {
        request.check()?;
        let matched: Vec<i64> = self.matching_ids(&request.matching()).await?;
        let rows = gunsync_pg::admin::briefs(&self.pool, &matched)
            .await
            .on_read(&self.health)?;

        let (mut report, candidates) = plan(
            request,
            rows.iter()
                .map(|r| (r.id, r.kind.as_str(), r.key.as_str(), r.state.as_str())),
        );
        if request.dry_run {
            // Would-be duplicates of an active job are only known by asking; do it read-only.
            let blocked = self.blocked_by_active(&candidates).await?;
            report.skipped_duplicate += blocked.len() as u64;
            report.requeued = candidates
                .into_iter()
                .filter(|id| !blocked.contains(id))
                .map(JobId)
                .collect();
            return Ok(report);
        }
        let total = candidates.len() as u64;
        for chunk in candidates.chunks(ADMIN_BATCH) {
            let done = self
                .requeue_batch(chunk, now, request.reset_attempts)
                .await?;
            report.skipped_duplicate += (chunk.len() - done.len()) as u64;
            report.requeued.extend(done.into_iter().map(JobId));
            progress(
                report.requeued.len() as u64 + report.skipped_duplicate,
                total,
            );
        }
        report.requeued.sort();
        Ok(report)
    }

    /// One requeue batch in its own transaction, tried again when another transaction made a job
    /// of the same `(kind, key)` active at the same moment (the next try leaves that key alone).
    async fn requeue_batch(
        &self,
        ids: &[i64],
        now: Timestamp,
        reset: bool,
    ) -> Result<Vec<i64>, LedgerError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let mut tx = self.begin().await?;
            let done =
                match gunsync_pg::admin::requeue(&mut *tx, ids, now.as_datetime(), reset).await {
                    Err(sqlx::Error::Database(e))
                        if e.is_unique_violation() && tries < REQUEUE_TRIES =>
                    {
                        tx.rollback().await.on_write(&self.health)?;
                        continue;
                    }
                    result => result.on_write(&self.health)?,
                };
            if !done.is_empty() {
                gunsync_pg::notify::jobs_ready(&mut *tx)
                    .await
                    .on_write(&self.health)?;
            }
            self.commit(tx).await?;
            return Ok(done);
        }
    }

    /// Of `ids`, those whose `(kind, key)` has another active job.
    async fn blocked_by_active(&self, ids: &[i64]) -> Result<HashSet<i64>, LedgerError> {
        let mut blocked = HashSet::new();
        for chunk in ids.chunks(ADMIN_BATCH) {
            let rows = gunsync_pg::admin::blocked_by_active(&self.pool, chunk)
                .await
                .on_read(&self.health)?;
            blocked.extend(rows);
        }
        Ok(blocked)
    }

    /// See [`Ledger::cancel`](super::super::Ledger::cancel). Each batch is one statement.
    pub(in crate::ledger) async fn cancel(
        &self,
        ids: &[JobId],
        now: Timestamp,
    ) -> Result<Cancelled, LedgerError> {
        let mut report = Cancelled::default();
        for chunk in ids.chunks(ADMIN_BATCH) {
            let chunk: Vec<i64> = chunk.iter().map(|id| id.0).collect();
            let done = gunsync_pg::admin::cancel(&self.pool, &chunk, now.as_datetime())
                .await
                .on_write(&self.health)?;
            self.health.succeeded();
            report.cancelled.extend(done.into_iter().map(JobId));
        }
        let cancelled: HashSet<JobId> = report.cancelled.iter().copied().collect();
        for id in ids.iter().copied().filter(|id| !cancelled.contains(id)) {
            match self.job_state(id).await? {
                Some(state) => report.not_cancellable.push((id, state)),
                None => report.missing.push(id),
            }
        }
        report.cancelled.sort();
        Ok(report)
    }

    /// See [`Ledger::prune`](super::super::Ledger::prune). A keyset pass over the ids in batches;
    /// each batch's deletion is one statement that checks again what it deletes.
    pub(in crate::ledger) async fn prune(
        &self,
        cutoff: Timestamp,
        state: Option<JobState>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Pruned, LedgerError> {
        if let Some(state) = state.filter(|s| !s.is_finished()) {
            return Err(LedgerError::Invalid {
                what: "state",
                reason: format!(
                    "prune deletes finished jobs only (done, dead, cancelled), not {state}"
                ),
            });
        }
        let state = state.map(JobState::as_str);
        let cutoff = cutoff.as_datetime();
        let mut pruned = Pruned::default();
        let mut after = 0i64;
        loop {
            let scanned =
                gunsync_pg::admin::prune_scan(&self.pool, after, cutoff, state, ADMIN_BATCH as i64)
                    .await
                    .on_read(&self.health)?;
            let Some(last) = scanned.last() else {
                break;
            };
            after = last.id;
            let ids: Vec<i64> = scanned.iter().filter(|r| r.prune).map(|r| r.id).collect();
            if ids.is_empty() {
                continue;
            }
            let gone = gunsync_pg::admin::prune(&self.pool, &ids, cutoff, state)
                .await
                .on_write(&self.health)?;
            self.health.succeeded();
            pruned.jobs += gone.jobs.unsigned_abs();
            pruned.attempts += gone.attempts.unsigned_abs();
            progress(pruned.jobs);
        }
        Ok(pruned)
    }

    async fn job_state(&self, id: JobId) -> Result<Option<JobState>, LedgerError> {
        let state = gunsync_pg::admin::job_state(&self.pool, id.0)
            .await
            .on_read(&self.health)?;
        state
            .map(|s| {
                s.parse().map_err(|e: UnknownName| LedgerError::Invalid {
                    what: "state",
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    /// See [`Ledger::give_back_space`](super::super::Ledger::give_back_space): `VACUUM` of the
    /// tables prune deletes from, outside any transaction. [`Vacuum::Incremental`] is a plain
    /// `VACUUM` (space of deleted rows reusable, empty pages at the end of each table given back,
    /// other nodes keep working); [`Vacuum::Full`] is `VACUUM FULL` (the tables rewritten and
    /// everything given back, each table locked against every node while it is rewritten).
    ///
    /// `bytes_before` and `bytes_after` are the ledger's tables with their indexes and TOAST data
    /// (`pg_total_relation_size`), not the whole database, which may hold other data and
    /// PostgreSQL's catalogs. `free_pages` is always 0: PostgreSQL reuses the space plain `VACUUM`
    /// frees inside a table for new rows, and cannot count it without an extension
    /// (`pg_freespacemap`).
    pub(in crate::ledger) async fn give_back_space(
        &self,
        vacuum: Vacuum,
    ) -> Result<Space, LedgerError> {
        let bytes_before = self.ledger_size().await;
        gunsync_pg::admin::vacuum(&self.pool, vacuum == Vacuum::Full)
            .await
            .on_write(&self.health)?;
        self.health.succeeded();
        Ok(Space {
            bytes_before,
            bytes_after: self.ledger_size().await,
            free_pages: 0,
        })
    }

    /// The bytes of the ledger's tables, their indexes and TOAST data (0 if they cannot be
    /// read): what [`Space`] reports on PostgreSQL.
    pub(in crate::ledger) async fn ledger_size(&self) -> u64 {
        gunsync_pg::admin::ledger_size(&self.pool)
            .await
            .map_or(0, i64::unsigned_abs)
    }
}
