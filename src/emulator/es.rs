//! A strict in-process Elasticsearch 8 for tests and `gunsync demo`: the document APIs, `_count`,
//! `_refresh`, index creation, cluster info and health, in ES's response shapes. Strict as ES 8:
//! an unknown query parameter is a 400 `illegal_argument_exception` (DESIGN §4). Documents live in
//! memory; faults and the request log come from [`super::faults`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use futures::stream;
use serde_json::{Value, json};

use super::faults::{
    EmulatorServer, FaultRule, Faults, RecordedRequest, RequestLog, instrument, lock,
};

/// ES 8 accepts these on every endpoint ("common options").
const COMMON_PARAMS: &[&str] = &["pretty", "human", "error_trace", "filter_path"];

const DOC_PARAMS: &[&str] = &[
    "refresh",
    "routing",
    "timeout",
    "version",
    "version_type",
    "if_seq_no",
    "if_primary_term",
    "op_type",
    "pipeline",
    "require_alias",
    "wait_for_active_shards",
    "_source",
    "_source_includes",
    "_source_excludes",
    "stored_fields",
    "preference",
    "realtime",
];

const COUNT_PARAMS: &[&str] = &[
    "q",
    "df",
    "analyzer",
    "analyze_wildcard",
    "default_operator",
    "lenient",
    "ignore_unavailable",
    "allow_no_indices",
    "expand_wildcards",
    "ignore_throttled",
    "min_score",
    "preference",
    "routing",
    "terminate_after",
];

const REFRESH_PARAMS: &[&str] = &["ignore_unavailable", "allow_no_indices", "expand_wildcards"];

const CREATE_INDEX_PARAMS: &[&str] = &["wait_for_active_shards", "timeout", "master_timeout"];

const HEALTH_PARAMS: &[&str] = &[
    "level",
    "local",
    "master_timeout",
    "timeout",
    "wait_for_active_shards",
    "wait_for_nodes",
    "wait_for_events",
    "wait_for_no_relocating_shards",
    "wait_for_no_initializing_shards",
    "wait_for_status",
    "expand_wildcards",
];

/// ES refuses document ids longer than this many bytes.
const MAX_ID_BYTES: usize = 512;

/// Size of each chunk of a chunked answer ([`EsEmulator::set_chunked_answers`]).
const ANSWER_CHUNK: usize = 256;

#[derive(Clone, Debug)]
struct StoredDoc {
    source: Value,
    version: u64,
    seq_no: u64,
}

#[derive(Default, Debug)]
struct StoredIndex {
    docs: HashMap<String, StoredDoc>,
    next_seq_no: u64,
}

#[derive(Default, Debug)]
struct EsState {
    indices: Mutex<HashMap<String, StoredIndex>>,
    /// Expected `Authorization` header value and the user name, when auth is required.
    auth: Mutex<Option<(String, String)>>,
    /// Send answers chunked, without `Content-Length`.
    chunked: AtomicBool,
}

/// A running emulator on `127.0.0.1:<free port>`; stops when dropped or on [`shutdown`](Self::shutdown).
pub struct EsEmulator {
    server: EmulatorServer,
    state: Arc<EsState>,
    faults: Faults,
    log: RequestLog,
}

impl std::fmt::Debug for EsEmulator {
    // Not derived: the stored documents may be many.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EsEmulator")
            .field("url", &self.server.url().as_str())
            .finish_non_exhaustive()
    }
}

impl EsEmulator {
    /// Start an emulator with no index, no auth, no faults.
    ///
    /// # Errors
    /// When `127.0.0.1:0` cannot be bound.
    pub async fn start() -> std::io::Result<Self> {
        let state = Arc::new(EsState::default());
        let faults = Faults::new();
        let log = RequestLog::new();
        let router = Router::new().fallback(handle).with_state(state.clone());
        let server = EmulatorServer::start(instrument(router, faults.clone(), log.clone())).await?;
        Ok(Self {
            server,
            state,
            faults,
            log,
        })
    }

