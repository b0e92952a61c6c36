//! Rescuing jobs whose worker died: `running → retrying | dead` once the lease has expired
//! (see `state.rs`). The burned attempt still counts, so a job that kills its worker every
//! time ends `dead`.

use super::health::Track;
use super::model::Reclaimed;
use super::{LedgerError, SqliteLedger};
use crate::timestamp::Timestamp;

/// `last_error` of a reclaimed job (DESIGN §2).
pub const LEASE_EXPIRED: &str = "lease expired";

impl SqliteLedger {
    pub async fn reclaim_expired(&self, now: Timestamp) -> Result<Reclaimed, LedgerError> {
        let mut tx = self.begin_write().await?;
        sqlx::query!(
            "INSERT INTO job_attempts (job_id, attempt, started_at, finished_at, outcome, error, leased_by, lease_token)
             SELECT id, attempts, leased_at, ?1, 'lease_expired', ?2, leased_by, lease_token
             FROM jobs WHERE state = 'running' AND lease_expires_at <= ?1",
            now,
            LEASE_EXPIRED,
        )
        .execute(&mut *tx)
        .await
        .on_write(&self.health)?;
        let states = sqlx::query_scalar!(
            r#"UPDATE jobs
               SET state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'retrying' END,
                   run_at = ?1, last_error = ?2,
                   processed_at = CASE WHEN attempts >= max_attempts THEN ?1 END,
                   lease_token = NULL, lease_expires_at = NULL, leased_by = NULL, leased_at = NULL, updated_at = ?1
               WHERE state = 'running' AND lease_expires_at <= ?1
               RETURNING state AS "state!: String""#,
            now,
            LEASE_EXPIRED,
        )
        .fetch_all(&mut *tx)
        .await
        .on_write(&self.health)?;
        tx.commit().await?;
        let dead = states.iter().filter(|s| *s == "dead").count() as u64;
        Ok(Reclaimed {
            retrying: states.len() as u64 - dead,
            dead,
        })
    }
}
