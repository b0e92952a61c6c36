//! Specifications of the worker pool, run in-process against a real ledger file.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use gunsync::ledger::{Backoff, JobId, JobKind, Ledger, LedgerOptions, NewJob, Uniqueness};
use gunsync::shutdown::Shutdown;
use gunsync::timestamp::Timestamp;
use gunsync::worker::{JobError, JobHandler, JobRun, Registry, WorkerConfig, WorkerPool};

async fn ledger() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("worker.db");
    let ledger = Ledger::open(LedgerOptions::new(path.to_str().unwrap()))
        .await
        .unwrap();
    (dir, ledger)
}

fn config() -> WorkerConfig {
    WorkerConfig {
        workers: 4,
        lease_for: Duration::from_secs(30),
        backoff: Backoff {
            base: Duration::from_millis(20),
            max: Duration::from_millis(100),
            jitter: 0.0,
        },
        max_idle: Duration::from_millis(200),
        reclaim_every: Duration::from_millis(100),
        shutdown_grace: Duration::from_secs(10),
        ..WorkerConfig::default()
    }
}

/// A handler whose behaviour per key is scripted by a closure.
struct Scripted<F>(F);

impl<F> JobHandler for Scripted<F>
where
    F: Fn(&JobRun) -> BoxFuture<'static, Result<(), JobError>> + Send + Sync + 'static,
{
    fn run<'a>(&'a self, run: &'a JobRun) -> BoxFuture<'a, Result<(), JobError>> {
        (self.0)(run)
    }
}

async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn state(ledger: &Ledger, id: JobId) -> (String, i64, Option<String>) {
    let (job, _) = ledger.get_job(id).await.unwrap().unwrap();
    (job.state, job.attempts, job.last_error)
}

#[tokio::test]
async fn a_panicking_handler_fails_its_job_and_the_pool_keeps_working() {
    let (_dir, ledger) = ledger().await;
    let now = Timestamp::now();
    let bad = ledger
        .enqueue(
            &NewJob::new(JobKind::Discover, "panics").max_attempts(2),
            now,
        )
        .await
        .unwrap()
        .id();
    let good = ledger
        .enqueue(&NewJob::new(JobKind::Discover, "fine"), now)
        .await
        .unwrap()
        .id();
    let handler = Scripted(|run: &JobRun| {
        let key = run.job.key.clone();
        async move {
            if key == "panics" {
                panic!("handler bug for {key}");
            }
            Ok(())
        }
        .boxed()
    });
    let pool = WorkerPool::new(
        ledger.clone(),
        Registry::new().register(JobKind::Discover, handler),
        config(),
    );
    let shutdown = Shutdown::new();
    let running = tokio::spawn(pool.run(shutdown.clone()));
    eventually("the panicking job to die", || async {
        state(&ledger, bad).await.0 == "dead"
    })
    .await;
    shutdown.stop();
    let report = running.await.unwrap().unwrap();
    assert_eq!((report.done, report.retrying, report.dead), (1, 1, 1));
    assert_eq!(state(&ledger, good).await.0, "done");
    let (bad_state, attempts, error) = state(&ledger, bad).await;
    assert_eq!(
        (bad_state.as_str(), attempts),
        ("dead", 2),
        "a panic is a transient failure: retried, then dead"
    );
    assert!(
        error
            .unwrap()
            .contains("handler panicked: handler bug for panics")
    );
}

#[tokio::test]
async fn transient_errors_follow_the_backoff_and_end_dead_after_max_attempts() {
    let (_dir, ledger) = ledger().await;
    let id = ledger
        .enqueue(
            &NewJob::new(JobKind::Delete, "did:gun:x:1").max_attempts(4),
            Timestamp::now(),
        )
        .await
        .unwrap()
        .id();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let handler = Scripted(move |_run: &JobRun| {
        seen.lock().unwrap().push(Instant::now());
        async {
            Err(JobError::Transient {
                reason: "es answered 500".into(),
                retry_after: None,
                http_status: Some(500),
            })
        }
        .boxed()
    });
    let pool = WorkerPool::new(
        ledger.clone(),
        Registry::new().register(JobKind::Delete, handler),
        config(),
    );
    let shutdown = Shutdown::new();
    let running = tokio::spawn(pool.run(shutdown.clone()));
    eventually("the job to die", || async {
        state(&ledger, id).await.0 == "dead"
    })
    .await;
    shutdown.stop();
    running.await.unwrap().unwrap();
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 4, "exactly max_attempts requests");
    for (n, pair) in calls.windows(2).enumerate() {
        let expected = Duration::from_millis(20 * (1 << n)).min(Duration::from_millis(100));
        assert!(
            pair[1] - pair[0] >= expected,
            "attempt {} came before its backoff of {expected:?}",
            n + 2
        );
    }
    let (job, attempts) = ledger.get_job(id).await.unwrap().unwrap();
    assert_eq!(
        job.last_error.as_deref(),
        Some("es answered 500 (gave up after 4 attempts)")
    );
    let outcomes: Vec<_> = attempts
        .iter()
        .map(|a| (a.outcome.as_str(), a.http_status))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("retry", Some(500)),
            ("retry", Some(500)),
            ("retry", Some(500)),
            ("dead", Some(500))
        ]
    );
}

