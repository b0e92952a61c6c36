//! Sync cycles: per peer, read the deletion registry and enqueue `delete` jobs, then read each
//! type index and enqueue `discover` jobs (DESIGN §6). A cycle only enqueues; workers do the rest.
//! Peers run concurrently and independently: a slow or dead peer records its error in its own
//! `sync_cycles` row and holds back no other. `run_loop` never starts a cycle before the previous
//! one ended.

pub mod plan;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio::sync::Notify;
use tracing::{Instrument, info, info_span, warn};
use url::Url;

use crate::config::Settings;
use crate::ledger::{CycleCounts, Ledger, LedgerError, Uniqueness};
use crate::relay::RelayClient;
use crate::shutdown::Shutdown;
use crate::timestamp::Timestamp;
use plan::{IndexRead, indexed_dids, plan_deletes, plan_discovers};

/// How often the daemon prunes old `sync_cycles` rows.
const CYCLE_PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// What one cycle did on one peer.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PeerReport {
    pub peer: String,
    #[serde(flatten)]
    pub counts: CycleCounts,
    /// Why the peer's cycle stopped early or was incomplete (`None` = all read and enqueued).
    pub error: Option<String>,
}

/// What one cycle did, peer by peer.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct CycleReport {
    pub peers: Vec<PeerReport>,
    pub elapsed_ms: u64,
}

impl CycleReport {
    /// The counts summed over peers.
    pub fn totals(&self) -> CycleCounts {
        self.peers.iter().fold(CycleCounts::default(), |mut t, p| {
            t.deletions_seen += p.counts.deletions_seen;
            t.records_seen += p.counts.records_seen;
            t.delete_enqueued += p.counts.delete_enqueued;
            t.discover_enqueued += p.counts.discover_enqueued;
            t.rejected += p.counts.rejected;
            t.deletions_ignored += p.counts.deletions_ignored;
            t
        })
    }

    /// Peers whose cycle failed.
    pub fn failed(&self) -> impl Iterator<Item = &PeerReport> {
        self.peers.iter().filter(|p| p.error.is_some())
    }
}

/// Runs sync cycles against the configured peers.
#[derive(Clone)]
pub struct Syncer {
    ledger: Ledger,
    relay: RelayClient,
    settings: Arc<Settings>,
    /// The worker pool's wake-up, poked after an enqueue created jobs.
    wake: Option<Arc<Notify>>,
}

impl Syncer {
    pub fn new(ledger: Ledger, relay: RelayClient, settings: Arc<Settings>) -> Self {
        Syncer {
            ledger,
            relay,
            settings,
            wake: None,
        }
    }

    /// Wake this pool whenever a cycle enqueues something.
    pub fn waking(mut self, wake: Arc<Notify>) -> Self {
        self.wake = Some(wake);
        self
    }

