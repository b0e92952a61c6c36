//! What the daemon learns about the systems around it, kept beside the jobs so every process can
//! show it: open circuits of the worker pool (`circuits`) and the last good read of each type
//! index on each peer (`index_reads`, so a relay that suddenly answers 404 for a large index is
//! an error, not an empty index).

use super::health::Track;
use super::{LedgerError, SqliteLedger};
use crate::timestamp::Timestamp;

/// An open circuit as recorded by the pool that opened it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CircuitView {
    pub system: String,
    pub reason: String,
    pub since: Timestamp,
    pub next_probe_at: Timestamp,
    pub updated_at: Timestamp,
}

impl SqliteLedger {
    pub async fn record_circuit_open(
        &self,
        system: &str,
        reason: &str,
        since: Timestamp,
        next_probe_at: Timestamp,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        let mut tx = self.begin_write().await?;
        sqlx::query!(
            "INSERT INTO circuits (system, reason, since, next_probe_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (system) DO UPDATE
             SET reason = excluded.reason, next_probe_at = excluded.next_probe_at,
                 updated_at = excluded.updated_at",
            system,
            reason,
            since,
            next_probe_at,
            now,
        )
        .execute(&mut *tx)
        .await
        .on_write(&self.health)?;
        tx.commit().await
    }

    pub async fn record_circuit_closed(&self, system: Option<&str>) -> Result<(), LedgerError> {
        let mut tx = self.begin_write().await?;
        sqlx::query!(
            "DELETE FROM circuits WHERE ?1 IS NULL OR system = ?1",
            system
        )
        .execute(&mut *tx)
        .await
        .on_write(&self.health)?;
        tx.commit().await
    }

    pub async fn circuits(&self) -> Result<Vec<CircuitView>, LedgerError> {
        sqlx::query_as!(
            CircuitView,
            r#"SELECT system AS "system!: String", reason AS "reason!: String",
                      since AS "since!: Timestamp", next_probe_at AS "next_probe_at!: Timestamp",
                      updated_at AS "updated_at!: Timestamp"
               FROM circuits ORDER BY since"#
        )
        .fetch_all(&self.reader)
        .await
        .on_read(&self.health)
    }

    pub async fn index_entries_seen(
        &self,
        peer: &str,
        record_type: &str,
    ) -> Result<Option<i64>, LedgerError> {
        sqlx::query_scalar!(
            r#"SELECT entries AS "entries!: i64" FROM index_reads WHERE peer = ?1 AND record_type = ?2"#,
            peer,
            record_type,
        )
        .fetch_optional(&self.reader)
        .await
        .on_read(&self.health)
    }

    pub async fn record_index_read(
        &self,
        peer: &str,
        record_type: &str,
        entries: u64,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        let entries = i64::try_from(entries).unwrap_or(i64::MAX);
        let mut tx = self.begin_write().await?;
        sqlx::query!(
            "INSERT INTO index_reads (peer, record_type, entries, read_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (peer, record_type) DO UPDATE
             SET entries = excluded.entries, read_at = excluded.read_at",
            peer,
            record_type,
            entries,
            now,
        )
        .execute(&mut *tx)
        .await
        .on_write(&self.health)?;
        tx.commit().await
    }

    pub async fn record_index_removal(
        &self,
        peer: &str,
        record_type: &str,
    ) -> Result<(), LedgerError> {
        let mut tx = self.begin_write().await?;
        sqlx::query!(
            "UPDATE index_reads SET entries = max(entries - 1, 0) WHERE peer = ?1 AND record_type = ?2",
            peer,
            record_type,
        )
        .execute(&mut *tx)
        .await
        .on_write(&self.health)?;
        tx.commit().await
    }
}
