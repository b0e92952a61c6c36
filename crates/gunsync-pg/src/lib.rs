//! The PostgreSQL ledger's schema (`migrations/`) and statements, each checked at compile time
//! against PostgreSQL (offline data in this crate's `.sqlx/`).
//!
//! gunsync's `ledger` module is the only user: it turns its API's types into the plain values these
//! functions take and the rows they return back into its own types, so every statement of the
//! PostgreSQL backend lives here and this crate knows nothing of gunsync. Each function runs one
//! statement on any executor (the pool, a connection or a transaction); transactions, fencing
//! decisions and errors belong to the caller.
//!
//! Conventions: timestamps are `DateTime<Utc>` (`timestamptz(3)` columns), ids `i64`, payloads
//! `serde_json::Value` (`jsonb`), batches are passed as JSON arrays or Postgres arrays.

pub use sqlx;

/// The schema, applied by `Ledger::open` (sqlx's PostgreSQL migrator holds an advisory lock while
/// it runs, so nodes starting together apply it once).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();
pub mod admin;
pub mod cycles;
pub mod dashboard;
pub mod enqueue;
pub mod finish;
pub mod import;
pub mod lease;
pub mod lookup;
pub mod node;
pub mod notify;
pub mod operator;
pub mod query;
pub mod reclaim;
pub mod status;
