//! Reads only the web dashboard makes: attempt outcomes per time bucket and dead jobs grouped by
//! reason. Each is a bounded range of an index (a time window of `job_attempts_by_finish`, the
//! newest dead jobs of `jobs_parked`), so a page costs the same on any ledger size.

use serde::Serialize;

use super::health::Track;
use super::model::JobId;
use super::{JobKind, LedgerError, SqliteLedger};
use crate::timestamp::Timestamp;

/// Attempts that ended in one time bucket, by outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Throughput {
    /// The bucket's start as a ledger timestamp prefix (`2026-12-03T05:41` for a minute).
    pub bucket: String,
    pub done: i64,
    /// Failed attempts that will be retried (including leases that expired).
    pub retry: i64,
    pub dead: i64,
}

/// How wide a [`Throughput`] bucket is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    Minute,
    Hour,
}

impl Bucket {
    /// Characters of a ledger timestamp (`YYYY-MM-DDTHH:MM:SS.sssZ`) that name the bucket.
    pub fn prefix_len(self) -> usize {
        match self {
            Bucket::Minute => 16,
            Bucket::Hour => 13,
        }
    }

    /// How long one bucket lasts.
    pub fn width(self) -> std::time::Duration {
        match self {
            Bucket::Minute => std::time::Duration::from_secs(60),
            Bucket::Hour => std::time::Duration::from_secs(3600),
        }
    }

    /// The bucket `t` falls in, named as [`Throughput::bucket`] names it.
    pub fn name(self, t: Timestamp) -> String {
        t.to_string().chars().take(self.prefix_len()).collect()
    }
}

/// Dead jobs of one kind that share a reason: their `last_error` with the job's own key taken
/// out (errors read "delete did:gun:…: elasticsearch answered 500: …"), so one cause is one group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeadReason {
    pub kind: String,
    /// `last_error` without its `"<kind> <key>: "` prefix, and `<key>` where the key appears.
    pub reason: Option<String>,
    pub jobs: i64,
    /// The newest dead job of the group.
    pub newest_id: i64,
    pub newest_at: Option<Timestamp>,
}

impl SqliteLedger {
    pub async fn throughput(
        &self,
        since: Timestamp,
        bucket: Bucket,
    ) -> Result<Vec<Throughput>, LedgerError> {
        let len = bucket.prefix_len() as i64;
        sqlx::query_as!(
            Throughput,
            r#"SELECT substr(finished_at, 1, ?2) AS "bucket!: String",
                      sum(outcome = 'done') AS "done!: i64",
                      sum(outcome IN ('retry', 'lease_expired')) AS "retry!: i64",
                      sum(outcome = 'dead') AS "dead!: i64"
               FROM job_attempts INDEXED BY job_attempts_by_finish
               WHERE finished_at >= ?1
               GROUP BY 1 ORDER BY 1"#,
            since,
            len,
        )
        .fetch_all(&self.reader)
        .await
        .on_read(&self.health)
    }

    pub async fn dead_reasons(&self, scan: u32) -> Result<Vec<DeadReason>, LedgerError> {
        let scan = i64::from(scan);
        sqlx::query_as!(
            DeadReason,
            r#"SELECT kind AS "kind!: String", reason AS "reason: String", count(*) AS "jobs!: i64",
                      max(id) AS "newest_id!: i64", max(processed_at) AS "newest_at: Timestamp"
               FROM (SELECT id, kind, processed_at,
                            replace(replace(last_error, kind || ' ' || key || ': ', ''), key, '<key>') AS reason
                     FROM jobs INDEXED BY jobs_parked
                     WHERE state IN ('dead', 'cancelled') AND state = 'dead'
                     ORDER BY state, id DESC LIMIT ?1)
               GROUP BY kind, reason
               ORDER BY 3 DESC, 4 DESC"#,
            scan,
        )
        .fetch_all(&self.reader)
        .await
        .on_read(&self.health)
    }

