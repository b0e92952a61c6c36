//! [`RelayClient`]: the only code that speaks HTTP to GUN relays (DESIGN §3). One shared
//! `reqwest::Client` with pool limits, a timeout, no redirects, a semaphore bounding in-flight
//! requests and a response size cap; raw `get`/`put`/`list`, bounded link following
//! (`resolve.rs`), streamed registry reads (`index.rs`, `stream.rs`), and the tombstone writes the
//! sync cycle and job handlers use. It never decides OIP validity.

mod error;
mod index;
mod node;
mod resolve;
mod stream;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;
use tracing::debug;
use url::Url;

pub use error::{Budget, Operation, RelayError};
pub use index::{BatchStream, IndexStream, RegistryStream};
pub use node::{
    DeletionEntry, DeletionRegistry, Field, IndexBatch, IndexEntry, METADATA_KEY, Node,
    RECORD_KEYS, RecordNode, RegistryBatch, TypeIndex, classify, json_kind,
};

use crate::domain::{Soul, redacted, type_index_soul};

/// How many link levels [`RelayClient::read_record`] follows below a record node.
pub const DEFAULT_MAX_DEPTH: usize = 4;

/// Nodes one record read may fetch, the record node included ([`RecordBudget::max_nodes`]).
pub const DEFAULT_RECORD_MAX_NODES: usize = 256;

/// Response bytes one record read may receive ([`RecordBudget::max_bytes`]): 4 MiB.
pub const DEFAULT_RECORD_MAX_BYTES: usize = 4 * 1024 * 1024;

/// Body bytes a streamed type index or deletion registry may have
/// ([`RelayOptions::max_index_bytes`]): 256 MiB, about 2.5 million index entries.
pub const DEFAULT_MAX_INDEX_BYTES: usize = 256 * 1024 * 1024;

/// Error bodies are read up to this much for the message, whatever the response cap.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Limits of the shared relay client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayOptions {
    /// Whole-request timeout, body included (`GUN_REGISTRY_TIMEOUT_MS`); also caps connecting.
    /// A streamed index or registry read gets it for the head and again for every MiB of body,
    /// counting only the time spent waiting for the relay.
    pub timeout: Duration,
    /// Idle pooled connections kept per relay (DESIGN §2: at most 4).
    pub max_idle_per_host: usize,
    /// Relay requests in flight at once, across all peers and callers.
    pub concurrency: usize,
    /// A response body larger than this is abandoned with [`RelayError::TooLarge`] (streamed
    /// index and registry reads excepted).
    pub max_response_bytes: usize,
    /// The body bound of streamed type-index and deletion-registry reads, which anyone can grow:
    /// bytes past it end the stream with [`RelayError::TooLarge`].
    pub max_index_bytes: usize,
    /// What following the links of one record may cost ([`RelayClient::read_record`],
    /// [`RelayClient::get_resolved`]).
    pub record_budget: RecordBudget,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            max_idle_per_host: 4,
            concurrency: 16,
            max_response_bytes: 8 * 1024 * 1024,
            max_index_bytes: DEFAULT_MAX_INDEX_BYTES,
            record_budget: RecordBudget::default(),
        }
    }
}

/// The most one record read may fetch, whatever the record's shape: a node linking to itself
/// or fanning out must not cost more than this. Exceeding either bound is
/// [`RelayError::OverBudget`], and no further request is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordBudget {
    /// Nodes fetched (answered or not), the record node included.
    pub max_nodes: usize,
    /// Response body bytes received, summed over the record's nodes.
    pub max_bytes: usize,
}

impl Default for RecordBudget {
    fn default() -> Self {
        Self {
            max_nodes: DEFAULT_RECORD_MAX_NODES,
            max_bytes: DEFAULT_RECORD_MAX_BYTES,
        }
    }
}

/// A record listed by `GET /list`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ListedRecord {
    pub soul: String,
    #[serde(default)]
    pub data: Value,
    #[serde(default, rename = "recordType")]
    pub record_type: Option<String>,
    #[serde(default, rename = "storedAt")]
    pub stored_at: Option<i64>,
}

/// Client for any number of GUN relays. Cloning shares the connection pool and the semaphore.
#[derive(Clone, Debug)]
pub struct RelayClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    permits: Semaphore,
    options: RelayOptions,
}

/// A relay's answer, body read within the cap.
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    body: Bytes,
}

