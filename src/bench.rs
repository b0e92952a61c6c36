//! `gunsync bench`: measures the ledger (enqueue, lease+complete at several batch sizes, under
//! `synchronous` FULL and NORMAL) and the worker pool end to end; `sync` and `soak` (submodules)
//! measure a sync cycle and the daemon over time against the emulators. Prints numbers.

pub mod scale;
pub mod scenario;
pub mod soak;
pub mod sync;

use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;

use crate::ledger::lease::LeaseParams;
use crate::ledger::{
    Completion, Finish, JobKind, Ledger, LedgerError, LedgerOptions, NewJob, Synchronous,
    Uniqueness,
};
use crate::shutdown::Shutdown;
use crate::timestamp::Timestamp;
use crate::worker::{
    DrainReport, JobError, JobHandler, JobRun, Registry, WorkerConfig, WorkerPool,
};

/// Keys of benchmark jobs start with this, so a benchmark never mistakes real work for its own.
pub const BENCH_KEY_PREFIX: &str = "bench:";

/// One measured phase.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseResult {
    pub phase: &'static str,
    pub batch: u32,
    pub synchronous: Synchronous,
    pub jobs: u64,
    pub seconds: f64,
    pub jobs_per_sec: f64,
}

/// The `bench ledger` report (DESIGN §6).
#[derive(Clone, Debug, Serialize)]
pub struct LedgerBench {
    pub jobs: u64,
    pub results: Vec<PhaseResult>,
}

/// Where a benchmark puts its ledgers: a fresh temporary file per phase, or one given file.
#[derive(Clone, Debug)]
pub enum BenchDatabase {
    Temporary,
    Path(String),
}

/// Batch sizes measured for lease+complete (batch 1 runs on fewer jobs: it is commit-bound).
const LEASE_BATCHES: [u32; 3] = [1, 100, 1000];
const BATCH_ONE_MAX_JOBS: u64 = 2000;

pub async fn ledger_bench(
    jobs: u64,
    database: &BenchDatabase,
    mut progress: impl FnMut(&PhaseResult),
) -> Result<LedgerBench, LedgerError> {
    let mut results = Vec::new();
    for synchronous in [Synchronous::Full, Synchronous::Normal] {
        for (batch, n) in [(1u32, jobs.min(BATCH_ONE_MAX_JOBS)), (1000, jobs)] {
            let (_dir, ledger) = open(database, synchronous).await?;
            let result = enqueue_phase(&ledger, n, batch, synchronous).await?;
            progress(&result);
            results.push(result);
            ledger.close().await;
        }
        for batch in LEASE_BATCHES {
            let n = if batch == 1 {
                jobs.min(BATCH_ONE_MAX_JOBS)
            } else {
                jobs
            };
            let (_dir, ledger) = open(database, synchronous).await?;
            enqueue(&ledger, n, 2000).await?;
            let result = lease_complete_phase(&ledger, n, batch, synchronous).await?;
            progress(&result);
            results.push(result);
            ledger.close().await;
        }
    }
    Ok(LedgerBench { jobs, results })
}

async fn open(
    database: &BenchDatabase,
    synchronous: Synchronous,
) -> Result<(Option<tempfile::TempDir>, Ledger), LedgerError> {
    let (dir, path) = match database {
        BenchDatabase::Temporary => {
            let dir = tempfile::tempdir().map_err(|e| LedgerError::Invalid {
                what: "temporary directory",
                reason: e.to_string(),
            })?;
            let path = dir.path().join("bench.db").to_string_lossy().into_owned();
            (Some(dir), path)
        }
        BenchDatabase::Path(path) => (None, path.clone()),
    };
    let ledger = Ledger::open(LedgerOptions::new(path).synchronous(synchronous)).await?;
    if let BenchDatabase::Path(path) = database {
        refuse_real_work(&ledger, path).await?;
        // A given database is reused across phases: start each phase empty.
        ledger.prune(Timestamp::MAX, None, &mut |_| {}).await?;
        let leftover = ledger.count_jobs_outside("").await?;
        if leftover > 0 {
            return Err(LedgerError::Invalid {
                what: "benchmark database",
                reason: format!(
                    "{path} still holds {leftover} unfinished benchmark jobs; use a fresh file"
                ),
            });
        }
    }
    Ok((dir, ledger))
}

async fn refuse_real_work(ledger: &Ledger, path: &str) -> Result<(), LedgerError> {
    let foreign = ledger.count_jobs_outside(BENCH_KEY_PREFIX).await?;
    if foreign > 0 {
        return Err(LedgerError::Invalid {
            what: "benchmark database",
            reason: format!("{path} holds {foreign} real jobs; benchmark a scratch file instead"),
        });
    }
    Ok(())
}

