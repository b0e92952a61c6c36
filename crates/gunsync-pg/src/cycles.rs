//! The `sync_cycles` table: one row per cycle and peer.

use chrono::{DateTime, Utc};

/// A cycle's counts as stored.
#[derive(Debug, Clone, Copy, Default)]
pub struct CycleCounts {
    pub deletions_seen: i64,
    pub records_seen: i64,
    pub delete_enqueued: i64,
    pub discover_enqueued: i64,
    pub rejected: i64,
    pub deletions_ignored: i64,
}

/// Records that a cycle started on `peer`; returns its id.
pub async fn start<'e>(
    e: impl sqlx::PgExecutor<'e>,
    peer: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        "INSERT INTO sync_cycles (peer, started_at) VALUES ($1, $2) RETURNING id",
        peer,
        now,
    )
    .fetch_one(e)
    .await
}

/// Records how cycle `id` ended.
pub async fn finish<'e>(
    e: impl sqlx::PgExecutor<'e>,
    id: i64,
    counts: CycleCounts,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE sync_cycles
         SET finished_at = $1, deletions_seen = $2, records_seen = $3, delete_enqueued = $4,
             discover_enqueued = $5, rejected = $6, deletions_ignored = $7, error = $8
         WHERE id = $9",
        now,
        counts.deletions_seen,
        counts.records_seen,
        counts.delete_enqueued,
        counts.discover_enqueued,
        counts.rejected,
        counts.deletions_ignored,
        error,
        id,
    )
    .execute(e)
    .await?;
    Ok(())
}

/// When the most recent cycle finished (`None` = none has).
pub async fn last_finished_at<'e>(
    e: impl sqlx::PgExecutor<'e>,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar!("SELECT max(finished_at) FROM sync_cycles")
        .fetch_one(e)
        .await
}

/// Deletes up to `limit` of the oldest cycles that started before `cutoff`; returns how many.
pub async fn prune<'e>(
    e: impl sqlx::PgExecutor<'e>,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "DELETE FROM sync_cycles WHERE id IN (
             SELECT id FROM sync_cycles WHERE started_at < $1 ORDER BY started_at LIMIT $2)",
        cutoff,
        limit,
    )
    .execute(e)
    .await?;
    Ok(done.rows_affected())
}
