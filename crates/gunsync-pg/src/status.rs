//! The daemon's view of the systems around it: open circuits (`circuits`) and the last good read
//! of each type index on each peer (`index_reads`).

use chrono::{DateTime, Utc};

/// A `circuits` row.
#[derive(Debug, Clone)]
pub struct CircuitRow {
    pub system: String,
    pub reason: String,
    pub since: DateTime<Utc>,
    pub next_probe_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Records `system`'s circuit open; an already open one keeps its `since`.
pub async fn open_circuit<'e>(
    e: impl sqlx::PgExecutor<'e>,
    system: &str,
    reason: &str,
    since: DateTime<Utc>,
    next_probe_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO circuits (system, reason, since, next_probe_at, updated_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (system) DO UPDATE
         SET reason = excluded.reason, next_probe_at = excluded.next_probe_at,
             updated_at = excluded.updated_at",
        system,
        reason,
        since,
        next_probe_at,
        now,
    )
    .execute(e)
    .await?;
    Ok(())
}

/// Forgets `system`'s circuit, or every circuit when `None`.
pub async fn close_circuits<'e>(
    e: impl sqlx::PgExecutor<'e>,
    system: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "DELETE FROM circuits WHERE $1::text IS NULL OR system = $1",
        system
    )
    .execute(e)
    .await?;
    Ok(())
}

/// The open circuits, oldest first.
pub async fn circuits<'e>(e: impl sqlx::PgExecutor<'e>) -> sqlx::Result<Vec<CircuitRow>> {
    sqlx::query_as!(
        CircuitRow,
        "SELECT system, reason, since, next_probe_at, updated_at FROM circuits
         ORDER BY since, system"
    )
    .fetch_all(e)
    .await
}

/// The entries of `record_type`'s index on `peer` at its last good read.
pub async fn index_entries<'e>(
    e: impl sqlx::PgExecutor<'e>,
    peer: &str,
    record_type: &str,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar!(
        "SELECT entries FROM index_reads WHERE peer = $1 AND record_type = $2",
        peer,
        record_type,
    )
    .fetch_optional(e)
    .await
}

/// Records a good read of `record_type`'s index on `peer` that listed `entries` entries.
pub async fn record_index_read<'e>(
    e: impl sqlx::PgExecutor<'e>,
    peer: &str,
    record_type: &str,
    entries: i64,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO index_reads (peer, record_type, entries, read_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (peer, record_type) DO UPDATE
         SET entries = excluded.entries, read_at = excluded.read_at",
        peer,
        record_type,
        entries,
        now,
    )
    .execute(e)
    .await?;
    Ok(())
}

/// One entry fewer in `record_type`'s index on `peer` (never below zero).
pub async fn record_index_removal<'e>(
    e: impl sqlx::PgExecutor<'e>,
    peer: &str,
    record_type: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE index_reads SET entries = GREATEST(entries - 1, 0)
         WHERE peer = $1 AND record_type = $2",
        peer,
        record_type,
    )
    .execute(e)
    .await?;
    Ok(())
}
