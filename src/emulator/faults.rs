//! Scriptable fault injection and request recording for the axum emulators (relay and ES).
//! A test adds [`FaultRule`]s to a [`Faults`] handle and reads what arrived from a [`RequestLog`];
//! [`instrument`] wraps a router with both, and [`EmulatorServer`] serves it on `127.0.0.1:0`.
//! Nothing here knows about GUN or Elasticsearch semantics.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use futures::StreamExt as _;
use futures::stream::{self, Stream};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Request bodies are recorded up to this many bytes by default (the rest is dropped from the
/// log only); see [`RequestLog::set_body_limit`].
pub const RECORDED_BODY_LIMIT: usize = 64 * 1024;

/// Largest request body the recorder buffers before handing it on; larger bodies get 413.
const MAX_REQUEST_BODY: usize = 64 * 1024 * 1024;

/// One way to misbehave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer `status` with `body` (sent as JSON), an optional `Retry-After: <seconds>` and an
    /// optional `Location` (a redirect).
    Status {
        status: u16,
        body: String,
        retry_after: Option<u64>,
        location: Option<String>,
    },
    /// Wait, then let the request through to the real handler.
    Delay(Duration),
    /// Drop the connection without sending a status line: the client sees a transport error.
    Reset,
    /// `200` with a body that is not JSON.
    Garbage,
    /// `200` with a JSON body cut in half (consistent `Content-Length`, so it is not a transport error).
    Truncated,
    /// `200` streaming this many bytes of JSON-looking body, generated lazily, without `Content-Length`.
    HugeBody(usize),
    /// `200` with a declared `Content-Length` whose body trickles one byte per `interval` for a
    /// very long time.
    SlowDrip { interval: Duration },
}

/// A fault and the requests it applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRule {
    /// `None` matches every method.
    pub method: Option<Method>,
    /// Matches a request whose path starts with this (`""` matches everything).
    pub path_prefix: String,
    /// When set, the request's query, percent-decoded (`soul=a1b2:post-1`), must contain this:
    /// the relay names the soul in the query, so this is how one record's requests are faulted.
    pub query_contains: Option<String>,
    /// How many more requests this rule applies to; `None` = forever.
    pub times: Option<u32>,
    pub fault: Fault,
}

impl FaultRule {
    /// A rule applying `fault` forever to every request under `path_prefix`.
    pub fn new(path_prefix: impl Into<String>, fault: Fault) -> Self {
        Self {
            method: None,
            path_prefix: path_prefix.into(),
            query_contains: None,
            times: None,
            fault,
        }
    }

    /// Answer `status` with a small JSON error body `{"error": "injected fault"}`.
    pub fn status(path_prefix: impl Into<String>, status: u16) -> Self {
        Self::new(
            path_prefix,
            Fault::Status {
                status,
                body: r#"{"error":"injected fault"}"#.to_owned(),
                retry_after: None,
                location: None,
            },
        )
    }

    pub fn delay(path_prefix: impl Into<String>, delay: Duration) -> Self {
        Self::new(path_prefix, Fault::Delay(delay))
    }

    pub fn reset(path_prefix: impl Into<String>) -> Self {
        Self::new(path_prefix, Fault::Reset)
    }

    pub fn garbage(path_prefix: impl Into<String>) -> Self {
        Self::new(path_prefix, Fault::Garbage)
    }

    pub fn truncated(path_prefix: impl Into<String>) -> Self {
        Self::new(path_prefix, Fault::Truncated)
    }

    pub fn huge_body(path_prefix: impl Into<String>, bytes: usize) -> Self {
        Self::new(path_prefix, Fault::HugeBody(bytes))
    }

    pub fn slow_drip(path_prefix: impl Into<String>, interval: Duration) -> Self {
        Self::new(path_prefix, Fault::SlowDrip { interval })
    }

    /// Apply only to requests with this method.
    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    /// Apply only to requests whose percent-decoded query contains `text` (e.g. a soul).
    pub fn query(mut self, text: impl Into<String>) -> Self {
        self.query_contains = Some(text.into());
        self
    }

