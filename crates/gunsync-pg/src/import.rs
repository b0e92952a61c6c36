//! Copying another ledger into an empty one (`gunsync migrate --from sqlite:…`): rows keep their
//! ids (attempts point at their jobs by id, operators know jobs by it), so the identity
//! sequences are moved past the copied ids afterwards.
//!
//! Each chunk is one statement over arrays (`unnest`), one array per column. Arrays of a
//! nullable column are passed with a type override (`as &[Option<…>]`): the macros check a
//! parameter against the element type alone and would refuse `Option` elements. The statement
//! is still checked; the casts in the SQL fix each array's type.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// A `jobs` row to insert as it is.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: i64,
    pub kind: String,
    pub key: String,
    pub payload: Value,
    pub state: String,
    pub priority: i64,
    pub attempts: i64,
    pub max_attempts: i64,
    pub run_at: DateTime<Utc>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub lease_token: Option<String>,
    pub leased_by: Option<String>,
    pub leased_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    pub revision: Option<i64>,
}

/// A `job_attempts` row to insert as it is.
#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub id: i64,
    pub job_id: i64,
    pub attempt: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub outcome: String,
    pub error: Option<String>,
    pub http_status: Option<i64>,
    pub leased_by: Option<String>,
    pub lease_token: Option<String>,
}

/// A `sync_cycles` row to insert as it is.
#[derive(Debug, Clone)]
pub struct CycleRow {
    pub id: i64,
    pub peer: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub deletions_seen: i64,
    pub records_seen: i64,
    pub delete_enqueued: i64,
    pub discover_enqueued: i64,
    pub rejected: i64,
    pub error: Option<String>,
    pub deletions_ignored: i64,
}

/// An `index_reads` row.
#[derive(Debug, Clone)]
pub struct IndexReadRow {
    pub peer: String,
    pub record_type: String,
    pub entries: i64,
    pub read_at: DateTime<Utc>,
}

/// What the target already holds: a copy goes only into a ledger that has none of it.
#[derive(Debug, Clone)]
pub struct Occupied {
    pub jobs: i64,
    pub cycles: i64,
}

/// Takes every ledger table for the rest of the transaction: other nodes' writes (and leases)
/// wait for the copy instead of racing its ids and its emptiness check; reads go on.
pub async fn lock_tables<'e>(e: impl sqlx::PgExecutor<'e>) -> sqlx::Result<()> {
    sqlx::query!("LOCK TABLE jobs, job_attempts, sync_cycles, index_reads IN EXCLUSIVE MODE")
        .execute(e)
        .await?;
    Ok(())
}

/// How many jobs and sync cycles the ledger holds.
pub async fn occupied<'e>(e: impl sqlx::PgExecutor<'e>) -> sqlx::Result<Occupied> {
    sqlx::query_as!(
        Occupied,
        r#"SELECT (SELECT count(*) FROM jobs) AS "jobs!", (SELECT count(*) FROM sync_cycles) AS "cycles!""#
    )
    .fetch_one(e)
    .await
}

