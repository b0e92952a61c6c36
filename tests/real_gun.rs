//! The relay client against real GUN storage: the tiny Node relay in `tests/relay/` (npm `gun`,
//! radisk in a temp dir) speaking OIP's relay HTTP API. Skipped, with a message, when `node` or
//! `npm` is not installed. A real `get` takes ~150 ms and a 404 about a second.

use std::time::Duration;

use futures::TryStreamExt;
use gunsync::domain::{DEFAULT_REGISTRY_ROOT, Did, Soul};
use gunsync::relay::{IndexBatch, IndexEntry, RelayClient, RelayOptions};
use serde_json::{Map, Value, json};

#[path = "common/node_relay.rs"]
mod node_relay;
use node_relay::NodeRelay;

fn soul(s: &str) -> Soul {
    Soul::parse(s).unwrap()
}

fn map(value: Value) -> Map<String, Value> {
    value.as_object().expect("an object").clone()
}

#[tokio::test]
async fn client_reads_and_tombstones_records_in_real_gun_storage() {
    let Some(relay) = NodeRelay::start().await else {
        return;
    };
    let client = RelayClient::new(RelayOptions {
        timeout: Duration::from_secs(10),
        ..RelayOptions::default()
    })
    .unwrap();
    let peer = &relay.url;

    // Round trip, with GUN's `_` metadata stripped.
    let plain = soul("abc123def456:plain");
    client
        .put(peer, &plain, map(json!({"name": "hello", "n": 3})))
        .await
        .unwrap();
    let node = client.get(peer, &plain).await.unwrap().expect("stored");
    assert_eq!(
        Value::Object(node.fields().clone()),
        json!({"name": "hello", "n": 3})
    );

    // A record: nested objects become links that the client follows.
    let record_soul = soul("abc123def456:post-1");
    client
        .put(
            peer,
            &record_soul,
            map(json!({
                "data": {"name": "first post", "body": {"text": "hi"}},
                "oip": {"ver": "0.8.0", "recordType": "post", "creator": {"publicKey": "pk"}},
                "meta": {"created": 1},
                "ref": {"#": "abc123def456:nowhere"},
            })),
        )
        .await
        .unwrap();
    let raw = client.get(peer, &record_soul).await.unwrap().unwrap();
    assert_eq!(
        raw.get("data"),
        Some(&json!({"#": "abc123def456:post-1/data"}))
    );
    let resolved = client
        .get_resolved(peer, &record_soul, 4)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        resolved.get("data"),
        Some(&json!({"name": "first post", "body": {"text": "hi"}}))
    );
    assert_eq!(
        resolved.get("ref"),
        None,
        "a link to a missing node is absent"
    );

    let record = client
        .read_record(peer, &record_soul)
        .await
        .unwrap()
        .unwrap();
    assert!(!record.deleted);
    assert_eq!(record.partial, None);
    assert_eq!(record.record_type(), Some("post"));
    assert_eq!(record.oip.as_ref().unwrap()["creator"]["publicKey"], "pk");

    // The type index, as OIP writes it.
    let index_soul = soul("oip:registry:index:post");
    client
        .put(
            peer,
            &index_soul,
            map(json!({ record_soul.as_str(): {"soul": record_soul.as_str(), "nodeId": "n1", "timestamp": 1} })),
        )
        .await
        .unwrap();
    let index = client
        .read_type_index(peer, DEFAULT_REGISTRY_ROOT, "post")
        .await
        .unwrap();
    assert_eq!(index.souls, vec![record_soul.clone()]);
    // GUN stores the entry as a link to `<index>/<soul>`: the stream follows it for the timestamp.
    let raw_index = client.get(peer, &index_soul).await.unwrap().unwrap();
    assert_eq!(
        raw_index.get(record_soul.as_str()),
        Some(&json!({"#": format!("oip:registry:index:post/{record_soul}")}))
    );
    let batches: Vec<IndexBatch> = client
        .stream_type_index(peer, DEFAULT_REGISTRY_ROOT, "post", 10)
        .await
        .unwrap()
        .expect("the index exists")
        .try_collect()
        .await
        .unwrap();
    let entries: Vec<IndexEntry> = batches.into_iter().flat_map(|b| b.entries).collect();
    assert_eq!(
        entries,
        vec![IndexEntry {
            soul: record_soul.clone(),
            timestamp: Some(1)
        }]
    );

    // Tombstone, then index removal.
    client
        .tombstone_record(peer, &record_soul, &record.keys)
        .await
        .unwrap();
    client
        .remove_from_type_index(peer, DEFAULT_REGISTRY_ROOT, "post", &record_soul)
        .await
        .unwrap();
    let tombstone = client
        .read_record(peer, &record_soul)
        .await
        .unwrap()
        .unwrap();
    assert!(tombstone.deleted, "{tombstone:?}");
    assert_eq!(tombstone.partial, None);
    assert_eq!(tombstone.data, None);
    let index = client
        .read_type_index(peer, DEFAULT_REGISTRY_ROOT, "post")
        .await
        .unwrap();
    assert!(index.souls.is_empty(), "{index:?}");

    // The deletion registry.
    let did = Did::from_soul(&record_soul);
    client
        .put(
            peer,
            &soul("oip:deleted:records:index"),
            map(json!({ did.as_str(): true, "not-a-did": true })),
        )
        .await
        .unwrap();
    let registry = client.read_deletion_registry(peer).await.unwrap();
    assert_eq!(registry.dids, vec![did]);
    assert_eq!(registry.rejected, vec!["not-a-did"]);

    let listed = client.list(peer, "abc123def456", 10, 0).await.unwrap();
    assert!(listed.iter().any(|r| r.soul == "abc123def456:plain"));

    // OIP's publisher stores data and oip as JSON text; a plain relay answers it as text.
    let text = soul("abc123def456:text");
    client
        .put(
            peer,
            &text,
            map(
                json!({"data": r#"{"name":"t"}"#, "oip": r#"{"ver":"0.8.0","recordType":"post"}"#}),
            ),
        )
        .await
        .unwrap();
    let record = client.read_record(peer, &text).await.unwrap().unwrap();
    assert_eq!(record.data, Some(json!({"name": "t"})));
    assert_eq!(record.record_type(), Some("post"));
}
