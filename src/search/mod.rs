//! `SearchClient`: the only code that talks to Elasticsearch (DESIGN §4), over the official
//! `elasticsearch` crate. It bounds in-flight requests with a semaphore, never reads a response
//! body larger than `max_response_bytes`, classifies failures once (`SearchError`), and never
//! logs the password or document bodies.

mod error;

pub use error::{Context, SearchError};

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use elasticsearch::Elasticsearch;
use elasticsearch::auth::Credentials;
use elasticsearch::cluster::ClusterHealthParts;
use elasticsearch::http::headers::{ACCEPT_ENCODING, HeaderValue, RETRY_AFTER};
use elasticsearch::http::response::Response;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::{DeleteParts, ExistsParts, GetParts, IndexParts};
use serde_json::Value;
use tokio::sync::Semaphore;
use tracing::debug;
use url::Url;

use crate::secret::Secret;
use error::error_reason;

/// Whether an index call waits until the document is visible to search.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Refresh {
    /// Return as soon as the document is stored (no query parameter is sent).
    #[default]
    No,
    /// Send `refresh=wait_for`: return once a refresh made the document searchable.
    WaitFor,
}

/// Result of a delete. Both are success: a missing document is already deleted (DESIGN §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    NotFound,
}

/// How to reach Elasticsearch. `Debug` never shows the password (nor one embedded in `url`).
#[derive(Clone)]
pub struct SearchOptions {
    /// `ELASTICSEARCHHOST`. Credentials in the URL are used when `username` is `None`.
    pub url: Url,
    /// `ELASTICCLIENTUSERNAME`; basic auth is sent only when this is set.
    pub username: Option<String>,
    /// `ELASTICCLIENTPASSWORD`.
    pub password: Option<Secret>,
    /// `GUNSYNC_ES_INDEX`.
    pub index: String,
    /// `GUNSYNC_ES_CONCURRENCY`: most requests in flight at once (and so most open sockets).
    pub concurrency: usize,
    /// Whole-request timeout: connect, send, and reading the response body.
    pub timeout: Duration,
    /// Largest response body read; a larger one is refused unread.
    pub max_response_bytes: usize,
}

impl Default for SearchOptions {
    /// The defaults of DESIGN §4–5.
    fn default() -> Self {
        Self {
            url: Url::parse("http://elasticsearch:9200").expect("a valid literal URL"),
            username: None,
            password: None,
            index: "records".to_owned(),
            concurrency: 8,
            timeout: Duration::from_secs(30),
            max_response_bytes: 16 * 1024 * 1024,
        }
    }
}

impl fmt::Debug for SearchOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SearchOptions")
            .field("url", &redacted_url(&self.url).as_str())
            .field("username", &self.username)
            .field("password", &self.password)
            .field("index", &self.index)
            .field("concurrency", &self.concurrency)
            .field("timeout", &self.timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
    }
}

/// The Elasticsearch client: built once, cloned freely (all clones share one connection pool
/// and one concurrency limit). `Debug` shows no credentials.
#[derive(Clone)]
pub struct SearchClient {
    inner: Arc<Inner>,
}

struct Inner {
    es: Elasticsearch,
    index: String,
    /// The URL without credentials, for `Debug`.
    url: Url,
    username: Option<String>,
    permits: Semaphore,
    concurrency: usize,
    timeout: Duration,
    max_response_bytes: usize,
}

