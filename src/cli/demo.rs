//! `gunsync demo`: run the daemon against in-process emulators of a GUN relay and Elasticsearch
//! (no network needed), then print what happened and how to inspect the ledger.

use std::path::PathBuf;
use std::time::Duration;

use super::GlobalArgs;
use super::output::outln;
use crate::demo::{self, DemoOptions, describe_states};
use crate::ledger::Ledger;

/// Run the daemon for a few seconds against local emulators and show the ledger it leaves
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Ledger file of the demo (recreated each run). With a PostgreSQL --database
    /// (GUNSYNC_DATABASE=postgres://…), the demo's ledger is the schema `gunsync_demo` there
    /// instead (recreated each run; nothing else in that database is touched)
    #[arg(long, default_value = "./data/gunsync-demo.db")]
    pub demo_database: PathBuf,
    /// Longest run in seconds (it stops earlier once every job is finished)
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
}

pub async fn execute(args: DemoArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    // A PostgreSQL --database (GUNSYNC_DATABASE) hosts the demo in a schema of its own; a file
    // path there is the production ledger, which the demo never touches.
    let database = if Ledger::is_postgres_url(&global.database) {
        global.database.clone()
    } else {
        args.demo_database.to_string_lossy().into_owned()
    };
    let options = DemoOptions {
        database,
        max_run: Duration::from_secs(args.seconds.max(2)),
        min_run: Duration::from_secs(8).min(Duration::from_secs(args.seconds.max(2))),
        verbose: !args.json,
    };
    if !args.json {
        outln!(
            "gunsync demo: a GUN relay emulator with {} records in 6 type indexes and 7 deletions,\n\
             a strict Elasticsearch emulator whose DELETE fails (500) for 4 of them: 3 recover after\n\
             3 failures, 1 never does. Backoff 250 ms doubling to 2 s, 5 attempts, a cycle every 2 s.\n",
            6 * 8 + 2
        )?;
    }
    let summary = demo::run(options).await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&summary)?)?;
        return Ok(());
    }
    let db = shell_quoted(&summary.database);
    // The demo's PostgreSQL URL selects its schema (`options=-c search_path=…`), for psql too.
    let sql = if Ledger::is_postgres_url(&summary.database) {
        format!("psql {db} -c")
    } else {
        format!("sqlite3 {db}")
    };
    outln!(
        "\nafter {:.1} s: {} sync cycles, {} documents in Elasticsearch",
        summary.elapsed_ms as f64 / 1000.0,
        summary.cycles,
        summary.es_documents
    )?;
    for (kind, states) in &summary.states {
        outln!("  {kind:<9} jobs: {}", describe_states(states))?;
    }
    outln!(
        "\nfailing deletions (ES DELETE requests sent; no cycle re-sends a delete that is retrying):"
    )?;
    for f in &summary.failing_deletions {
        let scripted = match f.failures {
            Some(n) => format!("fails {n}x then recovers"),
            None => "fails forever".into(),
        };
        outln!(
            "  {}  [{scripted}]  {} DELETE requests, {} attempts -> {}{}",
            f.did,
            f.delete_requests,
            f.attempts,
            f.state,
            f.last_error
                .as_deref()
                .filter(|_| f.state == "dead")
                .map(|e| format!("\n      last_error: {e}"))
                .unwrap_or_default()
        )?;
    }
    outln!(
        "\ninspect the ledger:\n  \
         cargo run --release -- --database {db} jobs --state dead\n  \
         cargo run --release -- --database {db} stats\n  \
         {sql} 'select * from job_summary'\n  \
         {sql} 'select * from recent_failures limit 10'\n\
         retry the dead ones:\n  \
         cargo run --release -- --database {db} requeue --state dead\n\
         or look at it all in the browser (the dashboard, http://127.0.0.1:9464/ui):\n  \
         cargo run --release -- --database {db} ui"
    )?;
    Ok(())
}

/// `text` as one shell word (single-quoted when it holds anything a shell would read).
fn shell_quoted(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-:@".contains(c))
    {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}
