//! Streaming reads of one large node, a type index or the deletion registry: the body is parsed
//! as it arrives and handed on in batches of raw entries, so memory stays flat in the node's
//! size. A task pumps the body's chunks through a bounded channel to a blocking thread running
//! serde_json's streaming deserializer with visitors that emit one entry at a time (no crate
//! needed: serde_json parses from any `Read`). This module knows the relay's envelope and GUN's
//! node layout, not what an entry means (`node.rs`) nor how links are followed (`index.rs`).

use std::fmt;
use std::io::{self, Read};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::error::Category;
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;
use url::Url;

use super::node::LINK_KEY;
use super::{
    NOT_AN_OBJECT, Operation, RelayClient, RelayError, body_error, endpoint, error, is_absent,
    malformed, record, status_error, unparsable, unparsable_reason,
};
use crate::domain::Soul;

/// Body chunks buffered between the network and the parser.
const CHUNKS_IN_FLIGHT: usize = 4;

/// A streamed body earns another `timeout` of relay time per this many bytes received: a slow
/// but steady link finishes a large index, a relay trickling bytes does not hold a read open.
const BYTES_PER_TIMEOUT: usize = 1024 * 1024;

/// How a streamed node is laid out.
#[derive(Clone, Copy, Debug)]
pub(super) struct Layout {
    /// Keys whose values are metadata, skipped without being built (a plain relay's `_` holds a
    /// state for every key of the node).
    pub skip: fn(&str) -> bool,
    /// A key whose object holds more entries of the node (OIP's `{data: index}`): streamed
    /// when inline, reported by [`NodeBody::wrapped`] when a link.
    pub wrapper: Option<&'static str>,
}

/// Raw entries of one node, in body order.
pub(super) struct Entries {
    /// The node holding them: the streamed node, or its inline wrapper `<soul>/<wrapper>`.
    pub node: Soul,
    pub entries: Vec<(String, Value)>,
}

/// What the parser hands on.
enum Parsed {
    Entries(Entries),
    /// The whole body was read; the wrapper key held a link to `wrapped`, if any. Without this
    /// marker a body is not complete, however the channel closed.
    End {
        wrapped: Option<Soul>,
    },
}

type ParsedSender = mpsc::Sender<Result<Parsed, RelayError>>;
type ChunkReceiver = mpsc::Receiver<Result<Bytes, RelayError>>;

/// The parsed entries of one streamed body. Dropping it stops the reading: the task pumping
/// the body is aborted, which closes the connection, and the parser thread then reads the end.
pub(super) struct NodeBody {
    parsed: mpsc::Receiver<Result<Parsed, RelayError>>,
    soul: Soul,
    ended: bool,
    wrapped: Option<Soul>,
    _pump: AbortOnDropHandle<()>,
}

impl fmt::Debug for NodeBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeBody").finish_non_exhaustive()
    }
}

impl NodeBody {
    /// The next batch of at most the batch size entries; `None` once the whole body was read.
    /// The first error ends the body.
    pub(super) async fn next(&mut self) -> Option<Result<Entries, RelayError>> {
        if self.ended {
            return None;
        }
        match self.parsed.recv().await {
            Some(Ok(Parsed::Entries(entries))) => Some(Ok(entries)),
            Some(Ok(Parsed::End { wrapped })) => {
                (self.ended, self.wrapped) = (true, wrapped);
                None
            }
            Some(Err(err)) => {
                self.ended = true;
                Some(Err(err))
            }
            // The parser thread went away without saying the body was complete.
            None => {
                self.ended = true;
                Some(Err(unparsable(
                    Operation::Get,
                    self.soul.as_str(),
                    "reading the body stopped before its end".to_owned(),
                )))
            }
        }
    }

    /// Once [`next`](Self::next) has returned `None`: the soul the wrapper key linked to.
    pub(super) fn wrapped(&mut self) -> Option<Soul> {
        self.wrapped.take()
    }
}