impl RelayClient {
    /// Build the one HTTP client all relay calls share.
    ///
    /// # Errors
    /// [`RelayError::Client`] when the TLS backend cannot be initialised.
    pub fn new(options: RelayOptions) -> Result<Self, RelayError> {
        let http = reqwest::Client::builder()
            .connect_timeout(options.timeout.min(Duration::from_secs(10)))
            .timeout(options.timeout)
            .pool_max_idle_per_host(options.max_idle_per_host.min(4))
            .pool_idle_timeout(Duration::from_secs(30))
            // A relay URL is configuration: never let an answer send a request elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("gunsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(RelayError::Client)?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                permits: Semaphore::new(options.concurrency.max(1)),
                options,
            }),
        })
    }

    pub fn options(&self) -> &RelayOptions {
        &self.inner.options
    }

    /// `GET /get?soul=S`: the node, or `None` when the relay does not hold it (404).
    ///
    /// # Errors
    /// Any [`RelayError`]; a 404 is not one unless the relay says the endpoint is unknown.
    pub async fn get(&self, peer: &Url, soul: &Soul) -> Result<Option<Node>, RelayError> {
        let node = self
            .get_capped(peer, soul, self.inner.options.max_response_bytes)
            .await?;
        Ok(node.map(|(node, _)| node))
    }

    /// [`get`](Self::get) with the body read up to `limit` bytes, and the size of that body.
    async fn get_capped(
        &self,
        peer: &Url,
        soul: &Soul,
        limit: usize,
    ) -> Result<Option<(Node, usize)>, RelayError> {
        let op = Operation::Get;
        let url = endpoint(peer, "get", &[("soul", soul.as_str())]);
        let answer = self
            .call(op, soul.as_str(), peer, self.inner.http.get(url), limit)
            .await?;
        match answer.status {
            200..=299 => {
                let data = success_member(op, soul.as_str(), &answer.body, "data")?;
                Node::from_value(soul.clone(), data)
                    .map(|node| Some((node, answer.body.len())))
                    .map_err(|reason| malformed(op, soul.as_str(), reason))
            }
            404 if is_absent(&answer.body) => Ok(None),
            _ => Err(status_error(op, soul.as_str(), answer)),
        }
    }

    /// `POST /put {"soul", "data"}`: merge `data` into the node (a `null` value removes a key).
    /// The root is a map by construction: GUN rejects `"data": null` (DESIGN §3).
    ///
    /// # Errors
    /// Any [`RelayError`]; a 200 without `"success": true` is [`RelayError::Refused`].
    pub async fn put(
        &self,
        peer: &Url,
        soul: &Soul,
        data: Map<String, Value>,
    ) -> Result<(), RelayError> {
        let op = Operation::Put;
        // GUN answers 500 to arrays, which would read as transient: refuse them here, for good.
        if let Some(path) = find_array(&data, "data") {
            return Err(RelayError::Unstorable {
                op,
                target: soul.to_string(),
                reason: format!("array at {path}"),
            });
        }
        let url = endpoint(peer, "put", &[]);
        let body = json!({ "soul": soul, "data": data });
        let answer = self
            .call(
                op,
                soul.as_str(),
                peer,
                self.inner.http.post(url).json(&body),
                self.inner.options.max_response_bytes,
            )
            .await?;
        match answer.status {
            200..=299 => success_member(op, soul.as_str(), &answer.body, "success").map(|_| ()),
            _ => Err(status_error(op, soul.as_str(), answer)),
        }
    }

    /// `GET /list?publisherHash=H&limit=&offset=`: records the relay stored under that hash.
    ///
    /// # Errors
    /// Any [`RelayError`].
    pub async fn list(
        &self,
        peer: &Url,
        publisher_hash: &str,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<ListedRecord>, RelayError> {
        let op = Operation::List;
        let (limit, offset) = (limit.to_string(), offset.to_string());
        let url = endpoint(
            peer,
            "list",
            &[
                ("publisherHash", publisher_hash),
                ("limit", &limit),
                ("offset", &offset),
            ],
        );
        let answer = self
            .call(
                op,
                publisher_hash,
                peer,
                self.inner.http.get(url),
                self.inner.options.max_response_bytes,
            )
            .await?;
        if !(200..=299).contains(&answer.status) {
            return Err(status_error(op, publisher_hash, answer));
        }
        let records = success_member(op, publisher_hash, &answer.body, "records")?;
        serde_json::from_value(records)
            .map_err(|e| malformed(op, publisher_hash, format!("records: {e}")))
    }

    /// Tombstone the record: one put setting `data`, `oip`, `meta` and every key in `keys` to
    /// `null`, plus `deleted: true` and `deletedAt` (ms since the epoch). Never a root `null`,
    /// which GUN rejects (DESIGN §3).
    ///
    /// # Errors
    /// Any [`RelayError`] of the put.
    pub async fn tombstone_record(
        &self,
        peer: &Url,
        soul: &Soul,
        keys: &[String],
    ) -> Result<(), RelayError> {
        self.put(
            peer,
            soul,
            tombstone_body(keys, chrono::Utc::now().timestamp_millis()),
        )
        .await
    }

    /// Remove `soul` from `<root>:index:<record_type>` by putting `{"<soul>": null}` on it.
    ///
    /// # Errors
    /// Any [`RelayError`] of the put; [`RelayError::InvalidSoul`] for a bad root or type.
    pub async fn remove_from_type_index(
        &self,
        peer: &Url,
        root: &str,
        record_type: &str,
        soul: &Soul,
    ) -> Result<(), RelayError> {
        let index_soul = type_index_soul(root, record_type)?;
        let mut body = Map::new();
        body.insert(soul.to_string(), Value::Null);
        self.put(peer, &index_soul, body).await
    }

    /// One HTTP exchange under a semaphore permit, a 2xx body read up to `limit` bytes, logged
    /// and counted.
    async fn call(
        &self,
        op: Operation,
        target: &str,
        peer: &Url,
        request: reqwest::RequestBuilder,
        limit: usize,
    ) -> Result<Answer, RelayError> {
        let _permit = self.permit().await;
        let started = Instant::now();
        let result = self.exchange(op, target, request, limit).await;
        record(op, target, peer, started, result.as_ref().map(|a| a.status));
        result
    }

    /// One of the requests in flight at once; held for the whole exchange.
    async fn permit(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.inner
            .permits
            .acquire()
            .await
            .expect("the relay semaphore is never closed")
    }

    async fn exchange(
        &self,
        op: Operation,
        target: &str,
        request: reqwest::RequestBuilder,
        limit: usize,
    ) -> Result<Answer, RelayError> {
        let response = self.head(op, target, request).await?;
        self.read_answer(op, target, response, limit).await
    }

    /// The rest of an answer whose head arrived: a 2xx body up to `limit` bytes, any other up to
    /// [`MAX_ERROR_BODY`] for the message.
    async fn read_answer(
        &self,
        op: Operation,
        target: &str,
        mut response: reqwest::Response,
        limit: usize,
    ) -> Result<Answer, RelayError> {
        let status = response.status().as_u16();
        let retry_after = match status {
            429 | 503 => response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(crate::retry_after::parse),
            _ => None,
        };
        let success = (200..=299).contains(&status);
        let limit = if success { limit } else { MAX_ERROR_BODY };
        let body = match read_capped(&mut response, limit).await {
            Ok(Some(body)) => body,
            // An oversized error body still says what the status was.
            Ok(None) if !success => Bytes::from_static(b"(oversized error body)"),
            Ok(None) => {
                return Err(RelayError::TooLarge {
                    op,
                    target: target.to_owned(),
                    limit,
                });
            }
            Err(source) => return Err(body_error(op, target, self.inner.options.timeout, source)),
        };
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }

    /// Send `request` and take the head of the answer. A redirect fails here, before any body
    /// is read: the client never follows one (DESIGN §3 relays answer 200, 400, 404 or 500).
    async fn head(
        &self,
        op: Operation,
        target: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RelayError> {
        let response = request.send().await.map_err(|source| {
            if source.is_timeout() {
                self.timeout_error(op, target)
            } else {
                RelayError::Transport {
                    op,
                    target: target.to_owned(),
                    source,
                }
            }
        })?;
        if response.status().is_redirection() {
            return Err(RelayError::Redirect {
                op,
                target: target.to_owned(),
                status: response.status().as_u16(),
                location: response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .map(|v| error::one_line(&String::from_utf8_lossy(v.as_bytes()))),
            });
        }
        Ok(response)
    }

    fn timeout_error(&self, op: Operation, target: &str) -> RelayError {
        RelayError::Timeout {
            op,
            target: target.to_owned(),
            timeout: self.inner.options.timeout,
        }
    }
}

/// Reading a body failed after its status line arrived.
fn body_error(
    op: Operation,
    target: &str,
    timeout: Duration,
    source: reqwest::Error,
) -> RelayError {
    if source.is_timeout() {
        RelayError::Timeout {
            op,
            target: target.to_owned(),
            timeout,
        }
    } else {
        RelayError::BodyInterrupted {
            op,
            target: target.to_owned(),
            source,
        }
    }
}

/// Count and log one relay exchange: by the status the relay answered, else by why it did not.
fn record(
    op: Operation,
    target: &str,
    peer: &Url,
    started: Instant,
    result: Result<u16, &RelayError>,
) {
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let status = match result {
        Ok(status) => Some(status),
        Err(err) => err.http_status(),
    };
    let outcome = match (result, status) {
        (Err(RelayError::Redirect { .. }), _) => "redirect",
        (_, Some(404)) => "not_found",
        (_, Some(s)) if s >= 500 => "server_error",
        (_, Some(s)) if s >= 400 => "client_error",
        (Ok(_), _) => "ok",
        (Err(_), _) => "transport_error",
    };
    metrics::counter!("gunsync_http_requests_total", "system" => "relay", "outcome" => outcome)
        .increment(1);
    match result {
        Ok(_) => {
            debug!(peer = %redacted(peer), soul = target, %op, status, elapsed_ms, "relay request")
        }
        Err(err) => {
            debug!(peer = %redacted(peer), soul = target, %op, status, elapsed_ms, error = %err, "relay request failed")
        }
    }
}

/// Read the body chunk by chunk; `None` as soon as it passes `limit` (the rest is never read:
/// dropping the response closes the connection).
async fn read_capped(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Option<Bytes>, reqwest::Error> {
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Ok(None);
    }
    let expected = response.content_length().unwrap_or(0) as usize;
    let mut body = Vec::with_capacity(expected.min(limit));
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(Bytes::from(body)))
}

