//! Settings of `gunsync run` and `gunsync sync`: clap derive over the env names of DESIGN §5–6
//! (OIP's names first), converted at the edge (milliseconds → `Duration`, lists → `Vec`, the ES
//! password → `Secret`) and validated once. Commands that only read the ledger never see these.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use clap::builder::BoolishValueParser;
use url::Url;

use crate::domain::{DEFAULT_REGISTRY_ROOT, type_index_soul};
use crate::ledger::Backoff;
use crate::relay::RelayOptions;
use crate::search::SearchOptions;
use crate::secret::Secret;
use crate::worker::WorkerConfig;

/// Relay URLs when `GUN_PEERS` is not set.
pub const DEFAULT_PEERS: &str = "http://gun-relay:8765";
/// Milliseconds between sync cycles (`GUN_SYNC_INTERVAL`, 5 minutes).
pub const DEFAULT_SYNC_INTERVAL_MS: &str = "300000";
/// Relay request timeout in milliseconds (`GUN_REGISTRY_TIMEOUT_MS`).
pub const DEFAULT_REGISTRY_TIMEOUT_MS: &str = "30000";
/// Elasticsearch URL when `ELASTICSEARCHHOST` is not set.
pub const DEFAULT_ES_HOST: &str = "http://elasticsearch:9200";
/// Concurrent jobs (`GUNSYNC_WORKERS`).
pub const DEFAULT_WORKERS: &str = "4";
/// Attempts before a job is parked `dead` (`GUNSYNC_MAX_ATTEMPTS`, about two days of retries).
pub const DEFAULT_MAX_ATTEMPTS: &str = "12";
/// First retry delay in milliseconds (`GUNSYNC_BACKOFF_BASE_MS`, 30 s).
pub const DEFAULT_BACKOFF_BASE_MS: &str = "30000";
/// Longest retry delay in milliseconds (`GUNSYNC_BACKOFF_MAX_MS`, 6 h).
pub const DEFAULT_BACKOFF_MAX_MS: &str = "21600000";
/// Job lease in milliseconds (`GUNSYNC_LEASE_MS`); long jobs heartbeat at half of it.
pub const DEFAULT_LEASE_MS: &str = "60000";
/// Re-run a finished `delete` after this many milliseconds (`GUNSYNC_REPROCESS_AFTER_MS`, 24 h; 0 = never).
pub const DEFAULT_REPROCESS_AFTER_MS: &str = "86400000";
/// The OIP v0.8 record types whose indexes a cycle reads (`GUNSYNC_RECORD_TYPES`).
pub const DEFAULT_RECORD_TYPES: &str = "post,image,video,audio,text,recipe,workout,exercise,conversationSession,media,creatorRegistration,organization";
/// Elasticsearch index of the records (`GUNSYNC_ES_INDEX`).
pub const DEFAULT_ES_INDEX: &str = "records";
/// Elasticsearch requests in flight at once (`GUNSYNC_ES_CONCURRENCY`).
pub const DEFAULT_ES_CONCURRENCY: &str = "8";
/// Elasticsearch request timeout in milliseconds, body included (`GUNSYNC_ES_TIMEOUT_MS`).
pub const DEFAULT_ES_TIMEOUT_MS: &str = "30000";
/// Address of `/healthz`, `/metrics`, `/health/memory` (`GUNSYNC_LISTEN`); loopback by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";
/// Longest one job attempt may run, in milliseconds (`GUNSYNC_JOB_DEADLINE_MS`, 5 minutes).
pub const DEFAULT_JOB_DEADLINE_MS: &str = "300000";
/// How long `sync_cycles` rows are kept, in milliseconds (`GUNSYNC_CYCLE_RETENTION_MS`, 7 days).
pub const DEFAULT_CYCLE_RETENTION_MS: &str = "604800000";
/// Most Elasticsearch requests in flight a setting may ask for (a semaphore of that size).
pub const MAX_ES_CONCURRENCY: usize = 1024;
/// How long running jobs get to finish after SIGTERM before they are released: under Docker's
/// default 10 s stop timeout, so a container stop is always graceful.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(8);
/// Backoff jitter: ±20 % spreads retries of jobs that failed together.
pub const DEFAULT_BACKOFF_JITTER: f64 = 0.2;

