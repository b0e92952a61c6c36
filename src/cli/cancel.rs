//! `gunsync cancel`: stop pending or retrying jobs before they run (`→ cancelled`).

use super::output::{id_list, not_found, out, plural};
use super::{GlobalArgs, parse_ids};
use crate::ledger::Cancelled;

/// Cancel pending or retrying jobs
///
/// A cancelled job is final: workers never lease it, and the sync cycle does not enqueue its key
/// again on its own. `gunsync requeue ID` brings it back. Running jobs cannot be cancelled (their
/// worker holds the lease), nor finished ones; both are reported and left alone.
/// Exits with status 1 when none of the ids exists.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  gunsync cancel 4711
  gunsync jobs --state retrying --kind discover --json | jq -r '.[].id' | xargs gunsync cancel")]
pub struct CancelArgs {
    /// Job ids (the ID column of `gunsync jobs`)
    #[arg(value_name = "ID", required = true, allow_negative_numbers = true)]
    ids: Vec<String>,
}

pub async fn execute(args: CancelArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let ids = parse_ids(&args.ids)?;
    let ledger = global.open_ledger().await?;
    let result = ledger.cancel(&ids, ledger.now()).await;
    ledger.close().await;
    let report = result?;
    out!("{}", render(&report))?;
    if report.missing.len() == ids.len() {
        return Err(not_found(&report.missing));
    }
    Ok(())
}

fn render(report: &Cancelled) -> String {
    let mut out = String::new();
    if !report.cancelled.is_empty() {
        out.push_str(&format!(
            "cancelled {}: {}\n",
            plural(report.cancelled.len() as u64, "job", "jobs"),
            id_list(&report.cancelled, 50)
        ));
    } else {
        out.push_str("cancelled 0 jobs\n");
    }
    for (id, state) in &report.not_cancellable {
        let why = if state.is_finished() {
            "it already finished"
        } else {
            "a worker is running it"
        };
        out.push_str(&format!(
            "not cancelled: job {id} is {state} ({why}; only pending and retrying jobs can be \
             cancelled)\n"
        ));
    }
    if !report.missing.is_empty() {
        out.push_str(&format!("not found: {}\n", id_list(&report.missing, 50)));
    }
    out
}
