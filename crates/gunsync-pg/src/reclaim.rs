//! Rescuing jobs whose worker died: `running → retrying | dead` once the lease expired.

use chrono::{DateTime, Utc};

/// Reclaims every running job whose lease expired at or before `now` in one statement: each is
/// locked, its `lease_expired` attempt recorded and the job moved on together, so every node may
/// run it at once. A job another transaction holds (its worker finishing or heartbeating, another
/// node reclaiming it) is skipped, not waited for; the next pass sees where it ended. Returns the
/// new state of each job reclaimed (`retrying`, runnable at `now`, or `dead` when out of
/// attempts).
pub async fn reclaim_expired<'e>(
    e: impl sqlx::PgExecutor<'e>,
    now: DateTime<Utc>,
    error: &str,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!(
        r#"WITH expired AS (
               SELECT id, attempts, leased_at, leased_by, lease_token FROM jobs
               WHERE state = 'running' AND lease_expires_at <= $1
               FOR UPDATE SKIP LOCKED
           ), attempt AS (
               INSERT INTO job_attempts (job_id, attempt, started_at, finished_at, outcome, error, leased_by, lease_token)
               SELECT id, attempts, leased_at, $1, 'lease_expired', $2, leased_by, lease_token FROM expired
           )
           UPDATE jobs
           SET state = CASE WHEN jobs.attempts >= jobs.max_attempts THEN 'dead' ELSE 'retrying' END,
               run_at = $1, last_error = $2,
               processed_at = CASE WHEN jobs.attempts >= jobs.max_attempts THEN $1 END,
               lease_token = NULL, lease_expires_at = NULL, leased_by = NULL, leased_at = NULL,
               updated_at = $1
           FROM expired
           WHERE jobs.id = expired.id AND jobs.lease_token = expired.lease_token AND jobs.state = 'running'
           RETURNING jobs.state AS "state!""#,
        now,
        error,
    )
    .fetch_all(e)
    .await
}