#[tokio::test]
async fn a_permanent_error_parks_the_job_dead_at_once() {
    let (_dir, ledger) = ledger().await;
    let id = ledger
        .enqueue(&NewJob::new(JobKind::Discover, "k"), Timestamp::now())
        .await
        .unwrap()
        .id();
    let handler = Scripted(|_run: &JobRun| {
        async { Err(JobError::permanent("record has no oip.ver")) }.boxed()
    });
    let pool = WorkerPool::new(
        ledger.clone(),
        Registry::new().register(JobKind::Discover, handler),
        config(),
    );
    pool.drain(Shutdown::new()).await.unwrap();
    assert_eq!(
        state(&ledger, id).await,
        ("dead".into(), 1, Some("record has no oip.ver".into()))
    );
}

#[tokio::test]
async fn a_job_without_a_handler_is_dead_with_the_reason() {
    let (_dir, ledger) = ledger().await;
    let id = ledger
        .enqueue(&NewJob::new(JobKind::Delete, "k"), Timestamp::now())
        .await
        .unwrap()
        .id();
    let pool = WorkerPool::new(ledger.clone(), Registry::new(), config());
    pool.drain(Shutdown::new()).await.unwrap();
    let (s, _, error) = state(&ledger, id).await;
    assert_eq!(s, "dead");
    assert!(
        error
            .unwrap()
            .contains("no handler for job kind \"delete\"")
    );
}

#[tokio::test]
async fn a_long_job_heartbeats_and_is_not_reclaimed_while_it_runs() {
    let (_dir, ledger) = ledger().await;
    let id = ledger
        .enqueue(&NewJob::new(JobKind::Discover, "slow"), Timestamp::now())
        .await
        .unwrap()
        .id();
    let handler = Scripted(|_run: &JobRun| {
        async {
            tokio::time::sleep(Duration::from_millis(900)).await;
            Ok(())
        }
        .boxed()
    });
    // The job takes three lease periods; the rescuer runs every 100 ms.
    let config = WorkerConfig {
        lease_for: Duration::from_millis(300),
        ..config()
    };
    let pool = WorkerPool::new(
        ledger.clone(),
        Registry::new().register(JobKind::Discover, handler),
        config,
    );
    let report = pool.drain(Shutdown::new()).await.unwrap();
    assert_eq!(report.done, 1);
    let (job, attempts) = ledger.get_job(id).await.unwrap().unwrap();
    assert_eq!(
        (job.state.as_str(), job.attempts, attempts.len()),
        ("done", 1, 1)
    );
}

#[tokio::test]
async fn an_enqueue_wakes_an_idle_pool_without_polling() {
    let (_dir, ledger) = ledger().await;
    let ran = Arc::new(AtomicU32::new(0));
    let counter = ran.clone();
    let handler = Scripted(move |_run: &JobRun| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ok(()) }.boxed()
    });
    // With an hour between looks, only the wake-up can make the job run.
    let config = WorkerConfig {
        max_idle: Duration::from_secs(3600),
        ..config()
    };
    let pool = WorkerPool::new(
        ledger.clone(),
        Registry::new().register(JobKind::Discover, handler),
        config,
    );
    let waker = pool.waker();
    let shutdown = Shutdown::new();
    let running = tokio::spawn(pool.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await; // let it go idle first
    ledger
        .enqueue(&NewJob::new(JobKind::Discover, "k"), Timestamp::now())
        .await
        .unwrap();
    waker.notify_one();
    eventually("the job to run", || async {
        ran.load(Ordering::SeqCst) == 1
    })
    .await;
    shutdown.stop();
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn drain_stops_when_only_future_jobs_remain() {
    let (_dir, ledger) = ledger().await;
    let now = Timestamp::now();
    ledger
        .enqueue(&NewJob::new(JobKind::Discover, "now"), now)
        .await
        .unwrap();
    let later = ledger
        .enqueue(
            &NewJob::new(JobKind::Discover, "later").run_at(now.plus(Duration::from_secs(3600))),
            now,
        )
        .await
        .unwrap()
        .id();
    let handler = Scripted(|_run: &JobRun| async { Ok(()) }.boxed());
    let pool = WorkerPool::new(
        ledger.clone(),
        Registry::new().register(JobKind::Discover, handler),
        config(),
    );
    let report = pool.drain(Shutdown::new()).await.unwrap();
    assert_eq!(report.done, 1);
    assert_eq!(state(&ledger, later).await.0, "pending");
}

#[tokio::test]
async fn graceful_stop_lets_running_jobs_finish_and_leases_nothing_new() {
    let (_dir, ledger) = ledger().await;
    let jobs: Vec<_> = (0..20)
        .map(|i| NewJob::new(JobKind::Discover, format!("k{i}")))
        .collect();
    ledger
        .enqueue_many(&jobs, Uniqueness::Active, Timestamp::now())
        .await
        .unwrap();
    let started = Arc::new(AtomicU32::new(0));
    let counter = started.clone();
    let handler = Scripted(move |_run: &JobRun| {
        counter.fetch_add(1, Ordering::SeqCst);
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(())
        }
        .boxed()
    });
    let pool = WorkerPool::new(
        ledger.clone(),
        Registry::new().register(JobKind::Discover, handler),
        config(),
    );
    let shutdown = Shutdown::new();
    let running = tokio::spawn(pool.run(shutdown.clone()));
    eventually("four jobs running", || async {
        started.load(Ordering::SeqCst) == 4
    })
    .await;
    shutdown.stop();
    let report = running.await.unwrap().unwrap();
    assert_eq!(report.done, 4, "the four running jobs finished");
    let stats = ledger.stats(Timestamp::now(), 0).await.unwrap();
    assert_eq!(
        (
            stats.states["done"],
            stats.states["pending"],
            stats.states["running"]
        ),
        (4, 16, 0)
    );
}

