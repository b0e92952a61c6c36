//! Deletions the ledger knows of, on PostgreSQL (see the SQLite backend's `lookup.rs`).

use std::collections::HashSet;

use gunsync_pg::lookup as sql;

use super::super::LedgerError;
use super::super::health::Track;
use super::super::lookup::{Deletion, LOOKUP_CHUNK, REFUSED_KEY};
use super::PgLedger;

impl PgLedger {
    /// Whether `did` was deleted by its publisher as far as the ledger knows: a `delete` job, in
    /// any state, that was not refused — still running ([`Deletion::InProgress`]) or over.
    pub(in crate::ledger) async fn deletion(&self, did: &str) -> Result<Deletion, LedgerError> {
        let states = sql::deletion_states(&self.pool, did, REFUSED_KEY)
            .await
            .on_read(&self.health)?;
        Ok(Deletion::of_states(&states))
    }

    /// The subset of `dids` whose deletion is not [`Deletion::None`].
    pub(in crate::ledger) async fn deleted_keys(
        &self,
        dids: &[String],
    ) -> Result<HashSet<String>, LedgerError> {
        let mut found = HashSet::new();
        for chunk in dids.chunks(LOOKUP_CHUNK) {
            let keys = sql::deleted_keys(&self.pool, chunk, REFUSED_KEY)
                .await
                .on_read(&self.health)?;
            found.extend(keys);
        }
        Ok(found)
    }
}
