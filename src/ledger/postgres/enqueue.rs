//! Adding jobs on PostgreSQL. The unique index `jobs_one_active_per_key` decides between nodes
//! enqueueing the same key at once; a batch checks the wider rule of [`Uniqueness`] in its insert,
//! under the same [`Blocking`] rule as the SQLite backend.

use chrono::{DateTime, Utc};
use gunsync_pg::{enqueue as sql, notify};
use serde_json::{Value, json};

use super::super::LedgerError;
use super::super::enqueue::{Blocking, ENQUEUE_CHUNK, validate};
use super::super::health::Track;
use super::super::model::{EnqueueReport, Enqueued, JobId, NewJob, Uniqueness};
use super::PgLedger;
use crate::timestamp::Timestamp;

impl PgLedger {
    /// Adds one job unless an active job of the same `(kind, key)` exists.
    pub(in crate::ledger) async fn enqueue(
        &self,
        job: &NewJob,
        now: Timestamp,
    ) -> Result<Enqueued, LedgerError> {
        validate(job)?;
        let kind = job.kind.as_str();
        let run_at = job.run_at.unwrap_or(now).as_datetime();
        let max_attempts = i64::from(job.max_attempts.max(1));
        let mut tx = self.begin().await?;
        let result = loop {
            let created = sql::insert(
                &mut *tx,
                kind,
                &job.key,
                &job.payload,
                job.priority,
                max_attempts,
                run_at,
                job.revision,
                now.as_datetime(),
            )
            .await
            .on_write(&self.health)?;
            if let Some(id) = created {
                notify::jobs_ready(&mut *tx).await.on_write(&self.health)?;
                break Enqueued::Created(JobId(id));
            }
            // Each statement sees what committed before it: the active job that blocked the
            // insert may have finished since, and then the key is free again.
            let active = sql::active_id(&mut *tx, kind, &job.key)
                .await
                .on_write(&self.health)?;
            if let Some(id) = active {
                break Enqueued::AlreadyQueued(JobId(id));
            }
        };
        self.commit(tx).await?;
        Ok(result)
    }

    /// Adds many jobs, one statement per chunk, skipping each job that an existing job of its
    /// `(kind, key)` blocks under `unique`. Jobs that fail validation are an error for the whole
    /// call; nothing is written then.
    ///
    /// No separate read first, unlike SQLite: an insert that inserts nothing locks nothing here.
    pub(in crate::ledger) async fn enqueue_many(
        &self,
        jobs: &[NewJob],
        unique: Uniqueness,
        now: Timestamp,
    ) -> Result<EnqueueReport, LedgerError> {
        for job in jobs {
            validate(job)?;
        }
        let rule = sql_rule(Blocking::of(unique, now));
        let mut report = EnqueueReport::default();
        for chunk in jobs.chunks(ENQUEUE_CHUNK) {
            let batch = batch_json(chunk, now);
            let mut tx = self.begin().await?;
            let created = sql::insert_many(&mut *tx, &batch, rule, now.as_datetime())
                .await
                .on_write(&self.health)?;
            if created > 0 {
                notify::jobs_ready(&mut *tx).await.on_write(&self.health)?;
            }
            self.commit(tx).await?;
            report.created += created;
            report.skipped += chunk.len() as u64 - created;
        }
        Ok(report)
    }
}

/// The rule with times PostgreSQL accepts: [`Timestamp::MIN`] is before its earliest
/// timestamp, and year 1 is as early as any stored time.
fn sql_rule(rule: Blocking) -> sql::Blocking {
    let year_one = DateTime::<Utc>::from_timestamp(-62_135_596_800, 0).expect("valid constant");
    sql::Blocking {
        any_job: rule.any_job,
        cancelled_blocks: rule.cancelled_blocks,
        done_after: rule.done_after.as_datetime().max(year_one),
        dead_after: rule.dead_after.as_datetime().max(year_one),
        by_revision: rule.by_revision,
    }
}

/// The jobs as the JSON array `insert_many` reads (payloads as objects, for `jsonb`).
fn batch_json(jobs: &[NewJob], now: Timestamp) -> Value {
    jobs.iter()
        .map(|j| {
            json!({
                "kind": j.kind.as_str(),
                "key": j.key,
                "payload": j.payload,
                "priority": j.priority,
                "max_attempts": j.max_attempts.max(1),
                "run_at": j.run_at.unwrap_or(now).to_string(),
                "revision": j.revision,
            })
        })
        .collect()
}
