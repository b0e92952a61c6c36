//! `discover`: fetch a record from the relays (following links), and index it in Elasticsearch as
//! `{data, oip}` under its DID — unless it was deleted, is a tombstone, is private (and private
//! records are not synced), or is gone. Idempotent: indexing replaces the document.

use std::sync::Arc;

use futures::future::BoxFuture;
use tracing::debug;
use url::Url;

use super::document::OipRecord;
use super::{JobContext, boxed, during, job_did, on_peer};
use crate::domain::Did;
use crate::relay::RecordNode;
use crate::search::Refresh;
use crate::timestamp::Timestamp;
use crate::worker::{JobError, JobHandler, JobRun};

/// Runs `discover` jobs.
pub struct DiscoverHandler {
    ctx: Arc<JobContext>,
}

impl DiscoverHandler {
    pub fn new(ctx: Arc<JobContext>) -> Self {
        DiscoverHandler { ctx }
    }
}

impl JobHandler for DiscoverHandler {
    fn run<'a>(&'a self, run: &'a JobRun) -> BoxFuture<'a, Result<(), JobError>> {
        boxed(discover(&self.ctx, run))
    }
}

async fn discover(ctx: &JobContext, run: &JobRun) -> Result<(), JobError> {
    let did = job_did(run)?;
    let what = format!("discover {did}");
    // A DID with a delete job was deleted by its publisher: never (re)index it.
    let has_delete = ctx
        .ledger
        .is_deleted(did.as_str())
        .await
        .map_err(|e| JobError::transient(format!("{what}: ledger: {e}")))?;
    if has_delete {
        debug!("deleted (a delete job exists), not indexed");
        return Ok(());
    }
    let peers = ctx.peers_for(&run.job.payload);
    let Some((peer, record)) = read_from_peers(ctx, &did, &peers)
        .await
        .map_err(|e| during(&what, e))?
    else {
        debug!("absent on every peer, nothing to index");
        return Ok(());
    };
    // The cycle enqueued deletes before discovers, but a deletion may have been registered
    // since: ask the registry of the relay the record came from.
    if ctx.deletions.lists(&ctx.relay, &peer, &did).await {
        debug!(peer = %peer, "in the deletion registry, not indexed");
        return Ok(());
    }
    if record.deleted {
        debug!("tombstoned, nothing to index");
        return Ok(());
    }
    if record.encrypted && !ctx.private_records {
        debug!("private record, skipped (GUN_SYNC_PRIVATE_RECORDS=false)");
        return Ok(());
    }
    let document = OipRecord::parse(record.data.as_ref(), record.oip.as_ref())
        .map_err(|e| JobError::permanent(format!("{what}: invalid record: {e}")))?
        .to_document(&did, Timestamp::now());
    ctx.search
        .index(did.as_str(), &document, Refresh::No)
        .await
        .map_err(|e| during(&what, e))?;
    debug!(record_type = record.record_type().unwrap_or(""), "indexed");
    Ok(())
}

/// The record, and the peer it came from, from the first peer that holds a live copy. A
/// tombstone on any peer asked wins over absence; an error (naming its peer) is returned only
/// when no peer answered with the record.
async fn read_from_peers(
    ctx: &JobContext,
    did: &Did,
    peers: &[Url],
) -> Result<Option<(Url, RecordNode)>, JobError> {
    let soul = did.soul();
    let mut tombstone = None;
    let mut first_error = None;
    for peer in peers {
        match ctx.relay.read_record(peer, &soul).await {
            Ok(Some(record)) if !record.deleted => return Ok(Some((peer.clone(), record))),
            Ok(Some(record)) => tombstone = Some((peer.clone(), record)),
            Ok(None) => {}
            Err(e) => {
                debug!(peer = %peer, error = %e, "reading the record failed");
                first_error.get_or_insert(during(on_peer(peer), e));
            }
        }
    }
    match (tombstone, first_error) {
        (Some(record), _) => Ok(Some(record)),
        (None, Some(e)) => Err(e),
        (None, None) => Ok(None),
    }
}