/// A setting that parsed but makes no sense (exit status 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {name}: {reason}")]
pub struct ConfigError {
    /// The env name of the setting.
    pub name: &'static str,
    pub reason: String,
}

/// What a sync cycle and the job handlers need: relays, Elasticsearch, jobs. Shared by `run` and
/// `sync`.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// GUN relay URLs, comma-separated
    #[arg(long = "peers", env = "GUN_PEERS", value_delimiter = ',', default_value = DEFAULT_PEERS, value_parser = parse_peer)]
    pub peers: Vec<Url>,
    /// Registry root soul (type indexes are `<root>:index:<recordType>`)
    #[arg(long, env = "GUN_REGISTRY_ROOT", default_value = DEFAULT_REGISTRY_ROOT)]
    pub registry_root: String,
    /// Relay request timeout in milliseconds
    #[arg(long = "registry-timeout-ms", env = "GUN_REGISTRY_TIMEOUT_MS", default_value = DEFAULT_REGISTRY_TIMEOUT_MS, value_parser = parse_millis)]
    pub registry_timeout: Duration,
    /// Index encrypted (private) records too
    #[arg(long = "sync-private-records", env = "GUN_SYNC_PRIVATE_RECORDS", default_value = "false", value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub private_records: bool,
    /// Record types whose indexes a cycle reads, comma-separated
    #[arg(long, env = "GUNSYNC_RECORD_TYPES", value_delimiter = ',', default_value = DEFAULT_RECORD_TYPES)]
    pub record_types: Vec<String>,
    /// Re-run a finished delete, or a dead discover, after this many milliseconds (0 = never)
    #[arg(long = "reprocess-after-ms", env = "GUNSYNC_REPROCESS_AFTER_MS", default_value = DEFAULT_REPROCESS_AFTER_MS, value_parser = parse_millis)]
    pub reprocess_after: Duration,
    /// Relays whose deletion registries are trusted, comma-separated (default: every peer);
    /// deletions listed by other relays are ignored and counted
    #[arg(long = "deletion-peers", env = "GUNSYNC_DELETION_PEERS", value_delimiter = ',', value_parser = parse_peer)]
    pub deletion_peers: Vec<Url>,
    /// Refuse a deletion whose `deletedBy` is not the record's publisher (on/off)
    #[arg(long = "verify-deletions", env = "GUNSYNC_VERIFY_DELETIONS", default_value = "on", value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub verify_deletions: bool,

    /// Elasticsearch URL
    #[arg(long = "es-host", env = "ELASTICSEARCHHOST", default_value = DEFAULT_ES_HOST)]
    pub es_host: Url,
    /// Elasticsearch user (basic auth is sent only when set)
    #[arg(long = "es-username", env = "ELASTICCLIENTUSERNAME")]
    pub es_username: Option<String>,
    /// Elasticsearch password (never logged)
    #[arg(
        long = "es-password",
        env = "ELASTICCLIENTPASSWORD",
        hide_env_values = true
    )]
    pub es_password: Option<Secret>,
    /// Elasticsearch index of the records
    #[arg(long = "es-index", env = "GUNSYNC_ES_INDEX", default_value = DEFAULT_ES_INDEX)]
    pub es_index: String,
    /// Elasticsearch requests in flight at once
    #[arg(long = "es-concurrency", env = "GUNSYNC_ES_CONCURRENCY", default_value = DEFAULT_ES_CONCURRENCY)]
    pub es_concurrency: usize,
    /// Elasticsearch request timeout in milliseconds (body included)
    #[arg(long = "es-timeout-ms", env = "GUNSYNC_ES_TIMEOUT_MS", default_value = DEFAULT_ES_TIMEOUT_MS, value_parser = parse_millis)]
    pub es_timeout: Duration,

    /// Concurrent jobs
    #[arg(long, env = "GUNSYNC_WORKERS", default_value = DEFAULT_WORKERS)]
    pub workers: usize,
    /// Attempts before a job is parked dead
    #[arg(long = "max-attempts", env = "GUNSYNC_MAX_ATTEMPTS", default_value = DEFAULT_MAX_ATTEMPTS)]
    pub max_attempts: u32,
    /// First retry delay in milliseconds (doubles per attempt)
    #[arg(long = "backoff-base-ms", env = "GUNSYNC_BACKOFF_BASE_MS", default_value = DEFAULT_BACKOFF_BASE_MS, value_parser = parse_millis)]
    pub backoff_base: Duration,
    /// Longest retry delay in milliseconds
    #[arg(long = "backoff-max-ms", env = "GUNSYNC_BACKOFF_MAX_MS", default_value = DEFAULT_BACKOFF_MAX_MS, value_parser = parse_millis)]
    pub backoff_max: Duration,
    /// Job lease in milliseconds
    #[arg(long = "lease-ms", env = "GUNSYNC_LEASE_MS", default_value = DEFAULT_LEASE_MS, value_parser = parse_millis)]
    pub lease: Duration,
    /// Longest one job attempt may run, in milliseconds; past it the job is dead
    #[arg(long = "job-deadline-ms", env = "GUNSYNC_JOB_DEADLINE_MS", default_value = DEFAULT_JOB_DEADLINE_MS, value_parser = parse_millis)]
    pub job_deadline: Duration,
}

