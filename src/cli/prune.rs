//! `gunsync prune`: delete finished jobs and their attempt history once they are old enough.
//! The ledger deletes in batches of short transactions, so a running daemon keeps working.

use std::time::Duration;

use super::output::{outln, plural, progress, relative};
use super::{GlobalArgs, UsageError, parse_state};
use crate::ledger::Vacuum;
use crate::timestamp::Timestamp;

/// Delete finished jobs (and their attempts) older than a duration
///
/// Deletes done, dead and cancelled jobs whose processed_at is older than --older-than, together
/// with their rows in job_attempts, and the sync_cycles records of cycles that started before it
/// (the daemon also prunes those itself, after GUNSYNC_CYCLE_RETENTION_MS). Pending, retrying and
/// running jobs are never pruned. --state narrows it to one finished state (and keeps the cycle
/// records). DURATION is a number and a unit: 30m, 12h, 7d, 2weeks (humantime syntax).
///
/// The freed space goes back to the file system (the file shrinks) on every ledger created by
/// this gunsync (incremental auto-vacuum); an older ledger keeps its free pages inside the file
/// until `--vacuum` rewrites it once (holding the write lock while it runs: do it when the
/// daemon is stopped or quiet).
///
/// Note: a pruned delete job no longer stops the sync cycle from enqueuing its DID again.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  gunsync prune --older-than 7d                  all finished jobs older than a week
  gunsync prune --older-than 12h --state done    keep dead and cancelled jobs for inspection
  gunsync prune --older-than 30d --state dead")]
pub struct PruneArgs {
    /// Prune jobs that finished longer ago than this (e.g. 30m, 12h, 7d)
    #[arg(
        long,
        value_name = "DURATION",
        required = true,
        allow_hyphen_values = true
    )]
    older_than: String,
    /// Only jobs in this finished state: done, dead, cancelled
    #[arg(long, value_name = "STATE")]
    state: Option<String>,
    /// Also rewrite a ledger that cannot give space back incrementally (a full VACUUM, once)
    #[arg(long)]
    vacuum: bool,
}

pub async fn execute(args: PruneArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let older_than = parse_duration(&args.older_than)?;
    let state = args.state.as_deref().map(parse_state).transpose()?;
    if let Some(state) = state.filter(|s| !s.is_finished()) {
        return Err(UsageError(format!(
            "prune deletes finished jobs only (done, dead, cancelled), not {state} jobs"
        ))
        .into());
    }
    let now = Timestamp::now();
    let cutoff = now.minus(older_than);
    let ledger = global.open_ledger().await?;
    let bar = progress(None, "jobs pruned");
    let result = ledger
        .prune(cutoff, state, &mut |deleted| bar.set_position(deleted))
        .await;
    bar.finish_and_clear();
    let cycles = match (&result, state) {
        (Ok(_), None) => ledger.prune_cycles(cutoff).await,
        _ => Ok(0),
    };
    let space = match &result {
        Ok(_) => Some(
            ledger
                .give_back_space(if args.vacuum {
                    Vacuum::Full
                } else {
                    Vacuum::Incremental
                })
                .await,
        ),
        Err(_) => None,
    };
    ledger.close().await;
    let pruned = result?;
    let cycles = cycles?;
    let space = space.transpose()?.unwrap_or_default();
    outln!(
        "pruned {} and {} that finished before {cutoff} ({}), and {}",
        plural(pruned.jobs, "job", "jobs"),
        plural(pruned.attempts, "attempt", "attempts"),
        relative(cutoff, now),
        plural(cycles, "sync cycle record", "sync cycle records"),
    )?;
    let mib = |b: u64| b as f64 / 1_048_576.0;
    outln!(
        "ledger {:.1} MiB → {:.1} MiB{}",
        mib(space.bytes_before),
        mib(space.bytes_after),
        if space.free_pages > 0 {
            format!(
                " ({} free pages kept inside the file; --vacuum gives them back)",
                space.free_pages
            )
        } else {
            String::new()
        }
    )?;
    Ok(())
}

/// `7d`, `12h`, `30m` (humantime): a usage error otherwise.
fn parse_duration(text: &str) -> Result<Duration, UsageError> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        UsageError(format!(
            "--older-than {text:?}: {e} (expected e.g. 30m, 12h, 7d)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_the_units_operators_type() {
        let table = [
            ("7d", Some(7 * 86_400)),
            ("12h", Some(12 * 3600)),
            ("30m", Some(1800)),
            ("1h 30m", Some(5400)),
            ("7", None),
            ("soon", None),
            ("-1d", None),
        ];
        for (text, secs) in table {
            assert_eq!(
                parse_duration(text).ok().map(|d| d.as_secs()),
                secs,
                "{text}"
            );
        }
    }
}
