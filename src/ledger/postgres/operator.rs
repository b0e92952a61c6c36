//! The operator's SQL on PostgreSQL: the README's queries for `psql` (the same questions, in the
//! same order and with the same columns, as the SQLite ones for `sqlite3`), and
//! [`PgLedger::populate_scale`], the realistic ledger `bench scale` measures them on.

use gunsync_pg::operator as sql;

use super::super::LedgerError;
use super::super::health::Track;
use super::super::operator::{
    DEAD_BY_REASON_SQL, JOB_SUMMARY_SQL, OPEN_CIRCUITS_SQL, POPULATE_CHUNK, RECENT_FAILURES_SQL,
    REFUSED_DELETIONS_SQL, SCALE_KEY_PREFIX, SCALE_MAX_ATTEMPTS,
};
use super::PgLedger;
use crate::timestamp::Timestamp;

/// The README's queries for `psql`, named and ordered as the SQLite backend's
/// `OPERATOR_QUERIES`. Hours are cut in UTC whatever the session's time zone.
pub const OPERATOR_QUERIES: &[(&str, &str)] = &[
    ("job_summary", JOB_SUMMARY_SQL),
    ("dead_by_reason", DEAD_BY_REASON_SQL),
    ("recent_failures", RECENT_FAILURES_SQL),
    (
        "retries_next",
        "SELECT id, kind, key, attempts, max_attempts, run_at, last_error
FROM jobs
WHERE state IN ('pending', 'retrying')
ORDER BY run_at, priority, id
LIMIT 20;",
    ),
    (
        "failed_attempts_per_did",
        "SELECT j.key, count(*) AS failed_attempts,
       string_agg(DISTINCT a.outcome, ',') AS outcomes, max(a.finished_at) AS last_failed
FROM job_attempts AS a
JOIN jobs AS j ON j.id = a.job_id
WHERE a.outcome IN ('retry', 'dead', 'lease_expired')
  AND a.finished_at >= now() - interval '1 day'
GROUP BY j.key
ORDER BY failed_attempts DESC
LIMIT 20;",
    ),
    (
        "cycles_last_hour",
        "SELECT id, peer, started_at, finished_at,
       round(extract(epoch FROM finished_at - started_at), 1) AS seconds,
       deletions_seen, records_seen, delete_enqueued, discover_enqueued, rejected, error
FROM sync_cycles
WHERE started_at >= now() - interval '1 hour'
ORDER BY started_at DESC;",
    ),
    (
        "attempts_per_hour",
        "SELECT date_trunc('hour', finished_at, 'UTC') AS hour,
       count(*) AS attempts,
       count(*) FILTER (WHERE outcome = 'done') AS done,
       count(*) FILTER (WHERE outcome = 'retry') AS retried,
       count(*) FILTER (WHERE outcome = 'dead') AS dead
FROM job_attempts
WHERE finished_at >= now() - interval '1 day'
GROUP BY hour
ORDER BY hour DESC;",
    ),
    (
        "jobs_finished_per_hour",
        "SELECT date_trunc('hour', a.finished_at, 'UTC') AS hour, j.kind, a.outcome AS state, count(*) AS jobs
FROM job_attempts AS a
JOIN jobs AS j ON j.id = a.job_id
WHERE a.outcome IN ('done', 'dead')
  AND a.finished_at >= now() - interval '1 day'
GROUP BY hour, j.kind, a.outcome
ORDER BY hour DESC, j.kind, state;",
    ),
    (
        "died_holding_a_lease",
        "SELECT id, kind, key, leased_by, lease_expires_at, attempts
FROM jobs
WHERE state = 'running' AND lease_expires_at <= now()
UNION ALL
SELECT a.job_id, j.kind, j.key, a.leased_by, a.finished_at, a.attempt
FROM job_attempts AS a
JOIN jobs AS j ON j.id = a.job_id
WHERE a.outcome = 'lease_expired'
  AND a.finished_at >= now() - interval '1 day';",
    ),
    ("refused_deletions", REFUSED_DELETIONS_SQL),
    ("open_circuits", OPEN_CIRCUITS_SQL),
];

impl PgLedger {
    /// See [`Ledger::run_operator_query`](super::super::Ledger::run_operator_query): one of
    /// [`OPERATOR_QUERIES`].
    pub(in crate::ledger) async fn run_operator_query(
        &self,
        sql: &'static str,
    ) -> Result<u64, LedgerError> {
        sql::run(&self.pool, sql).await.on_read(&self.health)
    }

    /// See [`Ledger::populate_scale`](super::super::Ledger::populate_scale): the same mix, built
    /// set-based, one statement (so one transaction) per chunk.
    pub(in crate::ledger) async fn populate_scale(
        &self,
        jobs: u64,
        now: Timestamp,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, LedgerError> {
        let total = i64::try_from(jobs).map_err(|_| LedgerError::Invalid {
            what: "jobs",
            reason: "too many".into(),
        })?;
        let mut lo = 0i64;
        let mut attempts = 0;
        while lo < total {
            let hi = (lo + POPULATE_CHUNK as i64).min(total);
            let written = sql::populate_scale(
                &self.pool,
                lo,
                hi,
                total,
                now.as_datetime(),
                SCALE_MAX_ATTEMPTS,
                SCALE_KEY_PREFIX,
            )
            .await
            .on_write(&self.health)?;
            self.health.succeeded();
            attempts += written as u64;
            lo = hi;
            progress(lo as u64);
        }
        Ok(attempts)
    }
}
