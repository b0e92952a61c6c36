//! Operator transitions: requeue (`done|dead|cancelled|retrying → pending`), cancel
//! (`pending|retrying → cancelled`) and prune (delete finished jobs). Bulk work goes in batches
//! of short write transactions, so a running daemon is never locked out for long.

use std::collections::HashSet;

use super::health::Track;
use super::model::JobId;
use super::query::Matching;
use super::{JobKind, JobState, LedgerError, SqliteLedger};
use crate::timestamp::Timestamp;

/// Rows per write transaction in bulk operations.
pub const ADMIN_BATCH: usize = 500;

/// Which jobs to requeue and how. At least one of `ids`, `state`, `kind`, `key` must be given.
#[derive(Clone, Debug, Default)]
pub struct Requeue {
    pub ids: Vec<JobId>,
    pub state: Option<JobState>,
    pub kind: Option<JobKind>,
    pub key: Option<String>,
    /// Restart the attempt count at 0 (otherwise `max_attempts` is raised to `attempts + 1`).
    pub reset_attempts: bool,
    /// Report what would change; change nothing.
    pub dry_run: bool,
}

/// What a requeue did (or, with `dry_run`, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequeueReport {
    /// Jobs matching the filters.
    pub matched: u64,
    /// Jobs moved to `pending` (with `dry_run`: that would be).
    pub requeued: Vec<JobId>,
    /// Matching jobs left alone because a worker is running them.
    pub skipped_running: u64,
    /// Matching jobs that were already `pending`.
    pub skipped_pending: u64,
    /// Matching jobs left alone because their `(kind, key)` already has an active job (or a
    /// newer matching job was requeued instead).
    pub skipped_duplicate: u64,
    /// Requested ids that do not exist.
    pub missing: Vec<JobId>,
}

/// What a cancel did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Cancelled {
    pub cancelled: Vec<JobId>,
    /// Ids in a state that cannot be cancelled (only pending and retrying jobs can).
    pub not_cancellable: Vec<(JobId, JobState)>,
    pub missing: Vec<JobId>,
}

/// What giving space back to the file system did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Space {
    /// The file's size before and after, in bytes.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Free pages left inside the file (a ledger created before incremental auto-vacuum keeps
    /// them until a full `VACUUM`).
    pub free_pages: i64,
}

/// How [`SqliteLedger::give_back_space`] may work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vacuum {
    /// Incremental vacuum in short transactions, where the file allows it (a ledger created
    /// with `auto_vacuum = INCREMENTAL`, as every gunsync ledger is since schema 3); otherwise
    /// nothing.
    Incremental,
    /// Also a full `VACUUM` of a ledger that cannot vacuum incrementally (switching it to
    /// incremental for good). It rewrites the file and holds the write lock while it does.
    Full,
}

/// What a prune deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pruned {
    pub jobs: u64,
    pub attempts: u64,
}

impl Requeue {
    /// Refuses a request that names no job and no filter (it would requeue everything).
    pub(super) fn check(&self) -> Result<(), LedgerError> {
        if self.ids.is_empty() && self.state.is_none() && self.kind.is_none() && self.key.is_none()
        {
            return Err(LedgerError::Invalid {
                what: "requeue",
                reason: "give job ids or at least one filter (--state, --kind, --key)".into(),
            });
        }
        Ok(())
    }

    /// The jobs it names, as the listings' filter.
    pub(super) fn matching(&self) -> Matching<'_> {
        Matching {
            ids: &self.ids,
            state: self.state,
            kind: self.kind,
            key: self.key.as_deref(),
            before: None,
            limit: i64::MAX,
        }
    }
}

/// Sorts the jobs a requeue matched, `(id, kind, key, state)` newest first, into the report's
/// skips (running, pending, an older job of a key already taken, named ids that do not exist)
/// and the candidates to requeue: of several finished jobs of one key the newest is requeued.
pub(super) fn plan<'a>(
    request: &Requeue,
    rows: impl ExactSizeIterator<Item = (i64, &'a str, &'a str, &'a str)>,
) -> (RequeueReport, Vec<i64>) {
    let mut report = RequeueReport {
        matched: rows.len() as u64,
        ..Default::default()
    };
    let mut found = HashSet::new();
    let mut seen_keys = HashSet::new();
    let mut candidates = Vec::new();
    for (id, kind, key, state) in rows {
        found.insert(id);
        match state {
            "running" => report.skipped_running += 1,
            "pending" => report.skipped_pending += 1,
            _ if !seen_keys.insert((kind, key)) => report.skipped_duplicate += 1,
            _ => candidates.push(id),
        }
    }
    report.missing = request
        .ids
        .iter()
        .copied()
        .filter(|id| !found.contains(&id.0))
        .collect();
    (report, candidates)
}

