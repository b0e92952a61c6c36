//! Operator transitions: requeue (`done|dead|cancelled|retrying → pending`), cancel
//! (`pending|retrying → cancelled`), prune (delete finished jobs) and giving space back. Each runs
//! on a batch of ids the caller chooses, so its transactions stay short.

use chrono::{DateTime, Utc};

/// What requeue needs to know of a job before it decides.
#[derive(Debug, Clone)]
pub struct JobBrief {
    pub id: i64,
    pub kind: String,
    pub key: String,
    pub state: String,
}

/// The jobs of `ids` that exist, newest first.
pub async fn briefs<'e>(e: impl sqlx::PgExecutor<'e>, ids: &[i64]) -> sqlx::Result<Vec<JobBrief>> {
    sqlx::query_as!(
        JobBrief,
        r#"SELECT id AS "id!", kind AS "kind!", key AS "key!", state AS "state!"
           FROM jobs WHERE id = ANY($1) ORDER BY id DESC"#,
        ids,
    )
    .fetch_all(e)
    .await
}

/// Of `ids`, those whose `(kind, key)` has another active job.
pub async fn blocked_by_active<'e>(
    e: impl sqlx::PgExecutor<'e>,
    ids: &[i64],
) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar!(
        r#"SELECT j.id AS "id!" FROM jobs AS j
           WHERE j.id = ANY($1)
             AND EXISTS (SELECT 1 FROM jobs AS a
                         WHERE a.kind = j.kind AND a.key = j.key AND a.id <> j.id
                           AND a.state IN ('pending', 'running', 'retrying'))"#,
        ids,
    )
    .fetch_all(e)
    .await
}

/// Moves the finished or retrying jobs of `ids` whose `(kind, key)` has no other active job to
/// `pending`, runnable at `now`; returns those moved. `reset` restarts the attempt count at 0,
/// otherwise `max_attempts` is raised to allow one more attempt.
///
/// The check for another active job reads committed rows only: a job of the same `(kind, key)`
/// made active by a transaction still open (an enqueue on another node) fails this statement with
/// a unique violation of `jobs_one_active_per_key` once that transaction commits. Run it again:
/// it then sees that job and leaves the key alone.
pub async fn requeue<'e>(
    e: impl sqlx::PgExecutor<'e>,
    ids: &[i64],
    now: DateTime<Utc>,
    reset: bool,
) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar!(
        r#"UPDATE jobs
           SET state = 'pending', run_at = $2,
               attempts = CASE WHEN $3 THEN 0 ELSE attempts END,
               max_attempts = CASE WHEN $3 THEN max_attempts ELSE GREATEST(max_attempts, attempts + 1) END,
               processed_at = NULL, updated_at = $2
           WHERE id = ANY($1)
             AND state IN ('done', 'dead', 'cancelled', 'retrying')
             AND NOT EXISTS (SELECT 1 FROM jobs AS a
                             WHERE a.kind = jobs.kind AND a.key = jobs.key AND a.id <> jobs.id
                               AND a.state IN ('pending', 'running', 'retrying'))
           RETURNING id AS "id!""#,
        ids,
        now,
        reset,
    )
    .fetch_all(e)
    .await
}

/// Cancels the pending or retrying jobs of `ids`; returns those cancelled.
pub async fn cancel<'e>(
    e: impl sqlx::PgExecutor<'e>,
    ids: &[i64],
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar!(
        r#"UPDATE jobs SET state = 'cancelled', processed_at = $2, updated_at = $2
           WHERE id = ANY($1) AND state IN ('pending', 'retrying')
           RETURNING id AS "id!""#,
        ids,
        now,
    )
    .fetch_all(e)
    .await
}

/// A job's state (`None`: no such job).
pub async fn job_state<'e>(e: impl sqlx::PgExecutor<'e>, id: i64) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!(r#"SELECT state AS "state!" FROM jobs WHERE id = $1"#, id)
        .fetch_optional(e)
        .await
}

