//! Reads for operators and endpoints: job listings, one job with its attempts, counts, cycles.
//! Each listing has its own statement so that it is planned on the index that holds its rows
//! (a partial index is only chosen when the statement's own conditions imply its predicate).

use chrono::{DateTime, Utc};
use serde_json::Value;

/// A `jobs` row as operators see it.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: i64,
    pub kind: String,
    pub key: String,
    pub state: String,
    pub priority: i64,
    pub attempts: i64,
    pub max_attempts: i64,
    pub run_at: DateTime<Utc>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub leased_by: Option<String>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    pub payload: Value,
    pub leased_at: Option<DateTime<Utc>>,
    pub revision: Option<i64>,
}

/// One finished attempt (`job_attempts`).
#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub attempt: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub outcome: String,
    pub error: Option<String>,
    pub http_status: Option<i64>,
    pub leased_by: Option<String>,
}

/// Jobs of one kind in one state.
#[derive(Debug, Clone)]
pub struct CountRow {
    pub kind: String,
    pub state: String,
    pub jobs: i64,
}

/// The jobs runnable at a moment and the earliest `run_at` among them.
#[derive(Debug, Clone)]
pub struct BacklogRow {
    pub runnable: i64,
    pub oldest: Option<DateTime<Utc>>,
}

/// One sync cycle on one peer (`sync_cycles`).
#[derive(Debug, Clone)]
pub struct CycleRow {
    pub id: i64,
    pub peer: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub deletions_seen: i64,
    pub records_seen: i64,
    pub delete_enqueued: i64,
    pub discover_enqueued: i64,
    pub rejected: i64,
    pub deletions_ignored: i64,
    pub error: Option<String>,
}

/// Of `ids`, those matching the filters, below `before`, newest first (primary key).
pub async fn ids_among<'e>(
    e: impl sqlx::PgExecutor<'e>,
    ids: &[i64],
    state: Option<&str>,
    kind: Option<&str>,
    key: Option<&str>,
    before: i64,
    limit: i64,
) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar!(
        r#"SELECT id FROM jobs
           WHERE id = ANY($1) AND ($2::text IS NULL OR state = $2)
             AND ($3::text IS NULL OR kind = $3) AND ($4::text IS NULL OR key = $4) AND id < $5
           ORDER BY id DESC LIMIT $6"#,
        ids,
        state,
        kind,
        key,
        before,
        limit,
    )
    .fetch_all(e)
    .await
}

/// The jobs of `key` in any of `kinds` (`jobs_by_kind_key`), below `before`, newest first.
pub async fn ids_by_key<'e>(
    e: impl sqlx::PgExecutor<'e>,
    kinds: &[String],
    key: &str,
    state: Option<&str>,
    before: i64,
    limit: i64,
) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar!(
        r#"SELECT id FROM jobs
           WHERE kind = ANY($1) AND key = $2 AND ($3::text IS NULL OR state = $3) AND id < $4
           ORDER BY id DESC LIMIT $5"#,
        kinds,
        key,
        state,
        before,
        limit,
    )
    .fetch_all(e)
    .await
}

/// `dead` or `cancelled` jobs (`jobs_parked`), below `before`, newest first.
pub async fn ids_parked<'e>(
    e: impl sqlx::PgExecutor<'e>,
    state: &str,
    kind: Option<&str>,
    before: i64,
    limit: i64,
) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar!(
        r#"SELECT id FROM jobs
           WHERE state IN ('dead', 'cancelled') AND state = $1 AND ($2::text IS NULL OR kind = $2)
             AND id < $3
           ORDER BY id DESC LIMIT $4"#,
        state,
        kind,
        before,
        limit,
    )
    .fetch_all(e)
    .await
}

/// `pending` or `retrying` jobs (`jobs_waiting_by_id`), below `before`, newest first.
pub async fn ids_waiting<'e>(
    e: impl sqlx::PgExecutor<'e>,
    state: &str,
    kind: Option<&str>,
    before: i64,
    limit: i64,
) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar!(
        r#"SELECT id FROM jobs
           WHERE state IN ('pending', 'retrying') AND state = $1 AND ($2::text IS NULL OR kind = $2)
             AND id < $3
           ORDER BY id DESC LIMIT $4"#,
        state,
        kind,
        before,
        limit,
    )
    .fetch_all(e)
    .await
}

/// Running jobs (`jobs_running_by_expiry`: as many as there are workers), below `before`,
/// newest first.
pub async fn ids_running<'e>(
    e: impl sqlx::PgExecutor<'e>,
    kind: Option<&str>,
    before: i64,
    limit: i64,
) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar!(
        r#"SELECT id FROM jobs
           WHERE state = 'running' AND ($1::text IS NULL OR kind = $1) AND id < $2
           ORDER BY id DESC LIMIT $3"#,
        kind,
        before,
        limit,
    )
    .fetch_all(e)
    .await
}

