//! The binary on a PostgreSQL ledger (`GUNSYNC_DATABASE=postgres://…`): the daemon's work and
//! endpoints, the CLI over the same ledger (a requeue wakes the daemon through `NOTIFY`), and
//! `migrate --from sqlite:PATH`, which moves an SQLite ledger over with every CLI view unchanged.

use std::time::Duration;

use axum::http::Method;
use gunsync::emulator::faults::FaultRule;
use gunsync::ledger::{JobKind, JobState};
use serde_json::Value;

use crate::support::{PgTestDb, TestApp, eventually, soul};

fn stdout_json(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_on_postgres_syncs_answers_its_endpoints_and_wakes_on_a_requeue() {
    let mut app = TestApp::start_postgres().await;
    let mut dids = Vec::new();
    for i in 0..30 {
        dids.push(app.seed_record(&format!("post-{i:02}"), "post"));
    }
    let doomed = dids[0].clone();
    app.seed_deletion(&doomed);
    let fault = gunsync::demo::es_doc_path("records", doomed.as_str());
    app.es
        .faults()
        .add(FaultRule::status(fault.clone(), 500).method(Method::DELETE));
    app.set("GUN_SYNC_INTERVAL", 60_000)
        .set("GUNSYNC_RECORD_TYPES", "post")
        .set("GUNSYNC_MAX_ATTEMPTS", 2);
    let mut daemon = app.spawn_daemon();

    eventually(Duration::from_secs(60), || async {
        (app.count(JobKind::Discover, JobState::Done).await == 29
            && app.count(JobKind::Delete, JobState::Dead).await == 1)
            .then_some(())
    })
    .await;
    let (status, health) = daemon.get_json("/healthz").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["ledger"], "ok", "{health}");
    let metrics = daemon.get_text("/metrics").await;
    assert!(
        metrics.contains(r#"gunsync_jobs{kind="discover",state="done"} 29"#),
        "{metrics}"
    );

    // ES recovers; the operator requeues from another process. The daemon's next cycle is a
    // minute away and its idle poll is not what wakes it: the NOTIFY of the requeue is.
    app.es.faults().clear();
    let requeue = app.cli_ok(&["requeue", "--state", "dead"]).await;
    let said = String::from_utf8_lossy(&requeue.stdout);
    assert!(said.starts_with("requeued 1 job"), "{said}");
    eventually(Duration::from_secs(30), || async {
        (app.count(JobKind::Delete, JobState::Done).await == 1).then_some(())
    })
    .await;
    assert!(app.es.doc("records", doomed.as_str()).is_none());

    let stats = stdout_json(&app.cli_ok(&["stats", "--json"]).await);
    assert_eq!(stats["states"]["done"], 30, "{stats}");
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(30)).await, Some(0));
    app.assert_es_saw_no_bad_request();
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_from_sqlite_moves_every_job_attempt_and_cycle_with_the_same_cli_views() {
    let mut app = TestApp::start().await;
    for i in 0..12 {
        app.seed_record(&format!("image-{i:02}"), "image");
    }
    let gone = app.seed_record("image-gone", "image");
    app.seed_deletion(&gone);
    app.es.faults().add(
        FaultRule::status(gunsync::demo::es_doc_path("records", gone.as_str()), 503)
            .method(Method::DELETE),
    );
    app.set("GUNSYNC_RECORD_TYPES", "image")
        .set("GUNSYNC_MAX_ATTEMPTS", 2);
    app.cli_ok(&["sync", "--once", "--wait"]).await;
    app.cli_ok(&["sync", "--once"]).await;
    let sqlite = app.database();

    let db = PgTestDb::create().await;
    let on = |database: &str, args: &[&str]| {
        let mut cmd = app.command(args);
        cmd.env("GUNSYNC_DATABASE", database);
        cmd
    };
    let copied = on(&db.url, &["migrate", "--from", &format!("sqlite:{sqlite}")])
        .output()
        .await
        .unwrap();
    assert!(copied.status.success(), "{copied:?}");
    let said = String::from_utf8_lossy(&copied.stdout);
    assert!(
        said.contains("copied 13 jobs") && said.contains("2 sync cycles"),
        "{said}"
    );

    let view = |database: String, args: &'static [&'static str]| {
        let cmd = on(&database, args);
        async move {
            let mut cmd = cmd;
            let output = cmd.output().await.unwrap();
            assert!(output.status.success(), "{args:?}: {output:?}");
            stdout_json(&output)
        }
    };
    let jobs = view(sqlite.clone(), &["jobs", "--json", "--limit", "1000"]).await;
    assert_eq!(
        view(db.url.clone(), &["jobs", "--json", "--limit", "1000"]).await,
        jobs
    );
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 13);
    for job in jobs {
        let id = job["id"].to_string();
        let show = |database: String| {
            let mut cmd = on(&database, &["show", &id, "--json"]);
            async move {
                let mut job = stdout_json(&cmd.output().await.unwrap());
                // "done 1s ago" moves on between the two reads; the rest must not differ.
                job["explanation"]["why"] = Value::Null;
                job
            }
        };
        assert_eq!(show(db.url.clone()).await, show(sqlite.clone()).await);
    }
    let stats = |database: String| async {
        let mut stats = view(database, &["stats", "--json"]).await;
        // How long ago each cycle ran moves on between the two reads.
        stats
            .as_object_mut()
            .unwrap()
            .retain(|k, _| k == "states" || k == "kinds");
        stats
    };
    assert_eq!(stats(db.url.clone()).await, stats(sqlite.clone()).await);

    // The copy is once: a ledger that holds jobs is refused, with one line on stderr.
    let again = on(&db.url, &["migrate", "--from", &format!("sqlite:{sqlite}")])
        .output()
        .await
        .unwrap();
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("already holds"), "{stderr}");

    // New jobs continue after the copied ids.
    let max_id = jobs
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .max()
        .unwrap();
    let did = gunsync::domain::Did::from_soul(&soul("after-copy"));
    let enqueued = on(&db.url, &["enqueue", "discover", did.as_str()])
        .output()
        .await
        .unwrap();
    assert!(enqueued.status.success(), "{enqueued:?}");
    // "enqueued job N (discover did:…), runnable now"
    let said = String::from_utf8_lossy(&enqueued.stdout);
    let id: i64 = said
        .strip_prefix("enqueued job ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{said}"));
    assert!(
        id > max_id,
        "new id {id} after the copied ones (max {max_id})"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_runs_on_postgres_in_a_schema_of_its_own() {
    let db = PgTestDb::create().await;
    let run = || {
        tokio::process::Command::new(crate::support::BIN)
            .args(["demo", "--seconds", "4", "--json"])
            .env("GUNSYNC_DATABASE", &db.url)
            .env("RUST_LOG", "warn")
            .output()
    };
    for _ in 0..2 {
        // Twice: each run starts from an empty demo schema.
        let output = run().await.unwrap();
        assert!(output.status.success(), "{output:?}");
        let summary = stdout_json(&output);
        assert!(
            summary["database"]
                .as_str()
                .is_some_and(|d| d.contains("search_path%3Dgunsync_demo")),
            "{summary}"
        );
        let jobs = |kind: &str| {
            summary["states"][kind]
                .as_object()
                .map_or(0, |states| states.values().filter_map(Value::as_i64).sum())
        };
        // The demo's 43 records to discover and 7 deletions, each one job, none twice.
        assert_eq!((jobs("discover"), jobs("delete")), (43, 7), "{summary}");
        assert!(summary["es_documents"].as_u64() > Some(0), "{summary}");
    }
}
