//! Black-box tests: each runs the real `gunsync` binary on a temporary ledger, against in-process
//! emulators of a GUN relay and a strict Elasticsearch 8 where it needs them, and checks what an
//! operator (or a script) sees: output, JSON shapes, exit statuses, and the ledger afterwards.
//! One test binary, one file per feature (zero2prod). `TEST_LOG=1` shows the binary's logs.

mod bad_input;
mod beside_daemon;
mod circuit;
mod cli;
mod daemon;
mod dashboard;
mod delete;
mod discover;
mod disk;
mod faults;
mod helpers;
mod hostile;
mod kill_matrix;
mod nodes;
mod oip;
mod operator;
mod postgres;
mod readme_sql;
mod requeue;
mod soak;
mod support;
mod sync;
mod sync_real_gun;
mod tmpfs;
