//! `SearchError`: every way an Elasticsearch call can fail, and the one place that decides
//! whether a failure is transient (retry) or permanent (dead at once), DESIGN §2 "Errors".

use std::fmt;
use std::time::Duration;

/// Longest ES error reason (or raw body excerpt) kept in a message.
const MAX_REASON_CHARS: usize = 300;

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

    /// No complete response: connect failure, timeout, reset, or a body cut off mid-way.
    #[error("{context}: {what}")]
    Transport {
        context: Context,
        what: String,
        #[source]
        source: elasticsearch::Error,
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

    /// A success status whose body is not what Elasticsearch sends.
    #[error("{context}: malformed response from elasticsearch: {detail}")]
    Malformed { context: Context, detail: String },

    /// A body larger than `max_response_bytes`, or of unknown length; it was not read.
    #[error("{context}: elasticsearch response refused: {detail}")]
    Oversized { context: Context, detail: String },
}

impl SearchError {
    /// Whether a retry may succeed: connect/timeout/interrupted body, 5xx, 429 (and 408).
    /// Everything else (other 4xx, malformed or oversized bodies, bad requests) is permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            Self::Build(_)
            | Self::InvalidRequest { .. }
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

    /// The HTTP status Elasticsearch answered, when it answered one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
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
        let status = |status: u16| SearchError::Status {
            context: Context::new("delete", Some("did:gun:a:1")),
            status,
            reason: String::new(),
            retry_after: None,
        };
        for (code, transient) in [
            (500, true),
            (502, true),
            (503, true),
            (429, true),
            (408, true),
            (400, false),
            (401, false),
            (403, false),
            (409, false),
        ] {
            assert_eq!(status(code).is_transient(), transient, "{code}");
            assert_eq!(status(code).http_status(), Some(code));
        }
        let malformed = SearchError::Malformed {
            context: Context::new("get", Some("did:gun:a:1")),
            detail: "x".into(),
        };
        assert!(!malformed.is_transient());
        assert_eq!(
            status(500).to_string(),
            "delete did:gun:a:1: elasticsearch answered 500: "
        );
    }
}
