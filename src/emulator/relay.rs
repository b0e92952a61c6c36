//! An in-process GUN relay speaking the HTTP API of OIP's `gun-relay-server.js` (DESIGN §3), for
//! tests and `gunsync demo`: a graph of nodes in memory with GUN's put semantics, two answer
//! flavours, seeding helpers, a request log and fault injection (`emulator::faults`).
//!
//! Where OIP's relay (at commit `0263e1c` of `DevonJames/oip-arweave-indexer`) differs from
//! DESIGN §3, this emulator follows the relay:
//! - [`Flavour::Oip`] drops `null` keys from a record's answer, so a tombstone reads back as
//!   `{"_": …, "deleted": true, "deletedAt": …}` (DESIGN shows `"data": null`); it keeps `_` on
//!   records (only type-index nodes are answered without it).
//! - The relay recognises a type index to answer flat only under the literal root
//!   `oip:registry:index:<type>`, whatever `GUN_REGISTRY_ROOT` says.
//! - A put without a string `soul` is answered `400 {"error":"Invalid JSON"}`.
//! - GUN's root error ends with a period: `Data at root of graph must be a node (an object).`
//!
//! - `/list` answers each record's current node (resolved as a `get` would); the relay answers
//!   the body of the last put of that soul, from memory, and matches the hash like this emulator
//!   does: the soul's first `:` segment.
//!
//! Not emulated: the relay's 100 ms delay after each put and up to 3 s before a 404 (script them
//! with [`FaultRule::delay`]), its `index:<publisherHash>` side nodes, and `/media/*`.
//!
//! A `get` answer is streamed a range of keys at a time (`success` first, as the relay sends
//! it), so a 100 000-entry index is served quickly and never sits rendered in memory.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::stream;
use serde::Serialize;
use serde_json::{Map, Value, json};
use url::Url;

use super::faults::{EmulatorServer, instrument};
pub use super::faults::{Fault, FaultRule, Faults, RecordedRequest, RequestLog};
use crate::domain::{
    DEFAULT_REGISTRY_ROOT, DELETION_INDEX_SOUL, Did, deletion_entry_soul, type_index_soul,
};

/// GUN's answer to a put whose root is not an object (GUN 0.2020.1241, period included).
pub const ROOT_NOT_A_NODE: &str = "Data at root of graph must be a node (an object).";

/// Keys one chunk of a streamed `get` answer renders, under one short hold of the graph lock.
const KEYS_PER_CHUNK: usize = 256;

/// Which relay the emulator imitates when answering `GET /get`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Flavour {
    /// OIP's `gun-relay-server.js`: a node's direct links resolved inline one level (without `_`),
    /// `null` keys dropped, `_` kept on records, type indexes answered flat without `_`.
    #[default]
    Oip,
    /// A plain GUN relay: the stored node as is, every nested object a link `{"#": soul}`, `null`
    /// keys present, and `_` = `{"#": soul, ">": {key: state}}`.
    PlainGun,
}

/// A put GUN refuses (an array, a root that is not an object).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("put rejected: {0}")]
pub struct PutRejected(pub String);

/// The emulated relay; stops when dropped or on [`shutdown`](Self::shutdown).
#[derive(Debug)]
pub struct RelayEmulator {
    server: EmulatorServer,
    shared: Arc<Shared>,
    faults: Faults,
    log: RequestLog,
}

#[derive(Debug)]
struct Shared {
    flavour: Flavour,
    graph: Mutex<Graph>,
}

/// The stored graph: soul → node. Values are scalars, `null` or links; nested objects live in
/// their own nodes, as GUN stores them.
#[derive(Debug, Default)]
struct Graph {
    nodes: HashMap<String, StoredNode>,
    /// Souls put at the root by `/put` or seeding (what `/list` can show), with their put time.
    published: BTreeMap<String, i64>,
    registry_root: Option<String>,
    last_state: f64,
}

/// Sorted by key, so a long answer can be rendered a range at a time.
#[derive(Debug, Default, Clone)]
struct StoredNode {
    fields: BTreeMap<String, Value>,
    /// GUN's per-key state (HAM timestamps, ms).
    states: BTreeMap<String, f64>,
}

