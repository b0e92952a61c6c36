//! The job handlers (`discover`, `delete`) and what they share: [`JobContext`] (one relay client,
//! one search client, the configured peers) and the mapping of client errors to [`JobError`]
//! (transient or permanent is decided by the clients, once). Handlers never touch SQL except
//! through the ledger's read methods.

mod delete;
mod discover;
mod document;

use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;
use url::Url;

pub use delete::DeleteHandler;
pub use discover::DiscoverHandler;
pub use document::{Invalid, OipRecord};

use crate::config::Settings;
use crate::domain::{Did, redacted};
use crate::ledger::{JobKind, Ledger};
use crate::relay::{RelayClient, RelayError};
use crate::search::{SearchClient, SearchError};
use crate::worker::{JobError, JobRun, Registry};

/// The name under which Elasticsearch failures open a circuit (`/healthz`, `/metrics`, `stats`).
pub const ELASTICSEARCH: &str = "elasticsearch";

/// What handlers share: built once per process, cloned by `Arc`.
#[derive(Clone, Debug)]
pub struct JobContext {
    pub ledger: Ledger,
    pub relay: RelayClient,
    pub search: SearchClient,
    /// Every configured relay (`GUN_PEERS`).
    pub peers: Vec<Url>,
    /// `GUN_REGISTRY_ROOT`.
    pub registry_root: String,
    /// `GUN_SYNC_PRIVATE_RECORDS`: index encrypted records too.
    pub private_records: bool,
    /// `GUNSYNC_DELETION_PEERS`: the relays whose deletion entries are believed (empty = all).
    pub deletion_peers: Vec<Url>,
    /// `GUNSYNC_VERIFY_DELETIONS`: refuse a deletion its record's publisher did not make.
    pub verify_deletions: bool,
}

impl JobContext {
    pub fn new(
        settings: &Settings,
        ledger: Ledger,
        relay: RelayClient,
        search: SearchClient,
    ) -> Self {
        JobContext {
            ledger,
            relay,
            search,
            peers: settings.peers.clone(),
            registry_root: settings.registry_root.clone(),
            private_records: settings.private_records,
            deletion_peers: settings.deletion_peers.clone(),
            verify_deletions: settings.verify_deletions,
        }
    }

    /// The configured peers, the payload's `peer` hint first when it is one of them. A hint that
    /// names no configured peer is ignored: jobs only ever talk to configured relays.
    pub fn peers_for(&self, payload: &Value) -> Vec<Url> {
        order_peers(&self.peers, payload)
    }

    /// The peers whose deletion registries are trusted, the payload's hint first.
    pub fn deletion_peers_for(&self, payload: &Value) -> Vec<Url> {
        let trusted: Vec<Url> = if self.deletion_peers.is_empty() {
            self.peers.clone()
        } else {
            self.deletion_peers.clone()
        };
        order_peers(&trusted, payload)
    }
}

fn order_peers(peers: &[Url], payload: &Value) -> Vec<Url> {
    let hint = payload.get("peer").and_then(Value::as_str);
    let mut peers = peers.to_vec();
    if let Some(pos) = hint.and_then(|h| peers.iter().position(|p| same_peer(p, h))) {
        let hinted = peers.remove(pos);
        peers.insert(0, hinted);
    }
    peers
}

/// Hints are stored without credentials (see [`redacted`]), so compare peers that way.
fn same_peer(peer: &Url, hint: &str) -> bool {
    Url::parse(hint).is_ok_and(|h| redacted(&h) == redacted(peer))
}

/// The worker registry with both handlers.
pub fn registry(ctx: Arc<JobContext>) -> Registry {
    Registry::new()
        .register(JobKind::Discover, DiscoverHandler::new(ctx.clone()))
        .register(JobKind::Delete, DeleteHandler::new(ctx))
}

/// The job's key as a DID; a key that is not one can never succeed.
fn job_did(run: &JobRun) -> Result<Did, JobError> {
    Did::parse(&run.job.key).map_err(|e| JobError::permanent(format!("job key: {e}")))
}

impl From<RelayError> for JobError {
    fn from(err: RelayError) -> Self {
        classified(
            err.to_string(),
            err.is_transient(),
            err.retry_after(),
            err.http_status(),
        )
    }
}

