//! GUN node shapes, pure: metadata stripping, link detection, and the typed views the sync cycle
//! and job handlers read ([`RecordNode`], type-index and deletion-registry entries). No I/O here;
//! the client fetches and streams, this module interprets (DESIGN §3).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::domain::{Did, InvalidSoul, Soul, shown};

/// GUN's metadata key (`{"#": soul, ">": {key: state}}`); never data.
pub const METADATA_KEY: &str = "_";

/// The key of a link object: `{"#": "<soul>"}`.
pub(super) const LINK_KEY: &str = "#";

/// The key under which OIP's `registerOIPRecord` may wrap a type index's entries (`{data: {…}}`).
pub(super) const INDEX_WRAPPER: &str = "data";

/// Record keys that hold the record itself; a tombstone nulls at least these.
pub const RECORD_KEYS: [&str; 3] = ["data", "oip", "meta"];

/// Record keys a record needs, and that OIP's publisher may store as JSON text.
const DOCUMENT_KEYS: [&str; 2] = ["data", "oip"];

/// One GUN node as a peer returned it, without the `_` metadata key.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    soul: Soul,
    fields: Map<String, Value>,
}

impl Node {
    /// The node `soul` holding `fields`; a `_` key is dropped.
    pub fn new(soul: Soul, mut fields: Map<String, Value>) -> Self {
        fields.remove(METADATA_KEY);
        Self { soul, fields }
    }

    /// Parse the `data` member of a `get` answer.
    ///
    /// # Errors
    /// A description of the shape when `value` is not a JSON object.
    pub fn from_value(soul: Soul, value: Value) -> Result<Self, String> {
        match value {
            Value::Object(fields) => Ok(Self::new(soul, fields)),
            other => Err(format!("node data is {}, not an object", json_kind(&other))),
        }
    }

    pub fn soul(&self) -> &Soul {
        &self.soul
    }

    /// Every key but `_`; a `null` value is a key GUN holds as removed.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key)
    }

    pub fn into_fields(self) -> Map<String, Value> {
        self.fields
    }
}

/// What one value of a node is.
#[derive(Clone, Debug, PartialEq)]
pub enum Field<'a> {
    /// Exactly `{"#": soul}`: the value lives in another node.
    Link(Soul),
    /// `{"#": x}` where `x` is not a usable soul; cannot be followed.
    BrokenLink(String),
    /// Any other object: data the relay already resolved inline (OIP flavour).
    Inline(&'a Map<String, Value>),
    Null,
    /// A string, number or boolean (or an array, which GUN itself never stores).
    Scalar(&'a Value),
}

/// Classify `value`: a link is an object with the single key `#` (DESIGN §3).
pub fn classify(value: &Value) -> Field<'_> {
    match value {
        Value::Null => Field::Null,
        Value::Object(map) => match link_target(map) {
            Some(Ok(soul)) => Field::Link(soul),
            Some(Err(err)) => Field::BrokenLink(err),
            None => Field::Inline(map),
        },
        other => Field::Scalar(other),
    }
}

fn link_target(map: &Map<String, Value>) -> Option<Result<Soul, String>> {
    if map.len() != 1 {
        return None;
    }
    let target = map.get(LINK_KEY)?;
    Some(match target {
        Value::String(s) => Soul::parse(s).map_err(|e: InvalidSoul| e.to_string()),
        other => Err(format!("link target is {}", json_kind(other))),
    })
}

/// A record node with its `data`, `oip` and `meta` children fetched.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordNode {
    pub soul: Soul,
    /// The record body; `None` when absent, `null`, or a link whose target is missing.
    pub data: Option<Value>,
    pub oip: Option<Value>,
    pub meta: Option<Value>,
    /// A private record (`encrypted`, or `meta.encrypted`, or an `{encrypted, iv, tag}` body).
    pub encrypted: bool,
    /// An explicit tombstone, never a record to index: `deleted: true`, or `data` or `oip`
    /// present as `null` (a plain GUN relay shows nulled keys; OIP's relay drops them, so its
    /// tombstone reads back as `{deleted: true, deletedAt}`). Absence is not deletion.
    pub deleted: bool,
    /// What is missing when the record is no tombstone yet lacks `data` or `oip` (an absent
    /// key, or a link whose target the relay does not hold): OIP's relay is lossy, and such a
    /// record may read complete later (DESIGN §3). `None` when both are there, and for a
    /// tombstone.
    pub partial: Option<String>,
    /// Every top-level key the node holds (`_` excluded), so a tombstone can null them all.
    pub keys: Vec<String>,
}

