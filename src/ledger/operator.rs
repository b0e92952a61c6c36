//! The operator's SQL: the queries the README gives for `sqlite3 data/gunsync.db`, kept here so
//! `bench scale` times exactly what an operator runs (a test checks they match the README), and
//! [`SqliteLedger::populate_scale`], the realistic ledger `bench scale` measures them on.

use super::health::Track;
use super::{LedgerError, SqliteLedger};
use crate::timestamp::Timestamp;

/// The `job_summary` query: the same SQL on both backends.
pub(super) const JOB_SUMMARY_SQL: &str =
    "SELECT kind, state, jobs, oldest_runnable_age_s FROM job_summary ORDER BY kind, state;";

/// The `dead_by_reason` query: the same SQL on both backends.
pub(super) const DEAD_BY_REASON_SQL: &str = "SELECT kind, last_error, count(*) AS jobs, min(died_at) AS first_died, max(died_at) AS last_died
FROM dead_jobs
GROUP BY kind, last_error
ORDER BY jobs DESC;";

/// The `recent_failures` query: the same SQL on both backends.
pub(super) const RECENT_FAILURES_SQL: &str =
    "SELECT job_id, kind, key, attempt, outcome, http_status, error, finished_at
FROM recent_failures
LIMIT 20;";

/// The `refused_deletions` query: the same SQL on both backends.
pub(super) const REFUSED_DELETIONS_SQL: &str =
    "SELECT id, key, payload ->> 'refused' AS reason, died_at
FROM dead_jobs
WHERE kind = 'delete' AND payload ->> 'refused' IS NOT NULL
ORDER BY died_at DESC;";

/// The `open_circuits` query: the same SQL on both backends.
pub(super) const OPEN_CIRCUITS_SQL: &str =
    "SELECT system, reason, since, next_probe_at FROM circuits;";

/// The README's queries, in its order, each with a short name for `bench scale`'s report.
pub const OPERATOR_QUERIES: &[(&str, &str)] = &[
    ("job_summary", JOB_SUMMARY_SQL),
    ("dead_by_reason", DEAD_BY_REASON_SQL),
    ("recent_failures", RECENT_FAILURES_SQL),
    (
        "retries_next",
        "SELECT id, kind, key, attempts, max_attempts, run_at, last_error
FROM jobs INDEXED BY jobs_waiting
WHERE state IN ('pending', 'retrying')
ORDER BY run_at, priority, id
LIMIT 20;",
    ),
    (
        "failed_attempts_per_did",
        "SELECT j.key, count(*) AS failed_attempts,
       group_concat(DISTINCT a.outcome) AS outcomes, max(a.finished_at) AS last_failed
FROM job_attempts AS a
JOIN jobs AS j ON j.id = a.job_id
WHERE a.outcome IN ('retry', 'dead', 'lease_expired')
  AND a.finished_at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 day')
GROUP BY j.key
ORDER BY failed_attempts DESC
LIMIT 20;",
    ),
    (
        "cycles_last_hour",
        "SELECT id, peer, started_at, finished_at,
       round((julianday(finished_at) - julianday(started_at)) * 86400, 1) AS seconds,
       deletions_seen, records_seen, delete_enqueued, discover_enqueued, rejected, error
FROM sync_cycles
WHERE started_at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 hour')
ORDER BY started_at DESC;",
    ),
    (
        "attempts_per_hour",
        "SELECT substr(finished_at, 1, 13) || ':00Z' AS hour,
       count(*) AS attempts,
       sum(outcome = 'done') AS done,
       sum(outcome = 'retry') AS retried,
       sum(outcome = 'dead') AS dead
FROM job_attempts
WHERE finished_at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 day')
GROUP BY hour
ORDER BY hour DESC;",
    ),
    (
        "jobs_finished_per_hour",
        "SELECT substr(a.finished_at, 1, 13) || ':00Z' AS hour, j.kind, a.outcome AS state, count(*) AS jobs
FROM job_attempts AS a
JOIN jobs AS j ON j.id = a.job_id
WHERE a.outcome IN ('done', 'dead')
  AND a.finished_at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 day')
GROUP BY hour, j.kind, a.outcome
ORDER BY hour DESC, j.kind, state;",
    ),
    (
        "died_holding_a_lease",
        "SELECT id, kind, key, leased_by, lease_expires_at, attempts
FROM jobs
WHERE state = 'running' AND lease_expires_at <= strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
UNION ALL
SELECT a.job_id, j.kind, j.key, a.leased_by, a.finished_at, a.attempt
FROM job_attempts AS a
JOIN jobs AS j ON j.id = a.job_id
WHERE a.outcome = 'lease_expired'
  AND a.finished_at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 day');",
    ),
    ("refused_deletions", REFUSED_DELETIONS_SQL),
    ("open_circuits", OPEN_CIRCUITS_SQL),
];

