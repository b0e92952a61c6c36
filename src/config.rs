//! Settings of `gunsync run` and `gunsync sync`: clap derive over the env names of DESIGN §5–6
//! (OIP's names first), converted at the edge (milliseconds → `Duration`, lists → `Vec`, OIP's
//! peer URLs → relay URLs, the ES password → `Secret`) and validated once. The record types a
//! cycle reads are chosen here, as OIP chooses them. Commands that only read the ledger never
//! see these.

use std::env;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use clap::Args;
use clap::builder::BoolishValueParser;
use url::Url;

use crate::domain::{DEFAULT_REGISTRY_ROOT, type_index_soul};
use crate::ledger::Backoff;
use crate::relay::{
    DEFAULT_MAX_INDEX_BYTES, DEFAULT_RECORD_MAX_BYTES, DEFAULT_RECORD_MAX_NODES, RecordBudget,
    RelayOptions,
};
use crate::search::SearchOptions;
use crate::secret::Secret;
use crate::worker::WorkerConfig;

/// Relay URLs when neither `GUN_EXTERNAL_PEERS` nor `GUN_PEERS` names one.
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
/// OIP's record types, the templates of its `config/templates.config.js` in that order: what its
/// sync reads by default (`media` is not one). The misspelt `userFitnessAchievment` is OIP's.
pub const OIP_RECORD_TYPES: [&str; 37] = [
    "basic",
    "creatorRegistration",
    "associatedURLOnWeb",
    "text",
    "image",
    "video",
    "post",
    "podcast",
    "jfkFilesPageOfDocument",
    "jfkFilesDocument",
    "exercise",
    "workout",
    "recipe",
    "nutritionalInfo",
    "podcastShow",
    "modelProvider",
    "conversationSession",
    "multiResolutionGif",
    "organization",
    "fitnessEquipment",
    "userFitnessProfile",
    "workoutSchedule",
    "mealPlan",
    "exerciseResult",
    "workoutCompletion",
    "weightEntry",
    "shoppingList",
    "userFitnessAchievment",
    "accessControl",
    "music",
    "summaryNutritionalInfoPerServing",
    "exerciseMETvalues",
    "notes",
    "audio",
    "transcriptionEngine",
    "noteChunks",
    "musicReleaseSimple",
];
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
    /// GUN relay URLs, comma-separated; `ws(s)://host:port/gun` becomes
    /// `http(s)://host:port/gun-relay` [env: GUN_EXTERNAL_PEERS, else GUN_PEERS] [default:
    /// http://gun-relay:8765]
    // Not `env = …`: OIP reads two variables, and an empty GUN_EXTERNAL_PEERS (as in OIP's
    // example env) falls through to GUN_PEERS; see `peers_from_env`.
    #[arg(long = "peers", value_delimiter = ',', default_value = peers_from_env(), hide_default_value = true, value_parser = parse_peer)]
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
    /// Which of OIP's record types a cycle reads: all, whitelist or blacklist
    #[arg(long = "record-type-index-mode", env = "RECORD_TYPE_INDEX_MODE", default_value = "all", value_parser = RecordTypeIndexMode::from_str)]
    pub record_type_index_mode: RecordTypeIndexMode,
    /// Record types read in whitelist mode, comma-separated (none: all, as in OIP)
    #[arg(
        long = "record-type-index-whitelist",
        env = "RECORD_TYPE_INDEX_WHITELIST",
        value_delimiter = ','
    )]
    pub record_type_index_whitelist: Vec<String>,
    /// OIP record types not read in blacklist mode, comma-separated
    #[arg(
        long = "record-type-index-blacklist",
        env = "RECORD_TYPE_INDEX_BLACKLIST",
        value_delimiter = ','
    )]
    pub record_type_index_blacklist: Vec<String>,
    /// Record types whose indexes a cycle reads, comma-separated; overrides RECORD_TYPE_INDEX_*
    /// [default: OIP's 37 types, as RECORD_TYPE_INDEX_MODE selects them]
    #[arg(long, env = "GUNSYNC_RECORD_TYPES", value_delimiter = ',')]
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
    /// Most nodes one record read may fetch (its links followed); over it the job is dead
    #[arg(long = "record-max-nodes", env = "GUNSYNC_RECORD_MAX_NODES", default_value_t = DEFAULT_RECORD_MAX_NODES)]
    pub record_max_nodes: usize,
    /// Most bytes one record read may fetch; over it the job is dead
    #[arg(long = "record-max-bytes", env = "GUNSYNC_RECORD_MAX_BYTES", default_value_t = DEFAULT_RECORD_MAX_BYTES)]
    pub record_max_bytes: usize,
    /// Largest type index or deletion registry read, in bytes (parsed as a stream)
    #[arg(long = "index-max-bytes", env = "GUNSYNC_INDEX_MAX_BYTES", default_value_t = DEFAULT_MAX_INDEX_BYTES)]
    pub index_max_bytes: usize,
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
    /// Address of /healthz, /metrics, /health/memory and the dashboard (/ui)
    #[arg(long, env = "GUNSYNC_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Token the dashboard asks for before any action (and, off loopback, before any page)
    #[arg(long = "ui-token", env = "GUNSYNC_UI_TOKEN", hide_env_values = true)]
    pub ui_token: Option<Secret>,
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
            record_type_index_mode: RecordTypeIndexMode::All,
            record_type_index_whitelist: Vec::new(),
            record_type_index_blacklist: Vec::new(),
            record_types: Vec::new(),
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
            record_max_nodes: DEFAULT_RECORD_MAX_NODES,
            record_max_bytes: DEFAULT_RECORD_MAX_BYTES,
            index_max_bytes: DEFAULT_MAX_INDEX_BYTES,
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
        let types_from = self.record_types_source();
        if self.record_types().next().is_none() {
            return bad(
                types_from,
                "selects no record type: nothing would be discovered",
            );
        }
        for record_type in self.record_types() {
            if let Err(e) = type_index_soul(&self.registry_root, record_type) {
                return Err(ConfigError {
                    name: types_from,
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
        if self.record_max_nodes == 0 {
            return bad("GUNSYNC_RECORD_MAX_NODES", "must be at least 1");
        }
        if self.record_max_bytes < 1024 {
            return bad("GUNSYNC_RECORD_MAX_BYTES", "must be at least 1024");
        }
        if self.index_max_bytes < 1024 {
            return bad("GUNSYNC_INDEX_MAX_BYTES", "must be at least 1024");
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

    /// The record types whose indexes a cycle reads: `GUNSYNC_RECORD_TYPES` when it names any,
    /// else OIP's choice ([`oip_record_types`]).
    pub fn record_types(&self) -> impl Iterator<Item = &str> {
        let explicit: Vec<&str> = names(&self.record_types).collect();
        if explicit.is_empty() {
            oip_record_types(
                self.record_type_index_mode,
                &self.record_type_index_whitelist,
                &self.record_type_index_blacklist,
            )
        } else {
            explicit
        }
        .into_iter()
    }

    /// The variable [`Settings::record_types`] comes from, for error messages.
    fn record_types_source(&self) -> &'static str {
        let whitelisted = names(&self.record_type_index_whitelist).next().is_some();
        if names(&self.record_types).next().is_some() {
            "GUNSYNC_RECORD_TYPES"
        } else {
            match self.record_type_index_mode {
                RecordTypeIndexMode::Whitelist if whitelisted => "RECORD_TYPE_INDEX_WHITELIST",
                RecordTypeIndexMode::Blacklist => "RECORD_TYPE_INDEX_BLACKLIST",
                _ => "RECORD_TYPE_INDEX_MODE",
            }
        }
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
            prefetch: self.workers * crate::worker::PREFETCH_PER_WORKER,
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
            max_index_bytes: self.index_max_bytes,
            record_budget: RecordBudget {
                max_nodes: self.record_max_nodes,
                max_bytes: self.record_max_bytes,
            },
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

/// `RECORD_TYPE_INDEX_MODE`: how [`oip_record_types`] chooses among [`OIP_RECORD_TYPES`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecordTypeIndexMode {
    /// Every OIP record type.
    #[default]
    All,
    /// Only `RECORD_TYPE_INDEX_WHITELIST` (every OIP type when it names none, as in OIP).
    Whitelist,
    /// Every OIP record type but those of `RECORD_TYPE_INDEX_BLACKLIST`.
    Blacklist,
}

impl FromStr for RecordTypeIndexMode {
    type Err = String;

    /// `all`, `whitelist` or `blacklist`, in any case (OIP's indexer lower-cases the mode); empty
    /// is `all`, as in OIP.
    ///
    /// # Errors
    /// Any other value. OIP's sync silently reads every type then; gunsync refuses to guess.
    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "" | "all" => Ok(Self::All),
            "whitelist" => Ok(Self::Whitelist),
            "blacklist" => Ok(Self::Blacklist),
            _ => Err(format!(
                "RECORD_TYPE_INDEX_MODE {text:?}: expected all, whitelist or blacklist"
            )),
        }
    }
}

/// The record types OIP's sync reads (`getRecordTypes()` in `helpers/oipGunRegistry.js`): every
/// OIP type, the whitelist (as given, unknown types included; every OIP type when it names
/// none), or every OIP type not blacklisted. List entries are trimmed and empty ones dropped.
pub fn oip_record_types<'a>(
    mode: RecordTypeIndexMode,
    whitelist: &'a [String],
    blacklist: &'a [String],
) -> Vec<&'a str> {
    let whitelist: Vec<&str> = names(whitelist).collect();
    match mode {
        RecordTypeIndexMode::Whitelist if !whitelist.is_empty() => whitelist,
        RecordTypeIndexMode::Blacklist => {
            let blacklist: Vec<&str> = names(blacklist).collect();
            OIP_RECORD_TYPES
                .into_iter()
                .filter(|t| !blacklist.contains(t))
                .collect()
        }
        _ => OIP_RECORD_TYPES.to_vec(),
    }
}

