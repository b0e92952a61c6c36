//! Adding jobs: `(new) → pending` (see `state.rs`). Uniqueness of active jobs per `(kind, key)` is
//! the partial unique index `jobs_one_active_per_key`; the batch form adds the wider rules of
//! [`Uniqueness`] as one predicate, checked on a reader first and again in the insert.

use serde_json::json;

use super::health::Track;
use super::model::{EnqueueReport, Enqueued, JobId, NewJob, Uniqueness};
use super::{LedgerError, SqliteLedger};
use crate::timestamp::Timestamp;

/// Rows per INSERT in a batch enqueue: large enough to amortise, small enough that one
/// statement never holds the write lock for long.
pub(super) const ENQUEUE_CHUNK: usize = 2000;

impl SqliteLedger {
    pub async fn enqueue(&self, job: &NewJob, now: Timestamp) -> Result<Enqueued, LedgerError> {
        validate(job)?;
        let kind = job.kind.as_str();
        let payload = job.payload.to_string();
        let run_at = job.run_at.unwrap_or(now);
        let max_attempts = i64::from(job.max_attempts.max(1));
        let mut tx = self.begin_write().await?;
        let created = sqlx::query_scalar!(
            r#"INSERT INTO jobs (kind, key, payload, priority, max_attempts, run_at, revision, created_at, updated_at)
               VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?8, ?7, ?7)
               ON CONFLICT (kind, key) WHERE state IN ('pending', 'running', 'retrying') DO NOTHING
               RETURNING id AS "id!: i64""#,
            kind,
            job.key,
            payload,
            job.priority,
            max_attempts,
            run_at,
            now,
            job.revision,
        )
        .fetch_optional(&mut *tx)
        .await
        .on_write(&self.health)?;
        let result = match created {
            Some(id) => Enqueued::Created(JobId(id)),
            None => {
                let id = sqlx::query_scalar!(
                    r#"SELECT id AS "id!: i64" FROM jobs
                       WHERE kind = ?1 AND key = ?2 AND state IN ('pending', 'running', 'retrying')"#,
                    kind,
                    job.key,
                )
                .fetch_one(&mut *tx)
                .await
                .on_write(&self.health)?;
                Enqueued::AlreadyQueued(JobId(id))
            }
        };
        tx.commit().await?;
        Ok(result)
    }

    pub async fn enqueue_many(
        &self,
        jobs: &[NewJob],
        unique: Uniqueness,
        now: Timestamp,
    ) -> Result<EnqueueReport, LedgerError> {
        for job in jobs {
            validate(job)?;
        }
        let rule = Blocking::of(unique, now);
        let mut report = EnqueueReport::default();
        for chunk in jobs.chunks(ENQUEUE_CHUNK) {
            // Only the active-job rule: the unique index decides alone, in the insert.
            let fresh = if unique == Uniqueness::Active {
                chunk.iter().collect()
            } else {
                self.unblocked(chunk, &rule).await?
            };
            report.skipped += (chunk.len() - fresh.len()) as u64;
            if fresh.is_empty() {
                continue;
            }
            let batch = batch_json(fresh.iter().copied(), now);
            let mut tx = self.begin_write().await?;
            let created = sqlx::query!(
                r#"INSERT INTO jobs (kind, key, payload, priority, max_attempts, run_at, revision, created_at, updated_at)
                   SELECT e.value ->> 'kind', e.value ->> 'key', e.value ->> 'payload',
                          e.value ->> 'priority', e.value ->> 'max_attempts', e.value ->> 'run_at',
                          e.value ->> 'revision', ?2, ?2
                   FROM jsonb_each(?1) AS e
                   WHERE NOT EXISTS (
                       SELECT 1 FROM jobs AS j
                       WHERE j.kind = e.value ->> 'kind' AND j.key = e.value ->> 'key'
                         AND (?3 OR j.state IN ('pending', 'running', 'retrying')
                              OR (?4 AND j.state = 'cancelled')
                              OR (((j.state = 'done' AND j.processed_at > ?5)
                                   OR (j.state = 'dead' AND j.processed_at > ?6))
                                  AND (NOT ?7 OR coalesce(j.revision, -1) >= coalesce(e.value ->> 'revision', -1))))
                   )
                   ON CONFLICT (kind, key) WHERE state IN ('pending', 'running', 'retrying') DO NOTHING"#,
                batch,
                now,
                rule.any_job,
                rule.cancelled_blocks,
                rule.done_after,
                rule.dead_after,
                rule.by_revision,
            )
            .execute(&mut *tx)
            .await
            .on_write(&self.health)?
            .rows_affected();
            tx.commit().await?;
            report.created += created;
            report.skipped += fresh.len() as u64 - created;
        }
        Ok(report)
    }

    /// The jobs of `chunk` that no existing job blocks under `rule`, read without the write lock.
    async fn unblocked<'a>(
        &self,
        chunk: &'a [NewJob],
        rule: &Blocking,
    ) -> Result<Vec<&'a NewJob>, LedgerError> {
        let batch = keys_json(chunk.iter());
        let indexes = sqlx::query_scalar!(
            r#"SELECT CAST(e.key AS INTEGER) AS "index!: i64"
               FROM jsonb_each(?1) AS e
               WHERE NOT EXISTS (
                   SELECT 1 FROM jobs AS j
                   WHERE j.kind = e.value ->> 'kind' AND j.key = e.value ->> 'key'
                     AND (?2 OR j.state IN ('pending', 'running', 'retrying')
                          OR (?3 AND j.state = 'cancelled')
                          OR (((j.state = 'done' AND j.processed_at > ?4)
                               OR (j.state = 'dead' AND j.processed_at > ?5))
                              AND (NOT ?6 OR coalesce(j.revision, -1) >= coalesce(e.value ->> 'revision', -1))))
               )"#,
            batch,
            rule.any_job,
            rule.cancelled_blocks,
            rule.done_after,
            rule.dead_after,
            rule.by_revision,
        )
        .fetch_all(&self.reader)
        .await
        .on_read(&self.health)?;
        Ok(indexes
            .into_iter()
            .filter_map(|i| usize::try_from(i).ok().and_then(|i| chunk.get(i)))
            .collect())
    }
}

