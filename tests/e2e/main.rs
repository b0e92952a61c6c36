//! End-to-end tests: the real `gunsync` binary against in-process emulators of a GUN relay and a
//! strict Elasticsearch 8. One test binary (zero2prod), one module per feature.

mod daemon;
mod delete;
mod discover;
mod support;
mod sync;
mod sync_real_gun;
