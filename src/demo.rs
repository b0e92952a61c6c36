//! `gunsync demo`: the real daemon (sync loop, worker pool, HTTP endpoints) against the in-process
//! GUN relay and strict Elasticsearch emulators, seeded with records of several types and a
//! deletion registry whose ES deletes fail for a while (one for good). No network needed. It
//! prints what happened and how to inspect the ledger it leaves behind.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use serde_json::json;

use crate::config::{DaemonSettings, Settings};
use crate::daemon::Daemon;
use crate::domain::{Did, Soul, publisher_hash};
use crate::emulator::es::EsEmulator;
use crate::emulator::faults::FaultRule;
use crate::emulator::relay::RelayEmulator;
use crate::ledger::{JobKind, JobState, Ledger, LedgerOptions, Synchronous};
use crate::shutdown::Shutdown;
use crate::timestamp::Timestamp;

/// Publisher hash of the demo's records (12 hex digits, as OIP souls have).
/// The public key of the demo's publisher: its records' souls start with its hash, and it
/// marks the demo's deletions (so they pass verification).
const PUBLISHER_KEY: &str = "gunsync-demo-publisher";
/// Record types the demo seeds.
const TYPES: [&str; 6] = ["post", "image", "video", "audio", "recipe", "organization"];
/// Records per type.
const PER_TYPE: usize = 8;

/// The schema of a PostgreSQL database that holds the demo's ledger.
pub const DEMO_SCHEMA: &str = "gunsync_demo";

/// How the demo runs.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// The ledger: a file (recreated), or a PostgreSQL URL whose schema `gunsync_demo` holds
    /// the demo's ledger (recreated; nothing else in the database is touched).
    pub database: String,
    /// Longest run; the demo ends earlier once every job is finished.
    pub max_run: Duration,
    /// Shortest run, so several sync cycles pass.
    pub min_run: Duration,
    /// Print progress lines.
    pub verbose: bool,
}

/// One deletion whose ES delete was made to fail, and what gunsync did about it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FailingDeletion {
    pub did: String,
    /// How many times ES answered 500 before recovering (`None` = never recovered).
    pub failures: Option<u32>,
    /// DELETE requests ES received for it.
    pub delete_requests: usize,
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
}

/// What the demo saw.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DemoSummary {
    /// Where the ledger is: the file, or the URL that selects the demo's schema.
    pub database: String,
    pub elapsed_ms: u64,
    pub cycles: i64,
    pub es_documents: usize,
    pub states: std::collections::BTreeMap<String, std::collections::BTreeMap<String, i64>>,
    pub failing_deletions: Vec<FailingDeletion>,
}

/// Runs the demo and returns its summary.
///
/// # Errors
/// When the emulators cannot bind loopback ports or the ledger cannot be created.
pub async fn run(options: DemoOptions) -> anyhow::Result<DemoSummary> {
    let started = Instant::now();
    let database = if Ledger::is_postgres_url(&options.database) {
        Ledger::postgres_schema(&options.database, DEMO_SCHEMA, true).await?
    } else {
        remove_database(Path::new(&options.database))?;
        options.database.clone()
    };
    let relay = RelayEmulator::start().await;
    let es = EsEmulator::start().await?;
    let seeded = seed(&relay, &es)?;

    let mut settings = Settings::for_tests(vec![relay.url()], es.url());
    settings.record_types = TYPES.iter().map(|t| (*t).to_owned()).collect();
    settings.max_attempts = 5;
    settings.backoff_base = Duration::from_millis(250);
    settings.backoff_max = Duration::from_secs(2);
    let daemon_settings = DaemonSettings {
        sync_enabled: true,
        sync_interval: Duration::from_secs(2),
        listen: "127.0.0.1:0".parse().expect("a literal address"),
        ui_token: None,
        cycle_retention: Duration::from_secs(7 * 24 * 3600),
    };
    let ledger =
        Ledger::open(LedgerOptions::new(&database).synchronous(Synchronous::Normal)).await?;
    let daemon = Daemon::build(Arc::new(settings), daemon_settings, ledger.clone()).await?;
    let addr = daemon.local_addr();
    let shutdown = Shutdown::new();
    let running = tokio::spawn(daemon.run(shutdown.clone()));
    if options.verbose {
        if let Some(addr) = addr {
            println!(
                "daemon running; dashboard: http://{addr}/ui  (endpoints /healthz  /metrics  /health/memory)"
            );
        }
        println!(
            "relay emulator {}  elasticsearch emulator {}",
            relay.url(),
            es.url()
        );
    }

    let mut last_print = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let stats = ledger.stats(Timestamp::now(), 1).await?;
        let active = ["pending", "running", "retrying"]
            .iter()
            .map(|s| stats.states.get(*s).copied().unwrap_or(0))
            .sum::<i64>();
        let elapsed = started.elapsed();
        if options.verbose && last_print.elapsed() >= Duration::from_secs(2) {
            last_print = Instant::now();
            println!(
                "  t={:>4.1}s  done {:>3}  dead {:>2}  retrying {:>2}  pending {:>3}  ES DELETE requests {:>2}",
                elapsed.as_secs_f64(),
                stats.states["done"],
                stats.states["dead"],
                stats.states["retrying"],
                stats.states["pending"],
                es.count("DELETE", "/")
            );
        }
        let settled = stats.total > 0 && active == 0;
        if elapsed >= options.max_run || (settled && elapsed >= options.min_run) {
            break;
        }
    }
    shutdown.stop();
    running.await??;

    let ledger = Ledger::open(LedgerOptions::new(&database)).await?;
    let stats = ledger.stats(Timestamp::now(), 1000).await?;
    let mut failing = Vec::new();
    for (did, failures) in &seeded.failing {
        let job = ledger.latest_job(JobKind::Delete, did.as_str()).await?;
        failing.push(FailingDeletion {
            did: did.to_string(),
            failures: *failures,
            delete_requests: es.count("DELETE", &es_doc_path("records", did.as_str())),
            state: job.as_ref().map_or("missing".into(), |j| j.state.clone()),
            attempts: job.as_ref().map_or(0, |j| j.attempts),
            last_error: job.and_then(|j| j.last_error),
        });
    }
    let summary = DemoSummary {
        database,
        elapsed_ms: started.elapsed().as_millis() as u64,
        cycles: stats.last_cycles.len() as i64,
        es_documents: es.doc_count("records"),
        states: stats.kinds.clone(),
        failing_deletions: failing,
    };
    ledger.close().await;
    relay.shutdown().await;
    es.shutdown().await;
    Ok(summary)
}

