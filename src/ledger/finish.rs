//! Ending an attempt: `running → done | retrying | dead | pending` (see `state.rs`), fenced by the lease
//! token. Many completions go in one transaction of two set-based statements, so batch workers
//! and the benchmark pay one commit per batch, not per job.

use serde_json::json;

use super::health::Track;
use super::lease::LeaseParams;
use super::model::{Completion, Finish, Finished, JobId, LeasedJob, bounded_error};
use super::write::WriteTx;
use super::{LedgerError, SqliteLedger};
use crate::timestamp::Timestamp;

impl SqliteLedger {
    pub async fn finish_many(
        &self,
        completions: &[Completion],
        now: Timestamp,
    ) -> Result<Vec<Finished>, LedgerError> {
        if completions.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        let finished = self.finish_in(&mut tx, completions, now).await?;
        tx.commit().await?;
        Ok(finished)
    }

    pub async fn finish_and_lease(
        &self,
        completions: &[Completion],
        lease: LeaseParams<'_>,
        now: Timestamp,
    ) -> Result<(Vec<Finished>, Vec<LeasedJob>), LedgerError> {
        if completions.is_empty() && lease.max == 0 {
            return Ok((Vec::new(), Vec::new()));
        }
        let mut tx = self.begin_write().await?;
        let finished = if completions.is_empty() {
            Vec::new()
        } else {
            self.finish_in(&mut tx, completions, now).await?
        };
        let leased = self.lease_in(&mut tx, &lease, now).await?;
        tx.commit().await?;
        Ok((finished, leased))
    }

    /// [`SqliteLedger::finish_many`] inside an open write transaction.
    async fn finish_in(
        &self,
        tx: &mut WriteTx,
        completions: &[Completion],
        now: Timestamp,
    ) -> Result<Vec<Finished>, LedgerError> {
        let batch = completions_json(completions).to_string();
        // Write the attempt rows first, while the jobs still carry the lease that matches them.
        sqlx::query!(
            r#"INSERT INTO job_attempts (job_id, attempt, started_at, finished_at, outcome, error, http_status, leased_by, lease_token)
               SELECT j.id, j.attempts, j.leased_at, ?2,
                      CASE WHEN b.outcome = 'retry' AND j.attempts >= j.max_attempts THEN 'dead'
                           WHEN b.outcome = 'paused' THEN 'interrupted'
                           ELSE b.outcome END,
                      b.error, b.http_status, j.leased_by, j.lease_token
               FROM (SELECT value ->> 'id' AS id, value ->> 'token' AS token, value ->> 'outcome' AS outcome,
                            value ->> 'error' AS error, value ->> 'http_status' AS http_status
                     FROM jsonb_each(?1)) AS b
               JOIN jobs AS j ON j.id = b.id
               WHERE j.lease_token = b.token AND +j.state = 'running'"#,
            batch,
            now,
        )
        .execute(&mut **tx)
        .await
        .on_write(&self.health)?;
        let rows = sqlx::query!(
            r#"UPDATE jobs
               SET state = CASE WHEN b.outcome = 'retry' AND jobs.attempts >= jobs.max_attempts THEN 'dead'
                                WHEN b.outcome = 'retry' THEN 'retrying'
                                WHEN b.outcome = 'paused' THEN 'pending'
                                ELSE b.outcome END,
                   -- a paused attempt does not count (the failure was the system's, not the job's)
                   attempts = CASE WHEN b.outcome = 'paused' THEN max(jobs.attempts - 1, 0) ELSE jobs.attempts END,
                   run_at = CASE WHEN b.outcome = 'paused' THEN ?2 ELSE coalesce(b.run_at, jobs.run_at) END,
                   last_error = coalesce(b.error, jobs.last_error),
                   processed_at = CASE WHEN b.outcome = 'paused'
                                         OR (b.outcome = 'retry' AND jobs.attempts < jobs.max_attempts) THEN NULL
                                       ELSE ?2 END,
                   lease_token = NULL, lease_expires_at = NULL, leased_by = NULL, leased_at = NULL, updated_at = ?2
               FROM (SELECT value ->> 'id' AS id, value ->> 'token' AS token, value ->> 'outcome' AS outcome,
                            value ->> 'run_at' AS run_at, value ->> 'error' AS error
                     FROM jsonb_each(?1)) AS b
               -- `+state`: look jobs up by id from the batch; never scan every running job per entry
               WHERE jobs.id = b.id AND jobs.lease_token = b.token AND +jobs.state = 'running'
               RETURNING jobs.id AS "id!: i64", jobs.state AS "state!: String""#,
            batch,
            now,
        )
        .fetch_all(&mut **tx)
        .await
        .on_write(&self.health)?;
        rows.into_iter()
            .map(|r| {
                let state =
                    r.state
                        .parse()
                        .map_err(|e: super::UnknownName| LedgerError::Invalid {
                            what: "state",
                            reason: e.to_string(),
                        })?;
                Ok(Finished {
                    id: JobId(r.id),
                    state,
                })
            })
            .collect()
    }
}

/// Completions as one JSON array parameter: id, lease token, outcome (`done`, `retry`, `dead`,
/// `paused`), when a retry runs, the error (bounded) and the HTTP status.
pub(super) fn completions_json(completions: &[Completion]) -> serde_json::Value {
    json!(
        completions
            .iter()
            .map(|c| {
                let (outcome, run_at, error, status) = match &c.finish {
                    Finish::Done => ("done", None, None, None),
                    Finish::Retry {
                        at,
                        error,
                        http_status,
                    } => (
                        "retry",
                        Some(at.to_string()),
                        Some(bounded_error(error)),
                        *http_status,
                    ),
                    Finish::Dead { error, http_status } => {
                        ("dead", None, Some(bounded_error(error)), *http_status)
                    }
                    Finish::Paused { error, http_status } => {
                        ("paused", None, Some(bounded_error(error)), *http_status)
                    }
                };
                json!({
                    "id": c.id.0,
                    "token": c.lease_token.as_str(),
                    "outcome": outcome,
                    "run_at": run_at,
                    "error": error,
                    "http_status": status,
                })
            })
            .collect::<Vec<_>>()
    )
}
