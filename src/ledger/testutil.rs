//! Test factory for ledger unit tests: a fresh file-backed ledger (never `:memory:`, which would
//! give each pooled connection its own database) and rows seeded straight into any state.

use super::{JobId, JobKind, JobState, Ledger, LedgerOptions};
use crate::timestamp::Timestamp;

pub async fn ledger() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let ledger = Ledger::open(LedgerOptions::new(path.to_str().unwrap()))
        .await
        .unwrap();
    (dir, ledger)
}

/// A row to insert as-is, bypassing the state machine.
#[derive(Clone, Debug)]
pub struct JobSeed {
    pub kind: JobKind,
    pub key: String,
    pub state: JobState,
    pub attempts: u32,
    pub max_attempts: u32,
    pub run_at: Option<Timestamp>,
    pub processed_at: Option<Timestamp>,
    pub lease_expires_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub revision: Option<i64>,
}

impl Default for JobSeed {
    fn default() -> Self {
        JobSeed {
            kind: JobKind::Discover,
            key: format!("did:gun:seed:{}", uuid::Uuid::new_v4().simple()),
            state: JobState::Pending,
            attempts: 0,
            max_attempts: 12,
            run_at: None,
            processed_at: None,
            lease_expires_at: None,
            last_error: None,
            revision: None,
        }
    }
}

pub async fn seed(ledger: &Ledger, seed: JobSeed) -> JobId {
    let now = Timestamp::now();
    let running = seed.state == JobState::Running;
    let token = running.then(|| "seeded-lease".to_string());
    let lease_expires_at = running.then(|| {
        seed.lease_expires_at
            .unwrap_or(now.plus(std::time::Duration::from_secs(60)))
    });
    let processed_at = seed
        .processed_at
        .or(seed.state.is_finished().then_some(now));
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO jobs (kind, key, state, attempts, max_attempts, run_at, lease_token,
                           lease_expires_at, leased_by, leased_at, last_error, created_at, updated_at,
                           processed_at, revision)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(seed.kind.as_str())
    .bind(&seed.key)
    .bind(seed.state.as_str())
    .bind(seed.attempts as i64)
    .bind(seed.max_attempts as i64)
    .bind(seed.run_at.unwrap_or(now))
    .bind(&token)
    .bind(lease_expires_at)
    .bind(running.then_some("seed"))
    .bind(running.then_some(now))
    .bind(&seed.last_error)
    .bind(now)
    .bind(now)
    .bind(processed_at)
    .bind(seed.revision)
    .fetch_one(&ledger.writer)
    .await
    .unwrap();
    JobId(id)
}
