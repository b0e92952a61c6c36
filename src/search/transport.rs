//! [`Transport`]: the one `reqwest::Client` every Elasticsearch call shares, and one exchange:
//! a request sent under a concurrency permit, its answer read as a capped stream, logged (the
//! DID and sizes, never a body) and counted. It knows HTTP, not what Elasticsearch's answers mean.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{self, HeaderMap, HeaderValue};
use tokio::sync::Semaphore;
use tracing::debug;
use url::Url;

use super::answer::{Answer, Body};
use super::endpoint::{self, Credentials, Endpoint, redacted_url};
use super::error::{Context, MAX_REASON_CHARS, SearchError, truncate};
use super::resolver::SystemResolver;
use super::{SearchOptions, diagnose};

/// Idle connections kept to the cluster (DESIGN §2: at most 4 per host).
const MAX_IDLE_PER_HOST: usize = 4;

/// How long an idle connection is kept before it is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest wait for a connection to open (and the TLS handshake), within the request timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Error bodies are read up to this much for the message (never more than the response cap).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The HTTP side of the client. Its `Debug` shows the URL without credentials and the user name.
pub(super) struct Transport {
    http: reqwest::Client,
    /// The cluster's URL, without credentials.
    base: Url,
    credentials: Option<Credentials>,
    permits: Semaphore,
    concurrency: usize,
    timeout: Duration,
    max_response_bytes: usize,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("url", &self.base.as_str())
            .field(
                "username",
                &self.credentials.as_ref().map(|c| c.username.as_str()),
            )
            .field("concurrency", &self.concurrency)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Build the shared client: no redirects, no proxy from the environment, plain (identity)
    /// bodies, a bounded idle pool, the whole-request timeout. Credentials in the URL are moved
    /// out of it (see [`endpoint::credentials`]).
    ///
    /// # Errors
    /// [`SearchError::Build`] when the TLS backend cannot be initialised.
    pub(super) fn new(options: &SearchOptions) -> Result<Self, SearchError> {
        let (base, credentials) = endpoint::credentials(
            &options.url,
            options.username.as_deref(),
            options.password.as_ref(),
        );
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        // Compressed answers would have no length to check before decoding, nor a bound.
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        let http = reqwest::Client::builder()
            // A 3xx is an error (SearchError::Redirect): a write sent to another host is not a
            // write to the configured cluster.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .default_headers(headers)
            .user_agent(concat!("gunsync/", env!("CARGO_PKG_VERSION")))
            .timeout(options.timeout)
            .connect_timeout(options.timeout.min(MAX_CONNECT_TIMEOUT))
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .pool_idle_timeout(IDLE_TIMEOUT)
            .dns_resolver(Arc::new(SystemResolver))
            .build()
            .map_err(|err| SearchError::Build(format!("http client: {err}")))?;
        Ok(Self {
            http,
            base,
            credentials,
            permits: Semaphore::new(options.concurrency),
            concurrency: options.concurrency,
            timeout: options.timeout,
            max_response_bytes: options.max_response_bytes,
        })
    }

    /// Send one request under a concurrency permit and read its answer within the size limit.
    /// The permit is held until the body is read, so sockets in use never exceed `concurrency`.
    ///
    /// # Errors
    /// [`SearchError::Transport`] without a complete answer, [`SearchError::Redirect`] for a
    /// 3xx, [`SearchError::InvalidRequest`] when the request cannot be built.
    pub(super) async fn exchange(
        &self,
        context: &Context,
        method: Method,
        endpoint: &Endpoint,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, SearchError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let started = Instant::now();
        let request_bytes = body.as_ref().map_or(0, Vec::len);
        let result = self.send(context, method, endpoint, body).await;
        record(context, &result, request_bytes, started.elapsed());
        result
    }

    async fn send(
        &self,
        context: &Context,
        method: Method,
        endpoint: &Endpoint,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, SearchError> {
        let url = endpoint.url(&self.base);
        let mut request = self.http.request(method, url.clone());
        if let Some(credentials) = &self.credentials {
            request =
                request.basic_auth(&credentials.username, Some(credentials.password.expose()));
        }
        if let Some(body) = body {
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let failure = |err| diagnose::failure(context, err, self.timeout);
        let response = request.send().await.map_err(failure)?;
        let status = response.status();
        if status.is_redirection() {
            return Err(SearchError::Redirect {
                context: context.clone(),
                status: status.as_u16(),
                location: location(response.headers(), &url),
            });
        }
        let retry_after = match status.as_u16() {
            429 | 503 => response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(crate::retry_after::parse),
            _ => None,
        };
        let limit = if status.is_success() {
            self.max_response_bytes
        } else {
            self.max_response_bytes.min(MAX_ERROR_BODY)
        };
        let body = read_capped(response, limit).await.map_err(failure)?;
        Ok(Answer {
            status: status.as_u16(),
            retry_after,
            body,
        })
    }
}

/// Read the body chunk by chunk and stop as soon as it passes `limit`; the rest is never read
/// (dropping the response closes its connection). A body of unknown length (chunked) is read
/// the same way; a declared length over the limit is refused before reading anything.
async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Body, reqwest::Error> {
    let declared = response.content_length();
    if let Some(length) = declared
        && length > limit as u64
    {
        return Ok(Body::Refused(format!(
            "{length} bytes exceed the limit of {limit}"
        )));
    }
    // Within the limit here, so the allocation is bounded.
    let mut body = Vec::with_capacity(declared.map_or(0, |length| length as usize));
    while let Some(chunk) = response.chunk().await? {
        // hyper enforces a declared length, so only a body of unknown length gets here.
        if body.len() + chunk.len() > limit {
            return Ok(Body::Refused(format!(
                "body of unknown length exceeds the limit of {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Body::Read(Bytes::from(body)))
}

/// The `Location` of a redirect, absolute and without credentials, truncated.
fn location(headers: &HeaderMap, requested: &Url) -> Option<String> {
    let value = headers.get(header::LOCATION)?;
    let text = String::from_utf8_lossy(value.as_bytes());
    let shown = match requested.join(&text) {
        Ok(target) => redacted_url(&target).to_string(),
        Err(_) => text.into_owned(),
    };
    Some(truncate(&shown, MAX_REASON_CHARS))
}

/// Log one exchange (debug) and count it by outcome.
fn record(
    context: &Context,
    result: &Result<Answer, SearchError>,
    request_bytes: usize,
    elapsed: Duration,
) {
    let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    let did = context.did.as_deref().unwrap_or("");
    let outcome = match result {
        Ok(answer) => {
            debug!(
                op = context.op,
                did,
                status = answer.status,
                request_bytes,
                response_bytes = answer.body.len(),
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
            debug!(op = context.op, did, request_bytes, elapsed_ms, error = %err, "elasticsearch request failed");
            match err {
                SearchError::Transport { .. } => Some("transport_error"),
                SearchError::Redirect { .. } => Some("redirect"),
                // An invalid request never left the process: it is not an HTTP request outcome.
                _ => None,
            }
        }
    };
    if let Some(outcome) = outcome {
        metrics::counter!("gunsync_http_requests_total", "system" => "es", "outcome" => outcome)
            .increment(1);
    }
}
