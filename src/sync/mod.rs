//! Sync cycles: per peer, stream the deletion registry into `delete` jobs and each type index
//! into `discover` jobs (DESIGN §6), batch by batch, so memory stays flat however large a peer
//! lets its indexes grow. A cycle only enqueues; workers do the rest. Peers run concurrently and
//! independently: a slow or dead peer records its error in its own `sync_cycles` row and holds
//! back no other, and within a peer a failed read holds back no other read. `run_loop` never
//! starts a cycle before the previous one ended.

pub mod plan;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::future::join_all;
use futures::{StreamExt, stream};
use tokio::sync::Notify;
use tracing::{Instrument, debug, info, info_span, warn};
use url::Url;

use crate::config::Settings;
use crate::domain::redacted;
use crate::ledger::{CycleCounts, Ledger, LedgerError, Uniqueness};
use crate::relay::RelayClient;
use crate::shutdown::Shutdown;
use plan::{dids_of, plan_deletes, plan_discovers};

/// Type indexes read at once per peer: a cycle over OIP's 37 types must not open 37 connections
/// to one relay (nor hold 37 large bodies in flight).
const INDEX_READS_AT_ONCE: usize = 4;

/// Entries per batch streamed from an index or the registry into the ledger. Memory in flight
/// is about this × [`INDEX_READS_AT_ONCE`] × 3 stages (parsing, queued, planned) × ~1.6 KB per
/// entry as JSON values and planned jobs: 5 000 held ~26 MB of heap during a 100 000-record
/// cycle (heaptrack), 1 000 holds ~5 MB; a batch of 1 000 known keys is still one indexed
/// lookup of a few ms, so a cycle is no slower in any way that matters.
pub const BATCH: usize = 1000;

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
                .instrument(info_span!("cycle", peer = %redacted(peer)))
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
            // Nodes sharing a PostgreSQL ledger take turns: one cycle at a time across them.
            match self.ledger.try_cycle_lock().await {
                Ok(Some(lock)) => {
                    if let Err(e) = self.run_cycle(&shutdown).await {
                        warn!(error = %e, "sync cycle could not be recorded");
                    }
                    lock.release().await;
                }
                Ok(None) => debug!("another node is running a sync cycle; skipping this one"),
                Err(e) => warn!(error = %e, "cannot take the sync cycle lock; skipping this cycle"),
            }
            if pruned_at.is_none_or(|at| at.elapsed() >= CYCLE_PRUNE_EVERY) {
                pruned_at = Some(tokio::time::Instant::now());
                match self
                    .ledger
                    .prune_cycles(self.ledger.now().minus(retention))
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

    /// One peer's cycle, recorded in its own `sync_cycles` row (the peer named without
    /// credentials).
    async fn run_peer(&self, peer: &Url, shutdown: &Shutdown) -> Result<PeerReport, LedgerError> {
        let shown = redacted(peer);
        let id = self.ledger.start_cycle(&shown, self.ledger.now()).await?;
        let counts = Mutex::new(CycleCounts::default());
        let error = tokio::select! {
            r = self.sync_peer(peer, &shown, &counts) => r.err(),
            _ = shutdown.stopped() => Some("interrupted by shutdown".to_owned()),
        };
        if let Some(e) = &error {
            warn!(error = %e, "peer cycle failed");
        }
        let counts = *lock(&counts);
        metrics::counter!("gunsync_sync_enqueued_total", "kind" => "delete")
            .increment(counts.delete_enqueued);
        metrics::counter!("gunsync_sync_enqueued_total", "kind" => "discover")
            .increment(counts.discover_enqueued);
        metrics::counter!("gunsync_sync_deletions_ignored_total")
            .increment(counts.deletions_ignored);
        self.ledger
            .finish_cycle(id, counts, error.as_deref(), self.ledger.now())
            .await?;
        Ok(PeerReport {
            peer: shown,
            counts,
            error,
        })
    }

    /// Reads the peer's deletion registry and its type indexes (a few at a time), streaming each
    /// into the ledger batch by batch, updating `counts` as it goes so an interrupted cycle still
    /// records what it did. A failure of one read holds back none of the others; `Err` lists
    /// every read that failed.
    async fn sync_peer(
        &self,
        peer: &Url,
        shown: &str,
        counts: &Mutex<CycleCounts>,
    ) -> Result<(), String> {
        let mut errors = Vec::new();
        if let Err(e) = self.sync_deletions(peer, shown, counts).await {
            errors.push(format!("deletion registry: {e}"));
        }
        // Owned names: a stream of futures borrowing from an iterator over `settings` trips
        // the compiler's `Send` check on the spawned sync loop.
        let types: Vec<String> = self.settings.record_types().map(str::to_owned).collect();
        let reads: Vec<(String, Result<(), String>)> = stream::iter(types)
            .map(|record_type| async move {
                let read = self.sync_index(peer, shown, &record_type, counts).await;
                (record_type, read)
            })
            .buffer_unordered(INDEX_READS_AT_ONCE)
            .collect()
            .await;
        let mut failed: Vec<_> = reads
            .into_iter()
            .filter_map(|(record_type, read)| read.err().map(|e| (record_type, e)))
            .collect();
        failed.sort();
        errors.extend(failed.into_iter().map(|(t, e)| format!("index {t}: {e}")));
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// The deletion registry, batch by batch: a `delete` job per DID (again once its last job
    /// finished more than `GUNSYNC_REPROCESS_AFTER_MS` ago). A registry of a peer outside
    /// `GUNSYNC_DELETION_PEERS` is read and counted, never acted on.
    async fn sync_deletions(
        &self,
        peer: &Url,
        shown: &str,
        counts: &Mutex<CycleCounts>,
    ) -> Result<(), String> {
        let trusted = self.settings.trusts_deletions_of(peer);
        let Some(mut registry) = self
            .relay
            .stream_deletion_registry(peer, BATCH)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(());
        };
        while let Some(batch) = registry.next().await {
            let batch = batch.map_err(|e| e.to_string())?;
            {
                let mut c = lock(counts);
                c.deletions_seen += batch.dids.len() as u64;
                c.rejected += batch.rejected.len() as u64;
                if !trusted {
                    c.deletions_ignored += batch.dids.len() as u64;
                    continue;
                }
            }
            let deletes = plan_deletes(shown, &batch.dids, self.settings.max_attempts);
            let report = self
                .ledger
                .enqueue_many(
                    &deletes,
                    Uniqueness::FinishedWithin(self.settings.reprocess_after),
                    self.ledger.now(),
                )
                .await
                .map_err(|e| format!("enqueue deletes: {e}"))?;
            lock(counts).delete_enqueued += report.created;
            self.wake_if(report.created);
        }
        if !trusted {
            let ignored = lock(counts).deletions_ignored;
            if ignored > 0 {
                info!(
                    deletions_ignored = ignored,
                    "deletion registry of a peer not in GUNSYNC_DELETION_PEERS ignored"
                );
            }
        }
        Ok(())
    }

    /// One type index, batch by batch: a `discover` job per listed record that is not deleted
    /// and is new, changed (a newer `timestamp` than the one last indexed) or last died more
    /// than `GUNSYNC_REPROCESS_AFTER_MS` ago. A 404 for an index that listed records at its
    /// last read is an error of this peer and type, never "no records".
    async fn sync_index(
        &self,
        peer: &Url,
        shown: &str,
        record_type: &str,
        counts: &Mutex<CycleCounts>,
    ) -> Result<(), String> {
        let settings = &self.settings;
        let Some(mut index) = self
            .relay
            .stream_type_index(peer, &settings.registry_root, record_type, BATCH)
            .await
            .map_err(|e| e.to_string())?
        else {
            let seen = self
                .ledger
                .index_entries_seen(shown, record_type)
                .await
                .map_err(|e| format!("ledger: {e}"))?;
            return match seen {
                Some(listed) if listed > 0 => Err(format!(
                    "the relay answered 404, but this index listed {listed} records at its last                      read (a relay that gives up on a large index answers so)"
                )),
                _ => Ok(()),
            };
        };
        let mut entries = 0u64;
        while let Some(batch) = index.next().await {
            let batch = batch.map_err(|e| e.to_string())?;
            entries += batch.entries.len() as u64;
            {
                let mut c = lock(counts);
                c.records_seen += batch.entries.len() as u64;
                c.rejected += batch.rejected.len() as u64;
            }
            let deleted = self
                .ledger
                .deleted_keys(&dids_of(&batch.entries))
                .await
                .map_err(|e| format!("ledger lookup: {e}"))?;
            let plan = plan_discovers(
                shown,
                record_type,
                &batch.entries,
                &deleted,
                settings.max_attempts,
            );
            let report = self
                .ledger
                .enqueue_many(
                    &plan.discovers,
                    Uniqueness::Revision {
                        retry_dead_after: settings.reprocess_after,
                    },
                    self.ledger.now(),
                )
                .await
                .map_err(|e| format!("enqueue discovers: {e}"))?;
            lock(counts).discover_enqueued += report.created;
            self.wake_if(report.created);
        }
        self.ledger
            .record_index_read(shown, record_type, entries, self.ledger.now())
            .await
            .map_err(|e| format!("ledger: {e}"))
    }

    fn wake_if(&self, created: u64) {
        if created > 0
            && let Some(wake) = &self.wake
        {
            wake.notify_one();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
