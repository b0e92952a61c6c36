//! `gunsync migrate`: create the ledger or bring its schema up to date, then exit. Every other
//! command migrates on open too; this one exists for deploy scripts that want it as a step.

use super::GlobalArgs;
use super::output::outln;

/// Create the ledger, or upgrade its schema, and exit
///
/// Creates the SQLite file (and its directory) if missing and applies pending migrations.
/// Refuses a file that is not a gunsync ledger, and a ledger written by a newer gunsync.
/// Safe to run while the daemon is running.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  gunsync migrate
  gunsync --database /var/lib/gunsync/gunsync.db migrate
  GUNSYNC_DATABASE=/var/lib/gunsync/gunsync.db gunsync migrate")]
pub struct MigrateArgs {}

pub async fn execute(_args: MigrateArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let ledger = global.open_ledger().await?;
    let version = ledger.schema_version().await?;
    outln!(
        "ledger {} is up to date (schema version {version})",
        ledger.path().display()
    )?;
    ledger.close().await;
    Ok(())
}
