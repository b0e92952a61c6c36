//! Adding jobs: `(new) → pending` (see `state.rs`). Uniqueness of active jobs per `(kind, key)` is
//! the partial unique index `jobs_one_active_per_key`; the batch form adds the wider rules of
//! [`Uniqueness`] in the same statement.

use serde_json::json;

use super::model::{EnqueueReport, Enqueued, JobId, NewJob, Uniqueness};
use super::write::Track;
use super::{Ledger, LedgerError};
use crate::timestamp::Timestamp;

/// Rows per INSERT in a batch enqueue: large enough to amortise, small enough that one
/// statement never holds the write lock for long.
const ENQUEUE_CHUNK: usize = 2000;

impl Ledger {
    /// Adds one job unless an active job of the same `(kind, key)` exists.
    pub async fn enqueue(&self, job: &NewJob, now: Timestamp) -> Result<Enqueued, LedgerError> {
        validate(job)?;
        let kind = job.kind.as_str();
        let payload = job.payload.to_string();
        let run_at = job.run_at.unwrap_or(now);
        let max_attempts = i64::from(job.max_attempts.max(1));
        let mut tx = self.begin_write().await?;
        let created = sqlx::query_scalar!(
            r#"INSERT INTO jobs (kind, key, payload, priority, max_attempts, run_at, created_at, updated_at)
               VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
               ON CONFLICT (kind, key) WHERE state IN ('pending', 'running', 'retrying') DO NOTHING
               RETURNING id AS "id!: i64""#,
            kind,
            job.key,
            payload,
            job.priority,
            max_attempts,
            run_at,
            now,
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

    /// Adds many jobs in few statements, skipping each job that an existing job of its
    /// `(kind, key)` blocks under `unique`. Jobs that fail validation are an error for the whole
    /// call; nothing is written then.
    pub async fn enqueue_many(
        &self,
        jobs: &[NewJob],
        unique: Uniqueness,
        now: Timestamp,
    ) -> Result<EnqueueReport, LedgerError> {
        for job in jobs {
            validate(job)?;
        }
        // Uniqueness becomes three parameters of one statement:
        // block on any job at all / on cancelled jobs / on jobs finished after `cutoff`.
        let (any_job, cancelled_blocks, cutoff) = match unique {
            Uniqueness::Active => (false, false, Timestamp::MAX),
            Uniqueness::Ever => (true, true, Timestamp::MAX),
            Uniqueness::FinishedWithin(window) if window.is_zero() => (true, true, Timestamp::MAX),
            Uniqueness::FinishedWithin(window) => (false, true, now.minus(window)),
        };
        let mut report = EnqueueReport::default();
        for chunk in jobs.chunks(ENQUEUE_CHUNK) {
            let batch = json!(
                chunk
                    .iter()
                    .map(|j| json!({
                        "kind": j.kind.as_str(),
                        "key": j.key,
                        "payload": j.payload.to_string(),
                        "priority": j.priority,
                        "max_attempts": j.max_attempts.max(1),
                        "run_at": j.run_at.unwrap_or(now).to_string(),
                    }))
                    .collect::<Vec<_>>()
            )
            .to_string();
            let mut tx = self.begin_write().await?;
            let created = sqlx::query!(
                r#"INSERT INTO jobs (kind, key, payload, priority, max_attempts, run_at, created_at, updated_at)
                   SELECT e.value ->> 'kind', e.value ->> 'key', e.value ->> 'payload',
                          e.value ->> 'priority', e.value ->> 'max_attempts', e.value ->> 'run_at', ?2, ?2
                   FROM jsonb_each(?1) AS e
                   WHERE NOT EXISTS (
                       SELECT 1 FROM jobs AS j
                       WHERE j.kind = e.value ->> 'kind' AND j.key = e.value ->> 'key'
                         AND (?3 OR j.state IN ('pending', 'running', 'retrying')
                              OR (?4 AND j.state = 'cancelled')
                              OR j.processed_at > ?5)
                   )
                   ON CONFLICT (kind, key) WHERE state IN ('pending', 'running', 'retrying') DO NOTHING"#,
                batch,
                now,
                any_job,
                cancelled_blocks,
                cutoff,
            )
            .execute(&mut *tx)
            .await
            .on_write(&self.health)?
            .rows_affected();
            tx.commit().await?;
            report.created += created;
            report.skipped += chunk.len() as u64 - created;
        }
        Ok(report)
    }
}

fn validate(job: &NewJob) -> Result<(), LedgerError> {
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
    if !job.payload.is_object() {
        return Err(invalid("payload must be a JSON object".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ledger::testutil::{JobSeed, ledger, seed};
    use crate::ledger::{JobKind, JobState};

    #[tokio::test]
    async fn second_enqueue_of_an_active_key_reports_already_queued() {
        let (_dir, ledger) = ledger().await;
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

    #[tokio::test]
    async fn a_finished_key_can_be_enqueued_again() {
        let (_dir, ledger) = ledger().await;
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

    #[tokio::test]
    async fn enqueue_rejects_a_non_object_payload_and_an_empty_key() {
        let (_dir, ledger) = ledger().await;
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

    #[tokio::test]
    async fn batch_enqueue_with_active_uniqueness_skips_active_keys_only() {
        let (_dir, ledger) = ledger().await;
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

    #[tokio::test]
    async fn batch_enqueue_with_ever_uniqueness_skips_any_known_key() {
        let (_dir, ledger) = ledger().await;
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

    #[tokio::test]
    async fn finished_keys_are_reenqueued_only_after_the_reprocess_window() {
        let (_dir, ledger) = ledger().await;
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