/// What only the daemon needs: the timer and the HTTP endpoints.
#[derive(Debug, Clone, Args)]
pub struct DaemonSettings {
    /// Run sync cycles (false: only work the jobs already in the ledger)
    #[arg(long = "sync-enabled", env = "GUN_SYNC_ENABLED", default_value = "true", value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub sync_enabled: bool,
    /// Milliseconds between sync cycles
    #[arg(long = "sync-interval", env = "GUN_SYNC_INTERVAL", default_value = DEFAULT_SYNC_INTERVAL_MS, value_parser = parse_millis)]
    pub sync_interval: Duration,
    /// Address of /healthz, /metrics and /health/memory
    #[arg(long, env = "GUNSYNC_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Keep sync_cycles rows this many milliseconds (older ones are pruned hourly)
    #[arg(long = "cycle-retention-ms", env = "GUNSYNC_CYCLE_RETENTION_MS", default_value = DEFAULT_CYCLE_RETENTION_MS, value_parser = parse_millis)]
    pub cycle_retention: Duration,
}

impl Settings {
    /// Settings for tests and the demo: the defaults with the given peers and ES URL, fast
    /// retries.
    pub fn for_tests(peers: Vec<Url>, es_host: Url) -> Self {
        Settings {
            peers,
            registry_root: DEFAULT_REGISTRY_ROOT.into(),
            registry_timeout: Duration::from_secs(5),
            private_records: false,
            record_types: DEFAULT_RECORD_TYPES.split(',').map(str::to_owned).collect(),
            reprocess_after: Duration::from_secs(24 * 3600),
            deletion_peers: Vec::new(),
            verify_deletions: true,
            es_host,
            es_username: None,
            es_password: None,
            es_index: DEFAULT_ES_INDEX.into(),
            es_concurrency: 8,
            es_timeout: Duration::from_secs(5),
            workers: 4,
            max_attempts: 12,
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_millis(500),
            lease: Duration::from_secs(60),
            job_deadline: Duration::from_secs(300),
        }
    }

