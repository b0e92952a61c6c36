//! The relay client against the in-process relay emulator, in both answer flavours: GUN put
//! semantics, link following, tombstones, registry reads, and how each failure is classified.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::{StreamExt, TryStreamExt, stream};
use gunsync::domain::{DEFAULT_REGISTRY_ROOT, Did, Soul};
use gunsync::emulator::faults::EmulatorServer;
use gunsync::emulator::relay::{FaultRule, Flavour, RelayEmulator};
use gunsync::relay::{
    Budget, DEFAULT_RECORD_MAX_BYTES, DEFAULT_RECORD_MAX_NODES, DeletionEntry, IndexBatch,
    IndexEntry, IndexStream, RegistryBatch, RelayClient, RelayError, RelayOptions,
};
use serde_json::{Map, Value, json};

const FLAVOURS: [Flavour; 2] = [Flavour::Oip, Flavour::PlainGun];

fn client() -> RelayClient {
    client_with(RelayOptions {
        timeout: Duration::from_secs(5),
        ..RelayOptions::default()
    })
}

fn client_with(options: RelayOptions) -> RelayClient {
    RelayClient::new(options).expect("build relay client")
}

fn soul(s: &str) -> Soul {
    Soul::parse(s).unwrap()
}

fn map(value: Value) -> Map<String, Value> {
    value.as_object().expect("an object").clone()
}

fn post_oip() -> Value {
    json!({"ver": "0.8.0", "creator": {"publicKey": "pk", "didAddress": "did:arweave:x"}})
}

#[tokio::test]
async fn put_then_get_round_trips_in_both_flavours() {
    for flavour in FLAVOURS {
        let relay = RelayEmulator::start_with(flavour).await;
        let client = client();
        let s = soul("abc123def456:note-1");
        client
            .put(
                &relay.url(),
                &s,
                map(json!({"name": "hello", "n": 3, "ok": true})),
            )
            .await
            .unwrap();
        let node = client.get(&relay.url(), &s).await.unwrap().expect("stored");
        assert_eq!(node.soul(), &s);
        assert_eq!(
            Value::Object(node.fields().clone()),
            json!({"name": "hello", "n": 3, "ok": true}),
            "{flavour:?}"
        );
        assert!(
            client
                .get(&relay.url(), &soul("abc123def456:other"))
                .await
                .unwrap()
                .is_none()
        );
    }
}

#[tokio::test]
async fn put_merges_keys_and_null_removes_them() {
    for flavour in FLAVOURS {
        let relay = RelayEmulator::start_with(flavour).await;
        let client = client();
        let s = soul("abc:merge");
        client
            .put(&relay.url(), &s, map(json!({"a": 1, "b": 2})))
            .await
            .unwrap();
        client
            .put(&relay.url(), &s, map(json!({"b": null, "c": 3})))
            .await
            .unwrap();
        let node = client.get(&relay.url(), &s).await.unwrap().unwrap();
        assert_eq!(node.get("a"), Some(&json!(1)));
        assert_eq!(node.get("c"), Some(&json!(3)));
        match flavour {
            // OIP's relay drops null keys from its answer; plain GUN shows them as null.
            Flavour::Oip => assert_eq!(node.get("b"), None),
            Flavour::PlainGun => assert_eq!(node.get("b"), Some(&Value::Null)),
        }
    }
}

#[tokio::test]
async fn root_null_and_arrays_are_rejected_by_the_relay_and_arrays_never_sent() {
    let relay = RelayEmulator::start().await;
    let http = reqwest::Client::new();
    let put = relay.url().join("put").unwrap();
    let cases = [
        (
            json!({"soul": "s", "data": null}),
            500,
            "Data at root of graph must be a node (an object).",
        ),
        (
            json!({"soul": "s", "data": {"tags": ["a"]}}),
            500,
            "Invalid data: Array at s.tags",
        ),
        (json!({"data": {"a": 1}}), 400, "Invalid JSON"),
    ];
    for (body, status, message) in cases {
        let response = http.post(put.clone()).json(&body).send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"], message);
    }
    let bad_json = http.post(put).body("{not json").send().await.unwrap();
    assert_eq!(bad_json.status().as_u16(), 400);
    assert!(relay.node("s").is_none());

    let requests_before = relay.count("POST", "/put");
    let err = client()
        .put(&relay.url(), &soul("s"), map(json!({"tags": ["a"]})))
        .await
        .unwrap_err();
    assert!(matches!(err, RelayError::Unstorable { .. }), "{err}");
    assert!(!err.is_transient());
    assert_eq!(relay.count("POST", "/put"), requests_before);
}

#[tokio::test]
async fn nested_objects_are_links_followed_and_missing_targets_dropped() {
    for flavour in FLAVOURS {
        let relay = RelayEmulator::start_with(flavour).await;
        let client = client();
        let s = soul("abc:nested");
        client
            .put(
                &relay.url(),
                &s,
                map(json!({
                    "data": {"name": "n", "deep": {"deeper": {"x": 1}}},
                    "ref": {"#": "abc:nowhere"},
                    "plain": "v",
                })),
            )
            .await
            .unwrap();
        assert_eq!(
            relay.node("abc:nested").unwrap()["data"],
            json!({"#": "abc:nested/data"})
        );

        let node = client
            .get_resolved(&relay.url(), &s, 4)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            Value::Object(node.fields().clone()),
            json!({"data": {"name": "n", "deep": {"deeper": {"x": 1}}}, "plain": "v"}),
            "{flavour:?}"
        );

        let shallow = client
            .get_resolved(&relay.url(), &s, 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            shallow.get("data").unwrap()["deep"],
            json!({"#": "abc:nested/data/deep"}),
            "{flavour:?}"
        );
    }
}

