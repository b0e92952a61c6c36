//! `gunsync bench sync`: one sync cycle and the discovery it enqueues, over N records in the
//! in-process relay and strict ES emulators, through the real `Syncer`, `WorkerPool` and handlers
//! (what `gunsync sync --once --wait` runs). Then a second cycle over the same records, whose
//! requests must not grow with the record count. Prints numbers; asserts nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::scenario;
use crate::config::Settings;
use crate::daemon::Services;
use crate::emulator::es::EsEmulator;
use crate::emulator::relay::RelayEmulator;
use crate::ledger::{Ledger, LedgerOptions, Synchronous};
use crate::shutdown::Shutdown;
use crate::sync::CycleReport;
use crate::worker::DrainReport;

/// The throughput the issue asks of one cycle plus its discovery on a 2-core machine.
pub const TARGET_RECORDS_PER_SEC: f64 = 2000.0;

/// How a sync benchmark runs.
#[derive(Clone, Debug)]
pub struct SyncBenchOptions {
    pub workers: usize,
    pub es_concurrency: usize,
    pub synchronous: Synchronous,
}

/// Requests the emulators received during one phase.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Requests {
    pub relay: usize,
    pub es: usize,
    pub total: usize,
}

/// One timed phase.
#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    pub seconds: f64,
    pub records_per_sec: f64,
    pub requests: Requests,
}

/// The second cycle over unchanged records.
#[derive(Clone, Debug, Serialize)]
pub struct SecondCycle {
    pub seconds: f64,
    pub requests: Requests,
    /// What a cycle must read at most: one registry read and one read per type index, per peer.
    pub expected_max: usize,
    pub discover_enqueued: u64,
    /// `requests.total <= expected_max`: constant in the record count.
    pub constant: bool,
}

/// One size's results.
#[derive(Clone, Debug, Serialize)]
pub struct SyncRun {
    pub records: u64,
    pub record_types: usize,
    pub workers: usize,
    pub synchronous: Synchronous,
    /// The cycle alone (registry + type indexes read, jobs enqueued).
    pub cycle: Phase,
    /// Working the discover jobs until none is left.
    pub discovery: Phase,
    /// Cycle + discovery, records per second end to end.
    pub cycle_and_discovery_records_per_sec: f64,
    /// Requests of cycle + discovery divided by the record count.
    pub requests_per_record: RequestsPerRecord,
    pub drain: DrainReport,
    pub indexed: usize,
    pub second_cycle: SecondCycle,
    pub target_records_per_sec: f64,
    pub target_met: bool,
    /// Memory of gunsync alone: the same discovery by the daemon (`gunsync run`, a child
    /// process) against the same emulators, measured from outside. `None` when not measured.
    pub gunsync_alone: Option<DaemonMemory>,
}

/// The daemon's memory while it discovers a run's records (see [`SyncRun::gunsync_alone`]).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct DaemonMemory {
    /// Peak RSS over the daemon's life (`VmHWM`), in MiB.
    pub rss_peak_mb: Option<f64>,
    /// Largest RSS sampled once per cycle, and the last sample, in MiB.
    pub rss_max_sampled_mb: f64,
    pub rss_end_mb: f64,
    /// How long the daemon took to discover every record and run one more cycle.
    pub seconds: f64,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct RequestsPerRecord {
    pub relay: f64,
    pub es: f64,
    pub total: f64,
}

/// The `bench sync` report.
#[derive(Clone, Debug, Serialize)]
pub struct SyncBench {
    pub runs: Vec<SyncRun>,
}

/// Runs the benchmark for one record count on fresh emulators and a fresh temporary ledger.
///
/// # Errors
/// When an emulator cannot start, seeding fails, or the ledger fails.
pub async fn sync_bench_one(records: u64, options: &SyncBenchOptions) -> anyhow::Result<SyncRun> {
    let relay = RelayEmulator::start().await;
    let es = EsEmulator::start().await?;
    // The counts are what matters; keeping 100 000 indexed bodies in the log is not.
    es.log().set_body_limit(0);
    relay.log().set_body_limit(0);

    let mut settings = Settings::for_tests(vec![relay.url()], es.url());
    settings.workers = options.workers;
    settings.es_concurrency = options.es_concurrency;
    let record_types: Vec<String> = settings.record_types().map(str::to_owned).collect();
    scenario::seed_records(&relay, records, &record_types)?;

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench-sync.db");
    let ledger =
        Ledger::open(LedgerOptions::new(path.to_string_lossy()).synchronous(options.synchronous))
            .await?;
    let services = Services::build(Arc::new(settings), ledger.clone())?;
    let shutdown = Shutdown::new();

    let counted = |relay: &RelayEmulator, es: &EsEmulator| {
        let (r, e) = (relay.log().all().len(), es.log().all().len());
        relay.log().clear();
        es.log().clear();
        Requests {
            relay: r,
            es: e,
            total: r + e,
        }
    };
    let started = Instant::now();
    let first = services.syncer().run_cycle(&shutdown).await?;
    let cycle_time = started.elapsed();
    let cycle_requests = counted(&relay, &es);
    check_cycle(&first)?;

    let started = Instant::now();
    let drain = services.pool().drain(shutdown.clone()).await?;
    let discovery_time = started.elapsed();
    let discovery_requests = counted(&relay, &es);
    let indexed = es.doc_count(&services.settings.es_index);

    let started = Instant::now();
    let second = services.syncer().run_cycle(&shutdown).await?;
    let second_time = started.elapsed();
    let second_requests = counted(&relay, &es);
    check_cycle(&second)?;

    ledger.close().await;
    relay.shutdown().await;
    es.shutdown().await;

    let per = |d: Duration| round(records as f64 / d.as_secs_f64().max(1e-9));
    let both = cycle_time + discovery_time;
    let per_record = |n: usize| round2(n as f64 / records.max(1) as f64);
    let expected_max = services.settings.peers.len() * (1 + record_types.len());
    let end_to_end = per(both);
    Ok(SyncRun {
        records,
        record_types: record_types.len(),
        workers: options.workers,
        synchronous: options.synchronous,
        cycle: Phase {
            seconds: round3(cycle_time.as_secs_f64()),
            records_per_sec: per(cycle_time),
            requests: cycle_requests,
        },
        discovery: Phase {
            seconds: round3(discovery_time.as_secs_f64()),
            records_per_sec: per(discovery_time),
            requests: discovery_requests,
        },
        cycle_and_discovery_records_per_sec: end_to_end,
        requests_per_record: RequestsPerRecord {
            relay: per_record(cycle_requests.relay + discovery_requests.relay),
            es: per_record(cycle_requests.es + discovery_requests.es),
            total: per_record(cycle_requests.total + discovery_requests.total),
        },
        drain,
        indexed,
        second_cycle: SecondCycle {
            seconds: round3(second_time.as_secs_f64()),
            requests: second_requests,
            expected_max,
            discover_enqueued: second.totals().discover_enqueued,
            constant: second_requests.total <= expected_max,
        },
        target_records_per_sec: TARGET_RECORDS_PER_SEC,
        target_met: end_to_end >= TARGET_RECORDS_PER_SEC,
        gunsync_alone: None,
    })
}

fn check_cycle(report: &CycleReport) -> anyhow::Result<()> {
    match report.failed().next() {
        Some(peer) => anyhow::bail!(
            "sync cycle failed on {}: {}",
            peer.peer,
            peer.error.as_deref().unwrap_or("")
        ),
        None => Ok(()),
    }
}

fn round(x: f64) -> f64 {
    x.round()
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
