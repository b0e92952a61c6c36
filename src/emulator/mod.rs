//! In-process emulators of the external systems (a GUN relay and a strict Elasticsearch 8), used by
//! the tests and by `gunsync demo`.
pub mod es;
pub mod faults;
pub mod relay;