/// Jobs in `state` (`done`: most of a ledger, so the newest ids hold them), below `before`,
/// newest first.
pub async fn ids_in_state<'e>(
    e: impl sqlx::PgExecutor<'e>,
    state: &str,
    kind: Option<&str>,
    before: i64,
    limit: i64,
) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar!(
        r#"SELECT id FROM jobs
           WHERE state = $1 AND ($2::text IS NULL OR kind = $2) AND id < $3
           ORDER BY id DESC LIMIT $4"#,
        state,
        kind,
        before,
        limit,
    )
    .fetch_all(e)
    .await
}

/// Any job (of `kind`), below `before`, newest first.
pub async fn ids_all<'e>(
    e: impl sqlx::PgExecutor<'e>,
    kind: Option<&str>,
    before: i64,
    limit: i64,
) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar!(
        r#"SELECT id FROM jobs
           WHERE ($1::text IS NULL OR kind = $1) AND id < $2
           ORDER BY id DESC LIMIT $3"#,
        kind,
        before,
        limit,
    )
    .fetch_all(e)
    .await
}

/// The rows of `ids`, newest first.
pub async fn rows<'e>(e: impl sqlx::PgExecutor<'e>, ids: &[i64]) -> sqlx::Result<Vec<JobRow>> {
    sqlx::query_as!(
        JobRow,
        r#"SELECT id, kind, key, state, priority, attempts, max_attempts, run_at, lease_expires_at,
                  leased_by, last_error, created_at, updated_at, processed_at, payload, leased_at,
                  revision
           FROM jobs WHERE id = ANY($1)
           ORDER BY id DESC"#,
        ids,
    )
    .fetch_all(e)
    .await
}

/// The finished attempts of a job, oldest first.
pub async fn attempts<'e>(
    e: impl sqlx::PgExecutor<'e>,
    job_id: i64,
) -> sqlx::Result<Vec<AttemptRow>> {
    sqlx::query_as!(
        AttemptRow,
        r#"SELECT attempt, started_at, finished_at, outcome, error, http_status, leased_by
           FROM job_attempts WHERE job_id = $1 ORDER BY id"#,
        job_id,
    )
    .fetch_all(e)
    .await
}

/// Jobs by kind and state (only the pairs that have jobs). Counted: there is no counts table on
/// PostgreSQL (see `job_summary` in the migration).
pub async fn counts<'e>(e: impl sqlx::PgExecutor<'e>) -> sqlx::Result<Vec<CountRow>> {
    sqlx::query_as!(
        CountRow,
        r#"SELECT kind, state, count(*) AS "jobs!" FROM jobs GROUP BY kind, state"#
    )
    .fetch_all(e)
    .await
}

/// The runnable backlog at `now`: a range of the waiting jobs' partial indexes, never the jobs
/// scheduled later.
pub async fn backlog<'e>(
    e: impl sqlx::PgExecutor<'e>,
    now: DateTime<Utc>,
) -> sqlx::Result<BacklogRow> {
    sqlx::query_as!(
        BacklogRow,
        r#"SELECT count(*) AS "runnable!", min(run_at) AS oldest
           FROM jobs WHERE state IN ('pending', 'retrying') AND run_at <= $1"#,
        now,
    )
    .fetch_one(e)
    .await
}

/// Running jobs whose lease had expired at `now` (`jobs_running_by_expiry`).
pub async fn expired_leases<'e>(
    e: impl sqlx::PgExecutor<'e>,
    now: DateTime<Utc>,
) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM jobs WHERE state = 'running' AND lease_expires_at <= $1"#,
        now,
    )
    .fetch_one(e)
    .await
}

/// The newest `limit` sync cycles, newest first.
pub async fn recent_cycles<'e>(
    e: impl sqlx::PgExecutor<'e>,
    limit: i64,
) -> sqlx::Result<Vec<CycleRow>> {
    sqlx::query_as!(
        CycleRow,
        r#"SELECT id, peer, started_at, finished_at, deletions_seen, records_seen, delete_enqueued,
                  discover_enqueued, rejected, deletions_ignored, error
           FROM sync_cycles ORDER BY id DESC LIMIT $1"#,
        limit,
    )
    .fetch_all(e)
    .await
}

/// The newest migration applied (`None`: none yet).
pub async fn schema_version<'e>(e: impl sqlx::PgExecutor<'e>) -> sqlx::Result<Option<i64>> {
    // Unchecked: `_sqlx_migrations` is the migrator's own table, not part of the schema the
    // macros are checked against (a database built from `migrations/` alone lacks it).
    sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
        .fetch_one(e)
        .await
}

/// Answers when the database does.
pub async fn ping<'e>(e: impl sqlx::PgExecutor<'e>) -> sqlx::Result<()> {
    sqlx::query_scalar!(r#"SELECT 1 AS "one!""#)
        .fetch_one(e)
        .await?;
    Ok(())
}

/// Jobs whose key does not start with `prefix`.
pub async fn count_jobs_outside<'e>(
    e: impl sqlx::PgExecutor<'e>,
    prefix: &str,
) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM jobs WHERE NOT starts_with(key, $1)"#,
        prefix,
    )
    .fetch_one(e)
    .await
}
