//! Circuits and type-index reads on PostgreSQL (see the SQLite backend's `status.rs`). Each
//! write is one statement, so it runs outside an explicit transaction.

use gunsync_pg::status as sql;

use super::super::LedgerError;
use super::super::health::Track;
use super::super::status::CircuitView;
use super::PgLedger;
use crate::timestamp::Timestamp;

impl PgLedger {
    /// Records that `system`'s circuit is open (or still open, with a newer reason).
    pub(in crate::ledger) async fn record_circuit_open(
        &self,
        system: &str,
        reason: &str,
        since: Timestamp,
        next_probe_at: Timestamp,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        sql::open_circuit(
            &self.pool,
            system,
            reason,
            since.as_datetime(),
            next_probe_at.as_datetime(),
            now.as_datetime(),
        )
        .await
        .on_write(&self.health)?;
        self.health.succeeded();
        Ok(())
    }

    /// Records that `system`'s circuit closed; `None` forgets every circuit.
    pub(in crate::ledger) async fn record_circuit_closed(
        &self,
        system: Option<&str>,
    ) -> Result<(), LedgerError> {
        sql::close_circuits(&self.pool, system)
            .await
            .on_write(&self.health)?;
        self.health.succeeded();
        Ok(())
    }

    /// The open circuits, oldest first.
    pub(in crate::ledger) async fn circuits(&self) -> Result<Vec<CircuitView>, LedgerError> {
        let rows = sql::circuits(&self.pool).await.on_read(&self.health)?;
        Ok(rows
            .into_iter()
            .map(|r| CircuitView {
                system: r.system,
                reason: r.reason,
                since: r.since.into(),
                next_probe_at: r.next_probe_at.into(),
                updated_at: r.updated_at.into(),
            })
            .collect())
    }

    /// How many entries `record_type`'s index on `peer` listed at its last good read.
    pub(in crate::ledger) async fn index_entries_seen(
        &self,
        peer: &str,
        record_type: &str,
    ) -> Result<Option<i64>, LedgerError> {
        sql::index_entries(&self.pool, peer, record_type)
            .await
            .on_read(&self.health)
    }

    /// Records a good read of `record_type`'s index on `peer` that listed `entries` entries.
    pub(in crate::ledger) async fn record_index_read(
        &self,
        peer: &str,
        record_type: &str,
        entries: u64,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        let entries = i64::try_from(entries).unwrap_or(i64::MAX);
        sql::record_index_read(&self.pool, peer, record_type, entries, now.as_datetime())
            .await
            .on_write(&self.health)?;
        self.health.succeeded();
        Ok(())
    }

    /// Notes that a delete job removed one entry from `record_type`'s index on `peer`.
    pub(in crate::ledger) async fn record_index_removal(
        &self,
        peer: &str,
        record_type: &str,
    ) -> Result<(), LedgerError> {
        sql::record_index_removal(&self.pool, peer, record_type)
            .await
            .on_write(&self.health)?;
        self.health.succeeded();
        Ok(())
    }
}
