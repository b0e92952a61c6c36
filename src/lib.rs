//! gunsync mirrors OIP records published on GUN relays into Elasticsearch, and removes records
//! their publishers deleted, through a durable job ledger in SQLite.
//!
//! Layout (one concern a module):
//! * `bench`: the ledger and worker benchmarks (`gunsync bench`).
//! * `cli`: the `gunsync` subcommands (DESIGN §6).
//! * `ledger`: all SQL and the job state machine; nothing else touches the database.
//! * `worker`: the pool that leases jobs, runs handlers and records outcomes.
//! * `shutdown`: the two-level stop signal passed to every long-running loop.
//! * `telemetry`: tracing setup.
//! * `timestamp`: the one time type, stored as ISO-8601 UTC text.
pub mod bench;
pub mod cli;
pub mod ledger;
pub mod shutdown;
pub mod telemetry;
pub mod timestamp;
pub mod worker;