impl RelayEmulator {
    /// Start an [`Flavour::Oip`] relay on `127.0.0.1:<free port>`.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub async fn start() -> Self {
        Self::start_with(Flavour::Oip).await
    }

    /// Start a relay answering in `flavour`.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub async fn start_with(flavour: Flavour) -> Self {
        let shared = Arc::new(Shared {
            flavour,
            graph: Mutex::new(Graph::default()),
        });
        let faults = Faults::new();
        let log = RequestLog::new();
        // Also under `/gun-relay`, where an OIP node proxies its relay (what a `ws://…/gun` peer
        // of OIP's settings turns into).
        let api = || {
            Router::new()
                .route("/put", post(put_handler))
                .route("/get", get(get_handler))
                .route("/list", get(list_handler))
        };
        let router = api()
            .nest("/gun-relay", api())
            .fallback(|| async { error(StatusCode::NOT_FOUND, "Endpoint not found") })
            .with_state(shared.clone());
        let server = EmulatorServer::start(instrument(router, faults.clone(), log.clone()))
            .await
            .expect("bind the relay emulator on 127.0.0.1");
        Self {
            server,
            shared,
            faults,
            log,
        }
    }

    /// The base URL to use as a peer: `http://127.0.0.1:<port>/`.
    pub fn url(&self) -> Url {
        self.server.url()
    }

    pub fn flavour(&self) -> Flavour {
        self.shared.flavour
    }

    /// Stop accepting and wait for open requests (at most 5 s).
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }

    /// The fault rules; add with `faults().add(FaultRule::status("/get", 500).times(1))`.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Shorthand for `faults().add(rule)`.
    pub fn fail(&self, rule: FaultRule) {
        self.faults.add(rule);
    }

    pub fn log(&self) -> &RequestLog {
        &self.log
    }

    /// Every request received so far (bodies capped), oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.log.all()
    }

    /// Requests with `method` whose path starts with `path_prefix`.
    pub fn count(&self, method: &str, path_prefix: &str) -> usize {
        self.log.count(method, path_prefix)
    }

    /// Registry root used by [`seed_record`](Self::seed_record) (default `oip:registry`).
    pub fn set_registry_root(&self, root: &str) {
        self.graph().registry_root = Some(root.to_owned());
    }

    /// Apply a put exactly as `POST /put` would, without HTTP.
    ///
    /// # Errors
    /// [`PutRejected`] when GUN would refuse it (root not an object, an array anywhere).
    pub fn put(&self, soul: &str, data: Value) -> Result<(), PutRejected> {
        self.graph().put(soul, &data, now_ms())
    }

    /// Store a record as an OIP node publishes it (`{data, oip, meta}`; `oip.recordType` is set
    /// to `record_type` if missing) and list it in the type index under the registry root.
    ///
    /// # Errors
    /// [`PutRejected`] when `data` or `oip` holds an array, or the souls are unusable.
    pub fn seed_record(
        &self,
        soul: &str,
        record_type: &str,
        data: Value,
        mut oip: Value,
    ) -> Result<(), PutRejected> {
        if let Value::Object(map) = &mut oip {
            map.entry("recordType")
                .or_insert_with(|| Value::from(record_type));
        }
        let now = now_ms();
        let mut graph = self.graph();
        let root = graph
            .registry_root
            .clone()
            .unwrap_or_else(|| DEFAULT_REGISTRY_ROOT.to_owned());
        let index = type_index_soul(&root, record_type).map_err(|e| PutRejected(e.to_string()))?;
        let record = json!({
            "data": data,
            "oip": oip,
            "meta": { "created": now, "encrypted": false },
        });
        graph.put(soul, &record, now)?;
        let entry = json!({ soul: { "soul": soul, "nodeId": "emulator", "timestamp": now } });
        graph.put(index.as_str(), &entry, now)
    }

    /// Put each `(key, value)` on `soul` as its own one-key put, under one lock: seeds a
    /// 100 000-entry index or registry without first building it as one JSON value.
    ///
    /// # Errors
    /// [`PutRejected`] for the first entry GUN would refuse; the entries before it stay.
    pub fn seed_entries(
        &self,
        soul: &str,
        entries: impl IntoIterator<Item = (String, Value)>,
    ) -> Result<(), PutRejected> {
        let now = now_ms();
        let mut graph = self.graph();
        for (key, value) in entries {
            graph.put(soul, &Value::Object(Map::from_iter([(key, value)])), now)?;
        }
        Ok(())
    }

    /// Mark `did` deleted by the holder of the public key `deleted_by`, as OIP's `markDeleted`
    /// does: the index entry `did → true` and the entry node `oip:deleted:records:<did>`.
    ///
    /// # Errors
    /// [`PutRejected`] when the entry soul would be too long.
    pub fn seed_deletion(&self, did: &Did, deleted_by: &str) -> Result<(), PutRejected> {
        let now = now_ms();
        let entry_soul = deletion_entry_soul(did).map_err(|e| PutRejected(e.to_string()))?;
        let entry = json!({
            "deletedAt": now,
            "deletedBy": deleted_by,
            "timestamp": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            "did": did.as_str(),
        });
        let mut graph = self.graph();
        graph.put(entry_soul.as_str(), &entry, now)?;
        graph.put(DELETION_INDEX_SOUL, &json!({ did.as_str(): true }), now)
    }

    /// The stored node (links as links, `null` keys present, no `_`); `None` if never written.
    pub fn node(&self, soul: &str) -> Option<Value> {
        self.graph()
            .nodes
            .get(soul)
            .map(|node| Value::Object(node.fields.clone().into_iter().collect()))
    }

    /// Forget a node entirely, so links to it dangle (a missing link target answers 404).
    pub fn remove_node(&self, soul: &str) -> bool {
        let mut graph = self.graph();
        graph.published.remove(soul);
        graph.nodes.remove(soul).is_some()
    }

    /// How many nodes are stored.
    pub fn node_count(&self) -> usize {
        self.graph().nodes.len()
    }

    fn graph(&self) -> MutexGuard<'_, Graph> {
        self.shared.graph()
    }
}