/// Jobs per write transaction while building a scale ledger.
pub(super) const POPULATE_CHUNK: u64 = 50_000;

/// Keys of the scale ledger's jobs: `<prefix><n>`, a DID as the sync cycle makes them.
pub const SCALE_KEY_PREFIX: &str = "did:gun:0a1b2c3d4e5f:post-";

/// The attempts a dead job of the scale ledger used (its `max_attempts`).
pub const SCALE_MAX_ATTEMPTS: i64 = 8;

impl SqliteLedger {
    pub async fn run_operator_query(&self, sql: &'static str) -> Result<u64, LedgerError> {
        let rows = sqlx::query(sql)
            .fetch_all(&self.reader)
            .await
            .on_read(&self.health)?;
        Ok(rows.len() as u64)
    }

    pub async fn populate_scale(
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
            let mut tx = self.begin_write().await?;
            let before: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM jobs")
                .fetch_one(&mut *tx)
                .await
                .on_write(&self.health)?;
            sqlx::query(POPULATE_JOBS)
                .bind(lo)
                .bind(hi)
                .bind(total)
                .bind(now)
                .bind(SCALE_MAX_ATTEMPTS)
                .bind(SCALE_KEY_PREFIX)
                .execute(&mut *tx)
                .await
                .on_write(&self.health)?;
            attempts += sqlx::query(POPULATE_ATTEMPTS)
                .bind(before)
                .bind(SCALE_MAX_ATTEMPTS)
                .execute(&mut *tx)
                .await
                .on_write(&self.health)?
                .rows_affected();
            tx.commit().await?;
            lo = hi;
            progress(lo as u64);
        }
        Ok(attempts)
    }
}

/// Jobs `?1 .. ?2` of `?3` (see [`SqliteLedger::populate_scale`]); `?4` is now, `?5` the dead jobs'
/// attempts, `?6` the key prefix. `t` is when the job finished (or was created), as a Julian day.
const POPULATE_JOBS: &str = "
WITH RECURSIVE n(i) AS (SELECT ?1 WHERE ?1 < ?2 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?2),
c AS (
    SELECT i, i % 100 AS m, julianday(?4) - 30.0 * (?3 - i) / ?3 - 1.0 / 1440 AS t FROM n
),
j AS (
    SELECT i, m, t,
           CASE WHEN m < 90 THEN 'done' WHEN m < 93 THEN 'dead'
                WHEN m < 98 THEN 'retrying' ELSE 'pending' END AS state,
           CASE WHEN (m < 90 AND m % 10 = 5) OR m = 90 OR (m >= 93 AND m < 98)
                THEN 'delete' ELSE 'discover' END AS kind
    FROM c
)
INSERT INTO jobs (kind, key, payload, state, attempts, max_attempts, run_at, last_error,
                  created_at, updated_at, processed_at, revision)
SELECT kind,
       ?6 || i,
       CASE kind
           WHEN 'delete' THEN json_object('did', ?6 || i,
                                          'deletedBy', '02a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9',
                                          'peer', 'http://127.0.0.1:8765/gun')
           ELSE json_object('soul', substr(?6 || i, 9), 'recordType', 'post',
                            'peer', 'http://127.0.0.1:8765/gun', 'revision', i)
       END,
       state,
       CASE state WHEN 'done' THEN 1 + (i % 7 = 0) WHEN 'dead' THEN ?5
                  WHEN 'retrying' THEN 3 ELSE 0 END,
       CASE state WHEN 'dead' THEN ?5 ELSE 12 END,
       CASE state
           WHEN 'retrying' THEN strftime('%Y-%m-%dT%H:%M:%fZ', julianday(?4) + (60 + i % 7200) / 86400.0)
           ELSE strftime('%Y-%m-%dT%H:%M:%fZ', t - 10.0 / 1440)
       END,
       CASE WHEN state IN ('dead', 'retrying') OR i % 7 = 0
            THEN 'Elasticsearch: HTTP 503 Service Unavailable' END,
       strftime('%Y-%m-%dT%H:%M:%fZ', t - 10.0 / 1440),
       strftime('%Y-%m-%dT%H:%M:%fZ', t),
       CASE WHEN state IN ('done', 'dead') THEN strftime('%Y-%m-%dT%H:%M:%fZ', t) END,
       CASE kind WHEN 'discover' THEN i END
FROM j";

/// One `job_attempts` row per attempt of the jobs after id `?1`: earlier attempts `retry`, the
/// last `done`/`dead` for finished jobs, a minute apart and ending when the job did.
const POPULATE_ATTEMPTS: &str = "
WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < ?2)
INSERT INTO job_attempts (job_id, attempt, started_at, finished_at, outcome, error, http_status,
                          leased_by, lease_token)