    /// Require basic auth with these credentials from now on (401 otherwise, as ES security).
    pub fn with_auth(self, username: &str, password: &str) -> Self {
        self.set_auth(Some((username, password)));
        self
    }

    /// Change the credentials later requests must carry (`None`: no auth required), e.g. to
    /// fix a wrong password while a client keeps running.
    pub fn set_auth(&self, credentials: Option<(&str, &str)>) {
        *lock(&self.state.auth) = credentials.map(|(username, password)| {
            let expected = format!(
                "Basic {}",
                base64(format!("{username}:{password}").as_bytes())
            );
            (expected, username.to_owned())
        });
    }

    /// Answer every later request chunked, without `Content-Length` (as ES behind some
    /// proxies does), in pieces of a few hundred bytes.
    pub fn chunked_answers(self, chunked: bool) -> Self {
        self.set_chunked_answers(chunked);
        self
    }

    /// [`chunked_answers`](Self::chunked_answers) on a running emulator.
    pub fn set_chunked_answers(&self, chunked: bool) {
        self.state.chunked.store(chunked, Ordering::Relaxed);
    }

    /// `http://127.0.0.1:<port>/`.
    pub fn url(&self) -> url::Url {
        self.server.url()
    }

    /// The fault rules applied before any request reaches the emulated ES.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The next `times` requests (any method and path) are answered `status` with an ES error body.
    pub fn fail_next(&self, times: u32, status: u16) {
        let body = error_body(status, "emulated_failure_exception", "injected by the test");
        self.faults.add(
            FaultRule::status("/", status)
                .body(body.to_string())
                .times(times),
        );
    }

    pub fn log(&self) -> &RequestLog {
        &self.log
    }

    /// Every request received so far, faulted ones included.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.log.all()
    }

    /// Requests received with this method under `path_prefix`.
    pub fn count(&self, method: &str, path_prefix: &str) -> usize {
        self.log.count(method, path_prefix)
    }

    /// The `_source` of a stored document.
    pub fn doc(&self, index: &str, id: &str) -> Option<Value> {
        lock(&self.state.indices)
            .get(index)
            .and_then(|i| i.docs.get(id))
            .map(|d| d.source.clone())
    }

    /// Documents stored in `index` (0 when it does not exist).
    pub fn doc_count(&self, index: &str) -> usize {
        lock(&self.state.indices)
            .get(index)
            .map_or(0, |i| i.docs.len())
    }

    /// Store a document directly (seeding a test), creating the index if needed.
    pub fn put_doc(&self, index: &str, id: &str, source: Value) {
        let mut indices = lock(&self.state.indices);
        store(indices.entry(index.to_owned()).or_default(), id, source);
    }

    /// Stop serving; open requests get at most 5 s to finish.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// Store or replace; returns the stored version and sequence number and whether it was created.
fn store(index: &mut StoredIndex, id: &str, source: Value) -> (u64, u64, bool) {
    let seq_no = index.next_seq_no;
    index.next_seq_no += 1;
    match index.docs.get_mut(id) {
        Some(doc) => {
            doc.source = source;
            doc.version += 1;
            doc.seq_no = seq_no;
            (doc.version, seq_no, false)
        }
        None => {
            index.docs.insert(
                id.to_owned(),
                StoredDoc {
                    source,
                    version: 1,
                    seq_no,
                },
            );
            (1, seq_no, true)
        }
    }
}

/// One request as the routing code sees it.
struct Call {
    method: Method,
    /// The raw (still percent-encoded) path, as ES quotes it in error reasons.
    raw_path: String,
    params: Vec<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
}

