//! The pure part of a sync cycle: what one peer's deletion registry and type indexes, plus what
//! the ledger already knows, mean in jobs to enqueue. No I/O; table-tested.

use std::collections::HashSet;

use serde_json::json;
use url::Url;

use crate::domain::{Did, Soul};
use crate::ledger::{JobKind, NewJob};

/// Deletions run before discoveries when both are waiting (lower runs first).
pub const DELETE_PRIORITY: i64 = 0;
/// Discoveries wait behind deletions.
pub const DISCOVER_PRIORITY: i64 = 10;

/// One type index as read from a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexRead {
    pub record_type: String,
    pub souls: Vec<Soul>,
}

/// The discover jobs a cycle enqueues for one peer's type indexes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// One `discover` per indexed soul that is not deleted (enqueued with uniqueness "ever").
    pub discovers: Vec<NewJob>,
    /// Distinct souls listed by the indexes.
    pub records_seen: u64,
    /// Indexed souls left out because their DID is deleted.
    pub skipped_deleted: u64,
}

/// Delete jobs for the DIDs of a deletion registry, hinting the peer that listed them.
pub fn plan_deletes(peer: &Url, deleted: &[Did], max_attempts: u32) -> Vec<NewJob> {
    let mut seen = HashSet::new();
    deleted
        .iter()
        .filter(|did| seen.insert(did.as_str()))
        .map(|did| {
            NewJob::new(JobKind::Delete, did.as_str())
                .payload(json!({ "peer": peer.as_str() }))
                .priority(DELETE_PRIORITY)
                .max_attempts(max_attempts)
        })
        .collect()
}

/// Discover jobs for indexed souls whose DID is neither in this peer's registry (`deleted`) nor
/// known to the ledger as deleted (`known_deleted`: keys with a `delete` job). A soul listed by
/// two indexes gets one job, with the first index's type as a hint.
pub fn plan_discovers(
    peer: &Url,
    indexes: &[IndexRead],
    deleted: &[Did],
    known_deleted: &HashSet<String>,
    max_attempts: u32,
) -> Plan {
    let deleted: HashSet<&str> = deleted.iter().map(Did::as_str).collect();
    let mut seen = HashSet::new();
    let mut plan = Plan::default();
    for index in indexes {
        for soul in &index.souls {
            if !seen.insert(soul.as_str()) {
                continue;
            }
            plan.records_seen += 1;
            let did = Did::from_soul(soul);
            if deleted.contains(did.as_str()) || known_deleted.contains(did.as_str()) {
                plan.skipped_deleted += 1;
                continue;
            }
            plan.discovers.push(
                NewJob::new(JobKind::Discover, did.as_str())
                    .payload(json!({ "peer": peer.as_str(), "recordType": index.record_type }))
                    .priority(DISCOVER_PRIORITY)
                    .max_attempts(max_attempts),
            );
        }
    }
    plan
}

/// The DIDs of every soul the indexes list (to ask the ledger which are known deleted).
pub fn indexed_dids(indexes: &[IndexRead]) -> Vec<String> {
    let mut seen = HashSet::new();
    indexes
        .iter()
        .flat_map(|i| i.souls.iter())
        .filter(|s| seen.insert(s.as_str()))
        .map(|s| Did::from_soul(s).as_str().to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> Url {
        Url::parse("http://relay:8765/").unwrap()
    }

    fn souls(list: &[&str]) -> Vec<Soul> {
        list.iter().map(|s| Soul::parse(s).unwrap()).collect()
    }

    fn did(s: &str) -> Did {
        Did::parse(s).unwrap()
    }

    #[test]
    fn deletes_are_one_per_did_with_the_peer_hint() {
        let jobs = plan_deletes(
            &peer(),
            &[did("did:gun:a:1"), did("did:gun:a:2"), did("did:gun:a:1")],
            4,
        );
        let keys: Vec<_> = jobs.iter().map(|j| j.key.as_str()).collect();
        assert_eq!(keys, ["did:gun:a:1", "did:gun:a:2"]);
        assert!(jobs.iter().all(|j| j.kind == JobKind::Delete
            && j.max_attempts == 4
            && j.payload["peer"] == "http://relay:8765/"));
    }

    #[test]
    fn discovers_skip_deleted_and_known_deleted_dids_and_duplicates() {
        let indexes = vec![
            IndexRead {
                record_type: "post".into(),
                souls: souls(&["a:1", "a:2", "a:3"]),
            },
            IndexRead {
                record_type: "image".into(),
                souls: souls(&["a:3", "a:4", "a:5"]),
            },
        ];
        let table: Vec<(Vec<Did>, Vec<&str>, Vec<&str>)> = vec![
            (
                vec![],
                vec![],
                vec![
                    "did:gun:a:1",
                    "did:gun:a:2",
                    "did:gun:a:3",
                    "did:gun:a:4",
                    "did:gun:a:5",
                ],
            ),
            (
                vec![did("did:gun:a:2")],
                vec!["did:gun:a:5"],
                vec!["did:gun:a:1", "did:gun:a:3", "did:gun:a:4"],
            ),
        ];
        for (deleted, known, expected) in table {
            let known: HashSet<String> = known.into_iter().map(str::to_owned).collect();
            let plan = plan_discovers(&peer(), &indexes, &deleted, &known, 12);
            let keys: Vec<_> = plan.discovers.iter().map(|j| j.key.as_str()).collect();
            assert_eq!(keys, expected);
            assert_eq!(plan.records_seen, 5);
            assert_eq!(plan.skipped_deleted, 5 - expected.len() as u64);
        }
        let plan = plan_discovers(&peer(), &indexes, &[], &HashSet::new(), 12);
        let a3 = plan
            .discovers
            .iter()
            .find(|j| j.key == "did:gun:a:3")
            .unwrap();
        assert_eq!(a3.payload["recordType"], "post");
        assert_eq!(indexed_dids(&indexes).len(), 5);
    }
}
