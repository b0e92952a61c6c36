//! Unlucky disks: a ledger whose disk fills up under the running daemon, and a ledger whose file
//! is damaged. The daemon must say so (`/healthz` 503), never wedge, resume on its own once
//! space is back, and refuse to work on a damaged file.

use std::io::Write;
use std::time::Duration;

use gunsync::ledger::lease::LeaseParams;
use gunsync::ledger::{Completion, Finish, JobKind, Ledger, LedgerOptions, NewJob, Uniqueness};
use gunsync::timestamp::Timestamp;
use sqlx::Connection;

use crate::support::{TestApp, eventually};
use crate::tmpfs::Tmpfs;

/// Writes zeroes into `path` until the file system is full.
fn fill(path: &std::path::Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 * 1024];
    while file.write_all(&block).is_ok() {}
    let _ = file.sync_all();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_makes_healthz_503_and_the_daemon_resumes_once_space_is_back() {
    let Some(disk) = Tmpfs::mount("24m") else {
        return;
    };
    let mut app = TestApp::start().await;
    app.db = disk.path().join("gunsync.db");
    for i in 0..20 {
        app.seed_record(&format!("before-{i:02}"), "post");
    }
    app.set("GUN_SYNC_INTERVAL", 200);
    let mut daemon = app.spawn_daemon();
    eventually(Duration::from_secs(60), || async {
        (app.es.doc_count("records") == 20).then_some(())
    })
    .await;

    let filler = disk.path().join("filler");
    fill(&filler);
    for i in 0..200 {
        app.seed_record(&format!("during-{i:03}"), "post");
    }
    let health = eventually(Duration::from_secs(60), || async {
        let (status, health) = daemon.get_json("/healthz").await;
        (status == 503).then_some(health)
    })
    .await;
    let ledger = health["ledger"].as_str().unwrap();
    assert!(ledger.starts_with("writes failing since"), "{health}");
    assert!(ledger.contains("full"), "{health}");

    std::fs::remove_file(&filler).unwrap();
    // Nobody restarts it: once space is back, it notices, writes, and finishes the work.
    eventually(Duration::from_secs(120), || async {
        (app.es.doc_count("records") == 220).then_some(())
    })
    .await;
    let (status, health) = daemon.get_json("/healthz").await;
    assert_eq!(status, 200, "{health}");
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(30)).await, Some(0));
}

/// A ledger with some history, and the root page of its `(kind, key)` index, where damage hides
/// jobs from the sync cycle's uniqueness check.
async fn ledger_with_history(app: &TestApp) -> (i64, i64) {
    let ledger = Ledger::open(LedgerOptions::new(app.db.to_str().unwrap()))
        .await
        .unwrap();
    let jobs: Vec<NewJob> = (0..2000)
        .map(|i| NewJob::new(JobKind::Discover, format!("did:gun:a1b2c3d4e5f6:old-{i}")))
        .collect();
    ledger
        .enqueue_many(&jobs, Uniqueness::Active, Timestamp::now())
        .await
        .unwrap();
    // History: every one of them ran and is done.
    loop {
        let leased = ledger
            .lease(
                LeaseParams {
                    max: 500,
                    worker: "history",
                    lease_for: Duration::from_secs(60),
                },
                Timestamp::now(),
            )
            .await
            .unwrap();
        if leased.is_empty() {
            break;
        }
        let done: Vec<Completion> = leased
            .into_iter()
            .map(|job| Completion {
                id: job.id,
                lease_token: job.lease_token,
                finish: Finish::Done,
            })
            .collect();
        ledger.finish_many(&done, Timestamp::now()).await.unwrap();
    }
    ledger.close().await;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite:{}", app.db.display()))
        .await
        .unwrap();
    let root: i64 =
        sqlx::query_scalar("SELECT rootpage FROM sqlite_master WHERE name = 'jobs_by_kind_key'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    (root, page_size)
}

/// Flips the header bytes of page `page`, as a failing disk would.
fn damage(path: &std::path::Path, page: i64, page_size: i64) {
    let mut bytes = std::fs::read(path).unwrap();
    let start = ((page - 1) * page_size) as usize;
    for b in &mut bytes[start..start + 8] {
        *b ^= 0x5a;
    }
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn run_and_sync_refuse_a_damaged_ledger_with_exit_1() {
    let app = TestApp::start().await;
    let (root, page_size) = ledger_with_history(&app).await;
    damage(&app.db, root, page_size);

    for command in [&["run"][..], &["sync", "--once"]] {
        let out = app.cli(command).await;
        assert_eq!(out.status.code(), Some(1), "{command:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("damaged"), "{command:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn damage_found_at_run_time_stops_the_daemon_with_a_non_zero_exit() {
    let mut app = TestApp::start().await;
    let (root, page_size) = ledger_with_history(&app).await;
    for i in 0..10 {
        app.seed_record(&format!("live-{i}"), "post");
    }
    app.set("GUN_SYNC_INTERVAL", 100);
    let daemon = app.spawn_daemon_capturing_stderr();
    eventually(Duration::from_secs(60), || async {
        (app.es.doc_count("records") == 10).then_some(())
    })
    .await;

    // Everything into the main file, then damage it and commit something unrelated, so every
    // connection of the daemon drops its cached pages and reads the damaged one.
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite:{}", app.db.display()))
        .await
        .unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await
        .unwrap();
    damage(&app.db, root, page_size);
    sqlx::query("PRAGMA user_version = 7")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let (code, stderr) = daemon.exit_and_stderr(Duration::from_secs(60)).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("corrupt") || stderr.contains("damaged"),
        "{stderr}"
    );
}