impl Call {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

async fn handle(
    State(state): State<Arc<EsState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = Call {
        method,
        raw_path: uri.path().to_owned(),
        params: parse_query(uri.query()),
        headers,
        body,
    };
    let mut response = authenticate(&state, &call).unwrap_or_else(|| route(&state, &call));
    response.headers_mut().insert(
        "x-elastic-product",
        HeaderValue::from_static("Elasticsearch"),
    );
    if call.method == Method::HEAD {
        *response.body_mut() = Body::empty();
    } else if state.chunked.load(Ordering::Relaxed) {
        response = into_chunks(response).await;
    }
    response
}

/// The same answer with its body streamed in [`ANSWER_CHUNK`]-byte pieces: hyper then sends it
/// with `Transfer-Encoding: chunked` and no `Content-Length`.
async fn into_chunks(response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(err) => {
            return es_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "emulator_exception",
                &format!("answer body: {err}"),
            );
        }
    };
    let pieces = (0..bytes.len())
        .step_by(ANSWER_CHUNK)
        .map(move |start| {
            Ok::<_, Infallible>(bytes.slice(start..bytes.len().min(start + ANSWER_CHUNK)))
        })
        .collect::<Vec<_>>();
    Response::from_parts(parts, Body::from_stream(stream::iter(pieces)))
}

/// `None` when the request may proceed, else the 401 to send.
fn authenticate(state: &EsState, call: &Call) -> Option<Response> {
    let auth = lock(&state.auth);
    let (expected, username) = auth.as_ref()?;
    let reason = match call.headers.get(header::AUTHORIZATION) {
        Some(given) if given.as_bytes() == expected.as_bytes() => return None,
        Some(_) => format!(
            "unable to authenticate user [{username}] for REST request [{}]",
            call.raw_path
        ),
        None => format!(
            "missing authentication credentials for REST request [{}]",
            call.raw_path
        ),
    };
    let mut response = es_error(StatusCode::UNAUTHORIZED, "security_exception", &reason);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Basic realm="security", charset="UTF-8""#),
    );
    Some(response)
}

fn route(state: &EsState, call: &Call) -> Response {
    let segments: Vec<String> = call
        .raw_path
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let m = &call.method;
    let (allowed, result): (&[&str], _) = match segments.as_slice() {
        [] if m == Method::GET || m == Method::HEAD => (&[], info as Handler),
        ["_cluster", "health"] if m == Method::GET => (HEALTH_PARAMS, health as Handler),
        [_, "_doc", _] if [Method::PUT, Method::POST].contains(m) => {
            (DOC_PARAMS, index_doc as Handler)
        }
        [_, "_doc", _] if m == Method::GET || m == Method::HEAD => (DOC_PARAMS, get_doc),
        [_, "_doc", _] if m == Method::DELETE => (DOC_PARAMS, delete_doc),
        [_, "_count"] if m == Method::GET || m == Method::POST => (COUNT_PARAMS, count),
        [_, "_refresh"] if m == Method::GET || m == Method::POST => (REFRESH_PARAMS, refresh),
        [index] if m == Method::PUT && !index.starts_with('_') => {
            (CREATE_INDEX_PARAMS, create_index)
        }
        [index] if m == Method::HEAD && !index.starts_with('_') => (&[], index_exists),
        _ => return no_handler(call),
    };
    if let Some(rejected) = check_params(call, allowed) {
        return rejected;
    }
    result(state, call, &segments)
}

type Handler = fn(&EsState, &Call, &[&str]) -> Response;

/// ES 8: `request [<path>] contains unrecognized parameter: [x]` (plural for several).
fn check_params(call: &Call, allowed: &[&str]) -> Option<Response> {
    let unknown: Vec<&str> = call
        .params
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !allowed.contains(k) && !COMMON_PARAMS.contains(k))
        .collect();
    if unknown.is_empty() {
        if let Some(value) = call.param("refresh")
            && !["", "true", "false", "wait_for"].contains(&value)
        {
            return Some(es_error(
                StatusCode::BAD_REQUEST,
                "illegal_argument_exception",
                &format!("Unknown value for refresh: [{value}]."),
            ));
        }
        return None;
    }
    let list = unknown
        .iter()
        .map(|k| format!("[{k}]"))
        .collect::<Vec<_>>()
        .join(", ");
    let noun = if unknown.len() == 1 {
        "parameter"
    } else {
        "parameters"
    };
    Some(es_error(
        StatusCode::BAD_REQUEST,
        "illegal_argument_exception",
        &format!(
            "request [{}] contains unrecognized {noun}: {list}",
            call.raw_path
        ),
    ))
}

