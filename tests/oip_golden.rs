//! Golden test: gunsync indexes exactly the document OIP's own sync indexes, for every OIP record
//! type. Each `tests/fixtures/oip/<name>.json` holds a relay's `GET /get` answer for a record
//! stored the way OIP's publisher stores it; `<name>.expected.json` beside it is the body OIP's
//! sync code, run under node, sends to Elasticsearch (`null`: OIP rejects the record). How they
//! were made and how to regenerate them: `tests/fixtures/oip/README.md`.

use std::fs;
use std::path::{Path, PathBuf};

use gunsync::config::OIP_RECORD_TYPES;
use gunsync::domain::{Did, Soul};
use gunsync::jobs::OipRecord;
use gunsync::relay::{Node, RecordNode};
use gunsync::timestamp::Timestamp;
use serde_json::Value;

/// One fixture and the document OIP indexes for it.
struct Golden {
    name: String,
    soul: Soul,
    /// `oip` (OIP's gun-relay-server.js) or `gun` (a plain GUN relay).
    relay: String,
    /// The relay's `GET /get` answer.
    get: Value,
    /// OIP's Elasticsearch body; `null` when OIP's `isValidOIPRecord` rejects the record.
    expected: Value,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oip")
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every fixture, by name.
fn goldens() -> Vec<Golden> {
    let mut names: Vec<String> = fs::read_dir(fixtures_dir())
        .expect("tests/fixtures/oip")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|file| {
            let name = file.strip_suffix(".json")?;
            (!name.ends_with(".expected")).then(|| name.to_owned())
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let dir = fixtures_dir();
            let fixture = read_json(&dir.join(format!("{name}.json")));
            let expected = read_json(&dir.join(format!("{name}.expected.json")));
            let field = |key: &str| {
                fixture[key]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name}.json: no string {key:?}"))
                    .to_owned()
            };
            Golden {
                soul: Soul::parse(&field("soul")).unwrap(),
                relay: field("relay"),
                get: fixture["get"].clone(),
                expected,
                name,
            }
        })
        .collect()
}

/// What gunsync indexes for the fixture, or why it refuses: the `get` answer read as the relay
/// client reads a record node, then validated and converted as `discover` does.
fn gunsync_document(golden: &Golden, synced_at: Timestamp) -> Result<Value, String> {
    assert_eq!(
        golden.get["success"], true,
        "{}: not a success answer",
        golden.name
    );
    let node = Node::from_value(golden.soul.clone(), golden.get["data"].clone())?;
    let record = RecordNode::from_node(node);
    let did = Did::from_soul(&golden.soul);
    OipRecord::parse(record.data.as_ref(), record.oip.as_ref())
        .map(|valid| valid.to_document(&did, synced_at))
        .map_err(|e| e.to_string())
}

/// The JSON path of the first difference between `got` and `expected`, with both sides.
fn first_difference(path: &str, got: &Value, expected: &Value) -> Option<String> {
    match (got, expected) {
        (Value::Object(got), Value::Object(expected)) => {
            let mut keys: Vec<&String> = got.keys().chain(expected.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|key| {
                let at = format!("{path}.{key}");
                match (got.get(key), expected.get(key)) {
                    (Some(g), Some(e)) => first_difference(&at, g, e),
                    (Some(g), None) => Some(format!("{at}: {g} where OIP has no such key")),
                    (None, Some(e)) => Some(format!("{at}: missing, OIP has {e}")),
                    (None, None) => unreachable!("a key of either side"),
                }
            })
        }
        (Value::Array(got), Value::Array(expected)) if got.len() == expected.len() => got
            .iter()
            .zip(expected)
            .enumerate()
            .find_map(|(i, (g, e))| first_difference(&format!("{path}[{i}]"), g, e)),
        _ => (got != expected).then(|| format!("{path}: {got} where OIP has {expected}")),
    }
}

