//! gunsync: mirrors OIP records from GUN relays into Elasticsearch through a durable job ledger.
pub mod domain;
pub mod emulator;
pub mod relay;
pub mod search;
pub mod secret;