/// What was seeded: the deletions whose ES delete fails (`None` failures = forever).
struct Seeded {
    failing: Vec<(Did, Option<u32>)>,
}

fn soul(local: &str) -> Soul {
    Soul::parse(&format!("{}:{local}", publisher_hash(PUBLISHER_KEY)))
        .expect("demo souls are valid")
}

fn seed(relay: &RelayEmulator, es: &EsEmulator) -> anyhow::Result<Seeded> {
    for record_type in TYPES {
        for i in 1..=PER_TYPE {
            let soul = soul(&format!("{record_type}-{i:02}"));
            relay.seed_record(
                soul.as_str(),
                record_type,
                json!({
                    "basic": { "name": format!("demo {record_type} {i}"), "language": "en" },
                    record_type: { "index": i },
                }),
                json!({ "ver": "0.8.0", "creator": { "didAddress": "did:arweave:demo-creator", "publicKey": "demo" } }),
            )?;
        }
    }
    // Two records an operator must look at: they fail validation and go dead at once.
    relay.seed_record(
        soul("post-legacy").as_str(),
        "post",
        json!({ "basic": { "name": "a v0.7 record" } }),
        json!({ "ver": "0.7.2", "creator": { "didAddress": "did:arweave:old" } }),
    )?;
    relay.seed_record(
        soul("post-anonymous").as_str(),
        "post",
        json!({ "basic": { "name": "no creator" } }),
        json!({ "ver": "0.8.0" }),
    )?;

    // Deletions: three clean, three whose ES delete fails 3 times, one that never succeeds.
    let mut failing = Vec::new();
    for (local, failures) in [
        ("post-01", Some(0)),
        ("image-01", Some(0)),
        ("video-01", Some(0)),
        ("audio-01", Some(3)),
        ("recipe-01", Some(3)),
        ("organization-01", Some(3)),
        ("post-02", None),
    ] {
        let did = Did::from_soul(&soul(local));
        relay.seed_deletion(&did, PUBLISHER_KEY)?;
        // Pretend an earlier indexer already put it in ES, so the delete has work to do.
        es.put_doc(
            "records",
            did.as_str(),
            json!({ "data": {}, "oip": { "did": did.as_str() } }),
        );
        let path = es_doc_path("records", did.as_str());
        match failures {
            Some(0) => continue,
            Some(n) => es.faults().add(
                FaultRule::status(path, 500)
                    .method(Method::DELETE)
                    .body(r#"{"error":{"type":"emulated_failure_exception","reason":"shard unavailable"},"status":500}"#)
                    .times(n),
            ),
            None => es.faults().add(
                FaultRule::status(path, 500)
                    .method(Method::DELETE)
                    .body(r#"{"error":{"type":"emulated_failure_exception","reason":"shard unavailable"},"status":500}"#),
            ),
        }
        failing.push((did, failures));
    }
    Ok(Seeded { failing })
}

/// The request path of document `id` in `index` as the ES client sends it: every byte but
/// ASCII alphanumerics and `_ - . , *` percent-encoded.
pub fn es_doc_path(index: &str, id: &str) -> String {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"_-.,*".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    format!("/{}/_doc/{}", encode(index), encode(id))
}

fn remove_database(path: &Path) -> std::io::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Counts of a kind by state, for printing ("12 done, 1 dead").
pub fn describe_states(states: &std::collections::BTreeMap<String, i64>) -> String {
    let mut parts: Vec<String> = JobState::ALL
        .iter()
        .filter_map(|s| {
            states
                .get(s.as_str())
                .filter(|n| **n > 0)
                .map(|n| format!("{n} {s}"))
        })
        .collect();
    if parts.is_empty() {
        parts.push("none".into());
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_paths_are_encoded_like_the_es_client() {
        assert_eq!(
            es_doc_path("records", "did:gun:abc:post-1"),
            "/records/_doc/did%3Agun%3Aabc%3Apost-1"
        );
    }
}
