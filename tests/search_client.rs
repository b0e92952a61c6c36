//! `SearchClient` against the strict ES 8 emulator and small fake servers: the DESIGN §4
//! contract (delete 404 is done, no client-only query parameters), failure classification
//! (transient, systemic), capped and chunked bodies, redirects, auth and the concurrency cap.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::IntoResponse;
use gunsync::demo::es_doc_path;
use gunsync::emulator::es::EsEmulator;
use gunsync::emulator::faults::{Fault, FaultRule};
use gunsync::search::{
    DeleteOutcome, Refresh, SearchClient, SearchError, SearchOptions, TransportKind,
};
use gunsync::secret::Secret;
use serde_json::{Value, json};

const DID: &str = "did:gun:0123456789ab:post-1";
/// How the client puts `DID` in a path: `:` percent-encoded, one segment.
const DID_PATH: &str = "/records/_doc/did%3Agun%3A0123456789ab%3Apost-1";

fn options(es: &EsEmulator) -> SearchOptions {
    SearchOptions {
        url: es.url(),
        timeout: Duration::from_secs(10),
        ..SearchOptions::default()
    }
}

async fn start() -> (EsEmulator, SearchClient) {
    let es = EsEmulator::start().await.unwrap();
    let client = SearchClient::new(options(&es)).unwrap();
    (es, client)
}

fn client_for(url: url::Url) -> SearchClient {
    SearchClient::new(SearchOptions {
        url,
        timeout: Duration::from_secs(10),
        ..SearchOptions::default()
    })
    .unwrap()
}

fn record() -> Value {
    json!({
        "data": { "basic": { "name": "a post" } },
        "oip": { "did": DID, "didTx": DID, "storage": "gun", "recordType": "post" }
    })
}

/// Serve `router` on `127.0.0.1:<free port>` for the rest of the test.
async fn serve(router: axum::Router) -> url::Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    url
}

/// A fake ES that answers every request `status`, with a `Location` naming the same path under
/// `target` (none when `target` is `None`), and counts the requests it got.
async fn redirector(status: StatusCode, target: Option<url::Url>) -> (url::Url, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = hits.clone();
    let router = axum::Router::new().fallback(move |uri: Uri| {
        seen.fetch_add(1, Ordering::SeqCst);
        let location = target
            .as_ref()
            .map(|target| target.join(&uri.path()[1..]).unwrap().to_string());
        async move {
            let mut response = status.into_response();
            if let Some(location) = location {
                response
                    .headers_mut()
                    .insert(header::LOCATION, location.parse().unwrap());
            }
            response
        }
    });
    (serve(router).await, hits)
}

fn transport_kind(err: &SearchError) -> Option<TransportKind> {
    match err {
        SearchError::Transport { kind, .. } => Some(*kind),
        _ => None,
    }
}

#[tokio::test]
async fn indexed_document_can_be_read_back() {
    let (es, client) = start().await;
    assert_eq!(client.get(DID).await.unwrap(), None);
    client.index(DID, &record(), Refresh::No).await.unwrap();
    assert_eq!(client.get(DID).await.unwrap(), Some(record()));
    assert!(client.exists(DID).await.unwrap());
    assert_eq!(es.doc("records", DID), Some(record()));
    assert_eq!(es.count("PUT", DID_PATH), 1);
}

#[tokio::test]
async fn ids_with_reserved_characters_stay_one_path_segment() {
    let (es, client) = start().await;
    let ids = [
        "did:gun:abc/def:1",
        "did:gun:abc:a/../b",
        "did:gun:abc:q?refresh=true&ignore=404",
        "did:gun:abc:frag#ment",
        "did:gun:abc:100%25",
        "did:gun:abc:two words+plus",
    ];
    for id in ids {
        client.index(id, &record(), Refresh::No).await.unwrap();
        assert_eq!(es.doc("records", id), Some(record()), "{id}");
        assert_eq!(client.get(id).await.unwrap(), Some(record()), "{id}");
        let last = es.requests().pop().unwrap();
        assert_eq!(last.path, es_doc_path("records", id), "{id}");
        assert_eq!(last.query, None, "{id}");
    }
    assert_eq!(es.doc_count("records"), ids.len());
    for id in ids {
        assert_eq!(client.delete(id).await.unwrap(), DeleteOutcome::Deleted);
    }
    assert_eq!(es.doc_count("records"), 0);
}

