//! The ledger's public API: every method dispatches to the backend the database URL chose
//! (`sqlite.rs` and the statement files beside it, or `postgres/`). Callers never know which.

use std::collections::HashSet;

use serde_json::Value;

use super::lease::LeaseParams;
use super::*;
use crate::timestamp::Timestamp;

impl Ledger {
    /// Adds one job unless an active job of the same `(kind, key)` exists.
    pub async fn enqueue(&self, job: &NewJob, now: Timestamp) -> Result<Enqueued, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.enqueue(job, now).await,
            Backend::Postgres(l) => l.enqueue(job, now).await,
        }
    }

    /// Adds many jobs in few statements, skipping each job that an existing job of its
    /// `(kind, key)` blocks under `unique`. Jobs that fail validation are an error for the whole
    /// call; nothing is written then.
    ///
    /// The blocking jobs are looked up on a reader first, so a batch of keys the ledger already
    /// knows (a sync cycle over unchanged records) takes no write lock at all; the insert
    /// repeats the check for the rest inside its transaction.
    pub async fn enqueue_many(
        &self,
        jobs: &[NewJob],
        unique: Uniqueness,
        now: Timestamp,
    ) -> Result<EnqueueReport, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.enqueue_many(jobs, unique, now).await,
            Backend::Postgres(l) => l.enqueue_many(jobs, unique, now).await,
        }
    }

    /// Leases up to `params.max` runnable jobs (`run_at <= now`), in `priority, run_at, id` order.
    /// An empty vector means nothing is runnable now. The attempt in flight lives on the job row
    /// (`leased_at`); its `job_attempts` row is written when it ends.
    pub async fn lease(
        &self,
        params: LeaseParams<'_>,
        now: Timestamp,
    ) -> Result<Vec<LeasedJob>, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.lease(params, now).await,
            Backend::Postgres(l) => l.lease(params, now).await,
        }
    }

    /// Extends a running job's lease to `until`.
    ///
    /// # Errors
    /// [`LedgerError::LeaseLost`] if the lease expired and the job was reclaimed or re-leased.
    pub async fn heartbeat(
        &self,
        id: JobId,
        token: &LeaseToken,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.heartbeat(id, token, until, now).await,
            Backend::Postgres(l) => l.heartbeat(id, token, until, now).await,
        }
    }

    /// Replaces a running job's payload (a handler saving progress a retry needs, e.g. the
    /// record type a delete found before tombstoning the record).
    ///
    /// # Errors
    /// [`LedgerError::LeaseLost`] if the caller no longer holds the lease.
    pub async fn set_payload(
        &self,
        id: JobId,
        token: &LeaseToken,
        payload: &Value,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.set_payload(id, token, payload, now).await,
            Backend::Postgres(l) => l.set_payload(id, token, payload, now).await,
        }
    }

    /// Gives a running job back at shutdown: `running → pending`, runnable now, and the attempt it
    /// was on does not count (its attempt row says `interrupted`).
    ///
    /// # Errors
    /// [`LedgerError::LeaseLost`] if the caller no longer holds the lease.
    pub async fn release(
        &self,
        id: JobId,
        token: &LeaseToken,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.release(id, token, now).await,
            Backend::Postgres(l) => l.release(id, token, now).await,
        }
    }

    /// Gives back leased jobs that never started (a pool's lease-ahead buffer at shutdown, or a
    /// lease already expired when granted): `running → pending`, runnable now, the attempt taken
    /// back and nothing written to the history (no attempt ran). Fenced like every exit from
    /// `running`; returns how many were given back.
    pub async fn unlease(
        &self,
        jobs: &[(JobId, LeaseToken)],
        now: Timestamp,
    ) -> Result<u64, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.unlease(jobs, now).await,
            Backend::Postgres(l) => l.unlease(jobs, now).await,
        }
    }

    /// The earliest `run_at` of a job waiting to run (`None` = nothing waiting). Workers sleep
    /// until then instead of polling.
    pub async fn next_run_at(&self) -> Result<Option<Timestamp>, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.next_run_at().await,
            Backend::Postgres(l) => l.next_run_at().await,
        }
    }

    /// The earliest lease expiry among running jobs (`None` = nothing running).
    pub async fn next_lease_expiry(&self) -> Result<Option<Timestamp>, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.next_lease_expiry().await,
            Backend::Postgres(l) => l.next_lease_expiry().await,
        }
    }

    /// Ends the attempt a lease holder is running and reports the job's new state. A `Retry` of a
    /// job that has used all its attempts parks it `dead` (DESIGN §2: the decision is made when an
    /// attempt fails, never when leasing).
    ///
    /// # Errors
    /// [`LedgerError::LeaseLost`] if the lease expired and the job moved on: nothing changed.
    pub async fn finish(
        &self,
        id: JobId,
        token: &LeaseToken,
        finish: Finish,
        now: Timestamp,
    ) -> Result<JobState, LedgerError> {
        let completion = Completion {
            id,
            lease_token: token.clone(),
            finish,
        };
        let finished = self
            .finish_many(std::slice::from_ref(&completion), now)
            .await?;
        finished
            .first()
            .map(|f| f.state)
            .ok_or(LedgerError::LeaseLost(id))
    }

    /// Ends many attempts in one transaction. Returns the jobs that changed; a completion whose
    /// lease was lost is left out (and changed nothing).
    pub async fn finish_many(
        &self,
        completions: &[Completion],
        now: Timestamp,
    ) -> Result<Vec<Finished>, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.finish_many(completions, now).await,
            Backend::Postgres(l) => l.finish_many(completions, now).await,
        }
    }

    /// Ends `completions` and leases up to `lease.max` runnable jobs, in one transaction: one
    /// commit (one fsync under `synchronous=FULL`) for a worker pool's whole exchange with the
    /// ledger, however many jobs it ends and takes.
    pub async fn finish_and_lease(
        &self,
        completions: &[Completion],
        lease: LeaseParams<'_>,
        now: Timestamp,
    ) -> Result<(Vec<Finished>, Vec<LeasedJob>), LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.finish_and_lease(completions, lease, now).await,
            Backend::Postgres(l) => l.finish_and_lease(completions, lease, now).await,
        }
    }

    /// Reclaims every running job whose lease expired at or before `now`; they become runnable
    /// at once (`run_at = now`), or `dead` if out of attempts.
    pub async fn reclaim_expired(&self, now: Timestamp) -> Result<Reclaimed, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.reclaim_expired(now).await,
            Backend::Postgres(l) => l.reclaim_expired(now).await,
        }
    }

    /// Moves matching finished or retrying jobs back to `pending`, runnable now, keeping their
    /// attempt history. Never touches a running job, and never creates a second active job for a
    /// `(kind, key)`. `progress(done, total)` is called after each batch.
    pub async fn requeue(
        &self,
        request: &Requeue,
        now: Timestamp,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<RequeueReport, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.requeue(request, now, progress).await,
            Backend::Postgres(l) => l.requeue(request, now, progress).await,
        }
    }

    /// Cancels pending or retrying jobs; reports the ids it could not cancel and why.
    pub async fn cancel(&self, ids: &[JobId], now: Timestamp) -> Result<Cancelled, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.cancel(ids, now).await,
            Backend::Postgres(l) => l.cancel(ids, now).await,
        }
    }

    /// Deletes finished jobs (and their attempts) that finished before `cutoff`; `state` narrows
    /// it to one of `done`, `dead`, `cancelled`. `progress(deleted_so_far)` is called after each
    /// batch.
    pub async fn prune(
        &self,
        cutoff: Timestamp,
        state: Option<JobState>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Pruned, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.prune(cutoff, state, progress).await,
            Backend::Postgres(l) => l.prune(cutoff, state, progress).await,
        }
    }

    /// Gives the pages freed by deletions back to the file system, so the file shrinks: in
    /// batches of short write transactions (`PRAGMA incremental_vacuum`), then a WAL checkpoint.
    /// A ledger whose file cannot vacuum incrementally is rewritten only with [`Vacuum::Full`].
    pub async fn give_back_space(&self, vacuum: Vacuum) -> Result<Space, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.give_back_space(vacuum).await,
            Backend::Postgres(l) => l.give_back_space(vacuum).await,
        }
    }

    /// The ledger's size in bytes (0 if it cannot be read): the SQLite file without its WAL, or
    /// the PostgreSQL ledger's tables with their indexes.
    pub async fn file_size(&self) -> u64 {
        match &self.backend {
            Backend::Sqlite(l) => l.file_size(),
            Backend::Postgres(l) => l.ledger_size().await,
        }
    }

    /// Records that a cycle started on `peer`.
    pub async fn start_cycle(&self, peer: &str, now: Timestamp) -> Result<CycleId, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.start_cycle(peer, now).await,
            Backend::Postgres(l) => l.start_cycle(peer, now).await,
        }
    }

    /// Records how a cycle ended (`error` = why it stopped early, if it did).
    pub async fn finish_cycle(
        &self,
        id: CycleId,
        counts: CycleCounts,
        error: Option<&str>,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.finish_cycle(id, counts, error, now).await,
            Backend::Postgres(l) => l.finish_cycle(id, counts, error, now).await,
        }
    }

    /// When the most recent cycle finished (`None` = no cycle has finished yet).
    pub async fn last_cycle_finished_at(&self) -> Result<Option<Timestamp>, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.last_cycle_finished_at().await,
            Backend::Postgres(l) => l.last_cycle_finished_at().await,
        }
    }

    /// Deletes the records of cycles that started before `cutoff`, in short batches; returns
    /// how many.
    pub async fn prune_cycles(&self, cutoff: Timestamp) -> Result<u64, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.prune_cycles(cutoff).await,
            Backend::Postgres(l) => l.prune_cycles(cutoff).await,
        }
    }

    /// Whether `did` was deleted by its publisher as far as the ledger knows: a `delete` job, in
    /// any state, that was not refused — still running ([`Deletion::InProgress`]) or over.
    pub async fn deletion(&self, did: &str) -> Result<Deletion, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.deletion(did).await,
            Backend::Postgres(l) => l.deletion(did).await,
        }
    }

    /// The subset of `dids` whose [`Ledger::deletion`] is not [`Deletion::None`].
    pub async fn deleted_keys(&self, dids: &[String]) -> Result<HashSet<String>, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.deleted_keys(dids).await,
            Backend::Postgres(l) => l.deleted_keys(dids).await,
        }
    }

    /// Records that `system`'s circuit is open (or still open, with a newer reason).
    pub async fn record_circuit_open(
        &self,
        system: &str,
        reason: &str,
        since: Timestamp,
        next_probe_at: Timestamp,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => {
                l.record_circuit_open(system, reason, since, next_probe_at, now)
                    .await
            }
            Backend::Postgres(l) => {
                l.record_circuit_open(system, reason, since, next_probe_at, now)
                    .await
            }
        }
    }

    /// Records that `system`'s circuit closed; `None` forgets every circuit (a pool starting up
    /// has seen no failure yet).
    pub async fn record_circuit_closed(&self, system: Option<&str>) -> Result<(), LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.record_circuit_closed(system).await,
            Backend::Postgres(l) => l.record_circuit_closed(system).await,
        }
    }

    /// The open circuits, oldest first.
    pub async fn circuits(&self) -> Result<Vec<CircuitView>, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.circuits().await,
            Backend::Postgres(l) => l.circuits().await,
        }
    }

    /// How many entries `record_type`'s index on `peer` listed at its last good read (`None` =
    /// never read with entries).
    pub async fn index_entries_seen(
        &self,
        peer: &str,
        record_type: &str,
    ) -> Result<Option<i64>, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.index_entries_seen(peer, record_type).await,
            Backend::Postgres(l) => l.index_entries_seen(peer, record_type).await,
        }
    }

    /// Records a good read of `record_type`'s index on `peer` that listed `entries` entries.
    pub async fn record_index_read(
        &self,
        peer: &str,
        record_type: &str,
        entries: u64,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.record_index_read(peer, record_type, entries, now).await,
            Backend::Postgres(l) => l.record_index_read(peer, record_type, entries, now).await,
        }
    }

    /// Notes that a delete job removed one entry from `record_type`'s index on `peer`, so an
    /// index emptied by deletions (which OIP's relay then answers with 404) is not mistaken for
    /// one the relay gave up on.
    pub async fn record_index_removal(
        &self,
        peer: &str,
        record_type: &str,
    ) -> Result<(), LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.record_index_removal(peer, record_type).await,
            Backend::Postgres(l) => l.record_index_removal(peer, record_type).await,
        }
    }

    /// Jobs matching `filter`, newest first, each filter through an index (see `matching_ids`):
    /// the cost is the page asked for, not the ledger.
    pub async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<JobView>, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.list_jobs(filter).await,
            Backend::Postgres(l) => l.list_jobs(filter).await,
        }
    }

    /// The newest job of `(kind, key)`, in any state (`None` = the key never had one).
    pub async fn latest_job(
        &self,
        kind: JobKind,
        key: &str,
    ) -> Result<Option<JobView>, LedgerError> {
        let filter = JobFilter {
            state: None,
            kind: Some(kind),
            key: Some(key.to_string()),
            before: None,
            limit: 1,
        };
        Ok(self.list_jobs(&filter).await?.into_iter().next())
    }

    /// One job and its attempts, oldest attempt first (`None` = no such job).
    pub async fn get_job(
        &self,
        id: JobId,
    ) -> Result<Option<(JobView, Vec<AttemptView>)>, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.get_job(id).await,
            Backend::Postgres(l) => l.get_job(id).await,
        }
    }

    /// Counts by state and kind, the runnable backlog and the last `cycles` sync cycles.
    pub async fn stats(&self, now: Timestamp, cycles: u32) -> Result<Stats, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.stats(now, cycles).await,
            Backend::Postgres(l) => l.stats(now, cycles).await,
        }
    }

    /// The most recent sync cycles, newest first.
    pub async fn recent_cycles(&self, limit: u32) -> Result<Vec<CycleView>, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.recent_cycles(limit).await,
            Backend::Postgres(l) => l.recent_cycles(limit).await,
        }
    }

    /// The schema version: the newest migration applied (for `gunsync migrate`).
    pub async fn schema_version(&self) -> Result<i64, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.schema_version().await,
            Backend::Postgres(l) => l.schema_version().await,
        }
    }

    /// `Ok(())` when the database answers a query (for `/healthz`).
    pub async fn ping(&self) -> Result<(), LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.ping().await,
            Backend::Postgres(l) => l.ping().await,
        }
    }

    /// Jobs whose key does not start with `prefix` (the benchmark refuses to run in a ledger
    /// holding real work).
    pub async fn count_jobs_outside(&self, prefix: &str) -> Result<i64, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.count_jobs_outside(prefix).await,
            Backend::Postgres(l) => l.count_jobs_outside(prefix).await,
        }
    }

    /// Attempts that finished at or after `since`, counted per `bucket`, oldest bucket first
    /// (buckets with no attempt are absent).
    pub async fn throughput(
        &self,
        since: Timestamp,
        bucket: Bucket,
    ) -> Result<Vec<Throughput>, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.throughput(since, bucket).await,
            Backend::Postgres(l) => l.throughput(since, bucket).await,
        }
    }

    /// The newest `scan` dead jobs grouped by kind and reason (see [`DeadReason`]), largest
    /// group first.
    pub async fn dead_reasons(&self, scan: u32) -> Result<Vec<DeadReason>, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.dead_reasons(scan).await,
            Backend::Postgres(l) => l.dead_reasons(scan).await,
        }
    }

    /// Every dead job of `kind` whose reason (see [`DeadReason`]) is `reason` (`None`: no error
    /// recorded), newest first: what "requeue all of this reason" acts on.
    pub async fn dead_with_reason(
        &self,
        kind: JobKind,
        reason: Option<&str>,
    ) -> Result<Vec<JobId>, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.dead_with_reason(kind, reason).await,
            Backend::Postgres(l) => l.dead_with_reason(kind, reason).await,
        }
    }

    /// Runs one of [`OPERATOR_QUERIES`] on a reader and returns how many rows it gave.
    pub async fn run_operator_query(&self, sql: &'static str) -> Result<u64, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.run_operator_query(sql).await,
            Backend::Postgres(l) => l.run_operator_query(sql).await,
        }
    }

    /// Fills an empty ledger with `jobs` jobs shaped like a month of production: of every 100
    /// consecutive ids, 90 `done` (one in ten a deletion; every seventh needed two attempts),
    /// 3 `dead` after [`SCALE_MAX_ATTEMPTS`] attempts, 5 `retrying` deletions scheduled up to two
    /// hours from `now` (an Elasticsearch outage), 2 `pending` discovers runnable now. Finished
    /// jobs are spread over the 30 days before `now`, newest ids last, each attempt with its
    /// `job_attempts` row. Job `n` (0-based) has the key [`SCALE_KEY_PREFIX`]`<n>`; discovers
    /// carry revision `n`. The triggers keep `job_counts` as they do in production.
    /// Returns the number of attempt rows written.
    pub async fn populate_scale(
        &self,
        jobs: u64,
        now: Timestamp,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.populate_scale(jobs, now, progress).await,
            Backend::Postgres(l) => l.populate_scale(jobs, now, progress).await,
        }
    }
}