impl From<SearchError> for JobError {
    fn from(err: SearchError) -> Self {
        // A wrong password or a cluster refusing connections fails every job alike: pause the
        // work (the pool's circuit) instead of burning this job's attempts.
        if err.is_systemic() {
            return JobError::Systemic {
                system: ELASTICSEARCH,
                reason: err.to_string(),
                http_status: err.http_status(),
            };
        }
        classified(
            err.to_string(),
            err.is_transient(),
            err.retry_after(),
            err.http_status(),
        )
    }
}

/// Each client classifies its own failures once; this only carries the verdict over.
fn classified(
    reason: String,
    transient: bool,
    retry_after: Option<Duration>,
    http_status: Option<u16>,
) -> JobError {
    if transient {
        JobError::Transient {
            reason,
            retry_after,
            http_status,
        }
    } else {
        JobError::Permanent {
            reason,
            http_status,
        }
    }
}

/// `err` as a [`JobError`] whose reason starts with `what` (the operation and the DID), so
/// `last_error` reads `"delete did:gun:…: delete did:gun:…: elasticsearch answered 500: …"`
/// only where the client did not already say it.
fn during(what: impl Display, err: impl Into<JobError>) -> JobError {
    let what = what.to_string();
    err.into().map_reason(|reason| {
        if reason.contains(&what) {
            reason
        } else {
            format!("{what}: {reason}")
        }
    })
}

/// How an error names the relay it came from: `peer http://relay:8765` (with several peers,
/// the relay's own message says what failed but not where).
fn on_peer(peer: &Url) -> String {
    format!("peer {}", redacted(peer).trim_end_matches('/'))
}

/// A handler as the worker wants it: a boxed future per run.
fn boxed<'a, F>(future: F) -> BoxFuture<'a, Result<(), JobError>>
where
    F: std::future::Future<Output = Result<(), JobError>> + Send + 'a,
{
    Box::pin(future)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::Operation;

    #[test]
    fn relay_errors_keep_their_class_status_and_retry_after() {
        let status = |status, retry_after| RelayError::Status {
            op: Operation::Get,
            target: "a:1".into(),
            status,
            message: "boom".into(),
            retry_after,
        };
        let table = [
            (status(500, None), true, Some(500), None),
            (
                status(503, Some(std::time::Duration::from_secs(7))),
                true,
                Some(503),
                Some(std::time::Duration::from_secs(7)),
            ),
            (status(400, None), false, Some(400), None),
        ];
        for (err, transient, http, retry) in table {
            let job = JobError::from(err);
            assert_eq!(matches!(job, JobError::Transient { .. }), transient);
            assert_eq!(job.http_status(), http);
            if let JobError::Transient { retry_after, .. } = job {
                assert_eq!(retry_after, retry);
            }
        }
    }

    #[test]
    fn during_prefixes_the_operation_once() {
        let err = during(
            "delete did:gun:a:1",
            JobError::transient("put a:1: relay answered 500"),
        );
        assert_eq!(
            err.to_string(),
            "delete did:gun:a:1: put a:1: relay answered 500"
        );
        let err = during(
            "delete did:gun:a:1",
            JobError::transient("delete did:gun:a:1: es 500"),
        );
        assert_eq!(err.to_string(), "delete did:gun:a:1: es 500");
    }

    #[test]
    fn errors_from_a_peer_name_it_after_the_operation() {
        let peer = Url::parse("http://relay-b:8765/").unwrap();
        let err = during(
            "delete did:gun:a:1",
            during(
                on_peer(&peer),
                JobError::transient("get a:1: relay answered 500"),
            ),
        );
        assert_eq!(
            err.to_string(),
            "delete did:gun:a:1: peer http://relay-b:8765: get a:1: relay answered 500"
        );
    }

    #[test]
    fn the_payload_peer_hint_goes_first_only_when_configured() {
        let peers: Vec<Url> = ["http://a:1/", "http://b:2/"]
            .iter()
            .map(|p| Url::parse(p).unwrap())
            .collect();
        let order = |hint: Value| {
            order_peers(&peers, &hint)
                .iter()
                .map(|u| u.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            order(serde_json::json!({"peer": "http://b:2"})),
            ["http://b:2/", "http://a:1/"]
        );
        assert_eq!(
            order(serde_json::json!({"peer": "http://evil:3"})),
            ["http://a:1/", "http://b:2/"]
        );
    }
}
