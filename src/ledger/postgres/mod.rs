//! The PostgreSQL backend of the ledger (DESIGN §7): several gunsync nodes share one database.
//! Every statement lives in the `gunsync-pg` crate, checked against PostgreSQL at compile time;
//! this module gives them the ledger's types, transactions and errors. Each method has the
//! signature of the SQLite backend's method of the same name, and [`super::Ledger`] dispatches
//! to one or the other.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, Postgres};
use sqlx::{Connection, PgConnection, Transaction};

use super::health::{Health, Track};
use super::{LedgerError, LedgerOptions, Synchronous};
use crate::timestamp::Timestamp;

mod admin;
mod cycles;
mod dashboard;
mod enqueue;
mod finish;
pub(super) mod import;
mod lease;
mod lookup;
mod node;
pub(crate) mod operator;
mod query;
mod reclaim;
mod status;

/// The PostgreSQL ledger: one pool of at most `max_connections` per node, the shared health, and
/// the offset of the database's clock from this node's.
#[derive(Clone, Debug)]
pub(super) struct PgLedger {
    pub(super) pool: PgPool,
    pub(super) health: Arc<Health>,
    /// The URL without its password, for messages.
    location: String,
    /// Database clock minus this node's clock, in milliseconds (see [`PgLedger::now`]).
    clock_offset_ms: Arc<AtomicI64>,
}

/// Whether `database` names a PostgreSQL ledger.
pub(super) fn is_postgres_url(database: &str) -> bool {
    database.starts_with("postgres://") || database.starts_with("postgresql://")
}

/// `url` made to keep the ledger in `schema` (created when missing, and emptied first when
/// `fresh`): the demo's ledger lives in a schema of its own, beside whatever the database holds.
///
/// # Errors
/// [`LedgerError::Invalid`] for a schema name that is not a plain lower-case identifier.
pub(super) async fn in_schema(url: &str, schema: &str, fresh: bool) -> Result<String, LedgerError> {
    let plain = !schema.is_empty()
        && schema.len() <= 63
        && schema.starts_with(|c: char| c.is_ascii_lowercase())
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !plain {
        return Err(LedgerError::Invalid {
            what: "schema",
            reason: format!("{schema:?} is not a plain lower-case identifier"),
        });
    }
    let location = without_password(url);
    let mut conn = PgConnection::connect(url)
        .await
        .map_err(|e| open_error(&location, e))?;
    if fresh {
        gunsync_pg::node::drop_schema(&mut conn, schema).await?;
    }
    gunsync_pg::node::create_schema(&mut conn, schema).await?;
    let _ = conn.close().await;
    let mut url = url::Url::parse(url).map_err(|e| LedgerError::Invalid {
        what: "database",
        reason: format!("{location}: {e}"),
    })?;
    // `%20`, not the `+` of form encoding: libpq (psql) reads only percent escapes.
    let option = format!("options=-c%20search_path%3D{schema}");
    let query = match url.query().filter(|q| !q.is_empty()) {
        Some(query) => format!("{query}&{option}"),
        None => option,
    };
    url.set_query(Some(&query));
    Ok(url.to_string())
}

/// `url` with its password replaced, so it can be shown and logged.
fn without_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "postgres://(unparsable URL)".into(),
    }
}

