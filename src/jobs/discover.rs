//! `discover`: fetch a record from the relays (following links, within the record's budget) and
//! index the document OIP's sync would index under its DID — unless its publisher deleted it, it
//! is a tombstone, or it is private (and private records are not synced). A record listed but not
//! readable yet (absent or partial on every peer: GUN is eventually consistent) is retried on the
//! backoff, never dropped. Idempotent: indexing replaces the document.

use std::sync::Arc;

use futures::future::BoxFuture;
use tracing::debug;
use url::Url;

use super::document::OipRecord;
use super::{JobContext, boxed, during, job_did, on_peer};
use crate::domain::{Did, redacted};
use crate::ledger::Deletion;
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
    // Deleted by its publisher (a delete job that was not refused): never (re)index it. While
    // the deletion runs it may yet be refused: come back when it is over.
    match deletion(ctx, &did, &what).await? {
        Deletion::None => {}
        Deletion::Deleted => {
            debug!("deleted by its publisher, not indexed");
            return Ok(());
        }
        Deletion::InProgress => {
            return Err(JobError::transient(format!(
                "{what}: its deletion is in progress; looking again once it is over"
            )));
        }
    }
    let peers = ctx.peers_for(&run.job.payload);
    let record = match read_from_peers(ctx, &did, &peers)
        .await
        .map_err(|e| during(&what, e))?
    {
        Read::Live(record) => record,
        Read::Tombstone => {
            debug!("tombstoned, nothing to index");
            return Ok(());
        }
        // GUN is eventually consistent: a record listed before it is readable (or readable in
        // part) is retried on the backoff, never dropped. Out of attempts, `decide` says so.
        Read::Unreadable(why) => {
            return Err(JobError::transient(format!(
                "{what}: listed but not readable on any peer yet ({why})"
            )));
        }
    };
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
    // A deletion that arrived while this attempt read and indexed the record: its delete job
    // may have removed the document before this write landed, so take the write back. While
    // the deletion runs it may yet be refused: look again once it is over.
    match deletion(ctx, &did, &what).await? {
        Deletion::None => {
            debug!(record_type = record.record_type().unwrap_or(""), "indexed");
            Ok(())
        }
        late => {
            ctx.search
                .delete(did.as_str())
                .await
                .map_err(|e| during(&what, e))?;
            match late {
                Deletion::InProgress => Err(JobError::transient(format!(
                    "{what}: deleted by its publisher while being indexed; looking again once the deletion is over"
                ))),
                _ => {
                    debug!("deleted by its publisher while being indexed, removed again");
                    Ok(())
                }
            }
        }
    }
}

/// What the ledger knows of `did`'s deletion (a ledger failure is transient).
async fn deletion(ctx: &JobContext, did: &Did, what: &str) -> Result<Deletion, JobError> {
    ctx.ledger
        .deletion(did.as_str())
        .await
        .map_err(|e| JobError::transient(format!("{what}: ledger: {e}")))
}

/// What the peers hold of a record.
enum Read {
    /// A complete, live copy (from the first peer that had one).
    Live(RecordNode),
    /// An explicit tombstone, and no live copy anywhere.
    Tombstone,
    /// Absent or partial everywhere: what each peer lacked.
    Unreadable(String),
}

/// Asks each peer in turn until one has a complete live copy. Only an explicit tombstone is a
/// deletion; a 404 or a copy without `data` or `oip` is a read that is not a verdict. A peer's
/// error (naming the peer) is returned when no peer had the record: it says more than absence.
async fn read_from_peers(ctx: &JobContext, did: &Did, peers: &[Url]) -> Result<Read, JobError> {
    let soul = did.soul();
    let mut tombstone = false;
    let mut first_error = None;
    let mut lacking = Vec::new();
    for peer in peers {
        match ctx.relay.read_record(peer, &soul).await {
            Ok(Some(record)) if record.deleted => tombstone = true,
            Ok(Some(record)) => match &record.partial {
                None => return Ok(Read::Live(record)),
                Some(missing) => lacking.push(format!("{}: {missing}", on_peer(peer))),
            },
            Ok(None) => lacking.push(format!("{}: absent", on_peer(peer))),
            Err(e) => {
                debug!(peer = %redacted(peer), error = %e, "reading the record failed");
                first_error.get_or_insert(during(on_peer(peer), e));
            }
        }
    }
    match (tombstone, first_error) {
        (true, _) => Ok(Read::Tombstone),
        (false, Some(e)) => Err(e),
        (false, None) => Ok(Read::Unreadable(lacking.join("; "))),
    }
}