    /// Apply to the next `n` matching requests only.
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    /// Add `Retry-After: <seconds>`; only meaningful for [`Fault::Status`].
    pub fn retry_after(mut self, seconds: u64) -> Self {
        if let Fault::Status { retry_after, .. } = &mut self.fault {
            *retry_after = Some(seconds);
        }
        self
    }

    /// Add `Location: <url>` (a redirect's target); only meaningful for [`Fault::Status`].
    pub fn location(mut self, url: impl Into<String>) -> Self {
        if let Fault::Status { location, .. } = &mut self.fault {
            *location = Some(url.into());
        }
        self
    }

    /// Replace the body of a [`Fault::Status`].
    pub fn body(mut self, text: impl Into<String>) -> Self {
        if let Fault::Status { body, .. } = &mut self.fault {
            *body = text.into();
        }
        self
    }

    fn matches(&self, method: &Method, path: &str, decoded_query: &str) -> bool {
        self.times != Some(0)
            && self.method.as_ref().is_none_or(|m| m == method)
            && path.starts_with(&self.path_prefix)
            && self
                .query_contains
                .as_deref()
                .is_none_or(|text| decoded_query.contains(text))
    }
}

/// The shared, scriptable list of fault rules of one emulator. Cloning shares the list.
#[derive(Clone, Default, Debug)]
pub struct Faults {
    rules: Arc<Mutex<Vec<FaultRule>>>,
}

impl Faults {
    pub fn new() -> Self {
        Self::default()
    }

    /// Append a rule; rules are tried in the order they were added.
    pub fn add(&self, rule: FaultRule) {
        lock(&self.rules).push(rule);
    }

    /// Remove every rule.
    pub fn clear(&self) {
        lock(&self.rules).clear();
    }

    /// Rules that can still fire.
    pub fn rules(&self) -> Vec<FaultRule> {
        lock(&self.rules).clone()
    }

    /// Take the fault for this request: the first matching rule with a remaining count, whose
    /// count is then decremented (an exhausted rule is removed).
    pub fn take(&self, method: &Method, path: &str) -> Option<Fault> {
        self.take_for(method, path, None)
    }

    /// [`take`](Self::take) for a request with this raw (still percent-encoded) query.
    pub fn take_for(&self, method: &Method, path: &str, query: Option<&str>) -> Option<Fault> {
        let decoded = query.map(decode_query).unwrap_or_default();
        let mut rules = lock(&self.rules);
        let index = rules
            .iter()
            .position(|r| r.matches(method, path, &decoded))?;
        let rule = &mut rules[index];
        let fault = rule.fault.clone();
        if let Some(times) = &mut rule.times {
            *times -= 1;
            if *times == 0 {
                rules.remove(index);
            }
        }
        Some(fault)
    }
}

/// `a=1&soul=x%3Ay` as `a=1&soul=x:y`.
fn decode_query(query: &str) -> String {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Marks a response whose connection will be dropped, so the log records status 0.
#[derive(Clone, Copy)]
struct ConnectionReset;

/// Wrap `router` so that every request first consults `faults`.
pub fn layer(router: Router, faults: Faults) -> Router {
    router.layer(middleware::from_fn_with_state(faults, apply_faults))
}

async fn apply_faults(State(faults): State<Faults>, request: Request, next: Next) -> Response {
    let uri = request.uri();
    let Some(fault) = faults.take_for(request.method(), uri.path(), uri.query()) else {
        return next.run(request).await;
    };
    match fault {
        Fault::Delay(delay) => {
            tokio::time::sleep(delay).await;
            next.run(request).await
        }
        other => fault_response(other),
    }
}

fn fault_response(fault: Fault) -> Response {
    match fault {
        Fault::Status {
            status,
            body,
            retry_after,
            location,
        } => {
            let mut response = json_response(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                Body::from(body),
            );
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            if let Some(value) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        Fault::Delay(_) => unreachable!("a delay passes the request through"),
        // hyper polls the body right after buffering the head; a body that fails at once makes
        // it close the connection before anything is flushed, so the client gets no status line.
        Fault::Reset => {
            let failing = stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected connection reset",
                ))
            });
            let mut response = json_response(StatusCode::OK, Body::from_stream(failing));
            response.extensions_mut().insert(ConnectionReset);
            response
        }
        Fault::Garbage => json_response(
            StatusCode::OK,
            Body::from("<html><body>502 bad gateway</body></html> this is not json"),
        ),
        Fault::Truncated => {
            const FULL: &str = r#"{"_index":"records","_id":"truncated","found":true,"_source":{"data":{"name":"a record cut in half"},"oip":{"recordType":"post"}}}"#;
            json_response(StatusCode::OK, Body::from(&FULL[..FULL.len() / 2]))
        }
        Fault::HugeBody(bytes) => {
            json_response(StatusCode::OK, Body::from_stream(huge_body(bytes)))
        }
        Fault::SlowDrip { interval } => {
            let mut response =
                json_response(StatusCode::OK, Body::from_stream(slow_drip(interval)));
            response.headers_mut().insert(
                header::CONTENT_LENGTH,
                HeaderValue::from(slow_drip_length()),
            );
            response
        }
    }
}

