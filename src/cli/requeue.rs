//! `gunsync requeue`: move finished or retrying jobs back to `pending`, runnable now. The ledger
//! does the guarded work in batches (never a running job, never a second active job per key);
//! this command chooses the jobs, shows progress and says what it did and what it left alone.

use super::output::{id_list, not_found, out, plural, progress};
use super::{GlobalArgs, UsageError, parse_ids, parse_kind, parse_state};
use crate::ledger::{Requeue, RequeueReport};

/// Run finished or retrying jobs again now
///
/// Moves the jobs given by id, or every job matching the filters, from done, dead, cancelled or
/// retrying back to pending with run_at = now; a running daemon picks them up within seconds.
/// Filters combine with AND and with the ids. A dead job gets one more try: max_attempts is
/// raised to attempts + 1, unless --reset-attempts starts its count again at 0 (a full set of
/// retries). The attempt history is kept.
///
/// Safe beside a running daemon: a running job is never touched (it is reported as skipped), and
/// a job whose kind and key already have an active job is skipped as a duplicate, so no job ever
/// runs twice at once. Give ids or at least one filter; requeue with neither is refused.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  gunsync requeue 4711 4712                        two jobs, one more try each
  gunsync requeue --state dead --kind delete --dry-run   what would move, changing nothing
  gunsync requeue --state dead --kind delete       every dead deletion
  gunsync requeue --state dead --reset-attempts    every dead job, with a full set of retries
  gunsync requeue --key did:gun:8d7c1e2a9b3f:post1 the jobs of one record")]
pub struct RequeueArgs {
    /// Job ids (the ID column of `gunsync jobs`)
    #[arg(value_name = "ID", allow_negative_numbers = true)]
    ids: Vec<String>,
    /// Only jobs in this state: done, dead, cancelled, retrying
    #[arg(long, value_name = "STATE")]
    state: Option<String>,
    /// Only jobs of this kind: discover, delete
    #[arg(long, value_name = "KIND")]
    kind: Option<String>,
    /// Only jobs for this key (a DID such as did:gun:<soul>)
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// Start the attempt count again at 0 (default: allow one more attempt)
    #[arg(long)]
    reset_attempts: bool,
    /// Show what would be requeued; change nothing
    #[arg(long)]
    dry_run: bool,
}

pub async fn execute(args: RequeueArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let request = Requeue {
        ids: parse_ids(&args.ids)?,
        state: args.state.as_deref().map(parse_state).transpose()?,
        kind: args.kind.as_deref().map(parse_kind).transpose()?,
        key: args.key,
        reset_attempts: args.reset_attempts,
        dry_run: args.dry_run,
    };
    let has_filter = request.state.is_some() || request.kind.is_some() || request.key.is_some();
    if request.ids.is_empty() && !has_filter {
        return Err(UsageError(
            "requeue needs job ids or at least one filter (--state, --kind, --key); \
             e.g. gunsync requeue --state dead"
                .into(),
        )
        .into());
    }
    let ledger = global.open_ledger().await?;
    // The bar appears with the first batch, once the total is known.
    let mut bar = None;
    let result = ledger
        .requeue(&request, ledger.now(), &mut |done, total| {
            bar.get_or_insert_with(|| progress(Some(total), "requeueing"))
                .set_position(done);
        })
        .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    ledger.close().await;
    let report = result?;
    out!("{}", render(&report, &request))?;
    // Naming only ids that do not exist is an error, as for `show`; a partial hit is reported.
    if !has_filter && report.matched == 0 && !report.missing.is_empty() {
        return Err(not_found(&report.missing));
    }
    Ok(())
}

fn render(report: &RequeueReport, request: &Requeue) -> String {
    let mut out = String::new();
    let moved = report.requeued.len() as u64;
    let verb = if request.dry_run {
        "would requeue"
    } else {
        "requeued"
    };
    if report.matched == 0 {
        out.push_str("no jobs matched; nothing to requeue\n");
    } else if moved == 0 {
        out.push_str(&format!("{verb} 0 jobs\n"));
    } else {
        out.push_str(&format!(
            "{verb} {} to pending, runnable now: {}\n",
            plural(moved, "job", "jobs"),
            id_list(&report.requeued, 50)
        ));
        out.push_str(if request.reset_attempts {
            "  attempt counts reset to 0\n"
        } else {
            "  attempt counts kept; max_attempts raised to attempts + 1 where it was used up \
             (--reset-attempts restarts the count)\n"
        });
    }
    if report.skipped_running > 0 {
        out.push_str(&format!(
            "skipped {} running: a worker holds the lease; requeue never touches a running job\n",
            plural(report.skipped_running, "job", "jobs")
        ));
    }
    if report.skipped_pending > 0 {
        out.push_str(&format!(
            "skipped {} already pending\n",
            plural(report.skipped_pending, "job", "jobs")
        ));
    }
    if report.skipped_duplicate > 0 {
        out.push_str(&format!(
            "skipped {} as duplicates: their kind and key already have an active job (or a newer \
             job of the same key was requeued)\n",
            plural(report.skipped_duplicate, "job", "jobs")
        ));
    }
    if !report.missing.is_empty() {
        out.push_str(&format!("not found: {}\n", id_list(&report.missing, 50)));
    }
    if request.dry_run {
        out.push_str("dry run: nothing was changed\n");
    }
    out
}
