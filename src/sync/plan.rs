//! The pure part of a sync cycle: what one batch of a peer's deletion registry or type index,
//! plus what the ledger already knows, means in jobs to enqueue. No I/O; table-tested.

use std::collections::HashSet;

use serde_json::json;

use crate::domain::Did;
use crate::ledger::{JobKind, NewJob};
use crate::relay::IndexEntry;

/// Deletions run before discoveries when both are waiting (lower runs first).
pub const DELETE_PRIORITY: i64 = 0;
/// Discoveries wait behind deletions.
pub const DISCOVER_PRIORITY: i64 = 10;

/// The discover jobs a cycle enqueues for one batch of a type index.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// One `discover` per listed record that is not deleted, carrying the entry's `timestamp`
    /// as its revision (enqueued with `Uniqueness::Revision`, so only new or changed records
    /// become jobs).
    pub discovers: Vec<NewJob>,
    /// Listed records left out because their DID is deleted.
    pub skipped_deleted: u64,
}

/// Delete jobs for the DIDs of a deletion registry batch, hinting the peer (`peer`: its URL
/// without credentials) whose registry listed them.
pub fn plan_deletes(peer: &str, deleted: &[Did], max_attempts: u32) -> Vec<NewJob> {
    let mut seen = HashSet::new();
    deleted
        .iter()
        .filter(|did| seen.insert(did.as_str()))
        .map(|did| {
            NewJob::new(JobKind::Delete, did.as_str())
                .payload(json!({ "peer": peer }))
                .priority(DELETE_PRIORITY)
                .max_attempts(max_attempts)
        })
        .collect()
}

/// Discover jobs for the records `entries` of `record_type`'s index list, except those whose
/// DID the ledger knows deleted (`deleted`: keys with a delete job that was not refused).
pub fn plan_discovers(
    peer: &str,
    record_type: &str,
    entries: &[IndexEntry],
    deleted: &HashSet<String>,
    max_attempts: u32,
) -> Plan {
    let mut plan = Plan::default();
    for entry in entries {
        let did = Did::from_soul(&entry.soul);
        if deleted.contains(did.as_str()) {
            plan.skipped_deleted += 1;
            continue;
        }
        plan.discovers.push(
            NewJob::new(JobKind::Discover, did.as_str())
                .payload(json!({ "peer": peer, "recordType": record_type }))
                .priority(DISCOVER_PRIORITY)
                .max_attempts(max_attempts)
                .revision(entry.timestamp),
        );
    }
    plan
}

/// The DIDs of `entries` (to ask the ledger which are deleted).
pub fn dids_of(entries: &[IndexEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| Did::from_soul(&e.soul).as_str().to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Soul;

    const PEER: &str = "http://relay:8765/";

    fn entry(soul: &str, timestamp: Option<i64>) -> IndexEntry {
        IndexEntry {
            soul: Soul::parse(soul).unwrap(),
            timestamp,
        }
    }

    fn did(s: &str) -> Did {
        Did::parse(s).unwrap()
    }

    #[test]
    fn deletes_are_one_per_did_with_the_peer_hint() {
        let jobs = plan_deletes(
            PEER,
            &[did("did:gun:a:1"), did("did:gun:a:2"), did("did:gun:a:1")],
            4,
        );
        let keys: Vec<_> = jobs.iter().map(|j| j.key.as_str()).collect();
        assert_eq!(keys, ["did:gun:a:1", "did:gun:a:2"]);
        assert!(jobs.iter().all(|j| j.kind == JobKind::Delete
            && j.max_attempts == 4
            && j.priority == DELETE_PRIORITY
            && j.payload["peer"] == PEER));
    }

    #[test]
    fn discovers_skip_deleted_dids_and_carry_the_entry_timestamp() {
        let entries = [
            entry("a:1", Some(100)),
            entry("a:2", None),
            entry("a:3", Some(300)),
        ];
        // (DIDs the ledger knows deleted, the jobs planned: key and revision)
        type Row<'a> = (Vec<&'a str>, Vec<(&'a str, Option<i64>)>);
        let table: Vec<Row> = vec![
            (
                vec![],
                vec![
                    ("did:gun:a:1", Some(100)),
                    ("did:gun:a:2", None),
                    ("did:gun:a:3", Some(300)),
                ],
            ),
            (
                vec!["did:gun:a:1", "did:gun:a:9"],
                vec![("did:gun:a:2", None), ("did:gun:a:3", Some(300))],
            ),
        ];
        for (deleted, expected) in table {
            let deleted: HashSet<String> = deleted.into_iter().map(str::to_owned).collect();
            let plan = plan_discovers(PEER, "post", &entries, &deleted, 12);
            let got: Vec<_> = plan
                .discovers
                .iter()
                .map(|j| (j.key.as_str(), j.revision))
                .collect();
            assert_eq!(got, expected);
            assert_eq!(plan.skipped_deleted, 3 - expected.len() as u64);
            assert!(
                plan.discovers
                    .iter()
                    .all(|j| j.payload["recordType"] == "post"
                        && j.payload["peer"] == PEER
                        && j.priority == DISCOVER_PRIORITY)
            );
        }
        assert_eq!(dids_of(&entries)[2], "did:gun:a:3");
    }
}