fn no_handler(call: &Call) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({
            "error": format!("no handler found for uri [{}] and method [{}]", call.raw_path, call.method),
        }),
    )
}

fn info(_: &EsState, _: &Call, _: &[&str]) -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "name": "gunsync-emulator",
            "cluster_name": "gunsync-emulator",
            "cluster_uuid": "emulated-cluster-uuid-000000",
            "version": {
                "number": "8.15.0",
                "build_flavor": "default",
                "build_type": "docker",
                "lucene_version": "9.11.1",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0"
            },
            "tagline": "You Know, for Search"
        }),
    )
}

fn health(state: &EsState, _: &Call, _: &[&str]) -> Response {
    let indices = lock(&state.indices).len();
    json_response(
        StatusCode::OK,
        &json!({
            "cluster_name": "gunsync-emulator",
            "status": "green",
            "timed_out": false,
            "number_of_nodes": 1,
            "number_of_data_nodes": 1,
            "active_primary_shards": indices,
            "active_shards": indices,
            "relocating_shards": 0,
            "initializing_shards": 0,
            "unassigned_shards": 0,
            "delayed_unassigned_shards": 0,
            "number_of_pending_tasks": 0,
            "number_of_in_flight_fetch": 0,
            "task_max_waiting_in_queue_millis": 0,
            "active_shards_percent_as_number": 100.0
        }),
    )
}

fn index_doc(state: &EsState, call: &Call, segments: &[&str]) -> Response {
    let (index, id) = (segments[0], segments[2]);
    if let Some(rejected) = check_index_name(index).or_else(|| check_id(id)) {
        return rejected;
    }
    if let Some(rejected) = check_content_type(call) {
        return rejected;
    }
    if call.body.is_empty() {
        return es_error(
            StatusCode::BAD_REQUEST,
            "parse_exception",
            "request body is required",
        );
    }
    let source = match serde_json::from_slice::<Value>(&call.body) {
        Ok(source @ Value::Object(_)) => source,
        _ => {
            return es_error(
                StatusCode::BAD_REQUEST,
                "document_parsing_exception",
                "[1:1] failed to parse: the document is not a JSON object",
            );
        }
    };
    let mut indices = lock(&state.indices);
    let stored = indices.entry(index.to_owned()).or_default();
    if call.param("op_type") == Some("create") && stored.docs.contains_key(id) {
        return es_error(
            StatusCode::CONFLICT,
            "version_conflict_engine_exception",
            &format!("[{id}]: version conflict, document already exists"),
        );
    }
    let (version, seq_no, created) = store(stored, id, source);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    json_response(
        status,
        &json!({
            "_index": index,
            "_id": id,
            "_version": version,
            "result": if created { "created" } else { "updated" },
            "_shards": { "total": 2, "successful": 1, "failed": 0 },
            "_seq_no": seq_no,
            "_primary_term": 1
        }),
    )
}

fn get_doc(state: &EsState, _: &Call, segments: &[&str]) -> Response {
    let (index, id) = (segments[0], segments[2]);
    let indices = lock(&state.indices);
    let Some(stored) = indices.get(index) else {
        return index_not_found(index);
    };
    match stored.docs.get(id) {
        Some(doc) => json_response(
            StatusCode::OK,
            &json!({
                "_index": index,
                "_id": id,
                "_version": doc.version,
                "_seq_no": doc.seq_no,
                "_primary_term": 1,
                "found": true,
                "_source": doc.source
            }),
        ),
        None => json_response(
            StatusCode::NOT_FOUND,
            &json!({ "_index": index, "_id": id, "found": false }),
        ),
    }
}