#[tokio::test]
async fn tombstoned_record_reads_deleted_and_leaves_its_type_index() {
    for flavour in FLAVOURS {
        let relay = RelayEmulator::start_with(flavour).await;
        let client = client();
        let peer = relay.url();
        let s = soul("647f79c2a338:post-1");
        relay
            .seed_record(
                s.as_str(),
                "post",
                json!({"name": "first post"}),
                post_oip(),
            )
            .unwrap();

        let index = client
            .read_type_index(&peer, DEFAULT_REGISTRY_ROOT, "post")
            .await
            .unwrap();
        assert_eq!(index.souls, vec![s.clone()], "{flavour:?}");

        let record = client.read_record(&peer, &s).await.unwrap().unwrap();
        assert!(!record.deleted, "{flavour:?}");
        assert!(!record.encrypted);
        assert_eq!(record.record_type(), Some("post"));
        assert_eq!(record.data, Some(json!({"name": "first post"})));
        assert_eq!(record.oip.as_ref().unwrap()["creator"]["publicKey"], "pk");

        client
            .tombstone_record(&peer, &s, &record.keys)
            .await
            .unwrap();
        client
            .remove_from_type_index(&peer, DEFAULT_REGISTRY_ROOT, "post", &s)
            .await
            .unwrap();

        let tombstone = client.read_record(&peer, &s).await.unwrap().unwrap();
        assert!(tombstone.deleted, "{flavour:?}: {tombstone:?}");
        assert_eq!(tombstone.partial, None, "{flavour:?}");
        assert_eq!(tombstone.data, None);
        let index = client
            .read_type_index(&peer, DEFAULT_REGISTRY_ROOT, "post")
            .await
            .unwrap();
        assert!(index.souls.is_empty(), "{flavour:?}: {index:?}");

        // The tombstone is one put of an object: never `"data": null` at the root.
        let tombstone_put = relay
            .requests()
            .into_iter()
            .filter(|r| r.path == "/put")
            .find_map(|r| {
                let body: Value = serde_json::from_str(&r.body).unwrap();
                (body["soul"] == s.as_str()).then_some(body)
            })
            .expect("tombstone put recorded");
        assert_eq!(
            tombstone_put["data"]["data"],
            Value::Null,
            "{tombstone_put}"
        );
        assert_eq!(tombstone_put["data"]["deleted"], true);
        assert!(tombstone_put["data"]["deletedAt"].is_i64());
    }
}

#[tokio::test]
async fn a_record_missing_data_or_oip_is_partial_not_deleted() {
    for flavour in FLAVOURS {
        let relay = RelayEmulator::start_with(flavour).await;
        relay
            .put("abc:meta-only", json!({"meta": {"created": 1}}))
            .unwrap();
        relay
            .put("abc:no-oip", json!({"data": {"a": 1}, "meta": {}}))
            .unwrap();
        relay
            .put(
                "abc:dangling",
                json!({"data": {"#": "abc:gone"}, "oip": post_oip()}),
            )
            .unwrap();
        // OIP's relay drops a key whose link it cannot follow; a plain relay answers the link.
        let dangling = match flavour {
            Flavour::Oip => "data is missing",
            Flavour::PlainGun => "data is missing (link to abc:gone not found)",
        };
        let cases = [
            ("abc:meta-only", "data is missing, oip is missing"),
            ("abc:no-oip", "oip is missing"),
            ("abc:dangling", dangling),
        ];
        for (s, partial) in cases {
            let record = client()
                .read_record(&relay.url(), &soul(s))
                .await
                .unwrap()
                .unwrap();
            assert!(!record.deleted, "{flavour:?} {s}");
            assert_eq!(record.partial.as_deref(), Some(partial), "{flavour:?} {s}");
        }
    }
}