impl RecordNode {
    /// Interpret a record node whose links have been followed, or a raw node (a link left in
    /// place counts as present).
    pub fn from_node(node: Node) -> Self {
        Self::from_resolved(node, &BTreeMap::new())
    }

    /// [`from_node`](Self::from_node) for a node whose links were followed: `unresolved` says,
    /// for a top-level key that was dropped, why (`"link to a:b/data not found"`).
    pub(super) fn from_resolved(node: Node, unresolved: &BTreeMap<String, String>) -> Self {
        let keys: Vec<String> = node.fields.keys().cloned().collect();
        let Node { soul, mut fields } = node;
        parse_document_text(&mut fields);
        let deleted = fields.get("deleted").and_then(Value::as_bool) == Some(true)
            || DOCUMENT_KEYS
                .iter()
                .any(|key| matches!(fields.get(*key), Some(Value::Null)));
        let partial = (!deleted)
            .then(|| missing_parts(&fields, unresolved))
            .flatten();
        let mut take = |key: &str| fields.remove(key).filter(|v| !v.is_null());
        let data = take("data");
        let oip = take("oip");
        let meta = take("meta");
        let top_encrypted = take("encrypted").is_some_and(|v| v != Value::Bool(false));
        let meta_encrypted = meta
            .as_ref()
            .and_then(|m| m.get("encrypted"))
            .and_then(Value::as_bool)
            == Some(true);
        let body_encrypted = data.as_ref().and_then(Value::as_object).is_some_and(|d| {
            ["encrypted", "iv", "tag"]
                .iter()
                .all(|k| d.get(*k).is_some_and(|v| !v.is_null()))
        });
        Self {
            soul,
            data,
            oip,
            meta,
            encrypted: top_encrypted || meta_encrypted || body_encrypted,
            deleted,
            partial,
            keys,
        }
    }

    /// `oip.recordType`, when it is a string.
    pub fn record_type(&self) -> Option<&str> {
        self.oip.as_ref()?.get("recordType")?.as_str()
    }

    pub fn did(&self) -> Did {
        Did::from_soul(&self.soul)
    }
}

/// `"data is missing (link to a:b/data not found), oip is missing"`: the absent keys of
/// [`DOCUMENT_KEYS`], with why when a link was dropped; `None` when both are there.
fn missing_parts(
    fields: &Map<String, Value>,
    unresolved: &BTreeMap<String, String>,
) -> Option<String> {
    let missing: Vec<String> = DOCUMENT_KEYS
        .iter()
        .filter(|key| !fields.contains_key(**key))
        .map(|key| match unresolved.get(*key) {
            Some(why) => format!("{key} is missing ({why})"),
            None => format!("{key} is missing"),
        })
        .collect();
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// Parse a `data` or `oip` that arrived as JSON text: OIP's publisher stores them as strings,
/// and only OIP's relay parses them for its answers (DESIGN §3). Only an object or an array
/// replaces the text, so `"null"` cannot read as a tombstone nor `"5"` as a body; text that is
/// not JSON stays text, for validation to reject.
pub(super) fn parse_document_text(fields: &mut Map<String, Value>) {
    for key in DOCUMENT_KEYS {
        let Some(Value::String(text)) = fields.get(key) else {
            continue;
        };
        if let Ok(parsed @ (Value::Object(_) | Value::Array(_))) = serde_json::from_str(text) {
            fields.insert(key.to_owned(), parsed);
        }
    }
}

/// The record souls listed by one type index (`<root>:index:<recordType>`), collected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TypeIndex {
    /// Sorted, without duplicates.
    pub souls: Vec<Soul>,
    /// Keys of entries skipped as invalid (truncated).
    pub rejected: Vec<String>,
}

/// The DIDs listed by the deletion registry index (`oip:deleted:records:index`), collected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeletionRegistry {
    /// Sorted, without duplicates.
    pub dids: Vec<Did>,
    /// Keys that are not DIDs marked deleted (truncated), skipped.
    pub rejected: Vec<String>,
}