/// `<peer>/<name>?<query>`, keeping any base path of the peer and encoding the query properly
/// (souls hold `:` and `/`).
fn endpoint(peer: &Url, name: &str, query: &[(&str, &str)]) -> Url {
    let mut url = peer.clone();
    url.set_path(&format!("{}/{name}", peer.path().trim_end_matches('/')));
    url.set_query(None);
    url.set_fragment(None);
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    url
}

/// Parse `{"success": true, <member>: …}` and return the member (`success` itself for a put).
fn success_member(
    op: Operation,
    target: &str,
    body: &[u8],
    member: &str,
) -> Result<Value, RelayError> {
    let mut envelope = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(envelope)) => envelope,
        Ok(_) => return Err(unparsable(op, target, NOT_AN_OBJECT.to_owned())),
        Err(e) => {
            let first = body.iter().copied().find(|b| !b.is_ascii_whitespace());
            return Err(unparsable(
                op,
                target,
                unparsable_reason(first, body.len(), &e),
            ));
        }
    };
    if envelope.get("success") != Some(&Value::Bool(true)) {
        return Err(RelayError::Refused {
            op,
            target: target.to_owned(),
            message: error::error_text(body),
        });
    }
    envelope
        .remove(member)
        .ok_or_else(|| malformed(op, target, format!("no {member:?} member")))
}