fn delete_doc(state: &EsState, _: &Call, segments: &[&str]) -> Response {
    let (index, id) = (segments[0], segments[2]);
    let mut indices = lock(&state.indices);
    let Some(stored) = indices.get_mut(index) else {
        return index_not_found(index);
    };
    let seq_no = stored.next_seq_no;
    stored.next_seq_no += 1;
    let (status, result, version) = match stored.docs.remove(id) {
        Some(doc) => (StatusCode::OK, "deleted", doc.version + 1),
        None => (StatusCode::NOT_FOUND, "not_found", 1),
    };
    json_response(
        status,
        &json!({
            "_index": index,
            "_id": id,
            "_version": version,
            "result": result,
            "_shards": { "total": 2, "successful": 1, "failed": 0 },
            "_seq_no": seq_no,
            "_primary_term": 1
        }),
    )
}

fn count(state: &EsState, _: &Call, segments: &[&str]) -> Response {
    let index = segments[0];
    let indices = lock(&state.indices);
    let Some(stored) = indices.get(index) else {
        return index_not_found(index);
    };
    json_response(
        StatusCode::OK,
        &json!({
            "count": stored.docs.len(),
            "_shards": { "total": 1, "successful": 1, "skipped": 0, "failed": 0 }
        }),
    )
}

fn refresh(state: &EsState, _: &Call, segments: &[&str]) -> Response {
    let index = segments[0];
    if !lock(&state.indices).contains_key(index) {
        return index_not_found(index);
    }
    json_response(
        StatusCode::OK,
        &json!({ "_shards": { "total": 2, "successful": 1, "failed": 0 } }),
    )
}

fn create_index(state: &EsState, call: &Call, segments: &[&str]) -> Response {
    let index = segments[0];
    if let Some(rejected) = check_index_name(index) {
        return rejected;
    }
    if !call.body.is_empty() && serde_json::from_slice::<Value>(&call.body).is_err() {
        return es_error(
            StatusCode::BAD_REQUEST,
            "parse_exception",
            "request body must be a JSON object",
        );
    }
    let mut indices = lock(&state.indices);
    if indices.contains_key(index) {
        return es_error(
            StatusCode::BAD_REQUEST,
            "resource_already_exists_exception",
            &format!("index [{index}/emulated] already exists"),
        );
    }
    indices.insert(index.to_owned(), StoredIndex::default());
    json_response(
        StatusCode::OK,
        &json!({ "acknowledged": true, "shards_acknowledged": true, "index": index }),
    )
}