impl PgLedger {
    /// Connects, checks that the database holds a gunsync ledger of a schema this gunsync knows
    /// (or nothing yet), and applies pending migrations. sqlx's PostgreSQL migrator takes an
    /// advisory lock, so nodes starting together apply each migration once.
    pub(super) async fn open(options: &LedgerOptions) -> Result<PgLedger, LedgerError> {
        let location = without_password(&options.database);
        let connect = options
            .database
            .parse::<PgConnectOptions>()
            .map_err(|e| LedgerError::Invalid {
                what: "database",
                reason: format!("{location}: {e}"),
            })?
            .application_name("gunsync");
        // `GUNSYNC_SYNCHRONOUS=normal` on PostgreSQL: a commit returns before its WAL reaches
        // the disk (a crash of the server may lose the last transactions, never corrupts).
        let connect = match options.synchronous {
            Synchronous::Full => connect,
            Synchronous::Normal => connect.options([("synchronous_commit", "off")]),
        };
        // One connection first: a server that is down or refuses the login says so at once,
        // instead of the pool retrying until its acquire timeout.
        PgConnection::connect_with(&connect)
            .await
            .map_err(|e| open_error(&location, e))?
            .close()
            .await
            .map_err(|e| open_error(&location, e))?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(2))
            .min_connections(1)
            .idle_timeout(Duration::from_secs(60))
            .acquire_timeout(options.busy_timeout + Duration::from_secs(20))
            .connect_with(connect)
            .await
            .map_err(|e| open_error(&location, e))?;
        let known = gunsync_pg::MIGRATOR
            .iter()
            .map(|m| m.version)
            .max()
            .unwrap_or(0);
        let mut conn = pool.acquire().await?;
        let found = if gunsync_pg::node::has_migrations_table(&mut *conn).await? {
            let versions = gunsync_pg::node::applied_versions(&mut *conn).await?;
            if let Some(foreign) = versions
                .iter()
                .find(|v| !gunsync_pg::MIGRATOR.iter().any(|m| m.version == **v))
                .filter(|v| **v < known)
            {
                return Err(LedgerError::NotALedger {
                    path: location,
                    reason: format!("its _sqlx_migrations holds version {foreign}, not gunsync's"),
                });
            }
            versions.last().copied().unwrap_or(0)
        } else {
            let tables = gunsync_pg::node::tables(&mut *conn).await?;
            if let Some(ours) = tables
                .iter()
                .find(|t| ["jobs", "job_attempts"].contains(&t.as_str()))
            {
                return Err(LedgerError::NotALedger {
                    path: location,
                    reason: format!("it holds a table {ours:?} that gunsync did not create"),
                });
            }
            0
        };
        drop(conn);
        if found > known {
            return Err(LedgerError::SchemaTooNew {
                path: location,
                found,
                known,
            });
        }
        if found < known {
            gunsync_pg::MIGRATOR.run(&pool).await?;
        }
        let ledger = PgLedger {
            pool,
            health: Arc::default(),
            location,
            clock_offset_ms: Arc::default(),
        };
        ledger.sync_clock().await?;
        Ok(ledger)
    }

    pub(super) fn location(&self) -> &str {
        &self.location
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }

    /// The database's current time, from this node's clock and the offset measured by
    /// [`PgLedger::sync_clock`]: leases written by one node and reclaimed by another compare
    /// times of one clock, however far the nodes' own clocks drift apart.
    pub(super) fn now(&self) -> Timestamp {
        let offset = self.clock_offset_ms.load(Ordering::Relaxed);
        let local = Timestamp::now();
        if offset >= 0 {
            local.plus(Duration::from_millis(offset.unsigned_abs()))
        } else {
            local.minus(Duration::from_millis(offset.unsigned_abs()))
        }
    }

    /// Measures the database clock's offset from this node's: the best of three round trips
    /// (the shortest bounds the error best), half the round trip correcting for the network. An
    /// offset within that error is no offset: nodes on one machine, or with synchronised
    /// clocks, keep their own clock exactly. The daemon measures again now and then, so a node
    /// whose clock steps is corrected.
    pub(super) async fn sync_clock(&self) -> Result<(), LedgerError> {
        let mut best: Option<(Duration, i64)> = None;
        for _ in 0..3 {
            let before = Timestamp::now();
            let started = Instant::now();
            let db = gunsync_pg::node::clock(&self.pool)
                .await
                .on_read(&self.health)?;
            let round_trip = started.elapsed();
            let local_mid = before.plus(round_trip / 2);
            let offset =
                (Timestamp::from(db).as_datetime() - local_mid.as_datetime()).num_milliseconds();
            if best.is_none_or(|(rtt, _)| round_trip < rtt) {
                best = Some((round_trip, offset));
            }
        }
        let (round_trip, offset) = best.expect("three samples");
        let error_ms = i64::try_from(round_trip.as_millis() / 2).unwrap_or(i64::MAX) + 1;
        let offset = if offset.abs() <= error_ms { 0 } else { offset };
        self.clock_offset_ms.store(offset, Ordering::Relaxed);
        Ok(())
    }

    /// A plain connection outside the pool, for `LISTEN` and the cycle lock (both belong to one
    /// session, which must never go back into the pool holding them).
    pub(super) async fn dedicated_connection(&self) -> Result<PgConnection, LedgerError> {
        let options = self.pool.connect_options();
        Ok(PgConnection::connect_with(&options).await?)
    }

    /// Starts a transaction (READ COMMITTED: every statement sees what committed before it ran;
    /// leasing relies on `FOR UPDATE SKIP LOCKED`, not on isolation).
    pub(super) async fn begin(&self) -> Result<Transaction<'static, Postgres>, LedgerError> {
        self.pool.begin().await.on_write(&self.health)
    }

    /// Commits `tx` and notes the write's success in the ledger's health.
    pub(super) async fn commit(
        &self,
        tx: Transaction<'static, Postgres>,
    ) -> Result<(), LedgerError> {
        tx.commit().await.on_write(&self.health)?;
        self.health.succeeded();
        Ok(())
    }
}

fn open_error(location: &str, error: sqlx::Error) -> LedgerError {
    let reason = match &error {
        sqlx::Error::Io(e) => e.to_string(),
        sqlx::Error::Tls(e) => format!("TLS: {e}"),
        sqlx::Error::Database(db) => db.message().to_string(),
        sqlx::Error::Configuration(e) => e.to_string(),
        _ => return LedgerError::Database(error),
    };
    LedgerError::Invalid {
        what: "database",
        reason: format!("cannot open the PostgreSQL ledger at {location}: {reason}"),
    }
}