#[tokio::test]
async fn delete_of_existing_document_reports_deleted() {
    let (es, client) = start().await;
    es.put_doc("records", DID, record());
    assert_eq!(client.delete(DID).await.unwrap(), DeleteOutcome::Deleted);
    assert_eq!(es.doc_count("records"), 0);
    assert!(!client.exists(DID).await.unwrap());
}

#[tokio::test]
async fn delete_of_missing_document_counts_as_done() {
    let (es, client) = start().await;
    // Missing index: ES answers 404 index_not_found_exception; the document is not there either.
    assert_eq!(client.delete(DID).await.unwrap(), DeleteOutcome::NotFound);
    es.put_doc("records", "did:gun:other:1", json!({}));
    assert_eq!(client.delete(DID).await.unwrap(), DeleteOutcome::NotFound);
    assert_eq!(es.doc_count("records"), 1);
}

#[tokio::test]
async fn the_strict_emulator_never_sees_a_query_parameter_but_refresh() {
    let (es, client) = start().await;
    let mut url = es.url().join(&DID_PATH[1..]).unwrap();
    url.set_query(Some("ignore=404"));
    let rejected = reqwest::Client::new().delete(url).send().await.unwrap();
    assert_eq!(rejected.status(), 400);
    let body: Value = rejected.json().await.unwrap();
    assert_eq!(body["error"]["type"], "illegal_argument_exception");
    assert_eq!(
        body["error"]["reason"],
        format!("request [{DID_PATH}] contains unrecognized parameter: [ignore]")
    );
    es.log().clear();

    client.index(DID, &record(), Refresh::No).await.unwrap();
    client
        .index(DID, &record(), Refresh::WaitFor)
        .await
        .unwrap();
    client.get(DID).await.unwrap();
    client.exists(DID).await.unwrap();
    client.delete(DID).await.unwrap();
    client.delete(DID).await.unwrap();
    client.get(DID).await.unwrap();
    client.exists(DID).await.unwrap();
    client.ping().await.unwrap();
    assert_eq!(client.cluster_health().await.unwrap(), "green");

    let queries: Vec<(String, Option<String>)> = es
        .requests()
        .into_iter()
        .map(|r| (r.method, r.query))
        .collect();
    let expected: Vec<(String, Option<String>)> = vec![
        ("PUT".into(), None),
        ("PUT".into(), Some("refresh=wait_for".into())),
        ("GET".into(), None),
        ("HEAD".into(), None),
        ("DELETE".into(), None),
        ("DELETE".into(), None),
        ("GET".into(), None),
        ("HEAD".into(), None),
        ("HEAD".into(), None),
        ("GET".into(), None),
    ];
    assert_eq!(queries, expected);
    assert!(
        es.requests()
            .iter()
            .all(|r| r.status < 400 || r.status == 404)
    );
}

#[tokio::test]
async fn server_error_is_transient_with_its_status_and_not_systemic() {
    let (es, client) = start().await;
    es.fail_next(1, 500);
    let err = client.delete(DID).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(!err.is_systemic(), "{err}");
    assert_eq!(err.http_status(), Some(500));
    assert_eq!(err.retry_after(), None);
    assert_eq!(
        err.to_string(),
        format!(
            "delete {DID}: elasticsearch answered 500: emulated_failure_exception: injected by the test"
        )
    );
    assert_eq!(client.delete(DID).await.unwrap(), DeleteOutcome::NotFound);
}

