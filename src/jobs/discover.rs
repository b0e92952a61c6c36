//! `discover`: fetch a record from the relays (following links), and index it in Elasticsearch as
//! `{data, oip}` under its DID — unless it was deleted, is a tombstone, is private (and private
//! records are not synced), or is gone. Idempotent: indexing replaces the document.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{Map, Value, json};
use tracing::debug;
use url::Url;

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

/// Why a record cannot be indexed (a permanent failure).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

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
    validate(&record).map_err(|e| JobError::permanent(format!("{what}: invalid record: {e}")))?;
    let document = to_document(&record, Timestamp::now());
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

/// Checks the OIP v0.8 fields an indexed record must have: `data`, `oip.ver` starting with
/// `0.8`, `oip.recordType` and `oip.creator`.
///
/// # Errors
/// The first missing or malformed field.
pub fn validate(record: &RecordNode) -> Result<(), Invalid> {
    let Some(oip) = record.oip.as_ref().and_then(Value::as_object) else {
        return Err(Invalid("no oip metadata".into()));
    };
    match oip.get("ver") {
        Some(Value::String(ver)) if ver.starts_with("0.8") => {}
        Some(Value::String(ver)) => {
            return Err(Invalid(format!("oip.ver {ver:?} is not 0.8.x")));
        }
        _ => return Err(Invalid("oip.ver is missing".into())),
    }
    match oip.get("recordType") {
        Some(Value::String(t)) if !t.trim().is_empty() => {}
        _ => return Err(Invalid("oip.recordType is missing".into())),
    }
    let creator_present = match oip.get("creator") {
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(Value::Object(m)) => !m.is_empty(),
        Some(Value::Null) | None => false,
        Some(_) => true,
    };
    if !creator_present {
        return Err(Invalid("oip.creator is missing".into()));
    }
    if record.data.is_none() {
        return Err(Invalid("data is missing".into()));
    }
    Ok(())
}

/// The Elasticsearch document of a record (DESIGN §4): `{data, oip}` with `oip.did` and
/// `oip.didTx` set to the DID, `oip.storage = "gun"` and `oip.indexedAt`.
pub fn to_document(record: &RecordNode, indexed_at: Timestamp) -> Value {
    let did = record.did();
    let mut oip: Map<String, Value> = record
        .oip
        .as_ref()
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    oip.insert("did".into(), Value::from(did.as_str()));
    oip.insert("didTx".into(), Value::from(did.as_str()));
    oip.insert("storage".into(), Value::from("gun"));
    oip.insert("indexedAt".into(), Value::from(indexed_at.to_string()));
    json!({
        "data": record.data.clone().unwrap_or(Value::Object(Map::new())),
        "oip": oip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Soul;
    use crate::relay::Node;

    fn record(value: Value) -> RecordNode {
        let soul = Soul::parse("647f79c2a338:post-1").unwrap();
        RecordNode::from_node(Node::from_value(soul, value).unwrap())
    }

    fn oip(extra: Value) -> Value {
        let mut base = json!({"ver": "0.8.0", "recordType": "post", "creator": {"didAddress": "did:arweave:x"}});
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        base
    }

    #[test]
    fn validation_names_the_first_missing_field() {
        let table = [
            (json!({"data": {"a": 1}, "oip": oip(json!({}))}), None),
            (
                json!({"data": {"a": 1}, "oip": oip(json!({"ver": "0.7.2"}))}),
                Some("oip.ver \"0.7.2\" is not 0.8.x"),
            ),
            (
                json!({"data": {"a": 1}, "oip": oip(json!({"ver": null}))}),
                Some("oip.ver is missing"),
            ),
            (
                json!({"data": {"a": 1}, "oip": oip(json!({"recordType": ""}))}),
                Some("oip.recordType is missing"),
            ),
            (
                json!({"data": {"a": 1}, "oip": oip(json!({"creator": null}))}),
                Some("oip.creator is missing"),
            ),
            (json!({"oip": oip(json!({}))}), Some("data is missing")),
            (json!({"data": {"a": 1}}), Some("no oip metadata")),
        ];
        for (value, expected) in table {
            let got = validate(&record(value.clone())).err().map(|e| e.0);
            assert_eq!(got.as_deref(), expected, "{value}");
        }
    }

    #[test]
    fn documents_carry_the_did_storage_and_index_time() {
        let at = Timestamp::parse("2026-11-23T08:00:00.000Z").unwrap();
        let doc = to_document(
            &record(json!({"data": {"title": "t"}, "oip": oip(json!({})), "meta": {"x": 1}})),
            at,
        );
        assert_eq!(doc["data"], json!({"title": "t"}));
        assert_eq!(doc["oip"]["did"], "did:gun:647f79c2a338:post-1");
        assert_eq!(doc["oip"]["didTx"], "did:gun:647f79c2a338:post-1");
        assert_eq!(doc["oip"]["storage"], "gun");
        assert_eq!(doc["oip"]["indexedAt"], "2026-11-23T08:00:00.000Z");
        assert_eq!(doc["oip"]["recordType"], "post");
        assert!(doc.get("meta").is_none());
    }
}