/// One step of prune's pass over the table.
#[derive(Debug, Clone)]
pub struct PruneScanRow {
    pub id: i64,
    /// Finished before the cutoff, in the state asked for.
    pub prune: bool,
}

/// The next `limit` jobs after id `after`, each with whether prune deletes it: finished before
/// `cutoff`, in `state` if given (a keyset pass over the primary key, with no index on
/// `processed_at`).
pub async fn prune_scan<'e>(
    e: impl sqlx::PgExecutor<'e>,
    after: i64,
    cutoff: DateTime<Utc>,
    state: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<PruneScanRow>> {
    sqlx::query_as!(
        PruneScanRow,
        r#"SELECT id AS "id!",
                  coalesce(processed_at < $2 AND state IN ('done', 'dead', 'cancelled')
                           AND ($3::text IS NULL OR state = $3::text), false) AS "prune!"
           FROM jobs WHERE id > $1 ORDER BY id LIMIT $4"#,
        after,
        cutoff,
        state,
        limit,
    )
    .fetch_all(e)
    .await
}

/// What one prune statement deleted.
#[derive(Debug, Clone)]
pub struct PrunedRow {
    pub jobs: i64,
    pub attempts: i64,
}

/// Deletes the jobs of `ids` that are still finished before `cutoff` (in `state` if given; the
/// condition is checked again, so a job requeued since [`prune_scan`] read it stays) and, by the
/// foreign key's cascade, their attempts; returns how many of each went.
pub async fn prune<'e>(
    e: impl sqlx::PgExecutor<'e>,
    ids: &[i64],
    cutoff: DateTime<Utc>,
    state: Option<&str>,
) -> sqlx::Result<PrunedRow> {
    sqlx::query_as!(
        PrunedRow,
        r#"WITH gone AS (
               DELETE FROM jobs
               WHERE id = ANY($1) AND processed_at < $2 AND state IN ('done', 'dead', 'cancelled')
                 AND ($3::text IS NULL OR state = $3::text)
               RETURNING id
           )
           SELECT (SELECT count(*) FROM gone) AS "jobs!",
                  (SELECT count(*) FROM job_attempts WHERE job_id IN (SELECT id FROM gone)) AS "attempts!""#,
        ids,
        cutoff,
        state,
    )
    .fetch_one(e)
    .await
}

/// `VACUUM` (or, with `full`, `VACUUM FULL`) of the tables prune and the cycle pruning delete
/// from. Plain `VACUUM` makes the space of deleted rows reusable and gives the empty pages at the
/// end of each table back to the file system, without blocking other work; `VACUUM FULL`
/// rewrites the tables and their indexes into new files and gives back everything, holding an
/// exclusive lock on each table (every node waits) while it does.
///
/// Must run outside any transaction: `e` is the pool or a connection with none open. Unchecked
/// (`raw_sql`, the simple protocol): `VACUUM` cannot be prepared and checked like a query.
pub async fn vacuum<'e>(e: impl sqlx::PgExecutor<'e>, full: bool) -> sqlx::Result<()> {
    let statement = if full {
        "VACUUM (FULL) jobs, job_attempts, sync_cycles"
    } else {
        "VACUUM jobs, job_attempts, sync_cycles"
    };
    sqlx::raw_sql(statement).execute(e).await?;
    Ok(())
}

/// Bytes on disk of the ledger's tables, with their indexes and TOAST data
/// (`pg_total_relation_size`).
pub async fn ledger_size<'e>(e: impl sqlx::PgExecutor<'e>) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT (pg_total_relation_size('jobs') + pg_total_relation_size('job_attempts')
                   + pg_total_relation_size('sync_cycles') + pg_total_relation_size('circuits')
                   + pg_total_relation_size('index_reads'))::bigint AS "bytes!""#
    )
    .fetch_one(e)
    .await
}