/// Why a body that is not a JSON object was not: an envelope of any other JSON type.
const NOT_AN_OBJECT: &str = "body is not a json object";

/// Say how a body failed to parse, from its first non-blank byte (if any), the bytes read so far
/// and serde's error: an empty answer, a proxy's HTML page and a cut-off body read differently.
fn unparsable_reason(first: Option<u8>, read: usize, err: &serde_json::Error) -> String {
    match first {
        None => format!("empty body ({read} bytes read)"),
        Some(b'<') => format!("an html page, not json ({read} bytes read)"),
        Some(_) => format!("invalid json ({read} bytes read): {err}"),
    }
}

fn unparsable(op: Operation, target: &str, reason: String) -> RelayError {
    RelayError::Unparsable {
        op,
        target: target.to_owned(),
        reason,
    }
}

fn malformed(op: Operation, target: &str, reason: String) -> RelayError {
    RelayError::Malformed {
        op,
        target: target.to_owned(),
        reason,
    }
}

/// Whether a 404 body means the node is absent. A relay that lacks the endpoint is
/// misconfigured, not an empty graph.
fn is_absent(body: &[u8]) -> bool {
    error::error_text(body) != "Endpoint not found"
}

fn status_error(op: Operation, target: &str, answer: Answer) -> RelayError {
    RelayError::Status {
        op,
        target: target.to_owned(),
        status: answer.status,
        message: error::error_text(&answer.body),
        retry_after: answer.retry_after,
    }
}