    /// Checks what clap cannot: ranges and relations between settings.
    ///
    /// # Errors
    /// The first [`ConfigError`] found, naming the env variable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |name, reason: &str| {
            Err(ConfigError {
                name,
                reason: reason.to_owned(),
            })
        };
        if self.peers.is_empty() {
            return bad("GUN_PEERS", "give at least one relay URL");
        }
        if self.record_types.iter().all(|t| t.trim().is_empty()) {
            return bad("GUNSYNC_RECORD_TYPES", "give at least one record type");
        }
        for record_type in self.record_types() {
            if let Err(e) = type_index_soul(&self.registry_root, record_type) {
                return Err(ConfigError {
                    name: "GUNSYNC_RECORD_TYPES",
                    reason: format!("{record_type:?} with root {:?}: {e}", self.registry_root),
                });
            }
        }
        if self.registry_timeout.is_zero() {
            return bad("GUN_REGISTRY_TIMEOUT_MS", "must be at least 1");
        }
        if self.es_timeout.is_zero() {
            return bad("GUNSYNC_ES_TIMEOUT_MS", "must be at least 1");
        }
        if self.workers == 0 {
            return bad("GUNSYNC_WORKERS", "must be at least 1");
        }
        if self.workers > 256 {
            return bad("GUNSYNC_WORKERS", "must be at most 256");
        }
        if self.max_attempts == 0 {
            return bad("GUNSYNC_MAX_ATTEMPTS", "must be at least 1");
        }
        if self.backoff_base.is_zero() {
            return bad("GUNSYNC_BACKOFF_BASE_MS", "must be at least 1");
        }
        if self.backoff_base > self.backoff_max {
            return Err(ConfigError {
                name: "GUNSYNC_BACKOFF_BASE_MS",
                reason: format!(
                    "{} ms is more than GUNSYNC_BACKOFF_MAX_MS ({} ms)",
                    self.backoff_base.as_millis(),
                    self.backoff_max.as_millis()
                ),
            });
        }
        if self.lease < Duration::from_millis(100) {
            return bad("GUNSYNC_LEASE_MS", "must be at least 100");
        }
        if self.es_concurrency == 0 {
            return bad("GUNSYNC_ES_CONCURRENCY", "must be at least 1");
        }
        if self.es_concurrency > MAX_ES_CONCURRENCY {
            return bad("GUNSYNC_ES_CONCURRENCY", "must be at most 1024");
        }
        if self.job_deadline < Duration::from_secs(1) {
            return bad("GUNSYNC_JOB_DEADLINE_MS", "must be at least 1000");
        }
        if let Some(stranger) = self
            .deletion_peers
            .iter()
            .find(|p| !self.peers.iter().any(|peer| peer == *p))
        {
            return Err(ConfigError {
                name: "GUNSYNC_DELETION_PEERS",
                reason: format!(
                    "{} is not one of the peers (GUN_PEERS)",
                    crate::domain::redacted(stranger)
                ),
            });
        }
        let index = &self.es_index;
        if index.is_empty()
            || index.len() > 255
            || index.starts_with(['-', '_', '+'])
            || index == "."
            || index == ".."
            || index.chars().any(|c| {
                c.is_ascii_uppercase() || r#"\/*?"<>| ,#:"#.contains(c) || c.is_whitespace()
            })
        {
            return bad(
                "GUNSYNC_ES_INDEX",
                "not a valid Elasticsearch index name (lowercase, no \\ / * ? \" < > | , # : or spaces)",
            );
        }
        Ok(())
    }

    /// The record types, trimmed, without empty entries.
    pub fn record_types(&self) -> impl Iterator<Item = &str> {
        self.record_types
            .iter()
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
    }

    /// The retry schedule.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            base: self.backoff_base,
            max: self.backoff_max,
            jitter: DEFAULT_BACKOFF_JITTER,
        }
    }

    /// Whether `peer`'s deletion registry is trusted (`GUNSYNC_DELETION_PEERS`; all by default).
    pub fn trusts_deletions_of(&self, peer: &Url) -> bool {
        self.deletion_peers.is_empty() || self.deletion_peers.contains(peer)
    }

    /// The worker pool's configuration.
    pub fn worker_config(&self) -> WorkerConfig {
        WorkerConfig {
            workers: self.workers,
            lease_for: self.lease,
            backoff: self.backoff(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            job_deadline: self.job_deadline,
            // A dead worker's job waits at most one lease term after expiry, however short
            // the lease (the default 15 s pass would hold a 1 s lease's job 15 times longer).
            reclaim_every: WorkerConfig::default().reclaim_every.min(self.lease),
            ..WorkerConfig::default()
        }
    }

    /// The relay client's limits.
    pub fn relay_options(&self) -> RelayOptions {
        RelayOptions {
            timeout: self.registry_timeout,
            ..RelayOptions::default()
        }
    }

    /// The search client's options (the password moves in as a `Secret`).
    pub fn search_options(&self) -> SearchOptions {
        SearchOptions {
            url: self.es_host.clone(),
            username: self.es_username.clone().filter(|u| !u.is_empty()),
            password: self.es_password.clone(),
            index: self.es_index.clone(),
            concurrency: self.es_concurrency,
            timeout: self.es_timeout,
            ..SearchOptions::default()
        }
    }
}

