//! Crash safety of the ledger and worker pool: a real `gunsync` child process working jobs is
//! killed with SIGKILL mid-batch, a new process reopens the file, and after lease expiry every job
//! ends `done` exactly once, none lost, none stuck.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gunsync::ledger::{Ledger, LedgerOptions};
use gunsync::timestamp::Timestamp;
use sqlx::Connection;

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
    // Each (job, lease token) a kill cut short. A set, not a sum of counts: a job leased by a
    // killed process stays `running` until its lease expires and the next process reclaims it,
    // so a later kill may find it still running, and it must not count twice.
    let mut killed_leases = BTreeSet::new();
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
        let running = running_leases(&db).await;
        if running.iter().any(|lease| !killed_leases.contains(lease)) {
            rounds_that_caught_jobs += 1;
        }
        killed_leases.extend(running);
        let all_done =
            ledger.stats(Timestamp::now(), 0).await.unwrap().states["done"] as u64 == JOBS;
        // Their leases belong to a dead process; let every one of them expire before the next
        // process starts, so it reclaims them all at start-up.
        wait_for("lease expiry", Duration::from_secs(30), || async {
            latest_lease_expiry(&db)
                .await
                .is_none_or(|at| at < Timestamp::now())
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
    let expired: BTreeSet<String> = sqlx::query_scalar(
        "SELECT job_id || ':' || lease_token FROM job_attempts WHERE outcome = 'lease_expired'",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let expired_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM job_attempts WHERE outcome = 'lease_expired'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        expired_rows as usize,
        expired.len(),
        "a lease reclaimed twice"
    );
    let missing: Vec<_> = killed_leases.difference(&expired).collect();
    assert!(
        missing.is_empty(),
        "each attempt cut short by a kill is on record as lease_expired; not: {missing:?}"
    );
    // A lease may also expire under a live process starved of CPU; that one is reclaimed too.
    let beyond_kills = expired.len() - killed_leases.len();
    println!(
        "{} leases cut short by kills, {beyond_kills} more expired under a live process",
        killed_leases.len()
    );
    let burned: i64 = sqlx::query_scalar("SELECT sum(attempts - 1) FROM jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        burned, expired_rows,
        "each burned attempt still counts (the jobs never fail otherwise)"
    );
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(integrity, "ok");
}

/// `job id:lease token` of every running job, read as an operator's `sqlite3` would.
async fn running_leases(db: &str) -> Vec<String> {
    let mut conn = connect(db).await;
    let leases =
        sqlx::query_scalar("SELECT id || ':' || lease_token FROM jobs WHERE state = 'running'")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    conn.close().await.ok();
    leases
}

/// The latest lease expiry among running jobs (`None` = nothing running).
async fn latest_lease_expiry(db: &str) -> Option<Timestamp> {
    let mut conn = connect(db).await;
    let at: Option<Timestamp> =
        sqlx::query_scalar("SELECT max(lease_expires_at) FROM jobs WHERE state = 'running'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    conn.close().await.ok();
    at
}

async fn connect(db: &str) -> sqlx::SqliteConnection {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .busy_timeout(Duration::from_secs(10));
    sqlx::SqliteConnection::connect_with(&options)
        .await
        .expect("connect to the ledger file")
}

async fn open(db: &str) -> Ledger {
    Ledger::open(LedgerOptions::new(db))
        .await
        .expect("open ledger")
}