#[tokio::test]
async fn unavailable_with_retry_after_is_transient_with_that_delay() {
    let (es, client) = start().await;
    es.faults()
        .add(FaultRule::status("/records", 503).retry_after(7).times(1));
    let err = client.index(DID, &record(), Refresh::No).await.unwrap_err();
    assert!(err.is_transient());
    assert_eq!(err.http_status(), Some(503));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));

    es.faults()
        .add(FaultRule::status("/records", 429).retry_after(3).times(1));
    let err = client.get(DID).await.unwrap_err();
    assert!(err.is_transient());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
}

#[tokio::test]
async fn bad_request_is_permanent_and_names_the_es_reason() {
    let (es, client) = start().await;
    let body = json!({
        "error": {
            "root_cause": [{ "type": "illegal_argument_exception", "reason": "mapper [oip.indexedAt] cannot be changed from type [date] to [text]" }],
            "type": "illegal_argument_exception",
            "reason": "mapper [oip.indexedAt] cannot be changed from type [date] to [text]"
        },
        "status": 400
    });
    es.faults().add(
        FaultRule::status("/", 400)
            .method(Method::PUT)
            .body(body.to_string()),
    );
    let err = client.index(DID, &record(), Refresh::No).await.unwrap_err();
    assert!(!err.is_transient());
    assert!(!err.is_systemic());
    assert_eq!(err.http_status(), Some(400));
    let message = err.to_string();
    assert!(message.starts_with(&format!("index {DID}: elasticsearch answered 400: ")));
    assert!(
        message.contains("illegal_argument_exception: mapper [oip.indexedAt] cannot be changed")
    );
}

/// A 200 carrying `body` (not what Elasticsearch sends).
fn ok_with(body: &str) -> Fault {
    Fault::Status {
        status: 200,
        body: body.into(),
        retry_after: None,
        location: None,
    }
}

#[tokio::test]
async fn a_2xx_read_answer_that_is_not_elasticsearchs_is_transient() {
    let (es, client) = start().await;
    es.put_doc("records", DID, record());
    for fault in [
        Fault::Garbage,
        Fault::Truncated,
        ok_with(""),
        ok_with("<html><body>proxy restarting</body></html>"),
    ] {
        es.faults().add(FaultRule::new("/", fault.clone()).times(1));
        let err = client.get(DID).await.unwrap_err();
        assert!(
            matches!(err, SearchError::Malformed { .. }),
            "{fault:?}: {err:?}"
        );
        assert!(err.is_transient(), "{fault:?}");
        assert!(!err.is_systemic(), "{fault:?}");
        assert!(
            err.to_string()
                .starts_with(&format!("get {DID}: malformed response")),
            "{err}"
        );
    }
    // The next attempt reaches Elasticsearch.
    assert_eq!(client.get(DID).await.unwrap(), Some(record()));
}

