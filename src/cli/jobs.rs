//! `gunsync jobs`: list jobs, newest first, as a table or as JSON (DESIGN §6).

use super::output::{Table, clip, out, outln, print_json, relative};
use super::{GlobalArgs, parse_count, parse_kind, parse_state};
use crate::ledger::{JobFilter, JobView};
use crate::timestamp::Timestamp;

/// List jobs, newest first
///
/// Filters combine: `--state dead --kind delete` lists dead deletions. The table shows when each
/// job runs next (relative: "in 4m") and its last error; `gunsync show ID` explains one job.
/// `--json` prints an array of job objects (id, kind, key, state, attempts, max_attempts, run_at,
/// last_error, created_at, updated_at, processed_at, …) with ISO-8601 UTC timestamps.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  gunsync jobs                                  the 50 newest jobs
  gunsync jobs --state dead --kind delete       dead deletions and why they died
  gunsync jobs --key did:gun:8d7c1e2a9b3f:post1 every job of one record
  gunsync jobs --state retrying --limit 0 --json | jq '.[].id'")]
pub struct JobsArgs {
    /// Only jobs in this state: pending, running, retrying, done, dead, cancelled
    #[arg(long, value_name = "STATE")]
    state: Option<String>,
    /// Only jobs of this kind: discover, delete
    #[arg(long, value_name = "KIND")]
    kind: Option<String>,
    /// Only jobs for this key (a DID such as did:gun:<soul>)
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// At most this many jobs (0 = all)
    #[arg(
        long,
        value_name = "N",
        default_value = "50",
        allow_hyphen_values = true
    )]
    limit: String,
    /// Print a JSON array instead of a table
    #[arg(long)]
    json: bool,
}

pub async fn execute(args: JobsArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let limit = parse_count("--limit", &args.limit)?;
    let filter = JobFilter {
        state: args.state.as_deref().map(parse_state).transpose()?,
        kind: args.kind.as_deref().map(parse_kind).transpose()?,
        key: args.key,
        before: None,
        limit: if limit == 0 { u32::MAX } else { limit },
    };
    let ledger = global.open_ledger_read_only().await?;
    let jobs = ledger.list_jobs(&filter).await?;
    ledger.close().await;
    if args.json {
        return print_json(&jobs);
    }
    if jobs.is_empty() {
        outln!("no jobs match")?;
        return Ok(());
    }
    out!("{}", render(&jobs, Timestamp::now()))?;
    if jobs.len() as u64 == u64::from(filter.limit) {
        outln!(
            "(the {} newest; --limit N shows more, --limit 0 all)",
            jobs.len()
        )?;
    }
    Ok(())
}

/// The table: one line a job, the columns an operator scans first.
fn render(jobs: &[JobView], now: Timestamp) -> String {
    let mut table = Table::new([
        "ID",
        "KIND",
        "STATE",
        "ATTEMPTS",
        "NEXT RUN",
        "UPDATED",
        "KEY",
        "LAST ERROR",
    ]);
    for job in jobs {
        table.row(vec![
            job.id.to_string(),
            job.kind.clone(),
            job.state.clone(),
            format!("{}/{}", job.attempts, job.max_attempts),
            next_run(job, now),
            relative(job.updated_at, now),
            job.key.clone(),
            job.last_error
                .as_deref()
                .map(|e| clip(e, 60))
                .unwrap_or_default(),
        ]);
    }
    table.render()
}

/// When the job runs next, as a table cell.
fn next_run(job: &JobView, now: Timestamp) -> String {
    match job.state.as_str() {
        "pending" | "retrying" => relative(job.run_at, now),
        "running" => match job.lease_expires_at {
            Some(at) if at > now => format!("running, lease {}", relative(at, now)),
            _ => "running, lease expired".into(),
        },
        _ => "-".into(),
    }
}
