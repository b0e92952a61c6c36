//! Leasing on PostgreSQL: one `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)` per
//! lease, so nodes leasing at once split the runnable jobs between them, plus what a lease holder
//! may do while it runs. Giving a job back wakes the other nodes (`gunsync_pg::notify`).

use serde_json::Value;
use sqlx::PgConnection;

use super::super::LedgerError;
use super::super::health::Track;
use super::super::lease::{LeaseParams, fenced, object_payload};
use super::super::model::{JobId, LeaseToken, LeasedJob};
use super::PgLedger;
use crate::timestamp::Timestamp;

impl PgLedger {
    /// See [`Ledger::lease`](super::super::Ledger::lease). Outside a transaction: each level's
    /// statement stands alone.
    pub(in crate::ledger) async fn lease(
        &self,
        params: LeaseParams<'_>,
        now: Timestamp,
    ) -> Result<Vec<LeasedJob>, LedgerError> {
        if params.max == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.pool.acquire().await.on_write(&self.health)?;
        let jobs = self.lease_in(&mut conn, &params, now).await?;
        self.health.succeeded();
        Ok(jobs)
    }

    /// [`PgLedger::lease`] on `conn` (inside the caller's transaction, if it has one).
    pub(in crate::ledger) async fn lease_in(
        &self,
        conn: &mut PgConnection,
        params: &LeaseParams<'_>,
        now: Timestamp,
    ) -> Result<Vec<LeasedJob>, LedgerError> {
        if params.max == 0 {
            return Ok(Vec::new());
        }
        let token = LeaseToken::generate();
        let expires = now.plus(params.lease_for);
        // One priority level at a time, lowest first, as on SQLite: within a level the runnable
        // jobs are a prefix of `jobs_runnable`, so no lease walks the jobs scheduled later.
        let levels = gunsync_pg::lease::levels(&mut *conn)
            .await
            .on_write(&self.health)?;
        let mut rows = Vec::new();
        for level in levels {
            let left = i64::from(params.max) - rows.len() as i64;
            if left <= 0 {
                break;
            }
            let mut level_rows = gunsync_pg::lease::lease(
                &mut *conn,
                token.as_str(),
                params.worker,
                expires.as_datetime(),
                now.as_datetime(),
                level,
                left,
            )
            .await
            .on_write(&self.health)?;
            // RETURNING gives no order: restore the lease order within the level.
            level_rows.sort_by_key(|r| (r.run_at, r.id));
            rows.extend(level_rows);
        }
        Ok(rows
            .into_iter()
            .map(|r| LeasedJob {
                id: JobId(r.id),
                kind_name: r.kind,
                key: r.key,
                payload: r.payload,
                attempt: u32::try_from(r.attempts).unwrap_or(u32::MAX),
                max_attempts: u32::try_from(r.max_attempts).unwrap_or(u32::MAX),
                lease_token: token.clone(),
                lease_expires_at: expires,
            })
            .collect())
    }

    /// See [`Ledger::heartbeat`](super::super::Ledger::heartbeat).
    pub(in crate::ledger) async fn heartbeat(
        &self,
        id: JobId,
        token: &LeaseToken,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        let changed = gunsync_pg::lease::heartbeat(
            &self.pool,
            id.0,
            token.as_str(),
            until.as_datetime(),
            now.as_datetime(),
        )
        .await
        .on_write(&self.health)?;
        self.health.succeeded();
        fenced(changed, id)
    }

    /// See [`Ledger::set_payload`](super::super::Ledger::set_payload).
    pub(in crate::ledger) async fn set_payload(
        &self,
        id: JobId,
        token: &LeaseToken,
        payload: &Value,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        object_payload(payload)?;
        let changed = gunsync_pg::lease::set_payload(
            &self.pool,
            id.0,
            token.as_str(),
            payload,
            now.as_datetime(),
        )
        .await
        .on_write(&self.health)?;
        self.health.succeeded();
        fenced(changed, id)
    }

    /// See [`Ledger::release`](super::super::Ledger::release).
    pub(in crate::ledger) async fn release(
        &self,
        id: JobId,
        token: &LeaseToken,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        let token = token.as_str();
        let now = now.as_datetime();
        let mut tx = self.begin().await?;
        // Record the interrupted attempt while the job still carries the lease that proves it.
        gunsync_pg::lease::record_released_attempt(&mut *tx, id.0, token, now)
            .await
            .on_write(&self.health)?;
        let changed = gunsync_pg::lease::release(&mut *tx, id.0, token, now)
            .await
            .on_write(&self.health)?;
        if changed == 0 {
            tx.rollback().await.on_write(&self.health)?;
            return Err(LedgerError::LeaseLost(id));
        }
        gunsync_pg::notify::jobs_ready(&mut *tx)
            .await
            .on_write(&self.health)?;
        self.commit(tx).await
    }

    /// See [`Ledger::unlease`](super::super::Ledger::unlease).
    pub(in crate::ledger) async fn unlease(
        &self,
        jobs: &[(JobId, LeaseToken)],
        now: Timestamp,
    ) -> Result<u64, LedgerError> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let ids: Vec<i64> = jobs.iter().map(|(id, _)| id.0).collect();
        let tokens: Vec<String> = jobs.iter().map(|(_, t)| t.as_str().to_string()).collect();
        let mut tx = self.begin().await?;
        let changed = gunsync_pg::lease::unlease(&mut *tx, &ids, &tokens, now.as_datetime())
            .await
            .on_write(&self.health)?;
        if changed > 0 {
            gunsync_pg::notify::jobs_ready(&mut *tx)
                .await
                .on_write(&self.health)?;
        }
        self.commit(tx).await?;
        Ok(changed)
    }

    /// See [`Ledger::next_run_at`](super::super::Ledger::next_run_at).
    pub(in crate::ledger) async fn next_run_at(&self) -> Result<Option<Timestamp>, LedgerError> {
        let at = gunsync_pg::lease::next_run_at(&self.pool)
            .await
            .on_read(&self.health)?;
        Ok(at.map(Timestamp::from))
    }

    /// See [`Ledger::next_lease_expiry`](super::super::Ledger::next_lease_expiry).
    pub(in crate::ledger) async fn next_lease_expiry(
        &self,
    ) -> Result<Option<Timestamp>, LedgerError> {
        let at = gunsync_pg::lease::next_lease_expiry(&self.pool)
            .await
            .on_read(&self.health)?;
        Ok(at.map(Timestamp::from))
    }
}
