//! `SearchClient`: the only code that talks to Elasticsearch (DESIGN §4), over the crate's one
//! `reqwest` client. It bounds in-flight requests with a semaphore, reads every answer as a
//! stream capped at `max_response_bytes`, never follows a redirect, classifies failures once
//! (`SearchError`), and never logs the password or document bodies.
//!
//! * `endpoint`: URLs, percent-encoded ids, credentials out of the URL.
//! * `transport`: the shared HTTP client and one exchange (permit, capped read, metrics).
//! * `answer`: what an answer means: ES's `result`, error reasons.
//! * `diagnose`, `resolver`: what a failed connection saw.
//! * `error`: `SearchError` and its classification.

mod answer;
mod diagnose;
mod endpoint;
mod error;
mod resolver;
mod transport;

pub use error::{Context, SearchError, TransportKind};

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use url::Url;

use crate::secret::Secret;
use endpoint::{Endpoint, redacted_url};
use transport::Transport;

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
    /// Largest response body read; reading stops as soon as a body passes it.
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
    transport: Transport,
    index: String,
}

impl fmt::Debug for SearchClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SearchClient")
            .field("index", &self.inner.index)
            .field("transport", &self.inner.transport)
            .finish()
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
        let transport = Transport::new(&options)?;
        Ok(Self {
            inner: Arc::new(Inner {
                transport,
                index: options.index,
            }),
        })
    }

    /// The index documents go to.
    pub fn index_name(&self) -> &str {
        &self.inner.index
    }

    /// Store `body` as document `did` (created or replaced): `PUT /<index>/_doc/<did>`.
    ///
    /// # Errors
    /// Any status other than 200/201, a success without Elasticsearch's `result`, or no
    /// answer; see [`SearchError::is_transient`].
    pub async fn index(
        &self,
        did: &str,
        body: &Value,
        refresh: Refresh,
    ) -> Result<(), SearchError> {
        let context = Context::new("index", Some(did));
        let mut endpoint = self.document(&context, did)?;
        if refresh == Refresh::WaitFor {
            endpoint = endpoint.wait_for_refresh();
        }
        let bytes = serde_json::to_vec(body).map_err(|err| SearchError::InvalidRequest {
            context: context.clone(),
            detail: format!("the document does not serialize: {err}"),
        })?;
        let answer = self
            .inner
            .transport
            .exchange(&context, Method::PUT, &endpoint, Some(bytes))
            .await?;
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
    /// Any status other than 200/404, a 200 without Elasticsearch's `result`, or no answer.
    pub async fn delete(&self, did: &str) -> Result<DeleteOutcome, SearchError> {
        let context = Context::new("delete", Some(did));
        let endpoint = self.document(&context, did)?;
        // ES 8 rejects unknown query params (DESIGN §4): a 404 is handled here, never with ignore=404.
        let answer = self
            .inner
            .transport
            .exchange(&context, Method::DELETE, &endpoint, None)
            .await?;
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
        let endpoint = self.document(&context, did)?;
        let answer = self
            .inner
            .transport
            .exchange(&context, Method::HEAD, &endpoint, None)
            .await?;
        match answer.status {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(answer.into_error(context)),
        }
    }

    /// The stored body (`_source`) of document `did`; `None` when there is no such document.
    ///
    /// # Errors
    /// Other statuses, no answer, or a body that is not a found document or is too large.
    pub async fn get(&self, did: &str) -> Result<Option<Value>, SearchError> {
        let context = Context::new("get", Some(did));
        let endpoint = self.document(&context, did)?;
        let answer = self
            .inner
            .transport
            .exchange(&context, Method::GET, &endpoint, None)
            .await?;
        match answer.status {
            200 => found_source(&context, answer.json(&context)?).map(Some),
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
        let answer = self
            .inner
            .transport
            .exchange(&context, Method::HEAD, &Endpoint::root(), None)
            .await?;
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
        let answer = self
            .inner
            .transport
            .exchange(&context, Method::GET, &Endpoint::cluster_health(), None)
            .await?;
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

    /// The endpoint of document `did` in the index, once `did` is known to be a usable id.
    fn document(&self, context: &Context, did: &str) -> Result<Endpoint, SearchError> {
        check_id(context, did)?;
        Ok(Endpoint::document(&self.inner.index, did))
    }
}

/// The `_source` of a `GET /_doc` answer that says `"found": true`.
fn found_source(context: &Context, mut json: Value) -> Result<Value, SearchError> {
    if json.get("found").and_then(Value::as_bool) != Some(true) {
        return Err(SearchError::Malformed {
            context: context.clone(),
            detail: "200 without \"found\": true".into(),
        });
    }
    json.get_mut("_source")
        .map(Value::take)
        .ok_or_else(|| SearchError::Malformed {
            context: context.clone(),
            detail: "found document without _source".into(),
        })
}

/// Ids that would be sent as a path resolving elsewhere: URL parsing normalises `.`/`..` away.
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
    fn dot_ids_are_refused_before_anything_is_sent() {
        let context = Context::new("get", Some("."));
        for bad in ["", ".", ".."] {
            assert!(
                matches!(
                    check_id(&context, bad),
                    Err(SearchError::InvalidRequest { .. })
                ),
                "{bad:?}"
            );
        }
        for ok in ["...", ".a", "a.", "did:gun:a:1"] {
            assert!(check_id(&context, ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn options_and_client_debug_redact_passwords_also_inside_the_url() {
        let options = SearchOptions {
            url: Url::parse("http://u:hunter2@es:9200").unwrap(),
            password: Some(Secret::from("hunter3")),
            ..SearchOptions::default()
        };
        let client = SearchClient::new(options.clone()).unwrap();
        for debug in [format!("{options:?}"), format!("{client:?}")] {
            assert!(
                !debug.contains("hunter2") && !debug.contains("hunter3"),
                "{debug}"
            );
        }
        assert!(format!("{client:?}").contains("http://es:9200/"));
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