#[tokio::test]
async fn jobs_still_running_after_the_grace_period_are_released_without_burning_an_attempt() {
    let (_dir, ledger) = ledger().await;
    let id = ledger
        .enqueue(&NewJob::new(JobKind::Discover, "stuck"), Timestamp::now())
        .await
        .unwrap()
        .id();
    let started = Arc::new(AtomicU32::new(0));
    let counter = started.clone();
    let handler = Scripted(move |_run: &JobRun| {
        counter.fetch_add(1, Ordering::SeqCst);
        async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        }
        .boxed()
    });
    let config = WorkerConfig {
        shutdown_grace: Duration::from_millis(200),
        ..config()
    };
    let pool = WorkerPool::new(
        ledger.clone(),
        Registry::new().register(JobKind::Discover, handler),
        config,
    );
    let shutdown = Shutdown::new();
    let running = tokio::spawn(pool.run(shutdown.clone()));
    eventually("the job to start", || async {
        started.load(Ordering::SeqCst) == 1
    })
    .await;
    shutdown.stop();
    let report = running.await.unwrap().unwrap();
    assert_eq!(report.interrupted, 1);
    let (job, attempts) = ledger.get_job(id).await.unwrap().unwrap();
    assert_eq!((job.state.as_str(), job.attempts), ("pending", 0));
    assert_eq!(
        attempts
            .iter()
            .map(|a| a.outcome.as_str())
            .collect::<Vec<_>>(),
        ["interrupted"]
    );
}

#[tokio::test]
async fn a_handler_can_save_progress_for_the_next_attempt() {
    let (_dir, ledger) = ledger().await;
    let id = ledger
        .enqueue(
            &NewJob::new(JobKind::Delete, "k").max_attempts(3),
            Timestamp::now(),
        )
        .await
        .unwrap()
        .id();
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let record = seen.clone();
    let handler = Scripted(move |run: &JobRun| {
        let attempt = run.job.attempt;
        record
            .lock()
            .unwrap()
            .insert(attempt, run.job.payload.clone());
        async move {
            if attempt == 1 {
                Err(JobError::transient("relay down"))
            } else {
                Ok(())
            }
        }
        .boxed()
    });
    // The first attempt saves its progress through JobRun before failing.
    struct Saving<H>(H);
    impl<H: JobHandler> JobHandler for Saving<H> {
        fn run<'a>(&'a self, run: &'a JobRun) -> BoxFuture<'a, Result<(), JobError>> {
            async move {
                if run.job.attempt == 1 {
                    run.save_payload(&serde_json::json!({"recordType": "post"}))
                        .await?;
                }
                self.0.run(run).await
            }
            .boxed()
        }
    }
    let pool = WorkerPool::new(
        ledger.clone(),
        Registry::new().register(JobKind::Delete, Saving(handler)),
        config(),
    );
    let shutdown = Shutdown::new();
    let running = tokio::spawn(pool.run(shutdown.clone()));
    eventually("the job to finish", || async {
        state(&ledger, id).await.0 == "done"
    })
    .await;
    shutdown.stop();
    running.await.unwrap().unwrap();
    assert_eq!(
        seen.lock().unwrap()[&2],
        serde_json::json!({"recordType": "post"})
    );
}
