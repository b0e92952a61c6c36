//! gunsync in place of OIP's sync: every OIP record type with OIP's own settings, OIP's peer
//! URLs, records that change, and index entries that are not records.

use gunsync::ledger::{JobKind, JobState};
use serde_json::{Value, json};

use crate::support::{PUBLISHER_KEY, TestApp, soul};

fn oip(record_type: &str) -> Value {
    json!({
        "ver": "0.8.0",
        "recordType": record_type,
        "creator": { "publicKey": PUBLISHER_KEY, "didAddress": "did:arweave:creator" },
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn record_types_outside_the_old_twelve_sync_with_the_default_settings() {
    let app = TestApp::start().await;
    // Types the old default list missed, and one that is not an OIP type at all.
    let types = [
        "notes",
        "podcast",
        "basic",
        "mealPlan",
        "noteChunks",
        "musicReleaseSimple",
    ];
    let dids: Vec<_> = types
        .iter()
        .map(|t| app.seed_record(&format!("{t}-1"), t))
        .collect();
    let media = app.seed_record("media-1", "media");
    app.cli_ok(&["sync", "--once", "--wait"]).await;
    for did in &dids {
        assert!(app.es.doc("records", did.as_str()).is_some(), "{did}");
    }
    assert!(
        app.es.doc("records", media.as_str()).is_none(),
        "media is not an OIP type"
    );
    // One cycle reads the registry and the 37 type indexes, nothing per record already known.
    app.relay.log().clear();
    app.cli_ok(&["sync", "--once"]).await;
    assert_eq!(app.relay.requests().len(), 1 + 37);
}

#[tokio::test(flavor = "multi_thread")]
async fn oips_type_selection_and_peer_variables_are_honoured() {
    let mut app = TestApp::start().await;
    let post = app.seed_record("post-1", "post");
    let notes = app.seed_record("notes-1", "notes");
    let recipe = app.seed_record("recipe-1", "recipe");
    // OIP's peer setting: a websocket URL of an OIP node, read as its /gun-relay proxy.
    let ws = format!("ws://127.0.0.1:{}/gun", app.relay.url().port().unwrap());
    app.set("GUN_EXTERNAL_PEERS", &ws)
        .set("GUN_PEERS", "http://127.0.0.1:9/unused")
        .set("RECORD_TYPE_INDEX_MODE", "blacklist")
        .set("RECORD_TYPE_INDEX_BLACKLIST", "recipe, video");
    app.cli_ok(&["sync", "--once", "--wait"]).await;
    assert!(app.es.doc("records", post.as_str()).is_some());
    assert!(app.es.doc("records", notes.as_str()).is_some());
    assert!(
        app.es.doc("records", recipe.as_str()).is_none(),
        "blacklisted"
    );
    assert!(
        app.relay
            .requests()
            .iter()
            .all(|r| r.path.starts_with("/gun-relay/")),
        "every request went to the node's /gun-relay proxy"
    );
    let ledger = app.ledger().await;
    let peer = &ledger.recent_cycles(1).await.unwrap()[0].peer;
    assert_eq!(
        *peer,
        format!(
            "http://127.0.0.1:{}/gun-relay",
            app.relay.url().port().unwrap()
        )
    );
    ledger.close().await;

    app.set("RECORD_TYPE_INDEX_MODE", "whitelist")
        .set("RECORD_TYPE_INDEX_WHITELIST", "recipe");
    app.cli_ok(&["sync", "--once", "--wait"]).await;
    assert!(
        app.es.doc("records", recipe.as_str()).is_some(),
        "whitelisted"
    );
    app.set("RECORD_TYPE_INDEX_MODE", "sometimes");
    let out = app.cli(&["sync", "--once"]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_republished_record_is_indexed_again_and_an_unchanged_one_costs_nothing() {
    let app = TestApp::start().await;
    let soul = soul("post-edited");
    let publish = |title: &str| {
        app.relay
            .seed_record(
                soul.as_str(),
                "post",
                json!({ "basic": { "name": title } }),
                oip("post"),
            )
            .unwrap();
    };
    publish("first version");
    app.cli_ok(&["sync", "--once", "--wait"]).await;
    let did = format!("did:gun:{soul}");
    assert_eq!(
        app.es.doc("records", &did).unwrap()["data"]["basic"]["name"],
        "first version"
    );

    // Nothing changed: the cycle enqueues nothing.
    let out = app.cli_ok(&["sync", "--once", "--json"]).await;
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["cycle"]["peers"][0]["discover_enqueued"], 0,
        "{report}"
    );

    // Republished (a newer timestamp in its index entry): indexed again, in a new job.
    std::thread::sleep(std::time::Duration::from_millis(5));
    publish("second version");
    app.cli_ok(&["sync", "--once", "--wait"]).await;
    assert_eq!(
        app.es.doc("records", &did).unwrap()["data"]["basic"]["name"],
        "second version"
    );
    let jobs = app.jobs(JobKind::Discover).await;
    assert_eq!(jobs.len(), 2, "the first job's history is kept: {jobs:#?}");
    assert!(jobs.iter().all(|j| j.state == "done"));
    assert!(jobs[0].revision > jobs[1].revision, "{jobs:#?}");
    let out = app.cli_ok(&["sync", "--once", "--json"]).await;
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["cycle"]["peers"][0]["discover_enqueued"], 0,
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn index_entries_that_do_not_name_their_record_are_rejected_not_fetched() {
    let app = TestApp::start().await;
    let real = app.seed_record("post-real", "post");
    let prefix = soul("x").publisher_hash().to_owned();
    // What OIP's relay answers after removals: a key cut short, and a key that is no soul of a
    // record, each with a value naming another soul.
    app.relay
        .put(
            "oip:registry:index:post",
            json!({
                format!("{prefix}:h:"): { "soul": real.soul().as_str(), "nodeId": "n", "timestamp": 1 },
                format!("{prefix}:post-rea"): { "soul": real.soul().as_str(), "nodeId": "n", "timestamp": 1 },
            }),
        )
        .unwrap();
    app.cli_ok(&["sync", "--once", "--wait"]).await;
    let jobs = app.jobs(JobKind::Discover).await;
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    assert_eq!(app.count(JobKind::Discover, JobState::Done).await, 1);
    let ledger = app.ledger().await;
    let cycle = &ledger.recent_cycles(1).await.unwrap()[0];
    assert_eq!((cycle.records_seen, cycle.rejected), (1, 2), "{cycle:?}");
    ledger.close().await;
}
