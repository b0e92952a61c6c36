//! Read models on PostgreSQL (see the SQLite backend's `query.rs`): listings through the index of
//! what they filter on, one job with its history, counts. Counts by kind and state are counted
//! (`count(*)`): there is no counts table kept by triggers on PostgreSQL.

use std::collections::BTreeMap;

use gunsync_pg::query as sql;

use super::super::health::Track;
use super::super::model::JobId;
use super::super::query::{AttemptView, CycleView, JobFilter, JobView, Matching, Stats};
use super::super::{JobKind, JobState, LedgerError};
use super::PgLedger;
use crate::timestamp::Timestamp;

impl PgLedger {
    /// See [`Ledger::list_jobs`](super::super::Ledger::list_jobs).
    pub(in crate::ledger) async fn list_jobs(
        &self,
        filter: &JobFilter,
    ) -> Result<Vec<JobView>, LedgerError> {
        let ids = self.matching_ids(&filter.matching()).await?;
        Ok(self
            .rows(&ids)
            .await?
            .into_iter()
            .map(|r| view(r).0)
            .collect())
    }

    /// The ids of the jobs `m` matches, newest first, each way through an index: given ids by
    /// primary key, a key through `(kind, key)` (every kind when none is given), a state through
    /// the partial index of that state, nothing from the newest id down.
    pub(super) async fn matching_ids(&self, m: &Matching<'_>) -> Result<Vec<i64>, LedgerError> {
        let state = m.state.map(JobState::as_str);
        let kind = m.kind.map(JobKind::as_str);
        let (before, limit) = (m.before.unwrap_or(i64::MAX), m.limit);
        let pool = &self.pool;
        if !m.ids.is_empty() {
            let ids: Vec<i64> = m.ids.iter().map(|id| id.0).collect();
            return sql::ids_among(pool, &ids, state, kind, m.key, before, limit)
                .await
                .on_read(&self.health);
        }
        match (m.key, state) {
            (Some(key), _) => {
                let kinds: Vec<String> = match m.kind {
                    Some(kind) => vec![kind.as_str().to_string()],
                    None => JobKind::ALL.map(|k| k.as_str().to_string()).to_vec(),
                };
                sql::ids_by_key(pool, &kinds, key, state, before, limit).await
            }
            (None, Some(s @ ("dead" | "cancelled"))) => {
                sql::ids_parked(pool, s, kind, before, limit).await
            }
            (None, Some(s @ ("pending" | "retrying"))) => {
                sql::ids_waiting(pool, s, kind, before, limit).await
            }
            (None, Some("running")) => sql::ids_running(pool, kind, before, limit).await,
            (None, Some(s)) => sql::ids_in_state(pool, s, kind, before, limit).await,
            (None, None) => sql::ids_all(pool, kind, before, limit).await,
        }
        .on_read(&self.health)
    }

