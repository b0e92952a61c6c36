//! Test factory for ledger unit tests: a fresh file-backed ledger (never `:memory:`, which would
//! give each pooled connection its own database), a fresh PostgreSQL database, rows seeded
//! straight into any state, and [`both_backends!`] to run one test body on each backend.

use super::{Backend, JobId, JobKind, JobState, Ledger, LedgerOptions};
use crate::timestamp::Timestamp;

#[path = "../../tests/common/postgres.rs"]
mod postgres_db;
pub use postgres_db::PgTestDb;

/// A fresh PostgreSQL ledger in a database of its own.
pub async fn pg_ledger() -> (PgTestDb, Ledger) {
    let db = PgTestDb::create().await;
    let ledger = Ledger::open(LedgerOptions::new(&db.url)).await.unwrap();
    (db, ledger)
}

/// Runs each test body twice: on a fresh SQLite ledger and on a fresh PostgreSQL one (modules
/// `sqlite` and `postgres`, so a failure names the backend). The body sees the ledger as the
/// identifier given in `async fn name(ledger)`.
macro_rules! both_backends {
    ($( $(#[$meta:meta])* async fn $name:ident($ledger:ident) $body:block )*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                #[tokio::test]
                async fn $name() {
                    let (_db, $ledger) = $crate::ledger::testutil::ledger().await;
                    $body
                }
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                #[tokio::test]
                async fn $name() {
                    let (_db, $ledger) = $crate::ledger::testutil::pg_ledger().await;
                    $body
                }
            )*
        }
    };
}
pub(crate) use both_backends;

impl Ledger {
    /// The SQLite backend, for the tests that reach into the file (locks, a full disk).
    pub(crate) fn sqlite(&self) -> &super::SqliteLedger {
        match &self.backend {
            Backend::Sqlite(l) => l,
            Backend::Postgres(_) => panic!("an SQLite-only test was given a PostgreSQL ledger"),
        }
    }
}

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
    let pg = match &ledger.backend {
        Backend::Sqlite(_) => None,
        Backend::Postgres(l) => Some(l.pool.clone()),
    };
    if let Some(pool) = pg {
        let at = |t: Timestamp| t.as_datetime();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO jobs (kind, key, state, attempts, max_attempts, run_at, lease_token,
                               lease_expires_at, leased_by, leased_at, last_error, created_at,
                               updated_at, processed_at, revision)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id",
        )
        .bind(seed.kind.as_str())
        .bind(&seed.key)
        .bind(seed.state.as_str())
        .bind(seed.attempts as i64)
        .bind(seed.max_attempts as i64)
        .bind(at(seed.run_at.unwrap_or(now)))
        .bind(&token)
        .bind(lease_expires_at.map(at))
        .bind(running.then_some("seed"))
        .bind(running.then_some(at(now)))
        .bind(&seed.last_error)
        .bind(at(now))
        .bind(at(now))
        .bind(processed_at.map(at))
        .bind(seed.revision)
        .fetch_one(&pool)
        .await
        .unwrap();
        return JobId(id);
    }
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
    .fetch_one(&ledger.sqlite().writer)
    .await
    .unwrap();
    JobId(id)
}