/// Checks one fixture; `Err` says what differs.
fn check(golden: &Golden) -> Result<(), String> {
    let synced_at = Timestamp::parse("2026-11-23T08:00:00.000Z").unwrap();
    let synced = Value::from(synced_at.to_string());
    let got = gunsync_document(golden, synced_at);
    let (mut got, expected) = match (got, &golden.expected) {
        (Err(_), Value::Null) => return Ok(()),
        (Ok(doc), Value::Null) => return Err(format!("indexed, OIP rejects it: {doc}")),
        (Err(reason), _) => return Err(format!("refused ({reason}), OIP indexes it")),
        (Ok(doc), expected) => (doc, expected),
    };
    let oip = got["oip"].as_object_mut().ok_or("document without oip")?;
    // gunsync's own additions: the sync time, and indexedAt where the publisher set none.
    if oip.remove("syncedAt") != Some(synced.clone()) {
        return Err("oip.syncedAt is not the sync time".into());
    }
    match expected["oip"].get("indexedAt") {
        Some(publisher) if !publisher.is_null() => {}
        absent => {
            if oip.get("indexedAt") != Some(&synced) {
                return Err(format!(
                    "oip.indexedAt is {:?}, not the sync time",
                    oip.get("indexedAt")
                ));
            }
            match absent {
                Some(null) => oip.insert("indexedAt".into(), null.clone()),
                None => oip.remove("indexedAt"),
            };
        }
    }
    match first_difference("$", &got, expected) {
        None => Ok(()),
        Some(difference) => Err(difference),
    }
}

/// Checks every fixture from `relay`; panics listing each one that differs.
fn check_all_from(relay: &str) -> usize {
    let goldens: Vec<Golden> = goldens().into_iter().filter(|g| g.relay == relay).collect();
    let failures: Vec<String> = goldens
        .iter()
        .filter_map(|g| check(g).err().map(|e| format!("{}: {e}", g.name)))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} fixtures differ from OIP:\n{}",
        failures.len(),
        goldens.len(),
        failures.join("\n")
    );
    println!("{} fixtures from {relay} relays match OIP", goldens.len());
    goldens.len()
}

#[test]
fn every_oip_record_type_has_a_fixture_of_its_type() {
    let goldens = goldens();
    for record_type in OIP_RECORD_TYPES {
        let golden = goldens
            .iter()
            .find(|g| g.name == record_type)
            .unwrap_or_else(|| panic!("no fixture {record_type}.json"));
        assert_eq!(golden.get["data"]["oip"]["recordType"], record_type);
        assert!(
            golden.expected.is_object(),
            "OIP indexes {record_type}.json"
        );
    }
}

#[test]
fn gunsync_indexes_what_oip_indexes_from_oips_relay() {
    assert!(check_all_from("oip") > OIP_RECORD_TYPES.len());
}

#[test]
fn gunsync_indexes_what_oip_indexes_from_a_plain_gun_relay() {
    assert!(check_all_from("gun") > 0);
}

#[test]
fn the_difference_names_the_path_of_the_first_mismatch() {
    let expected = serde_json::json!({"data": {"a": [1, {"b": "x"}]}, "oip": {"did": "d"}});
    let table = [
        (
            serde_json::json!({"data": {"a": [1, {"b": "x"}]}, "oip": {"did": "d"}}),
            None,
        ),
        (
            serde_json::json!({"data": {"a": [1, {"b": "y"}]}, "oip": {"did": "d"}}),
            Some("$.data.a[1].b: \"y\" where OIP has \"x\""),
        ),
        (
            serde_json::json!({"data": {"a": [1]}, "oip": {"did": "d"}}),
            Some("$.data.a: [1] where OIP has [1,{\"b\":\"x\"}]"),
        ),
        (
            serde_json::json!({"data": {"a": [1, {"b": "x"}]}, "oip": {}}),
            Some("$.oip.did: missing, OIP has \"d\""),
        ),
        (
            serde_json::json!({"data": {"a": [1, {"b": "x"}]}, "oip": {"did": "d", "e": 1}}),
            Some("$.oip.e: 1 where OIP has no such key"),
        ),
    ];
    for (got, difference) in table {
        assert_eq!(
            first_difference("$", &got, &expected).as_deref(),
            difference,
            "{got}"
        );
    }
}
