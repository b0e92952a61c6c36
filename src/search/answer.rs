//! [`Answer`]: a response that arrived with its body read (or refused at the size limit), and
//! how an operation reads it. A success status is only believed with Elasticsearch's body.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use super::error::{Context, MAX_REASON_CHARS, SearchError, error_reason, truncate};

/// A response that arrived, with its body read or refused.
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) retry_after: Option<Duration>,
    pub(super) body: Body,
}

pub(super) enum Body {
    Read(Bytes),
    /// Reading stopped at the size limit, and why.
    Refused(String),
}

impl Body {
    /// Bytes read; `None` when the body was refused.
    pub(super) fn len(&self) -> Option<usize> {
        match self {
            Body::Read(bytes) => Some(bytes.len()),
            Body::Refused(_) => None,
        }
    }
}

impl Answer {
    /// The error for a status the operation does not accept. Elasticsearch never answers an
    /// operation with a 2xx it does not document, so such a status is not its answer.
    pub(super) fn into_error(self, context: Context) -> SearchError {
        if (200..300).contains(&self.status) {
            return SearchError::Malformed {
                context,
                detail: format!("unexpected status {}", self.status),
            };
        }
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
    ///
    /// # Errors
    /// [`SearchError::Malformed`] without an accepted `result`, [`SearchError::Oversized`].
    pub(super) fn write_result(
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
                    Some(other) => format!("unexpected \"result\": {:?}", truncate(other, 100)),
                    None => format!(
                        "success without a \"result\" ({})",
                        truncate(&json.to_string(), 100)
                    ),
                },
            }),
        }
    }

    /// The body of a success as JSON.
    ///
    /// # Errors
    /// [`SearchError::Malformed`] when it is not JSON, [`SearchError::Oversized`] when it was
    /// not read.
    pub(super) fn json(self, context: &Context) -> Result<Value, SearchError> {
        match self.body {
            Body::Read(bytes) => serde_json::from_slice(&bytes).map_err(|err| {
                let detail = if bytes.is_empty() {
                    "an empty body".to_owned()
                } else {
                    format!("{} bytes that are not JSON ({err})", bytes.len())
                };
                SearchError::Malformed {
                    context: context.clone(),
                    detail: truncate(&detail, MAX_REASON_CHARS),
                }
            }),
            Body::Refused(detail) => Err(SearchError::Oversized {
                context: context.clone(),
                detail,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            retry_after: None,
            body: Body::Read(Bytes::from(body.to_owned())),
        }
    }

    fn context() -> Context {
        Context::new("index", Some("did:gun:a:1"))
    }

    const WRITE: &[&str] = &["created", "updated", "noop"];

    #[test]
    fn a_write_is_believed_only_with_an_accepted_result() {
        let ok = answer(201, r#"{"result":"created","_id":"x"}"#);
        assert_eq!(ok.write_result(&context(), WRITE).unwrap(), "created");
        for (body, detail) in [
            ("", "an empty body"),
            ("<html>502</html>", "16 bytes that are not JSON"),
            (
                r#"{"ok":true}"#,
                r#"success without a "result" ({"ok":true})"#,
            ),
            (
                r#"{"result":"deleted"}"#,
                r#"unexpected "result": "deleted""#,
            ),
        ] {
            let err = answer(200, body)
                .write_result(&context(), WRITE)
                .unwrap_err();
            assert!(
                matches!(&err, SearchError::Malformed { detail: d, .. } if d.starts_with(detail)),
                "{body}: {err:?}"
            );
            assert!(err.is_transient());
        }
    }

    #[test]
    fn an_unaccepted_2xx_is_malformed_and_other_statuses_keep_es_reason() {
        let err = answer(206, "{}").into_error(context());
        assert!(matches!(err, SearchError::Malformed { .. }), "{err:?}");
        let err = answer(400, r#"{"error":{"type":"t","reason":"r"}}"#).into_error(context());
        assert_eq!(
            err.to_string(),
            "index did:gun:a:1: elasticsearch answered 400: t: r"
        );
        let refused = Answer {
            status: 502,
            retry_after: None,
            body: Body::Refused("too big".into()),
        };
        assert_eq!(
            refused.into_error(context()).to_string(),
            "index did:gun:a:1: elasticsearch answered 502: (body not read: too big)"
        );
    }
}
