//! What a failed exchange saw, read from reqwest's error and the chain of causes below it:
//! the [`TransportKind`] that classification uses, and the words for the message. reqwest's own
//! message ("error sending request for url (…)") says neither; the causes below it do.

use std::error::Error;
use std::io;
use std::time::Duration;

use super::error::{Context, SearchError, TransportKind};
use super::resolver::ResolveError;

/// What hyper (not a dependency we can downcast to) says when the peer closed the connection
/// before the answer was complete: a reset, in this module's terms.
const HYPER_INCOMPLETE_MESSAGE: &str = "connection closed before message completed";

const RESET: &[io::ErrorKind] = &[
    io::ErrorKind::ConnectionReset,
    io::ErrorKind::ConnectionAborted,
    io::ErrorKind::BrokenPipe,
    io::ErrorKind::UnexpectedEof,
];

const UNREACHABLE: &[io::ErrorKind] = &[
    io::ErrorKind::ConnectionRefused,
    io::ErrorKind::HostUnreachable,
    io::ErrorKind::NetworkUnreachable,
    io::ErrorKind::NotConnected,
    io::ErrorKind::AddrNotAvailable,
];

/// Where in the exchange reqwest says the failure happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Resolving, connecting, the TLS handshake.
    Connect,
    /// Sending the request or waiting for the answer's head.
    Exchange,
    /// Reading the body after the head arrived.
    Body,
}

/// The error for a send or body read that failed: [`SearchError::Transport`], or
/// [`SearchError::InvalidRequest`] when reqwest refused to build the request.
pub(super) fn failure(context: &Context, err: reqwest::Error, timeout: Duration) -> SearchError {
    if err.is_builder() {
        return SearchError::InvalidRequest {
            context: context.clone(),
            detail: err.to_string(),
        };
    }
    let kind = kind_of(&err);
    SearchError::Transport {
        context: context.clone(),
        kind,
        what: describe(kind, &err, timeout),
        source: err,
    }
}

fn kind_of(err: &reqwest::Error) -> TransportKind {
    // First: a connect or a body read that ran out of time is a timeout, whatever else it saw.
    if err.is_timeout() {
        return TransportKind::Timeout;
    }
    let phase = if err.is_connect() {
        Phase::Connect
    } else if err.is_body() || err.is_decode() {
        Phase::Body
    } else {
        Phase::Exchange
    };
    kind_in(phase, err)
}

