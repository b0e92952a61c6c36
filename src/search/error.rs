//! `SearchError`: every way an Elasticsearch call can fail, and the one place that decides
//! whether a failure is transient (retry) or permanent (dead at once), DESIGN §2 "Errors", and
//! whether it is systemic (a property of the configuration or the cluster, not of the job).

use std::fmt;
use std::time::Duration;

/// Longest ES error reason (or raw body excerpt) kept in a message.
pub(crate) const MAX_REASON_CHARS: usize = 300;

/// What was being done when the call failed: `"delete did:gun:abc:1"`, `"ping"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    pub op: &'static str,
    /// The document id (DID); `None` for cluster-level calls.
    pub did: Option<String>,
}

impl Context {
    pub(crate) fn new(op: &'static str, did: Option<&str>) -> Self {
        Self {
            op,
            did: did.map(str::to_owned),
        }
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.did {
            Some(did) => write!(f, "{} {did}", self.op),
            None => f.write_str(self.op),
        }
    }
}

/// What the connection saw when no complete answer arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportKind {
    /// The connection could not be opened: refused, or the host or network is unreachable.
    Connect,
    /// The host name does not resolve.
    Dns,
    /// The TLS handshake failed: a certificate that is not trusted, no common protocol, or a
    /// peer that does not speak TLS.
    Tls,
    /// No complete answer within the timeout (connecting, waiting or reading the body).
    Timeout,
    /// The connection was closed or reset before the answer's head arrived.
    Reset,
    /// The head arrived but the body was cut off.
    Body,
    /// Any other failure of the exchange, such as an answer that is not HTTP.
    Other,
}

/// A failed Elasticsearch call. Messages name the operation and the DID and never contain
/// credentials or document bodies.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SearchError {
    /// The client could not be built from its options.
    #[error("elasticsearch client: {0}")]
    Build(String),

    /// The request could not be formed (an empty id, a body that does not serialize).
    #[error("{context}: invalid request: {detail}")]
    InvalidRequest { context: Context, detail: String },

    /// No complete response: connect failure, DNS, TLS, timeout, reset, or a body cut off.
    #[error("{context}: {what}")]
    Transport {
        context: Context,
        kind: TransportKind,
        /// What the connection saw, in words ("could not connect to elasticsearch: …").
        what: String,
        #[source]
        source: reqwest::Error,
    },

    /// Elasticsearch answered a status the operation does not accept.
    #[error("{context}: elasticsearch answered {status}: {reason}")]
    Status {
        context: Context,
        status: u16,
        /// ES's `error.type: error.reason`, or an excerpt of the body, truncated.
        reason: String,
        retry_after: Option<Duration>,
    },

    /// A 3xx: redirects are never followed, since a write sent elsewhere is not a write to
    /// the configured cluster.
    #[error(
        "{context}: elasticsearch answered {status}, {}: redirects are never followed",
        redirect_target(.location.as_deref())
    )]
    Redirect {
        context: Context,
        status: u16,
        /// The `Location` it named (absolute, without credentials), if any.
        location: Option<String>,
    },

    /// A success status whose body is not what Elasticsearch sends (not JSON, no `result`, an
    /// unexpected `result` or status): a restarting proxy answers like that.
    #[error("{context}: malformed response from elasticsearch: {detail}")]
    Malformed { context: Context, detail: String },

    /// A body larger than `max_response_bytes`; reading stopped at the limit.
    #[error("{context}: elasticsearch response refused: {detail}")]
    Oversized { context: Context, detail: String },
}

impl SearchError {
    /// Whether a retry may succeed: a transport failure (connect, DNS, TLS, timeout, reset,
    /// interrupted body), 5xx, 429, 408, or a 2xx whose body is not Elasticsearch's answer.
    /// Everything else (other 4xx, redirects, oversized bodies, invalid requests) is permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Malformed { .. } => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            Self::Build(_)
            | Self::InvalidRequest { .. }
            | Self::Redirect { .. }
            | Self::Oversized { .. } => false,
        }
    }

    /// Whether the answer is a property of the configuration or the cluster rather than of
    /// the job, so every other job would fail the same way: 401 and 403 (credentials), a
    /// refused or unreachable connection, a host that does not resolve, a failed TLS
    /// handshake. Independent of [`is_transient`](Self::is_transient): a 401 is permanent and
    /// systemic, a refused connection transient and systemic.
    pub fn is_systemic(&self) -> bool {
        match self {
            Self::Status { status, .. } => matches!(status, 401 | 403),
            Self::Transport { kind, .. } => matches!(
                kind,
                TransportKind::Connect | TransportKind::Dns | TransportKind::Tls
            ),
            Self::Build(_)
            | Self::InvalidRequest { .. }
            | Self::Redirect { .. }
            | Self::Malformed { .. }
            | Self::Oversized { .. } => false,
        }
    }

    /// The delay Elasticsearch asked for with `Retry-After` on a 429 or 503.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status Elasticsearch answered, when it answered one that failed the call.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } | Self::Redirect { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// "a redirect to <location>", or "a redirect with no Location".
fn redirect_target(location: Option<&str>) -> String {
    match location {
        Some(location) => format!("a redirect to {location}"),
        None => "a redirect with no Location".to_owned(),
    }
}