/// One record a type index lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub soul: Soul,
    /// The entry's `timestamp` (ms since the epoch) when it is an integer.
    pub timestamp: Option<i64>,
}

/// Entries of a type index, as read from the body: at most the batch size asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexBatch {
    pub entries: Vec<IndexEntry>,
    /// Keys of entries skipped as invalid (truncated).
    pub rejected: Vec<String>,
}

/// DIDs of the deletion registry, as read from the body: at most the batch size asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryBatch {
    pub dids: Vec<Did>,
    /// Keys that are not DIDs marked deleted (truncated), skipped.
    pub rejected: Vec<String>,
}

/// A deletion registry entry, `oip:deleted:records:<did>`, as OIP's `markDeleted(did,
/// deletedBy)` writes it: `{deletedAt: Date.now(), deletedBy: <publisher public key>,
/// timestamp: <ISO text>, did}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeletionEntry {
    /// The public key of whoever marked the record deleted.
    pub deleted_by: Option<String>,
    /// When, in ms since the epoch.
    pub deleted_at: Option<i64>,
    /// The DID the entry says it is about (unchecked).
    pub did: Option<String>,
}

impl DeletionEntry {
    /// Read an entry node; a field missing or of another type reads as `None`.
    pub fn from_node(node: &Node) -> Self {
        let text = |key: &str| node.get(key).and_then(Value::as_str).map(str::to_owned);
        Self {
            deleted_by: text("deletedBy"),
            deleted_at: node.get("deletedAt").and_then(Value::as_i64),
            did: text("did"),
        }
    }
}

/// An entry skipped as invalid: its key, truncated, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Rejected {
    pub key: String,
    pub reason: &'static str,
}

impl Rejected {
    pub(super) fn new(key: &str, reason: &'static str) -> Self {
        Self {
            key: shown(key),
            reason,
        }
    }
}

/// What one key of the type-index node `node` is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum IndexSlot {
    /// Not a record (metadata, the wrapper) or a removed one (`null`): skipped silently.
    Skip,
    Entry(IndexEntry),
    /// A link to `<node>/<key>`: the entry lives there, still to be fetched and checked.
    Link {
        soul: Soul,
        target: Soul,
    },
    Rejected(Rejected),
}

/// Keys of a type index that are not records: GUN's `_`, and `_…` and `oip:…` keys.
pub(super) fn is_index_metadata(key: &str) -> bool {
    key.starts_with('_') || key.starts_with("oip:")
}

/// Read one key of a type index (DESIGN §3): an entry counts only when it names its own soul,
/// inline (`{soul, timestamp, …}` with `soul` equal to the key) or as a link to `<node>/<key>`,
/// the soul GUN gives the object stored under that key.
pub(super) fn index_slot(node: &Soul, key: &str, value: &Value) -> IndexSlot {
    if is_index_metadata(key) || key == INDEX_WRAPPER || value.is_null() {
        return IndexSlot::Skip;
    }
    let rejected = |reason| IndexSlot::Rejected(Rejected::new(key, reason));
    let Ok(soul) = Soul::parse(key) else {
        return rejected("key is not a soul");
    };
    match classify(value) {
        Field::Link(target) if node.child(key).is_ok_and(|own| own == target) => {
            IndexSlot::Link { soul, target }
        }
        Field::Link(_) => rejected("links to another node than its own"),
        Field::Inline(fields) => named_entry(&soul, fields)
            .map_or_else(|| rejected("does not name its soul"), IndexSlot::Entry),
        Field::BrokenLink(_) => rejected("unusable link"),
        Field::Null => IndexSlot::Skip,
        Field::Scalar(_) => rejected("not an object"),
    }
}

/// The entry of `soul` when `fields` (inline, or a linked entry node) say `soul: <soul>`.
pub(super) fn named_entry(soul: &Soul, fields: &Map<String, Value>) -> Option<IndexEntry> {
    (fields.get("soul").and_then(Value::as_str) == Some(soul.as_str())).then(|| IndexEntry {
        soul: soul.clone(),
        timestamp: fields.get("timestamp").and_then(Value::as_i64),
    })
}