#[tokio::test]
async fn a_write_success_without_an_elasticsearch_answer_is_not_believed_and_is_retried() {
    let (es, client) = start().await;
    let body = json!({"data": {}, "oip": {}});
    for fault in [
        Fault::Garbage,
        Fault::Truncated,
        // Chunked, JSON, but a document rather than a write's answer.
        Fault::HugeBody(1024),
        ok_with(r#"{"ok":true}"#),
        ok_with(""),
        ok_with("<html><body>502 bad gateway</body></html>"),
    ] {
        es.faults().add(FaultRule::new("/", fault.clone()).times(2));
        let err = client.index(DID, &body, Refresh::No).await.unwrap_err();
        assert!(
            matches!(err, SearchError::Malformed { .. }),
            "{fault:?}: {err:?}"
        );
        assert!(err.is_transient(), "{fault:?}");
        assert!(err.to_string().starts_with(&format!("index {DID}: ")));
        let err = client.delete(DID).await.unwrap_err();
        assert!(
            matches!(err, SearchError::Malformed { .. }),
            "{fault:?}: {err:?}"
        );
        assert!(err.is_transient(), "{fault:?}");
        assert!(err.to_string().starts_with(&format!("delete {DID}: ")));
    }
    // Nothing was stored: a job that took these for success would have lost the write.
    assert_eq!(es.doc_count("records"), 0);
    client.index(DID, &body, Refresh::No).await.unwrap();
    assert_eq!(client.delete(DID).await.unwrap(), DeleteOutcome::Deleted);
}

#[tokio::test]
async fn chunked_answers_of_unknown_length_are_read_and_believed() {
    let es = EsEmulator::start().await.unwrap().chunked_answers(true);
    let client = SearchClient::new(options(&es)).unwrap();
    // Larger than one chunk of the emulator, so the body arrives in several pieces.
    let doc = json!({ "data": { "text": "x".repeat(2000) }, "oip": { "did": DID } });

    client.index(DID, &doc, Refresh::WaitFor).await.unwrap();
    assert_eq!(client.get(DID).await.unwrap(), Some(doc.clone()));
    assert!(client.exists(DID).await.unwrap());
    client.ping().await.unwrap();
    assert_eq!(client.cluster_health().await.unwrap(), "green");
    assert_eq!(client.delete(DID).await.unwrap(), DeleteOutcome::Deleted);
    assert_eq!(client.delete(DID).await.unwrap(), DeleteOutcome::NotFound);

    // The answers above really had no length.
    let raw = reqwest::Client::new()
        .get(es.url().join("_cluster/health").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(raw.content_length(), None);
}

#[tokio::test]
async fn a_chunked_answer_over_the_cap_is_refused() {
    let es = EsEmulator::start().await.unwrap().chunked_answers(true);
    es.put_doc("records", DID, json!({ "pad": "x".repeat(4096) }));
    let small = SearchClient::new(SearchOptions {
        max_response_bytes: 1024,
        ..options(&es)
    })
    .unwrap();
    let err = small.get(DID).await.unwrap_err();
    assert!(matches!(err, SearchError::Oversized { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert_eq!(
        err.to_string(),
        format!(
            "get {DID}: elasticsearch response refused: body of unknown length exceeds the limit of 1024 bytes"
        )
    );
    let roomy = SearchClient::new(options(&es)).unwrap();
    assert!(roomy.get(DID).await.unwrap().is_some());
}

#[tokio::test]
async fn a_redirect_is_a_permanent_error_naming_its_location_and_is_never_followed() {
    let other = EsEmulator::start().await.unwrap();
    let (url, hits) = redirector(StatusCode::TEMPORARY_REDIRECT, Some(other.url())).await;
    let client = client_for(url);
    let location = other.url().join(&DID_PATH[1..]).unwrap().to_string();

    let index = client.index(DID, &record(), Refresh::No).await.unwrap_err();
    let delete = client.delete(DID).await.unwrap_err();
    for (op, err) in [("index", index), ("delete", delete)] {
        assert!(
            matches!(
                &err,
                SearchError::Redirect { status: 307, location: Some(l), .. } if *l == location
            ),
            "{err:?}"
        );
        assert!(!err.is_transient(), "{err}");
        assert_eq!(err.http_status(), Some(307));
        assert_eq!(
            err.to_string(),
            format!(
                "{op} {DID}: elasticsearch answered 307, a redirect to {location}: \
                 redirects are never followed"
            )
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert!(other.requests().is_empty(), "{:?}", other.requests());
    assert_eq!(other.doc_count("records"), 0);

    let (url, _) = redirector(StatusCode::MOVED_PERMANENTLY, None).await;
    let err = client_for(url).delete(DID).await.unwrap_err();
    assert!(
        err.to_string().ends_with(
            "elasticsearch answered 301, a redirect with no Location: redirects are never followed"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn unauthorized_and_forbidden_are_systemic_until_the_credentials_are_fixed() {
    let es = EsEmulator::start()
        .await
        .unwrap()
        .with_auth("elastic", "right");
    let client = SearchClient::new(SearchOptions {
        username: Some("elastic".into()),
        password: Some(Secret::from("typo")),
        ..options(&es)
    })
    .unwrap();
    let err = client.index(DID, &record(), Refresh::No).await.unwrap_err();
    assert_eq!(err.http_status(), Some(401));
    assert!(err.is_systemic(), "{err}");
    assert!(!err.is_transient(), "{err}");

    // The cluster now accepts what the client sends: the same client succeeds.
    es.set_auth(Some(("elastic", "typo")));
    client.index(DID, &record(), Refresh::No).await.unwrap();

    es.faults().add(FaultRule::status("/", 403).times(1));
    let err = client.delete(DID).await.unwrap_err();
    assert_eq!(err.http_status(), Some(403));
    assert!(err.is_systemic(), "{err}");
    assert!(!err.is_transient(), "{err}");
}

#[tokio::test]
async fn connection_refused_is_transient_and_systemic() {
    let es = EsEmulator::start().await.unwrap();
    let url = es.url();
    es.shutdown().await;
    let err = client_for(url).ping().await.unwrap_err();
    assert_eq!(
        transport_kind(&err),
        Some(TransportKind::Connect),
        "{err:?}"
    );
    assert!(err.is_transient(), "{err:?}");
    assert!(err.is_systemic(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "ping: could not connect to elasticsearch: Connection refused (os error 111)"
    );
}

#[tokio::test]
async fn a_host_that_does_not_resolve_is_systemic() {
    // RFC 6761: `.invalid` never resolves.
    let client = client_for(url::Url::parse("http://gunsync-test.invalid:9200/").unwrap());
    let err = client.index(DID, &record(), Refresh::No).await.unwrap_err();
    assert_eq!(transport_kind(&err), Some(TransportKind::Dns), "{err:?}");
    assert!(err.is_systemic(), "{err:?}");
    assert!(err.is_transient(), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!(
            "index {DID}: could not resolve the elasticsearch host gunsync-test.invalid: "
        )),
        "{err}"
    );
}

#[tokio::test]
async fn a_failed_tls_handshake_is_systemic() {
    // An https URL pointing at a plain-HTTP server: the handshake reads an HTTP answer.
    let es = EsEmulator::start().await.unwrap();
    let mut url = es.url();
    url.set_scheme("https").unwrap();
    let err = client_for(url).get(DID).await.unwrap_err();
    assert_eq!(transport_kind(&err), Some(TransportKind::Tls), "{err:?}");
    assert!(err.is_systemic(), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!(
            "get {DID}: tls handshake with elasticsearch failed: "
        )),
        "{err}"
    );
}

#[tokio::test]
async fn connection_reset_is_transient_and_not_systemic() {
    let (es, client) = start().await;
    es.faults().add(FaultRule::reset("/").times(1));
    let err = client.delete(DID).await.unwrap_err();
    assert_eq!(transport_kind(&err), Some(TransportKind::Reset), "{err:?}");
    assert!(err.is_transient());
    assert!(!err.is_systemic());
    assert_eq!(err.http_status(), None);
    assert_eq!(
        err.to_string(),
        format!(
            "delete {DID}: elasticsearch connection failed: connection closed before message completed"
        )
    );
    assert_eq!(client.delete(DID).await.unwrap(), DeleteOutcome::NotFound);
}

#[tokio::test]
async fn timeout_is_transient() {
    let es = EsEmulator::start().await.unwrap();
    let client = SearchClient::new(SearchOptions {
        timeout: Duration::from_millis(200),
        ..options(&es)
    })
    .unwrap();
    es.faults()
        .add(FaultRule::delay("/", Duration::from_secs(5)).times(1));
    let err = client.exists(DID).await.unwrap_err();
    assert_eq!(
        transport_kind(&err),
        Some(TransportKind::Timeout),
        "{err:?}"
    );
    assert!(err.is_transient(), "{err:?}");
    assert!(!err.is_systemic(), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("exists {DID}: elasticsearch did not answer within 200ms")
    );

    // The timeout covers the body too: a body that stalls is cut off.
    es.faults()
        .add(FaultRule::slow_drip("/", Duration::from_millis(20)).times(1));
    let err = client.get(DID).await.unwrap_err();
    assert_eq!(
        transport_kind(&err),
        Some(TransportKind::Timeout),
        "{err:?}"
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn huge_body_is_refused_at_the_limit_without_reading_it_all() {
    let (es, client) = start().await;
    // A terabyte without Content-Length: reading it all would hit the 10 s timeout (or memory).
    es.faults().add(FaultRule::huge_body("/", 1 << 40).times(1));
    let err = client.get(DID).await.unwrap_err();
    assert!(matches!(err, SearchError::Oversized { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert!(
        err.to_string()
            .ends_with("body of unknown length exceeds the limit of 16777216 bytes"),
        "{err}"
    );

    let small = SearchClient::new(SearchOptions {
        max_response_bytes: 1024,
        ..options(&es)
    })
    .unwrap();
    let big_doc = json!({ "pad": "x".repeat(4096) });
    es.put_doc("records", DID, big_doc.clone());
    let err = small.get(DID).await.unwrap_err();
    assert!(matches!(err, SearchError::Oversized { .. }), "{err:?}");
    assert!(
        err.to_string().contains("exceed the limit of 1024"),
        "{err}"
    );
    assert_eq!(client.get(DID).await.unwrap(), Some(big_doc));

    // An error status with an oversized body keeps its classification, without the body.
    es.faults()
        .add(FaultRule::status("/", 502).body("e".repeat(4096)).times(1));
    let err = small.delete(DID).await.unwrap_err();
    assert!(err.is_transient());
    assert!(
        err.to_string()
            .contains("(body not read: 4096 bytes exceed"),
        "{err}"
    );
}

#[tokio::test]
async fn basic_auth_is_sent_and_the_password_never_shows_in_debug() {
    let es = EsEmulator::start()
        .await
        .unwrap()
        .with_auth("elastic", "s3cret-pa55");
    let anonymous = SearchClient::new(options(&es)).unwrap();
    let err = anonymous.ping().await.unwrap_err();
    assert_eq!(err.http_status(), Some(401));
    assert!(!err.is_transient());

    let options = SearchOptions {
        username: Some("elastic".into()),
        password: Some(Secret::from("s3cret-pa55")),
        ..options(&es)
    };
    let client = SearchClient::new(options.clone()).unwrap();
    client.index(DID, &record(), Refresh::No).await.unwrap();
    assert_eq!(client.get(DID).await.unwrap(), Some(record()));
    assert_eq!(client.delete(DID).await.unwrap(), DeleteOutcome::Deleted);

    for debug in [format!("{options:?}"), format!("{client:?}")] {
        assert!(!debug.contains("s3cret-pa55"), "{debug}");
        assert!(debug.contains("elastic"), "{debug}");
    }

    let in_url = SearchClient::new(SearchOptions {
        url: {
            let mut url = es.url();
            url.set_username("elastic").unwrap();
            url.set_password(Some("s3cret-pa55")).unwrap();
            url
        },
        ..SearchOptions::default()
    })
    .unwrap();
    in_url.ping().await.unwrap();
    assert!(!format!("{in_url:?}").contains("s3cret-pa55"));
}

#[tokio::test]
async fn in_flight_requests_never_exceed_the_concurrency_limit() {
    let es = EsEmulator::start().await.unwrap();
    es.faults()
        .add(FaultRule::delay("/", Duration::from_millis(150)));
    let run = |concurrency: usize| {
        let client = SearchClient::new(SearchOptions {
            concurrency,
            ..options(&es)
        })
        .unwrap();
        async move {
            let calls = (0..8).map(|i| {
                let client = client.clone();
                async move {
                    let did = format!("did:gun:abc:{i}");
                    client.index(&did, &record(), Refresh::No).await
                }
            });
            for result in futures::future::join_all(calls).await {
                result.unwrap();
            }
        }
    };

    run(2).await;
    assert_eq!(es.log().max_in_flight(), 2);
    assert_eq!(es.doc_count("records"), 8);

    // The same load without the limit does overlap, so the measurement above means something.
    es.log().clear();
    run(8).await;
    assert!(es.log().max_in_flight() > 2, "{}", es.log().max_in_flight());
}

/// A bare ES stand-in that answers every document GET with the request's `Accept-Encoding`, and
/// records the client port of each request (one port = one connection).
async fn connection_recorder() -> (url::Url, Arc<Mutex<Vec<u16>>>) {
    let ports = Arc::new(Mutex::new(Vec::new()));
    let seen = ports.clone();
    let router = axum::Router::new().route(
        "/records/_doc/{id}",
        axum::routing::get(
            move |ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap| {
                seen.lock().unwrap().push(peer.port());
                async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let encoding = headers
                        .get("accept-encoding")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    axum::Json(json!({ "found": true, "_source": { "accept_encoding": encoding } }))
                }
            },
        ),
    );
    (serve(router).await, ports)
}

#[tokio::test]
async fn connections_are_reused_never_exceed_concurrency_and_ask_for_plain_bodies() {
    let (url, ports) = connection_recorder().await;
    let client = SearchClient::new(SearchOptions {
        url,
        concurrency: 2,
        ..SearchOptions::default()
    })
    .unwrap();
    let calls = (0..20).map(|i| {
        let client = client.clone();
        async move { client.get(&format!("did:gun:abc:{i}")).await }
    });
    for result in futures::future::join_all(calls).await {
        // Identity encoding: ES must not gzip, so every body is read as sent, within the cap.
        assert_eq!(
            result.unwrap(),
            Some(json!({ "accept_encoding": "identity" }))
        );
    }
    let ports = ports.lock().unwrap();
    assert_eq!(ports.len(), 20);
    let connections: HashSet<u16> = ports.iter().copied().collect();
    assert!(connections.len() <= 2, "{} connections", connections.len());
}

#[tokio::test]
async fn at_most_four_idle_connections_are_kept() {
    let (url, ports) = connection_recorder().await;
    let client = SearchClient::new(SearchOptions {
        url,
        concurrency: 8,
        ..SearchOptions::default()
    })
    .unwrap();
    let burst = || async {
        let calls = (0..8).map(|i| {
            let client = client.clone();
            async move { client.get(&format!("did:gun:abc:{i}")).await }
        });
        for result in futures::future::join_all(calls).await {
            result.unwrap();
        }
        std::mem::take(&mut *ports.lock().unwrap())
            .into_iter()
            .collect::<HashSet<u16>>()
    };
    let first = burst().await;
    assert_eq!(
        first.len(),
        8,
        "eight requests at once open eight connections"
    );
    // Of those eight, at most four were kept idle: the next burst opens at least four more.
    let second = burst().await;
    let reopened = second.difference(&first).count();
    assert!(
        reopened >= 4,
        "only {reopened} new connections: {first:?} then {second:?}"
    );
}

#[test]
fn requests_are_counted_by_outcome() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    // A thread-local recorder sees the requests of a current-thread runtime on this thread.
    metrics::with_local_recorder(&recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (es, client) = start().await;
            client.index(DID, &record(), Refresh::No).await.unwrap();
            client.delete(DID).await.unwrap();
            client.delete(DID).await.unwrap();
            es.fail_next(1, 503);
            client.get(DID).await.unwrap_err();
            es.faults().add(FaultRule::reset("/").times(1));
            client.get(DID).await.unwrap_err();
            let (url, _) = redirector(StatusCode::TEMPORARY_REDIRECT, Some(es.url())).await;
            client_for(url).delete(DID).await.unwrap_err();
        });
    });
    let text = handle.render();
    for (outcome, count) in [
        ("ok", 2),
        ("not_found", 1),
        ("server_error", 1),
        ("transport_error", 1),
        ("redirect", 1),
    ] {
        let line =
            format!("gunsync_http_requests_total{{system=\"es\",outcome=\"{outcome}\"}} {count}");
        assert!(text.contains(&line), "missing {line} in\n{text}");
    }
}
