//! `gunsync stats`: counts by state and kind, the runnable backlog and the last sync cycles.

use super::output::{Table, brief, out, precise, print_json, relative};
use super::{GlobalArgs, parse_count};
use crate::ledger::{JobState, Stats};
use crate::timestamp::Timestamp;

/// Count jobs by state and kind; show the backlog and the last sync cycles
///
/// The first thing to run when something looks stuck: how many jobs are dead, retrying or
/// running, how long the oldest runnable job has waited, how many leases expired (a worker died)
/// and what the last sync cycles read and enqueued.
/// `--json` prints an object: `states` maps every state name to its count, `kinds` maps kind →
/// state → count, plus `total`, `runnable`, `oldest_runnable_age_s`, `expired_leases`,
/// `circuits` (systems whose failures paused the work, e.g. a wrong Elasticsearch password) and
/// `last_cycles`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  gunsync stats
  gunsync stats --json | jq '.states.dead'
  watch -n 5 gunsync stats")]
pub struct StatsArgs {
    /// Print one JSON object instead of tables
    #[arg(long)]
    json: bool,
    /// How many recent sync cycles to show
    #[arg(
        long,
        value_name = "N",
        default_value = "5",
        allow_hyphen_values = true
    )]
    cycles: String,
}

pub async fn execute(args: StatsArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let cycles = parse_count("--cycles", &args.cycles)?;
    let ledger = global.open_ledger_read_only().await?;
    let now = Timestamp::now();
    let stats = ledger.stats(now, cycles).await?;
    ledger.close().await;
    if args.json {
        return print_json(&stats);
    }
    out!("{}", render(&stats, now))?;
    Ok(())
}

fn render(stats: &Stats, now: Timestamp) -> String {
    let mut headers = vec!["KIND"];
    headers.extend(JobState::ALL.map(JobState::as_str));
    headers.push("TOTAL");
    let mut table = Table::new(headers);
    let count = |map: &std::collections::BTreeMap<String, i64>, state: JobState| {
        map.get(state.as_str()).copied().unwrap_or(0).to_string()
    };
    for (kind, states) in &stats.kinds {
        let mut row = vec![kind.clone()];
        row.extend(JobState::ALL.map(|s| count(states, s)));
        row.push(states.values().sum::<i64>().to_string());
        table.row(row);
    }
    let mut all = vec!["all".to_string()];
    all.extend(JobState::ALL.map(|s| count(&stats.states, s)));
    all.push(stats.total.to_string());
    table.row(all);

    let mut out = table.render();
    out.push('\n');
    out.push_str(&format!(
        "runnable now    {}{}\n",
        stats.runnable,
        match stats.oldest_runnable_age_s {
            Some(age) if stats.runnable > 0 => format!(
                " (oldest waiting {})",
                brief(std::time::Duration::from_secs_f64(age.max(0.0)))
            ),
            _ => String::new(),
        }
    ));
    out.push_str(&format!(
        "expired leases  {}{}\n",
        stats.expired_leases,
        if stats.expired_leases > 0 {
            " (their workers stopped; the reclaimer returns them to retrying)"
        } else {
            ""
        }
    ));
    for c in &stats.circuits {
        out.push_str(&format!(
            "circuit open    {} since {} ({}): {}; work paused, next probe {}\n",
            c.system,
            c.since,
            relative(c.since, now),
            c.reason,
            relative(c.next_probe_at, now)
        ));
    }
    out.push('\n');
    if stats.last_cycles.is_empty() {
        out.push_str("no sync cycles yet\n");
        return out;
    }
    let mut cycles = Table::new([
        "CYCLE",
        "PEER",
        "STARTED",
        "TOOK",
        "DELETIONS",
        "RECORDS",
        "+DELETE",
        "+DISCOVER",
        "REJECTED",
        "IGNORED",
        "ERROR",
    ]);
    for c in &stats.last_cycles {
        cycles.row(vec![
            c.id.to_string(),
            c.peer.clone(),
            relative(c.started_at, now),
            c.finished_at
                .map_or("running".into(), |f| precise(f.since(c.started_at))),
            c.deletions_seen.to_string(),
            c.records_seen.to_string(),
            c.delete_enqueued.to_string(),
            c.discover_enqueued.to_string(),
            c.rejected.to_string(),
            c.deletions_ignored.to_string(),
            c.error.clone().unwrap_or_default(),
        ]);
    }
    out.push_str(&cycles.render());
    out
}