impl Shared {
    fn graph(&self) -> MutexGuard<'_, Graph> {
        // A panicking test must not poison the emulator for the others.
        self.graph.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Graph {
    /// GUN's put: validate the whole graph first (nothing is written on error), then merge.
    fn put(&mut self, soul: &str, data: &Value, now: i64) -> Result<(), PutRejected> {
        let Value::Object(map) = data else {
            return Err(PutRejected(ROOT_NOT_A_NODE.to_owned()));
        };
        reject_arrays(data, soul)?;
        self.merge(soul, map);
        self.published.insert(soul.to_owned(), now);
        Ok(())
    }

    fn merge(&mut self, soul: &str, data: &Map<String, Value>) {
        let state = self.tick();
        self.nodes.entry(soul.to_owned()).or_default();
        for (key, value) in data {
            if key == "_" {
                continue;
            }
            let stored = match value {
                Value::Object(map) if link_target(map).is_some() => value.clone(),
                Value::Object(map) => {
                    // A nested object merges into the node the key already links to, else into
                    // `<soul>/<key>`, and the key becomes a link.
                    let existing = self.nodes[soul]
                        .fields
                        .get(key)
                        .and_then(Value::as_object)
                        .and_then(link_target)
                        .map(str::to_owned);
                    let child = existing.unwrap_or_else(|| format!("{soul}/{key}"));
                    self.merge(&child, map);
                    json!({ "#": child })
                }
                other => other.clone(),
            };
            let node = self.nodes.get_mut(soul).expect("created above");
            node.fields.insert(key.clone(), stored);
            node.states.insert(key.clone(), state);
        }
    }

    /// A strictly increasing HAM state (ms since the epoch, with fractions for ties).
    fn tick(&mut self) -> f64 {
        let now = now_ms() as f64;
        self.last_state = if now > self.last_state {
            now
        } else {
            self.last_state + 0.001
        };
        self.last_state
    }

    /// The whole answer to a `get` of `soul`; `None` answers 404.
    fn render(&self, soul: &str, flavour: Flavour) -> Option<Map<String, Value>> {
        let node = self.nodes.get(soul)?;
        let mut out: Map<String, Value> = node
            .fields
            .iter()
            .filter_map(|(key, value)| Some((key.clone(), self.render_field(value, flavour)?)))
            .collect();
        if let Some(metadata) = self.metadata(soul, flavour) {
            out.insert("_".to_owned(), metadata);
        }
        (flavour == Flavour::PlainGun || !out.is_empty()).then_some(out)
    }

    /// Whether a `get` of `soul` answers 200: [`render`](Self::render) would be `Some`, found
    /// without rendering (a live index stops at its first live entry).
    fn answers(&self, soul: &str, flavour: Flavour) -> bool {
        self.nodes.get(soul).is_some_and(|node| {
            flavour == Flavour::PlainGun
                || self.metadata(soul, flavour).is_some()
                || node
                    .fields
                    .values()
                    .any(|value| self.render_field(value, flavour).is_some())
        })
    }

    /// One stored value as `flavour` answers it; `None` leaves the key out.
    fn render_field(&self, value: &Value, flavour: Flavour) -> Option<Value> {
        match (flavour, value) {
            (Flavour::PlainGun, _) => Some(value.clone()),
            (Flavour::Oip, Value::Null) => None,
            // OIP's relay resolves a node's direct links inline, one level, without `_`.
            (Flavour::Oip, Value::Object(map)) => {
                let child = self.nodes.get(link_target(map)?)?;
                (!child.fields.is_empty()).then(|| {
                    Value::Object(
                        child
                            .fields
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                    )
                })
            }
            (Flavour::Oip, other) => Some(other.clone()),
        }
    }

    /// GUN's `_` of `soul` as `flavour` answers it; OIP's relay leaves it out of parent type
    /// indexes.
    fn metadata(&self, soul: &str, flavour: Flavour) -> Option<Value> {
        let node = self.nodes.get(soul)?;
        (flavour == Flavour::PlainGun || !is_parent_registry_index(soul))
            .then(|| json!({ "#": soul, ">": node.states }))
    }
}

/// A `get` answer rendered [`KEYS_PER_CHUNK`] keys at a time, each chunk under its own hold of
/// the graph lock: `{"success":true,"data":{"_":{"#":…,">":{states…}},fields…}}`.
struct AnswerStream {
    shared: Arc<Shared>,
    soul: String,
    part: Part,
    /// The last key rendered in the current part.
    after: Option<String>,
    /// Whether the object being written already holds a member (the next needs a comma).
    comma: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Start,
    States,
    Fields,
    Done,
}

impl AnswerStream {
    fn new(shared: Arc<Shared>, soul: String) -> Self {
        Self {
            shared,
            soul,
            part: Part::Start,
            after: None,
            comma: false,
        }
    }

