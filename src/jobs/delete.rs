//! `delete`: check that the deletion is the record's publisher's (unless
//! `GUNSYNC_VERIFY_DELETIONS=off`), remove the record from Elasticsearch (404 = already gone),
//! then on every configured relay that still holds it: save its record type in the job's
//! payload, tombstone it (never a root `null`) and remove its soul from its type index
//! (DESIGN §3). Every step is idempotent, so a retry after a partial run repeats harmlessly what
//! was done and finishes the rest.
//!
//! The check is a consistency check, not a security boundary: without signatures a relay can
//! forge `deletedBy` as easily as the entry itself. It stops the easy mistake and the lazy
//! attack — a deletion of someone else's record — and leaves a record of each refusal.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{Map, Value};
use tracing::{debug, warn};
use url::Url;

use super::{JobContext, boxed, during, job_did, on_peer};
use crate::domain::{Did, publisher_hash, redacted};
use crate::ledger::REFUSED_KEY;
use crate::relay::DeletionEntry;
use crate::search::DeleteOutcome;
use crate::worker::{JobError, JobHandler, JobRun};

/// Payload key under which the record type is saved before the record is tombstoned.
pub const RECORD_TYPE_KEY: &str = "recordType";

/// Runs `delete` jobs.
pub struct DeleteHandler {
    ctx: Arc<JobContext>,
}

impl DeleteHandler {
    pub fn new(ctx: Arc<JobContext>) -> Self {
        DeleteHandler { ctx }
    }
}

impl JobHandler for DeleteHandler {
    fn run<'a>(&'a self, run: &'a JobRun) -> BoxFuture<'a, Result<(), JobError>> {
        boxed(delete(&self.ctx, run))
    }
}

async fn delete(ctx: &JobContext, run: &JobRun) -> Result<(), JobError> {
    let did = job_did(run)?;
    let what = format!("delete {did}");
    if ctx.verify_deletions {
        verify(ctx, run, &did).await.map_err(|e| during(&what, e))?;
    }
    // ES 8 rejects unknown query params (DESIGN §4): the client never sends ignore=404; a 404
    // comes back as NotFound, which is success.
    match ctx
        .search
        .delete(did.as_str())
        .await
        .map_err(|e| during(&what, e))?
    {
        DeleteOutcome::Deleted => debug!("removed from elasticsearch"),
        DeleteOutcome::NotFound => debug!("not in elasticsearch (already deleted)"),
    }
    let mut payload = run.job.payload.as_object().cloned().unwrap_or_default();
    let mut first_error = None;
    // Every peer is visited even if one fails, so one dead relay does not hold back the others;
    // the job is retried (all steps idempotent) if any failed.
    for peer in ctx.peers_for(&run.job.payload) {
        if let Err(e) = tombstone_on(ctx, run, &did, &peer, &mut payload).await {
            warn!(peer = %redacted(&peer), error = %e, "relay cleanup failed");
            first_error.get_or_insert(during(on_peer(&peer), e));
        }
    }
    match first_error {
        Some(e) => Err(during(&what, e)),
        None => Ok(()),
    }
}