    /// One cycle over every peer, concurrently; logs one summary line.
    ///
    /// # Errors
    /// Only when the ledger cannot record the cycle; a peer's failure is in its [`PeerReport`].
    pub async fn run_cycle(&self, shutdown: &Shutdown) -> Result<CycleReport, LedgerError> {
        let started = Instant::now();
        let results = join_all(self.settings.peers.iter().map(|peer| {
            self.run_peer(peer, shutdown)
                .instrument(info_span!("cycle", peer = %peer))
        }))
        .await;
        let peers = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        let report = CycleReport {
            peers,
            elapsed_ms: started.elapsed().as_millis() as u64,
        };
        let t = report.totals();
        let failed = report.failed().count();
        metrics::histogram!("gunsync_sync_cycle_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("gunsync_sync_cycles_total", "outcome" => if failed == 0 { "ok" } else { "error" })
            .increment(1);
        info!(
            peers = report.peers.len(),
            failed_peers = failed,
            deletions_seen = t.deletions_seen,
            records_seen = t.records_seen,
            delete_enqueued = t.delete_enqueued,
            discover_enqueued = t.discover_enqueued,
            rejected = t.rejected,
            elapsed_ms = report.elapsed_ms,
            "sync cycle finished"
        );
        Ok(report)
    }

    /// Cycles every `interval` (the first at once) until `shutdown`; a cycle longer than the
    /// interval delays the next, never overlaps it. At most hourly, the records of cycles older
    /// than `retention` are pruned.
    pub async fn run_loop(self, interval: Duration, retention: Duration, shutdown: Shutdown) {
        let mut pruned_at: Option<tokio::time::Instant> = None;
        loop {
            if shutdown.is_stopping() {
                break;
            }
            let next = tokio::time::Instant::now() + interval;
            if let Err(e) = self.run_cycle(&shutdown).await {
                warn!(error = %e, "sync cycle could not be recorded");
            }
            if pruned_at.is_none_or(|at| at.elapsed() >= CYCLE_PRUNE_EVERY) {
                pruned_at = Some(tokio::time::Instant::now());
                match self
                    .ledger
                    .prune_cycles(Timestamp::now().minus(retention))
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => info!(cycles = n, "pruned old sync cycle records"),
                    Err(e) => warn!(error = %e, "pruning old sync cycle records failed"),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = shutdown.stopped() => break,
            }
        }
        info!("sync loop stopped");
    }

    /// One peer's cycle, recorded in its own `sync_cycles` row.
    async fn run_peer(&self, peer: &Url, shutdown: &Shutdown) -> Result<PeerReport, LedgerError> {
        let id = self
            .ledger
            .start_cycle(peer.as_str(), Timestamp::now())
            .await?;
        let mut counts = CycleCounts::default();
        let error = tokio::select! {
            r = self.sync_peer(peer, &mut counts) => r.err(),
            _ = shutdown.stopped() => Some("interrupted by shutdown".to_owned()),
        };
        if let Some(e) = &error {
            warn!(error = %e, "peer cycle failed");
        }
        metrics::counter!("gunsync_sync_enqueued_total", "kind" => "delete")
            .increment(counts.delete_enqueued);
        metrics::counter!("gunsync_sync_enqueued_total", "kind" => "discover")
            .increment(counts.discover_enqueued);
        self.ledger
            .finish_cycle(id, counts, error.as_deref(), Timestamp::now())
            .await?;
        Ok(PeerReport {
            peer: peer.to_string(),
            counts,
            error,
        })
    }

    /// Reads and enqueues, updating `counts` as it goes so an interrupted cycle still records
    /// what it did. `Err` says what failed; the rest of the peer's work was still attempted
    /// where that was safe.
    async fn sync_peer(&self, peer: &Url, counts: &mut CycleCounts) -> Result<(), String> {
        let settings = &self.settings;
        // Without the registry, discovery could enqueue deleted records: stop this peer here.
        let registry = self
            .relay
            .read_deletion_registry(peer)
            .await
            .map_err(|e| format!("deletion registry: {e}"))?;
        counts.deletions_seen = registry.dids.len() as u64;
        counts.rejected += registry.rejected.len() as u64;
        let deletes = plan_deletes(peer, &registry.dids, settings.max_attempts);
        let report = self
            .ledger
            .enqueue_many(
                &deletes,
                Uniqueness::FinishedWithin(settings.reprocess_after),
                Timestamp::now(),
            )
            .await
            .map_err(|e| format!("enqueue deletes: {e}"))?;
        counts.delete_enqueued = report.created;
        self.wake_if(report.created);

        let reads = join_all(settings.record_types().map(|record_type| async move {
            let read = self
                .relay
                .read_type_index(peer, &settings.registry_root, record_type)
                .await;
            (record_type.to_owned(), read)
        }))
        .await;
        let mut indexes = Vec::new();
        let mut errors = Vec::new();
        for (record_type, read) in reads {
            match read {
                Ok(index) => {
                    counts.rejected += index.rejected.len() as u64;
                    indexes.push(IndexRead {
                        record_type,
                        souls: index.souls,
                    });
                }
                Err(e) => errors.push(format!("index {record_type}: {e}")),
            }
        }
        let known_deleted = self
            .ledger
            .deleted_keys(&indexed_dids(&indexes))
            .await
            .map_err(|e| format!("ledger lookup: {e}"))?;
        let plan = plan_discovers(
            peer,
            &indexes,
            &registry.dids,
            &known_deleted,
            settings.max_attempts,
        );
        counts.records_seen = plan.records_seen;
        let report = self
            .ledger
            .enqueue_many(&plan.discovers, Uniqueness::Ever, Timestamp::now())
            .await
            .map_err(|e| format!("enqueue discovers: {e}"))?;
        counts.discover_enqueued = report.created;
        self.wake_if(report.created);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    fn wake_if(&self, created: u64) {
        if created > 0
            && let Some(wake) = &self.wake
        {
            wake.notify_one();
        }
    }
}