impl fmt::Debug for SearchClient {
    // Never derive: the crate's `Transport` Debug prints its `Credentials` in clear text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SearchClient")
            .field("url", &self.inner.url.as_str())
            .field("username", &self.inner.username)
            .field("index", &self.inner.index)
            .field("concurrency", &self.inner.concurrency)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl SearchClient {
    /// Build the client; no request is sent.
    ///
    /// # Errors
    /// [`SearchError::Build`] for an invalid index name, a zero concurrency, timeout or body
    /// limit, or when the HTTP client cannot be built.
    pub fn new(options: SearchOptions) -> Result<Self, SearchError> {
        validate_index_name(&options.index)?;
        if options.concurrency == 0 {
            return Err(SearchError::Build("concurrency must be at least 1".into()));
        }
        if options.timeout.is_zero() {
            return Err(SearchError::Build("timeout must be positive".into()));
        }
        if options.max_response_bytes == 0 {
            return Err(SearchError::Build(
                "max_response_bytes must be positive".into(),
            ));
        }
        let (url, url_username, url_password) = split_credentials(options.url);
        let credentials = match (options.username, url_username) {
            (Some(user), _) => Some((user, options.password.unwrap_or_default())),
            (None, Some(user)) => Some((user, url_password.unwrap_or_default())),
            (None, None) => None,
        };
        let username = credentials.as_ref().map(|(user, _)| user.clone());

        // The crate builds its own reqwest::Client from a private ClientBuilder, so the idle pool
        // cannot be bounded here (reqwest keeps idle sockets 90 s, unbounded per host). The
        // semaphore bounds it instead: at most `concurrency` requests in flight means at most
        // `concurrency` sockets ever opened concurrently, so at most that many idle.
        let mut builder = TransportBuilder::new(SingleNodeConnectionPool::new(url.clone()))
            .timeout(options.timeout)
            .disable_proxy()
            // The crate turns on reqwest's gzip: ES would then compress its answers, and a
            // decoded body has no known length (nor a bound on its size). Ask for plain bodies.
            .header(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        if let Some((user, password)) = credentials {
            builder = builder.auth(Credentials::Basic(user, password.expose().to_owned()));
        }
        let transport = builder
            .build()
            .map_err(|err| SearchError::Build(err.to_string()))?;

        Ok(Self {
            inner: Arc::new(Inner {
                es: Elasticsearch::new(transport),
                index: options.index,
                url,
                username,
                permits: Semaphore::new(options.concurrency),
                concurrency: options.concurrency,
                timeout: options.timeout,
                max_response_bytes: options.max_response_bytes,
            }),
        })
    }

    /// The index documents go to.
    pub fn index_name(&self) -> &str {
        &self.inner.index
    }

    /// Store `body` as document `did` (created or replaced).
    ///
    /// # Errors
    /// Any status other than 200/201, or no answer; see [`SearchError::is_transient`].
    pub async fn index(
        &self,
        did: &str,
        body: &Value,
        refresh: Refresh,
    ) -> Result<(), SearchError> {
        let context = Context::new("index", Some(did));
        check_id(&context, did)?;
        let mut request = self
            .inner
            .es
            .index(IndexParts::IndexId(&self.inner.index, did))
            .body(body);
        if refresh == Refresh::WaitFor {
            request = request.refresh(elasticsearch::params::Refresh::WaitFor);
        }
        let answer = self.exchange(&context, request.send()).await?;
        match answer.status {
            200 | 201 => answer
                .write_result(&context, &["created", "updated", "noop"])
                .map(|_| ()),
            _ => Err(answer.into_error(context)),
        }
    }

    /// Delete document `did`. A 404 is [`DeleteOutcome::NotFound`], a success (DESIGN §4).
    ///
    /// # Errors
    /// Any status other than 200/404, or no answer.
    pub async fn delete(&self, did: &str) -> Result<DeleteOutcome, SearchError> {
        let context = Context::new("delete", Some(did));
        check_id(&context, did)?;
        // ES 8 rejects unknown query params (DESIGN §4): a 404 is handled here, never with ignore=404.
        let request = self
            .inner
            .es
            .delete(DeleteParts::IndexId(&self.inner.index, did))
            .send();
        let answer = self.exchange(&context, request).await?;
        match answer.status {
            200 => match answer.write_result(&context, &["deleted", "not_found"])? {
                "deleted" => Ok(DeleteOutcome::Deleted),
                _ => Ok(DeleteOutcome::NotFound),
            },
            404 => Ok(DeleteOutcome::NotFound),
            _ => Err(answer.into_error(context)),
        }
    }

    /// Whether document `did` exists (`HEAD`).
    ///
    /// # Errors
    /// Any status other than 200/404, or no answer.
    pub async fn exists(&self, did: &str) -> Result<bool, SearchError> {
        let context = Context::new("exists", Some(did));
        check_id(&context, did)?;
        let request = self
            .inner
            .es
            .exists(ExistsParts::IndexId(&self.inner.index, did))
            .send();
        let answer = self.exchange(&context, request).await?;
        match answer.status {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(answer.into_error(context)),
        }
    }

    /// The stored body (`_source`) of document `did`; `None` when there is no such document.
    ///
    /// # Errors
    /// Other statuses, no answer, or a body that is not a found document, too large, or of
    /// unknown length.
    pub async fn get(&self, did: &str) -> Result<Option<Value>, SearchError> {
        let context = Context::new("get", Some(did));
        check_id(&context, did)?;
        let request = self
            .inner
            .es
            .get(GetParts::IndexId(&self.inner.index, did))
            .send();
        let answer = self.exchange(&context, request).await?;
        match answer.status {
            200 => {
                let mut json = answer.json(&context)?;
                if json.get("found").and_then(Value::as_bool) != Some(true) {
                    return Err(SearchError::Malformed {
                        context,
                        detail: "200 without \"found\": true".into(),
                    });
                }
                match json.get_mut("_source").map(Value::take) {
                    Some(source) => Ok(Some(source)),
                    None => Err(SearchError::Malformed {
                        context,
                        detail: "found document without _source".into(),
                    }),
                }
            }
            404 => Ok(None),
            _ => Err(answer.into_error(context)),
        }
    }

    /// `HEAD /`: whether the cluster answers at all.
    ///
    /// # Errors
    /// Any status other than 200, or no answer.
    pub async fn ping(&self) -> Result<(), SearchError> {
        let context = Context::new("ping", None);
        let answer = self.exchange(&context, self.inner.es.ping().send()).await?;
        match answer.status {
            200 => Ok(()),
            _ => Err(answer.into_error(context)),
        }
    }

    /// The cluster health colour (`green`, `yellow`, `red`), for `/healthz`.
    ///
    /// # Errors
    /// Any status other than 200, no answer, or a body without `status`.
    pub async fn cluster_health(&self) -> Result<String, SearchError> {
        let context = Context::new("cluster health", None);
        let cluster = self.inner.es.cluster();
        let request = cluster.health(ClusterHealthParts::None).send();
        let answer = self.exchange(&context, request).await?;
        if answer.status != 200 {
            return Err(answer.into_error(context));
        }
        let json = answer.json(&context)?;
        match json.get("status").and_then(Value::as_str) {
            Some(status) => Ok(status.to_owned()),
            None => Err(SearchError::Malformed {
                context,
                detail: "no \"status\" field".into(),
            }),
        }
    }

    /// Send one request under a concurrency permit and read its body within the size limit.
    /// The permit is held until the body is read, so sockets in use never exceed `concurrency`.
    async fn exchange(
        &self,
        context: &Context,
        request: impl Future<Output = Result<Response, elasticsearch::Error>>,
    ) -> Result<Answer, SearchError> {
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let started = Instant::now();
        let result = async {
            let response = request
                .await
                .map_err(|err| self.transport_error(context, err))?;
            let status = response.status_code().as_u16();
            let retry_after = match status {
                429 | 503 => response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .and_then(crate::retry_after::parse),
                _ => None,
            };
            let body = read_capped(response, self.inner.max_response_bytes)
                .await
                .map_err(|err| self.transport_error(context, err))?;
            Ok(Answer {
                status,
                retry_after,
                body,
            })
        }
        .await;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let did = context.did.as_deref().unwrap_or("");
        let outcome = match &result {
            Ok(answer) => {
                debug!(
                    op = context.op,
                    did,
                    status = answer.status,
                    elapsed_ms,
                    "elasticsearch request"
                );
                Some(match answer.status {
                    404 => "not_found",
                    400..=499 => "client_error",
                    500..=599 => "server_error",
                    _ => "ok",
                })
            }
            Err(err) => {
                debug!(op = context.op, did, elapsed_ms, error = %err, "elasticsearch request failed");
                // An invalid request never left the process: it is not an HTTP request outcome.
                matches!(err, SearchError::Transport { .. }).then_some("transport_error")
            }
        };
        if let Some(outcome) = outcome {
            metrics::counter!("gunsync_http_requests_total", "system" => "es", "outcome" => outcome)
                .increment(1);
        }
        result
    }

    /// Classify a failure of the crate's send or body read: no usable answer.
    fn transport_error(&self, context: &Context, err: elasticsearch::Error) -> SearchError {
        let http = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<reqwest::Error>());
        let what = match http {
            None => {
                // Not an HTTP failure: URL, JSON serialisation or compression of our request.
                return SearchError::InvalidRequest {
                    context: context.clone(),
                    detail: err.to_string(),
                };
            }
            Some(http) if http.is_builder() => {
                return SearchError::InvalidRequest {
                    context: context.clone(),
                    detail: err.to_string(),
                };
            }
            Some(http) if http.is_timeout() => {
                format!(
                    "elasticsearch did not answer within {}",
                    humantime::format_duration(self.inner.timeout)
                )
            }
            // The cause tells a refused connection from a reset one.
            Some(http) if http.is_connect() => {
                format!("could not connect to elasticsearch: {}", root_cause(http))
            }
            Some(http) if http.is_body() || http.is_decode() => {
                format!(
                    "elasticsearch response body interrupted: {}",
                    root_cause(http)
                )
            }
            Some(http) => format!("elasticsearch connection failed: {}", root_cause(http)),
        };
        SearchError::Transport {
            context: context.clone(),
            what,
            source: err,
        }
    }
}

/// The innermost cause of `err`: reqwest's own message ("error sending request for url (…)")
/// does not say whether the connection was refused or reset; its last source does.
fn root_cause(err: &reqwest::Error) -> String {
    let mut cause: &(dyn std::error::Error + 'static) = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// A response that arrived, with its body read (or refused).
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    body: Body,
}

enum Body {
    Read(Bytes),
    /// Not read, and why: larger than the limit or of unknown length.
    Refused(String),
}

impl Answer {
    /// The error for a status the operation does not accept.
    fn into_error(self, context: Context) -> SearchError {
        let reason = match &self.body {
            Body::Read(bytes) => error_reason(bytes),
            Body::Refused(why) => format!("(body not read: {why})"),
        };
        SearchError::Status {
            context,
            status: self.status,
            reason,
            retry_after: self.retry_after,
        }
    }

    /// The `result` of a write's success answer, one of `accepted`. A success status is only
    /// believed with Elasticsearch's body: a proxy's page or a cut-off body on a 200 does not
    /// prove the write happened, and taking it for one would mark the job done and lose the
    /// write (a discovered record is never enqueued again).
    fn write_result(
        self,
        context: &Context,
        accepted: &[&'static str],
    ) -> Result<&'static str, SearchError> {
        let json = self.json(context)?;
        let result = json.get("result").and_then(Value::as_str);
        match result.and_then(|r| accepted.iter().find(|a| **a == r)) {
            Some(result) => Ok(result),
            None => Err(SearchError::Malformed {
                context: context.clone(),
                detail: match result {
                    Some(other) => format!("unexpected \"result\": {other:?}"),
                    None => format!("success without a \"result\" ({})", truncate_json(&json)),
                },
            }),
        }
    }

    /// The body of a success as JSON.
    fn json(self, context: &Context) -> Result<Value, SearchError> {
        match self.body {
            Body::Read(bytes) => {
                serde_json::from_slice(&bytes).map_err(|err| SearchError::Malformed {
                    context: context.clone(),
                    detail: format!("{} bytes that are not JSON ({err})", bytes.len()),
                })
            }
            Body::Refused(detail) => Err(SearchError::Oversized {
                context: context.clone(),
                detail,
            }),
        }
    }
}

fn truncate_json(json: &Value) -> String {
    error::truncate(&json.to_string(), 100)
}

/// Read the body only when its `Content-Length` is known and within `limit`. The crate offers
/// no streaming read (only `bytes()`, which buffers everything), so a body without a length —
/// chunked, or decoded — is refused unread, and the dropped response closes its connection.
async fn read_capped(response: Response, limit: usize) -> Result<Body, elasticsearch::Error> {
    match response.content_length() {
        Some(length) if length > limit as u64 => Ok(Body::Refused(format!(
            "{length} bytes exceed the limit of {limit}"
        ))),
        Some(_) => Ok(Body::Read(response.bytes().await?)),
        None => Ok(Body::Refused("body of unknown length".to_owned())),
    }
}

/// Ids that the crate would send as a path resolving elsewhere (`.`/`..` are normalised away).
fn check_id(context: &Context, did: &str) -> Result<(), SearchError> {
    if did.is_empty() || did == "." || did == ".." {
        return Err(SearchError::InvalidRequest {
            context: context.clone(),
            detail: "document id must not be empty, \".\" or \"..\"".into(),
        });
    }
    Ok(())
}

/// ES index names: lowercase, not starting with `-`, `_`, `+`, none of `\ / * ? " < > | , # :`
/// or spaces, not `.`/`..`.
fn validate_index_name(index: &str) -> Result<(), SearchError> {
    let bad = index.is_empty()
        || index == "."
        || index == ".."
        || index.starts_with(['-', '_', '+'])
        || index
            .chars()
            .any(|c| c.is_uppercase() || c.is_whitespace() || "\\/*?\"<>|,#:".contains(c));
    if bad {
        return Err(SearchError::Build(format!(
            "invalid elasticsearch index name {index:?}"
        )));
    }
    Ok(())
}

/// The URL without user info, and the user info (percent-decoded) it held.
fn split_credentials(mut url: Url) -> (Url, Option<String>, Option<Secret>) {
    let username = (!url.username().is_empty()).then(|| percent_decode(url.username()));
    let password = url.password().map(|p| Secret::from(percent_decode(p)));
    // Both setters only fail for URLs that cannot have credentials, which then have none.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    (url, username, password)
}

fn redacted_url(url: &Url) -> Url {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("[redacted]"));
    }
    url
}

