//! Deletion: a DID in the deletion registry is removed from Elasticsearch and tombstoned on the
//! relay; a failing ES delete follows the backoff, stops at max attempts (no cycle re-sends it)
//! and is finished by a requeue once ES recovers.

use std::time::Duration;

use axum::http::Method;
use gunsync::emulator::faults::FaultRule;
use gunsync::ledger::{JobKind, JobState, NewJob, Requeue};
use gunsync::timestamp::Timestamp;
use serde_json::json;

use crate::support::{TestApp, eventually};

#[tokio::test(flavor = "multi_thread")]
async fn delete_removes_the_document_tombstones_the_record_and_cleans_its_index() {
    let app = TestApp::start().await;
    let did = app.seed_record("recipe-gone", "recipe");
    let soul = did.soul();
    app.seed_deletion(&did);
    app.es
        .put_doc("records", did.as_str(), json!({ "data": {}, "oip": {} }));
    app.cli_ok(&["sync", "--once", "--wait"]).await;

    assert!(app.es.doc("records", did.as_str()).is_none());
    let node = app.relay.node(soul.as_str()).unwrap();
    assert_eq!(node["deleted"], true, "{node}");
    assert!(node["data"].is_null() && node["oip"].is_null(), "{node}");
    let index = app.relay.node("oip:registry:index:recipe").unwrap();
    assert!(index[soul.as_str()].is_null(), "{index}");
    let job = &app.jobs(JobKind::Delete).await[0];
    assert_eq!(job.state, "done");
    assert_eq!(job.payload["recordType"], "recipe");
    // Nothing left to discover, and a delete that is done is not re-run within the window.
    assert_eq!(app.jobs(JobKind::Discover).await.len(), 0);
    app.cli_ok(&["sync", "--once", "--wait"]).await;
    assert_eq!(app.jobs(JobKind::Delete).await.len(), 1);
    assert_eq!(app.es_deletes(&did), 1);
    app.assert_es_saw_no_bad_request();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delete_retried_after_a_partial_run_still_cleans_the_type_index() {
    let app = TestApp::start().await;
    let did = app.seed_record("post-half", "post");
    app.seed_deletion(&did);
    let soul = did.soul();
    // An earlier attempt tombstoned the record and saved its type, then died.
    app.relay
        .put(
            soul.as_str(),
            json!({ "data": null, "oip": null, "meta": null, "deleted": true }),
        )
        .unwrap();
    let ledger = app.ledger().await;
    ledger
        .enqueue(
            &NewJob::new(JobKind::Delete, did.as_str()).payload(json!({ "recordType": "post" })),
            Timestamp::now(),
        )
        .await
        .unwrap();
    ledger.close().await;
    app.cli_ok(&["sync", "--once", "--wait"]).await;

    let index = app.relay.node("oip:registry:index:post").unwrap();
    assert!(index[soul.as_str()].is_null(), "{index}");
    assert_eq!(app.count(JobKind::Delete, JobState::Done).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_deletes_follow_the_backoff_then_park_dead_until_requeued() {
    let mut app = TestApp::start().await;
    let mut dids = Vec::new();
    for i in 1..=5 {
        let did = app.seed_record(&format!("video-del-{i}"), "video");
        app.seed_deletion(&did);
        app.es.faults().add(
            FaultRule::status(gunsync::demo::es_doc_path("records", did.as_str()), 500)
                .method(Method::DELETE),
        );
        dids.push(did);
    }
    // Cycles every 50 ms, retries after 200, 400, 800 ms: many cycles pass between attempts.
    app.set("GUN_SYNC_INTERVAL", 50)
        .set("GUNSYNC_BACKOFF_BASE_MS", 200)
        .set("GUNSYNC_BACKOFF_MAX_MS", 800)
        .set("GUNSYNC_MAX_ATTEMPTS", 4)
        .set("GUNSYNC_RECORD_TYPES", "video");
    let mut daemon = app.spawn_daemon();

    eventually(Duration::from_secs(30), || async {
        (app.count(JobKind::Delete, JobState::Dead).await == 5).then_some(())
    })
    .await;
    // Let plenty more cycles pass: none may send another delete for a dead job.
    let ledger = app.ledger().await;
    let cycles_then = ledger.recent_cycles(1).await.unwrap()[0].id;
    eventually(Duration::from_secs(10), || async {
        let now = ledger.recent_cycles(1).await.ok()?.first()?.id;
        (now >= cycles_then + 10).then_some(())
    })
    .await;
    for did in &dids {
        assert_eq!(app.es_deletes(did), 4, "{did}");
    }
    for job in app.jobs(JobKind::Delete).await {
        assert_eq!(job.attempts, 4);
        let error = job.last_error.as_deref().unwrap();
        assert!(error.contains("500") && error.contains(&job.key), "{error}");
        // The attempts are spaced by the backoff (base 200 ms doubling, ±20 % jitter).
        let (_, attempts) = ledger
            .get_job(gunsync::ledger::JobId(job.id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(attempts.len(), 4);
        for (n, pair) in attempts.windows(2).enumerate() {
            let gap = pair[1].started_at.since(pair[0].started_at);
            let expected = Duration::from_millis(200 << n).min(Duration::from_millis(800));
            assert!(
                gap >= expected.mul_f64(0.8) - Duration::from_millis(5),
                "attempt {} came {gap:?} after the previous one (backoff {expected:?})",
                n + 2
            );
        }
    }

    // ES recovers; the operator requeues the dead jobs and the daemon finishes them.
    app.es.faults().clear();
    let report = ledger
        .requeue(
            &Requeue {
                state: Some(JobState::Dead),
                ..Requeue::default()
            },
            Timestamp::now(),
            &mut |_, _| {},
        )
        .await
        .unwrap();
    assert_eq!(report.requeued.len(), 5);
    eventually(Duration::from_secs(20), || async {
        (app.count(JobKind::Delete, JobState::Done).await == 5).then_some(())
    })
    .await;
    for did in &dids {
        assert_eq!(app.es_deletes(did), 5, "{did}");
    }
    ledger.close().await;
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(20)).await, Some(0));
    app.assert_es_saw_no_bad_request();
}
