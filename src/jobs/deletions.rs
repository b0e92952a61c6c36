//! Which DIDs a relay's deletion registry lists, as `discover` asks it for every record: one
//! snapshot of `oip:deleted:records:index` per peer, re-read at most every [`SNAPSHOT_TTL`] by
//! one caller while the others wait. Asking each record's own entry
//! `oip:deleted:records:<did>` instead would cost a 404 per live record, which a real relay
//! answers only after ~3 s (DESIGN §3).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::debug;
use url::Url;

use crate::domain::Did;
use crate::relay::RelayClient;

/// How old a registry snapshot may be before it is read again.
pub const SNAPSHOT_TTL: Duration = Duration::from_secs(5);
/// After a failed read, how long to go on without a snapshot before trying again (so a relay
/// that times out is not waited for on every record).
pub const FAILED_SNAPSHOT_TTL: Duration = Duration::from_secs(60);

/// Per-peer deletion registry snapshots, shared by all `discover` jobs of a process.
#[derive(Debug, Default)]
pub struct DeletionSnapshots {
    peers: Mutex<HashMap<Url, Arc<tokio::sync::Mutex<Option<Snapshot>>>>>,
}

#[derive(Debug)]
struct Snapshot {
    read_at: Instant,
    /// `None`: the read failed; nothing is known to be deleted until the next read.
    dids: Option<HashSet<String>>,
}

impl DeletionSnapshots {
    /// Whether `peer`'s registry lists `did`. A registry that cannot be read lists nothing: the
    /// ledger's delete jobs are the main guard, and a broken relay must not stop discovery.
    pub async fn lists(&self, relay: &RelayClient, peer: &Url, did: &Did) -> bool {
        let slot = self
            .peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(peer.clone())
            .or_default()
            .clone();
        let mut snapshot = slot.lock().await;
        let fresh = snapshot.as_ref().is_some_and(|s| {
            let ttl = if s.dids.is_some() {
                SNAPSHOT_TTL
            } else {
                FAILED_SNAPSHOT_TTL
            };
            s.read_at.elapsed() < ttl
        });
        if !fresh {
            let dids = match relay.read_deletion_registry(peer).await {
                Ok(registry) => Some(
                    registry
                        .dids
                        .iter()
                        .map(|d| d.as_str().to_owned())
                        .collect(),
                ),
                Err(e) => {
                    debug!(peer = %peer, error = %e, "deletion registry snapshot failed");
                    None
                }
            };
            *snapshot = Some(Snapshot {
                read_at: Instant::now(),
                dids,
            });
        }
        snapshot
            .as_ref()
            .and_then(|s| s.dids.as_ref())
            .is_some_and(|dids| dids.contains(did.as_str()))
    }
}