/// Inserts `rows` with their ids; returns how many were inserted.
pub async fn insert_jobs<'e>(e: impl sqlx::PgExecutor<'e>, rows: Vec<JobRow>) -> sqlx::Result<u64> {
    let n = rows.len();
    let mut id = Vec::with_capacity(n);
    let mut kind = Vec::with_capacity(n);
    let mut key = Vec::with_capacity(n);
    let mut payload = Vec::with_capacity(n);
    let mut state = Vec::with_capacity(n);
    let mut priority = Vec::with_capacity(n);
    let mut attempts = Vec::with_capacity(n);
    let mut max_attempts = Vec::with_capacity(n);
    let mut run_at = Vec::with_capacity(n);
    let mut lease_expires_at = Vec::with_capacity(n);
    let mut lease_token = Vec::with_capacity(n);
    let mut leased_by = Vec::with_capacity(n);
    let mut leased_at = Vec::with_capacity(n);
    let mut last_error = Vec::with_capacity(n);
    let mut created_at = Vec::with_capacity(n);
    let mut updated_at = Vec::with_capacity(n);
    let mut processed_at = Vec::with_capacity(n);
    let mut revision = Vec::with_capacity(n);
    for r in rows {
        id.push(r.id);
        kind.push(r.kind);
        key.push(r.key);
        payload.push(r.payload);
        state.push(r.state);
        priority.push(r.priority);
        attempts.push(r.attempts);
        max_attempts.push(r.max_attempts);
        run_at.push(r.run_at);
        lease_expires_at.push(r.lease_expires_at);
        lease_token.push(r.lease_token);
        leased_by.push(r.leased_by);
        leased_at.push(r.leased_at);
        last_error.push(r.last_error);
        created_at.push(r.created_at);
        updated_at.push(r.updated_at);
        processed_at.push(r.processed_at);
        revision.push(r.revision);
    }
    let done = sqlx::query!(
        "INSERT INTO jobs (id, kind, key, payload, state, priority, attempts, max_attempts, run_at,
                           lease_expires_at, lease_token, leased_by, leased_at, last_error,
                           created_at, updated_at, processed_at, revision)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::jsonb[], $5::text[],
                              $6::bigint[], $7::bigint[], $8::bigint[], $9::timestamptz[],
                              $10::timestamptz[], $11::text[], $12::text[], $13::timestamptz[],
                              $14::text[], $15::timestamptz[], $16::timestamptz[],
                              $17::timestamptz[], $18::bigint[])",
        &id,
        &kind,
        &key,
        &payload,
        &state,
        &priority,
        &attempts,
        &max_attempts,
        &run_at,
        &lease_expires_at[..] as &[Option<DateTime<Utc>>],
        &lease_token[..] as &[Option<String>],
        &leased_by[..] as &[Option<String>],
        &leased_at[..] as &[Option<DateTime<Utc>>],
        &last_error[..] as &[Option<String>],
        &created_at,
        &updated_at,
        &processed_at[..] as &[Option<DateTime<Utc>>],
        &revision[..] as &[Option<i64>],
    )
    .execute(e)
    .await?;
    Ok(done.rows_affected())
}

/// Inserts `rows` with their ids (their jobs must be there); returns how many were inserted.
pub async fn insert_attempts<'e>(
    e: impl sqlx::PgExecutor<'e>,
    rows: Vec<AttemptRow>,
) -> sqlx::Result<u64> {
    let n = rows.len();
    let mut id = Vec::with_capacity(n);
    let mut job_id = Vec::with_capacity(n);
    let mut attempt = Vec::with_capacity(n);
    let mut started_at = Vec::with_capacity(n);
    let mut finished_at = Vec::with_capacity(n);
    let mut outcome = Vec::with_capacity(n);
    let mut error = Vec::with_capacity(n);
    let mut http_status = Vec::with_capacity(n);
    let mut leased_by = Vec::with_capacity(n);
    let mut lease_token = Vec::with_capacity(n);
    for r in rows {
        id.push(r.id);
        job_id.push(r.job_id);
        attempt.push(r.attempt);
        started_at.push(r.started_at);
        finished_at.push(r.finished_at);
        outcome.push(r.outcome);
        error.push(r.error);
        http_status.push(r.http_status);
        leased_by.push(r.leased_by);
        lease_token.push(r.lease_token);
    }
    let done = sqlx::query!(
        "INSERT INTO job_attempts (id, job_id, attempt, started_at, finished_at, outcome, error,
                                   http_status, leased_by, lease_token)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::timestamptz[],
                              $5::timestamptz[], $6::text[], $7::text[], $8::bigint[],
                              $9::text[], $10::text[])",
        &id,
        &job_id,
        &attempt,
        &started_at,
        &finished_at,
        &outcome,
        &error[..] as &[Option<String>],
        &http_status[..] as &[Option<i64>],
        &leased_by[..] as &[Option<String>],
        &lease_token[..] as &[Option<String>],
    )
    .execute(e)
    .await?;
    Ok(done.rows_affected())
}