/// [`Uniqueness`] as the parameters of one SQL predicate: an existing job of the same
/// `(kind, key)` blocks a new one if it is active, or if `any_job`, or if cancelled and
/// `cancelled_blocks`, or if it finished (done / dead) after `done_after` / `dead_after` —
/// and, when `by_revision`, is not of an older revision than the new job.
#[derive(Clone, Copy, Debug)]
pub(super) struct Blocking {
    pub(super) any_job: bool,
    pub(super) cancelled_blocks: bool,
    pub(super) done_after: Timestamp,
    pub(super) dead_after: Timestamp,
    pub(super) by_revision: bool,
}

impl Blocking {
    pub(super) fn of(unique: Uniqueness, now: Timestamp) -> Self {
        let active_only = Blocking {
            any_job: false,
            cancelled_blocks: false,
            done_after: Timestamp::MAX,
            dead_after: Timestamp::MAX,
            by_revision: false,
        };
        match unique {
            Uniqueness::Active => active_only,
            Uniqueness::Ever => Blocking {
                any_job: true,
                ..active_only
            },
            Uniqueness::FinishedWithin(window) if window.is_zero() => Blocking {
                any_job: true,
                ..active_only
            },
            Uniqueness::FinishedWithin(window) => Blocking {
                cancelled_blocks: true,
                done_after: now.minus(window),
                dead_after: now.minus(window),
                ..active_only
            },
            Uniqueness::Revision { retry_dead_after } => Blocking {
                cancelled_blocks: true,
                done_after: Timestamp::MIN,
                dead_after: if retry_dead_after.is_zero() {
                    Timestamp::MIN
                } else {
                    now.minus(retry_dead_after)
                },
                by_revision: true,
                ..active_only
            },
        }
    }
}

/// What the reader's uniqueness check needs of each job: its kind, key and revision (a third
/// of the JSON the insert needs, which SQLite must parse for every key of the batch).
fn keys_json<'a>(jobs: impl IntoIterator<Item = &'a NewJob>) -> String {
    json!(
        jobs.into_iter()
            .map(|j| json!({ "kind": j.kind.as_str(), "key": j.key, "revision": j.revision }))
            .collect::<Vec<_>>()
    )
    .to_string()
}

/// The jobs as one JSON array parameter.
fn batch_json<'a>(jobs: impl IntoIterator<Item = &'a NewJob>, now: Timestamp) -> String {
    json!(
        jobs.into_iter()
            .map(|j| json!({
                "kind": j.kind.as_str(),
                "key": j.key,
                "payload": j.payload.to_string(),
                "priority": j.priority,
                "max_attempts": j.max_attempts.max(1),
                "run_at": j.run_at.unwrap_or(now).to_string(),
                "revision": j.revision,
            }))
            .collect::<Vec<_>>()
    )
    .to_string()
}