/// The reason to show for an error body: ES's `error.type: error.reason` when the body has that
/// shape, else a short excerpt of the body; always truncated.
pub(crate) fn error_reason(body: &[u8]) -> String {
    if body.is_empty() {
        return "(empty body)".to_owned();
    }
    let reason = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(json) => reason_from_json(&json).unwrap_or_else(|| json.to_string()),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    truncate(reason.trim(), MAX_REASON_CHARS)
}

fn reason_from_json(json: &serde_json::Value) -> Option<String> {
    let error = json.get("error")?;
    if let Some(text) = error.as_str() {
        return Some(text.to_owned());
    }
    let ty = error.get("type").and_then(|v| v.as_str());
    let reason = error.get("reason").and_then(|v| v.as_str());
    match (ty, reason) {
        (Some(ty), Some(reason)) => Some(format!("{ty}: {reason}")),
        (Some(one), None) | (None, Some(one)) => Some(one.to_owned()),
        (None, None) => None,
    }
}

pub(crate) fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> Context {
        Context::new("delete", Some("did:gun:a:1"))
    }

    fn status(status: u16) -> SearchError {
        SearchError::Status {
            context: context(),
            status,
            reason: String::new(),
            retry_after: None,
        }
    }

    /// A `reqwest::Error` made without any I/O, to stand in as the source of a transport error.
    fn reqwest_error() -> reqwest::Error {
        reqwest::Client::new()
            .get("not a url")
            .build()
            .expect_err("a relative URL is refused")
    }

    fn transport(kind: TransportKind) -> SearchError {
        SearchError::Transport {
            context: context(),
            kind,
            what: String::new(),
            source: reqwest_error(),
        }
    }

    #[test]
    fn error_reason_prefers_es_type_and_reason() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"error":{"root_cause":[],"type":"illegal_argument_exception","reason":"bad [x]"},"status":400}"#,
                "illegal_argument_exception: bad [x]",
            ),
            (r#"{"error":"Not found"}"#, "Not found"),
            (r#"{"error":{"type":"only_type"}}"#, "only_type"),
            (r#"{"result":"noop"}"#, r#"{"result":"noop"}"#),
            ("<html>gateway</html>", "<html>gateway</html>"),
            ("", "(empty body)"),
        ];
        for (body, expected) in cases {
            assert_eq!(error_reason(body.as_bytes()), *expected, "{body}");
        }
    }

    #[test]
    fn long_reasons_are_truncated_on_a_char_boundary() {
        let body = format!(r#"{{"error":"{}"}}"#, "é".repeat(1000));
        let reason = error_reason(body.as_bytes());
        assert_eq!(reason.chars().count(), MAX_REASON_CHARS + 1);
        assert!(reason.ends_with('…'));
    }

    #[test]
    fn classification_follows_design() {
        use TransportKind::*;
        let malformed = SearchError::Malformed {
            context: context(),
            detail: "x".into(),
        };
        let oversized = SearchError::Oversized {
            context: context(),
            detail: "x".into(),
        };
        let redirect = SearchError::Redirect {
            context: context(),
            status: 307,
            location: None,
        };
        let invalid = SearchError::InvalidRequest {
            context: context(),
            detail: "x".into(),
        };
        // (error, transient, systemic)
        let cases = [
            (status(500), true, false),
            (status(502), true, false),
            (status(503), true, false),
            (status(429), true, false),
            (status(408), true, false),
            (status(400), false, false),
            (status(401), false, true),
            (status(403), false, true),
            (status(404), false, false),
            (status(409), false, false),
            (transport(Connect), true, true),
            (transport(Dns), true, true),
            (transport(Tls), true, true),
            (transport(Timeout), true, false),
            (transport(Reset), true, false),
            (transport(Body), true, false),
            (transport(Other), true, false),
            (malformed, true, false),
            (oversized, false, false),
            (redirect, false, false),
            (invalid, false, false),
            (SearchError::Build("x".into()), false, false),
        ];
        for (err, transient, systemic) in cases {
            assert_eq!(err.is_transient(), transient, "transient: {err:?}");
            assert_eq!(err.is_systemic(), systemic, "systemic: {err:?}");
        }
    }

    #[test]
    fn statuses_are_reported_and_named() {
        for code in [400, 401, 500, 503] {
            assert_eq!(status(code).http_status(), Some(code));
        }
        assert_eq!(transport(TransportKind::Reset).http_status(), None);
        assert_eq!(
            status(500).to_string(),
            "delete did:gun:a:1: elasticsearch answered 500: "
        );
    }

    #[test]
    fn a_redirect_names_its_location_or_its_absence() {
        let redirect = |location: Option<&str>| SearchError::Redirect {
            context: context(),
            status: 307,
            location: location.map(str::to_owned),
        };
        assert_eq!(
            redirect(Some("http://other:9200/records/_doc/x")).to_string(),
            "delete did:gun:a:1: elasticsearch answered 307, a redirect to \
             http://other:9200/records/_doc/x: redirects are never followed"
        );
        assert_eq!(
            redirect(None).to_string(),
            "delete did:gun:a:1: elasticsearch answered 307, a redirect with no Location: \
             redirects are never followed"
        );
        assert_eq!(redirect(None).http_status(), Some(307));
    }
}
