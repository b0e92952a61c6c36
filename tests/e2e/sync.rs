//! Sync cycles: one `sync_cycles` row per peer, a dead peer holds back no other, and a cycle over
//! 10 000 records is a matter of a few batched statements.

use std::time::{Duration, Instant};

use gunsync::ledger::{JobKind, JobState};

use crate::support::TestApp;

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_peer_is_recorded_and_does_not_stop_the_others() {
    let mut app = TestApp::start().await;
    for i in 0..10 {
        app.seed_record(&format!("post-{i:02}"), "post");
    }
    // Port 1 on loopback refuses connections.
    let peers = format!("http://127.0.0.1:1,{}", app.relay.url());
    app.set("GUN_PEERS", peers);
    let out = app.cli_ok(&["sync", "--once", "--wait"]).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("127.0.0.1:1"));

    assert_eq!(app.es.doc_count("records"), 10);
    let ledger = app.ledger().await;
    let cycles = ledger.recent_cycles(10).await.unwrap();
    assert_eq!(cycles.len(), 2);
    let dead = cycles.iter().find(|c| c.peer.contains(":1/")).unwrap();
    assert!(dead.error.as_deref().unwrap().contains("deletion registry"));
    assert!(dead.finished_at.is_some());
    let live = cycles.iter().find(|c| c.error.is_none()).unwrap();
    assert_eq!((live.records_seen, live.discover_enqueued), (10, 10));
    ledger.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sync_that_fails_on_every_peer_exits_1() {
    let mut app = TestApp::start().await;
    app.set("GUN_PEERS", "http://127.0.0.1:1");
    let out = app.cli(&["sync", "--once"]).await;
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn one_cycle_over_ten_thousand_records_enqueues_them_all_in_batches() {
    let mut app = TestApp::start().await;
    let types = ["post", "image", "video", "audio"];
    for i in 0..10_000 {
        let t = types[i % types.len()];
        app.seed_record(&format!("{t}-{i:05}"), t);
    }
    app.set("GUNSYNC_RECORD_TYPES", types.join(","));
    let started = Instant::now();
    app.cli_ok(&["sync", "--once"]).await;
    let elapsed = started.elapsed();
    eprintln!(
        "one cycle over 10000 records (process start included): {elapsed:?}, {:.0} records/s",
        10_000.0 / elapsed.as_secs_f64()
    );
    assert_eq!(
        app.count(JobKind::Discover, JobState::Pending).await,
        10_000
    );
    // Bounded by minutes, not seconds: a sanity bound, not a speed assertion.
    assert!(elapsed < Duration::from_secs(120));
}

/// The closing note's number: `cargo test --release --test e2e -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement, not a check; run with --release --ignored --nocapture"]
async fn measure_one_cycle_and_drain_over_ten_thousand_records() {
    let mut app = TestApp::start().await;
    app.es.log().set_body_limit(0);
    app.relay.log().set_body_limit(0);
    let types = ["post", "image", "video", "audio"];
    for i in 0..10_000 {
        let t = types[i % types.len()];
        app.seed_record(&format!("{t}-{i:05}"), t);
    }
    app.set("GUNSYNC_RECORD_TYPES", types.join(","))
        .set("GUNSYNC_WORKERS", 16)
        .set("GUNSYNC_ES_CONCURRENCY", 8);
    let started = Instant::now();
    app.cli_ok(&["sync", "--once"]).await;
    let cycle = started.elapsed();
    let started = Instant::now();
    app.cli_ok(&["sync", "--once", "--wait"]).await;
    let drain = started.elapsed();
    assert_eq!(app.es.doc_count("records"), 10_000);
    eprintln!(
        "10000 records: cycle (enqueue) {cycle:?} = {:.0} records/s; discover to ES {drain:?} = {:.0} records/s",
        10_000.0 / cycle.as_secs_f64(),
        10_000.0 / drain.as_secs_f64()
    );
}
