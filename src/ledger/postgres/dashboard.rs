//! The dashboard's reads on PostgreSQL (see the SQLite backend's `dashboard.rs`).

use gunsync_pg::dashboard as sql;

use super::super::dashboard::{Bucket, DeadReason, Throughput};
use super::super::health::Track;
use super::super::model::JobId;
use super::super::{JobKind, LedgerError};
use super::PgLedger;
use crate::timestamp::Timestamp;

impl PgLedger {
    /// See [`Ledger::throughput`](super::super::Ledger::throughput). Buckets are cut by
    /// `date_trunc` in UTC and named by [`Bucket::name`], as the SQLite backend's text prefixes
    /// name them.
    pub(in crate::ledger) async fn throughput(
        &self,
        since: Timestamp,
        bucket: Bucket,
    ) -> Result<Vec<Throughput>, LedgerError> {
        let unit = match bucket {
            Bucket::Minute => "minute",
            Bucket::Hour => "hour",
        };
        let rows = sql::throughput(&self.pool, since.as_datetime(), unit)
            .await
            .on_read(&self.health)?;
        Ok(rows
            .into_iter()
            .map(|r| Throughput {
                bucket: bucket.name(r.bucket.into()),
                done: r.done,
                retry: r.retry,
                dead: r.dead,
            })
            .collect())
    }

    /// See [`Ledger::dead_reasons`](super::super::Ledger::dead_reasons).
    pub(in crate::ledger) async fn dead_reasons(
        &self,
        scan: u32,
    ) -> Result<Vec<DeadReason>, LedgerError> {
        let rows = sql::dead_reasons(&self.pool, i64::from(scan))
            .await
            .on_read(&self.health)?;
        Ok(rows
            .into_iter()
            .map(|r| DeadReason {
                kind: r.kind,
                reason: r.reason,
                jobs: r.jobs,
                newest_id: r.newest_id,
                newest_at: r.newest_at.map(Timestamp::from),
            })
            .collect())
    }

    /// See [`Ledger::dead_with_reason`](super::super::Ledger::dead_with_reason).
    pub(in crate::ledger) async fn dead_with_reason(
        &self,
        kind: JobKind,
        reason: Option<&str>,
    ) -> Result<Vec<JobId>, LedgerError> {
        let ids = sql::dead_with_reason(&self.pool, kind.as_str(), reason)
            .await
            .on_read(&self.health)?;
        Ok(ids.into_iter().map(JobId).collect())
    }
}
