//! The operator's SQL: running one of the queries the README gives for `psql`, and filling a
//! ledger with the realistic mix `bench scale` measures them on.

use chrono::{DateTime, Utc};

/// Runs an operator's query and returns how many rows it gave.
pub async fn run<'e>(e: impl sqlx::PgExecutor<'e>, sql: &'static str) -> sqlx::Result<u64> {
    // Unchecked: the SQL is the operator's (the README's), not a statement of the ledger.
    let rows = sqlx::query(sql).fetch_all(e).await?;
    Ok(rows.len() as u64)
}

/// Adds jobs `lo .. hi` of a `total`-job scale ledger and every attempt of each, in one
/// statement; returns the attempt rows written. Of every 100 consecutive jobs 90 are `done` (one
/// in ten a deletion; every seventh needed two attempts), 3 `dead` after `dead_attempts`
/// attempts, 5 `retrying` deletions due up to two hours after `now`, 2 `pending` discovers
/// runnable now; job `i` finished (or was created) `30 days · (total - i) / total` plus a minute
/// before `now`, its attempts a minute apart and ending when it did. Keys are `key_prefix || i`.
pub async fn populate_scale<'e>(
    e: impl sqlx::PgExecutor<'e>,
    lo: i64,
    hi: i64,
    total: i64,
    now: DateTime<Utc>,
    dead_attempts: i64,
    key_prefix: &str,
) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"WITH c AS (
               SELECT i, i % 100 AS m,
                      $4::timestamptz - (2592000.0 * ($3::bigint - i) / $3 + 60) * interval '1 second'
                          AS t
               FROM generate_series($1::bigint, $2::bigint - 1) AS i
           ),
           s AS (
               SELECT i, t,
                      CASE WHEN m < 90 THEN 'done' WHEN m < 93 THEN 'dead'
                           WHEN m < 98 THEN 'retrying' ELSE 'pending' END AS state,
                      CASE WHEN (m < 90 AND m % 10 = 5) OR m = 90 OR (m >= 93 AND m < 98)
                           THEN 'delete' ELSE 'discover' END AS kind
               FROM c
           ),
           new_jobs AS (
               INSERT INTO jobs (kind, key, payload, state, attempts, max_attempts, run_at,
                                 last_error, created_at, updated_at, processed_at, revision)
               SELECT kind,
                      $6::text || i,
                      CASE kind
                          WHEN 'delete' THEN jsonb_build_object(
                              'did', $6::text || i,
                              'deletedBy', '02a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9',
                              'peer', 'http://127.0.0.1:8765/gun')
                          ELSE jsonb_build_object(
                              'soul', substr($6::text || i, 9), 'recordType', 'post',
                              'peer', 'http://127.0.0.1:8765/gun', 'revision', i)
                      END,
                      state,
                      CASE state WHEN 'done' THEN 1 + (i % 7 = 0)::int WHEN 'dead' THEN $5::bigint
                                 WHEN 'retrying' THEN 3 ELSE 0 END,
                      CASE state WHEN 'dead' THEN $5::bigint ELSE 12 END,
                      CASE state
                          WHEN 'retrying' THEN $4::timestamptz + (60 + i % 7200) * interval '1 second'
                          ELSE t - interval '10 minutes'
                      END,
                      CASE WHEN state IN ('dead', 'retrying') OR i % 7 = 0
                           THEN 'Elasticsearch: HTTP 503 Service Unavailable' END,
                      t - interval '10 minutes',
                      t,
                      CASE WHEN state IN ('done', 'dead') THEN t END,
                      CASE kind WHEN 'discover' THEN i END
               FROM s
               RETURNING id, state, attempts, last_error, updated_at
           ),
           new_attempts AS (
               INSERT INTO job_attempts (job_id, attempt, started_at, finished_at, outcome, error,
                                         http_status, leased_by, lease_token)
               SELECT j.id, k.n,
                      j.updated_at - (j.attempts - k.n + 1) * interval '1 minute',
                      j.updated_at - (j.attempts - k.n) * interval '1 minute' - interval '0.5 second',
                      CASE WHEN k.n < j.attempts OR j.state = 'retrying' THEN 'retry' ELSE j.state END,
                      CASE WHEN k.n < j.attempts OR j.state <> 'done' THEN j.last_error END,
                      CASE WHEN k.n < j.attempts OR j.state <> 'done' THEN 503 END,
                      'bench-node:' || j.id % 4,
                      left(md5(random()::text), 16)
               FROM new_jobs AS j
               CROSS JOIN LATERAL generate_series(1, j.attempts) AS k(n)
               RETURNING 1
           )
           SELECT count(*) AS "attempts!" FROM new_attempts"#,
        lo,
        hi,
        total,
        now,
        dead_attempts,
        key_prefix,
    )
    .fetch_one(e)
    .await
}