    pub async fn dead_with_reason(
        &self,
        kind: JobKind,
        reason: Option<&str>,
    ) -> Result<Vec<JobId>, LedgerError> {
        let kind = kind.as_str();
        let ids = sqlx::query_scalar!(
            r#"SELECT id AS "id!: i64" FROM jobs INDEXED BY jobs_parked
               WHERE state IN ('dead', 'cancelled') AND state = 'dead' AND kind = ?1
                 AND replace(replace(last_error, kind || ' ' || key || ': ', ''), key, '<key>') IS ?2
               ORDER BY state, id DESC"#,
            kind,
            reason,
        )
        .fetch_all(&self.reader)
        .await
        .on_read(&self.health)?;
        Ok(ids.into_iter().map(JobId).collect())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ledger::testutil::both_backends;
    use crate::ledger::testutil::{JobSeed, ledger, seed};
    use crate::ledger::{JobFilter, JobState};

    fn dead(kind: JobKind, error: Option<&str>) -> JobSeed {
        JobSeed {
            kind,
            state: JobState::Dead,
            last_error: error.map(str::to_owned),
            ..JobSeed::default()
        }
    }

    #[tokio::test]
    async fn throughput_counts_outcomes_per_bucket_inside_the_window() {
        let (_dir, ledger) = ledger().await;
        let job = seed(&ledger, JobSeed::default()).await;
        let at = |t: &str| Timestamp::parse(t).unwrap();
        for (n, (finished, outcome)) in [
            ("2026-12-03T04:10:59.000Z", "done"), // before the window
            ("2026-12-03T05:10:01.000Z", "done"),
            ("2026-12-03T05:10:30.000Z", "retry"),
            ("2026-12-03T05:10:31.000Z", "lease_expired"),
            ("2026-12-03T05:12:00.000Z", "dead"),
            ("2026-12-03T05:12:01.000Z", "interrupted"),
            ("2026-12-03T05:12:02.000Z", "done"),
        ]
        .into_iter()
        .enumerate()
        {
            sqlx::query(
                "INSERT INTO job_attempts (job_id, attempt, started_at, finished_at, outcome)
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(job.0)
            .bind(n as i64 + 1)
            .bind(at(finished).minus(Duration::from_millis(5)))
            .bind(at(finished))
            .bind(outcome)
            .execute(&ledger.sqlite().writer)
            .await
            .unwrap();
        }
        let since = at("2026-12-03T05:00:00.000Z");
        let minutes = ledger.throughput(since, Bucket::Minute).await.unwrap();
        let shape: Vec<_> = minutes
            .iter()
            .map(|b| (b.bucket.as_str(), b.done, b.retry, b.dead))
            .collect();
        assert_eq!(
            shape,
            [("2026-12-03T05:10", 1, 2, 0), ("2026-12-03T05:12", 1, 0, 1)]
        );
        let hours = ledger.throughput(since, Bucket::Hour).await.unwrap();
        assert_eq!(hours.len(), 1);
        assert_eq!((hours[0].done, hours[0].retry, hours[0].dead), (2, 2, 1));
    }

    both_backends! {
        async fn listings_page_by_keyset_newest_first(ledger) {
            let mut ids = Vec::new();
            for _ in 0..7 {
                ids.push(seed(&ledger, dead(JobKind::Delete, Some("e"))).await.0);
            }
            seed(&ledger, JobSeed::default()).await;
            for filter in [
                JobFilter::default(),
                JobFilter {
                    state: Some(JobState::Dead),
                    ..JobFilter::default()
                },
                JobFilter {
                    kind: Some(JobKind::Delete),
                    ..JobFilter::default()
                },
            ] {
                let mut seen = Vec::new();
                let mut before = None;
                loop {
                    let page = ledger
                        .list_jobs(&JobFilter {
                            before,
                            limit: 3,
                            ..filter.clone()
                        })
                        .await
                        .unwrap();
                    let Some(last) = page.last() else { break };
                    before = Some(last.id);
                    seen.extend(page.iter().map(|j| j.id).filter(|id| ids.contains(id)));
                }
                let mut newest_first = ids.clone();
                newest_first.reverse();
                assert_eq!(seen, newest_first, "{filter:?}");
            }
        }

        async fn dead_jobs_group_by_kind_and_reason_over_the_newest_ones(ledger) {
            // The same cause, worded with each job's own key.
            let mut http500 = Vec::new();
            for i in 0..3 {
                let key = format!("did:gun:abc:post-{i}");
                let error = format!("delete {key}: HTTP 500 (gave up on {key})");
                let job = JobSeed {
                    key,
                    ..dead(JobKind::Delete, Some(&error))
                };
                http500.push(seed(&ledger, job).await);
            }
            let silent = seed(&ledger, dead(JobKind::Delete, None)).await;
            for _ in 0..2 {
                seed(&ledger, dead(JobKind::Discover, Some("invalid record"))).await;
            }
            seed(
                &ledger,
                JobSeed {
                    state: JobState::Cancelled,
                    last_error: Some("HTTP 500".into()),
                    kind: JobKind::Delete,
                    ..JobSeed::default()
                },
            )
            .await;
            let groups = ledger.dead_reasons(100).await.unwrap();
            let shape: Vec<_> = groups
                .iter()
                .map(|g| (g.kind.as_str(), g.reason.as_deref(), g.jobs))
                .collect();
            assert_eq!(
                shape,
                [
                    ("delete", Some("HTTP 500 (gave up on <key>)"), 3),
                    ("discover", Some("invalid record"), 2),
                    ("delete", None, 1),
                ]
            );
            assert_eq!(groups[0].newest_id, http500[2].0);
            // Only the newest two dead jobs (both discovers) when the scan is bounded at 2.
            let bounded = ledger.dead_reasons(2).await.unwrap();
            assert_eq!(bounded.len(), 1);
            assert_eq!(bounded[0].jobs, 2);

            let mut expected = http500.clone();
            expected.reverse();
            assert_eq!(
                ledger
                    .dead_with_reason(JobKind::Delete, Some("HTTP 500 (gave up on <key>)"))
                    .await
                    .unwrap(),
                expected
            );
            assert_eq!(
                ledger
                    .dead_with_reason(JobKind::Delete, None)
                    .await
                    .unwrap(),
                [silent]
            );
            assert!(
                ledger
                    .dead_with_reason(JobKind::Discover, Some("HTTP 500"))
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
    }
}
