//! The Elasticsearch document of a GUN record, exactly as OIP's own sync builds it
//! (`convertGunRecordForElasticsearch` in `helpers/gunSyncService.js`, then
//! `processRecordForElasticsearch` in `helpers/elasticsearch.js`), and OIP's verdict on whether a
//! record may be indexed at all (`isValidOIPRecord` in `helpers/oipGunRegistry.js`). Pure: no I/O
//! and no clock (the sync time is a parameter). DESIGN §4; `tests/oip_golden.rs` checks it
//! against OIP's code run under node.

use serde_json::{Map, Value};

use crate::domain::Did;
use crate::relay::json_kind as kind;
use crate::timestamp::Timestamp;

/// Why OIP would not index a record (a permanent failure); the reason names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(String);

/// A record that passed OIP's validation: its `data` and its `oip` metadata object.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OipRecord<'a> {
    data: &'a Value,
    oip: &'a Map<String, Value>,
}

impl<'a> OipRecord<'a> {
    /// Accepts exactly what OIP's `isValidOIPRecord` accepts, with JavaScript truthiness (`""`,
    /// `0`, `false` and `null` count as missing): `oip` and `data` present, `oip.ver`,
    /// `oip.recordType` and `oip.creator` present, `oip.ver` a string starting with `0.8`, and
    /// either `oip.creator` an object with `publicKey` and `didAddress` or the flattened
    /// `oip.creator_publicKey` and `oip.creator_didAddress`. `data` may be any truthy value, as
    /// in OIP; `oip` must be an object (OIP finds no `ver` in anything else).
    ///
    /// # Errors
    /// The first check that fails, in OIP's order, naming the field
    /// (`"oip.creator.publicKey is missing"`).
    pub fn parse(data: Option<&'a Value>, oip: Option<&'a Value>) -> Result<Self, Invalid> {
        let oip = present("oip", oip)?;
        let data = present("data", data)?;
        let Value::Object(fields) = oip else {
            return Err(Invalid(format!("oip is {}, not an object", kind(oip))));
        };
        for key in ["ver", "recordType", "creator"] {
            present(&format!("oip.{key}"), fields.get(key))?;
        }
        match &fields["ver"] {
            Value::String(ver) if ver.starts_with("0.8") => {}
            ver => return Err(Invalid(format!("oip.ver {ver} is not 0.8.x"))),
        }
        let creator = &fields["creator"];
        let member = |key: &str| creator.as_object().and_then(|c| c.get(key));
        let full = truthy(member("publicKey")) && truthy(member("didAddress"));
        if !full && flattened_creator(fields).is_none() {
            return Err(match creator {
                Value::Object(_) => {
                    let key = if truthy(member("publicKey")) {
                        "didAddress"
                    } else {
                        "publicKey"
                    };
                    falsy(&format!("oip.creator.{key}"), member(key))
                }
                other => {
                    let key = if truthy(fields.get("creator_publicKey")) {
                        "creator_didAddress"
                    } else {
                        "creator_publicKey"
                    };
                    Invalid(format!(
                        "oip.creator is {}, not {{publicKey, didAddress}}, and {}",
                        kind(other),
                        falsy(&format!("oip.{key}"), fields.get(key))
                    ))
                }
            });
        }
        Ok(Self { data, oip: fields })
    }

    /// The document OIP's sync would index for this record under `did`, plus gunsync's
    /// `oip.syncedAt`:
    /// - `{data, oip}` only (GUN's metadata and `meta` are not part of it);
    /// - `oip.did` = `oip.didTx` = the DID, `oip.storage = "gun"`;
    /// - truthy `oip.creator_publicKey` and `oip.creator_didAddress` become
    ///   `oip.creator = {publicKey, didAddress}` (replacing any `creator`), the flat keys removed;
    /// - JSON arrays stored as strings inside `data` become arrays (see `arrays_from_strings`);
    ///   strings in `oip` stay strings, as in OIP;
    /// - `oip.indexedAt` keeps the publisher's value and is `synced_at` only when absent or
    ///   `null` (OIP's sync sets none);
    /// - `oip.syncedAt` is always `synced_at` (OIP sets it only for records it decrypted).
    pub fn to_document(&self, did: &Did, synced_at: Timestamp) -> Value {
        let mut oip = self.oip.clone();
        for key in ["did", "didTx"] {
            oip.insert(key.into(), Value::from(did.as_str()));
        }
        oip.insert("storage".into(), Value::from("gun"));
        if let Some((public_key, did_address)) = flattened_creator(self.oip) {
            let creator = Map::from_iter([
                ("publicKey".to_owned(), public_key.clone()),
                ("didAddress".to_owned(), did_address.clone()),
            ]);
            oip.insert("creator".into(), Value::Object(creator));
            oip.remove("creator_publicKey");
            oip.remove("creator_didAddress");
        }
        let synced_at = Value::from(synced_at.to_string());
        if oip.get("indexedAt").is_none_or(Value::is_null) {
            oip.insert("indexedAt".into(), synced_at.clone());
        }
        oip.insert("syncedAt".into(), synced_at);
        let document = Map::from_iter([
            ("data".to_owned(), arrays_from_strings(self.data.clone())),
            ("oip".to_owned(), Value::Object(oip)),
        ]);
        Value::Object(document)
    }
}

