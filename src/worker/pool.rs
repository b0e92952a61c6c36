//! The pool: N slots and one dispatcher. The dispatcher is the pool's only writer: in one
//! transaction it ends the attempts that finished and leases what the slots and a small
//! lease-ahead buffer need (`Ledger::finish_and_lease`), so under `synchronous=FULL` one fsync
//! serves many jobs. A slot that frees up starts the next buffered job at once, never waiting for
//! a commit; buffered leases are long enough to cover their wait, and their first heartbeat
//! comes half a lease before they would expire. When nothing is runnable the dispatcher sleeps
//! until the earliest `run_at`, a local enqueue (`wake`), or `max_idle` (to see other processes'
//! enqueues and requeues), whichever comes first. No busy polling.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use super::breaker::Transition;
use super::execute::{Ran, execute, report};
use super::{Registry, WorkerConfig, rescuer};
use crate::ledger::lease::LeaseParams;
use crate::ledger::{Completion, Finish, JobState, LeasedJob, Ledger, LedgerError};
use crate::shutdown::Shutdown;

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

impl DrainReport {
    fn count(&mut self, state: Option<JobState>) {
        self.ran += 1;
        match state {
            Some(JobState::Done) => self.done += 1,
            Some(JobState::Dead) => self.dead += 1,
            Some(JobState::Pending) => self.paused += 1,
            Some(_) => self.retrying += 1,
            None => self.interrupted += 1,
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

/// An attempt that ended, waiting for the transaction that writes it.
struct Ended {
    job: LeasedJob,
    finish: Finish,
    elapsed: Duration,
}

/// The dispatcher's view of its jobs.
struct Dispatch {
    /// Jobs leased and not reported back yet: waiting in the queue for a slot, or running.
    outstanding: usize,
    /// Attempts that ended and are not written yet.
    ended: Vec<Ended>,
    /// Whether the last lease got all it asked for (so more may be runnable now).
    more_runnable: bool,
    report: DrainReport,
}

/// The queue slots take jobs from: the dispatcher fills it, each slot takes the next job as soon
/// as it is free.
type Queue = Arc<tokio::sync::Mutex<mpsc::Receiver<LeasedJob>>>;

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

    /// Works jobs until `shutdown` stops it: then leases nothing more, gives back the jobs leased
    /// ahead, lets running jobs finish within `shutdown_grace`, and releases what is still
    /// running after that.
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
        rescuer::reclaim_once(&self.ledger, self.ledger.now()).await?;
        // A pool starting up has seen no failure yet: what an earlier process recorded is stale.
        if let Err(e) = self.ledger.record_circuit_closed(None).await {
            warn!(error = %e, "clearing recorded circuits failed");
        }
        let workers = self.config.workers.max(1);
        let window = workers + self.config.prefetch;
        let (results, mut ran) = mpsc::unbounded_channel::<Ran>();
        let (queue_tx, queue_rx) = mpsc::channel::<LeasedJob>(window);
        let queue: Queue = Arc::new(tokio::sync::Mutex::new(queue_rx));
        let tracker = TaskTracker::new();
        for _ in 0..workers {
            tracker.spawn(slot(
                queue.clone(),
                self.registry.clone(),
                self.ledger.clone(),
                self.config.clone(),
                shutdown.clone(),
                results.clone(),
            ));
        }
        drop(results);
        let rescuer = tokio::spawn(rescue_loop(
            self.ledger.clone(),
            self.config.reclaim_every,
            shutdown.clone(),
        ));
        info!(workers, prefetch = self.config.prefetch, worker = %self.config.name, "worker pool started");
        let mut d = Dispatch {
            outstanding: 0,
            ended: Vec::new(),
            more_runnable: true,
            report: DrainReport::default(),
        };
        let mut corrupt = None;

        loop {
            while let Ok(r) = ran.try_recv() {
                d.collect(r);
            }
            if shutdown.is_stopping() {
                break;
            }
            if let Some(problem) = self.ledger.health().corrupt {
                error!(error = %problem, "the ledger is corrupt; no more leases");
                corrupt = Some(problem);
                shutdown.stop();
                break;
            }
            let breakers = &self.config.breakers;
            let want = if breakers.any_open() {
                0
            } else {
                window.saturating_sub(d.outstanding)
            };
            let lease = if d.more_runnable { want } else { 0 };
            if d.ended.is_empty() && lease == 0 {
                // Nothing to write: wait for a job to end, a wake-up, a timer or a stop.
                if d.outstanding == 0
                    && until == Until::Idle
                    && (!d.more_runnable || breakers.any_open())
                {
                    break;
                }
                let sleep = if breakers.any_open() {
                    breakers.next_probe_in().unwrap_or_default()
                } else if want > 0 {
                    self.idle_sleep().await
                } else {
                    Duration::MAX
                };
                // Interest before the wait, so a wake-up that comes meanwhile is not lost.
                let woken = self.wake.notified();
                tokio::pin!(woken);
                woken.as_mut().enable();
                tokio::select! {
                    Some(r) = ran.recv() => d.collect(r),
                    _ = woken => d.more_runnable = true,
                    _ = sleep_for(sleep) => d.more_runnable = true,
                    _ = shutdown.stopped() => break,
                }
                if breakers.any_open() && breakers.next_probe_in() == Some(Duration::ZERO) {
                    let changes = breakers.probe_due().await;
                    mirror(&self.ledger, &changes).await;
                }
                continue;
            }
            match self.commit(&mut d, lease).await {
                Ok(leased) => {
                    d.outstanding += leased.len();
                    for job in leased {
                        // The queue holds a whole window, so this never waits.
                        if queue_tx.send(job).await.is_err() {
                            break;
                        }
                    }
                }
                Err(e) => {
                    error!(error = %e, "writing job results and leases failed; retrying shortly");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.stopped() => break,
                    }
                }
            }
        }

        // Leased ahead but never started: back to pending, nothing burned or recorded. Closing
        // the queue ends the slots waiting on it; after a stop they take no job, so what is in
        // the queue now stays there.
        drop(queue_tx);
        let never_started: Vec<_> = {
            let mut queue = queue.lock().await;
            let mut jobs = Vec::new();
            while let Ok(job) = queue.try_recv() {
                jobs.push((job.id, job.lease_token));
            }
            jobs
        };
        d.outstanding -= never_started.len();
        if let Err(e) = self.ledger.unlease(&never_started, self.ledger.now()).await {
            warn!(error = %e, jobs = never_started.len(), "could not give back jobs leased ahead; their leases will expire");
        }
        self.finish_running(&mut d, &mut ran, &tracker, &shutdown)
            .await;
        rescuer.abort();
        let report = d.report;
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
                path: self.ledger.location(),
                problems,
            }),
            None => Ok(report),
        }
    }

    /// One transaction: write every ended attempt and lease up to `lease` more jobs, returned
    /// for the queue. On failure nothing changed and the ended attempts stay for the next try
    /// (their leases are safe until they expire; after that the job is run again, which every
    /// handler allows).
    async fn commit(&self, d: &mut Dispatch, lease: usize) -> Result<Vec<LeasedJob>, LedgerError> {
        let completions: Vec<Completion> = d
            .ended
            .iter()
            .map(|e| e.job.completion(e.finish.clone()))
            .collect();
        let params = LeaseParams {
            max: u32::try_from(lease).unwrap_or(u32::MAX),
            worker: &self.config.name,
            lease_for: self.config.lease_for,
        };
        let (finished, leased) = self
            .ledger
            .finish_and_lease(&completions, params, self.ledger.now())
            .await?;
        for ended in d.ended.drain(..) {
            let state = finished
                .iter()
                .find(|f| f.id == ended.job.id)
                .map(|f| f.state);
            report(&ended.job, &ended.finish, ended.elapsed, state);
            d.report.count(state);
        }
        d.more_runnable = lease > 0 && leased.len() == lease;
        let now = self.ledger.now();
        let (fresh, stale): (Vec<_>, Vec<_>) =
            leased.into_iter().partition(|j| j.lease_expires_at > now);
        if !stale.is_empty() {
            // Over before it started (this host's clock jumped, or the statement outlasted the
            // lease): another worker could take the job while it ran here.
            warn!(
                jobs = stale.len(),
                "leases already expired when granted; giving them back"
            );
            let stale: Vec<_> = stale.into_iter().map(|j| (j.id, j.lease_token)).collect();
            self.ledger.unlease(&stale, now).await?;
        }
        Ok(fresh)
    }

    /// After a stop: let running jobs finish within the grace period (writing their results as
    /// they come), then ask the rest to give their leases back, and write what is left.
    async fn finish_running(
        &self,
        d: &mut Dispatch,
        ran: &mut mpsc::UnboundedReceiver<Ran>,
        tracker: &TaskTracker,
        shutdown: &Shutdown,
    ) {
        tracker.close();
        if d.outstanding > 0 {
            info!(
                running = d.outstanding,
                grace_ms = self.config.shutdown_grace.as_millis() as u64,
                "waiting for running jobs"
            );
        }
        let grace = tokio::time::sleep(self.config.shutdown_grace);
        tokio::pin!(grace);
        let mut cancelled = false;
        while d.outstanding > 0 || !d.ended.is_empty() {
            if !d.ended.is_empty() {
                if let Err(e) = self.commit(d, 0).await {
                    warn!(error = %e, "writing job results failed; their leases will expire");
                    d.ended.clear();
                }
                continue;
            }
            tokio::select! {
                Some(r) = ran.recv() => d.collect(r),
                _ = &mut grace, if !cancelled => {
                    warn!(running = d.outstanding, "grace period over; releasing running jobs");
                    shutdown.cancel_running();
                    cancelled = true;
                }
            }
        }
        tracker.wait().await;
    }

    /// How long to sleep when idle: until the earliest `run_at`, at most `max_idle`.
    async fn idle_sleep(&self) -> Duration {
        let cap = self.config.max_idle;
        match self.ledger.next_run_at().await {
            Ok(Some(at)) => at
                .since(self.ledger.now())
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

impl Dispatch {
    fn collect(&mut self, ran: Ran) {
        self.outstanding -= 1;
        match ran {
            Ran::Ended {
                job,
                finish,
                elapsed,
            } => self.ended.push(Ended {
                job,
                finish,
                elapsed,
            }),
            Ran::Released | Ran::LeaseLost | Ran::Unrecorded => self.report.count(None),
        }
    }
}

/// One slot: takes the next job from the queue as soon as it is free, runs it, reports its end.
/// Takes no job after a stop (running jobs still finish).
async fn slot(
    queue: Queue,
    registry: Registry,
    ledger: Ledger,
    config: Arc<WorkerConfig>,
    shutdown: Shutdown,
    results: mpsc::UnboundedSender<Ran>,
) {
    loop {
        let job = {
            let mut queue = queue.lock().await;
            tokio::select! {
                biased;
                _ = shutdown.stopped() => return,
                job = queue.recv() => job,
            }
        };
        let Some(job) = job else { return };
        let handler = job.kind().ok().and_then(|k| registry.get(k));
        let ran = execute(
            job,
            handler,
            ledger.clone(),
            config.clone(),
            shutdown.clone(),
        )
        .await;
        if results.send(ran).is_err() {
            return;
        }
    }
}

/// `tokio::time::sleep` that treats `Duration::MAX` as "never".
async fn sleep_for(duration: Duration) {
    if duration == Duration::MAX {
        std::future::pending::<()>().await
    } else {
        tokio::time::sleep(duration).await
    }
}

/// Mirrors circuit changes into the ledger, so `gunsync stats` in another process sees them.
pub(super) async fn mirror(ledger: &Ledger, transitions: &[Transition]) {
    for transition in transitions {
        let now = ledger.now();
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
        if let Err(e) = rescuer::reclaim_once(&ledger, ledger.now()).await {
            warn!(error = %e, "reclaiming expired leases failed");
        }
        // Lease times come from the database's clock on PostgreSQL: follow it if ours steps.
        if let Err(e) = ledger.sync_clock().await {
            warn!(error = %e, "reading the database clock failed");
        }
    }
}