    /// The rows of `ids`, newest first.
    async fn rows(&self, ids: &[i64]) -> Result<Vec<sql::JobRow>, LedgerError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        sql::rows(&self.pool, ids).await.on_read(&self.health)
    }

    /// See [`Ledger::get_job`](super::super::Ledger::get_job).
    pub(in crate::ledger) async fn get_job(
        &self,
        id: JobId,
    ) -> Result<Option<(JobView, Vec<AttemptView>)>, LedgerError> {
        let Some(row) = self.rows(&[id.0]).await?.pop() else {
            return Ok(None);
        };
        let (job, leased_at) = view(row);
        let mut attempts: Vec<AttemptView> = sql::attempts(&self.pool, id.0)
            .await
            .on_read(&self.health)?
            .into_iter()
            .map(|a| AttemptView {
                attempt: a.attempt,
                started_at: a.started_at.into(),
                finished_at: Some(a.finished_at.into()),
                outcome: a.outcome,
                error: a.error,
                http_status: a.http_status,
                leased_by: a.leased_by,
            })
            .collect();
        // The attempt in flight lives on the job row until it ends.
        if let (Some(started_at), "running") = (leased_at, job.state.as_str()) {
            attempts.push(AttemptView {
                attempt: job.attempts,
                started_at,
                finished_at: None,
                outcome: "running".into(),
                error: None,
                http_status: None,
                leased_by: job.leased_by.clone(),
            });
        }
        Ok(Some((job, attempts)))
    }

    /// See [`Ledger::stats`](super::super::Ledger::stats).
    pub(in crate::ledger) async fn stats(
        &self,
        now: Timestamp,
        cycles: u32,
    ) -> Result<Stats, LedgerError> {
        let rows = sql::counts(&self.pool).await.on_read(&self.health)?;
        let mut states: BTreeMap<String, i64> = JobState::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        let mut kinds: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        let mut total = 0;
        for r in rows {
            *states.entry(r.state.clone()).or_default() += r.jobs;
            kinds.entry(r.kind).or_default().insert(r.state, r.jobs);
            total += r.jobs;
        }
        let backlog = sql::backlog(&self.pool, now.as_datetime())
            .await
            .on_read(&self.health)?;
        let expired_leases = sql::expired_leases(&self.pool, now.as_datetime())
            .await
            .on_read(&self.health)?;
        Ok(Stats {
            states,
            kinds,
            total,
            runnable: backlog.runnable,
            oldest_runnable_age_s: backlog
                .oldest
                .map(|t| now.since(Timestamp::from(t)).as_secs_f64()),
            expired_leases,
            circuits: self.circuits().await?,
            last_cycles: self.recent_cycles(cycles).await?,
        })
    }

    /// See [`Ledger::recent_cycles`](super::super::Ledger::recent_cycles).
    pub(in crate::ledger) async fn recent_cycles(
        &self,
        limit: u32,
    ) -> Result<Vec<CycleView>, LedgerError> {
        let rows = sql::recent_cycles(&self.pool, i64::from(limit))
            .await
            .on_read(&self.health)?;
        Ok(rows
            .into_iter()
            .map(|c| CycleView {
                id: c.id,
                peer: c.peer,
                started_at: c.started_at.into(),
                finished_at: c.finished_at.map(Timestamp::from),
                deletions_seen: c.deletions_seen,
                records_seen: c.records_seen,
                delete_enqueued: c.delete_enqueued,
                discover_enqueued: c.discover_enqueued,
                rejected: c.rejected,
                deletions_ignored: c.deletions_ignored,
                error: c.error,
            })
            .collect())
    }

    /// The newest migration applied (sqlx's migrator keeps them in `_sqlx_migrations`).
    pub(in crate::ledger) async fn schema_version(&self) -> Result<i64, LedgerError> {
        let version = sql::schema_version(&self.pool)
            .await
            .on_read(&self.health)?;
        Ok(version.unwrap_or(0))
    }

    /// `Ok(())` when the database answers a query (for `/healthz`).
    pub(in crate::ledger) async fn ping(&self) -> Result<(), LedgerError> {
        sql::ping(&self.pool).await.on_read(&self.health)
    }

    /// See [`Ledger::count_jobs_outside`](super::super::Ledger::count_jobs_outside).
    pub(in crate::ledger) async fn count_jobs_outside(
        &self,
        prefix: &str,
    ) -> Result<i64, LedgerError> {
        sql::count_jobs_outside(&self.pool, prefix)
            .await
            .on_read(&self.health)
    }
}

/// The view of a row, and when the attempt in flight started (running jobs only).
fn view(r: sql::JobRow) -> (JobView, Option<Timestamp>) {
    let job = JobView {
        id: r.id,
        kind: r.kind,
        key: r.key,
        state: r.state,
        priority: r.priority,
        attempts: r.attempts,
        max_attempts: r.max_attempts,
        run_at: r.run_at.into(),
        lease_expires_at: r.lease_expires_at.map(Timestamp::from),
        leased_by: r.leased_by,
        last_error: r.last_error,
        created_at: r.created_at.into(),
        updated_at: r.updated_at.into(),
        processed_at: r.processed_at.map(Timestamp::from),
        revision: r.revision,
        payload: r.payload,
    };
    (job, r.leased_at.map(Timestamp::from))
}
