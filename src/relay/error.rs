//! [`RelayError`]: every way a relay call can fail, and the one place that decides whether a
//! failure is worth retrying (DESIGN §2 "Errors"). Messages name the operation and the soul, never
//! a record body.

use std::fmt;
use std::time::Duration;

use crate::domain::InvalidSoul;

/// Longest part of a relay's error body repeated in a message.
const MAX_MESSAGE_LEN: usize = 200;

/// The relay call that failed, as it appears at the start of an error message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Get,
    Put,
    List,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Get => "get",
            Operation::Put => "put",
            Operation::List => "list",
        })
    }
}

/// Which part of a record's budget (`RecordBudget`) a read ran out of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// Nodes fetched for the record, the record node itself included.
    Nodes,
    /// Response bytes received for the record.
    Bytes,
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Budget::Nodes => "nodes",
            Budget::Bytes => "bytes",
        })
    }
}

/// A failed relay call. `target` is the soul (or the publisher hash of a `list`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The request never got a status line: connection refused or reset, DNS, TLS.
    #[error("{op} {target}: relay unreachable: {}", root_cause(source))]
    Transport {
        op: Operation,
        target: String,
        #[source]
        source: reqwest::Error,
    },
    /// No complete answer within the configured timeout.
    #[error("{op} {target}: relay did not answer within {timeout:?}")]
    Timeout {
        op: Operation,
        target: String,
        timeout: Duration,
    },
    /// The status line arrived but the body was cut off.
    #[error("{op} {target}: response body interrupted: {}", root_cause(source))]
    BodyInterrupted {
        op: Operation,
        target: String,
        #[source]
        source: reqwest::Error,
    },
    /// The relay answered a redirect. The client never follows one: a relay URL is configured,
    /// and a redirect would send the request (a put's body included) to another host.
    #[error("{op} {target}: relay answered {status} {}; redirects are not followed", redirect_target(location.as_deref()))]
    Redirect {
        op: Operation,
        target: String,
        status: u16,
        /// The `Location` header, on one line and truncated; `None` when absent.
        location: Option<String>,
    },
    /// The relay answered with a status the call does not accept.
    #[error("{op} {target}: relay answered {status}: {message}")]
    Status {
        op: Operation,
        target: String,
        status: u16,
        /// The relay's `error` text (or the start of its body), truncated.
        message: String,
        retry_after: Option<Duration>,
    },
    /// `{"success": false}` (or no `success: true`) on a 200.
    #[error("{op} {target}: relay refused: {message}")]
    Refused {
        op: Operation,
        target: String,
        message: String,
    },
    /// A 2xx whose body is not a JSON object: an HTML page, empty, cut off, not JSON.
    #[error("{op} {target}: unexpected response: {reason}")]
    Unparsable {
        op: Operation,
        target: String,
        reason: String,
    },
    /// The relay's JSON envelope says success, but what it holds is not the shape DESIGN §3
    /// describes (node data that is not an object, no `data` member, unreadable `records`).
    #[error("{op} {target}: malformed answer: {reason}")]
    Malformed {
        op: Operation,
        target: String,
        reason: String,
    },
    /// A put GUN would refuse whatever the relay's state (an array in the data): never sent.
    #[error("{op} {target}: gun cannot store this: {reason}")]
    Unstorable {
        op: Operation,
        target: String,
        reason: String,
    },
    /// The body passed the size cap; it was not read further.
    #[error("{op} {target}: response larger than {limit} bytes, not read further")]
    TooLarge {
        op: Operation,
        target: String,
        limit: usize,
    },
    /// Following the record's links needed more nodes or bytes than its budget allows; no
    /// further request was sent. `target` is the record's soul.
    #[error("{op} {target}: record exceeds its budget of {limit} {budget}")]
    OverBudget {
        op: Operation,
        target: String,
        budget: Budget,
        limit: usize,
    },
    /// A soul built from configuration (registry root, record type) is not a valid soul.
    #[error(transparent)]
    InvalidSoul(#[from] InvalidSoul),
    /// The HTTP client could not be built (TLS backend initialisation).
    #[error("building the relay http client: {0}")]
    Client(#[source] reqwest::Error),
}

impl RelayError {
    /// Whether trying again later can succeed. Transient: transport failures, timeouts,
    /// interrupted bodies, 5xx, 429 and 408, and a 2xx that is not the relay's JSON envelope or
    /// lacks `success: true` (HTML, empty, not JSON, a refusal: what a proxy answers while the
    /// relay behind it restarts). Permanent, because the same request will fail the same way:
    /// other 4xx, redirects, a well-formed answer of the wrong shape, an oversized body, a put GUN
    /// cannot store, an invalid soul, a record over its budget.
    pub fn is_transient(&self) -> bool {
        match self {
            RelayError::Transport { .. }
            | RelayError::Timeout { .. }
            | RelayError::BodyInterrupted { .. }
            | RelayError::Refused { .. }
            | RelayError::Unparsable { .. } => true,
            RelayError::Status { status, .. } => *status >= 500 || matches!(status, 408 | 429),
            RelayError::Redirect { .. }
            | RelayError::Malformed { .. }
            | RelayError::TooLarge { .. }
            | RelayError::Unstorable { .. }
            | RelayError::OverBudget { .. }
            | RelayError::InvalidSoul(_)
            | RelayError::Client(_) => false,
        }
    }

    /// The delay the relay asked for with `Retry-After` on a 429 or 503.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RelayError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status the relay answered, when it answered one that failed the call.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            RelayError::Status { status, .. } | RelayError::Redirect { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }
}

/// The innermost cause of `err`: reqwest's own message ("error sending request for url (…)")
/// does not say whether the connection was refused, reset or timed out; its last source does.
fn root_cause(err: &reqwest::Error) -> String {
    let mut cause: &(dyn std::error::Error + 'static) = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// How a redirect message names where the relay pointed.
fn redirect_target(location: Option<&str>) -> String {
    match location {
        Some(location) => format!("to {location}"),
        None => "with no Location".to_owned(),
    }
}

/// The relay's error text for a message: the `error` member of a JSON body, else the body itself,
/// on one line and truncated.
pub(crate) fn error_text(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(map)) => match map.get("error") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::from_utf8_lossy(body).into_owned(),
        },
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    match one_line(&text) {
        line if line.is_empty() => "(empty body)".to_owned(),
        line => line,
    }
}

/// `text` from a relay (an error body, a header) made safe to repeat in a message: control
/// characters as spaces, trimmed, at most [`MAX_MESSAGE_LEN`] characters.
pub(crate) fn one_line(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = one_line.trim();
    match trimmed.char_indices().nth(MAX_MESSAGE_LEN) {
        Some((end, _)) => format!("{}…", &trimmed[..end]),
        None => trimmed.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, retry_after: Option<Duration>) -> RelayError {
        RelayError::Status {
            op: Operation::Get,
            target: "oip:registry:index:post".into(),
            status,
            message: "boom".into(),
            retry_after,
        }
    }

    #[test]
    fn statuses_are_classified_once() {
        let cases = [
            (500, true),
            (502, true),
            (503, true),
            (429, true),
            (408, true),
            (400, false),
            (404, false),
            (413, false),
        ];
        for (code, transient) in cases {
            let err = status(code, None);
            assert_eq!(err.is_transient(), transient, "{code}");
            assert_eq!(err.http_status(), Some(code));
        }
        let glitches = [
            RelayError::Refused {
                op: Operation::Put,
                target: "s".into(),
                message: "no".into(),
            },
            RelayError::Unparsable {
                op: Operation::Get,
                target: "s".into(),
                reason: "an html page, not json (120 bytes)".into(),
            },
        ];
        for err in glitches {
            assert!(err.is_transient(), "{err}");
            assert_eq!(err.http_status(), None);
        }
        let permanent = [
            RelayError::Malformed {
                op: Operation::Get,
                target: "s".into(),
                reason: "not json".into(),
            },
            RelayError::TooLarge {
                op: Operation::Get,
                target: "s".into(),
                limit: 10,
            },
            RelayError::OverBudget {
                op: Operation::Get,
                target: "s".into(),
                budget: Budget::Nodes,
                limit: 256,
            },
        ];
        for err in permanent {
            assert!(!err.is_transient(), "{err}");
            assert_eq!(err.http_status(), None);
        }
        let timeout = RelayError::Timeout {
            op: Operation::Get,
            target: "s".into(),
            timeout: Duration::from_secs(1),
        };
        assert!(timeout.is_transient());
    }

    #[test]
    fn redirects_are_permanent_and_name_their_location() {
        let redirect = |location: Option<&str>| RelayError::Redirect {
            op: Operation::Put,
            target: "abc:1".into(),
            status: 307,
            location: location.map(str::to_owned),
        };
        let cases = [
            (
                redirect(Some("http://elsewhere:8765/put")),
                "put abc:1: relay answered 307 to http://elsewhere:8765/put; redirects are not followed",
            ),
            (
                redirect(None),
                "put abc:1: relay answered 307 with no Location; redirects are not followed",
            ),
        ];
        for (err, message) in cases {
            assert_eq!(err.to_string(), message);
            assert!(!err.is_transient());
            assert_eq!(err.http_status(), Some(307));
        }
    }

    #[test]
    fn over_budget_says_which_budget() {
        let over = |budget, limit| RelayError::OverBudget {
            op: Operation::Get,
            target: "abc:1".into(),
            budget,
            limit,
        };
        assert_eq!(
            over(Budget::Nodes, 256).to_string(),
            "get abc:1: record exceeds its budget of 256 nodes"
        );
        assert_eq!(
            over(Budget::Bytes, 4_194_304).to_string(),
            "get abc:1: record exceeds its budget of 4194304 bytes"
        );
    }

    #[test]
    fn message_names_operation_soul_and_status() {
        let err = status(500, Some(Duration::from_secs(3)));
        assert_eq!(
            err.to_string(),
            "get oip:registry:index:post: relay answered 500: boom"
        );
        assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn error_text_prefers_json_error_and_truncates() {
        let long = "x".repeat(500);
        let cases = [
            (
                r#"{"error":"Not found"}"#.to_owned(),
                "Not found".to_owned(),
            ),
            ("plain\ntext".to_owned(), "plain text".to_owned()),
            (String::new(), "(empty body)".to_owned()),
            (r#"{"other":1}"#.to_owned(), r#"{"other":1}"#.to_owned()),
            (long.clone(), format!("{}…", &long[..MAX_MESSAGE_LEN])),
        ];
        for (body, expected) in cases {
            assert_eq!(error_text(body.as_bytes()), expected, "{body}");
        }
    }
}