/// The path of the first array in `map`, if any (GUN stores no arrays).
fn find_array(map: &Map<String, Value>, path: &str) -> Option<String> {
    map.iter().find_map(|(key, value)| match value {
        Value::Array(_) => Some(format!("{path}.{key}")),
        Value::Object(inner) => find_array(inner, &format!("{path}.{key}")),
        _ => None,
    })
}

/// The put body of a tombstone: record keys and `keys` nulled, `deleted: true`, `deletedAt`.
fn tombstone_body(keys: &[String], deleted_at_ms: i64) -> Map<String, Value> {
    let mut body: Map<String, Value> = RECORD_KEYS
        .iter()
        .copied()
        .chain(keys.iter().map(String::as_str))
        .filter(|key| *key != METADATA_KEY)
        .map(|key| (key.to_owned(), Value::Null))
        .collect();
    body.insert("deleted".to_owned(), Value::Bool(true));
    body.insert("deletedAt".to_owned(), Value::from(deleted_at_ms));
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_encodes_souls_and_keeps_base_path() {
        let cases = [
            (
                "http://127.0.0.1:8765",
                "oip:registry:index:post",
                "http://127.0.0.1:8765/get?soul=oip%3Aregistry%3Aindex%3Apost",
            ),
            (
                "http://relay:8765/",
                "abc:1/data",
                "http://relay:8765/get?soul=abc%3A1%2Fdata",
            ),
            (
                "http://relay/gun/",
                "a&b=c#d?e+f%",
                "http://relay/gun/get?soul=a%26b%3Dc%23d%3Fe%2Bf%25",
            ),
            (
                "http://relay/gun?x=1#frag",
                "s",
                "http://relay/gun/get?soul=s",
            ),
        ];
        for (peer, soul, expected) in cases {
            let url = endpoint(&Url::parse(peer).unwrap(), "get", &[("soul", soul)]);
            assert_eq!(url.as_str(), expected);
            let decoded: Vec<_> = url.query_pairs().collect();
            assert_eq!(decoded[0].1, soul);
        }
        let put = endpoint(&Url::parse("http://relay:8765").unwrap(), "put", &[]);
        assert_eq!(put.as_str(), "http://relay:8765/put");
    }

    #[test]
    fn tombstone_nulls_record_keys_and_never_the_root() {
        let body = tombstone_body(&["data".into(), "extra".into(), "_".into()], 42);
        let expected = json!({
            "data": null, "oip": null, "meta": null, "extra": null,
            "deleted": true, "deletedAt": 42
        });
        assert_eq!(Value::Object(body), expected);
    }

    #[test]
    fn arrays_are_found_at_any_depth() {
        let cases = [
            (json!({"a": 1, "b": {"c": "x"}}), None),
            (json!({"tags": ["a"]}), Some("data.tags")),
            (json!({"a": {"b": {"c": []}}}), Some("data.a.b.c")),
        ];
        for (value, expected) in cases {
            let map = value.as_object().unwrap();
            assert_eq!(find_array(map, "data").as_deref(), expected, "{value}");
        }
    }

    #[test]
    fn success_envelope_is_checked() {
        let ok = success_member(
            Operation::Get,
            "s",
            br#"{"success":true,"data":{"a":1}}"#,
            "data",
        );
        assert_eq!(ok.unwrap(), json!({"a": 1}));
        let refused = success_member(
            Operation::Put,
            "s",
            br#"{"success":false,"error":"no"}"#,
            "success",
        );
        assert!(matches!(refused, Err(RelayError::Refused { .. })));
        let missing = success_member(Operation::Get, "s", br#"{"success":true}"#, "data");
        assert!(matches!(missing, Err(RelayError::Malformed { .. })));
    }

    #[test]
    fn bodies_that_are_not_an_envelope_say_what_they_were() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "get s: unexpected response: empty body (0 bytes read)"),
            (
                b" \n",
                "get s: unexpected response: empty body (2 bytes read)",
            ),
            (
                b"  <html><body>502</body></html>",
                "get s: unexpected response: an html page, not json (31 bytes read)",
            ),
            (
                br#"{"success":tr"#,
                "get s: unexpected response: invalid json (13 bytes read): ",
            ),
            (
                b"[1]",
                "get s: unexpected response: body is not a json object",
            ),
        ];
        for (body, message) in cases {
            let err = success_member(Operation::Get, "s", body, "data").unwrap_err();
            assert!(matches!(err, RelayError::Unparsable { .. }), "{err:?}");
            assert!(err.to_string().starts_with(message), "{err}");
        }
    }
}
