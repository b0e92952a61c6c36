//! `gunsync migrate --from sqlite:…`: an operator's SQLite ledger copied into a new PostgreSQL
//! ledger, so a single-machine deployment becomes several nodes without losing its history.

use gunsync_pg::import::{AttemptRow, CycleRow, IndexReadRow, JobRow};

use super::super::export::{
    ExportTx, ExportedAttempt, ExportedCycle, ExportedIndexRead, ExportedJob,
};
use super::super::health::Track;
use super::super::{LedgerError, SqliteLedger};
use super::PgLedger;

/// Rows per chunk: one statement each way, small enough to keep the memory of a chunk modest
/// (payloads included), large enough that round trips do not dominate.
const CHUNK: i64 = 5_000;

/// How many rows of each table were copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Copied {
    pub jobs: u64,
    pub attempts: u64,
    pub cycles: u64,
    pub index_reads: u64,
}

impl PgLedger {
    /// Copies every job, attempt, sync cycle and index read of `from` into this ledger, keeping
    /// their ids, and moves the id sequences past them. All or nothing: one PostgreSQL
    /// transaction (holding the ledger's tables, so other nodes' writes wait for it) and one
    /// SQLite read transaction (one snapshot of the file, even if a daemon still writes it).
    /// `progress` hears `(table, rows copied so far)` after each chunk.
    ///
    /// Jobs are copied in the state they are in. A job running (leased) in the SQLite ledger
    /// stays running under its lease: its worker cannot reach this ledger, so the lease expires
    /// and any node's reclaimer returns it, exactly as after a crash. Circuits are not copied:
    /// they describe the systems at one moment, and the nodes find out again.
    ///
    /// # Errors
    /// [`LedgerError::Invalid`] when this ledger already holds jobs or sync cycles (a copy goes
    /// only into a new ledger: the ids would collide); a database error of either side.
    pub(crate) async fn copy_from_sqlite(
        &self,
        from: &SqliteLedger,
        progress: &mut dyn FnMut(&'static str, u64),
    ) -> Result<Copied, LedgerError> {
        let mut tx = self.begin().await?;
        gunsync_pg::import::lock_tables(&mut *tx)
            .await
            .on_write(&self.health)?;
        let occupied = gunsync_pg::import::occupied(&mut *tx)
            .await
            .on_read(&self.health)?;
        if occupied.jobs > 0 || occupied.cycles > 0 {
            return Err(LedgerError::Invalid {
                what: "migrate --from",
                reason: format!(
                    "the PostgreSQL ledger {} already holds {} jobs and {} sync cycles; a ledger \
                     is copied only into a new, empty one",
                    self.location(),
                    occupied.jobs,
                    occupied.cycles
                ),
            });
        }

        let mut export = from.begin_export().await?;
        let copied = self.copy_tables(&mut tx, &mut export, progress).await?;
        export.finish().await?;
        gunsync_pg::import::move_sequences(&mut *tx)
            .await
            .on_write(&self.health)?;
        if copied.jobs > 0 {
            gunsync_pg::notify::jobs_ready(&mut *tx)
                .await
                .on_write(&self.health)?;
        }
        self.commit(tx).await?;
        Ok(copied)
    }

    /// Every table, chunk by chunk; jobs before the attempts that point at them.
    async fn copy_tables(
        &self,
        tx: &mut sqlx::PgConnection,
        export: &mut ExportTx,
        progress: &mut dyn FnMut(&'static str, u64),
    ) -> Result<Copied, LedgerError> {
        let mut copied = Copied::default();

        let mut after = i64::MIN;
        loop {
            let rows = export.jobs(after, CHUNK).await?;
            let Some(last) = rows.last() else { break };
            after = last.id;
            let full = rows.len() as i64 == CHUNK;
            let rows = rows.into_iter().map(job_row).collect();
            copied.jobs += gunsync_pg::import::insert_jobs(&mut *tx, rows)
                .await
                .on_write(&self.health)?;
            progress("jobs", copied.jobs);
            if !full {
                break;
            }
        }

        let mut after = i64::MIN;
        loop {
            let rows = export.attempts(after, CHUNK).await?;
            let Some(last) = rows.last() else { break };
            after = last.id;
            let full = rows.len() as i64 == CHUNK;
            let rows = rows.into_iter().map(attempt_row).collect();
            copied.attempts += gunsync_pg::import::insert_attempts(&mut *tx, rows)
                .await
                .on_write(&self.health)?;
            progress("job_attempts", copied.attempts);
            if !full {
                break;
            }
        }

        let mut after = i64::MIN;
        loop {
            let rows = export.cycles(after, CHUNK).await?;
            let Some(last) = rows.last() else { break };
            after = last.id;
            let full = rows.len() as i64 == CHUNK;
            let rows = rows.into_iter().map(cycle_row).collect();
            copied.cycles += gunsync_pg::import::insert_cycles(&mut *tx, rows)
                .await
                .on_write(&self.health)?;
            progress("sync_cycles", copied.cycles);
            if !full {
                break;
            }
        }

        let rows = export.index_reads().await?;
        if !rows.is_empty() {
            let rows = rows.into_iter().map(index_read_row).collect();
            copied.index_reads = gunsync_pg::import::insert_index_reads(&mut *tx, rows)
                .await
                .on_write(&self.health)?;
            progress("index_reads", copied.index_reads);
        }
        Ok(copied)
    }
}

fn job_row(j: ExportedJob) -> JobRow {
    JobRow {
        id: j.id,
        kind: j.kind,
        key: j.key,
        payload: j.payload,
        state: j.state,
        priority: j.priority,
        attempts: j.attempts,
        max_attempts: j.max_attempts,
        run_at: j.run_at.as_datetime(),
        lease_expires_at: j.lease_expires_at.map(|t| t.as_datetime()),
        lease_token: j.lease_token,
        leased_by: j.leased_by,
        leased_at: j.leased_at.map(|t| t.as_datetime()),
        last_error: j.last_error,
        created_at: j.created_at.as_datetime(),
        updated_at: j.updated_at.as_datetime(),
        processed_at: j.processed_at.map(|t| t.as_datetime()),
        revision: j.revision,
    }
}

fn attempt_row(a: ExportedAttempt) -> AttemptRow {
    AttemptRow {
        id: a.id,
        job_id: a.job_id,
        attempt: a.attempt,
        started_at: a.started_at.as_datetime(),
        finished_at: a.finished_at.as_datetime(),
        outcome: a.outcome,
        error: a.error,
        http_status: a.http_status,
        leased_by: a.leased_by,
        lease_token: a.lease_token,
    }
}

fn cycle_row(c: ExportedCycle) -> CycleRow {
    CycleRow {
        id: c.id,
        peer: c.peer,
        started_at: c.started_at.as_datetime(),
        finished_at: c.finished_at.map(|t| t.as_datetime()),
        deletions_seen: c.deletions_seen,
        records_seen: c.records_seen,
        delete_enqueued: c.delete_enqueued,
        discover_enqueued: c.discover_enqueued,
        rejected: c.rejected,
        error: c.error,
        deletions_ignored: c.deletions_ignored,
    }
}

fn index_read_row(r: ExportedIndexRead) -> IndexReadRow {
    IndexReadRow {
        peer: r.peer,
        record_type: r.record_type,
        entries: r.entries,
        read_at: r.read_at.as_datetime(),
    }
}
