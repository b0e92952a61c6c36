//! Crash safety of the ledger and worker pool: a real `gunsync` child process working jobs is
//! killed with SIGKILL mid-batch, a new process reopens the file, and after lease expiry every job
//! ends `done` exactly once, none lost, none stuck.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gunsync::ledger::{Ledger, LedgerOptions};
use gunsync::timestamp::Timestamp;

const JOBS: u64 = 6000;
const LEASE_MS: u64 = 1500;

fn worker(db: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_gunsync"))
        .args(["--database", db, "bench", "worker"])
        .args([
            "--jobs",
            &JOBS.to_string(),
            "--job-ms",
            "20",
            "--workers",
            "8",
            "--lease-ms",
            &LEASE_MS.to_string(),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn gunsync")
}

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_workers_lose_no_job_and_complete_none_twice() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db").to_str().unwrap().to_string();
    let mut killed_while_running = 0;
    let mut rounds_that_caught_jobs = 0;

    // Up to three kills that catch jobs in flight. Whether one does depends on the moment it
    // lands (all slots may be between a finish and the next lease), and on a loaded machine the
    // work may even be over before a kill lands: a kill that caught nothing is not counted, and
    // another round follows while there is work left.
    for round in 1..=10u64 {
        if rounds_that_caught_jobs == 3 {
            break;
        }
        let mut child = worker(&db);
        // Let it get some way into the work (each round further), then kill it mid-batch.
        let target = round * JOBS / 12;
        let ledger = open(&db).await;
        wait_for("progress", Duration::from_secs(300), || async {
            ledger
                .stats(Timestamp::now(), 0)
                .await
                .map(|s| {
                    let done = s.states["done"] as u64;
                    (done >= target && s.states["running"] > 0) || done == JOBS
                })
                .unwrap_or(false)
        })
        .await;
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        let stats = ledger.stats(Timestamp::now(), 0).await.unwrap();
        if stats.states["running"] > 0 {
            rounds_that_caught_jobs += 1;
        }
        killed_while_running += stats.states["running"];
        let all_done = stats.states["done"] as u64 == JOBS;
        // Their leases belong to a dead process; nobody may take them before they expire.
        wait_for("lease expiry", Duration::from_secs(30), || async {
            match ledger.next_lease_expiry().await.unwrap() {
                Some(at) => at < Timestamp::now(),
                None => true,
            }
        })
        .await;
        ledger.close().await;
        if all_done {
            break;
        }
    }

    assert_eq!(
        rounds_that_caught_jobs, 3,
        "three kills caught jobs in flight"
    );

    // A last run reclaims the expired leases and finishes everything.
    let status = worker(&db).wait().unwrap();
    assert!(status.success(), "final run failed: {status}");

    let ledger = open(&db).await;
    let stats = ledger.stats(Timestamp::now(), 0).await.unwrap();
    assert_eq!(
        stats.states["done"] as u64, JOBS,
        "every job done: {stats:?}"
    );
    assert_eq!(stats.total as u64, JOBS, "no job duplicated");
    assert_eq!(
        (
            stats.states["running"],
            stats.states["pending"],
            stats.states["retrying"]
        ),
        (0, 0, 0)
    );

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{db}"))
        .await
        .unwrap();
    let done_twice: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT job_id FROM job_attempts WHERE outcome = 'done' GROUP BY job_id HAVING count(*) <> 1)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(done_twice, 0, "a job was completed twice (or never)");
    let done_attempts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM job_attempts WHERE outcome = 'done'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(done_attempts as u64, JOBS);
    let expired: i64 =
        sqlx::query_scalar("SELECT count(*) FROM job_attempts WHERE outcome = 'lease_expired'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        expired, killed_while_running,
        "each attempt cut short by a kill is on record as lease_expired"
    );
    let burned: i64 = sqlx::query_scalar("SELECT sum(attempts - 1) FROM jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        burned, killed_while_running,
        "each burned attempt still counts"
    );
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(integrity, "ok");
}

async fn open(db: &str) -> Ledger {
    Ledger::open(LedgerOptions::new(db))
        .await
        .expect("open ledger")
}
