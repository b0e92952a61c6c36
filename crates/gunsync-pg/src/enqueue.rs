//! Adding jobs. At most one active job per `(kind, key)` is the partial unique index
//! `jobs_one_active_per_key`, which every insert names in its `ON CONFLICT`; the batch insert
//! adds the caller's wider rule (which finished jobs also block) as one `NOT EXISTS`.

use chrono::{DateTime, Utc};

/// Inserts one job unless an active job of its `(kind, key)` exists; `None` then.
#[allow(clippy::too_many_arguments)]
pub async fn insert<'e>(
    e: impl sqlx::PgExecutor<'e>,
    kind: &str,
    key: &str,
    payload: &serde_json::Value,
    priority: i64,
    max_attempts: i64,
    run_at: DateTime<Utc>,
    revision: Option<i64>,
    now: DateTime<Utc>,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar!(
        "INSERT INTO jobs (kind, key, payload, priority, max_attempts, run_at, revision, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
         ON CONFLICT (kind, key) WHERE state IN ('pending', 'running', 'retrying') DO NOTHING
         RETURNING id",
        kind,
        key,
        payload,
        priority,
        max_attempts,
        run_at,
        revision,
        now,
    )
    .fetch_optional(e)
    .await
}

/// The active job of `(kind, key)`, if there is one.
pub async fn active_id<'e>(
    e: impl sqlx::PgExecutor<'e>,
    kind: &str,
    key: &str,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar!(
        "SELECT id FROM jobs
         WHERE kind = $1 AND key = $2 AND state IN ('pending', 'running', 'retrying')",
        kind,
        key,
    )
    .fetch_optional(e)
    .await
}

/// Which existing jobs of the same `(kind, key)` block a new one, besides an active job (which
/// always does): any job at all, a cancelled one, one done / dead after the given times — the
/// last two only when not of an older revision than the new job, if `by_revision`.
#[derive(Clone, Copy, Debug)]
pub struct Blocking {
    pub any_job: bool,
    pub cancelled_blocks: bool,
    pub done_after: DateTime<Utc>,
    pub dead_after: DateTime<Utc>,
    pub by_revision: bool,
}

/// Inserts the jobs of `batch` that no existing job blocks under `rule`, in the batch's order (so
/// ids follow it; of two equal `(kind, key)` the first wins); returns how many it inserted.
///
/// `batch` is a JSON array of objects `{kind, key, payload (object), priority, max_attempts,
/// run_at (RFC 3339), revision (or null)}`.
pub async fn insert_many<'e>(
    e: impl sqlx::PgExecutor<'e>,
    batch: &serde_json::Value,
    rule: Blocking,
    now: DateTime<Utc>,
) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "INSERT INTO jobs (kind, key, payload, priority, max_attempts, run_at, revision, created_at, updated_at)
         SELECT n.kind, n.key, n.payload, n.priority, n.max_attempts, n.run_at, n.revision, $2, $2
         FROM ROWS FROM (
                  jsonb_to_recordset($1) AS (kind text, key text, payload jsonb, priority bigint,
                                             max_attempts bigint, run_at timestamptz, revision bigint)
              ) WITH ORDINALITY AS n (kind, key, payload, priority, max_attempts, run_at, revision, ord)
         WHERE NOT EXISTS (
             SELECT 1 FROM jobs AS j
             WHERE j.kind = n.kind AND j.key = n.key
               AND ($3 OR j.state IN ('pending', 'running', 'retrying')
                    OR ($4 AND j.state = 'cancelled')
                    OR (((j.state = 'done' AND j.processed_at > $5)
                         OR (j.state = 'dead' AND j.processed_at > $6))
                        AND (NOT $7 OR coalesce(j.revision, -1) >= coalesce(n.revision, -1))))
         )
         ORDER BY n.ord
         ON CONFLICT (kind, key) WHERE state IN ('pending', 'running', 'retrying') DO NOTHING",
        batch,
        now,
        rule.any_job,
        rule.cancelled_blocks,
        rule.done_after,
        rule.dead_after,
        rule.by_revision,
    )
    .execute(e)
    .await?;
    Ok(done.rows_affected())
}