pub(super) fn validate(job: &NewJob) -> Result<(), LedgerError> {
    let invalid = |reason: String| LedgerError::Invalid {
        what: "job",
        reason,
    };
    if job.key.is_empty() || job.key.len() > 1024 {
        return Err(invalid(format!(
            "key must be 1 to 1024 bytes, got {}",
            job.key.len()
        )));
    }
    // PostgreSQL's text and jsonb cannot hold NUL; refused on both backends alike.
    if job.key.contains('\0') {
        return Err(invalid("key must not contain a NUL character".into()));
    }
    if !job.payload.is_object() {
        return Err(invalid("payload must be a JSON object".into()));
    }
    if job.payload.to_string().contains("\\u0000") {
        return Err(invalid("payload must not contain a NUL character".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::Connection;

    use super::*;
    use crate::ledger::testutil::both_backends;
    use crate::ledger::testutil::{JobSeed, ledger, seed};
    use crate::ledger::{JobKind, JobState};

    #[tokio::test]
    async fn revision_uniqueness_reindexes_newer_records_and_retries_old_deaths_only() {
        let (_dir, ledger) = ledger().await;
        let now = Timestamp::now();
        let hour = Duration::from_secs(3600);
        let (old, recent) = (now.minus(hour * 25), now.minus(hour));
        let existing: &[(&str, JobState, Option<i64>, Timestamp)] = &[
            ("done-5", JobState::Done, Some(5), recent),
            ("done-unknown", JobState::Done, None, recent),
            ("dead-5-old", JobState::Dead, Some(5), old),
            ("dead-5-recent", JobState::Dead, Some(5), recent),
            ("cancelled-5", JobState::Cancelled, Some(5), old),
            ("retrying-5", JobState::Retrying, Some(5), recent),
        ];
        for (key, state, revision, processed_at) in existing {
            seed(
                &ledger,
                JobSeed {
                    key: (*key).into(),
                    state: *state,
                    revision: *revision,
                    processed_at: Some(*processed_at),
                    ..Default::default()
                },
            )
            .await;
        }
        // (key, revision of the index entry now, enqueued?)
        let table: &[(&str, Option<i64>, bool)] = &[
            ("done-5", Some(5), false),
            ("done-5", Some(6), true),
            ("done-5", None, false),
            ("done-unknown", Some(7), true),
            ("dead-5-old", Some(5), true),
            ("dead-5-recent", Some(5), false),
            ("dead-5-recent", Some(6), true),
            ("cancelled-5", Some(9), false),
            ("retrying-5", Some(9), false),
            ("new", None, true),
        ];
        for (key, revision, enqueued) in table {
            let job = NewJob::new(JobKind::Discover, *key).revision(*revision);
            let report = ledger
                .enqueue_many(
                    std::slice::from_ref(&job),
                    Uniqueness::Revision {
                        retry_dead_after: hour * 24,
                    },
                    now,
                )
                .await
                .unwrap();
            assert_eq!(
                report.created == 1,
                *enqueued,
                "{key} at revision {revision:?}"
            );
            if report.created == 1 {
                // Undo it, so each row of the table starts from the seeded ledger.
                let id = ledger
                    .latest_job(JobKind::Discover, key)
                    .await
                    .unwrap()
                    .unwrap()
                    .id;
                sqlx::query("DELETE FROM jobs WHERE id = ?")
                    .bind(id)
                    .execute(&ledger.sqlite().writer)
                    .await
                    .unwrap();
            }
        }
    }

    #[tokio::test]
    async fn a_batch_of_known_keys_takes_no_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let options = crate::ledger::LedgerOptions {
            busy_timeout: Duration::from_millis(200),
            ..crate::ledger::LedgerOptions::new(path.to_str().unwrap())
        };
        let ledger = crate::ledger::Ledger::open(options).await.unwrap();
        let now = Timestamp::now();
        let jobs: Vec<_> = (0..3000)
            .map(|i| NewJob::new(JobKind::Discover, format!("did:gun:k:{i}")))
            .collect();
        ledger
            .enqueue_many(&jobs, Uniqueness::Ever, now)
            .await
            .unwrap();

        // Another process holds the write lock (a long prune, say).
        let mut other = sqlx::SqliteConnection::connect(&format!("sqlite:{}", path.display()))
            .await
            .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .unwrap();
        let report = ledger
            .enqueue_many(&jobs, Uniqueness::Ever, now)
            .await
            .expect("nothing to write: no lock needed");
        assert_eq!(
            report,
            EnqueueReport {
                created: 0,
                skipped: 3000
            }
        );
        let err = ledger
            .enqueue_many(
                &[NewJob::new(JobKind::Discover, "did:gun:k:new")],
                Uniqueness::Ever,
                now,
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("locked"), "{err}");
        sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    }

    both_backends! {
        async fn second_enqueue_of_an_active_key_reports_already_queued(ledger) {
            let now = Timestamp::now();
            let job = NewJob::new(JobKind::Delete, "did:gun:abc:1");
            let first = ledger.enqueue(&job, now).await.unwrap();
            let second = ledger.enqueue(&job, now).await.unwrap();
            assert!(matches!(first, Enqueued::Created(_)));
            assert_eq!(second, Enqueued::AlreadyQueued(first.id()));
            let other_kind = ledger
                .enqueue(&NewJob::new(JobKind::Discover, "did:gun:abc:1"), now)
                .await
                .unwrap();
            assert!(matches!(other_kind, Enqueued::Created(_)));
        }

        async fn a_finished_key_can_be_enqueued_again(ledger) {
            let done = seed(
                &ledger,
                JobSeed {
                    key: "k".into(),
                    state: JobState::Done,
                    ..Default::default()
                },
            )
            .await;
            let again = ledger
                .enqueue(&NewJob::new(JobKind::Discover, "k"), Timestamp::now())
                .await
                .unwrap();
            assert!(matches!(again, Enqueued::Created(id) if id != done));
        }

        async fn enqueue_rejects_a_non_object_payload_and_an_empty_key(ledger) {
            let now = Timestamp::now();
            let bad_payload = NewJob::new(JobKind::Discover, "k").payload(serde_json::json!([1]));
            assert!(matches!(
                ledger.enqueue(&bad_payload, now).await,
                Err(LedgerError::Invalid { .. })
            ));
            assert!(matches!(
                ledger
                    .enqueue(&NewJob::new(JobKind::Discover, ""), now)
                    .await,
                Err(LedgerError::Invalid { .. })
            ));
        }

        async fn batch_enqueue_with_active_uniqueness_skips_active_keys_only(ledger) {
            let now = Timestamp::now();
            seed(
                &ledger,
                JobSeed {
                    key: "a".into(),
                    state: JobState::Retrying,
                    ..Default::default()
                },
            )
            .await;
            seed(
                &ledger,
                JobSeed {
                    key: "b".into(),
                    state: JobState::Done,
                    ..Default::default()
                },
            )
            .await;
            let jobs: Vec<_> = ["a", "b", "c", "c"]
                .iter()
                .map(|k| NewJob::new(JobKind::Discover, *k))
                .collect();
            let report = ledger
                .enqueue_many(&jobs, Uniqueness::Active, now)
                .await
                .unwrap();
            assert_eq!(
                report,
                EnqueueReport {
                    created: 2,
                    skipped: 2
                }
            );
        }

        async fn batch_enqueue_with_ever_uniqueness_skips_any_known_key(ledger) {
            let now = Timestamp::now();
            seed(
                &ledger,
                JobSeed {
                    key: "a".into(),
                    state: JobState::Dead,
                    ..Default::default()
                },
            )
            .await;
            let jobs: Vec<_> = ["a", "b"]
                .iter()
                .map(|k| NewJob::new(JobKind::Discover, *k))
                .collect();
            let report = ledger
                .enqueue_many(&jobs, Uniqueness::Ever, now)
                .await
                .unwrap();
            assert_eq!(
                report,
                EnqueueReport {
                    created: 1,
                    skipped: 1
                }
            );
        }

        async fn finished_keys_are_reenqueued_only_after_the_reprocess_window(ledger) {
            let now = Timestamp::now();
            let hour = Duration::from_secs(3600);
            let old = now.minus(hour * 25);
            let recent = now.minus(hour);
            for (key, state, processed_at) in [
                ("old-done", JobState::Done, old),
                ("old-dead", JobState::Dead, old),
                ("recent-dead", JobState::Dead, recent),
                ("cancelled", JobState::Cancelled, old),
            ] {
                seed(
                    &ledger,
                    JobSeed {
                        kind: JobKind::Delete,
                        key: key.into(),
                        state,
                        processed_at: Some(processed_at),
                        ..Default::default()
                    },
                )
                .await;
            }
            let keys = ["old-done", "old-dead", "recent-dead", "cancelled", "new"];
            let jobs: Vec<_> = keys
                .iter()
                .map(|k| NewJob::new(JobKind::Delete, *k))
                .collect();
            let report = ledger
                .enqueue_many(&jobs, Uniqueness::FinishedWithin(hour * 24), now)
                .await
                .unwrap();
            assert_eq!(
                report,
                EnqueueReport {
                    created: 3,
                    skipped: 2
                }
            );
            // A window of zero means "never again".
            let report = ledger
                .enqueue_many(&jobs, Uniqueness::FinishedWithin(Duration::ZERO), now)
                .await
                .unwrap();
            assert_eq!(
                report,
                EnqueueReport {
                    created: 0,
                    skipped: 5
                }
            );
        }
    }
}
