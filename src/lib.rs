//! gunsync mirrors OIP records published on GUN relays into Elasticsearch, and removes records
//! their publishers deleted, through a durable job ledger in SQLite.
//!
//! Layout (one concern a module):
//! * `ledger`: all SQL and the job state machine; nothing else touches the database.
//! * `worker`: the pool that leases jobs, runs handlers and records outcomes.
//! * `sync`: sync cycles: read registries and indexes, enqueue jobs (`plan` is pure).
//! * `jobs`: the `discover` and `delete` handlers and client-error classification.
//! * `relay`: the GUN relay client (the only HTTP to relays).
//! * `search`: the Elasticsearch client (the only HTTP to ES).
//! * `retry_after`: the `Retry-After` header, read one way for both clients.
//! * `domain`: `Soul` and `Did`, checked once at the edge, and the registry souls.
//! * `config`: the settings of `run` and `sync` (env names of DESIGN §5–6), validated once.
//! * `daemon`: `gunsync run` assembled: clients, worker pool, sync loop, HTTP, one shutdown.
//! * `http`: `/healthz`, `/metrics`, `/health/memory`.
//! * `cli`: the `gunsync` subcommands (DESIGN §6).
//! * `demo`: `gunsync demo`, the daemon against in-process emulators.
//! * `emulator`: in-process GUN relay and strict ES 8 emulators for tests and `gunsync demo`.
//! * `bench`: the ledger and worker benchmarks (`gunsync bench`).
//! * `shutdown`: the two-level stop signal passed to every long-running loop.
//! * `secret`: a string whose formatting never reveals it (the ES password).
//! * `telemetry`: tracing setup.
//! * `timestamp`: the one time type, stored as ISO-8601 UTC text.
pub mod bench;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod domain;
pub mod emulator;
pub mod http;
pub mod jobs;
pub mod ledger;
pub mod relay;
pub mod retry_after;
pub mod search;
pub mod secret;
pub mod shutdown;
pub mod sync;
pub mod telemetry;
pub mod timestamp;
pub mod worker;