#[tokio::test]
async fn data_and_oip_stored_as_json_text_are_parsed_and_their_links_followed() {
    for flavour in FLAVOURS {
        let relay = RelayEmulator::start_with(flavour).await;
        relay.put("abc:body", json!({"text": "hi"})).unwrap();
        relay
            .put(
                "abc:texts",
                json!({
                    "data": r##"{"title":"t","body":{"#":"abc:body"},"tags":"[\"a\"]"}"##,
                    "oip": r#"{"ver":"0.8.0","recordType":"post"}"#,
                }),
            )
            .unwrap();
        let record = client()
            .read_record(&relay.url(), &soul("abc:texts"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            record.data,
            Some(json!({"title": "t", "body": {"text": "hi"}, "tags": "[\"a\"]"})),
            "{flavour:?}"
        );
        assert_eq!(record.record_type(), Some("post"), "{flavour:?}");
        assert_eq!(record.partial, None);
    }
}

#[tokio::test]
async fn missing_indexes_and_records_read_as_empty() {
    let relay = RelayEmulator::start().await;
    let client = client();
    let index = client
        .read_type_index(&relay.url(), DEFAULT_REGISTRY_ROOT, "recipe")
        .await
        .unwrap();
    assert!(index.souls.is_empty());
    let registry = client.read_deletion_registry(&relay.url()).await.unwrap();
    assert!(registry.dids.is_empty());
    assert!(
        client
            .read_record(&relay.url(), &soul("abc:none"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn deletion_registry_skips_invalid_dids() {
    for flavour in FLAVOURS {
        let relay = RelayEmulator::start_with(flavour).await;
        let good = Did::parse("did:gun:647f79c2a338:post-1").unwrap();
        relay.seed_deletion(&good, "a publisher key").unwrap();
        relay
            .put(
                "oip:deleted:records:index",
                json!({"did:gun:bad soul": true, "not-a-did": true, "did:gun:abc:undone": null}),
            )
            .unwrap();
        assert!(
            relay
                .node("oip:deleted:records:did:gun:647f79c2a338:post-1")
                .is_some()
        );

        let registry = client().read_deletion_registry(&relay.url()).await.unwrap();
        assert_eq!(registry.dids, vec![good], "{flavour:?}");
        assert_eq!(registry.rejected.len(), 2, "{registry:?}");
    }
}

#[tokio::test]
async fn type_index_skips_metadata_and_invalid_souls() {
    let relay = RelayEmulator::start_with(Flavour::PlainGun).await;
    relay
        .put(
            "oip:registry:index:image",
            json!({
                "abc:1": {"soul": "abc:1", "nodeId": "n", "timestamp": 1},
                "oip:something": {"x": 1},
                "bad soul": {"soul": "bad soul"},
            }),
        )
        .unwrap();
    let index = client()
        .read_type_index(&relay.url(), DEFAULT_REGISTRY_ROOT, "image")
        .await
        .unwrap();
    assert_eq!(index.souls, vec![soul("abc:1")]);
    assert_eq!(index.rejected, vec!["bad soul"]);
}

/// A relay answering every `/get` and `/put` with `status` and, when given, that `Location`.
async fn redirecting_relay(status: u16, location: Option<String>) -> EmulatorServer {
    let answer = move || {
        let location = location.clone();
        async move {
            let mut response = Response::new(axum::body::Body::empty());
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            if let Some(location) = location {
                response
                    .headers_mut()
                    .insert(header::LOCATION, location.parse().unwrap());
            }
            response.into_response()
        }
    };
    let router = Router::new()
        .route("/get", get(answer.clone()))
        .route("/put", post(answer));
    EmulatorServer::start(router).await.unwrap()
}

#[tokio::test]
async fn redirects_are_permanent_errors_naming_the_location_and_never_followed() {
    let elsewhere = RelayEmulator::start().await;
    let client = client();
    let s = soul("abc:1");
    for status in [301, 302, 307, 308] {
        let location = elsewhere
            .url()
            .join("get?soul=abc%3A1")
            .unwrap()
            .to_string();
        let relay = redirecting_relay(status, Some(location.clone())).await;
        let got = client.get(&relay.url(), &s).await.unwrap_err();
        let put = client
            .put(&relay.url(), &s, map(json!({"a": 1})))
            .await
            .unwrap_err();
        for err in [got, put] {
            assert!(
                matches!(&err, RelayError::Redirect { status: st, location: Some(l), .. } if *st == status && *l == location),
                "{err:?}"
            );
            assert!(err.to_string().contains(&location), "{err}");
            assert!(!err.is_transient(), "{err}");
        }
    }
    let relay = redirecting_relay(302, None).await;
    let err = client.get(&relay.url(), &s).await.unwrap_err();
    assert!(err.to_string().contains("no Location"), "{err}");
    let streamed = client
        .stream_type_index(&relay.url(), DEFAULT_REGISTRY_ROOT, "post", 10)
        .await
        .unwrap_err();
    assert!(
        matches!(streamed, RelayError::Redirect { .. }),
        "{streamed}"
    );
    assert!(
        elsewhere.requests().is_empty(),
        "{:?}",
        elsewhere.requests()
    );
}

#[tokio::test]
async fn server_error_is_transient_with_status_and_message() {
    let relay = RelayEmulator::start().await;
    relay.fail(FaultRule::status("/get", 500).times(1));
    let err = client()
        .get(&relay.url(), &soul("oip:registry:index:post"))
        .await
        .unwrap_err();
    assert!(err.is_transient());
    assert_eq!(err.http_status(), Some(500));
    assert_eq!(
        err.to_string(),
        "get oip:registry:index:post: relay answered 500: injected fault"
    );
}

#[tokio::test]
async fn not_found_on_a_put_is_permanent() {
    let relay = RelayEmulator::start().await;
    relay.fail(FaultRule::status("/put", 404));
    let err = client()
        .put(&relay.url(), &soul("abc:1"), map(json!({"a": 1})))
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert_eq!(err.http_status(), Some(404));
}

#[tokio::test]
async fn unknown_endpoint_is_an_error_not_an_absent_node() {
    let relay = RelayEmulator::start().await;
    let wrong_base = relay.url().join("not-the-relay/").unwrap();
    let err = client().get(&wrong_base, &soul("abc:1")).await.unwrap_err();
    assert_eq!(err.http_status(), Some(404), "{err}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn too_many_requests_carries_retry_after() {
    let relay = RelayEmulator::start().await;
    relay.fail(FaultRule::status("/get", 429).retry_after(7).times(1));
    relay.fail(FaultRule::status("/get", 503).retry_after(2).times(1));
    let client = client();
    let s = soul("abc:1");
    for (status, seconds) in [(429, 7), (503, 2)] {
        let err = client.get(&relay.url(), &s).await.unwrap_err();
        assert!(err.is_transient());
        assert_eq!(err.http_status(), Some(status));
        assert_eq!(err.retry_after(), Some(Duration::from_secs(seconds)));
    }
}

#[tokio::test]
async fn what_a_restarting_proxy_answers_with_200_is_transient() {
    let relay = RelayEmulator::start().await;
    let ok_with = |body: &str| FaultRule::status("/", 200).body(body).times(1);
    let cases = [
        (FaultRule::garbage("/").times(1), "an html page, not json"),
        (FaultRule::truncated("/").times(1), "invalid json ("),
        (ok_with(""), "empty body"),
        (ok_with("Bad Gateway"), "invalid json ("),
        (
            ok_with(r#"{"success":false,"error":"restarting"}"#),
            "relay refused: restarting",
        ),
        (ok_with(r#"{"data":{"a":1}}"#), "relay refused"),
    ];
    let client = client();
    for (rule, message) in cases {
        for put in [false, true] {
            relay.fail(rule.clone());
            let err = if put {
                client
                    .put(&relay.url(), &soul("abc:1"), map(json!({"a": 1})))
                    .await
            } else {
                client.get(&relay.url(), &soul("abc:1")).await.map(|_| ())
            }
            .unwrap_err();
            assert!(err.is_transient(), "{err}");
            assert!(err.to_string().contains(message), "{err}");
        }
    }
}

#[tokio::test]
async fn a_success_envelope_of_the_wrong_shape_is_permanent() {
    let relay = RelayEmulator::start().await;
    relay.fail(FaultRule::status("/get", 200).body(r#"{"success":true,"data":"text"}"#));
    let err = client()
        .get(&relay.url(), &soul("abc:1"))
        .await
        .unwrap_err();
    assert!(matches!(err, RelayError::Malformed { .. }), "{err}");
    assert!(!err.is_transient());
    assert!(
        err.to_string()
            .ends_with("malformed answer: node data is a string, not an object"),
        "{err}"
    );
}

#[tokio::test]
async fn oversized_body_stops_at_the_cap() {
    let relay = RelayEmulator::start().await;
    relay.fail(FaultRule::huge_body("/get", 50 * 1024 * 1024));
    let client = client_with(RelayOptions {
        timeout: Duration::from_secs(10),
        max_response_bytes: 1024 * 1024,
        ..RelayOptions::default()
    });
    let err = client.get(&relay.url(), &soul("abc:1")).await.unwrap_err();
    assert!(
        matches!(
            err,
            RelayError::TooLarge {
                limit: 1_048_576,
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.is_transient());
    assert!(
        err.to_string()
            .starts_with("get abc:1: response larger than")
    );
}

#[tokio::test]
async fn slow_relays_time_out_as_transient() {
    let relay = RelayEmulator::start().await;
    relay.fail(FaultRule::delay("/get", Duration::from_secs(3)).times(1));
    relay.fail(FaultRule::slow_drip("/get", Duration::from_millis(50)).times(1));
    let client = client_with(RelayOptions {
        timeout: Duration::from_millis(300),
        ..RelayOptions::default()
    });
    for _ in 0..2 {
        let err = client.get(&relay.url(), &soul("abc:1")).await.unwrap_err();
        assert!(matches!(err, RelayError::Timeout { .. }), "{err}");
        assert!(err.is_transient());
        assert_eq!(err.http_status(), None);
    }
}

#[tokio::test]
async fn connection_reset_and_refused_are_transient() {
    let relay = RelayEmulator::start().await;
    relay.fail(FaultRule::reset("/get").times(1));
    let client = client();
    let err = client.get(&relay.url(), &soul("abc:1")).await.unwrap_err();
    assert!(err.is_transient(), "{err}");

    let gone = relay.url();
    relay.shutdown().await;
    let err = client.get(&gone, &soul("abc:1")).await.unwrap_err();
    assert!(matches!(err, RelayError::Transport { .. }), "{err}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn in_flight_requests_are_bounded_by_the_semaphore() {
    let relay = RelayEmulator::start().await;
    relay.fail(FaultRule::delay("/get", Duration::from_millis(100)));
    let client = client_with(RelayOptions {
        timeout: Duration::from_secs(5),
        concurrency: 2,
        ..RelayOptions::default()
    });
    let peer = relay.url();
    let souls: Vec<Soul> = (0..8).map(|i| soul(&format!("abc:{i}"))).collect();
    let gets = souls.iter().map(|s| client.get(&peer, s));
    for result in futures::future::join_all(gets).await {
        assert!(result.unwrap().is_none());
    }
    assert_eq!(relay.count("GET", "/get"), 8);
    assert!(
        relay.log().max_in_flight() <= 2,
        "{}",
        relay.log().max_in_flight()
    );
}

#[tokio::test]
async fn sibling_links_are_fetched_concurrently() {
    let relay = RelayEmulator::start_with(Flavour::PlainGun).await;
    let s = soul("abc:wide");
    let children: Map<String, Value> = (0..6).map(|i| (format!("k{i}"), json!({"v": i}))).collect();
    relay.put(s.as_str(), Value::Object(children)).unwrap();
    relay.fail(FaultRule::delay("/get", Duration::from_millis(150)));
    let node = client()
        .get_resolved(&relay.url(), &s, 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(node.fields().len(), 6);
    assert_eq!(node.get("k3"), Some(&json!({"v": 3})));
    assert!(relay.log().max_in_flight() >= 2, "links fetched one by one");
}

/// `count` small nodes `<prefix><i>`, and the links to them keyed `l<i>`.
fn seed_targets(relay: &RelayEmulator, prefix: &str, count: usize, pad: usize) -> Value {
    let mut links = Map::new();
    for i in 0..count {
        let target = format!("{prefix}{i}");
        relay
            .put(&target, json!({"i": i, "pad": "x".repeat(pad)}))
            .unwrap();
        links.insert(format!("l{i}"), json!({ "#": target }));
    }
    Value::Object(links)
}

/// The soul of every `GET /get` the relay received, in order.
fn requested_souls(relay: &RelayEmulator) -> Vec<String> {
    relay
        .requests()
        .into_iter()
        .filter(|r| r.path == "/get")
        .filter_map(|r| {
            let query = r.query?;
            url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "soul")
                .map(|(_, v)| v.into_owned())
        })
        .collect()
}

fn assert_over_budget(err: &RelayError, budget: Budget, limit: usize) {
    assert!(
        matches!(err, RelayError::OverBudget { budget: b, limit: l, .. } if *b == budget && *l == limit),
        "{err:?}"
    );
    assert!(!err.is_transient(), "{err}");
    assert!(
        err.to_string()
            .ends_with(&format!("record exceeds its budget of {limit} {budget}")),
        "{err}"
    );
}

#[tokio::test]
async fn a_record_whose_data_links_back_to_itself_is_fetched_once() {
    for flavour in FLAVOURS {
        let relay = RelayEmulator::start_with(flavour).await;
        let s = "abc123def456:hostile";
        let links: Map<String, Value> = (0..10)
            .map(|i| (format!("l{i}"), json!({ "#": s })))
            .collect();
        relay
            .put(
                s,
                json!({"pad": "x".repeat(300 * 1024), "oip": post_oip(), "data": links}),
            )
            .unwrap();
        let record = client()
            .read_record(&relay.url(), &soul(s))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.data, Some(json!({})), "{flavour:?}");
        assert_eq!(record.oip.as_ref().unwrap()["creator"]["publicKey"], "pk");
        // Each node of the record (itself, data, oip, oip.creator) at most once.
        let souls = requested_souls(&relay);
        let distinct: std::collections::HashSet<&String> = souls.iter().collect();
        assert_eq!(distinct.len(), souls.len(), "{flavour:?}: {souls:?}");
        assert!(souls.len() <= relay.node_count(), "{flavour:?}: {souls:?}");
    }
}

#[tokio::test]
async fn a_record_fanning_out_past_its_node_budget_fails_within_the_budget() {
    for flavour in FLAVOURS {
        let relay = RelayEmulator::start_with(flavour).await;
        let links = seed_targets(&relay, "abc:n", DEFAULT_RECORD_MAX_NODES + 44, 0);
        relay
            .put("abc:wide", json!({"oip": post_oip(), "data": links}))
            .unwrap();
        let err = client()
            .read_record(&relay.url(), &soul("abc:wide"))
            .await
            .unwrap_err();
        assert_over_budget(&err, Budget::Nodes, DEFAULT_RECORD_MAX_NODES);
        let gets = relay.count("GET", "/get");
        assert!(gets <= DEFAULT_RECORD_MAX_NODES, "{flavour:?}: {gets}");
    }
}

#[tokio::test]
async fn a_chain_longer_than_the_node_budget_stops_at_the_budget() {
    let relay = RelayEmulator::start_with(Flavour::PlainGun).await;
    let length = DEFAULT_RECORD_MAX_NODES + 44;
    for i in 0..length {
        relay
            .put(
                &format!("abc:c{i}"),
                json!({"i": i, "next": {"#": format!("abc:c{}", i + 1)}}),
            )
            .unwrap();
    }
    let err = client()
        .get_resolved(&relay.url(), &soul("abc:c0"), length)
        .await
        .unwrap_err();
    assert_over_budget(&err, Budget::Nodes, DEFAULT_RECORD_MAX_NODES);
    assert_eq!(relay.count("GET", "/get"), DEFAULT_RECORD_MAX_NODES);
}

#[tokio::test]
async fn a_record_past_its_byte_budget_fails_and_stops_fetching() {
    let node_bytes = 100 * 1024;
    let children = 100;
    let concurrency = 4;
    for flavour in FLAVOURS {
        let relay = RelayEmulator::start_with(flavour).await;
        let links = seed_targets(&relay, "abc:big", children, node_bytes);
        relay
            .put("abc:heavy", json!({"oip": post_oip(), "data": links}))
            .unwrap();
        let err = client_with(RelayOptions {
            timeout: Duration::from_secs(5),
            concurrency,
            ..RelayOptions::default()
        })
        .read_record(&relay.url(), &soul("abc:heavy"))
        .await
        .unwrap_err();
        assert_over_budget(&err, Budget::Bytes, DEFAULT_RECORD_MAX_BYTES);
        // The record, its data child, the children that fit, the one that tipped the sum over
        // and at most one more in flight per permit: far fewer than all of them.
        let bound = 2 + DEFAULT_RECORD_MAX_BYTES / node_bytes + 1 + concurrency;
        let gets = relay.count("GET", "/get");
        assert!(
            gets <= bound && gets < children,
            "{flavour:?}: {gets} > {bound}"
        );
    }
}

#[tokio::test]
async fn list_pages_records_of_a_publisher() {
    let relay = RelayEmulator::start().await;
    for i in 0..5 {
        relay
            .seed_record(&format!("aaa:r{i}"), "post", json!({"i": i}), post_oip())
            .unwrap();
    }
    relay
        .seed_record("bbb:r0", "image", json!({}), post_oip())
        .unwrap();
    let client = client();
    let page = client.list(&relay.url(), "aaa", 2, 1).await.unwrap();
    let souls: Vec<&str> = page.iter().map(|r| r.soul.as_str()).collect();
    assert_eq!(souls, vec!["aaa:r1", "aaa:r2"]);
    assert_eq!(page[0].record_type.as_deref(), Some("post"));
    assert_eq!(page[0].data["data"], json!({"i": 1}));

    let http = reqwest::Client::new();
    let missing = http
        .get(relay.url().join("list").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 400);
}

#[tokio::test]
async fn emulator_serves_a_large_type_index() {
    let relay = RelayEmulator::start().await;
    let count = 10_000;
    for i in 0..count {
        relay
            .seed_record(
                &format!("abcdef012345:r{i}"),
                "post",
                json!({"i": i}),
                post_oip(),
            )
            .unwrap();
    }
    let client = client();
    let index = client
        .read_type_index(&relay.url(), DEFAULT_REGISTRY_ROOT, "post")
        .await
        .unwrap();
    assert_eq!(index.souls.len(), count);
    let record = client
        .read_record(&relay.url(), &index.souls[count / 2])
        .await
        .unwrap()
        .unwrap();
    assert!(!record.deleted);
}

// Streamed index and registry reads.

const INDEX: &str = "oip:registry:index:post";
const REGISTRY: &str = "oip:deleted:records:index";

/// Every batch of an index stream, checking that none holds more than `batch` entries.
async fn all_batches(stream: IndexStream, batch: usize) -> IndexBatch {
    let batches: Vec<IndexBatch> = stream.try_collect().await.unwrap();
    let mut all = IndexBatch::default();
    for one in batches {
        assert!(one.entries.len() + one.rejected.len() <= batch, "{one:?}");
        all.entries.extend(one.entries);
        all.rejected.extend(one.rejected);
    }
    all.entries.sort_by(|a, b| a.soul.cmp(&b.soul));
    all.rejected.sort();
    all
}

async fn stream_index(client: &RelayClient, relay: &RelayEmulator, batch: usize) -> IndexBatch {
    let stream = client
        .stream_type_index(&relay.url(), DEFAULT_REGISTRY_ROOT, "post", batch)
        .await
        .unwrap()
        .expect("the index exists");
    all_batches(stream, batch).await
}

fn entry(soul_: &str, timestamp: Option<i64>) -> IndexEntry {
    IndexEntry {
        soul: soul(soul_),
        timestamp,
    }
}

#[tokio::test]
async fn a_missing_index_or_registry_streams_as_none() {
    let relay = RelayEmulator::start().await;
    let client = client();
    let index = client
        .stream_type_index(&relay.url(), DEFAULT_REGISTRY_ROOT, "recipe", 10)
        .await
        .unwrap();
    assert!(index.is_none());
    assert!(
        client
            .stream_deletion_registry(&relay.url(), 10)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn index_entries_count_only_when_they_name_their_own_soul() {
    for flavour in FLAVOURS {
        let relay = RelayEmulator::start_with(flavour).await;
        relay
            .put(
                INDEX,
                json!({
                    "abc:1": {"soul": "abc:1", "nodeId": "n", "timestamp": 1_764_000_000_000_i64},
                    "abc:2": {"soul": "abc:2", "timestamp": 1.5},
                    // What OIP's lossy storage shows: a truncated key, a key one character short.
                    "c9e419bc832d:h:": {"soul": "c9e419bc832d:h:post-1"},
                    "c9e419bc832d:post-": {"soul": "c9e419bc832d:post-1"},
                    "abc:nosoul": {"nodeId": "n"},
                    "abc:scalar": "abc:scalar",
                    "abc:removed": null,
                    "oip:meta": {"soul": "oip:meta"},
                    "_hidden": {"soul": "_hidden"},
                }),
            )
            .unwrap();
        let all = stream_index(&client(), &relay, 2).await;
        assert_eq!(
            all.entries,
            vec![
                entry("abc:1", Some(1_764_000_000_000)),
                entry("abc:2", None)
            ],
            "{flavour:?}"
        );
        assert_eq!(
            all.rejected,
            vec![
                "abc:nosoul",
                "abc:scalar",
                "c9e419bc832d:h:",
                "c9e419bc832d:post-"
            ],
            "{flavour:?}"
        );
    }
}

#[tokio::test]
async fn link_entries_are_followed_to_nodes_that_must_name_their_soul() {
    let relay = RelayEmulator::start_with(Flavour::PlainGun).await;
    relay
        .put(
            INDEX,
            json!({
                "abc:1": {"soul": "abc:1", "timestamp": 7},
                "abc:2": {"soul": "abc:other"},
                "abc:3": {"#": "oip:registry:index:post/abc:3"},
                "abc:4": {"#": "abc:4"},
            }),
        )
        .unwrap();
    relay.put("abc:4", json!({"soul": "abc:4"})).unwrap();
    assert_eq!(
        relay.node(INDEX).unwrap()["abc:1"],
        json!({"#": "oip:registry:index:post/abc:1"})
    );
    let all = stream_index(&client(), &relay, 10).await;
    assert_eq!(all.entries, vec![entry("abc:1", Some(7))]);
    // abc:2 names another soul, abc:3's node does not exist, abc:4 links elsewhere.
    assert_eq!(all.rejected, vec!["abc:2", "abc:3", "abc:4"]);
    let fetched = requested_souls(&relay);
    assert!(!fetched.contains(&"abc:4".to_owned()), "{fetched:?}");
    assert!(fetched.contains(&"oip:registry:index:post/abc:3".to_owned()));
}

#[tokio::test]
async fn entries_wrapped_under_data_count_in_both_flavours() {
    for flavour in FLAVOURS {
        let relay = RelayEmulator::start_with(flavour).await;
        relay
            .put(
                INDEX,
                json!({
                    "abc:1": {"soul": "abc:1"},
                    "data": {"abc:2": {"soul": "abc:2"}, "abc:3": {"soul": "abc:3"}, "abc:4": null},
                }),
            )
            .unwrap();
        let all = stream_index(&client(), &relay, 10).await;
        let souls: Vec<&str> = all.entries.iter().map(|e| e.soul.as_str()).collect();
        assert_eq!(souls, vec!["abc:1", "abc:2", "abc:3"], "{flavour:?}");
        assert!(all.rejected.is_empty(), "{flavour:?}: {:?}", all.rejected);

        let index = client()
            .read_type_index(&relay.url(), DEFAULT_REGISTRY_ROOT, "post")
            .await
            .unwrap();
        assert_eq!(index.souls.len(), 3, "{flavour:?}");
    }
}

#[tokio::test]
async fn an_index_past_max_index_bytes_ends_with_too_large() {
    let relay = RelayEmulator::start().await;
    relay
        .seed_entries(
            INDEX,
            (0..2_000).map(|i| {
                let s = format!("abc:r{i:05}");
                (s.clone(), json!({ "soul": s }))
            }),
        )
        .unwrap();
    let limit = 16 * 1024;
    let client = client_with(RelayOptions {
        timeout: Duration::from_secs(5),
        max_index_bytes: limit,
        ..RelayOptions::default()
    });
    let stream = client
        .stream_type_index(&relay.url(), DEFAULT_REGISTRY_ROOT, "post", 100)
        .await
        .unwrap()
        .unwrap();
    let items: Vec<Result<IndexBatch, RelayError>> = stream.collect().await;
    let (last, before) = items.split_last().unwrap();
    assert!(before.iter().all(Result::is_ok));
    let err = last.as_ref().unwrap_err();
    assert!(
        matches!(err, RelayError::TooLarge { limit: l, .. } if *l == limit),
        "{err}"
    );
    assert!(!err.is_transient());
    // The max_response_bytes of a single node does not apply to index reads.
    let small_nodes = client_with(RelayOptions {
        max_response_bytes: 1024,
        ..RelayOptions::default()
    });
    assert_eq!(
        stream_index(&small_nodes, &relay, 500).await.entries.len(),
        2_000
    );
}

#[tokio::test]
async fn index_answers_that_are_not_the_envelope_or_stall_fail_as_transient() {
    let relay = RelayEmulator::start().await;
    relay
        .put(INDEX, json!({"abc:1": {"soul": "abc:1"}}))
        .unwrap();
    relay.fail(FaultRule::garbage("/get").times(1));
    relay.fail(FaultRule::slow_drip("/get", Duration::from_millis(50)).times(1));
    let client = client_with(RelayOptions {
        timeout: Duration::from_millis(500),
        ..RelayOptions::default()
    });
    for expected in ["an html page", "did not answer within"] {
        let stream = client
            .stream_type_index(&relay.url(), DEFAULT_REGISTRY_ROOT, "post", 10)
            .await
            .unwrap()
            .unwrap();
        let items: Vec<_> = stream.collect().await;
        let err = items.last().unwrap().as_ref().unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(err.to_string().contains(expected), "{err}");
    }
    assert_eq!(stream_index(&client, &relay, 10).await.entries.len(), 1);
}

/// Counts the bodies a test relay is still sending.
struct OpenBody(Arc<AtomicUsize>);

impl OpenBody {
    fn new(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::SeqCst);
        Self(open.clone())
    }
}

impl Drop for OpenBody {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A relay whose type index never ends, and how many of its bodies are still being sent.
async fn endless_index_relay() -> (EmulatorServer, Arc<AtomicUsize>) {
    let open = Arc::new(AtomicUsize::new(0));
    let counter = open.clone();
    let answer = move || {
        let body = OpenBody::new(&counter);
        async move {
            let head = stream::once(async { Bytes::from_static(br#"{"success":true,"data":{"#) });
            let entries = stream::iter(0u64..).map(move |i| {
                let _sending = &body;
                Bytes::from(format!(r#""abc:{i}":{{"soul":"abc:{i}"}},"#))
            });
            Response::new(Body::from_stream(
                head.chain(entries).map(Ok::<_, Infallible>),
            ))
        }
    };
    let server = EmulatorServer::start(Router::new().route("/get", get(answer)))
        .await
        .unwrap();
    (server, open)
}

#[tokio::test]
async fn dropping_an_index_stream_stops_reading_its_body() {
    let (relay, open) = endless_index_relay().await;
    let client = client_with(RelayOptions {
        max_index_bytes: usize::MAX,
        ..RelayOptions::default()
    });
    let mut stream = client
        .stream_type_index(&relay.url(), DEFAULT_REGISTRY_ROOT, "post", 100)
        .await
        .unwrap()
        .unwrap();
    let first = stream.try_next().await.unwrap().unwrap();
    assert_eq!(first.entries.len(), 100);
    assert_eq!(open.load(Ordering::SeqCst), 1);
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(10);
    while open.load(Ordering::SeqCst) > 0 {
        assert!(
            Instant::now() < deadline,
            "the endless body is still being read"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_deletion_registry_streams_marked_dids_and_their_entries_read() {
    for flavour in FLAVOURS {
        let relay = RelayEmulator::start_with(flavour).await;
        let good = Did::parse("did:gun:647f79c2a338:post-1").unwrap();
        relay.seed_deletion(&good, "a publisher key").unwrap();
        relay
            .put(
                REGISTRY,
                json!({
                    "did:gun:647f79c2a338:post-2": {"deletedAt": 1},
                    "did:gun:bad soul": true,
                    "did:gun:abc:text": "yes",
                    "did:gun:abc:undone": false,
                    "did:gun:abc:removed": null,
                }),
            )
            .unwrap();
        let batches: Vec<RegistryBatch> = client()
            .stream_deletion_registry(&relay.url(), 1)
            .await
            .unwrap()
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert!(batches.iter().all(|b| b.dids.len() + b.rejected.len() == 1));
        let dids: Vec<&str> = batches
            .iter()
            .flat_map(|b| b.dids.iter().map(Did::as_str))
            .collect();
        assert_eq!(
            dids,
            vec!["did:gun:647f79c2a338:post-1", "did:gun:647f79c2a338:post-2"],
            "{flavour:?}"
        );
        let rejected: usize = batches.iter().map(|b| b.rejected.len()).sum();
        assert_eq!(rejected, 2, "{flavour:?}");

        let entry = client()
            .read_deletion_entry(&relay.url(), &good)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(entry.deleted_by.as_deref(), Some("a publisher key"));
        assert_eq!(entry.did.as_deref(), Some(good.as_str()));
        assert!(entry.deleted_at.is_some_and(|at| at > 1_700_000_000_000));
        let other = Did::parse("did:gun:abc:none").unwrap();
        let none: Option<DeletionEntry> = client()
            .read_deletion_entry(&relay.url(), &other)
            .await
            .unwrap();
        assert_eq!(none, None);
    }
}

// Memory: RSS is one number per process, and this binary runs its tests on threads side by
// side, so each measurement runs alone in a fresh process of this binary.

/// Set in the child process a test runs alone in.
const ALONE: &str = "GUNSYNC_RELAY_TEST_ALONE";

/// Whether this process is the one to run `test`: true in the child started for it. Otherwise
/// run `test` alone in a fresh process of this test binary, show its output, require it passed.
fn alone(test: &str) -> bool {
    if std::env::var_os(ALONE).is_some() {
        return true;
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ALONE, "1")
        .output()
        .expect("run this test binary");
    print!("{}", String::from_utf8_lossy(&output.stdout));
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{test}, run alone, failed");
    false
}

/// This process's resident set size (`VmRSS`), in KiB.
fn rss_kib() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The size of the relay's answer to a get of `soul`, read chunk by chunk and dropped.
async fn answer_bytes(relay: &RelayEmulator, soul: &str) -> usize {
    let url = relay.url().join(&format!("get?soul={soul}")).unwrap();
    let mut response = reqwest::get(url).await.unwrap();
    let mut bytes = 0;
    while let Some(chunk) = response.chunk().await.unwrap() {
        bytes += chunk.len();
    }
    bytes
}

/// Stream `items` (the batches of one read), sampling RSS after each; print and check that the
/// peak stays under half the body it read.
async fn assert_flat<T, S>(
    what: &str,
    body: usize,
    batches: S,
    count: impl Fn(&T) -> usize,
) -> usize
where
    S: futures::Stream<Item = Result<T, RelayError>> + Unpin,
{
    let before = rss_kib();
    let mut peak = before;
    let mut total = 0;
    let mut batches = batches;
    while let Some(batch) = batches.try_next().await.unwrap() {
        total += count(&batch);
        peak = peak.max(rss_kib());
    }
    let after = rss_kib();
    println!(
        "{what}: body {} KiB; VmRSS before {before} KiB, peak {peak} KiB (+{} KiB), after {after} KiB",
        body / 1024,
        peak - before
    );
    assert!(
        (peak - before) * 1024 < body / 2,
        "{what}: memory grew with the body"
    );
    total
}

/// Start the blocking pool and its allocator arena with a tiny index, so that the measured read
/// pays for nothing but itself (a large warm-up would leave freed memory to hide growth in).
async fn warm_up(client: &RelayClient, relay: &RelayEmulator) {
    relay
        .put(
            "oip:registry:index:warmup",
            json!({"abc:1": {"soul": "abc:1"}}),
        )
        .unwrap();
    let stream = client
        .stream_type_index(&relay.url(), DEFAULT_REGISTRY_ROOT, "warmup", 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(all_batches(stream, 1).await.entries.len(), 1);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_100k_entry_type_index_streams_completely_in_flat_memory() {
    if !alone("a_100k_entry_type_index_streams_completely_in_flat_memory") {
        return;
    }
    runtime().block_on(async {
        let relay = RelayEmulator::start().await;
        let entries = 100_000;
        relay
            .seed_entries(
                INDEX,
                (0..entries).map(|i| {
                    let s = format!("abcdef012345:record-{i:06}");
                    let entry = json!({"soul": s, "nodeId": "emulator", "timestamp": 1_764_000_000_000_i64 + i});
                    (s, entry)
                }),
            )
            .unwrap();
        let body = answer_bytes(&relay, INDEX).await;
        let client = client();
        warm_up(&client, &relay).await;
        let batches = client
            .stream_type_index(&relay.url(), DEFAULT_REGISTRY_ROOT, "post", 1_000)
            .await
            .unwrap()
            .unwrap();
        let read = assert_flat("100k-entry type index", body, batches, |b: &IndexBatch| {
            assert!(b.entries.len() <= 1_000);
            b.entries.len()
        })
        .await;
        assert_eq!(read, entries as usize);
    });
}

#[test]
fn a_300k_entry_deletion_registry_streams_completely_in_flat_memory() {
    if !alone("a_300k_entry_deletion_registry_streams_completely_in_flat_memory") {
        return;
    }
    runtime().block_on(async {
        let relay = RelayEmulator::start().await;
        let dids = 300_000;
        relay
            .seed_entries(
                REGISTRY,
                (0..dids).map(|i| (format!("did:gun:abcdef012345:record-{i:06}"), json!(true))),
            )
            .unwrap();
        let body = answer_bytes(&relay, REGISTRY).await;
        let client = client();
        warm_up(&client, &relay).await;
        let batches = client
            .stream_deletion_registry(&relay.url(), 1_000)
            .await
            .unwrap()
            .unwrap();
        let read = assert_flat(
            "300k-entry deletion registry",
            body,
            batches,
            |b: &RegistryBatch| {
                assert!(b.dids.len() <= 1_000);
                b.dids.len()
            },
        )
        .await;
        assert_eq!(read, dids);
    });
}