fn json_response(status: StatusCode, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

const PAD_CHUNK: usize = 64 * 1024;
static PAD: [u8; PAD_CHUNK] = [b'a'; PAD_CHUNK];

/// `{"found":true,"_source":{"pad":"aaaa…"}}`, exactly `total` bytes (a prefix of it when `total`
/// is tiny), produced in 64 KiB chunks of one static buffer.
fn huge_body(total: usize) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    const HEAD: &[u8] = br#"{"found":true,"_source":{"pad":""#;
    const TAIL: &[u8] = br#""}}"#;
    let pad = total.saturating_sub(HEAD.len() + TAIL.len());
    let head = Bytes::from_static(&HEAD[..HEAD.len().min(total)]);
    let tail = Bytes::from_static(&TAIL[..TAIL.len().min(total.saturating_sub(HEAD.len()))]);
    let pads = stream::unfold(pad, |left| async move {
        (left > 0).then(|| {
            let n = left.min(PAD_CHUNK);
            (Bytes::from_static(&PAD[..n]), left - n)
        })
    });
    stream::once(async move { head })
        .chain(pads)
        .chain(stream::once(async move { tail }))
        .filter(|chunk| std::future::ready(!chunk.is_empty()))
        .map(Ok)
}

const DRIP_HEAD: &[u8] = br#"{"found":true,"_source":{"drip":""#;
const DRIP_TAIL: &[u8] = br#""}}"#;
const DRIPS: u32 = 1_000_000;

/// A JSON document sent one byte per `interval` after its head: a million of them. Its full
/// length is declared, so the client sees a stalled body, not one of unknown length.
fn slow_drip(interval: Duration) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    let drips = stream::unfold(DRIPS, move |left| async move {
        if left == 0 {
            return None;
        }
        tokio::time::sleep(interval).await;
        Some((Bytes::from_static(b"a"), left - 1))
    });
    stream::once(async { Bytes::from_static(DRIP_HEAD) })
        .chain(drips)
        .chain(stream::once(async { Bytes::from_static(DRIP_TAIL) }))
        .map(Ok)
}

fn slow_drip_length() -> usize {
    DRIP_HEAD.len() + DRIPS as usize + DRIP_TAIL.len()
}

/// One request as the emulator saw it, recorded when its response was produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The raw query string, without `?`; `None` when the URL had none.
    pub query: Option<String>,
    /// The body as lossy UTF-8, capped at [`RECORDED_BODY_LIMIT`] bytes (or the configured limit).
    pub body: String,
    /// The status sent; `0` when the connection was dropped without one ([`Fault::Reset`]),
    /// [`CLIENT_CLOSED_REQUEST`] when the client went away before the answer was ready.
    pub status: u16,
}

#[derive(Debug)]
struct LogInner {
    requests: Mutex<Vec<RecordedRequest>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    body_limit: AtomicUsize,
}

impl Default for LogInner {
    fn default() -> Self {
        Self {
            requests: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            body_limit: AtomicUsize::new(RECORDED_BODY_LIMIT),
        }
    }
}

/// Every request an emulator received, faulted or not, plus how many were in flight at once.
/// Cloning shares the log.
#[derive(Clone, Default, Debug)]
pub struct RequestLog {
    inner: Arc<LogInner>,
}

