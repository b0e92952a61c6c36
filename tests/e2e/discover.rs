//! Discovery: records in type indexes end up in Elasticsearch as `{data, oip}`, once; deleted,
//! invalid and private records never do.

use gunsync::domain::Did;
use gunsync::ledger::{JobKind, JobState, NewJob};
use gunsync::timestamp::Timestamp;
use serde_json::json;

use std::time::Duration;

use crate::support::{TestApp, eventually, soul};

const TYPES: [&str; 10] = [
    "post",
    "image",
    "video",
    "audio",
    "text",
    "recipe",
    "workout",
    "exercise",
    "conversationSession",
    "organization",
];

#[tokio::test(flavor = "multi_thread")]
async fn five_hundred_records_across_types_are_indexed_once() {
    let app = TestApp::start().await;
    let mut dids = Vec::new();
    for i in 0..500 {
        let record_type = TYPES[i % TYPES.len()];
        dids.push(app.seed_record(&format!("{record_type}-{i:04}"), record_type));
    }
    app.cli_ok(&["sync", "--once", "--wait"]).await;

    assert_eq!(app.es.doc_count("records"), 500);
    assert_eq!(app.count(JobKind::Discover, JobState::Done).await, 500);
    let doc = app.es.doc("records", dids[7].as_str()).unwrap();
    assert_eq!(doc["oip"]["did"], dids[7].as_str());
    assert_eq!(doc["oip"]["didTx"], dids[7].as_str());
    assert_eq!(doc["oip"]["storage"], "gun");
    assert_eq!(doc["oip"]["recordType"], TYPES[7]);
    assert!(doc["oip"]["indexedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(doc["data"]["basic"]["name"], "record exercise-0007");

    // A second cycle finds nothing new: each soul is discovered once, ever.
    let indexed = app.es.count("PUT", "/records/_doc/");
    let out = app.cli_ok(&["sync", "--once", "--wait", "--json"]).await;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["cycle"]["peers"][0]["records_seen"], 500);
    assert_eq!(report["cycle"]["peers"][0]["discover_enqueued"], 0);
    assert_eq!(app.es.count("PUT", "/records/_doc/"), indexed);
    app.assert_es_saw_no_bad_request();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_did_is_never_indexed_by_discovery() {
    let app = TestApp::start().await;
    let kept = app.seed_record("post-kept", "post");
    let deleted = app.seed_record("post-deleted", "post");
    app.seed_deletion(&deleted);
    // Discovery raced ahead of the cycle once: a discover job for the deleted DID exists.
    let ledger = app.ledger().await;
    ledger
        .enqueue(
            &NewJob::new(JobKind::Discover, deleted.as_str()),
            Timestamp::now(),
        )
        .await
        .unwrap();
    ledger.close().await;

    app.cli_ok(&["sync", "--once", "--wait"]).await;
    assert!(app.es.doc("records", kept.as_str()).is_some());
    assert!(app.es.doc("records", deleted.as_str()).is_none());
    // The relay entry is gone from the type index, so later cycles do not even see it.
    app.cli_ok(&["sync", "--once", "--wait"]).await;
    assert!(app.es.doc("records", deleted.as_str()).is_none());
    assert_eq!(
        app.es.count(
            "PUT",
            &gunsync::demo::es_doc_path("records", deleted.as_str())
        ),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_did_deleted_after_its_discover_was_queued_ends_deleted() {
    let mut app = TestApp::start().await;
    let did = app.seed_record("image-late", "image");
    let ledger = app.ledger().await;
    ledger
        .enqueue(
            &NewJob::new(JobKind::Discover, did.as_str()),
            Timestamp::now(),
        )
        .await
        .unwrap();
    // Deleted after a cycle queued the discover. The discover may index it before the next
    // cycle reads the registry; that cycle's delete job (which runs first) removes it again.
    app.seed_deletion(&did);
    app.set("GUN_SYNC_INTERVAL", 200);
    let mut daemon = app.spawn_daemon();
    eventually(Duration::from_secs(30), || async {
        let done = app.count(JobKind::Delete, JobState::Done).await == 1
            && app.count(JobKind::Discover, JobState::Done).await == 1;
        done.then_some(())
    })
    .await;
    assert!(app.es.doc("records", did.as_str()).is_none());
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(20)).await, Some(0));
    ledger.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_records_are_dead_with_the_reason_and_private_ones_skipped() {
    let app = TestApp::start().await;
    let legacy = soul("post-legacy");
    app.relay
        .seed_record(
            legacy.as_str(),
            "post",
            json!({ "basic": { "name": "old" } }),
            json!({ "ver": "0.7.2", "creator": { "didAddress": "did:arweave:x" } }),
        )
        .unwrap();
    let private = soul("post-private");
    app.relay
        .seed_record(
            private.as_str(),
            "post",
            json!({ "encrypted": "abc", "iv": "def", "tag": "ghi" }),
            json!({ "ver": "0.8.0", "creator": { "didAddress": "did:arweave:x" } }),
        )
        .unwrap();
    app.cli_ok(&["sync", "--once", "--wait"]).await;

    let jobs = app.jobs(JobKind::Discover).await;
    let legacy_job = jobs
        .iter()
        .find(|j| j.key == Did::from_soul(&legacy).as_str())
        .unwrap();
    assert_eq!(legacy_job.state, "dead");
    assert_eq!(legacy_job.attempts, 1);
    let error = legacy_job.last_error.as_deref().unwrap();
    assert!(
        error.contains("oip.ver") && error.contains(legacy.as_str()),
        "{error}"
    );
    let private_job = jobs
        .iter()
        .find(|j| j.key == Did::from_soul(&private).as_str())
        .unwrap();
    assert_eq!(private_job.state, "done");
    assert_eq!(app.es.doc_count("records"), 0);
}