fn bench_jobs(range: std::ops::Range<u64>) -> Vec<NewJob> {
    range
        .map(|i| NewJob::new(JobKind::Discover, format!("{BENCH_KEY_PREFIX}{i}")))
        .collect()
}

async fn enqueue(ledger: &Ledger, n: u64, batch: u64) -> Result<(), LedgerError> {
    let mut start = 0;
    while start < n {
        let end = (start + batch).min(n);
        ledger
            .enqueue_many(
                &bench_jobs(start..end),
                Uniqueness::Active,
                Timestamp::now(),
            )
            .await?;
        start = end;
    }
    Ok(())
}

async fn enqueue_phase(
    ledger: &Ledger,
    n: u64,
    batch: u32,
    synchronous: Synchronous,
) -> Result<PhaseResult, LedgerError> {
    let started = Instant::now();
    if batch == 1 {
        for job in bench_jobs(0..n) {
            ledger.enqueue(&job, Timestamp::now()).await?;
        }
    } else {
        enqueue(ledger, n, u64::from(batch)).await?;
    }
    Ok(result("enqueue", batch, synchronous, n, started.elapsed()))
}

async fn lease_complete_phase(
    ledger: &Ledger,
    n: u64,
    batch: u32,
    synchronous: Synchronous,
) -> Result<PhaseResult, LedgerError> {
    let started = Instant::now();
    let mut completed = 0;
    loop {
        let params = LeaseParams {
            max: batch,
            worker: "bench",
            lease_for: Duration::from_secs(60),
        };
        let leased = ledger.lease(params, Timestamp::now()).await?;
        if leased.is_empty() {
            break;
        }
        let completions: Vec<Completion> =
            leased.iter().map(|j| j.completion(Finish::Done)).collect();
        completed += ledger
            .finish_many(&completions, Timestamp::now())
            .await?
            .len() as u64;
    }
    debug_assert_eq!(completed, n);
    Ok(result(
        "lease_complete",
        batch,
        synchronous,
        completed,
        started.elapsed(),
    ))
}

fn result(
    phase: &'static str,
    batch: u32,
    synchronous: Synchronous,
    jobs: u64,
    elapsed: Duration,
) -> PhaseResult {
    let seconds = elapsed.as_secs_f64();
    PhaseResult {
        phase,
        batch,
        synchronous,
        jobs,
        seconds,
        jobs_per_sec: (jobs as f64 / seconds.max(1e-9)).round(),
    }
}

/// The `bench worker` report.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerBench {
    pub jobs: u64,
    pub workers: usize,
    pub job_ms: u64,
    pub seconds: f64,
    pub jobs_per_sec: f64,
    pub report: DrainReport,
}

/// Runs `jobs` benchmark jobs (each sleeps `job_time`) through the real worker pool until none
/// is runnable. Re-running on the same database resumes: existing benchmark keys are not
/// enqueued again, and expired leases (from a killed run) are reclaimed.
pub async fn worker_bench(
    ledger: Ledger,
    jobs: u64,
    job_time: Duration,
    config: WorkerConfig,
    shutdown: Shutdown,
) -> Result<WorkerBench, LedgerError> {
    enqueue_worker_jobs(&ledger, jobs).await?;
    let workers = config.workers;
    let registry = Registry::new().register(JobKind::Discover, SleepHandler(job_time));
    let started = Instant::now();
    let report = WorkerPool::new(ledger, registry, config)
        .drain(shutdown)
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(WorkerBench {
        jobs,
        workers,
        job_ms: job_time.as_millis() as u64,
        seconds,
        jobs_per_sec: (report.ran as f64 / seconds.max(1e-9)).round(),
        report,
    })
}

/// Enqueues the `bench worker` jobs that are not in the ledger yet (a resumed run, or the
/// processes of `--processes` finding them enqueued), refusing a ledger with real work.
pub async fn enqueue_worker_jobs(ledger: &Ledger, jobs: u64) -> Result<(), LedgerError> {
    refuse_real_work(ledger, &ledger.location()).await?;
    let mut start = 0;
    while start < jobs {
        let end = (start + 2000).min(jobs);
        ledger
            .enqueue_many(&bench_jobs(start..end), Uniqueness::Ever, ledger.now())
            .await?;
        start = end;
    }
    Ok(())
}

struct SleepHandler(Duration);

impl JobHandler for SleepHandler {
    fn run<'a>(&'a self, _run: &'a JobRun) -> BoxFuture<'a, Result<(), JobError>> {
        async move {
            if !self.0.is_zero() {
                tokio::time::sleep(self.0).await;
            }
            Ok(())
        }
        .boxed()
    }
}
