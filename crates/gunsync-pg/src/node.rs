//! What a node asks of the database itself: its clock, the schema it holds, and the lock that
//! keeps sync cycles one at a time across nodes.

use chrono::{DateTime, Utc};

/// The advisory lock a node holds while it runs a sync cycle ("gunsync" in ASCII).
pub const CYCLE_LOCK: i64 = 0x67_75_6e_73_79_6e_63;

/// The database's clock: leases and reclaims compare times written by every node, so all of them
/// take their "now" from here (see `Ledger::now`).
pub async fn clock<'e>(e: impl sqlx::PgExecutor<'e>) -> sqlx::Result<DateTime<Utc>> {
    sqlx::query_scalar!(r#"SELECT now() AS "now!""#)
        .fetch_one(e)
        .await
}

/// Whether sqlx's migrations table exists in the current schema (`false`: a database gunsync
/// never migrated).
pub async fn has_migrations_table<'e>(e: impl sqlx::PgExecutor<'e>) -> sqlx::Result<bool> {
    sqlx::query_scalar!(r#"SELECT to_regclass('_sqlx_migrations') IS NOT NULL AS "exists!""#)
        .fetch_one(e)
        .await
}

/// The schema versions applied to this database, lowest first.
pub async fn applied_versions<'e>(e: impl sqlx::PgExecutor<'e>) -> sqlx::Result<Vec<i64>> {
    // Unchecked: sqlx creates this table when it first migrates, so it is not part of the
    // schema the queries are checked against.
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(e)
        .await
}

/// Tables in the current schema, other than sqlx's own, when there is no migrations table.
pub async fn tables<'e>(e: impl sqlx::PgExecutor<'e>) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!(
        r#"SELECT tablename AS "name!" FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1"#
    )
    .fetch_all(e)
    .await
}

/// Takes the cycle lock for this session if no other session holds it (never waits).
pub async fn try_cycle_lock<'e>(e: impl sqlx::PgExecutor<'e>) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT pg_try_advisory_lock($1) AS "locked!""#,
        CYCLE_LOCK
    )
    .fetch_one(e)
    .await
}

/// Gives the cycle lock back.
pub async fn cycle_unlock<'e>(e: impl sqlx::PgExecutor<'e>) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT pg_advisory_unlock($1) AS "unlocked!""#,
        CYCLE_LOCK
    )
    .fetch_one(e)
    .await
}

/// Creates `schema` if missing. Unchecked: DDL takes no parameters; the caller passes a plain
/// identifier it validated (lower-case letters, digits, `_`).
pub async fn create_schema<'e>(e: impl sqlx::PgExecutor<'e>, schema: &str) -> sqlx::Result<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS {schema}"
    )))
    .execute(e)
    .await
    .map(drop)
}

/// Drops `schema` and everything in it (see [`create_schema`] for the name).
pub async fn drop_schema<'e>(e: impl sqlx::PgExecutor<'e>, schema: &str) -> sqlx::Result<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(e)
    .await
    .map(drop)
}
