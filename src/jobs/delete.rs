//! `delete`: remove a deleted record from Elasticsearch (404 = already gone), then on every
//! configured relay that still holds it: save its record type in the job's payload, tombstone it
//! (never a root `null`) and remove its soul from its type index (DESIGN §3). Every step is
//! idempotent, so a retry after a partial run repeats harmlessly what was done and finishes the
//! rest.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{Map, Value};
use tracing::{debug, warn};
use url::Url;

use super::{JobContext, boxed, during, job_did, on_peer};
use crate::domain::Did;
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
            warn!(peer = %peer, error = %e, "relay cleanup failed");
            first_error.get_or_insert(during(on_peer(&peer), e));
        }
    }
    match first_error {
        Some(e) => Err(during(&what, e)),
        None => Ok(()),
    }
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
    let record = ctx.relay.read_record(peer, &soul).await?;
    let Some(record) = record else {
        debug!(peer = %peer, "not on this relay");
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
        debug!(peer = %peer, "tombstoned");
    }
    match payload.get(RECORD_TYPE_KEY).and_then(Value::as_str) {
        Some(record_type) => {
            ctx.relay
                .remove_from_type_index(peer, &ctx.registry_root, record_type, &soul)
                .await?;
            debug!(peer = %peer, record_type, "removed from its type index");
        }
        None if !record.deleted => {
            warn!(peer = %peer, "record has no oip.recordType; no type index to clean")
        }
        None => {}
    }
    Ok(())
}