/// OIP's `convertJSONStringsToArrays`, applied to `data`. OIP's publisher stores every array as
/// a JSON string because GUN rejects arrays (DESIGN §3); this turns them back:
/// - a string that starts with `[`, ends with `]` and parses as JSON becomes the parsed array,
///   *as parsed*: strings and objects inside it are not walked again (`"[\"[1]\"]"` becomes
///   `["[1]"]`);
/// - any other string stays as it is (`"[1"`, `"[x]"`, `"[draft] notes"`, `" [1]"`);
/// - objects and arrays are walked, every member converted. A key `__proto__` of a walked
///   object is dropped: OIP rebuilds each object by assignment, and assigning `__proto__` sets
///   the prototype instead of a property, so the key never reaches Elasticsearch.
///
/// JavaScript's `JSON.parse` and serde_json differ only at the edges. JavaScript reads every
/// number as a double (`"[1.0]"` gives `[1]`, integers past 2^53 are rounded, `1e400` ends up
/// `null`) where serde_json keeps the number as written and refuses `1e400`; serde_json refuses
/// arrays nested deeper than 128 and lone UTF-16 surrogate escapes (`"\ud800"`), which
/// JavaScript accepts, and such a string stays a string here. Strings that `JSON.stringify`
/// wrote, as OIP's publisher writes them, hold no `1.0` or `1e400`; the rest takes data nested
/// 128 deep or a broken surrogate pair.
fn arrays_from_strings(value: Value) -> Value {
    match value {
        Value::String(text) if text.starts_with('[') && text.ends_with(']') => {
            match serde_json::from_str::<Value>(&text) {
                Ok(array @ Value::Array(_)) => array,
                _ => Value::String(text),
            }
        }
        Value::Object(members) => Value::Object(
            members
                .into_iter()
                .filter(|(key, _)| key != "__proto__")
                .map(|(key, member)| (key, arrays_from_strings(member)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(arrays_from_strings).collect()),
        other => other,
    }
}

/// The flattened creator OIP accepts and folds into `oip.creator`: both keys truthy.
fn flattened_creator(oip: &Map<String, Value>) -> Option<(&Value, &Value)> {
    let public_key = oip.get("creator_publicKey")?;
    let did_address = oip.get("creator_didAddress")?;
    (truthy(Some(public_key)) && truthy(Some(did_address))).then_some((public_key, did_address))
}

/// `value` when it is truthy, else why not.
fn present<'v>(path: &str, value: Option<&'v Value>) -> Result<&'v Value, Invalid> {
    match value {
        Some(value) if truthy(Some(value)) => Ok(value),
        other => Err(falsy(path, other)),
    }
}

/// JavaScript truthiness of a JSON value (a missing key is `undefined`).
fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|n| n != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(_) | Value::Object(_)) => true,
    }
}