impl DaemonSettings {
    /// # Errors
    /// A zero interval while sync is enabled.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.sync_enabled && self.sync_interval < Duration::from_millis(10) {
            return Err(ConfigError {
                name: "GUN_SYNC_INTERVAL",
                reason: "must be at least 10 ms".into(),
            });
        }
        Ok(())
    }
}

/// Milliseconds as a `Duration`.
fn parse_millis(text: &str) -> Result<Duration, String> {
    text.trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| format!("{text:?} is not a whole number of milliseconds"))
}

/// An `http(s)` relay URL.
fn parse_peer(text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|e| format!("{text:?}: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        _ => Err(format!("{text:?}: a relay URL is http(s)://host[:port]")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
        #[command(flatten)]
        daemon: DaemonSettings,
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("gunsync").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_follow_design() {
        let cli = parse(&[]).unwrap();
        let s = cli.settings;
        assert_eq!(s.peers, vec![Url::parse("http://gun-relay:8765").unwrap()]);
        assert_eq!(s.record_types().count(), 12);
        assert_eq!(s.reprocess_after, Duration::from_secs(86_400));
        assert_eq!(s.backoff_base, Duration::from_secs(30));
        assert_eq!(s.backoff_max, Duration::from_secs(6 * 3600));
        assert_eq!(s.max_attempts, 12);
        assert_eq!(s.workers, 4);
        assert_eq!(s.es_index, "records");
        assert_eq!(s.es_concurrency, 8);
        assert!(!s.private_records);
        assert_eq!(cli.daemon.sync_interval, Duration::from_secs(300));
        assert!(cli.daemon.sync_enabled);
        assert_eq!(cli.daemon.listen.to_string(), "127.0.0.1:9464");
        assert!(s.validate().is_ok());
    }

    #[test]
    fn flags_convert_at_the_edge() {
        let cli = parse(&[
            "--peers",
            "http://a:1,http://b:2",
            "--sync-interval",
            "250",
            "--sync-enabled",
            "false",
            "--sync-private-records",
            "yes",
            "--es-password",
            "hunter2",
        ])
        .unwrap();
        assert_eq!(cli.settings.peers.len(), 2);
        assert_eq!(cli.daemon.sync_interval, Duration::from_millis(250));
        assert!(!cli.daemon.sync_enabled);
        assert!(cli.settings.private_records);
        assert!(!format!("{:?}", cli.settings).contains("hunter2"));
    }

    #[test]
    fn validation_rejects_each_bad_setting_by_name() {
        let table: &[(&[&str], &str)] = &[
            (&["--workers", "0"], "GUNSYNC_WORKERS"),
            (&["--max-attempts", "0"], "GUNSYNC_MAX_ATTEMPTS"),
            (
                &["--backoff-base-ms", "2000", "--backoff-max-ms", "1000"],
                "GUNSYNC_BACKOFF_BASE_MS",
            ),
            (&["--backoff-base-ms", "0"], "GUNSYNC_BACKOFF_BASE_MS"),
            (&["--lease-ms", "5"], "GUNSYNC_LEASE_MS"),
            (&["--es-concurrency", "0"], "GUNSYNC_ES_CONCURRENCY"),
            (
                &["--es-concurrency", "4611686018427387904"],
                "GUNSYNC_ES_CONCURRENCY",
            ),
            (&["--job-deadline-ms", "10"], "GUNSYNC_JOB_DEADLINE_MS"),
            (
                &["--peers", "http://a:1", "--deletion-peers", "http://b:2"],
                "GUNSYNC_DELETION_PEERS",
            ),
            (&["--es-index", "Records"], "GUNSYNC_ES_INDEX"),
            (&["--record-types", "bad type"], "GUNSYNC_RECORD_TYPES"),
            (&["--registry-timeout-ms", "0"], "GUN_REGISTRY_TIMEOUT_MS"),
            (&["--es-timeout-ms", "0"], "GUNSYNC_ES_TIMEOUT_MS"),
        ];
        for (args, name) in table {
            let cli = parse(args).unwrap();
            let err = cli.settings.validate().unwrap_err();
            assert_eq!(err.name, *name, "{args:?}");
        }
    }

    #[test]
    fn parse_errors_are_clap_errors() {
        for args in [
            &["--sync-interval", "5s"][..],
            &["--peers", "ftp://relay"],
            &["--peers", "not a url"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }
}