    /// The next non-empty chunk; `None` once the answer is complete.
    fn next_chunk(&mut self) -> Option<Bytes> {
        let mut out = Vec::new();
        while out.is_empty() {
            match self.part {
                Part::Start => self.start(&mut out),
                Part::States => self.states(&mut out),
                Part::Fields => self.fields(&mut out),
                Part::Done => return None,
            }
        }
        Some(Bytes::from(out))
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"success":true,"data":{"#);
        let graph = self.shared.graph();
        self.part = if graph.metadata(&self.soul, self.shared.flavour).is_some() {
            out.extend_from_slice(br##""_":{"#":"##);
            write_json(out, &self.soul);
            out.extend_from_slice(br#",">":{"#);
            Part::States
        } else {
            Part::Fields
        };
    }

    fn states(&mut self, out: &mut Vec<u8>) {
        let graph = self.shared.graph();
        let empty = BTreeMap::new();
        let states = graph.nodes.get(&self.soul).map_or(&empty, |n| &n.states);
        let (mut taken, mut last) = (0, None);
        for (key, state) in keys_after(states, self.after.as_deref()).take(KEYS_PER_CHUNK) {
            write_member(out, &mut self.comma, key, state);
            (taken, last) = (taken + 1, Some(key));
        }
        self.after = last.cloned();
        if taken < KEYS_PER_CHUNK {
            // `_` is now the first member of `data`.
            out.extend_from_slice(b"}}");
            (self.part, self.after, self.comma) = (Part::Fields, None, true);
        }
    }

    fn fields(&mut self, out: &mut Vec<u8>) {
        let graph = self.shared.graph();
        let empty = BTreeMap::new();
        let fields = graph.nodes.get(&self.soul).map_or(&empty, |n| &n.fields);
        let (mut taken, mut last) = (0, None);
        for (key, value) in keys_after(fields, self.after.as_deref()).take(KEYS_PER_CHUNK) {
            if let Some(rendered) = graph.render_field(value, self.shared.flavour) {
                write_member(out, &mut self.comma, key, &rendered);
            }
            (taken, last) = (taken + 1, Some(key));
        }
        self.after = last.cloned();
        if taken < KEYS_PER_CHUNK {
            out.extend_from_slice(b"}}");
            self.part = Part::Done;
        }
    }
}

/// The entries of `map` after the key `after` (all of them when `None`), in order.
fn keys_after<'m, V>(
    map: &'m BTreeMap<String, V>,
    after: Option<&str>,
) -> impl Iterator<Item = (&'m String, &'m V)> {
    let start = after.map_or(Bound::Unbounded, Bound::Excluded);
    map.range::<str, _>((start, Bound::Unbounded))
}

/// `,"key":value` (no comma before an object's first member).
fn write_member(out: &mut Vec<u8>, comma: &mut bool, key: &str, value: &impl Serialize) {
    if std::mem::replace(comma, true) {
        out.push(b',');
    }
    write_json(out, key);
    out.push(b':');
    write_json(out, value);
}

fn write_json(out: &mut Vec<u8>, value: &(impl Serialize + ?Sized)) {
    serde_json::to_writer(out, value).expect("strings, numbers and json values serialize");
}

/// OIP's relay test for a parent type index: `oip:registry:index:<type>`, exactly four parts.
fn is_parent_registry_index(soul: &str) -> bool {
    soul.starts_with("oip:registry:index:") && soul.split(':').count() == 4
}

fn link_target(map: &Map<String, Value>) -> Option<&str> {
    if map.len() == 1 {
        map.get("#")?.as_str()
    } else {
        None
    }
}

fn reject_arrays(value: &Value, soul: &str) -> Result<(), PutRejected> {
    match array_path(value) {
        Some(path) => Err(PutRejected(format!("Invalid data: Array at {soul}{path}"))),
        None => Ok(()),
    }
}

/// `.a.b` for the first array found under `value` ("" when `value` itself is one).
fn array_path(value: &Value) -> Option<String> {
    match value {
        Value::Array(_) => Some(String::new()),
        Value::Object(map) => map
            .iter()
            .find_map(|(key, v)| array_path(v).map(|rest| format!(".{key}{rest}"))),
        _ => None,
    }
}

async fn put_handler(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(Value::Object(mut request)) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "Invalid JSON");
    };
    // The relay reads `soul.substring(…)` inside its JSON try block: no string soul = 400.
    let Some(Value::String(soul)) = request.remove("soul") else {
        return error(StatusCode::BAD_REQUEST, "Invalid JSON");
    };
    let data = request.remove("data").unwrap_or(Value::Null);
    let result = shared.graph().put(&soul, &data, now_ms());
    match result {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(json!({ "success": true, "soul": soul })),
        )
            .into_response(),
        Err(PutRejected(message)) => error(StatusCode::INTERNAL_SERVER_ERROR, &message),
    }
}

