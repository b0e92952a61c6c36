//! Leasing: `pending|retrying → running` in one `UPDATE … RETURNING` inside `BEGIN IMMEDIATE`
//! plus what a lease holder may do while it runs: heartbeat, save progress in the payload, and
//! release the job at shutdown (`running → pending`, the attempt not burned).

use std::time::Duration;

use serde_json::Value;

use super::health::Track;
use super::model::{JobId, LeaseToken, LeasedJob};
use super::write::WriteTx;
use super::{LedgerError, SqliteLedger};
use crate::timestamp::Timestamp;

/// What to lease.
#[derive(Clone, Debug)]
pub struct LeaseParams<'a> {
    /// At most this many jobs (the caller's free slots).
    pub max: u32,
    /// Who holds the lease (shown to operators as `leased_by`).
    pub worker: &'a str,
    /// How long the lease lasts before another worker may reclaim the job.
    pub lease_for: Duration,
}

impl SqliteLedger {
    pub async fn lease(
        &self,
        params: LeaseParams<'_>,
        now: Timestamp,
    ) -> Result<Vec<LeasedJob>, LedgerError> {
        if params.max == 0 {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        let jobs = self.lease_in(&mut tx, &params, now).await?;
        tx.commit().await?;
        Ok(jobs)
    }

    /// [`SqliteLedger::lease`] inside an open write transaction. One priority level at a time, lowest
    /// first: within a level the runnable jobs are a prefix of `jobs_runnable` (ordered by
    /// `run_at`), so the statement never walks the jobs scheduled later, however many wait.
    pub(super) async fn lease_in(
        &self,
        tx: &mut WriteTx,
        params: &LeaseParams<'_>,
        now: Timestamp,
    ) -> Result<Vec<LeasedJob>, LedgerError> {
        if params.max == 0 {
            return Ok(Vec::new());
        }
        // The priorities that have waiting jobs: one index seek each (a skip-scan).
        let levels = sqlx::query_scalar!(
            r#"WITH RECURSIVE level(p) AS (
                   SELECT min(priority) FROM jobs INDEXED BY jobs_runnable
                   WHERE state IN ('pending', 'retrying')
                   UNION ALL
                   SELECT (SELECT min(priority) FROM jobs INDEXED BY jobs_runnable
                           WHERE state IN ('pending', 'retrying') AND priority > level.p)
                   FROM level WHERE level.p IS NOT NULL
               )
               SELECT p AS "p!: i64" FROM level WHERE p IS NOT NULL"#
        )
        .fetch_all(&mut **tx)
        .await
        .on_write(&self.health)?;
        let token = LeaseToken::generate();
        let token_str = token.as_str();
        let expires = now.plus(params.lease_for);
        let mut jobs = Vec::new();
        for level in levels {
            let left = i64::from(params.max) - jobs.len() as i64;
            if left <= 0 {
                break;
            }
            let rows = sqlx::query!(
                r#"UPDATE jobs
                   SET state = 'running', attempts = attempts + 1, lease_token = ?1, leased_by = ?2,
                       lease_expires_at = ?3, leased_at = ?4, updated_at = ?4
                   WHERE id IN (
                       SELECT id FROM jobs INDEXED BY jobs_runnable
                       WHERE state IN ('pending', 'retrying') AND priority = ?5 AND run_at <= ?4
                       ORDER BY run_at, id
                       -- `+?6`, not `?6`: SQLite plans a bare bound LIMIT as a constant and
                       -- re-prepares the statement whenever it is rebound (every lease).
                       LIMIT +?6
                   )
                   RETURNING id AS "id!: i64", kind AS "kind!: String", key AS "key!: String",
                             payload AS "payload!: String", attempts AS "attempts!: i64",
                             max_attempts AS "max_attempts!: i64", run_at AS "run_at!: Timestamp""#,
                token_str,
                params.worker,
                expires,
                now,
                level,
                left,
            )
            .fetch_all(&mut **tx)
            .await
            .on_write(&self.health)?;
            let mut level_jobs: Vec<(Timestamp, LeasedJob)> = rows
                .into_iter()
                .map(|r| {
                    let job = LeasedJob {
                        id: JobId(r.id),
                        kind_name: r.kind,
                        key: r.key,
                        // The CHECK constraint keeps payloads valid JSON; an object is what we store.
                        payload: serde_json::from_str(&r.payload).unwrap_or(Value::Null),
                        attempt: u32::try_from(r.attempts).unwrap_or(u32::MAX),
                        max_attempts: u32::try_from(r.max_attempts).unwrap_or(u32::MAX),
                        lease_token: token.clone(),
                        lease_expires_at: expires,
                    };
                    (r.run_at, job)
                })
                .collect();
            // RETURNING gives no order: restore the lease order within the level.
            level_jobs.sort_by(|(a_at, a), (b_at, b)| (a_at, a.id).cmp(&(b_at, b.id)));
            jobs.extend(level_jobs.into_iter().map(|(_, job)| job));
        }
        Ok(jobs)
    }

