//! The worker pool: leases jobs from the ledger in batches, runs each with the handler registered
//! for its kind, and turns the result into a ledger transition. It owns no state of its own: the
//! ledger is the only source of truth.
//!
//! * `pool`: slots, the dispatcher (one transaction writes the ended attempts and leases the
//!   next jobs, ahead of need), wake-ups, graceful shutdown.
//! * `execute`: one job → one `Finish` (`decide` is pure and table-tested), heartbeats.
//! * `rescuer`: reclaims expired leases at start-up and on a timer.
//! * `breaker`: circuits of the systems jobs need; open ones pause leasing.

pub mod breaker;
mod execute;
mod pool;
mod rescuer;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::ledger::{Backoff, JobKind, LeasedJob, Ledger, LedgerError};

pub use breaker::Breakers;
pub use execute::decide;

/// Jobs a pool leases ahead per slot: enough that one transaction ends and leases a batch,
/// little enough that a node holds few jobs it is not running (another node could run them).
pub const PREFETCH_PER_WORKER: usize = 4;

/// Longest one attempt may run by default (`GUNSYNC_JOB_DEADLINE_MS`): well under the default
/// lease × attempts (12 min), far over what a healthy record needs (seconds).
pub const DEFAULT_JOB_DEADLINE: Duration = Duration::from_secs(300);
pub use pool::{DrainReport, WorkerPool};
pub use rescuer::reclaim_once;

/// How a handler failed. The contract between handlers and the worker: transient errors retry on
/// the backoff, permanent errors park the job `dead` at once with the reason, systemic errors
/// give the job back without counting the attempt and open `system`'s circuit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    #[error("{reason}")]
    Transient {
        reason: String,
        /// A peer's `Retry-After`: the next attempt waits at least this long.
        retry_after: Option<Duration>,
        http_status: Option<u16>,
    },
    #[error("{reason}")]
    Permanent {
        reason: String,
        http_status: Option<u16>,
    },
    /// The failure is the configuration's or the cluster's, not the job's (a wrong password, a
    /// cluster refusing connections): every job would fail the same way.
    #[error("{reason}")]
    Systemic {
        system: &'static str,
        reason: String,
        http_status: Option<u16>,
    },
}

impl JobError {
    pub fn transient(reason: impl Into<String>) -> Self {
        JobError::Transient {
            reason: reason.into(),
            retry_after: None,
            http_status: None,
        }
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        JobError::Permanent {
            reason: reason.into(),
            http_status: None,
        }
    }

    /// What went wrong, as it will be stored in `last_error`.
    pub fn reason(&self) -> &str {
        match self {
            JobError::Transient { reason, .. }
            | JobError::Permanent { reason, .. }
            | JobError::Systemic { reason, .. } => reason,
        }
    }

    /// The same error with its reason rewritten (to add context).
    pub fn map_reason(mut self, f: impl FnOnce(String) -> String) -> Self {
        let reason = match &mut self {
            JobError::Transient { reason, .. }
            | JobError::Permanent { reason, .. }
            | JobError::Systemic { reason, .. } => reason,
        };
        *reason = f(std::mem::take(reason));
        self
    }

    pub fn http_status(&self) -> Option<u16> {
        match self {
            JobError::Transient { http_status, .. }
            | JobError::Permanent { http_status, .. }
            | JobError::Systemic { http_status, .. } => *http_status,
        }
    }
}

/// A leased job as a handler sees it: the row, plus the one write a handler may make while it
/// runs (saving progress into the payload, fenced by the lease).
pub struct JobRun {
    pub job: LeasedJob,
    ledger: Ledger,
}

impl JobRun {
    pub fn new(job: LeasedJob, ledger: Ledger) -> Self {
        JobRun { job, ledger }
    }

    /// Saves `payload` as the job's payload, so a later attempt sees what this one learned.
    ///
    /// # Errors
    /// Transient if the ledger is unreachable or the lease was lost (the job will run again).
    pub async fn save_payload(&self, payload: &Value) -> Result<(), JobError> {
        self.ledger
            .set_payload(
                self.job.id,
                &self.job.lease_token,
                payload,
                self.ledger.now(),
            )
            .await
            .map_err(|e: LedgerError| {
                JobError::transient(format!("save payload of job {}: {e}", self.job.id))
            })
    }
}

/// Runs jobs of one kind.
pub trait JobHandler: Send + Sync + 'static {
    /// Does the job. Must be idempotent: a job may run again after a crash or lease expiry.
    fn run<'a>(&'a self, run: &'a JobRun) -> BoxFuture<'a, Result<(), JobError>>;
}

/// Handlers by job kind.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<JobKind, Arc<dyn JobHandler>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(mut self, kind: JobKind, handler: impl JobHandler) -> Self {
        self.handlers.insert(kind, Arc::new(handler));
        self
    }

    fn get(&self, kind: JobKind) -> Option<Arc<dyn JobHandler>> {
        self.handlers.get(&kind).cloned()
    }
}

/// How the pool runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Concurrent jobs (GUNSYNC_WORKERS).
    pub workers: usize,
    /// Jobs leased ahead of the free slots, so a slot that frees up starts the next job without
    /// waiting for a commit, and one transaction serves many jobs.
    pub prefetch: usize,
    /// Lease length (GUNSYNC_LEASE_MS); jobs running past half of it heartbeat.
    pub lease_for: Duration,
    /// Retry schedule (GUNSYNC_BACKOFF_BASE_MS / GUNSYNC_BACKOFF_MAX_MS).
    pub backoff: Backoff,
    /// Per-kind overrides of `backoff`.
    pub backoff_by_kind: HashMap<JobKind, Backoff>,
    /// Longest sleep between looks at the ledger, so jobs enqueued or requeued by another
    /// process are noticed within this time.
    pub max_idle: Duration,
    /// How often expired leases are reclaimed.
    pub reclaim_every: Duration,
    /// How long running jobs may take to finish after a stop before they are interrupted.
    pub shutdown_grace: Duration,
    /// Longest one attempt may run (heartbeats included): past it the job is `dead`, so a job
    /// cannot hold a slot forever.
    pub job_deadline: Duration,
    /// The circuits of the systems jobs need; while one is open the pool leases nothing.
    pub breakers: Arc<Breakers>,
    /// Name shown as `leased_by`.
    pub name: String,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            workers: 4,
            prefetch: 4 * PREFETCH_PER_WORKER,
            lease_for: Duration::from_secs(60),
            backoff: Backoff::default(),
            backoff_by_kind: HashMap::new(),
            max_idle: Duration::from_secs(2),
            reclaim_every: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(25),
            job_deadline: DEFAULT_JOB_DEADLINE,
            breakers: Arc::default(),
            name: format!("{}:{}", hostname(), std::process::id()),
        }
    }
}

impl WorkerConfig {
    fn backoff_for(&self, kind: Option<JobKind>) -> Backoff {
        kind.and_then(|k| self.backoff_by_kind.get(&k).copied())
            .unwrap_or(self.backoff)
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gunsync".into())
}