async fn get_handler(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(soul) = query.get("soul").filter(|s| !s.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "Soul parameter required");
    };
    if !shared.graph().answers(soul, shared.flavour) {
        return error(StatusCode::NOT_FOUND, "Not found");
    }
    let answer = AnswerStream::new(shared.clone(), soul.clone());
    let chunks = stream::unfold(answer, |mut answer| async move {
        let chunk = answer.next_chunk()?;
        Some((Ok::<_, Infallible>(chunk), answer))
    });
    let mut response = Response::new(Body::from_stream(chunks));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Records put at the root whose soul's first `:` segment is the publisher hash, by soul.
async fn list_handler(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(hash) = query.get("publisherHash").filter(|s| !s.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "publisherHash parameter required");
    };
    let number = |name: &str, default: usize| {
        query
            .get(name)
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0 || name == "offset")
            .unwrap_or(default)
    };
    let (limit, offset) = (number("limit", 50), number("offset", 0));
    let wanted_type = query.get("recordType");
    let graph = shared.graph();
    let records: Vec<Value> = graph
        .published
        .iter()
        .filter(|(soul, _)| soul.split(':').next() == Some(hash.as_str()))
        .filter_map(|(soul, stored_at)| {
            let mut data = graph.render(soul, Flavour::Oip)?;
            data.remove("_");
            let record_type = data
                .get("oip")
                .and_then(|o| o.get("recordType"))
                .cloned()
                .unwrap_or(Value::Null);
            if wanted_type.is_some_and(|t| record_type.as_str() != Some(t.as_str())) {
                return None;
            }
            Some(json!({
                "soul": soul, "data": data, "recordType": record_type, "storedAt": stored_at,
            }))
        })
        .skip(offset)
        .take(limit)
        .collect();
    (
        StatusCode::OK,
        axum::Json(json!({ "success": true, "records": records })),
    )
        .into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(graph: &Graph, soul: &str) -> Value {
        Value::Object(graph.nodes[soul].fields.clone().into_iter().collect())
    }

    fn graph_with(soul: &str, data: Value) -> Graph {
        let mut graph = Graph::default();
        graph.put(soul, &data, 1).unwrap();
        graph
    }

    #[test]
    fn nested_objects_become_linked_nodes() {
        let graph = graph_with(
            "a:1",
            json!({"data": {"name": "n", "deep": {"x": 1}}, "v": 2}),
        );
        assert_eq!(
            stored(&graph, "a:1"),
            json!({"data": {"#": "a:1/data"}, "v": 2})
        );
        assert_eq!(
            stored(&graph, "a:1/data"),
            json!({"name": "n", "deep": {"#": "a:1/data/deep"}})
        );
        assert_eq!(stored(&graph, "a:1/data/deep"), json!({"x": 1}));
    }

    #[test]
    fn put_merges_and_null_is_kept_as_removed() {
        let mut graph = graph_with("s", json!({"a": 1, "b": {"c": 1}}));
        graph
            .put("s", &json!({"a": null, "b": {"d": 2}}), 2)
            .unwrap();
        assert_eq!(stored(&graph, "s"), json!({"a": null, "b": {"#": "s/b"}}));
        assert_eq!(stored(&graph, "s/b"), json!({"c": 1, "d": 2}));
    }

    #[test]
    fn rejected_puts_write_nothing() {
        let mut graph = Graph::default();
        let cases = [
            (json!(null), ROOT_NOT_A_NODE),
            (json!("text"), ROOT_NOT_A_NODE),
            (
                json!({"ok": 1, "tags": ["a"]}),
                "Invalid data: Array at s.tags",
            ),
            (json!({"d": {"x": [1]}}), "Invalid data: Array at s.d.x"),
        ];
        for (data, message) in cases {
            assert_eq!(graph.put("s", &data, 1), Err(PutRejected(message.into())));
        }
        assert!(graph.nodes.is_empty());
    }

    #[test]
    fn streamed_answers_are_the_rendered_node_across_chunks() {
        let index = "oip:registry:index:post";
        let seeded = || {
            let mut graph = Graph::default();
            for i in 0..2 * KEYS_PER_CHUNK + 7 {
                let soul = format!("abc:{i:04}");
                let value = if i % 3 == 0 {
                    Value::Null
                } else {
                    json!({"soul": soul, "timestamp": i})
                };
                graph.put(index, &json!({ soul: value }), 1).unwrap();
            }
            graph
                .put("a:1", &json!({"data": {"x": 1}, "n": null, "v": 2}), 1)
                .unwrap();
            graph
        };
        for flavour in [Flavour::Oip, Flavour::PlainGun] {
            let shared = Arc::new(Shared {
                flavour,
                graph: Mutex::new(seeded()),
            });
            for soul in [index, "a:1"] {
                let data = shared.graph().render(soul, flavour).unwrap();
                let mut answer = AnswerStream::new(shared.clone(), soul.to_owned());
                let mut body = Vec::new();
                let mut chunks = 0;
                while let Some(chunk) = answer.next_chunk() {
                    body.extend_from_slice(&chunk);
                    chunks += 1;
                }
                assert!(
                    body.starts_with(br#"{"success":true,"#),
                    "{flavour:?} {soul}"
                );
                // Both through the same parse: HAM states are floats, which the parser does not
                // round-trip exactly.
                let streamed: Value = serde_json::from_slice(&body).unwrap();
                let rendered = json!({"success": true, "data": data}).to_string();
                let rendered: Value = serde_json::from_str(&rendered).unwrap();
                assert!(streamed == rendered, "{flavour:?} {soul}");
                if soul == index {
                    assert!(chunks > 2, "{flavour:?}: {chunks} chunks");
                }
            }
        }
    }

    #[test]
    fn flavours_render_differently() {
        let mut graph = graph_with(
            "a:1",
            json!({"data": {"name": "n", "deep": {"x": 1}}, "gone": null}),
        );
        graph
            .put(
                "oip:registry:index:post",
                &json!({"a:1": {"soul": "a:1"}, "a:2": null}),
                1,
            )
            .unwrap();

        let plain = graph.render("a:1", Flavour::PlainGun).unwrap();
        assert_eq!(plain["data"], json!({"#": "a:1/data"}));
        assert_eq!(plain["gone"], Value::Null);
        assert_eq!(plain["_"]["#"], "a:1");
        assert!(plain["_"][">"]["data"].is_number());

        let oip = graph.render("a:1", Flavour::Oip).unwrap();
        assert_eq!(
            oip["data"],
            json!({"name": "n", "deep": {"#": "a:1/data/deep"}})
        );
        assert!(!oip.contains_key("gone"));
        assert!(oip.contains_key("_"));

        let index = graph
            .render("oip:registry:index:post", Flavour::Oip)
            .unwrap();
        assert_eq!(Value::Object(index), json!({"a:1": {"soul": "a:1"}}));
        assert!(graph.render("missing", Flavour::Oip).is_none());
    }
}
