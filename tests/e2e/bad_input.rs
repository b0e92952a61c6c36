//! Bad input gets one line on stderr, exit status 2 (usage) or 1 (anything else), and leaves the
//! ledger exactly as it was.

use gunsync::ledger::JobKind;

use crate::helpers::{TestApp, dead, pending};

/// The ledger's rows as the CLI sees them, to compare before and after a refused command.
fn snapshot(app: &TestApp) -> serde_json::Value {
    app.json(["jobs", "--limit", "0", "--json"])
}

#[tokio::test]
async fn unknown_states_and_kinds_are_one_line_usage_errors_that_change_nothing() {
    let app = TestApp::new();
    let ledger = app.ledger().await;
    dead(&ledger, JobKind::Delete, "did:gun:b1:1", 1).await;
    ledger.close().await;
    let before = snapshot(&app);

    let refused: [&[&str]; 8] = [
        &["jobs", "--state", "finished"],
        &["jobs", "--kind", "index"],
        &["requeue", "--state", "failed"],
        &["requeue", "--kind", "Delete"],
        &["prune", "--older-than", "7d", "--state", "exploded"],
        &["enqueue", "index", "did:gun:b1:2"],
        &["requeue", "abc"],
        &["show", "-3"],
    ];
    for args in refused {
        let run = app.cli(args).fails_with(2);
        assert!(
            run.stderr.contains("unknown") || run.stderr.contains("invalid"),
            "{args:?}: {}",
            run.stderr
        );
    }
    for args in [
        ["jobs", "--limit", "many"],
        ["jobs", "--limit", "-5"],
        ["stats", "--cycles", "x"],
    ] {
        let run = app.cli(args).fails_with(2);
        assert!(
            run.stderr.contains("whole number"),
            "{args:?}: {}",
            run.stderr
        );
    }
    let run = app.cli(["jobs", "--state", "finished"]);
    assert!(
        run.stderr
            .contains("pending, running, retrying, done, dead, cancelled"),
        "{}",
        run.stderr
    );
    assert_eq!(snapshot(&app), before);
}

#[tokio::test]
async fn a_malformed_payload_is_a_usage_error_and_adds_nothing() {
    let app = TestApp::new();
    app.cli(["migrate"]).success();
    for payload in ["{not json", "[1, 2]", "\"text\"", "42"] {
        let run = app
            .cli(["enqueue", "delete", "did:gun:b2:1", "--payload", payload])
            .fails_with(2);
        assert!(
            run.stderr.contains("--payload"),
            "{payload}: {}",
            run.stderr
        );
    }
    app.cli(["enqueue", "delete", "", "--payload", "{}"])
        .fails_with(2);
    assert_eq!(snapshot(&app), serde_json::json!([]));
}

#[tokio::test]
async fn a_key_that_is_not_a_record_did_is_a_usage_error_and_adds_nothing() {
    let app = TestApp::new();
    app.cli(["migrate"]).success();
    for key in ["not a did", "did:gun:", "did:ipfs:abc", "did:gun:has space"] {
        let run = app.cli(["enqueue", "delete", key]).fails_with(2);
        assert!(run.stderr.contains("DID"), "{key}: {}", run.stderr);
        assert_eq!(run.stderr.trim().lines().count(), 1, "{key}: one line");
    }
    assert_eq!(snapshot(&app), serde_json::json!([]));
}

#[tokio::test]
async fn a_malformed_duration_or_an_active_state_is_a_usage_error_and_prunes_nothing() {
    let app = TestApp::new();
    let ledger = app.ledger().await;
    dead(&ledger, JobKind::Delete, "did:gun:b3:1", 1).await;
    pending(&ledger, JobKind::Delete, "did:gun:b3:2").await;
    ledger.close().await;
    let before = snapshot(&app);

    for duration in ["7", "seven days", "-1d", ""] {
        let run = app.cli(["prune", "--older-than", duration]).fails_with(2);
        assert!(
            run.stderr.contains("--older-than"),
            "{duration:?}: {}",
            run.stderr
        );
    }
    let run = app
        .cli(["prune", "--older-than", "0s", "--state", "pending"])
        .fails_with(2);
    assert!(run.stderr.contains("finished jobs only"), "{}", run.stderr);
    // A missing --older-than is clap's usage error: status 2 as well.
    assert_eq!(app.cli(["prune"]).code, 2);
    assert_eq!(snapshot(&app), before);
}

#[test]
fn a_text_file_is_not_a_gunsync_database_and_is_left_untouched() {
    let app = TestApp::new();
    let notes = app.dir().join("notes.txt");
    let text = "these are my notes, not a ledger\n".repeat(200);
    std::fs::write(&notes, &text).unwrap();
    for command in [
        &["jobs"][..],
        &["stats", "--json"],
        &["requeue", "--state", "dead"],
        &["migrate"],
    ] {
        let mut args = vec!["--database", notes.to_str().unwrap()];
        args.extend_from_slice(command);
        let run = app.cli(&args).fails_with(1);
        assert!(
            run.stderr.contains("not a gunsync database"),
            "{command:?}: {}",
            run.stderr
        );
    }
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), text);
}

#[tokio::test]
async fn a_ledger_from_a_newer_gunsync_is_refused_and_left_untouched() {
    let app = TestApp::new();
    let ledger = app.ledger().await;
    let id = dead(&ledger, JobKind::Delete, "did:gun:b4:1", 1).await;
    ledger.close().await;
    {
        let mut conn = app.sql().await;
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES (99991231000000, 'from the future', TRUE, X'00', 0)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::Connection::close(conn).await.unwrap();
    }
    let before = std::fs::read(&app.db).unwrap();

    for command in [
        vec!["jobs"],
        vec!["migrate"],
        vec!["requeue", "--state", "dead"],
        vec!["prune", "--older-than", "0s"],
        vec!["show", &id.to_string()],
    ] {
        let run = app.cli(&command).fails_with(1);
        assert!(
            run.stderr.contains("newer than this gunsync"),
            "{command:?}: {}",
            run.stderr
        );
        assert!(run.stderr.contains("99991231000000"), "{}", run.stderr);
    }
    assert_eq!(
        std::fs::read(&app.db).unwrap(),
        before,
        "the file is unchanged"
    );
    assert_eq!(
        app.sql_i64("SELECT count(*) FROM jobs WHERE state = 'dead'")
            .await,
        1
    );
}
