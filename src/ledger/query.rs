//! Read models for operators and endpoints: job listings, one job with its attempt history,
//! counts. Reads go through the reader pool and never block the writer.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use super::health::Track;
use super::model::JobId;
use super::{JobKind, JobState, LedgerError, SqliteLedger};
use crate::timestamp::Timestamp;

/// Which jobs to list (filters combine with AND).
#[derive(Clone, Debug)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub kind: Option<JobKind>,
    pub key: Option<String>,
    /// Only jobs with a smaller id: the last id of the previous page (keyset pagination).
    pub before: Option<i64>,
    pub limit: u32,
}

impl Default for JobFilter {
    fn default() -> Self {
        JobFilter {
            state: None,
            kind: None,
            key: None,
            before: None,
            limit: 50,
        }
    }
}

/// A job as operators see it (the `--json` shape of `gunsync jobs`, DESIGN §6).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobView {
    pub id: i64,
    pub kind: String,
    pub key: String,
    pub state: String,
    pub priority: i64,
    pub attempts: i64,
    pub max_attempts: i64,
    pub run_at: Timestamp,
    pub lease_expires_at: Option<Timestamp>,
    pub leased_by: Option<String>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub processed_at: Option<Timestamp>,
    /// The version of the record the job is about (a type index entry's `timestamp`).
    pub revision: Option<i64>,
    pub payload: Value,
}

/// One attempt of a job (`job_attempts`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AttemptView {
    pub attempt: i64,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub outcome: String,
    pub error: Option<String>,
    pub http_status: Option<i64>,
    pub leased_by: Option<String>,
}

/// One sync cycle on one peer (`sync_cycles`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CycleView {
    pub id: i64,
    pub peer: String,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub deletions_seen: i64,
    pub records_seen: i64,
    pub delete_enqueued: i64,
    pub discover_enqueued: i64,
    pub rejected: i64,
    pub deletions_ignored: i64,
    pub error: Option<String>,
}

/// Counts for `gunsync stats`, `/metrics` and `/healthz`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stats {
    /// Every state name, with its count (0 included).
    pub states: BTreeMap<String, i64>,
    /// kind → state → count (only non-zero counts).
    pub kinds: BTreeMap<String, BTreeMap<String, i64>>,
    pub total: i64,
    /// Jobs that could run now (pending or retrying with `run_at <= now`).
    pub runnable: i64,
    /// How long the oldest runnable job has been waiting, in seconds.
    pub oldest_runnable_age_s: Option<f64>,
    /// Running jobs whose lease expired (the reclaimer will return them).
    pub expired_leases: i64,
    /// Systems whose circuit is open: work is paused until they answer again.
    pub circuits: Vec<super::CircuitView>,
    pub last_cycles: Vec<CycleView>,
}

/// Which jobs a listing or a bulk operation is about (filters combine with AND).
pub(super) struct Matching<'a> {
    pub ids: &'a [JobId],
    pub state: Option<JobState>,
    pub kind: Option<JobKind>,
    pub key: Option<&'a str>,
    /// Only ids below this one (keyset pagination).
    pub before: Option<i64>,
    pub limit: i64,
}

/// A `jobs` row as read; `into_view` turns it into what operators see.
struct JobRow {
    id: i64,
    kind: String,
    key: String,
    state: String,
    priority: i64,
    attempts: i64,
    max_attempts: i64,
    run_at: Timestamp,
    lease_expires_at: Option<Timestamp>,
    leased_by: Option<String>,
    last_error: Option<String>,
    created_at: Timestamp,
    updated_at: Timestamp,
    processed_at: Option<Timestamp>,
    payload: String,
    leased_at: Option<Timestamp>,
    revision: Option<i64>,
}

impl JobRow {
    /// The view, and when the attempt in flight started (running jobs only).
    fn into_view(self) -> (JobView, Option<Timestamp>) {
        let view = JobView {
            id: self.id,
            kind: self.kind,
            key: self.key,
            state: self.state,
            priority: self.priority,
            attempts: self.attempts,
            max_attempts: self.max_attempts,
            run_at: self.run_at,
            lease_expires_at: self.lease_expires_at,
            leased_by: self.leased_by,
            last_error: self.last_error,
            created_at: self.created_at,
            updated_at: self.updated_at,
            processed_at: self.processed_at,
            revision: self.revision,
            // The CHECK constraint keeps payloads valid JSON.
            payload: serde_json::from_str(&self.payload).unwrap_or(Value::Null),
        };
        (view, self.leased_at)
    }
}

impl JobFilter {
    /// The jobs a listing asks for, as the statement's filter.
    pub(super) fn matching(&self) -> Matching<'_> {
        Matching {
            ids: &[],
            state: self.state,
            kind: self.kind,
            key: self.key.as_deref(),
            before: self.before,
            limit: i64::from(self.limit),
        }
    }
}

impl SqliteLedger {
    pub async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<JobView>, LedgerError> {
        let ids = self.matching_ids(&filter.matching()).await?;
        Ok(self
            .rows(&ids)
            .await?
            .into_iter()
            .map(|r| r.into_view().0)
            .collect())
    }

