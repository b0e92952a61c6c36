//! `gunsync run`: endpoints, graceful stop on SIGTERM, crash safety under `kill -9` (each on both
//! backends), and start-up validation.

use std::time::Duration;

use gunsync::emulator::faults::FaultRule;
use gunsync::ledger::{JobKind, JobState};

use crate::support::{TestApp, both_backends, eventually};

both_backends!(
    healthz_metrics_and_memory_endpoints_answer,
    sigterm_stops_gracefully_with_exit_0_and_no_job_left_running,
    a_restart_after_kill_9_loses_nothing_and_runs_each_job_to_done_once,
);

async fn healthz_metrics_and_memory_endpoints_answer(mut app: TestApp) {
    for i in 0..20 {
        app.seed_record(&format!("post-{i:02}"), "post");
    }
    app.set("GUN_SYNC_INTERVAL", 200);
    let mut daemon = app.spawn_daemon();

    let (status, health) = daemon.get_json("/healthz").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["ledger"], "ok");
    eventually(Duration::from_secs(20), || async {
        let (_, health) = daemon.get_json("/healthz").await;
        health["lastCycleFinishedAt"].as_str().map(|_| ())
    })
    .await;
    eventually(Duration::from_secs(20), || async {
        (app.es.doc_count("records") == 20).then_some(())
    })
    .await;

    // Elasticsearch holds a document a moment before the job's finish commits.
    let metrics = eventually(Duration::from_secs(20), || async {
        let metrics = daemon.get_text("/metrics").await;
        metrics
            .contains(r#"gunsync_jobs{kind="discover",state="done"} 20"#)
            .then_some(metrics)
    })
    .await;
    for needle in [
        r#"gunsync_jobs{kind="discover",state="done"} 20"#,
        "gunsync_job_attempts_total",
        "gunsync_http_requests_total",
        "gunsync_sync_cycle_duration_seconds",
        "process_open_fds",
        "process_resident_memory_bytes",
    ] {
        assert!(
            metrics.contains(needle),
            "{needle} missing from:\n{metrics}"
        );
    }
    let fds: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("process_open_fds "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(fds < 50.0, "{fds} open fds");

    let (status, memory) = daemon.get_json("/health/memory").await;
    assert_eq!(status, 200);
    assert!(
        memory["current"]["rssBytes"].as_u64().unwrap() > 0,
        "{memory}"
    );
    assert!(memory["growthRate"]["mbPerMin"].is_number(), "{memory}");
    assert!(memory["growthRate"]["fdsPerMin"].is_number(), "{memory}");

    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(20)).await, Some(0));
}

async fn sigterm_stops_gracefully_with_exit_0_and_no_job_left_running(mut app: TestApp) {
    for i in 0..40 {
        app.seed_record(&format!("audio-{i:02}"), "audio");
    }
    // Slow record reads keep jobs running when the signal arrives.
    app.relay
        .fail(FaultRule::delay("/get", Duration::from_millis(300)));
    app.set("GUN_SYNC_INTERVAL", 60_000)
        .set("GUNSYNC_RECORD_TYPES", "audio");
    let mut daemon = app.spawn_daemon();
    let ledger = app.ledger().await;
    eventually(Duration::from_secs(30), || async {
        let stats = ledger
            .stats(gunsync::timestamp::Timestamp::now(), 0)
            .await
            .ok()?;
        (stats.states["running"] > 0).then_some(())
    })
    .await;

    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(20)).await, Some(0));
    assert_eq!(app.count(JobKind::Discover, JobState::Running).await, 0);
    ledger.close().await;
}

async fn a_restart_after_kill_9_loses_nothing_and_runs_each_job_to_done_once(mut app: TestApp) {
    for i in 0..150 {
        app.seed_record(&format!("text-{i:03}"), "text");
    }
    app.relay
        .fail(FaultRule::delay("/get", Duration::from_millis(40)));
    app.set("GUN_SYNC_INTERVAL", 60_000)
        .set("GUNSYNC_LEASE_MS", 1000)
        .set("GUNSYNC_RECORD_TYPES", "text");
    let mut daemon = app.spawn_daemon();
    let ledger = app.ledger().await;
    eventually(Duration::from_secs(30), || async {
        let stats = ledger
            .stats(gunsync::timestamp::Timestamp::now(), 0)
            .await
            .ok()?;
        (stats.states["running"] > 0 && stats.states["done"] > 0).then_some(())
    })
    .await;
    daemon.signal("KILL");
    assert_eq!(daemon.wait(Duration::from_secs(10)).await, None);

    let mut daemon = app.spawn_daemon();
    eventually(Duration::from_secs(60), || async {
        (app.count(JobKind::Discover, JobState::Done).await == 150).then_some(())
    })
    .await;
    let jobs = app.jobs(JobKind::Discover).await;
    assert_eq!(jobs.len(), 150, "one job per record, no duplicates");
    assert_eq!(app.es.doc_count("records"), 150);
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(20)).await, Some(0));
    ledger.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_setting_exits_2_with_one_line_naming_it() {
    let mut app = TestApp::start().await;
    for (name, value) in [
        ("GUNSYNC_WORKERS", "0"),
        ("GUNSYNC_BACKOFF_BASE_MS", "5000"),
    ] {
        app.env.clear();
        app.set(name, value);
        let out = app.cli(&["run"]).await;
        assert_eq!(out.status.code(), Some(2), "{name}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(name), "{stderr}");
    }
    let out = app.cli(&["sync"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--once"));
}
