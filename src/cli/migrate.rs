//! `gunsync migrate`: create the ledger or bring its schema up to date, then exit. Every other
//! command migrates on open too; this one exists for deploy scripts that want it as a step.
//! `--from sqlite:PATH` also moves an existing SQLite ledger into a new PostgreSQL one.

use super::output::{outln, progress};
use super::{GlobalArgs, UsageError};
use crate::ledger::{Ledger, LedgerOptions};

/// Create the ledger, or upgrade its schema, and exit
///
/// Creates the SQLite file (and its directory) if missing, or the tables of a PostgreSQL
/// ledger, and applies pending migrations. Refuses a file or database that is not a gunsync
/// ledger, and a ledger written by a newer gunsync. Safe to run while the daemon is running.
///
/// With --from, copies an SQLite ledger into the PostgreSQL ledger named by --database: every
/// job (with its state, attempts and schedule), every attempt, sync cycle and index read, ids
/// kept, in one transaction. The PostgreSQL ledger must be empty. Stop the daemons that use the
/// SQLite file first: jobs still running there are copied as running, and every node's reclaimer
/// returns them once their leases expire, as after a crash.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  gunsync migrate
  gunsync --database /var/lib/gunsync/gunsync.db migrate
  GUNSYNC_DATABASE=postgres://gunsync@db/gunsync gunsync migrate --from sqlite:./data/gunsync.db")]
pub struct MigrateArgs {
    /// An SQLite ledger (a path or a `sqlite:` URL) to copy into the PostgreSQL --database
    #[arg(long, value_name = "sqlite:PATH")]
    from: Option<String>,
}

pub async fn execute(args: MigrateArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let ledger = global.open_ledger().await?;
    let Some(from) = args.from else {
        let version = ledger.schema_version().await?;
        outln!(
            "ledger {} is up to date (schema version {version})",
            ledger.location()
        )?;
        ledger.close().await;
        return Ok(());
    };
    if !ledger.is_shared() {
        ledger.close().await;
        return Err(UsageError(
            "migrate --from copies into a PostgreSQL ledger: set --database postgres://…".into(),
        )
        .into());
    }
    if from.starts_with("postgres://") || from.starts_with("postgresql://") {
        ledger.close().await;
        return Err(UsageError(format!("--from takes an SQLite ledger, not {from}")).into());
    }
    let source = Ledger::open_read_only(LedgerOptions::new(&from)).await?;
    let bar = progress(None, "rows copied");
    let result = ledger
        .copy_from(&source, &mut |table, rows| {
            bar.set_message(table);
            bar.set_position(rows);
        })
        .await;
    bar.finish_and_clear();
    source.close().await;
    ledger.close().await;
    let copied = result?;
    outln!(
        "copied {} jobs, {} attempts, {} sync cycles and {} index reads from {} into {}",
        copied.jobs,
        copied.attempts,
        copied.cycles,
        copied.index_reads,
        source.location(),
        ledger.location()
    )?;
    Ok(())
}