/// A comma-separated list's entries, trimmed, without empty ones.
fn names(list: &[String]) -> impl Iterator<Item = &str> {
    list.iter().map(|t| t.trim()).filter(|t| !t.is_empty())
}

/// The default of `--peers`: the list [`peer_list`] picks from the environment, read once.
fn peers_from_env() -> &'static str {
    static PEERS: OnceLock<String> = OnceLock::new();
    PEERS.get_or_init(|| {
        let external = env::var("GUN_EXTERNAL_PEERS").ok();
        let peers = env::var("GUN_PEERS").ok();
        peer_list(external.as_deref(), peers.as_deref())
    })
}

/// The relay list OIP's sync reads (`parsePeerNodes`): `GUN_EXTERNAL_PEERS` when it names a
/// peer, else `GUN_PEERS`, else [`DEFAULT_PEERS`]; entries trimmed, empty ones dropped.
pub fn peer_list(external_peers: Option<&str>, peers: Option<&str>) -> String {
    [external_peers, peers]
        .into_iter()
        .flatten()
        .map(|list| {
            let entries: Vec<&str> = list
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect();
            entries.join(",")
        })
        .find(|list| !list.is_empty())
        .unwrap_or_else(|| DEFAULT_PEERS.to_owned())
}

/// A relay URL, converted as OIP's sync converts its peers: `ws://` becomes `http://`, `wss://`
/// becomes `https://`, and a path ending in `/gun` (GUN's websocket endpoint) becomes
/// `…/gun-relay` (the relay's HTTP API behind OIP's proxy); any other `http(s)` URL is used as
/// given. OIP does this with substring replacements that also rewrite a host starting with
/// `gun` (`http://gunhost:8765` → `http://gun-relayhost:8765`); only the scheme and the path
/// are rewritten here.
///
/// # Errors
/// Not a URL, or a scheme other than `http`, `https`, `ws` and `wss`.
pub fn parse_peer(text: &str) -> Result<Url, String> {
    let mut url = Url::parse(text.trim()).map_err(|e| format!("{text:?}: {e}"))?;
    let http = match url.scheme() {
        "ws" | "http" => "http",
        "wss" | "https" => "https",
        _ => {
            return Err(format!(
                "{text:?}: a relay URL is http(s)://host[:port] or ws(s)://host[:port]/gun"
            ));
        }
    };
    // Between special schemes (ws, wss, http, https) the switch cannot fail.
    url.set_scheme(http)
        .map_err(|()| format!("{text:?}: cannot be turned into an {http} URL"))?;
    if let Some(prefix) = url.path().trim_end_matches('/').strip_suffix("/gun") {
        let path = format!("{prefix}/gun-relay");
        url.set_path(&path);
    }
    Ok(url)
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
    fn every_setting_is_in_example_env_and_the_readme() {
        use clap::CommandFactory;
        let example = include_str!("../example.env");
        let readme = include_str!("../README.md");
        let command = Cli::command();
        let names: Vec<String> = command
            .get_arguments()
            .filter_map(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .collect();
        assert!(names.len() > 25, "{names:?}");
        for name in names {
            assert!(example.contains(&name), "{name} missing from example.env");
            assert!(
                readme.contains(&format!("`{name}`")),
                "{name} missing from README.md"
            );
        }
    }

    #[test]
    fn defaults_follow_design() {
        let cli = parse(&[]).unwrap();
        let s = cli.settings;
        assert_eq!(s.peers, vec![Url::parse("http://gun-relay:8765").unwrap()]);
        assert_eq!(s.record_types().collect::<Vec<_>>(), OIP_RECORD_TYPES);
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
            (
                &[
                    "--record-type-index-mode",
                    "whitelist",
                    "--record-type-index-whitelist",
                    "post,bad type",
                ],
                "RECORD_TYPE_INDEX_WHITELIST",
            ),
            (&["--registry-root", "bad root"], "RECORD_TYPE_INDEX_MODE"),
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
            &["--record-type-index-mode", "allow"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn record_types_are_chosen_as_oip_chooses_them() {
        use RecordTypeIndexMode::{All, Blacklist, Whitelist};
        let list = |text: &str| text.split(',').map(str::to_owned).collect::<Vec<_>>();
        let all = OIP_RECORD_TYPES.to_vec();
        let without = |gone: &[&str]| {
            let mut types = all.clone();
            types.retain(|t| !gone.contains(t));
            types
        };
        let table = [
            (All, "post", "post", all.clone()),
            (Whitelist, "post, image ,,", "", vec!["post", "image"]),
            (Whitelist, "customType", "", vec!["customType"]),
            (Whitelist, " , ", "post", all.clone()),
            (
                Blacklist,
                "post",
                " podcast,podcastShow ,",
                without(&["podcast", "podcastShow"]),
            ),
            (Blacklist, "", "notAType", all.clone()),
            (Blacklist, "", "", all.clone()),
        ];
        for (mode, whitelist, blacklist, expected) in table {
            let (whitelist, blacklist) = (list(whitelist), list(blacklist));
            let got = oip_record_types(mode, &whitelist, &blacklist);
            assert_eq!(got, expected, "{mode:?} {whitelist:?} {blacklist:?}");
        }
    }

    #[test]
    fn index_modes_parse_in_any_case_and_empty_is_all() {
        use RecordTypeIndexMode::{All, Blacklist, Whitelist};
        let table = [
            ("", Ok(All)),
            ("all", Ok(All)),
            ("ALL", Ok(All)),
            ("whitelist", Ok(Whitelist)),
            ("Whitelist", Ok(Whitelist)),
            ("blacklist", Ok(Blacklist)),
            (" all", Err(())),
            ("allow", Err(())),
        ];
        for (text, expected) in table {
            assert_eq!(
                text.parse::<RecordTypeIndexMode>().map_err(|_| ()),
                expected,
                "{text:?}"
            );
        }
    }

    #[test]
    fn an_unknown_index_mode_is_a_one_line_error_naming_the_variable() {
        let err = parse(&["--record-type-index-mode", "Allow"]).unwrap_err();
        let first = err.render().to_string();
        let first = first.lines().next().unwrap();
        assert!(
            first.contains("RECORD_TYPE_INDEX_MODE \"Allow\""),
            "{first}"
        );
    }

    #[test]
    fn explicit_record_types_override_the_index_mode() {
        let cli = parse(&[
            "--record-type-index-mode",
            "whitelist",
            "--record-type-index-whitelist",
            "post",
            "--record-types",
            "recipe, workout",
        ])
        .unwrap();
        assert_eq!(
            cli.settings.record_types().collect::<Vec<_>>(),
            ["recipe", "workout"]
        );
        let cli = parse(&[
            "--record-type-index-mode",
            "blacklist",
            "--record-type-index-blacklist",
            "basic",
        ])
        .unwrap();
        assert_eq!(cli.settings.record_types().count(), 36);
        let cli = parse(&["--record-types", " , "]).unwrap();
        assert_eq!(cli.settings.record_types().count(), 37);
    }

    #[test]
    fn a_blacklist_of_every_type_is_refused() {
        let every = OIP_RECORD_TYPES.join(",");
        let cli = parse(&[
            "--record-type-index-mode",
            "blacklist",
            "--record-type-index-blacklist",
            &every,
        ])
        .unwrap();
        let err = cli.settings.validate().unwrap_err();
        assert_eq!(err.name, "RECORD_TYPE_INDEX_BLACKLIST");
    }

    #[test]
    fn external_peers_come_before_gun_peers_and_blank_lists_fall_through() {
        let table = [
            (Some("wss://a/gun"), Some("http://b:1"), "wss://a/gun"),
            (
                Some(""),
                Some("http://gun-relay:8765"),
                "http://gun-relay:8765",
            ),
            (
                Some(" , "),
                Some("http://b:1, http://c:2,"),
                "http://b:1,http://c:2",
            ),
            (None, Some("http://b:1"), "http://b:1"),
            (Some("http://a:1"), None, "http://a:1"),
            (None, Some(""), DEFAULT_PEERS),
            (None, None, DEFAULT_PEERS),
        ];
        for (external, peers, expected) in table {
            assert_eq!(
                peer_list(external, peers),
                expected,
                "{external:?} {peers:?}"
            );
        }
    }

    #[test]
    fn peers_are_converted_as_oip_converts_them_without_its_substring_bug() {
        let table = [
            (
                "ws://oip-gun-relay-1:8765/gun",
                "http://oip-gun-relay-1:8765/gun-relay",
            ),
            ("wss://api.oip.onl/gun", "https://api.oip.onl/gun-relay"),
            ("wss://api.oip.onl/gun/", "https://api.oip.onl/gun-relay"),
            (
                "wss://node.example/oip/gun",
                "https://node.example/oip/gun-relay",
            ),
            (
                "https://api.oip.onl/gun-relay",
                "https://api.oip.onl/gun-relay",
            ),
            (
                "ws://localhost:8765/gun-relay",
                "http://localhost:8765/gun-relay",
            ),
            (
                "http://gun-relay:8765/gun",
                "http://gun-relay:8765/gun-relay",
            ),
            ("http://gun-relay:8765", "http://gun-relay:8765/"),
            ("http://gunhost:8765", "http://gunhost:8765/"),
            ("ws://gunhost:8765", "http://gunhost:8765/"),
            (
                "wss://gun.example.com/gundb",
                "https://gun.example.com/gundb",
            ),
            (" http://relay:8765 ", "http://relay:8765/"),
        ];
        for (peer, expected) in table {
            assert_eq!(
                parse_peer(peer).map(String::from).as_deref(),
                Ok(expected),
                "{peer}"
            );
        }
        for bad in [
            "ftp://relay",
            "not a url",
            "ws://",
            "file:///gun",
            "mailto:a@b",
        ] {
            assert!(parse_peer(bad).is_err(), "{bad}");
        }
        let cli = parse(&["--peers", "ws://a:1/gun,https://b/gun-relay"]).unwrap();
        let peers: Vec<String> = cli.settings.peers.iter().map(Url::to_string).collect();
        assert_eq!(peers, ["http://a:1/gun-relay", "https://b/gun-relay"]);
    }
}