/// What a streamed body may cost, and how errors name it.
struct Limits {
    op: Operation,
    target: String,
    timeout: Duration,
    max_bytes: usize,
    /// Relay time already spent on the head.
    waited: Duration,
}

impl Limits {
    fn timeout_error(&self) -> RelayError {
        RelayError::Timeout {
            op: self.op,
            target: self.target.clone(),
            timeout: self.timeout,
        }
    }
}

impl RelayClient {
    /// `GET /get?soul=S` with the body parsed as it arrives, in batches of at most `batch`
    /// entries, up to [`RelayOptions::max_index_bytes`](super::RelayOptions::max_index_bytes);
    /// `None` when the relay does not hold the node. The semaphore permit covers the head only,
    /// so a body being read never holds a permit that its own link fetches wait for.
    pub(super) async fn open_node(
        &self,
        peer: &Url,
        soul: &Soul,
        layout: Layout,
        batch: usize,
    ) -> Result<Option<NodeBody>, RelayError> {
        let op = Operation::Get;
        let target = soul.as_str();
        // reqwest's whole-request timeout would also count the time the consumer spends between
        // batches; the head gets `timeout` here and the body its own allowance in `pump`.
        let request = self
            .inner
            .http
            .get(endpoint(peer, "get", &[("soul", target)]))
            .timeout(Duration::MAX);
        let timeout = self.inner.options.timeout;
        let permit = self.permit().await;
        let started = Instant::now();
        let head = tokio::time::timeout(timeout, self.head(op, target, request))
            .await
            .unwrap_or_else(|_| Err(self.timeout_error(op, target)));
        let opened = match head {
            Ok(response) if response.status().is_success() => Ok(Some(response)),
            Ok(response) => self
                .read_answer(op, target, response, self.inner.options.max_response_bytes)
                .await
                .and_then(|answer| match answer.status {
                    404 if is_absent(&answer.body) => Ok(None),
                    _ => Err(status_error(op, target, answer)),
                }),
            Err(err) => Err(err),
        };
        let status = opened.as_ref().map(|response| match response {
            Some(response) => response.status().as_u16(),
            None => 404,
        });
        record(op, target, peer, started, status);
        drop(permit);
        let Some(response) = opened? else {
            return Ok(None);
        };
        let limits = Limits {
            op,
            target: target.to_owned(),
            timeout,
            max_bytes: self.inner.options.max_index_bytes,
            waited: started.elapsed(),
        };
        Ok(Some(start(response, soul.clone(), layout, batch, limits)))
    }
}

/// Pump `response`'s body to a parser thread handing on batches of `batch` entries.
fn start(
    response: reqwest::Response,
    soul: Soul,
    layout: Layout,
    batch: usize,
    limits: Limits,
) -> NodeBody {
    let (chunks_in, chunks_out) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let (parsed_in, parsed_out) = mpsc::channel(1);
    let op = limits.op;
    let pump = AbortOnDropHandle::new(tokio::spawn(pump(response, chunks_in, limits)));
    // Detached: it ends when its input ends (the pump finished or was aborted) or when nobody
    // reads its output any more.
    let parsed_soul = soul.clone();
    tokio::task::spawn_blocking(move || {
        parse(chunks_out, parsed_in, parsed_soul, layout, batch, op)
    });
    NodeBody {
        parsed: parsed_out,
        soul,
        ended: false,
        wrapped: None,
        _pump: pump,
    }
}

