//! Operators fix the ledger while the daemon runs (issue 5): `requeue` and `stats` from another
//! process beside a busy worker pool never surface "database is locked", and no job ever runs
//! twice at once.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use gunsync::ledger::{Backoff, JobKind, Ledger, LedgerOptions, NewJob, Synchronous, Uniqueness};
use gunsync::shutdown::Shutdown;
use gunsync::timestamp::Timestamp;
use gunsync::worker::{JobError, JobHandler, JobRun, Registry, WorkerConfig, WorkerPool};

use crate::helpers::{TestApp, eventually};

const JOBS: usize = 3000;
const ROUNDS: usize = 10;

/// What the handler saw: runs per job, and any job seen running twice at the same moment.
#[derive(Default)]
struct Probe {
    runs: Mutex<HashMap<i64, u64>>,
    in_flight: Mutex<HashSet<i64>>,
    overlaps: AtomicU64,
}

/// Succeeds after a moment of "work"; every tenth job fails permanently on its first attempt,
/// so there are dead jobs to requeue too.
struct CountingHandler(Arc<Probe>);

impl JobHandler for CountingHandler {
    fn run<'a>(&'a self, run: &'a JobRun) -> BoxFuture<'a, Result<(), JobError>> {
        async move {
            let id = run.job.id.0;
            if !self.0.in_flight.lock().unwrap().insert(id) {
                self.0.overlaps.fetch_add(1, Ordering::SeqCst);
            }
            *self.0.runs.lock().unwrap().entry(id).or_default() += 1;
            // Simulated work: keeps the job running long enough for an overlap to be seen.
            tokio::time::sleep(Duration::from_millis(1)).await;
            self.0.in_flight.lock().unwrap().remove(&id);
            if id % 10 == 0 && run.job.attempt == 1 {
                return Err(JobError::permanent(
                    "es answered 400: illegal_argument_exception",
                ));
            }
            Ok(())
        }
        .boxed()
    }
}

async fn active_jobs(ledger: &Ledger) -> i64 {
    let stats = ledger.stats(Timestamp::now(), 0).await.unwrap();
    ["pending", "running", "retrying"]
        .iter()
        .map(|s| stats.states[*s])
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeue_and_stats_beside_a_busy_worker_pool_never_lock_and_never_run_a_job_twice() {
    let app = TestApp::new();
    // The daemon's own handle on the ledger (synchronous=normal only to keep the test quick).
    let ledger =
        Ledger::open(LedgerOptions::new(app.db.to_str().unwrap()).synchronous(Synchronous::Normal))
            .await
            .unwrap();
    let jobs: Vec<NewJob> = (0..JOBS)
        .map(|i| NewJob::new(JobKind::Discover, format!("did:gun:daemon:{i}")))
        .collect();
    ledger
        .enqueue_many(&jobs, Uniqueness::Active, Timestamp::now())
        .await
        .unwrap();

    let probe = Arc::new(Probe::default());
    let registry = Registry::new().register(JobKind::Discover, CountingHandler(probe.clone()));
    let config = WorkerConfig {
        workers: 4,
        lease_for: Duration::from_secs(30),
        backoff: Backoff {
            base: Duration::from_millis(10),
            max: Duration::from_millis(100),
            jitter: 0.0,
        },
        max_idle: Duration::from_millis(50),
        name: "daemon:test".into(),
        ..WorkerConfig::default()
    };
    let shutdown = Shutdown::new();
    let pool =
        tokio::spawn(WorkerPool::new(ledger.clone(), registry, config).run(shutdown.clone()));

    // Start operating once the daemon is visibly busy, as an operator would.
    eventually(
        Duration::from_secs(60),
        "the pool to finish some jobs",
        || async {
            let done = ledger.stats(Timestamp::now(), 0).await.unwrap().states["done"];
            (done >= 50).then_some(())
        },
    )
    .await;

    let mut requeued_total = 0u64;
    for round in 0..ROUNDS {
        let state = if round % 2 == 0 { "done" } else { "dead" };
        // Both at once, from two processes, while the pool leases and finishes.
        let (requeue, stats) = tokio::join!(
            app.cli_async(["requeue", "--state", state, "--kind", "discover"]),
            app.cli_async(["stats", "--json"]),
        );
        for run in [&requeue, &stats] {
            assert_eq!(run.code, 0, "round {round}: {run:#?}");
            assert!(
                !run.stderr.to_lowercase().contains("locked")
                    && !run.stderr.to_lowercase().contains("busy"),
                "round {round}: {run:#?}"
            );
        }
        assert!(stats.json()["states"]["done"].is_i64());
        let moved = requeue
            .stdout
            .split_whitespace()
            .skip_while(|w| *w != "requeued")
            .nth(1)
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        requeued_total += moved;
    }
    assert!(
        requeued_total > 0,
        "the rounds requeued nothing; the test proved nothing"
    );

    eventually(Duration::from_secs(120), "the pool to drain", || async {
        (active_jobs(&ledger).await == 0).then_some(())
    })
    .await;
    shutdown.stop();
    pool.await.unwrap().unwrap();

    assert_eq!(
        probe.overlaps.load(Ordering::SeqCst),
        0,
        "a job ran twice at the same time"
    );
    // Every run the handler saw is one attempt in the ledger, and no attempt is unaccounted for.
    let mut conn = app.sql().await;
    let attempts: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT job_id, count(*) FROM job_attempts WHERE outcome IN ('done', 'dead', 'retry')
         GROUP BY job_id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let attempts: HashMap<i64, u64> = attempts.into_iter().map(|(id, n)| (id, n as u64)).collect();
    let runs = probe.runs.lock().unwrap().clone();
    assert_eq!(runs.len(), JOBS);
    assert_eq!(
        runs, attempts,
        "handler runs per job = attempts recorded per job"
    );
    let total_runs: u64 = runs.values().sum();
    assert!(total_runs as usize > JOBS, "requeued jobs ran again");
    ledger.close().await;
}
