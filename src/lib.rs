//! gunsync mirrors OIP records published on GUN relays into Elasticsearch, and removes records
//! their publishers deleted, through a durable job ledger in SQLite.
//!
//! Layout (one concern a module):
//! * `ledger`: all SQL and the job state machine; nothing else touches the database.
//! * `worker`: the pool that leases jobs, runs handlers and records outcomes.
//! * `relay`: the GUN relay HTTP client (one shared client for every peer).
//! * `search`: the Elasticsearch client (the official crate behind a semaphore).
//! * `domain`: validated values from peers (`Soul`, `Did`) and the souls built from them.
//! * `emulator`: in-process GUN relay and strict Elasticsearch 8 emulators (tests, `demo`).
//! * `bench`: the ledger and worker benchmarks (`gunsync bench`).
//! * `cli`: the `gunsync` subcommands (DESIGN §6).
//! * `shutdown`: the two-level stop signal passed to every long-running loop.
//! * `secret`: a string whose `Debug` never shows it (the ES password).
//! * `telemetry`: tracing setup.
//! * `timestamp`: the one time type, stored as ISO-8601 UTC text.
pub mod bench;
pub mod cli;
pub mod domain;
pub mod emulator;
pub mod ledger;
pub mod relay;
pub mod search;
pub mod secret;
pub mod shutdown;
pub mod telemetry;
pub mod timestamp;
pub mod worker;