impl RequestLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// A snapshot of every recorded request, oldest first.
    pub fn all(&self) -> Vec<RecordedRequest> {
        lock(&self.inner.requests).clone()
    }

    /// How many recorded requests had this method (case-insensitive) and a path under `path_prefix`.
    pub fn count(&self, method: &str, path_prefix: &str) -> usize {
        lock(&self.inner.requests)
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path.starts_with(path_prefix))
            .count()
    }

    /// Forget recorded requests and reset the in-flight high-water mark.
    pub fn clear(&self) {
        lock(&self.inner.requests).clear();
        self.inner.max_in_flight.store(
            self.inner.in_flight.load(Ordering::SeqCst),
            Ordering::SeqCst,
        );
    }

    /// Requests currently being handled (from arrival until the response head is ready).
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests that were in flight at the same time since start or [`clear`](Self::clear).
    pub fn max_in_flight(&self) -> usize {
        self.inner.max_in_flight.load(Ordering::SeqCst)
    }

    /// Record at most `bytes` of each later request body (0 = none), e.g. to keep a
    /// 100 000-document run small.
    pub fn set_body_limit(&self, bytes: usize) {
        self.inner.body_limit.store(bytes, Ordering::Relaxed);
    }

    fn push(&self, request: RecordedRequest) {
        lock(&self.inner.requests).push(request);
    }
}

/// Decrements the in-flight count even if the handler future is dropped (client went away).
struct InFlight<'a>(&'a LogInner);

impl<'a> InFlight<'a> {
    fn enter(inner: &'a LogInner) -> Self {
        let now = inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        inner.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(inner)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Wrap `router` so that every request reaching it is recorded in `log`.
pub fn record(router: Router, log: RequestLog) -> Router {
    router.layer(middleware::from_fn_with_state(log, record_request))
}

async fn record_request(State(log): State<RequestLog>, request: Request, next: Next) -> Response {
    let _in_flight = InFlight::enter(&log.inner);
    let (parts, body) = request.into_parts();
    let method = parts.method.to_string();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let bytes = match axum::body::to_bytes(body, MAX_REQUEST_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => {
            log.push(RecordedRequest {
                method,
                path,
                query,
                body: String::new(),
                status: StatusCode::PAYLOAD_TOO_LARGE.as_u16(),
            });
            return json_response(StatusCode::PAYLOAD_TOO_LARGE, Body::empty());
        }
    };
    let limit = log.inner.body_limit.load(Ordering::Relaxed);
    let recorded = String::from_utf8_lossy(&bytes[..bytes.len().min(limit)]).into_owned();
    // Recorded even if the client gives up first (a timeout during a `Delay`): hyper then drops
    // this future, and the guard records the request with `CLIENT_CLOSED_REQUEST`.
    let mut pending = PendingRecord {
        log: &log,
        request: Some(RecordedRequest {
            method,
            path,
            query,
            body: recorded,
            status: CLIENT_CLOSED_REQUEST,
        }),
    };
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let status = if response.extensions().get::<ConnectionReset>().is_some() {
        0
    } else {
        response.status().as_u16()
    };
    pending.finish(status);
    response
}

/// The status recorded for a request whose client went away before the response was ready
/// (nginx's 499); nothing was sent.
pub const CLIENT_CLOSED_REQUEST: u16 = 499;

/// A request being handled, recorded exactly once: with its status when the response is ready,
/// or with [`CLIENT_CLOSED_REQUEST`] when dropped before.
struct PendingRecord<'a> {
    log: &'a RequestLog,
    request: Option<RecordedRequest>,
}

impl PendingRecord<'_> {
    fn finish(&mut self, status: u16) {
        if let Some(mut request) = self.request.take() {
            request.status = status;
            self.log.push(request);
        }
    }
}

impl Drop for PendingRecord<'_> {
    fn drop(&mut self) {
        if let Some(request) = self.request.take() {
            self.log.push(request);
        }
    }
}

/// Wrap `router` with fault injection inside request recording, so faulted requests are logged too.
pub fn instrument(router: Router, faults: Faults, log: RequestLog) -> Router {
    record(layer(router, faults), log)
}