/// `%XX` escapes decoded; invalid UTF-8 replaced rather than refused.
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_names_follow_es_rules() {
        for ok in ["records", "oip-records", "r.1"] {
            assert!(validate_index_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Records", "_x", "-x", "a/b", "a b", "a:b", ".."] {
            assert!(validate_index_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_in_the_url_are_moved_out_of_it() {
        let (url, user, password) =
            split_credentials(Url::parse("http://el%40stic:p%3Ass@es:9200/").unwrap());
        assert_eq!(url.as_str(), "http://es:9200/");
        assert_eq!(user.as_deref(), Some("el@stic"));
        assert_eq!(password.unwrap().expose(), "p:ss");
        let (url, user, password) = split_credentials(Url::parse("http://es:9200").unwrap());
        assert_eq!(url.as_str(), "http://es:9200/");
        assert!(user.is_none() && password.is_none());
    }

    #[test]
    fn options_debug_redacts_passwords_also_inside_the_url() {
        let options = SearchOptions {
            url: Url::parse("http://u:hunter2@es:9200").unwrap(),
            password: Some(Secret::from("hunter3")),
            ..SearchOptions::default()
        };
        let debug = format!("{options:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("hunter3"),
            "{debug}"
        );
    }

    #[test]
    fn client_errors_and_futures_can_cross_threads() {
        fn send_sync<T: Send + Sync + 'static>() {}
        fn send<T: Send>(_: &T) {}
        send_sync::<SearchClient>();
        send_sync::<SearchError>();
        let client = SearchClient::new(SearchOptions::default()).unwrap();
        let body = Value::Null;
        send(&client.index("did:gun:a:1", &body, Refresh::No));
        send(&client.delete("did:gun:a:1"));
        send(&client.get("did:gun:a:1"));
        send(&client.exists("did:gun:a:1"));
        send(&client.cluster_health());
    }

    #[test]
    fn invalid_options_are_build_errors() {
        let zero = SearchOptions {
            concurrency: 0,
            ..SearchOptions::default()
        };
        assert!(matches!(
            SearchClient::new(zero),
            Err(SearchError::Build(_))
        ));
        assert!(SearchClient::new(SearchOptions::default()).is_ok());
    }
}