fn index_exists(state: &EsState, _: &Call, segments: &[&str]) -> Response {
    let status = if lock(&state.indices).contains_key(segments[0]) {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    json_response(status, &json!({}))
}

fn check_index_name(index: &str) -> Option<Response> {
    let reason = if index.chars().any(char::is_uppercase) {
        "must be lowercase"
    } else if index.starts_with(['_', '-', '+']) {
        "must not start with '_', '-', or '+'"
    } else if index.chars().any(|c| "\\/*?\"<>| ,#:".contains(c)) {
        "must not contain the following characters [ , \", *, \\, <, |, ,, >, /, ?, #, :]"
    } else {
        return None;
    };
    Some(es_error(
        StatusCode::BAD_REQUEST,
        "invalid_index_name_exception",
        &format!("Invalid index name [{index}], {reason}"),
    ))
}

fn check_id(id: &str) -> Option<Response> {
    (id.len() > MAX_ID_BYTES).then(|| {
        es_error(
            StatusCode::BAD_REQUEST,
            "illegal_argument_exception",
            &format!(
                "id [{id}] is too long, must be no longer than {MAX_ID_BYTES} bytes but was: {}",
                id.len()
            ),
        )
    })
}

/// ES answers 406 to a body whose declared type is not JSON.
fn check_content_type(call: &Call) -> Option<Response> {
    let value = call.headers.get(header::CONTENT_TYPE)?;
    let text = value.to_str().unwrap_or("");
    let essence = text.split(';').next().unwrap_or("").trim();
    let json_like = ["application/json", "application/x-ndjson"].contains(&essence)
        || (essence.starts_with("application/vnd.elasticsearch+") && essence.ends_with("json"));
    (!json_like).then(|| {
        json_response(
            StatusCode::NOT_ACCEPTABLE,
            &json!({
                "error": format!("Content-Type header [{text}] is not supported"),
                "status": 406
            }),
        )
    })
}

fn index_not_found(index: &str) -> Response {
    let cause = json!({
        "type": "index_not_found_exception",
        "reason": format!("no such index [{index}]"),
        "resource.type": "index_or_alias",
        "resource.id": index,
        "index_uuid": "_na_",
        "index": index
    });
    let mut error = cause.clone();
    error["root_cause"] = json!([cause]);
    json_response(
        StatusCode::NOT_FOUND,
        &json!({ "error": error, "status": 404 }),
    )
}

/// ES's error body: `{"error":{"root_cause":[{type,reason}],"type","reason"},"status"}`.
fn error_body(status: u16, kind: &str, reason: &str) -> Value {
    json!({
        "error": {
            "root_cause": [{ "type": kind, "reason": reason }],
            "type": kind,
            "reason": reason
        },
        "status": status
    })
}

fn es_error(status: StatusCode, kind: &str, reason: &str) -> Response {
    json_response(status, &error_body(status.as_u16(), kind, reason))
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(&key.replace('+', " ")),
                percent_decode(&value.replace('+', " ")),
            )
        })
        .collect()
}