/// The deletion must come from the record's publisher: the `deletedBy` of its registry entry on
/// a trusted peer must be a key whose hash is the soul's prefix (DESIGN §3). A refusal is
/// permanent and saved in the payload, so the ledger does not count it as a deletion and the
/// record stays discoverable.
async fn verify(ctx: &JobContext, run: &JobRun, did: &Did) -> Result<(), JobError> {
    let mut first_error = None;
    for peer in ctx.deletion_peers_for(&run.job.payload) {
        match ctx.relay.read_deletion_entry(&peer, did).await {
            Ok(Some(entry)) => {
                return match check(&entry, did) {
                    Ok(()) => Ok(()),
                    Err(reason) => refuse(run, &reason).await,
                };
            }
            Ok(None) => debug!(peer = %redacted(&peer), "no deletion entry on this peer"),
            Err(e) => {
                first_error.get_or_insert(during(on_peer(&peer), e));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    // Listed, but its entry not readable: GUN is eventually consistent, so try again; an entry
    // that never appears leaves the deletion unverified, and an unverified deletion deletes
    // nothing.
    let reason = format!("its entry oip:deleted:records:{did} is on no trusted peer");
    if run.job.attempt >= run.job.max_attempts {
        return refuse(run, &reason).await;
    }
    Err(JobError::transient(format!(
        "deletion not verifiable yet: {reason}"
    )))
}

/// `Err` says why `entry` does not prove the publisher deleted `did`.
fn check(entry: &DeletionEntry, did: &Did) -> Result<(), String> {
    let Some(deleted_by) = entry.deleted_by.as_deref().filter(|k| !k.is_empty()) else {
        return Err("its deletion entry names no deletedBy".into());
    };
    let soul = did.soul();
    let publisher = soul.publisher_hash();
    let signer = publisher_hash(deleted_by);
    if signer == publisher {
        Ok(())
    } else {
        Err(format!(
            "deletedBy is a key whose hash is {signer}, not the record's publisher ({publisher})"
        ))
    }
}

/// Refuses the deletion: the reason goes into the payload, so the ledger no longer counts the
/// DID as deleted (a discover that found this deletion in progress indexes it on its next try).
async fn refuse(run: &JobRun, reason: &str) -> Result<(), JobError> {
    let mut payload = run.job.payload.as_object().cloned().unwrap_or_default();
    payload.insert(REFUSED_KEY.into(), Value::from(reason));
    run.save_payload(&Value::Object(payload)).await?;
    metrics::counter!("gunsync_deletions_refused_total").increment(1);
    warn!(reason, "deletion refused");
    Err(JobError::permanent(format!("deletion refused: {reason}")))
}

/// One peer: tombstone the record if it is live there, and make sure its type index no longer
/// lists it.
async fn tombstone_on(
    ctx: &JobContext,
    run: &JobRun,
    did: &Did,
    peer: &Url,
    payload: &mut Map<String, Value>,
) -> Result<(), JobError> {
    let soul = did.soul();
    let shown = redacted(peer);
    let record = ctx.relay.read_record(peer, &soul).await?;
    let Some(record) = record else {
        debug!(peer = %shown, "not on this relay");
        return Ok(());
    };
    if !record.deleted {
        if let Some(record_type) = record.record_type() {
            // Saved before the tombstone: once the record is nulled, nothing else says which
            // index lists it, and a retry after a partial run still has to clean that index.
            if payload.get(RECORD_TYPE_KEY).and_then(Value::as_str) != Some(record_type) {
                payload.insert(RECORD_TYPE_KEY.into(), Value::from(record_type));
                run.save_payload(&Value::Object(payload.clone())).await?;
            }
        }
        ctx.relay
            .tombstone_record(peer, &soul, &record.keys)
            .await?;
        debug!(peer = %shown, "tombstoned");
    }
    match payload.get(RECORD_TYPE_KEY).and_then(Value::as_str) {
        Some(record_type) => {
            ctx.relay
                .remove_from_type_index(peer, &ctx.registry_root, record_type, &soul)
                .await?;
            // So that OIP's relay answering 404 for an index we emptied is not taken for one
            // it gave up on.
            if let Err(e) = ctx.ledger.record_index_removal(&shown, record_type).await {
                debug!(error = %e, "noting the index removal failed");
            }
            debug!(peer = %shown, record_type, "removed from its type index");
        }
        None if !record.deleted => {
            warn!(peer = %shown, "record has no oip.recordType; no type index to clean")
        }
        None => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(deleted_by: Option<&str>) -> DeletionEntry {
        DeletionEntry {
            deleted_by: deleted_by.map(str::to_owned),
            deleted_at: Some(1),
            did: None,
        }
    }

    #[test]
    fn only_the_publishers_key_may_delete_its_record() {
        let key = "02a1b2c3-publisher-public-key";
        let did = Did::parse(&format!("did:gun:{}:post-1", publisher_hash(key))).unwrap();
        assert_eq!(check(&entry(Some(key)), &did), Ok(()));
        let stranger = check(&entry(Some("someone-else")), &did).unwrap_err();
        assert!(
            stranger.contains("not the record's publisher"),
            "{stranger}"
        );
        for missing in [None, Some("")] {
            let err = check(&entry(missing), &did).unwrap_err();
            assert!(err.contains("no deletedBy"), "{err}");
        }
    }
}