/// Move the body's chunks to the parser, counting bytes and relay time; the first error is the
/// last item. Ends early when the parser is gone.
async fn pump(
    mut response: reqwest::Response,
    chunks: mpsc::Sender<Result<Bytes, RelayError>>,
    limits: Limits,
) {
    let too_large = || RelayError::TooLarge {
        op: limits.op,
        target: limits.target.clone(),
        limit: limits.max_bytes,
    };
    if response
        .content_length()
        .is_some_and(|len| len > limits.max_bytes as u64)
    {
        let _ = chunks.send(Err(too_large())).await;
        return;
    }
    let (mut received, mut waited) = (0usize, limits.waited);
    loop {
        let earned = u32::try_from(1 + received / BYTES_PER_TIMEOUT).unwrap_or(u32::MAX);
        let allowed = limits.timeout.saturating_mul(earned).saturating_sub(waited);
        let started = Instant::now();
        let next = tokio::select! {
            () = chunks.closed() => return,
            next = tokio::time::timeout(allowed, response.chunk()) => next,
        };
        waited += started.elapsed();
        let item = match next {
            Err(_) => Err(limits.timeout_error()),
            Ok(Err(source)) => Err(body_error(
                limits.op,
                &limits.target,
                limits.timeout,
                source,
            )),
            Ok(Ok(None)) => return,
            Ok(Ok(Some(chunk))) => {
                received += chunk.len();
                if received > limits.max_bytes {
                    Err(too_large())
                } else {
                    Ok(chunk)
                }
            }
        };
        let last = item.is_err();
        if chunks.send(item).await.is_err() || last {
            return;
        }
    }
}

/// The parser thread: the envelope, then the node's entries in batches, then how it ended.
fn parse(
    chunks: ChunkReceiver,
    out: ParsedSender,
    soul: Soul,
    layout: Layout,
    batch: usize,
    op: Operation,
) {
    let mut reader = ChunkReader::new(chunks);
    let mut state = ParseState::new(soul, layout, Sink::new(out, batch));
    let parsed = {
        let mut deserializer = serde_json::Deserializer::from_reader(&mut reader);
        EnvelopeSeed(&mut state)
            .deserialize(&mut deserializer)
            .and_then(|()| deserializer.end())
    };
    let outcome = match parsed {
        Ok(()) => state.verdict(op),
        Err(err) => Err(reader
            .failure
            .take()
            .unwrap_or_else(|| state.failure(op, &err, &reader))),
    };
    // Nobody may be listening any more; then there is no one to tell.
    let _ = match outcome {
        Ok(()) => state.finish(),
        Err(err) => state.sink.send(Err(err)),
    };
}

/// The body's chunks as a `Read`, for serde_json; remembers what it saw for error messages.
struct ChunkReader {
    chunks: ChunkReceiver,
    current: Bytes,
    /// Why the body ended early, when the pump said.
    failure: Option<RelayError>,
    received: usize,
    first_non_blank: Option<u8>,
}

