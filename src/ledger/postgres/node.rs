//! What makes several nodes one system: wake-ups across nodes (`LISTEN gunsync_jobs`) and one sync
//! cycle at a time (a session advisory lock).

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection};
use tokio::sync::Notify;
use tracing::{debug, warn};

use super::PgLedger;
use crate::ledger::LedgerError;

/// The channel every statement that makes jobs runnable notifies (`gunsync_pg::notify`).
const CHANNEL: &str = "gunsync_jobs";

impl PgLedger {
    /// Wakes `wake` whenever any node enqueues, requeues or gives back a job, until the ledger is
    /// closed. Holds one connection of the pool for as long. A lost connection is re-opened, and
    /// `wake` fires then too, since a notification may have been missed meanwhile.
    pub(crate) fn listen(&self, wake: Arc<Notify>) -> tokio::task::JoinHandle<()> {
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let mut listener = loop {
                match PgListener::connect_with(&pool).await {
                    Ok(mut listener) => match listener.listen(CHANNEL).await {
                        Ok(()) => break listener,
                        Err(e) => warn!(error = %e, "cannot LISTEN for wake-ups; retrying"),
                    },
                    Err(sqlx::Error::PoolClosed) => return,
                    Err(e) => warn!(error = %e, "cannot LISTEN for wake-ups; retrying"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            };
            loop {
                match listener.try_recv().await {
                    Ok(Some(_)) => wake.notify_one(),
                    Ok(None) => {
                        debug!("the LISTEN connection was lost; reconnecting");
                        wake.notify_one();
                    }
                    Err(sqlx::Error::PoolClosed) => return,
                    Err(e) => {
                        warn!(error = %e, "LISTEN failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        })
    }

    /// Takes the cycle lock if no node holds it: `Some(session)` holds it until the session is
    /// given to [`PgLedger::cycle_unlock`] or dropped (the server releases a closed session's
    /// locks, so a node killed mid-cycle never blocks the others).
    pub(crate) async fn try_cycle_lock(&self) -> Result<Option<PgConnection>, LedgerError> {
        let mut session = self.dedicated_connection().await?;
        if gunsync_pg::node::try_cycle_lock(&mut session).await? {
            Ok(Some(session))
        } else {
            let _ = session.close().await;
            Ok(None)
        }
    }

    /// Gives the cycle lock back and closes its session.
    pub(crate) async fn cycle_unlock(mut session: PgConnection) {
        if let Err(e) = gunsync_pg::node::cycle_unlock(&mut session).await {
            debug!(error = %e, "unlocking the cycle lock failed; closing its session releases it");
        }
        let _ = session.close().await;
    }
}
