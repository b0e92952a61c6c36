//! Leasing (`pending|retrying → running`) and what a lease holder may do while its job runs:
//! heartbeat, save progress in the payload, give the job back. Every write to a running job is
//! fenced by `id`, `lease_token` and `state = 'running'`; the caller turns "no row" into its
//! lease-lost error.

use chrono::{DateTime, Utc};

/// A job just leased, as `RETURNING` gives it (in no particular order: `priority`, `run_at` and
/// `id` let the caller restore the lease order).
#[derive(Debug, Clone)]
pub struct LeasedRow {
    pub id: i64,
    pub kind: String,
    pub key: String,
    pub payload: serde_json::Value,
    /// The attempt now running (1 = first try).
    pub attempts: i64,
    pub max_attempts: i64,
    pub priority: i64,
    pub run_at: DateTime<Utc>,
}

/// The priorities that have waiting jobs, lowest first: one index seek each (a skip-scan of
/// `jobs_runnable`), however many jobs wait at each.
pub async fn levels<'e>(e: impl sqlx::PgExecutor<'e>) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar!(
        r#"WITH RECURSIVE level(p) AS (
               SELECT min(priority) FROM jobs WHERE state IN ('pending', 'retrying')
               UNION ALL
               SELECT (SELECT min(priority) FROM jobs
                       WHERE state IN ('pending', 'retrying') AND priority > level.p)
               FROM level WHERE level.p IS NOT NULL
           )
           SELECT p AS "p!" FROM level WHERE p IS NOT NULL"#
    )
    .fetch_all(e)
    .await
}

/// Leases up to `limit` jobs of one `priority` that are runnable at `now`, in `run_at, id` order,
/// under `token`: a range of `jobs_runnable` that never walks the jobs scheduled later. Rows
/// another node is leasing at the same moment are skipped, not waited for (`SKIP LOCKED`), so
/// nodes leasing together never take the same job nor queue behind each other.
#[allow(clippy::too_many_arguments)]
pub async fn lease<'e>(
    e: impl sqlx::PgExecutor<'e>,
    token: &str,
    worker: &str,
    expires: DateTime<Utc>,
    now: DateTime<Utc>,
    priority: i64,
    limit: i64,
) -> sqlx::Result<Vec<LeasedRow>> {
    sqlx::query_as!(
        LeasedRow,
        r#"UPDATE jobs
           SET state = 'running', attempts = attempts + 1, lease_token = $1, leased_by = $2,
               lease_expires_at = $3, leased_at = $4, updated_at = $4
           WHERE id IN (
               SELECT id FROM jobs
               WHERE state IN ('pending', 'retrying') AND priority = $5 AND run_at <= $4
               ORDER BY run_at, id
               LIMIT $6
               FOR UPDATE SKIP LOCKED
           )
           RETURNING id AS "id!", kind AS "kind!", key AS "key!", payload AS "payload!",
                     attempts AS "attempts!", max_attempts AS "max_attempts!",
                     priority AS "priority!", run_at AS "run_at!""#,
        token,
        worker,
        expires,
        now,
        priority,
        limit,
    )
    .fetch_all(e)
    .await
}

/// Extends a running job's lease to `until`; returns the rows changed (0: the lease was lost).
pub async fn heartbeat<'e>(
    e: impl sqlx::PgExecutor<'e>,
    id: i64,
    token: &str,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "UPDATE jobs SET lease_expires_at = $1, updated_at = $2
         WHERE id = $3 AND lease_token = $4 AND state = 'running'",
        until,
        now,
        id,
        token,
    )
    .execute(e)
    .await?;
    Ok(done.rows_affected())
}

/// Replaces a running job's payload; returns the rows changed (0: the lease was lost).
pub async fn set_payload<'e>(
    e: impl sqlx::PgExecutor<'e>,
    id: i64,
    token: &str,
    payload: &serde_json::Value,
    now: DateTime<Utc>,
) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "UPDATE jobs SET payload = $1, updated_at = $2
         WHERE id = $3 AND lease_token = $4 AND state = 'running'",
        payload,
        now,
        id,
        token,
    )
    .execute(e)
    .await?;
    Ok(done.rows_affected())
}

/// Records the attempt a release interrupts, and locks the job until the transaction ends so
/// that [`release`] in the same transaction changes the very row recorded (a reclaim on another
/// node skips it meanwhile). Writes nothing when the lease was lost.
pub async fn record_released_attempt<'e>(
    e: impl sqlx::PgExecutor<'e>,
    id: i64,
    token: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "INSERT INTO job_attempts (job_id, attempt, started_at, finished_at, outcome, error, leased_by, lease_token)
         SELECT id, attempts, leased_at, $1, 'interrupted', 'released at shutdown', leased_by, lease_token
         FROM jobs WHERE id = $2 AND lease_token = $3 AND state = 'running'
         FOR UPDATE",
        now,
        id,
        token,
    )
    .execute(e)
    .await?;
    Ok(done.rows_affected())
}

/// `running → pending`, runnable at `now`, the attempt taken back; returns the rows changed
/// (0: the lease was lost).
pub async fn release<'e>(
    e: impl sqlx::PgExecutor<'e>,
    id: i64,
    token: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "UPDATE jobs
         SET state = 'pending', attempts = GREATEST(attempts - 1, 0), run_at = $1, lease_token = NULL,
             lease_expires_at = NULL, leased_by = NULL, leased_at = NULL, updated_at = $1
         WHERE id = $2 AND lease_token = $3 AND state = 'running'",
        now,
        id,
        token,
    )
    .execute(e)
    .await?;
    Ok(done.rows_affected())
}

/// [`release`] of many jobs that never started (`ids[i]` held under `tokens[i]`), writing no
/// history; returns how many were still held and given back.
pub async fn unlease<'e>(
    e: impl sqlx::PgExecutor<'e>,
    ids: &[i64],
    tokens: &[String],
    now: DateTime<Utc>,
) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "UPDATE jobs
         SET state = 'pending', attempts = GREATEST(jobs.attempts - 1, 0), run_at = $3,
             lease_token = NULL, lease_expires_at = NULL, leased_by = NULL, leased_at = NULL,
             updated_at = $3
         FROM unnest($1::bigint[], $2::text[]) AS b(id, token)
         WHERE jobs.id = b.id AND jobs.lease_token = b.token AND jobs.state = 'running'",
        ids,
        tokens,
        now,
    )
    .execute(e)
    .await?;
    Ok(done.rows_affected())
}

/// The earliest `run_at` of a waiting job (`None`: nothing waits).
pub async fn next_run_at<'e>(e: impl sqlx::PgExecutor<'e>) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar!(
        r#"SELECT min(run_at) AS "at" FROM jobs WHERE state IN ('pending', 'retrying')"#
    )
    .fetch_one(e)
    .await
}

/// The earliest lease expiry of a running job (`None`: nothing runs).
pub async fn next_lease_expiry<'e>(
    e: impl sqlx::PgExecutor<'e>,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar!(r#"SELECT min(lease_expires_at) AS "at" FROM jobs WHERE state = 'running'"#)
        .fetch_one(e)
        .await
}
