//! Ending attempts: `running → done | retrying | dead | pending`, a batch in two set-based
//! statements run in one transaction, [`record_attempts`] then [`finish`].
//!
//! The batch is a JSON array of objects, one per completion:
//! `{"id": 7, "token": "…", "outcome": "done" | "retry" | "dead" | "paused",
//!   "run_at": "2026-11-23T08:00:00.000Z" | null, "error": "…" | null, "http_status": 503 | null}`
//! (`run_at` is read for `retry` only).

use chrono::{DateTime, Utc};

/// A job whose attempt ended, and the state it is in now.
#[derive(Debug, Clone)]
pub struct FinishedRow {
    pub id: i64,
    pub state: String,
}

/// Appends the `job_attempts` row of each completion whose lease still holds, and locks those
/// jobs until the transaction ends: [`finish`] then changes exactly the rows recorded, and a
/// reclaim on another node skips them meanwhile. A `retry` on the last attempt is recorded
/// `dead`, a `paused` one `interrupted`.
pub async fn record_attempts<'e>(
    e: impl sqlx::PgExecutor<'e>,
    batch: &serde_json::Value,
    now: DateTime<Utc>,
) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        r#"INSERT INTO job_attempts (job_id, attempt, started_at, finished_at, outcome, error, http_status, leased_by, lease_token)
           SELECT j.id, j.attempts, j.leased_at, $2,
                  CASE WHEN b.outcome = 'retry' AND j.attempts >= j.max_attempts THEN 'dead'
                       WHEN b.outcome = 'paused' THEN 'interrupted'
                       ELSE b.outcome END,
                  b.error, b.http_status, j.leased_by, j.lease_token
           FROM jsonb_to_recordset($1) AS b(id bigint, token text, outcome text, error text, http_status bigint)
           JOIN jobs AS j ON j.id = b.id
           WHERE j.lease_token = b.token AND j.state = 'running'
           FOR UPDATE OF j"#,
        batch,
        now,
    )
    .execute(e)
    .await?;
    Ok(done.rows_affected())
}

/// Moves each job of `batch` whose lease still holds to its next state and returns those jobs
/// (a completion whose lease was lost is left out and changes nothing). A `retry` of a job that
/// used all its attempts parks it `dead`; a `paused` attempt does not count and the job is
/// runnable at `now`.
pub async fn finish<'e>(
    e: impl sqlx::PgExecutor<'e>,
    batch: &serde_json::Value,
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<FinishedRow>> {
    sqlx::query_as!(
        FinishedRow,
        r#"UPDATE jobs
           SET state = CASE WHEN b.outcome = 'retry' AND jobs.attempts >= jobs.max_attempts THEN 'dead'
                            WHEN b.outcome = 'retry' THEN 'retrying'
                            WHEN b.outcome = 'paused' THEN 'pending'
                            ELSE b.outcome END,
               attempts = CASE WHEN b.outcome = 'paused' THEN GREATEST(jobs.attempts - 1, 0)
                               ELSE jobs.attempts END,
               run_at = CASE WHEN b.outcome = 'paused' THEN $2
                             ELSE coalesce(b.run_at, jobs.run_at) END,
               last_error = coalesce(b.error, jobs.last_error),
               processed_at = CASE WHEN b.outcome = 'paused'
                                     OR (b.outcome = 'retry' AND jobs.attempts < jobs.max_attempts) THEN NULL
                                   ELSE $2 END,
               lease_token = NULL, lease_expires_at = NULL, leased_by = NULL, leased_at = NULL,
               updated_at = $2
           FROM jsonb_to_recordset($1) AS b(id bigint, token text, outcome text, run_at timestamptz, error text)
           WHERE jobs.id = b.id AND jobs.lease_token = b.token AND jobs.state = 'running'
           RETURNING jobs.id AS "id!", jobs.state AS "state!""#,
        batch,
        now,
    )
    .fetch_all(e)
    .await
}