impl SqliteLedger {
    pub async fn requeue(
        &self,
        request: &Requeue,
        now: Timestamp,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<RequeueReport, LedgerError> {
        request.check()?;
        let matched = self.matching_ids(&request.matching()).await?;
        let matched = serde_json::to_string(&matched).expect("ids serialize");
        let rows = sqlx::query!(
            r#"SELECT id AS "id!: i64", kind AS "kind!: String", key AS "key!: String", state AS "state!: String"
               FROM jobs WHERE id IN (SELECT value FROM json_each(?1))
               ORDER BY id DESC"#,
            matched,
        )
        .fetch_all(&self.reader)
        .await
        .on_read(&self.health)?;

        let (mut report, candidates) = plan(
            request,
            rows.iter()
                .map(|r| (r.id, r.kind.as_str(), r.key.as_str(), r.state.as_str())),
        );
        if request.dry_run {
            // Would-be duplicates of an active job are only known by asking; do it read-only.
            let blocked = self.blocked_by_active(&candidates).await?;
            report.skipped_duplicate += blocked.len() as u64;
            report.requeued = candidates
                .into_iter()
                .filter(|id| !blocked.contains(id))
                .map(JobId)
                .collect();
            return Ok(report);
        }
        let total = candidates.len() as u64;
        let reset = request.reset_attempts;
        for chunk in candidates.chunks(ADMIN_BATCH) {
            let chunk_ids = serde_json::to_string(chunk).expect("ids serialize");
            let mut tx = self.begin_write().await?;
            let done = sqlx::query_scalar!(
                r#"UPDATE jobs
                   SET state = 'pending', run_at = ?2,
                       attempts = CASE WHEN ?3 THEN 0 ELSE attempts END,
                       max_attempts = CASE WHEN ?3 THEN max_attempts ELSE max(max_attempts, attempts + 1) END,
                       processed_at = NULL, updated_at = ?2
                   WHERE id IN (SELECT value FROM json_each(?1))
                     AND state IN ('done', 'dead', 'cancelled', 'retrying')
                     AND NOT EXISTS (SELECT 1 FROM jobs AS a
                                     WHERE a.kind = jobs.kind AND a.key = jobs.key AND a.id <> jobs.id
                                       AND a.state IN ('pending', 'running', 'retrying'))
                   RETURNING id AS "id!: i64""#,
                chunk_ids,
                now,
                reset,
            )
            .fetch_all(&mut *tx)
            .await
            .on_write(&self.health)?;
            tx.commit().await?;
            report.skipped_duplicate += (chunk.len() - done.len()) as u64;
            report.requeued.extend(done.into_iter().map(JobId));
            progress(
                report.requeued.len() as u64 + report.skipped_duplicate,
                total,
            );
        }
        report.requeued.sort();
        Ok(report)
    }

    /// Of `ids`, those whose `(kind, key)` has another active job.
    async fn blocked_by_active(&self, ids: &[i64]) -> Result<HashSet<i64>, LedgerError> {
        let mut blocked = HashSet::new();
        for chunk in ids.chunks(ADMIN_BATCH) {
            let chunk_ids = serde_json::to_string(chunk).expect("ids serialize");
            let rows = sqlx::query_scalar!(
                r#"SELECT j.id AS "id!: i64" FROM jobs AS j
                   WHERE j.id IN (SELECT value FROM json_each(?1))
                     AND EXISTS (SELECT 1 FROM jobs AS a
                                 WHERE a.kind = j.kind AND a.key = j.key AND a.id <> j.id
                                   AND a.state IN ('pending', 'running', 'retrying'))"#,
                chunk_ids,
            )
            .fetch_all(&self.reader)
            .await
            .on_read(&self.health)?;
            blocked.extend(rows);
        }
        Ok(blocked)
    }

    pub async fn cancel(&self, ids: &[JobId], now: Timestamp) -> Result<Cancelled, LedgerError> {
        let mut report = Cancelled::default();
        for chunk in ids.chunks(ADMIN_BATCH) {
            let chunk_ids = ids_json(chunk).unwrap_or_else(|| "[]".into());
            let mut tx = self.begin_write().await?;
            let done = sqlx::query_scalar!(
                r#"UPDATE jobs SET state = 'cancelled', processed_at = ?2, updated_at = ?2
                   WHERE id IN (SELECT value FROM json_each(?1)) AND state IN ('pending', 'retrying')
                   RETURNING id AS "id!: i64""#,
                chunk_ids,
                now,
            )
            .fetch_all(&mut *tx)
            .await
            .on_write(&self.health)?;
            tx.commit().await?;
            report.cancelled.extend(done.into_iter().map(JobId));
        }
        let cancelled: HashSet<JobId> = report.cancelled.iter().copied().collect();
        for id in ids.iter().copied().filter(|id| !cancelled.contains(id)) {
            match self.job_state(id).await? {
                Some(state) => report.not_cancellable.push((id, state)),
                None => report.missing.push(id),
            }
        }
        report.cancelled.sort();
        Ok(report)
    }

    pub async fn prune(
        &self,
        cutoff: Timestamp,
        state: Option<JobState>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Pruned, LedgerError> {
        if let Some(state) = state.filter(|s| !s.is_finished()) {
            return Err(LedgerError::Invalid {
                what: "state",
                reason: format!(
                    "prune deletes finished jobs only (done, dead, cancelled), not {state}"
                ),
            });
        }
        let state = state.map(JobState::as_str);
        let limit = ADMIN_BATCH as i64;
        let mut pruned = Pruned::default();
        // Keyset over ids: one pass over the table in short transactions, no index on processed_at.
        let mut after = 0i64;
        loop {
            let mut tx = self.begin_write().await?;
            let scanned = sqlx::query!(
                r#"SELECT id AS "id!: i64",
                          (processed_at < ?2 AND state IN ('done', 'dead', 'cancelled') AND (?3 IS NULL OR state = ?3))
                              AS "prune!: bool"
                   FROM jobs WHERE id > ?1 ORDER BY id LIMIT ?4"#,
                after,
                cutoff,
                state,
                limit,
            )
            .fetch_all(&mut *tx)
            .await
            .on_write(&self.health)?;
            let Some(last) = scanned.last() else {
                tx.rollback().await?;
                break;
            };
            after = last.id;
            let ids: Vec<i64> = scanned.iter().filter(|r| r.prune).map(|r| r.id).collect();
            if ids.is_empty() {
                tx.rollback().await?;
                continue;
            }
            let chunk_ids = serde_json::to_string(&ids).expect("ids serialize");
            pruned.attempts += sqlx::query!(
                "DELETE FROM job_attempts WHERE job_id IN (SELECT value FROM json_each(?1))",
                chunk_ids
            )
            .execute(&mut *tx)
            .await
            .on_write(&self.health)?
            .rows_affected();
            pruned.jobs += sqlx::query!(
                "DELETE FROM jobs WHERE id IN (SELECT value FROM json_each(?1))",
                chunk_ids
            )
            .execute(&mut *tx)
            .await
            .on_write(&self.health)?
            .rows_affected();
            tx.commit().await?;
            progress(pruned.jobs);
        }
        Ok(pruned)
    }

    async fn job_state(&self, id: JobId) -> Result<Option<JobState>, LedgerError> {
        let state = sqlx::query_scalar!(
            r#"SELECT state AS "state!: String" FROM jobs WHERE id = ?1"#,
            id.0
        )
        .fetch_optional(&self.reader)
        .await
        .on_read(&self.health)?;
        state
            .map(|s| {
                s.parse()
                    .map_err(|e: super::UnknownName| LedgerError::Invalid {
                        what: "state",
                        reason: e.to_string(),
                    })
            })
            .transpose()
    }
}

impl SqliteLedger {
    pub async fn give_back_space(&self, vacuum: Vacuum) -> Result<Space, LedgerError> {
        let bytes_before = self.file_size();
        let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
            .fetch_one(&self.writer)
            .await
            .on_read(&self.health)?;
        if mode == 0 && vacuum == Vacuum::Full {
            let mut conn = self.writer.acquire().await.on_write(&self.health)?;
            for statement in ["PRAGMA auto_vacuum = INCREMENTAL", "VACUUM"] {
                sqlx::query(statement)
                    .execute(&mut *conn)
                    .await
                    .on_write(&self.health)?;
            }
        } else if mode == 2 {
            loop {
                let free: i64 = sqlx::query_scalar("PRAGMA freelist_count")
                    .fetch_one(&self.writer)
                    .await
                    .on_read(&self.health)?;
                if free == 0 {
                    break;
                }
                let mut tx = self.begin_write().await?;
                sqlx::query("PRAGMA incremental_vacuum(2000)")
                    .execute(&mut *tx)
                    .await
                    .on_write(&self.health)?;
                tx.commit().await?;
            }
        }
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.writer)
            .await
            .on_write(&self.health)?;
        let free_pages: i64 = sqlx::query_scalar("PRAGMA freelist_count")
            .fetch_one(&self.writer)
            .await
            .on_read(&self.health)?;
        Ok(Space {
            bytes_before,
            bytes_after: self.file_size(),
            free_pages,
        })
    }
}

impl SqliteLedger {
    pub fn file_size(&self) -> u64 {
        std::fs::metadata(self.path()).map_or(0, |m| m.len())
    }
}

fn ids_json(ids: &[JobId]) -> Option<String> {
    (!ids.is_empty()).then(|| {
        serde_json::to_string(&ids.iter().map(|id| id.0).collect::<Vec<_>>())
            .expect("ids serialize")
    })
}
