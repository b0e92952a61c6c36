//! One cycle and its jobs against real GUN storage: the Node relay in `tests/relay/` (npm `gun`),
//! which answers like a plain GUN relay (`_` metadata, nested objects as links, slow 404s).
//! Skipped, with a message, when `node` or `npm` is missing.

use gunsync::domain::{Did, Soul};
use gunsync::ledger::{JobKind, JobState};
use gunsync::relay::{RelayClient, RelayOptions};
use serde_json::{Map, Value, json};

use crate::support::{PUBLISHER_KEY, TestApp, publisher};

#[path = "../common/node_relay.rs"]
mod node_relay;
use node_relay::NodeRelay;

fn map(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_against_real_gun_indexes_records_and_tombstones_a_deleted_one() {
    let Some(relay) = NodeRelay::start().await else {
        return;
    };
    let client = RelayClient::new(RelayOptions::default()).unwrap();
    let peer = &relay.url;
    let mut dids = Vec::new();
    for i in 0..6 {
        let record_type = if i % 2 == 0 { "post" } else { "image" };
        let soul = Soul::parse(&format!("{}:{record_type}-{i}", publisher())).unwrap();
        let record = json!({
            "data": { "basic": { "name": format!("real {i}") } },
            "oip": { "ver": "0.8.0", "recordType": record_type, "creator": { "publicKey": "pk", "didAddress": "did:arweave:creator" } },
            "meta": { "created": i },
        });
        client.put(peer, &soul, map(record)).await.unwrap();
        let index = Soul::parse(&format!("oip:registry:index:{record_type}")).unwrap();
        let entry =
            json!({ soul.as_str(): { "soul": soul.as_str(), "nodeId": "test", "timestamp": i } });
        client.put(peer, &index, map(entry)).await.unwrap();
        dids.push(Did::from_soul(&soul));
    }
    let deleted = dids[2].clone();
    // As OIP's markDeleted writes it: the entry, then the index.
    client
        .put(
            peer,
            &Soul::parse(&format!("oip:deleted:records:{deleted}")).unwrap(),
            map(json!({ "deletedBy": PUBLISHER_KEY, "deletedAt": 1, "did": deleted.as_str() })),
        )
        .await
        .unwrap();
    client
        .put(
            peer,
            &Soul::parse("oip:deleted:records:index").unwrap(),
            map(json!({ deleted.as_str(): true })),
        )
        .await
        .unwrap();

    let mut app = TestApp::start().await;
    app.set("GUN_PEERS", peer.as_str())
        .set("GUNSYNC_RECORD_TYPES", "post,image");
    app.cli_ok(&["sync", "--once", "--wait"]).await;

    assert_eq!(app.count(JobKind::Discover, JobState::Done).await, 5);
    assert_eq!(app.count(JobKind::Delete, JobState::Done).await, 1);
    assert_eq!(app.es.doc_count("records"), 5);
    assert!(app.es.doc("records", deleted.as_str()).is_none());
    let doc = app.es.doc("records", dids[1].as_str()).unwrap();
    assert_eq!(doc["data"]["basic"]["name"], "real 1");
    assert_eq!(doc["oip"]["storage"], "gun");
    let record = client
        .read_record(peer, &deleted.soul())
        .await
        .unwrap()
        .unwrap();
    assert!(record.deleted);
    let index = client
        .get(peer, &Soul::parse("oip:registry:index:post").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        index
            .get(deleted.soul().as_str())
            .is_none_or(Value::is_null),
        "{:?}",
        index.fields()
    );
    app.assert_es_saw_no_bad_request();
}