/// Read one key of the deletion registry index: a DID marked `true`, an object or a link is
/// deleted; `null` and `false` are unmarked and `_` is metadata (`None`).
pub(super) fn registry_slot(key: &str, value: &Value) -> Option<Result<Did, Rejected>> {
    if key == METADATA_KEY || matches!(value, Value::Null | Value::Bool(false)) {
        return None;
    }
    if !matches!(value, Value::Bool(true) | Value::Object(_)) {
        return Some(Err(Rejected::new(key, "not marked true or with an object")));
    }
    Some(Did::parse(key).map_err(|_| Rejected::new(key, "key is not a gun did")))
}

/// What sort of JSON value `value` is, for messages: "a string", "an object", "null".
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn soul(s: &str) -> Soul {
        Soul::parse(s).unwrap()
    }

    fn fields(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn classify_tells_links_from_inline_data() {
        let link = json!({"#": "a:b/data"});
        let inline = json!({"#": "a:b/data", "x": 1});
        let inline_plain = json!({"name": "n"});
        let broken = json!({"#": "has space"});
        let broken_number = json!({"#": 5});
        let scalar = json!("text");
        let cases = [
            (&link, Field::Link(soul("a:b/data"))),
            (&inline, Field::Inline(inline.as_object().unwrap())),
            (
                &inline_plain,
                Field::Inline(inline_plain.as_object().unwrap()),
            ),
            (&Value::Null, Field::Null),
            (&scalar, Field::Scalar(&scalar)),
        ];
        for (value, expected) in cases {
            assert_eq!(classify(value), expected, "{value}");
        }
        assert!(matches!(classify(&broken), Field::BrokenLink(_)));
        assert!(matches!(classify(&broken_number), Field::BrokenLink(_)));
    }

    #[test]
    fn node_strips_metadata_and_rejects_non_objects() {
        let node = Node::from_value(
            soul("a:b"),
            json!({"_": {"#": "a:b", ">": {"x": 1}}, "x": 1, "y": null}),
        )
        .unwrap();
        assert_eq!(node.fields(), &fields(json!({"x": 1, "y": null})));
        for bad in [json!(null), json!([1]), json!("s")] {
            assert!(Node::from_value(soul("a:b"), bad).is_err());
        }
    }

    #[test]
    fn only_an_explicit_tombstone_is_deleted_and_absence_is_partial() {
        let live = json!({"data": {"name": "n"}, "oip": {"recordType": "post", "ver": "0.8.0"}, "meta": {}});
        let cases: &[(&str, Value, bool, Option<&str>)] = &[
            ("live", live.clone(), false, None),
            (
                "flagged",
                json!({"data": {"a": 1}, "oip": {"recordType": "post"}, "deleted": true}),
                true,
                None,
            ),
            (
                "plain gun tombstone",
                json!({"data": null, "oip": null, "meta": null, "deleted": true}),
                true,
                None,
            ),
            (
                "data nulled without flag",
                json!({"data": null, "oip": {"recordType": "post"}}),
                true,
                None,
            ),
            (
                "oip nulled without flag",
                json!({"data": {"a": 1}, "oip": null}),
                true,
                None,
            ),
            (
                "oip relay tombstone (null keys dropped)",
                json!({"deleted": true, "deletedAt": 1}),
                true,
                None,
            ),
            (
                "meta only",
                json!({"meta": {"created": 1}}),
                false,
                Some("data is missing, oip is missing"),
            ),
            (
                "no oip",
                json!({"data": {"a": 1}, "meta": {}}),
                false,
                Some("oip is missing"),
            ),
            (
                "nothing at all",
                json!({}),
                false,
                Some("data is missing, oip is missing"),
            ),
            (
                "deleted false",
                json!({"data": {"a": 1}, "oip": {}, "deleted": false}),
                false,
                None,
            ),
            (
                "deleted as text is no flag",
                json!({"data": {"a": 1}, "deleted": "true"}),
                false,
                Some("oip is missing"),
            ),
            (
                "null text is no tombstone",
                json!({"data": "null", "oip": "null"}),
                false,
                None,
            ),
        ];
        for (name, value, deleted, partial) in cases {
            let record = RecordNode::from_node(Node::new(soul("a:b"), fields(value.clone())));
            assert_eq!(record.deleted, *deleted, "{name}");
            assert_eq!(record.partial.as_deref(), *partial, "{name}");
        }
        let unresolved =
            BTreeMap::from([("data".to_owned(), "link to a:b/data not found".to_owned())]);
        let dangling = RecordNode::from_resolved(
            Node::new(soul("a:b"), fields(json!({"oip": {"recordType": "post"}}))),
            &unresolved,
        );
        assert!(!dangling.deleted);
        assert_eq!(
            dangling.partial.as_deref(),
            Some("data is missing (link to a:b/data not found)")
        );
        let record = RecordNode::from_node(Node::new(soul("a:b"), fields(live)));
        assert_eq!(record.record_type(), Some("post"));
        assert_eq!(record.keys, vec!["data", "meta", "oip"]);
        assert_eq!(record.did().as_str(), "did:gun:a:b");
    }

    #[test]
    fn data_and_oip_stored_as_json_text_are_parsed_when_they_hold_a_document() {
        let cases = [
            (
                json!(r#"{"name":"n","tags":"[\"a\"]"}"#),
                json!({"name": "n", "tags": "[\"a\"]"}),
            ),
            (json!(" [1, 2] "), json!([1, 2])),
            (
                json!(r##"{"ref":{"#":"a:b/x"}}"##),
                json!({"ref": {"#": "a:b/x"}}),
            ),
            (json!("{not json"), json!("{not json")),
            (json!("null"), json!("null")),
            (json!("5"), json!("5")),
            (json!(r#""text""#), json!(r#""text""#)),
            (json!({"already": "parsed"}), json!({"already": "parsed"})),
        ];
        for (stored, read) in cases {
            let record = RecordNode::from_node(Node::new(
                soul("a:b"),
                fields(json!({"data": stored, "oip": stored, "meta": stored})),
            ));
            assert_eq!(record.data.as_ref(), Some(&read), "data {stored}");
            assert_eq!(record.oip.as_ref(), Some(&read), "oip {stored}");
            assert_eq!(
                record.meta.as_ref(),
                Some(&stored),
                "meta is never parsed: {stored}"
            );
        }
        let typed = RecordNode::from_node(Node::new(
            soul("a:b"),
            fields(json!({"data": "{}", "oip": r#"{"recordType":"post"}"#})),
        ));
        assert_eq!(typed.record_type(), Some("post"));
    }

    #[test]
    fn record_node_detects_privacy() {
        let cases = [
            (json!({"data": "x", "oip": {}, "encrypted": true}), true),
            (json!({"data": "x", "oip": {}, "encrypted": false}), false),
            (
                json!({"data": "x", "oip": {}, "meta": {"encrypted": true}}),
                true,
            ),
            (
                json!({"data": {}, "oip": {}, "meta": {"encrypted": false}}),
                false,
            ),
            (
                json!({"data": {"encrypted": "c", "iv": "i", "tag": "t"}, "oip": {}}),
                true,
            ),
            (
                json!({"data": {"encrypted": "c", "iv": null, "tag": "t"}, "oip": {}}),
                false,
            ),
        ];
        for (value, encrypted) in cases {
            let record = RecordNode::from_node(Node::new(soul("a:b"), fields(value.clone())));
            assert_eq!(record.encrypted, encrypted, "{value}");
        }
    }

    #[test]
    fn index_entries_count_only_when_they_name_their_own_soul() {
        let node = soul("oip:registry:index:post");
        let entry = |s: &str, timestamp| {
            IndexSlot::Entry(IndexEntry {
                soul: soul(s),
                timestamp,
            })
        };
        let rejected = |key: &str, reason| IndexSlot::Rejected(Rejected::new(key, reason));
        let cases = [
            (
                "abc:1",
                json!({"soul": "abc:1", "nodeId": "n", "timestamp": 1_764_000_000_000_i64}),
                entry("abc:1", Some(1_764_000_000_000)),
            ),
            ("abc:2", json!({"soul": "abc:2"}), entry("abc:2", None)),
            (
                "abc:3",
                json!({"soul": "abc:3", "timestamp": 1.5}),
                entry("abc:3", None),
            ),
            (
                "abc:4",
                json!({"soul": "abc:3", "timestamp": 1}),
                rejected("abc:4", "does not name its soul"),
            ),
            (
                "c9e419bc832d:h:",
                json!({"soul": "c9e419bc832d:h:post-1"}),
                rejected("c9e419bc832d:h:", "does not name its soul"),
            ),
            (
                "c9e419bc832d:post-",
                json!({"soul": "c9e419bc832d:post-1"}),
                rejected("c9e419bc832d:post-", "does not name its soul"),
            ),
            (
                "abc:5",
                json!({"nodeId": "n"}),
                rejected("abc:5", "does not name its soul"),
            ),
            ("abc:6", json!(true), rejected("abc:6", "not an object")),
            (
                "abc:7",
                json!({"#": "oip:registry:index:post/abc:7"}),
                IndexSlot::Link {
                    soul: soul("abc:7"),
                    target: soul("oip:registry:index:post/abc:7"),
                },
            ),
            (
                "abc:8",
                json!({"#": "abc:8"}),
                rejected("abc:8", "links to another node than its own"),
            ),
            (
                "abc:9",
                json!({"#": "has space"}),
                rejected("abc:9", "unusable link"),
            ),
            (
                "bad soul",
                json!({"soul": "bad soul"}),
                rejected("bad soul", "key is not a soul"),
            ),
            ("bad soul", Value::Null, IndexSlot::Skip),
            ("abc:10", Value::Null, IndexSlot::Skip),
            (
                "_",
                json!({"#": "oip:registry:index:post"}),
                IndexSlot::Skip,
            ),
            ("_meta", json!({"soul": "_meta"}), IndexSlot::Skip),
            (
                "oip:something",
                json!({"soul": "oip:something"}),
                IndexSlot::Skip,
            ),
            ("data", json!({"abc:1": {"soul": "abc:1"}}), IndexSlot::Skip),
        ];
        for (key, value, expected) in cases {
            assert_eq!(index_slot(&node, key, &value), expected, "{key}: {value}");
        }
    }

    #[test]
    fn deletion_registry_keys_are_gun_dids_marked_deleted() {
        let did = |s: &str| Some(Ok(Did::parse(s).unwrap()));
        let rejected = |key: &str, reason| Some(Err(Rejected::new(key, reason)));
        let cases = [
            ("did:gun:abc:1", json!(true), did("did:gun:abc:1")),
            (
                "did:gun:abc:2",
                json!({"#": "oip:deleted:records:index/did:gun:abc:2"}),
                did("did:gun:abc:2"),
            ),
            (
                "did:gun:abc:3",
                json!({"deletedAt": 1}),
                did("did:gun:abc:3"),
            ),
            ("did:gun:abc:4", Value::Null, None),
            ("did:gun:abc:5", json!(false), None),
            ("_", json!({"#": "oip:deleted:records:index"}), None),
            (
                "did:gun:abc:6",
                json!("yes"),
                rejected("did:gun:abc:6", "not marked true or with an object"),
            ),
            (
                "did:arweave:xyz",
                json!(true),
                rejected("did:arweave:xyz", "key is not a gun did"),
            ),
            (
                "did:gun:bad soul",
                json!(true),
                rejected("did:gun:bad soul", "key is not a gun did"),
            ),
        ];
        for (key, value, expected) in cases {
            assert_eq!(registry_slot(key, &value), expected, "{key}: {value}");
        }
    }

    #[test]
    fn deletion_entries_read_what_mark_deleted_writes() {
        let node = |value: Value| Node::new(soul("oip:deleted:records:did:gun:a:1"), fields(value));
        let written = DeletionEntry::from_node(&node(json!({
            "deletedAt": 1_764_000_000_000_i64,
            "deletedBy": "02abc",
            "timestamp": "2025-11-24T16:00:00.000Z",
            "did": "did:gun:a:1",
        })));
        assert_eq!(
            written,
            DeletionEntry {
                deleted_by: Some("02abc".into()),
                deleted_at: Some(1_764_000_000_000),
                did: Some("did:gun:a:1".into()),
            }
        );
        let odd =
            DeletionEntry::from_node(&node(json!({"deletedAt": "yesterday", "deletedBy": 5})));
        assert_eq!(odd, DeletionEntry::default());
    }
}