/// Inserts `rows` with their ids; returns how many were inserted.
pub async fn insert_cycles<'e>(
    e: impl sqlx::PgExecutor<'e>,
    rows: Vec<CycleRow>,
) -> sqlx::Result<u64> {
    let n = rows.len();
    let mut id = Vec::with_capacity(n);
    let mut peer = Vec::with_capacity(n);
    let mut started_at = Vec::with_capacity(n);
    let mut finished_at = Vec::with_capacity(n);
    let mut deletions_seen = Vec::with_capacity(n);
    let mut records_seen = Vec::with_capacity(n);
    let mut delete_enqueued = Vec::with_capacity(n);
    let mut discover_enqueued = Vec::with_capacity(n);
    let mut rejected = Vec::with_capacity(n);
    let mut error = Vec::with_capacity(n);
    let mut deletions_ignored = Vec::with_capacity(n);
    for r in rows {
        id.push(r.id);
        peer.push(r.peer);
        started_at.push(r.started_at);
        finished_at.push(r.finished_at);
        deletions_seen.push(r.deletions_seen);
        records_seen.push(r.records_seen);
        delete_enqueued.push(r.delete_enqueued);
        discover_enqueued.push(r.discover_enqueued);
        rejected.push(r.rejected);
        error.push(r.error);
        deletions_ignored.push(r.deletions_ignored);
    }
    let done = sqlx::query!(
        "INSERT INTO sync_cycles (id, peer, started_at, finished_at, deletions_seen, records_seen,
                                  delete_enqueued, discover_enqueued, rejected, error,
                                  deletions_ignored)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::timestamptz[],
                              $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[],
                              $9::bigint[], $10::text[], $11::bigint[])",
        &id,
        &peer,
        &started_at,
        &finished_at[..] as &[Option<DateTime<Utc>>],
        &deletions_seen,
        &records_seen,
        &delete_enqueued,
        &discover_enqueued,
        &rejected,
        &error[..] as &[Option<String>],
        &deletions_ignored,
    )
    .execute(e)
    .await?;
    Ok(done.rows_affected())
}

/// Inserts `rows`; a peer and type the ledger already read keeps the later of the two reads.
/// Returns how many rows were inserted or updated.
pub async fn insert_index_reads<'e>(
    e: impl sqlx::PgExecutor<'e>,
    rows: Vec<IndexReadRow>,
) -> sqlx::Result<u64> {
    let n = rows.len();
    let mut peer = Vec::with_capacity(n);
    let mut record_type = Vec::with_capacity(n);
    let mut entries = Vec::with_capacity(n);
    let mut read_at = Vec::with_capacity(n);
    for r in rows {
        peer.push(r.peer);
        record_type.push(r.record_type);
        entries.push(r.entries);
        read_at.push(r.read_at);
    }
    let done = sqlx::query!(
        "INSERT INTO index_reads (peer, record_type, entries, read_at)
         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::timestamptz[])
         ON CONFLICT (peer, record_type) DO UPDATE
         SET entries = excluded.entries, read_at = excluded.read_at
         WHERE index_reads.read_at < excluded.read_at",
        &peer,
        &record_type,
        &entries,
        &read_at,
    )
    .execute(e)
    .await?;
    Ok(done.rows_affected())
}

/// Moves the identity sequences of `jobs`, `job_attempts` and `sync_cycles` past the largest id
/// each holds, so the next row the ledger creates gets a new id. An empty table's sequence is
/// left alone (`setval` refuses 0).
pub async fn move_sequences<'e>(e: impl sqlx::PgExecutor<'e>) -> sqlx::Result<()> {
    sqlx::query!(
        "SELECT (SELECT setval(pg_get_serial_sequence('jobs', 'id'), max(id))
                 FROM jobs HAVING max(id) >= 1) AS jobs,
                (SELECT setval(pg_get_serial_sequence('job_attempts', 'id'), max(id))
                 FROM job_attempts HAVING max(id) >= 1) AS attempts,
                (SELECT setval(pg_get_serial_sequence('sync_cycles', 'id'), max(id))
                 FROM sync_cycles HAVING max(id) >= 1) AS cycles"
    )
    .fetch_one(e)
    .await?;
    Ok(())
}