SELECT j.id, k.n,
       strftime('%Y-%m-%dT%H:%M:%fZ', julianday(j.updated_at) - (j.attempts - k.n + 1) / 1440.0),
       strftime('%Y-%m-%dT%H:%M:%fZ', julianday(j.updated_at) - (j.attempts - k.n) / 1440.0 - 0.5 / 86400),
       CASE WHEN k.n < j.attempts OR j.state = 'retrying' THEN 'retry' ELSE j.state END,
       CASE WHEN k.n < j.attempts OR j.state <> 'done' THEN j.last_error END,
       CASE WHEN k.n < j.attempts OR j.state <> 'done' THEN 503 END,
       'bench-node:' || (j.id % 4), lower(hex(randomblob(8)))
FROM jobs AS j JOIN k ON k.n <= j.attempts
WHERE j.id > ?1";

#[cfg(test)]
mod tests {
    use super::{OPERATOR_QUERIES, SCALE_MAX_ATTEMPTS};
    use crate::ledger::testutil::both_backends;
    use crate::ledger::{JobFilter, JobId, JobState};
    use crate::timestamp::Timestamp;

    /// The README's SQL blocks for one backend, whitespace-normalised: ```` ```sql ```` blocks run
    /// on both, ```` ```sql sqlite ```` and ```` ```sql postgres ```` on theirs only.
    fn readme_queries(dialect: &str) -> Vec<String> {
        let readme = include_str!("../../README.md");
        let mut out = Vec::new();
        let mut rest = readme;
        while let Some(start) = rest.find("```sql") {
            let after = &rest[start + 6..];
            let (info, body) = after.split_once('\n').expect("a fenced block");
            let end = body.find("```").expect("closed sql block");
            let info = info.trim();
            if info.is_empty() || info == dialect {
                out.push(normalise(&body[..end]));
            }
            rest = &body[end + 3..];
        }
        out
    }

    fn normalise(sql: &str) -> String {
        sql.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    both_backends! {
        async fn the_scale_ledger_has_the_documented_mix_and_every_query_runs_on_it(ledger) {
            let now = Timestamp::now();
            let mut last = 0;
            ledger
                .populate_scale(1000, now, &mut |n| last = n)
                .await
                .unwrap();
            assert_eq!(last, 1000);
            let stats = ledger.stats(now, 0).await.unwrap();
            let count = |kind: &str, state: &str| {
                stats
                    .kinds
                    .get(kind)
                    .and_then(|m| m.get(state))
                    .copied()
                    .unwrap_or(0)
            };
            assert_eq!(count("discover", "done") + count("delete", "done"), 900);
            assert_eq!(count("delete", "done"), 90);
            assert_eq!(count("discover", "dead") + count("delete", "dead"), 30);
            assert_eq!(count("delete", "retrying"), 50);
            assert_eq!(count("discover", "pending"), 20);
            // Only the pending discovers are runnable; the retrying deletions wait.
            assert_eq!(stats.runnable, 20);
            let dead = ledger
                .list_jobs(&JobFilter {
                    state: Some(JobState::Dead),
                    limit: 1,
                    ..JobFilter::default()
                })
                .await
                .unwrap();
            let (job, attempts) = ledger.get_job(JobId(dead[0].id)).await.unwrap().unwrap();
            assert_eq!(job.attempts, SCALE_MAX_ATTEMPTS);
            assert_eq!(attempts.len() as i64, SCALE_MAX_ATTEMPTS);
            assert_eq!(attempts.last().unwrap().outcome, "dead");
            assert!(attempts.iter().rev().skip(1).all(|a| a.outcome == "retry"));
            // The last day holds 1/30 of the finished jobs: the hourly queries see them.
            for (name, sql) in ledger.operator_queries() {
                let rows = ledger.run_operator_query(sql).await.unwrap();
                if matches!(*name, "job_summary" | "attempts_per_hour" | "retries_next") {
                    assert!(rows > 0, "{name} found nothing");
                }
            }
        }
    }

    #[test]
    fn operator_queries_are_the_readmes() {
        for (dialect, queries) in [
            ("sqlite", OPERATOR_QUERIES),
            (
                "postgres",
                crate::ledger::postgres::operator::OPERATOR_QUERIES,
            ),
        ] {
            let ours: Vec<String> = queries.iter().map(|(_, q)| normalise(q)).collect();
            assert_eq!(
                ours,
                readme_queries(dialect),
                "the {dialect} OPERATOR_QUERIES and the README's sql blocks for it must be the \
                 same queries in the same order"
            );
        }
    }
}