    pub async fn heartbeat(
        &self,
        id: JobId,
        token: &LeaseToken,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        let token = token.as_str();
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query!(
            "UPDATE jobs SET lease_expires_at = ?1, updated_at = ?2
             WHERE id = ?3 AND lease_token = ?4 AND state = 'running'",
            until,
            now,
            id.0,
            token,
        )
        .execute(&mut *tx)
        .await
        .on_write(&self.health)?
        .rows_affected();
        tx.commit().await?;
        fenced(changed, id)
    }

    pub async fn set_payload(
        &self,
        id: JobId,
        token: &LeaseToken,
        payload: &Value,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        object_payload(payload)?;
        let token = token.as_str();
        let payload = payload.to_string();
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query!(
            "UPDATE jobs SET payload = ?1, updated_at = ?2
             WHERE id = ?3 AND lease_token = ?4 AND state = 'running'",
            payload,
            now,
            id.0,
            token,
        )
        .execute(&mut *tx)
        .await
        .on_write(&self.health)?
        .rows_affected();
        tx.commit().await?;
        fenced(changed, id)
    }

    pub async fn release(
        &self,
        id: JobId,
        token: &LeaseToken,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        let token = token.as_str();
        let mut tx = self.begin_write().await?;
        // Record the interrupted attempt while the job still carries the lease that proves it.
        sqlx::query!(
            "INSERT INTO job_attempts (job_id, attempt, started_at, finished_at, outcome, error, leased_by, lease_token)
             SELECT id, attempts, leased_at, ?1, 'interrupted', 'released at shutdown', leased_by, lease_token
             FROM jobs WHERE id = ?2 AND lease_token = ?3 AND state = 'running'",
            now,
            id.0,
            token,
        )
        .execute(&mut *tx)
        .await
        .on_write(&self.health)?;
        let changed = sqlx::query!(
            "UPDATE jobs
             SET state = 'pending', attempts = max(attempts - 1, 0), run_at = ?1, lease_token = NULL,
                 lease_expires_at = NULL, leased_by = NULL, leased_at = NULL, updated_at = ?1
             WHERE id = ?2 AND lease_token = ?3 AND state = 'running'",
            now,
            id.0,
            token,
        )
        .execute(&mut *tx)
        .await
        .on_write(&self.health)?
        .rows_affected();
        if changed == 0 {
            tx.rollback().await?;
            return Err(LedgerError::LeaseLost(id));
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn unlease(
        &self,
        jobs: &[(JobId, LeaseToken)],
        now: Timestamp,
    ) -> Result<u64, LedgerError> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let batch = serde_json::json!(
            jobs.iter()
                .map(|(id, token)| serde_json::json!({ "id": id.0, "token": token.as_str() }))
                .collect::<Vec<_>>()
        )
        .to_string();
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query!(
            r#"UPDATE jobs
               SET state = 'pending', attempts = max(attempts - 1, 0), run_at = ?2,
                   lease_token = NULL, lease_expires_at = NULL, leased_by = NULL, leased_at = NULL,
                   updated_at = ?2
               FROM (SELECT value ->> 'id' AS id, value ->> 'token' AS token FROM jsonb_each(?1)) AS b
               WHERE jobs.id = b.id AND jobs.lease_token = b.token AND +jobs.state = 'running'"#,
            batch,
            now,
        )
        .execute(&mut *tx)
        .await
        .on_write(&self.health)?
        .rows_affected();
        tx.commit().await?;
        Ok(changed)
    }

    pub async fn next_run_at(&self) -> Result<Option<Timestamp>, LedgerError> {
        let at = sqlx::query_scalar!(
            r#"SELECT min(run_at) AS "at: Timestamp" FROM jobs INDEXED BY jobs_waiting
               WHERE state IN ('pending', 'retrying')"#
        )
        .fetch_one(&self.reader)
        .await
        .on_read(&self.health)?;
        Ok(at)
    }

    pub async fn next_lease_expiry(&self) -> Result<Option<Timestamp>, LedgerError> {
        let at = sqlx::query_scalar!(
            r#"SELECT min(lease_expires_at) AS "at: Timestamp" FROM jobs WHERE state = 'running'"#
        )
        .fetch_one(&self.reader)
        .await
        .on_read(&self.health)?;
        Ok(at)
    }
}

/// A job's payload must be a JSON object (what handlers read their saved progress from).
pub(super) fn object_payload(payload: &Value) -> Result<(), LedgerError> {
    if payload.is_object() {
        Ok(())
    } else {
        Err(LedgerError::Invalid {
            what: "payload",
            reason: "must be a JSON object".into(),
        })
    }
}

/// A fenced write that touched no row means the lease was lost (it expired and moved on).
pub(super) fn fenced(rows_changed: u64, id: JobId) -> Result<(), LedgerError> {
    if rows_changed == 0 {
        Err(LedgerError::LeaseLost(id))
    } else {
        Ok(())
    }
}
