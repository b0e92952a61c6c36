//! Deletions the ledger knows of: `delete` jobs, except dead ones whose payload records a refusal
//! under `refused_key`.

/// The states of the `delete` jobs of `did` that were not refused.
pub async fn deletion_states<'e>(
    e: impl sqlx::PgExecutor<'e>,
    did: &str,
    refused_key: &str,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!(
        "SELECT state FROM jobs
         WHERE kind = 'delete' AND key = $1
           AND NOT (state = 'dead' AND payload ->> $2::text IS NOT NULL)",
        did,
        refused_key,
    )
    .fetch_all(e)
    .await
}

/// The keys among `dids` that have a `delete` job that was not refused, each once (each key
/// looked up through the `(kind, key)` index).
pub async fn deleted_keys<'e>(
    e: impl sqlx::PgExecutor<'e>,
    dids: &[String],
    refused_key: &str,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!(
        "SELECT DISTINCT key FROM jobs
         WHERE kind = 'delete' AND key = ANY($1::text[])
           AND NOT (state = 'dead' AND payload ->> $2::text IS NOT NULL)",
        dids,
        refused_key,
    )
    .fetch_all(e)
    .await
}
