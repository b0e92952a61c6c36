//! `gunsync sync --once [--wait]`: one sync cycle (enqueue only), then exit; `--wait` also works
//! jobs until none is runnable now (jobs retrying later stay queued for the daemon). `--once` is
//! required: a continuous sync is `gunsync run`, and a bare `gunsync sync` that silently did one
//! cycle, or never returned, would surprise someone. Exit 1 only when every peer failed; a
//! failed peer is reported on stderr and in `sync_cycles`.

use std::sync::Arc;

use serde_json::json;

use super::output::outln;
use super::{GlobalArgs, UsageError};
use crate::config::Settings;
use crate::daemon::Services;
use crate::shutdown::Shutdown;

/// Run one sync cycle (enqueue discover/delete jobs); with --wait also work the jobs
#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// Run exactly one cycle, then exit (required; the continuous loop is `gunsync run`)
    #[arg(long)]
    pub once: bool,
    /// After the cycle, work jobs until none is runnable now
    #[arg(long)]
    pub wait: bool,
    /// Print the result as one JSON object
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub settings: Settings,
}

pub async fn execute(args: SyncArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    if !args.once {
        return Err(UsageError(
            "gunsync sync needs --once (it runs one cycle; `gunsync run` syncs continuously)"
                .into(),
        )
        .into());
    }
    args.settings
        .validate()
        .map_err(|e| UsageError(e.to_string()))?;
    let ledger = global.open_ledger_checked().await?;
    let services = Services::build(Arc::new(args.settings), ledger.clone())?;
    let shutdown = Shutdown::new();
    tokio::spawn(super::run::stop_on_signals(shutdown.clone()));

    // On a shared (PostgreSQL) ledger, wait for a running daemon's cycle to end: one at a time.
    let lock = loop {
        if let Some(lock) = ledger.try_cycle_lock().await? {
            break lock;
        }
        if shutdown.is_stopping() {
            anyhow::bail!("stopped while another node was running a sync cycle");
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let cycle = services.syncer().run_cycle(&shutdown).await;
    lock.release().await;
    let cycle = cycle?;
    let drain = if args.wait && !shutdown.is_stopping() {
        Some(services.pool().drain(shutdown.clone()).await?)
    } else {
        None
    };
    ledger.close().await;

    if args.json {
        outln!("{}", json!({ "cycle": cycle, "drain": drain }))?;
    } else {
        for peer in &cycle.peers {
            let c = &peer.counts;
            outln!(
                "{}: {} deletions seen ({} ignored), {} records seen, {} delete and {} discover jobs enqueued, {} rejected{}",
                peer.peer,
                c.deletions_seen,
                c.deletions_ignored,
                c.records_seen,
                c.delete_enqueued,
                c.discover_enqueued,
                c.rejected,
                peer.error
                    .as_deref()
                    .map(|e| format!(", error: {e}"))
                    .unwrap_or_default()
            )?;
        }
        if let Some(d) = drain {
            outln!(
                "jobs run: {} ({} done, {} retrying later, {} dead, {} paused by an open circuit, {} interrupted)",
                d.ran,
                d.done,
                d.retrying,
                d.dead,
                d.paused,
                d.interrupted
            )?;
        }
    }
    for peer in cycle.failed() {
        eprintln!(
            "gunsync: warning: {}: {}",
            peer.peer,
            peer.error.as_deref().unwrap_or("")
        );
    }
    if !cycle.peers.is_empty() && cycle.failed().count() == cycle.peers.len() {
        anyhow::bail!("sync failed on every peer");
    }
    Ok(())
}