fn kind_in(phase: Phase, err: &(dyn Error + 'static)) -> TransportKind {
    if causes(err).any(|cause| cause.is::<ResolveError>()) {
        return TransportKind::Dns;
    }
    let saw_io = |kinds: &[io::ErrorKind]| {
        causes(err)
            .filter_map(|cause| cause.downcast_ref::<io::Error>())
            .any(|io| kinds.contains(&io.kind()))
    };
    match phase {
        Phase::Connect if saw_io(UNREACHABLE) => TransportKind::Connect,
        // Opening a TCP connection reads nothing: data that is not TLS (rustls reports every
        // handshake failure as InvalidData) or an early end can only come from the handshake.
        Phase::Connect if saw_io(&[io::ErrorKind::InvalidData, io::ErrorKind::UnexpectedEof]) => {
            TransportKind::Tls
        }
        Phase::Connect if saw_io(RESET) => TransportKind::Reset,
        Phase::Connect => TransportKind::Connect,
        Phase::Body => TransportKind::Body,
        Phase::Exchange
            if saw_io(RESET)
                || causes(err).any(|cause| cause.to_string() == HYPER_INCOMPLETE_MESSAGE) =>
        {
            TransportKind::Reset
        }
        Phase::Exchange => TransportKind::Other,
    }
}

/// The message part after the context: what the connection saw.
fn describe(kind: TransportKind, err: &(dyn Error + 'static), timeout: Duration) -> String {
    let root = root_cause(err);
    match kind {
        TransportKind::Timeout => format!(
            "elasticsearch did not answer within {}",
            humantime::format_duration(timeout)
        ),
        TransportKind::Dns => match causes(err).find_map(|c| c.downcast_ref::<ResolveError>()) {
            Some(resolve) => format!("could not resolve the elasticsearch host {resolve}"),
            None => format!("could not resolve the elasticsearch host: {root}"),
        },
        TransportKind::Connect => format!("could not connect to elasticsearch: {root}"),
        TransportKind::Tls => format!("tls handshake with elasticsearch failed: {root}"),
        TransportKind::Body => format!("elasticsearch response body interrupted: {root}"),
        TransportKind::Reset | TransportKind::Other => {
            format!("elasticsearch connection failed: {root}")
        }
    }
}

/// The innermost cause's message ("Connection refused (os error 111)").
fn root_cause(err: &(dyn Error + 'static)) -> String {
    causes(err)
        .last()
        .map_or_else(|| err.to_string(), |cause| cause.to_string())
}

/// `err` and every cause below it.
fn causes<'a>(err: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(err), |cause| next_cause(*cause))
}

fn next_cause<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a (dyn Error + 'static)> {
    // `io::Error::source` skips the error it wraps (it returns that error's own source), which
    // would hide rustls's error inside tokio-rustls's io::Error: step into it instead.
    match err.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
        Some(inner) => Some(inner),
        None => err.source(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error with a message and an optional cause, like hyper's and hyper-util's wrappers.
    #[derive(Debug)]
    struct Wrapper {
        message: &'static str,
        cause: Option<Box<dyn Error + Send + Sync>>,
    }

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.message)
        }
    }

    impl Error for Wrapper {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.cause.as_deref().map(|cause| cause as _)
        }
    }

    fn wrap(message: &'static str, cause: impl Error + Send + Sync + 'static) -> Wrapper {
        Wrapper {
            message,
            cause: Some(Box::new(cause)),
        }
    }

    fn leaf(message: &'static str) -> Wrapper {
        Wrapper {
            message,
            cause: None,
        }
    }

    fn io(kind: io::ErrorKind, message: &'static str) -> io::Error {
        io::Error::new(kind, message)
    }

    #[test]
    fn the_kind_is_read_from_the_phase_and_the_causes() {
        use TransportKind::*;
        let refused = wrap(
            "client error (Connect)",
            wrap(
                "tcp connect error",
                io::Error::from(io::ErrorKind::ConnectionRefused),
            ),
        );
        let unresolved = wrap(
            "dns error",
            ResolveError {
                host: "es.invalid".into(),
                source: io(io::ErrorKind::Other, "failed to lookup address information"),
            },
        );
        // hyper-rustls wraps tokio-rustls's io::Error (InvalidData around rustls's error).
        let bad_certificate = wrap(
            "client error (Connect)",
            io::Error::other(io(
                io::ErrorKind::InvalidData,
                "invalid peer certificate: UnknownIssuer",
            )),
        );
        let handshake_eof = wrap(
            "client error (Connect)",
            io::Error::other(io(io::ErrorKind::UnexpectedEof, "tls handshake eof")),
        );
        let reset_in_handshake = wrap(
            "client error (Connect)",
            io::Error::from(io::ErrorKind::ConnectionReset),
        );
        let incomplete = wrap("client error (SendRequest)", leaf(HYPER_INCOMPLETE_MESSAGE));
        let reset = wrap(
            "client error (SendRequest)",
            wrap(
                "error reading a body from connection",
                io::Error::from(io::ErrorKind::ConnectionReset),
            ),
        );
        let not_http = wrap(
            "client error (SendRequest)",
            leaf("invalid HTTP version parsed"),
        );
        let bad_server_name = wrap("client error (Connect)", leaf("invalid dns name"));
        let cut_body = wrap(
            "error decoding response body",
            leaf(HYPER_INCOMPLETE_MESSAGE),
        );
        let cases: [(Phase, &Wrapper, TransportKind); 10] = [
            (Phase::Connect, &refused, Connect),
            (Phase::Connect, &unresolved, Dns),
            (Phase::Connect, &bad_certificate, Tls),
            (Phase::Connect, &handshake_eof, Tls),
            (Phase::Connect, &reset_in_handshake, Reset),
            (Phase::Connect, &bad_server_name, Connect),
            (Phase::Exchange, &incomplete, Reset),
            (Phase::Exchange, &reset, Reset),
            (Phase::Exchange, &not_http, Other),
            (Phase::Body, &cut_body, Body),
        ];
        for (phase, err, kind) in cases {
            assert_eq!(kind_in(phase, err), kind, "{phase:?} {err:?}");
        }
    }

    #[test]
    fn messages_name_the_innermost_cause() {
        let refused = wrap(
            "client error (Connect)",
            wrap(
                "tcp connect error",
                io(
                    io::ErrorKind::ConnectionRefused,
                    "Connection refused (os error 111)",
                ),
            ),
        );
        let timeout = Duration::from_millis(300);
        assert_eq!(
            describe(TransportKind::Connect, &refused, timeout),
            "could not connect to elasticsearch: Connection refused (os error 111)"
        );
        assert_eq!(
            describe(TransportKind::Timeout, &refused, timeout),
            "elasticsearch did not answer within 300ms"
        );
        let certificate = wrap(
            "client error (Connect)",
            io::Error::other(io(
                io::ErrorKind::InvalidData,
                "invalid peer certificate: UnknownIssuer",
            )),
        );
        assert_eq!(
            describe(TransportKind::Tls, &certificate, timeout),
            "tls handshake with elasticsearch failed: invalid peer certificate: UnknownIssuer"
        );
        let unresolved = wrap(
            "dns error",
            ResolveError {
                host: "es.invalid".into(),
                source: io(io::ErrorKind::Other, "failed to lookup address information"),
            },
        );
        assert_eq!(
            describe(TransportKind::Dns, &unresolved, timeout),
            "could not resolve the elasticsearch host es.invalid: failed to lookup address information"
        );
        let incomplete = wrap("client error (SendRequest)", leaf(HYPER_INCOMPLETE_MESSAGE));
        assert_eq!(
            describe(TransportKind::Reset, &incomplete, timeout),
            "elasticsearch connection failed: connection closed before message completed"
        );
    }
}