    /// The ids of the jobs `m` matches, newest first, each way through an index: given ids by
    /// primary key, a key through `(kind, key)` (every kind when none is given), a state through
    /// the index of that state, nothing from the newest id down.
    pub(super) async fn matching_ids(&self, m: &Matching<'_>) -> Result<Vec<i64>, LedgerError> {
        let state = m.state.map(JobState::as_str);
        let kind = m.kind.map(JobKind::as_str);
        let limit = m.limit;
        // A plain range on `id`, so each index below walks from the page's first row.
        let before = m.before.unwrap_or(i64::MAX);
        if !m.ids.is_empty() {
            let ids = json!(m.ids.iter().map(|id| id.0).collect::<Vec<_>>()).to_string();
            return sqlx::query_scalar!(
                r#"SELECT id AS "id!: i64" FROM jobs
                   WHERE id IN (SELECT value FROM json_each(?1))
                     AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR kind = ?3)
                     AND (?4 IS NULL OR key = ?4) AND id < ?6
                   ORDER BY id DESC LIMIT ?5"#,
                ids,
                state,
                kind,
                m.key,
                limit,
                before,
            )
            .fetch_all(&self.reader)
            .await
            .on_read(&self.health);
        }
        match (m.key, state) {
            (Some(key), _) => {
                let kinds = json!(match m.kind {
                    Some(kind) => vec![kind.as_str()],
                    None => JobKind::ALL.map(JobKind::as_str).to_vec(),
                })
                .to_string();
                sqlx::query_scalar!(
                    r#"SELECT id AS "id!: i64" FROM jobs INDEXED BY jobs_by_kind_key
                       WHERE kind IN (SELECT value FROM json_each(?1)) AND key = ?2
                         AND (?3 IS NULL OR state = ?3) AND id < ?5
                       ORDER BY id DESC LIMIT ?4"#,
                    kinds,
                    key,
                    state,
                    limit,
                    before,
                )
                .fetch_all(&self.reader)
                .await
            }
            // Each state through the index that holds it, so a listing costs the page asked for
            // (or, for the running jobs, their number), not the ledger's size.
            (None, Some("dead" | "cancelled")) => {
                sqlx::query_scalar!(
                    r#"SELECT id AS "id!: i64" FROM jobs INDEXED BY jobs_parked
                       WHERE state IN ('dead', 'cancelled') AND state = ?1 AND (?2 IS NULL OR kind = ?2)
                         AND id < ?4
                       ORDER BY state, id DESC LIMIT ?3"#,
                    state,
                    kind,
                    limit,
                    before,
                )
                .fetch_all(&self.reader)
                .await
            }
            (None, Some("pending" | "retrying")) => {
                sqlx::query_scalar!(
                    r#"SELECT id AS "id!: i64" FROM jobs INDEXED BY jobs_waiting_by_id
                       WHERE state IN ('pending', 'retrying') AND state = ?1 AND (?2 IS NULL OR kind = ?2)
                         AND id < ?4
                       ORDER BY state, id DESC LIMIT ?3"#,
                    state,
                    kind,
                    limit,
                    before,
                )
                .fetch_all(&self.reader)
                .await
            }
            (None, Some("running")) => {
                sqlx::query_scalar!(
                    r#"SELECT id AS "id!: i64" FROM jobs INDEXED BY jobs_running_by_expiry
                       WHERE state = 'running' AND (?1 IS NULL OR kind = ?1) AND id < ?3
                       ORDER BY id DESC LIMIT ?2"#,
                    kind,
                    limit,
                    before,
                )
                .fetch_all(&self.reader)
                .await
            }
            // Done jobs are most of a ledger: the newest ids hold them.
            (None, Some(state)) => {
                sqlx::query_scalar!(
                    r#"SELECT id AS "id!: i64" FROM jobs
                       WHERE state = ?1 AND (?2 IS NULL OR kind = ?2) AND id < ?4
                       ORDER BY id DESC LIMIT ?3"#,
                    state,
                    kind,
                    limit,
                    before,
                )
                .fetch_all(&self.reader)
                .await
            }
            (None, None) => {
                sqlx::query_scalar!(
                    r#"SELECT id AS "id!: i64" FROM jobs WHERE (?1 IS NULL OR kind = ?1) AND id < ?3
                       ORDER BY id DESC LIMIT ?2"#,
                    kind,
                    limit,
                    before,
                )
                .fetch_all(&self.reader)
                .await
            }
        }
        .on_read(&self.health)
    }

    /// The rows of `ids`, newest first.
    async fn rows(&self, ids: &[i64]) -> Result<Vec<JobRow>, LedgerError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = json!(ids).to_string();
        sqlx::query_as!(
            JobRow,
            r#"SELECT id AS "id!: i64", kind AS "kind!: String", key AS "key!: String", state AS "state!: String",
                      priority AS "priority!: i64", attempts AS "attempts!: i64", max_attempts AS "max_attempts!: i64",
                      run_at AS "run_at!: Timestamp", lease_expires_at AS "lease_expires_at: Timestamp",
                      leased_by, last_error, created_at AS "created_at!: Timestamp",
                      updated_at AS "updated_at!: Timestamp", processed_at AS "processed_at: Timestamp",
                      payload AS "payload!: String", leased_at AS "leased_at: Timestamp", revision
               FROM jobs WHERE id IN (SELECT value FROM json_each(?1))
               ORDER BY id DESC"#,
            ids,
        )
        .fetch_all(&self.reader)
        .await
        .on_read(&self.health)
    }

    pub async fn get_job(
        &self,
        id: JobId,
    ) -> Result<Option<(JobView, Vec<AttemptView>)>, LedgerError> {
        let Some(row) = self.rows(&[id.0]).await?.pop() else {
            return Ok(None);
        };
        let (job, leased_at) = row.into_view();
        let attempts = sqlx::query_as!(
            AttemptView,
            r#"SELECT attempt AS "attempt!: i64", started_at AS "started_at!: Timestamp",
                      finished_at AS "finished_at?: Timestamp", outcome AS "outcome!: String", error,
                      http_status, leased_by
               FROM job_attempts WHERE job_id = ?1 ORDER BY id"#,
            id.0,
        )
        .fetch_all(&self.reader)
        .await
        .on_read(&self.health)?;
        let mut attempts = attempts;
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

    pub async fn stats(&self, now: Timestamp, cycles: u32) -> Result<Stats, LedgerError> {
        // Kept by triggers in the same transaction as every state change: a handful of rows,
        // whatever the ledger's size.
        let rows = sqlx::query!(
            r#"SELECT kind AS "kind!: String", state AS "state!: String", jobs AS "n!: i64"
               FROM job_counts WHERE jobs > 0"#
        )
        .fetch_all(&self.reader)
        .await
        .on_read(&self.health)?;
        let mut states: BTreeMap<String, i64> = JobState::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        let mut kinds: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        let mut total = 0;
        for r in rows {
            *states.entry(r.state.clone()).or_default() += r.n;
            kinds.entry(r.kind).or_default().insert(r.state, r.n);
            total += r.n;
        }
        // A range of `jobs_waiting`: the runnable backlog, never the jobs scheduled later.
        let backlog = sqlx::query!(
            r#"SELECT count(*) AS "n!: i64", min(run_at) AS "oldest: Timestamp"
               FROM jobs INDEXED BY jobs_waiting
               WHERE state IN ('pending', 'retrying') AND run_at <= ?1"#,
            now,
        )
        .fetch_one(&self.reader)
        .await
        .on_read(&self.health)?;
        let expired_leases = sqlx::query_scalar!(
            r#"SELECT count(*) AS "n!: i64" FROM jobs WHERE state = 'running' AND lease_expires_at <= ?1"#,
            now,
        )
        .fetch_one(&self.reader)
        .await
        .on_read(&self.health)?;
        Ok(Stats {
            states,
            kinds,
            total,
            runnable: backlog.n,
            oldest_runnable_age_s: backlog.oldest.map(|t| now.since(t).as_secs_f64()),
            expired_leases,
            circuits: self.circuits().await?,
            last_cycles: self.recent_cycles(cycles).await?,
        })
    }

    pub async fn recent_cycles(&self, limit: u32) -> Result<Vec<CycleView>, LedgerError> {
        let limit = i64::from(limit);
        sqlx::query_as!(
            CycleView,
            r#"SELECT id AS "id!: i64", peer AS "peer!: String", started_at AS "started_at!: Timestamp",
                      finished_at AS "finished_at: Timestamp", deletions_seen AS "deletions_seen!: i64",
                      records_seen AS "records_seen!: i64", delete_enqueued AS "delete_enqueued!: i64",
                      discover_enqueued AS "discover_enqueued!: i64", rejected AS "rejected!: i64",
                      deletions_ignored AS "deletions_ignored!: i64", error
               FROM sync_cycles ORDER BY id DESC LIMIT ?1"#,
            limit,
        )
        .fetch_all(&self.reader)
        .await
        .on_read(&self.health)
    }

    pub async fn schema_version(&self) -> Result<i64, LedgerError> {
        let version = sqlx::query_scalar!(
            r#"SELECT max(version) AS "version: i64" FROM _sqlx_migrations WHERE success"#
        )
        .fetch_one(&self.reader)
        .await
        .on_read(&self.health)?;
        Ok(version.unwrap_or(0))
    }

    pub async fn ping(&self) -> Result<(), LedgerError> {
        sqlx::query_scalar!(r#"SELECT 1 AS "one!: i64""#)
            .fetch_one(&self.reader)
            .await
            .on_read(&self.health)?;
        Ok(())
    }
}

impl SqliteLedger {
    pub async fn count_jobs_outside(&self, prefix: &str) -> Result<i64, LedgerError> {
        let pattern = format!("{}%", prefix.replace('%', "\\%").replace('_', "\\_"));
        sqlx::query_scalar!(
            r#"SELECT count(*) AS "n!: i64" FROM jobs WHERE key NOT LIKE ?1 ESCAPE '\'"#,
            pattern
        )
        .fetch_one(&self.reader)
        .await
        .on_read(&self.health)
    }
}