impl ChunkReader {
    fn new(chunks: ChunkReceiver) -> Self {
        Self {
            chunks,
            current: Bytes::new(),
            failure: None,
            received: 0,
            first_non_blank: None,
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.received += chunk.len();
                    if self.first_non_blank.is_none() {
                        self.first_non_blank =
                            chunk.iter().copied().find(|b| !b.is_ascii_whitespace());
                    }
                    self.current = chunk;
                }
                Some(Err(failure)) => {
                    self.failure = Some(failure);
                    return Err(io::Error::other("the relay body failed"));
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// The reader of the parsed entries is gone.
struct Gone;

/// Entries on their way out, in batches of one node each.
struct Sink {
    out: ParsedSender,
    batch: usize,
    pending: Option<Entries>,
}

impl Sink {
    fn new(out: ParsedSender, batch: usize) -> Self {
        Self {
            out,
            batch,
            pending: None,
        }
    }

    /// Queue one entry of `node`, handing on a full batch (or one of another node).
    fn push(&mut self, node: &Soul, key: String, value: Value) -> Result<(), Gone> {
        if self.pending.as_ref().is_some_and(|p| p.node != *node) {
            self.flush()?;
        }
        let pending = self.pending.get_or_insert_with(|| Entries {
            node: node.clone(),
            entries: Vec::new(),
        });
        pending.entries.push((key, value));
        if pending.entries.len() >= self.batch {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Gone> {
        match self.pending.take() {
            Some(entries) => self.send(Ok(Parsed::Entries(entries))),
            None => Ok(()),
        }
    }

    fn send(&self, item: Result<Parsed, RelayError>) -> Result<(), Gone> {
        self.out.blocking_send(item).map_err(|_| Gone)
    }
}

/// Which map of the streamed node an entry comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Node,
    Wrapper,
}

/// What the parser has learnt of the answer so far.
struct ParseState {
    soul: Soul,
    /// The soul GUN gives the wrapper's object (the node's own soul if that would be too long).
    wrapper_soul: Soul,
    layout: Layout,
    sink: Sink,
    success: Option<Value>,
    error: Option<Value>,
    saw_node: bool,
    /// Inside `data`: a type error now is the node's shape, not the envelope's.
    in_node: bool,
    wrapped: Option<Soul>,
}

impl ParseState {
    fn new(soul: Soul, layout: Layout, sink: Sink) -> Self {
        let wrapper_soul = layout
            .wrapper
            .and_then(|key| soul.child(key).ok())
            .unwrap_or_else(|| soul.clone());
        Self {
            soul,
            wrapper_soul,
            layout,
            sink,
            success: None,
            error: None,
            saw_node: false,
            in_node: false,
            wrapped: None,
        }
    }

    fn entry<E: de::Error>(&mut self, scope: Scope, key: String, value: Value) -> Result<(), E> {
        let node = match scope {
            Scope::Node => &self.soul,
            Scope::Wrapper => &self.wrapper_soul,
        };
        self.sink
            .push(node, key, value)
            .map_err(|Gone| E::custom("nobody reads the entries any more"))
    }

    /// A wrapper that is exactly `{"#": target}`: a link, followed after the node.
    fn wrap(&mut self, target: &Value) {
        self.wrapped = target.as_str().and_then(|s| Soul::parse(s).ok());
    }

    /// A complete body: is it a successful answer holding a node?
    fn verdict(&self, op: Operation) -> Result<(), RelayError> {
        let target = self.soul.as_str();
        if self.success != Some(Value::Bool(true)) {
            let message = match &self.error {
                Some(Value::String(text)) => error::one_line(text),
                Some(other) => error::one_line(&other.to_string()),
                None => "answer without \"success\": true".to_owned(),
            };
            return Err(RelayError::Refused {
                op,
                target: target.to_owned(),
                message,
            });
        }
        if !self.saw_node {
            return Err(malformed(op, target, "no \"data\" member".to_owned()));
        }
        Ok(())
    }

    /// Why a body that did not parse did not.
    fn failure(&self, op: Operation, err: &serde_json::Error, reader: &ChunkReader) -> RelayError {
        let target = self.soul.as_str();
        match err.classify() {
            Category::Data if self.in_node => {
                malformed(op, target, format!("node data is not an object: {err}"))
            }
            Category::Data => unparsable(op, target, NOT_AN_OBJECT.to_owned()),
            Category::Io | Category::Syntax | Category::Eof => unparsable(
                op,
                target,
                unparsable_reason(reader.first_non_blank, reader.received, err),
            ),
        }
    }

    fn finish(&mut self) -> Result<(), Gone> {
        self.sink.flush()?;
        let wrapped = self.wrapped.take();
        self.sink.send(Ok(Parsed::End { wrapped }))
    }

    /// The value of `key` in a map of `scope`: skipped, streamed (the wrapper) or an entry.
    fn read_value<'de, A: MapAccess<'de>>(
        &mut self,
        scope: Scope,
        key: String,
        map: &mut A,
    ) -> Result<(), A::Error> {
        if (self.layout.skip)(&key) {
            map.next_value::<IgnoredAny>()?;
        } else if self.layout.wrapper == Some(key.as_str()) {
            match scope {
                Scope::Node => map.next_value_seed(NodeSeed {
                    state: &mut *self,
                    scope: Scope::Wrapper,
                })?,
                // One level of wrapping, as OIP writes it.
                Scope::Wrapper => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        } else {
            let value: Value = map.next_value()?;
            self.entry(scope, key, value)?;
        }
        Ok(())
    }
}

/// The relay's `{"success": …, "data": {…}, "error": …}`, members in any order. Entries are
/// handed on as they come: a `success` that follows `data` and is not `true` ends the stream
/// with a refusal after them.
struct EnvelopeSeed<'s>(&'s mut ParseState);

impl<'de> DeserializeSeed<'de> for EnvelopeSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EnvelopeSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the relay's answer object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.0;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "success" => state.success = Some(map.next_value()?),
                "error" => state.error = Some(map.next_value()?),
                "data" => {
                    state.saw_node = true;
                    map.next_value_seed(NodeSeed {
                        state: &mut *state,
                        scope: Scope::Node,
                    })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// The node's map (which must be an object), or its wrapper's value (anything: only an object
/// holds entries, and exactly `{"#": soul}` is a link).
struct NodeSeed<'s> {
    state: &'s mut ParseState,
    scope: Scope,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.scope {
            Scope::Node => {
                self.state.in_node = true;
                deserializer.deserialize_map(self)
            }
            Scope::Wrapper => deserializer.deserialize_any(self),
        }
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a gun node (an object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let NodeSeed { state, scope } = self;
        let mut key = map.next_key::<String>()?;
        if scope == Scope::Wrapper && key.as_deref() == Some(LINK_KEY) {
            let target: Value = map.next_value()?;
            key = map.next_key()?;
            if key.is_none() {
                state.wrap(&target);
                return Ok(());
            }
            state.entry(scope, LINK_KEY.to_owned(), target)?;
        }
        while let Some(current) = key {
            state.read_value(scope, current, &mut map)?;
            key = map.next_key()?;
        }
        if scope == Scope::Node {
            state.in_node = false;
        }
        Ok(())
    }

    // A wrapper that is no object holds no entries.
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYOUT: Layout = Layout {
        skip: |key| key == "_",
        wrapper: Some("data"),
    };

    /// Feed `body` in chunks of `size` bytes (then `failure`, if any) to the parser with `batch`,
    /// and describe each thing it hands on.
    fn parsed(body: &[u8], size: usize, batch: usize, failure: Option<RelayError>) -> Vec<String> {
        let (chunks_in, chunks_out) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let (parsed_in, mut parsed_out) = mpsc::channel(1);
        let soul = Soul::parse("i:x").unwrap();
        let parser = std::thread::spawn(move || {
            parse(chunks_out, parsed_in, soul, LAYOUT, batch, Operation::Get)
        });
        let chunks: Vec<Bytes> = body.chunks(size).map(Bytes::copy_from_slice).collect();
        let feeder = std::thread::spawn(move || {
            for chunk in chunks {
                if chunks_in.blocking_send(Ok(chunk)).is_err() {
                    return;
                }
            }
            if let Some(failure) = failure {
                let _ = chunks_in.blocking_send(Err(failure));
            }
        });
        let mut seen = Vec::new();
        while let Some(item) = parsed_out.blocking_recv() {
            seen.push(match item {
                Ok(Parsed::Entries(Entries { node, entries })) => {
                    let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
                    format!("{node}: {}", keys.join(" "))
                }
                Ok(Parsed::End { wrapped: None }) => "end".to_owned(),
                Ok(Parsed::End {
                    wrapped: Some(soul),
                }) => format!("end, wrapped {soul}"),
                Err(err) => format!("error: {err}"),
            });
        }
        parser.join().unwrap();
        feeder.join().unwrap();
        seen
    }

    #[test]
    fn entries_come_in_batches_however_the_body_is_cut() {
        let success_first = br##"{"success":true,"data":{"_":{"#":"i:x",">":{"a":1,"b":2}},"a":{"soul":"a"},"b":true,"c":null,"data":{"d":1,"_":{"#":"i:x/data"},"data":{"e":1},"f":2},"g":3}}"##;
        let success_last = br#"{"data":{"a":{"soul":"a"},"b":true,"c":null,"data":{"d":1,"f":2},"g":3},"extra":[1,{"x":2}],"success":true}"#;
        let expected = ["i:x: a b", "i:x: c", "i:x/data: d f", "i:x: g", "end"];
        for body in [&success_first[..], &success_last[..]] {
            for size in [1, 2, 3, 7, 64, body.len()] {
                assert_eq!(parsed(body, size, 2, None), expected, "chunks of {size}");
            }
        }
    }

    #[test]
    fn a_wrapper_that_is_a_link_is_reported_after_the_entries() {
        let linked = br##"{"success":true,"data":{"a":1,"data":{"#":"i:x/data"},"b":2}}"##;
        assert_eq!(
            parsed(linked, 5, 10, None),
            ["i:x: a b", "end, wrapped i:x/data"]
        );
        // `#` among other keys is an entry, and a wrapper that is no object holds none.
        let not_links = br##"{"success":true,"data":{"data":{"#":"s","k":1}}}"##;
        assert_eq!(parsed(not_links, 3, 10, None), ["i:x/data: # k", "end"]);
        for wrapper in ["null", "5", "\"text\"", "[1,[2]]", "true"] {
            let body = format!(r#"{{"success":true,"data":{{"data":{wrapper},"a":1}}}}"#);
            assert_eq!(
                parsed(body.as_bytes(), 4, 10, None),
                ["i:x: a", "end"],
                "{wrapper}"
            );
        }
    }

    #[test]
    fn a_body_that_is_not_a_successful_answer_ends_with_what_it_was() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"",
                "error: get i:x: unexpected response: empty body (0 bytes read)",
            ),
            (
                b"<html>502</html>",
                "error: get i:x: unexpected response: an html page, not json (4 bytes read)",
            ),
            (
                br#"{"success":true,"data":{"a":1"#,
                "error: get i:x: unexpected response: invalid json (29 bytes read): EOF",
            ),
            (
                b"[1]",
                "error: get i:x: unexpected response: body is not a json object",
            ),
            (
                br#"{"success":false,"error":"restarting"}"#,
                "error: get i:x: relay refused: restarting",
            ),
            (
                br#"{"data":{}}"#,
                "error: get i:x: relay refused: answer without \"success\": true",
            ),
            (
                br#"{"success":true}"#,
                "error: get i:x: malformed answer: no \"data\" member",
            ),
            (
                br#"{"success":true,"data":"text"}"#,
                "error: get i:x: malformed answer: node data is not an object: invalid type",
            ),
            (
                br#"{"success":true,"data":{}} trailing"#,
                "error: get i:x: unexpected response: invalid json (28 bytes read): trailing characters",
            ),
        ];
        for (body, message) in cases {
            let seen = parsed(body, 4, 10, None);
            assert_eq!(seen.len(), 1, "{seen:?}");
            assert!(seen[0].starts_with(message), "{seen:?}");
        }
    }

    #[tokio::test]
    async fn a_body_whose_parser_vanished_is_incomplete_not_empty() {
        let (parsed_in, parsed_out) = mpsc::channel(1);
        drop(parsed_in);
        let mut body = NodeBody {
            parsed: parsed_out,
            soul: Soul::parse("i:x").unwrap(),
            ended: false,
            wrapped: None,
            _pump: AbortOnDropHandle::new(tokio::spawn(async {})),
        };
        let err = body.next().await.unwrap().err().unwrap();
        assert!(err.is_transient(), "{err}");
        assert_eq!(
            err.to_string(),
            "get i:x: unexpected response: reading the body stopped before its end"
        );
        assert!(body.next().await.is_none());
    }

    #[test]
    fn a_failure_of_the_body_is_handed_on_as_it_was() {
        let cut = br#"{"success":true,"data":{"a":1,"b":2,"c""#;
        let failure = RelayError::TooLarge {
            op: Operation::Get,
            target: "i:x".into(),
            limit: 10,
        };
        let seen = parsed(cut, 8, 1, Some(failure));
        assert_eq!(
            seen,
            [
                "i:x: a",
                "i:x: b",
                "error: get i:x: response larger than 10 bytes, not read further"
            ]
        );
    }
}
