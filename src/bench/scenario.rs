//! The records the sync and soak benchmarks seed into the relay emulator: valid OIP v0.8 records
//! spread round-robin over record types, shaped like published ones (`data.basic`, a per-type
//! child and `oip.creator` are nested nodes, so reading one follows links as on a real relay).

use serde_json::json;

use crate::domain::{Did, Soul, publisher_hash};
use crate::emulator::relay::{PutRejected, RelayEmulator};

/// The public key of the benchmarks' publisher: souls start with its hash (12 hex digits, as
/// OIP's `computeSoul` makes them), and it marks the deletions the soak seeds.
pub const PUBLISHER_KEY: &str = "gunsync-bench-publisher";

/// The soul of benchmark record `i`.
pub fn soul(record_type: &str, i: u64) -> Soul {
    Soul::parse(&format!(
        "{}:{record_type}-{i:07}",
        publisher_hash(PUBLISHER_KEY)
    ))
    .expect("benchmark souls are valid")
}

/// Seeds `count` records, record `i` of type `types[i % types.len()]`; returns their DIDs in
/// seeding order.
///
/// # Errors
/// [`PutRejected`] if the emulator refuses a record (it never should).
pub fn seed_records(
    relay: &RelayEmulator,
    count: u64,
    types: &[String],
) -> Result<Vec<Did>, PutRejected> {
    let mut dids = Vec::with_capacity(count as usize);
    for i in 0..count {
        let record_type = types[(i % types.len() as u64) as usize].as_str();
        let soul = soul(record_type, i);
        relay.seed_record(
            soul.as_str(),
            record_type,
            json!({
                "basic": { "name": format!("bench {record_type} {i}"), "language": "en" },
                record_type: { "index": i },
            }),
            json!({
                "ver": "0.8.0",
                "creator": { "didAddress": "did:arweave:bench-creator", "publicKey": "bench" },
            }),
        )?;
        dids.push(Did::from_soul(&soul));
    }
    Ok(dids)
}
