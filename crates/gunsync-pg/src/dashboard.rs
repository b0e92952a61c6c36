//! Reads only the web dashboard makes, each a bounded range of an index: a time window of
//! `job_attempts_by_finish`, the newest dead jobs of `jobs_parked`.

use chrono::{DateTime, Utc};

/// Attempts that ended in one bucket, by outcome.
#[derive(Debug, Clone)]
pub struct ThroughputRow {
    /// The bucket's start (UTC).
    pub bucket: DateTime<Utc>,
    pub done: i64,
    /// `retry` and `lease_expired` attempts.
    pub retry: i64,
    pub dead: i64,
}

/// Dead jobs of one kind sharing a reason.
#[derive(Debug, Clone)]
pub struct DeadReasonRow {
    pub kind: String,
    pub reason: Option<String>,
    pub jobs: i64,
    pub newest_id: i64,
    pub newest_at: Option<DateTime<Utc>>,
}

/// Attempts that finished at or after `since`, per `unit` (`'minute'`, `'hour'`: a `date_trunc`
/// field) in UTC whatever the session's time zone, oldest bucket first.
pub async fn throughput<'e>(
    e: impl sqlx::PgExecutor<'e>,
    since: DateTime<Utc>,
    unit: &str,
) -> sqlx::Result<Vec<ThroughputRow>> {
    sqlx::query_as!(
        ThroughputRow,
        r#"SELECT date_trunc($2, finished_at, 'UTC') AS "bucket!",
                  count(*) FILTER (WHERE outcome = 'done') AS "done!",
                  count(*) FILTER (WHERE outcome IN ('retry', 'lease_expired')) AS "retry!",
                  count(*) FILTER (WHERE outcome = 'dead') AS "dead!"
           FROM job_attempts
           WHERE finished_at >= $1
           GROUP BY 1 ORDER BY 1"#,
        since,
        unit,
    )
    .fetch_all(e)
    .await
}

/// The newest `scan` dead jobs grouped by kind and reason (`last_error` without its
/// `"<kind> <key>: "` prefix, `<key>` for the key), largest group first.
pub async fn dead_reasons<'e>(
    e: impl sqlx::PgExecutor<'e>,
    scan: i64,
) -> sqlx::Result<Vec<DeadReasonRow>> {
    sqlx::query_as!(
        DeadReasonRow,
        r#"SELECT kind AS "kind!", reason, count(*) AS "jobs!", max(id) AS "newest_id!",
                  max(processed_at) AS newest_at
           FROM (SELECT id, kind, processed_at,
                        replace(replace(last_error, kind || ' ' || key || ': ', ''), key, '<key>')
                            AS reason
                 FROM jobs
                 WHERE state = 'dead'
                 ORDER BY id DESC LIMIT $1) AS newest
           GROUP BY kind, reason
           ORDER BY 3 DESC, 4 DESC"#,
        scan,
    )
    .fetch_all(e)
    .await
}

/// Every dead job of `kind` whose reason (as [`dead_reasons`] words it) is `reason` (`None`: no
/// error recorded), newest first.
pub async fn dead_with_reason<'e>(
    e: impl sqlx::PgExecutor<'e>,
    kind: &str,
    reason: Option<&str>,
) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar!(
        r#"SELECT id FROM jobs
           WHERE state = 'dead' AND kind = $1
             AND replace(replace(last_error, kind || ' ' || key || ': ', ''), key, '<key>')
                 IS NOT DISTINCT FROM $2::text
           ORDER BY id DESC"#,
        kind,
        reason,
    )
    .fetch_all(e)
    .await
}
