//! An unlucky operator: a mistyped path, another application's database, a pipe closed early,
//! read-only media, a missing argument, an absurd setting. Each gets a clear one-line answer and
//! changes nothing it should not.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use gunsync::ledger::{JobKind, NewJob, Uniqueness};
use gunsync::timestamp::Timestamp;
use sqlx::Connection;

use crate::helpers::{BIN, TestApp, pending};
use crate::tmpfs::Tmpfs;

#[test]
fn read_commands_on_a_mistyped_path_fail_and_create_nothing() {
    let app = TestApp::new();
    let typo = app.dir().join("dta").join("gunsync.db");
    for command in [&["stats"][..], &["jobs"], &["show", "1"]] {
        let run = app
            .cli(["--database", typo.to_str().unwrap()].iter().chain(command))
            .fails_with(1);
        assert!(
            run.stderr
                .contains(&format!("no ledger at {}", typo.display())),
            "{command:?}: {}",
            run.stderr
        );
    }
    assert!(!app.dir().join("dta").exists(), "no directory was created");
}

#[tokio::test]
async fn another_applications_database_is_refused_and_left_in_its_journal_mode() {
    let app = TestApp::new();
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&app.db)
        .create_if_missing(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    for command in [
        &["stats"][..],
        &["migrate"],
        &["requeue", "--state", "dead"],
    ] {
        let run = app.cli(command).fails_with(1);
        assert!(
            run.stderr.contains("not a gunsync database"),
            "{command:?}: {}",
            run.stderr
        );
    }
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "delete", "its journal mode was not switched to WAL");
}

#[tokio::test]
async fn a_listing_piped_into_head_ends_quietly_when_head_exits() {
    let app = TestApp::new();
    let ledger = app.ledger().await;
    let jobs: Vec<NewJob> = (0..3000)
        .map(|i| NewJob::new(JobKind::Discover, format!("did:gun:a1b2c3d4e5f6:pipe-{i}")))
        .collect();
    ledger
        .enqueue_many(&jobs, Uniqueness::Active, Timestamp::now())
        .await
        .unwrap();
    ledger.close().await;

    let mut child = Command::new(BIN)
        .args(["jobs", "--limit", "0"])
        .env("GUNSYNC_DATABASE", &app.db)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // `head -1` has its line and exits: the pipe closes with most of the output unwritten.
    assert!(first.starts_with("ID"), "{first}");
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(output.stderr.is_empty(), "{output:?}");
}

#[test]
fn a_missing_argument_is_named_on_the_one_line() {
    let app = TestApp::new();
    let run = app.cli(["show"]).fails_with(2);
    assert!(run.stderr.contains("<ID>"), "{}", run.stderr);
    let run = app.cli(["enqueue", "delete"]).fails_with(2);
    assert!(run.stderr.contains("<KEY>"), "{}", run.stderr);
}

#[test]
fn an_empty_database_path_and_an_absurd_concurrency_are_usage_errors() {
    let app = TestApp::new();
    let run = app.cli(["--database", "", "stats"]).fails_with(2);
    assert!(
        run.stderr.contains("database path is empty"),
        "{}",
        run.stderr
    );
    let run = Command::new(BIN)
        .args(["sync", "--once"])
        .env("GUNSYNC_DATABASE", &app.db)
        .env("GUNSYNC_ES_CONCURRENCY", "4611686018427387904")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("GUNSYNC_ES_CONCURRENCY"), "{stderr}");
}

#[tokio::test]
async fn a_ledger_on_read_only_media_can_still_be_inspected() {
    let Some(disk) = Tmpfs::mount("8m") else {
        return;
    };
    let db = disk.path().join("gunsync.db");
    let app = TestApp::new();
    let ledger =
        gunsync::ledger::Ledger::open(gunsync::ledger::LedgerOptions::new(db.to_str().unwrap()))
            .await
            .unwrap();
    let id = pending(&ledger, JobKind::Delete, "did:gun:a1b2c3d4e5f6:ro-1").await;
    ledger.close().await;
    disk.make_read_only();

    let with_db = |args: &[&str]| {
        let mut all = vec!["--database", db.to_str().unwrap()];
        all.extend_from_slice(args);
        app.cli(all)
    };
    let stats = with_db(&["stats", "--json"]).success().json();
    assert_eq!(stats["states"]["pending"], 1, "{stats}");
    let jobs = with_db(&["jobs", "--json"]).success().json();
    assert_eq!(jobs[0]["id"], id.0);
    with_db(&["show", &id.to_string()]).success();
    // Writing commands say why they cannot, in one line.
    with_db(&["requeue", &id.to_string()]).fails_with(1);
}

#[test]
fn processes_creating_the_same_new_ledger_at_once_all_succeed() {
    for _ in 0..5 {
        let app = TestApp::new();
        let children: Vec<_> = (0..4)
            .map(|_| {
                Command::new(BIN)
                    .arg("migrate")
                    .env("GUNSYNC_DATABASE", &app.db)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