/// `%XX` escapes decoded; invalid UTF-8 replaced rather than refused.
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("elastic:changeme", "ZWxhc3RpYzpjaGFuZ2VtZQ=="),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn query_strings_are_decoded() {
        assert_eq!(
            parse_query(Some("refresh=wait_for&a%20b=c+d&flag")),
            vec![
                ("refresh".into(), "wait_for".into()),
                ("a b".into(), "c d".into()),
                ("flag".into(), String::new()),
            ]
        );
        assert!(parse_query(None).is_empty());
    }

    #[tokio::test]
    async fn emulator_speaks_es_shapes_and_rejects_unknown_params() {
        let es = EsEmulator::start().await.unwrap();
        let http = reqwest::Client::new();
        let doc = es.url().join("records/_doc/did%3Agun%3Aabc%2F1").unwrap();

        let created = http
            .put(doc.clone())
            .json(&json!({"a": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        let body: Value = created.json().await.unwrap();
        assert_eq!(body["result"], "created");
        assert_eq!(body["_id"], "did:gun:abc/1");
        let updated = http
            .post(doc.clone())
            .json(&json!({"a": 2}))
            .send()
            .await
            .unwrap();
        assert_eq!(updated.status(), 200);
        assert_eq!(es.doc("records", "did:gun:abc/1"), Some(json!({"a": 2})));

        let got: Value = http
            .get(doc.clone())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(got["found"], true);
        assert_eq!(got["_source"], json!({"a": 2}));

        let mut bad = doc.clone();
        bad.set_query(Some("ignore=404"));
        let rejected = http.delete(bad).send().await.unwrap();
        assert_eq!(rejected.status(), 400);
        let body: Value = rejected.json().await.unwrap();
        assert_eq!(body["error"]["type"], "illegal_argument_exception");
        assert_eq!(
            body["error"]["root_cause"][0]["reason"],
            "request [/records/_doc/did%3Agun%3Aabc%2F1] contains unrecognized parameter: [ignore]"
        );
        assert_eq!(
            es.doc_count("records"),
            1,
            "a rejected request changes nothing"
        );

        let deleted = http.delete(doc.clone()).send().await.unwrap();
        assert_eq!(deleted.status(), 200);
        let missing = http.delete(doc.clone()).send().await.unwrap();
        assert_eq!(missing.status(), 404);
        let body: Value = missing.json().await.unwrap();
        assert_eq!(body["result"], "not_found");

        let count: Value = http
            .get(es.url().join("records/_count").unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(count["count"], 0);
        assert_eq!(es.count("DELETE", "/records/_doc/"), 3);
    }

    #[tokio::test]
    async fn emulator_requires_basic_auth_when_configured() {
        let es = EsEmulator::start()
            .await
            .unwrap()
            .with_auth("elastic", "changeme");
        let http = reqwest::Client::new();
        let anonymous = http.get(es.url()).send().await.unwrap();
        assert_eq!(anonymous.status(), 401);
        assert!(anonymous.headers().contains_key(header::WWW_AUTHENTICATE));
        let wrong = http
            .get(es.url())
            .basic_auth("elastic", Some("nope"))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401);
        let right = http
            .get(es.url())
            .basic_auth("elastic", Some("changeme"))
            .send()
            .await
            .unwrap();
        assert_eq!(right.status(), 200);
    }

    #[tokio::test]
    async fn required_credentials_can_change_and_be_cleared_at_runtime() {
        let es = EsEmulator::start()
            .await
            .unwrap()
            .with_auth("elastic", "old");
        let http = reqwest::Client::new();
        let status = |password: Option<&'static str>| {
            let mut request = http.get(es.url());
            if let Some(password) = password {
                request = request.basic_auth("elastic", Some(password));
            }
            async move { request.send().await.unwrap().status() }
        };
        assert_eq!(status(Some("old")).await, 200);
        es.set_auth(Some(("elastic", "new")));
        assert_eq!(status(Some("old")).await, 401);
        assert_eq!(status(Some("new")).await, 200);
        es.set_auth(None);
        assert_eq!(status(None).await, 200);
    }

    #[tokio::test]
    async fn chunked_answers_have_no_content_length_and_the_same_body() {
        let es = EsEmulator::start().await.unwrap();
        let doc = json!({ "pad": "x".repeat(3 * ANSWER_CHUNK) });
        es.put_doc("records", "a", doc.clone());
        let http = reqwest::Client::new();
        let url = es.url().join("records/_doc/a").unwrap();

        let plain = http.get(url.clone()).send().await.unwrap();
        assert!(plain.content_length().is_some());

        es.set_chunked_answers(true);
        let mut chunked = http.get(url.clone()).send().await.unwrap();
        assert_eq!(chunked.status(), 200);
        assert_eq!(chunked.content_length(), None);
        assert_eq!(chunked.headers()[header::TRANSFER_ENCODING], "chunked");
        let mut pieces = 0;
        let mut body = Vec::new();
        while let Some(chunk) = chunked.chunk().await.unwrap() {
            pieces += 1;
            body.extend_from_slice(&chunk);
        }
        assert!(pieces > 1, "{pieces} pieces");
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["_source"], doc);

        let head = http.head(url).send().await.unwrap();
        assert_eq!(head.status(), 200);
        assert!(head.bytes().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn index_and_cluster_endpoints_answer() {
        let es = EsEmulator::start().await.unwrap();
        let http = reqwest::Client::new();
        let index = es.url().join("records").unwrap();
        assert_eq!(http.put(index.clone()).send().await.unwrap().status(), 200);
        assert_eq!(http.put(index.clone()).send().await.unwrap().status(), 400);
        assert_eq!(http.head(index).send().await.unwrap().status(), 200);
        let refresh = es.url().join("records/_refresh").unwrap();
        assert_eq!(http.post(refresh).send().await.unwrap().status(), 200);
        let health: Value = http
            .get(es.url().join("_cluster/health").unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(health["status"], "green");
        let missing = http
            .get(es.url().join("other/_doc/1").unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
        let unknown = http
            .get(es.url().join("records/_nope").unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), 400);
    }
}
