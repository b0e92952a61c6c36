//! The lease loop: take free slots, lease that many jobs, run each in its own task. When nothing is
//! runnable it sleeps until the earliest `run_at`, a local enqueue (`wake`), or `max_idle` (to see
//! other processes' enqueues and requeues), whichever comes first. No busy polling.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use super::breaker::Transition;
use super::completer::Completer;
use super::execute::{Outcome, execute};
use super::{Registry, WorkerConfig, rescuer};
use crate::ledger::lease::LeaseParams;
use crate::ledger::{JobState, Ledger, LedgerError};
use crate::shutdown::Shutdown;
use crate::timestamp::Timestamp;

/// What a drain (`sync --once --wait`) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DrainReport {
    pub ran: u64,
    pub done: u64,
    pub retrying: u64,
    pub dead: u64,
    /// Given back without counting the attempt because a circuit opened.
    pub paused: u64,
    pub interrupted: u64,
}

#[derive(Default)]
struct Counters {
    ran: AtomicU64,
    done: AtomicU64,
    retrying: AtomicU64,
    dead: AtomicU64,
    paused: AtomicU64,
    interrupted: AtomicU64,
}

impl Counters {
    fn count(&self, outcome: Outcome) {
        self.ran.fetch_add(1, Ordering::Relaxed);
        let counter = match outcome {
            Outcome::Finished(JobState::Done) => &self.done,
            Outcome::Finished(JobState::Dead) => &self.dead,
            Outcome::Finished(JobState::Pending) => &self.paused,
            Outcome::Finished(_) => &self.retrying,
            Outcome::Released | Outcome::LeaseLost | Outcome::Unrecorded => &self.interrupted,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn report(&self) -> DrainReport {
        DrainReport {
            ran: self.ran.load(Ordering::Relaxed),
            done: self.done.load(Ordering::Relaxed),
            retrying: self.retrying.load(Ordering::Relaxed),
            dead: self.dead.load(Ordering::Relaxed),
            paused: self.paused.load(Ordering::Relaxed),
            interrupted: self.interrupted.load(Ordering::Relaxed),
        }
    }
}

/// N concurrent job slots over one ledger.
pub struct WorkerPool {
    ledger: Ledger,
    registry: Registry,
    config: Arc<WorkerConfig>,
    wake: Arc<Notify>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Until {
    Stopped,
    Idle,
}

impl WorkerPool {
    pub fn new(ledger: Ledger, registry: Registry, config: WorkerConfig) -> Self {
        WorkerPool {
            ledger,
            registry,
            config: Arc::new(config),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Call `notify_one()` on this after enqueueing, so the pool looks at the ledger at once.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Works jobs until `shutdown` stops it: then leases nothing more, lets running jobs finish
    /// within `shutdown_grace`, and releases what is still running after that.
    ///
    /// # Errors
    /// If the ledger fails at start-up, or turns out to be corrupt (the pool then stops as if
    /// shut down, and reports it); other ledger errors are logged and retried.
    pub async fn run(self, shutdown: Shutdown) -> Result<DrainReport, LedgerError> {
        self.work(shutdown, Until::Stopped).await
    }

    /// Works jobs until none is runnable now and none is running (`sync --once --wait`), or until
    /// `shutdown` stops it. An open circuit ends the drain too: the paused jobs wait for the
    /// daemon.
    pub async fn drain(self, shutdown: Shutdown) -> Result<DrainReport, LedgerError> {
        self.work(shutdown, Until::Idle).await
    }

    async fn work(self, shutdown: Shutdown, until: Until) -> Result<DrainReport, LedgerError> {
        rescuer::reclaim_once(&self.ledger, Timestamp::now()).await?;
        // A pool starting up has seen no failure yet: what an earlier process recorded is stale.
        if let Err(e) = self.ledger.record_circuit_closed(None).await {
            warn!(error = %e, "clearing recorded circuits failed");
        }
        let workers = self.config.workers.max(1);
        let breakers = self.config.breakers.clone();
        let slots = Arc::new(Semaphore::new(workers));
        let tracker = TaskTracker::new();
        let counters = Arc::new(Counters::default());
        let finished = Arc::new(Notify::new());
        let (completer, completer_task) = Completer::spawn(self.ledger.clone());
        let rescuer = tokio::spawn(rescue_loop(
            self.ledger.clone(),
            self.config.reclaim_every,
            shutdown.clone(),
        ));
        info!(workers, worker = %self.config.name, "worker pool started");

        let mut corrupt = None;
        loop {
            if shutdown.is_stopping() {
                break;
            }
            if let Some(problem) = self.ledger.health().corrupt {
                error!(error = %problem, "the ledger is corrupt; no more leases");
                corrupt = Some(problem);
                shutdown.stop();
                break;
            }
            if breakers.any_open() {
                let running = workers - slots.available_permits();
                if until == Until::Idle && running == 0 {
                    break;
                }
                let wait = breakers.next_probe_in().unwrap_or_default();
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.stopped() => break,
                }
                let changes = breakers.probe_due().await;
                mirror(&self.ledger, &changes).await;
                continue;
            }
            // Take a free slot before leasing, so a leased job never waits for one.
            let first = tokio::select! {
                permit = slots.clone().acquire_owned() => permit.expect("semaphore never closed"),
                _ = shutdown.stopped() => break,
            };
            let mut permits: Vec<OwnedSemaphorePermit> = vec![first];
            while let Ok(p) = slots.clone().try_acquire_owned() {
                permits.push(p);
            }
            // Register interest before looking, so a wake-up that arrives mid-query is not lost.
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let one_finished = finished.notified();
            tokio::pin!(one_finished);
            one_finished.as_mut().enable();

            let params = LeaseParams {
                max: permits.len() as u32,
                worker: &self.config.name,
                lease_for: self.config.lease_for,
            };
            let jobs = match self.ledger.lease(params, Timestamp::now()).await {
                Ok(jobs) => jobs,
                Err(e) => {
                    error!(error = %e, "leasing failed; retrying shortly");
                    drop(permits);
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.stopped() => break,
                    }
                    continue;
                }
            };
            let leased = jobs.len();
            for job in jobs {
                // A lease that is over before it starts (this host's clock jumped, or the
                // statement took longer than the lease) would let another worker take the job
                // while it runs here: give it back instead.
                if job.lease_expires_at <= Timestamp::now() {
                    warn!(job.id = %job.id, "lease already expired when granted; giving the job back");
                    if let Err(e) = self
                        .ledger
                        .release(job.id, &job.lease_token, Timestamp::now())
                        .await
                    {
                        warn!(job.id = %job.id, error = %e, "could not give the job back; its lease expires");
                    }
                    drop(permits.pop());
                    continue;
                }
                let permit = permits.pop().expect("one permit per leased job");
                let handler = job.kind().ok().and_then(|k| self.registry.get(k));
                let (ledger, completer, config, shutdown, counters, finished) = (
                    self.ledger.clone(),
                    completer.clone(),
                    self.config.clone(),
                    shutdown.clone(),
                    counters.clone(),
                    finished.clone(),
                );
                tracker.spawn(async move {
                    let outcome = execute(job, handler, ledger, completer, config, shutdown).await;
                    counters.count(outcome);
                    drop(permit);
                    finished.notify_one();
                });
            }
            drop(permits);
            if leased > 0 {
                continue;
            }
            // Nothing runnable now.
            let running = workers - slots.available_permits();
            if until == Until::Idle {
                if running == 0 {
                    break;
                }
                tokio::select! {
                    _ = one_finished => {}
                    _ = shutdown.stopped() => break,
                }
                continue;
            }
            let sleep = self.idle_sleep().await;
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = woken => {}
                _ = shutdown.stopped() => break,
            }
        }

        tracker.close();
        if !tracker.is_empty() {
            info!(
                running = tracker.len(),
                grace_ms = self.config.shutdown_grace.as_millis() as u64,
                "waiting for running jobs"
            );
            if tokio::time::timeout(self.config.shutdown_grace, tracker.wait())
                .await
                .is_err()
            {
                warn!(
                    running = tracker.len(),
                    "grace period over; releasing running jobs"
                );
                shutdown.cancel_running();
                tracker.wait().await;
            }
        }
        // Every job has recorded its result; the completer ends once its last handle is gone.
        drop(completer);
        let _ = completer_task.await;
        rescuer.abort();
        let report = counters.report();
        info!(
            ran = report.ran,
            done = report.done,
            retrying = report.retrying,
            dead = report.dead,
            paused = report.paused,
            "worker pool stopped"
        );
        match corrupt {
            Some(problems) => Err(LedgerError::Corrupt {
                path: self.ledger.path().display().to_string(),
                problems,
            }),
            None => Ok(report),
        }
    }

    /// How long to sleep when idle: until the earliest `run_at`, at most `max_idle`.
    async fn idle_sleep(&self) -> Duration {
        let cap = self.config.max_idle;
        match self.ledger.next_run_at().await {
            Ok(Some(at)) => at
                .since(Timestamp::now())
                .min(cap)
                .max(Duration::from_millis(5)),
            Ok(None) => cap,
            Err(e) => {
                warn!(error = %e, "reading the next run time failed");
                cap
            }
        }
    }
}

/// Mirrors circuit changes into the ledger, so `gunsync stats` in another process sees them.
pub(super) async fn mirror(ledger: &Ledger, transitions: &[Transition]) {
    for transition in transitions {
        let now = Timestamp::now();
        let result = match transition {
            Transition::Opened(c) => {
                ledger
                    .record_circuit_open(&c.system, &c.reason, c.since, c.next_probe_at, now)
                    .await
            }
            Transition::Closed(system) => ledger.record_circuit_closed(Some(system)).await,
        };
        if let Err(e) = result {
            warn!(error = %e, "recording a circuit change failed");
        }
    }
}

async fn rescue_loop(ledger: Ledger, every: Duration, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.stopped() => return,
        }
        if let Err(e) = rescuer::reclaim_once(&ledger, Timestamp::now()).await {
            warn!(error = %e, "reclaiming expired leases failed");
        }
    }
}