/// Why the falsy `value` at `path` fails: missing, empty, `0` or `false`.
fn falsy(path: &str, value: Option<&Value>) -> Invalid {
    Invalid(match value {
        None | Some(Value::Null) => format!("{path} is missing"),
        Some(Value::String(_)) => format!("{path} is empty"),
        Some(other) => format!("{path} is {other}"),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::Soul;

    fn creator() -> Value {
        json!({"publicKey": "pk", "didAddress": "did:arweave:creator"})
    }

    /// Valid OIP metadata with `changes` applied (a `null` change removes the key).
    fn oip(changes: Value) -> Value {
        let mut oip = json!({"ver": "0.8.0", "recordType": "post", "creator": creator()});
        for (key, value) in changes.as_object().unwrap() {
            if value.is_null() {
                oip.as_object_mut().unwrap().remove(key);
            } else {
                oip[key] = value.clone();
            }
        }
        oip
    }

    fn verdict(data: Option<Value>, oip: Option<Value>) -> Result<(), String> {
        OipRecord::parse(data.as_ref(), oip.as_ref())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn validation_needs_truthy_oip_then_data_as_oip_checks_them() {
        let valid = || Some(oip(json!({})));
        let data = || Some(json!({"basic": {"name": "n"}}));
        let table = [
            (data(), valid(), Ok(())),
            (Some(json!({})), valid(), Ok(())),
            (Some(json!("text")), valid(), Ok(())),
            (data(), None, Err("oip is missing")),
            (None, None, Err("oip is missing")),
            (data(), Some(json!("")), Err("oip is empty")),
            (
                data(),
                Some(json!("{}")),
                Err("oip is a string, not an object"),
            ),
            (
                data(),
                Some(json!([1])),
                Err("oip is an array, not an object"),
            ),
            (None, valid(), Err("data is missing")),
            (Some(json!("")), valid(), Err("data is empty")),
            (Some(json!(0)), valid(), Err("data is 0")),
            (Some(json!(false)), valid(), Err("data is false")),
        ];
        for (data, oip, expected) in table {
            let got = verdict(data.clone(), oip.clone());
            assert_eq!(got, expected.map_err(str::to_owned), "{data:?} {oip:?}");
        }
    }

    #[test]
    fn validation_of_oip_fields_follows_oip_and_names_the_first_failure() {
        let flat = |creator: Value| {
            let mut changes = json!({"creator_publicKey": "pk", "creator_didAddress": "d"});
            changes["creator"] = creator;
            changes
        };
        let table = [
            (json!({"ver": "0.8.12"}), Ok(())),
            (json!({"recordType": 7}), Ok(())),
            (json!({"recordType": " "}), Ok(())),
            (flat(json!("Librarian7")), Ok(())),
            (flat(json!({"publicKey": ""})), Ok(())),
            (json!({"ver": null}), Err("oip.ver is missing")),
            (json!({"ver": ""}), Err("oip.ver is empty")),
            (
                json!({"ver": "0.7.2"}),
                Err("oip.ver \"0.7.2\" is not 0.8.x"),
            ),
            (json!({"ver": 0.8}), Err("oip.ver 0.8 is not 0.8.x")),
            (json!({"ver": true}), Err("oip.ver true is not 0.8.x")),
            (
                json!({"recordType": null}),
                Err("oip.recordType is missing"),
            ),
            (json!({"recordType": ""}), Err("oip.recordType is empty")),
            (json!({"creator": null}), Err("oip.creator is missing")),
            (json!({"creator": false}), Err("oip.creator is false")),
            (flat(Value::Null), Err("oip.creator is missing")),
            (
                json!({"creator": {"didAddress": "d"}}),
                Err("oip.creator.publicKey is missing"),
            ),
            (
                json!({"creator": {"publicKey": "", "didAddress": "d"}}),
                Err("oip.creator.publicKey is empty"),
            ),
            (
                json!({"creator": {"publicKey": "pk"}}),
                Err("oip.creator.didAddress is missing"),
            ),
            (
                json!({"creator": {"publicKey": "pk", "didAddress": 0}}),
                Err("oip.creator.didAddress is 0"),
            ),
            (
                json!({"creator": "Librarian7"}),
                Err("oip.creator is a string, not {publicKey, didAddress}, \
                     and oip.creator_publicKey is missing"),
            ),
            (
                json!({"creator": ["pk"], "creator_publicKey": "pk", "creator_didAddress": ""}),
                Err("oip.creator is an array, not {publicKey, didAddress}, \
                     and oip.creator_didAddress is empty"),
            ),
        ];
        for (changes, expected) in table {
            let got = verdict(Some(json!({})), Some(oip(changes.clone())));
            assert_eq!(got, expected.map_err(str::to_owned), "{changes}");
        }
    }

    #[test]
    fn json_array_strings_in_data_become_arrays_as_oip_converts_them() {
        let table = [
            (json!("[\"a\",\"b\"]"), json!(["a", "b"])),
            (json!("[]"), json!([])),
            (json!("[1,2.5,true,null]"), json!([1, 2.5, true, null])),
            (
                json!("[{\"reps\":12,\"sets\":\"[3]\"}]"),
                json!([{"reps": 12, "sets": "[3]"}]),
            ),
            (json!("[\"[1]\",[\"[2]\"]]"), json!(["[1]", ["[2]"]])),
            (json!("[[1,2],[3]]"), json!([[1, 2], [3]])),
            (json!("[1"), json!("[1")),
            (json!("[x]"), json!("[x]")),
            (json!("[draft] notes [v2]"), json!("[draft] notes [v2]")),
            (json!(" [1]"), json!(" [1]")),
            (json!("[1] "), json!("[1] ")),
            (json!("{\"a\":1}"), json!("{\"a\":1}")),
            (json!("[\"\\ud800\"]"), json!("[\"\\ud800\"]")),
            (json!(7), json!(7)),
            (json!(false), json!(false)),
            (json!(null), json!(null)),
            (
                json!({"a": {"b": {"c": "[1]"}}, "l": ["[2]", {"d": "[3]"}], "__proto__": "[4]"}),
                json!({"a": {"b": {"c": [1]}}, "l": [[2], {"d": [3]}]}),
            ),
            (json!("[{\"__proto__\":1}]"), json!([{"__proto__": 1}])),
        ];
        for (input, expected) in table {
            assert_eq!(arrays_from_strings(input.clone()), expected, "{input}");
        }
    }

    fn document(data: Value, oip: Value) -> Value {
        let did = Did::from_soul(&Soul::parse("647f79c2a338:post-1").unwrap());
        let at = Timestamp::parse("2026-11-23T08:00:00.000Z").unwrap();
        OipRecord::parse(Some(&data), Some(&oip))
            .unwrap()
            .to_document(&did, at)
    }

    #[test]
    fn documents_are_data_and_oip_with_the_did_and_storage() {
        let doc = document(
            json!({"basic": {"name": "t", "tagItems": "[\"a\"]"}}),
            oip(json!({"did": "did:gun:other:x", "storage": "arweave", "tags": "[\"b\"]"})),
        );
        assert_eq!(
            doc,
            json!({
                "data": {"basic": {"name": "t", "tagItems": ["a"]}},
                "oip": {
                    "ver": "0.8.0", "recordType": "post", "creator": creator(),
                    "did": "did:gun:647f79c2a338:post-1",
                    "didTx": "did:gun:647f79c2a338:post-1",
                    "storage": "gun",
                    "tags": "[\"b\"]",
                    "indexedAt": "2026-11-23T08:00:00.000Z",
                    "syncedAt": "2026-11-23T08:00:00.000Z",
                },
            })
        );
    }

    #[test]
    fn indexed_at_keeps_the_publishers_value() {
        let table = [
            (
                json!({"indexedAt": "2025-09-13T18:52:38.199Z"}),
                json!("2025-09-13T18:52:38.199Z"),
            ),
            (
                json!({"indexedAt": 1757789558199_u64}),
                json!(1757789558199_u64),
            ),
            (json!({"indexedAt": ""}), json!("")),
            (json!({}), json!("2026-11-23T08:00:00.000Z")),
        ];
        for (changes, expected) in table {
            let doc = document(json!({}), oip(changes.clone()));
            assert_eq!(doc["oip"]["indexedAt"], expected, "{changes}");
            assert_eq!(doc["oip"]["syncedAt"], "2026-11-23T08:00:00.000Z");
        }
        let mut with_null = oip(json!({}));
        with_null["indexedAt"] = Value::Null;
        let doc = document(json!({}), with_null);
        assert_eq!(doc["oip"]["indexedAt"], "2026-11-23T08:00:00.000Z");
    }

    #[test]
    fn a_flattened_creator_becomes_the_creator_object_only_when_both_keys_are_truthy() {
        let flat =
            json!({"creator": "Librarian7", "creator_publicKey": "pk2", "creator_didAddress": "y"});
        let both = document(json!({}), oip(flat));
        assert_eq!(
            both["oip"]["creator"],
            json!({"publicKey": "pk2", "didAddress": "y"})
        );
        assert!(both["oip"].get("creator_publicKey").is_none());
        assert!(both["oip"].get("creator_didAddress").is_none());

        let half = document(
            json!({}),
            oip(json!({"creator_publicKey": "pk2", "creator_didAddress": ""})),
        );
        assert_eq!(half["oip"]["creator"], creator());
        assert_eq!(half["oip"]["creator_publicKey"], "pk2");
        assert_eq!(half["oip"]["creator_didAddress"], "");
    }
}