/// An axum router served on `127.0.0.1:<free port>` until [`shutdown`](Self::shutdown) or drop.
#[derive(Debug)]
pub struct EmulatorServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl EmulatorServer {
    /// Bind `127.0.0.1:0` and serve `router` on a background task.
    ///
    /// # Errors
    /// When the listener cannot be bound.
    pub async fn start(router: Router) -> std::io::Result<Self> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>/`.
    pub fn url(&self) -> url::Url {
        url::Url::parse(&format!("http://{}/", self.addr)).expect("a socket address forms a URL")
    }

    /// Stop accepting and wait (at most 5 s) for open requests to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for EmulatorServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock must not poison the emulator for the others.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::any;

    async fn echo_server() -> (EmulatorServer, Faults, RequestLog) {
        let faults = Faults::new();
        let log = RequestLog::new();
        let router = Router::new().route("/{*rest}", any(|| async { r#"{"ok":true}"# }));
        let server = EmulatorServer::start(instrument(router, faults.clone(), log.clone()))
            .await
            .unwrap();
        (server, faults, log)
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    }

    #[test]
    fn first_matching_rule_with_remaining_count_applies_then_expires() {
        let faults = Faults::new();
        faults.add(FaultRule::status("/a", 500).method(Method::DELETE).times(2));
        faults.add(FaultRule::status("/", 503).times(1));
        let take = |m: Method, p: &str| match faults.take(&m, p) {
            Some(Fault::Status { status, .. }) => Some(status),
            Some(other) => panic!("unexpected {other:?}"),
            None => None,
        };
        assert_eq!(take(Method::GET, "/a/1"), Some(503));
        assert_eq!(take(Method::DELETE, "/a/1"), Some(500));
        assert_eq!(take(Method::DELETE, "/b"), None);
        assert_eq!(take(Method::DELETE, "/a/2"), Some(500));
        assert_eq!(take(Method::DELETE, "/a/3"), None);
        assert!(faults.rules().is_empty());
    }

    #[test]
    fn query_rules_match_the_decoded_query_only() {
        let faults = Faults::new();
        faults.add(FaultRule::status("/get", 500).query("soul=a1:bad-1"));
        let status = |query: Option<&str>| match faults.take_for(&Method::GET, "/get", query) {
            Some(Fault::Status { status, .. }) => Some(status),
            Some(other) => panic!("unexpected {other:?}"),
            None => None,
        };
        assert_eq!(status(Some("soul=a1%3Abad-1")), Some(500));
        assert_eq!(status(Some("soul=a1%3Abad-1%2Fdata")), Some(500));
        assert_eq!(status(Some("soul=a1%3Agood-1")), None);
        assert_eq!(status(None), None);
        assert_eq!(faults.take(&Method::GET, "/get"), None);
    }

    #[test]
    fn rules_without_times_apply_forever_until_cleared() {
        let faults = Faults::new();
        faults.add(FaultRule::reset(""));
        for _ in 0..10 {
            assert_eq!(faults.take(&Method::GET, "/x"), Some(Fault::Reset));
        }
        faults.clear();
        assert_eq!(faults.take(&Method::GET, "/x"), None);
    }

    #[test]
    fn huge_body_is_exactly_the_requested_size_and_valid_json() {
        let bytes: Vec<u8> =
            futures::executor::block_on(huge_body(200_000).map(|c| c.unwrap().to_vec()).concat());
        assert_eq!(bytes.len(), 200_000);
        assert!(serde_json::from_slice::<serde_json::Value>(&bytes).is_ok());
        let tiny: Vec<u8> =
            futures::executor::block_on(huge_body(5).map(|c| c.unwrap().to_vec()).concat());
        assert_eq!(tiny.len(), 5);
    }

    #[tokio::test]
    async fn status_fault_sends_status_body_and_retry_after() {
        let (server, faults, log) = echo_server().await;
        faults.add(
            FaultRule::status("/x", 503)
                .retry_after(7)
                .body(r#"{"error":"busy"}"#)
                .times(1),
        );
        let url = server.url().join("x?q=1").unwrap();
        let response = client()
            .post(url.clone())
            .body("hello")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
        assert_eq!(response.text().await.unwrap(), r#"{"error":"busy"}"#);
        let response = client().post(url).send().await.unwrap();
        assert_eq!(response.status(), 200);

        let all = log.all();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].method, "POST");
        assert_eq!(all[0].path, "/x");
        assert_eq!(all[0].query.as_deref(), Some("q=1"));
        assert_eq!(all[0].body, "hello");
        assert_eq!(all[0].status, 503);
        assert_eq!(all[1].status, 200);
        assert_eq!(log.count("post", "/x"), 2);
        assert_eq!(log.count("GET", "/x"), 0);
        log.clear();
        assert!(log.all().is_empty());
    }

    #[tokio::test]
    async fn reset_fault_is_a_transport_error_without_a_status() {
        let (server, faults, log) = echo_server().await;
        faults.add(FaultRule::reset("/").times(1));
        let err = client()
            .get(server.url().join("r").unwrap())
            .send()
            .await
            .unwrap_err();
        assert!(err.status().is_none(), "{err:?}");
        assert!(
            err.is_request() || err.is_connect() || err.is_body(),
            "{err:?}"
        );
        assert_eq!(log.all()[0].status, 0);
        let ok = client()
            .get(server.url().join("r").unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
    }

    #[tokio::test]
    async fn garbage_and_truncated_bodies_are_not_json() {
        let (server, faults, _log) = echo_server().await;
        faults.add(FaultRule::garbage("/g"));
        faults.add(FaultRule::truncated("/t"));
        for path in ["g", "t"] {
            let response = client()
                .get(server.url().join(path).unwrap())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let text = response.text().await.unwrap();
            assert!(!text.is_empty());
            assert!(
                serde_json::from_str::<serde_json::Value>(&text).is_err(),
                "{path}: {text}"
            );
        }
    }

    #[tokio::test]
    async fn huge_body_streams_without_content_length() {
        let (server, faults, _log) = echo_server().await;
        faults.add(FaultRule::huge_body("/", 3 * 1024 * 1024));
        let response = client()
            .get(server.url().join("h").unwrap())
            .send()
            .await
            .unwrap();
        assert!(response.content_length().is_none());
        assert_eq!(response.bytes().await.unwrap().len(), 3 * 1024 * 1024);
    }

    #[tokio::test]
    async fn slow_drip_outlasts_a_short_client_timeout() {
        let (server, faults, _log) = echo_server().await;
        faults.add(FaultRule::slow_drip("/", Duration::from_millis(50)));
        let short = reqwest::Client::builder()
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let response = short
            .get(server.url().join("s").unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.content_length(), Some(slow_drip_length() as u64));
        let err = response.bytes().await.unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
    }

    #[tokio::test]
    async fn delay_passes_through_and_counts_concurrent_requests() {
        let (server, faults, log) = echo_server().await;
        faults.add(FaultRule::delay("/", Duration::from_millis(200)));
        let c = client();
        let calls = (0..3).map(|_| c.get(server.url().join("d").unwrap()).send());
        for response in futures::future::join_all(calls).await {
            assert_eq!(response.unwrap().status(), 200);
        }
        assert_eq!(log.max_in_flight(), 3);
        assert_eq!(log.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_request_the_client_abandons_is_still_recorded() {
        let (server, faults, log) = echo_server().await;
        faults.add(FaultRule::delay("/", Duration::from_secs(30)));
        let impatient = reqwest::Client::builder()
            .timeout(Duration::from_millis(100))
            .build()
            .unwrap();
        let err = impatient
            .get(server.url().join("slow").unwrap())
            .send()
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while log.all().is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let all = log.all();
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(all[0].path, "/slow");
        assert_eq!(all[0].status, CLIENT_CLOSED_REQUEST);
    }

    #[tokio::test]
    async fn recorded_bodies_are_capped() {
        let (server, _faults, log) = echo_server().await;
        let body = "x".repeat(RECORDED_BODY_LIMIT + 10);
        client()
            .put(server.url().join("b").unwrap())
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(log.all()[0].body.len(), RECORDED_BODY_LIMIT);
        server.shutdown().await;
    }
}
