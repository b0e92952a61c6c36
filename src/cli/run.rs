//! `gunsync run`: the daemon (DESIGN §6). Sync cycles every `GUN_SYNC_INTERVAL` ms, the worker
//! pool and the HTTP endpoints; SIGINT/SIGTERM stop it gracefully (exit 0), a second signal
//! interrupts running jobs, which give their leases back.

use std::sync::Arc;

use tracing::{info, warn};

use super::{GlobalArgs, UsageError};
use crate::config::{DaemonSettings, Settings};
use crate::daemon::Daemon;
use crate::shutdown::{self, Shutdown};

/// Run the daemon: sync cycles, worker pool, /healthz, /metrics, /health/memory
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub settings: Settings,
    #[command(flatten)]
    pub daemon: DaemonSettings,
}

pub async fn execute(args: RunArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    args.settings
        .validate()
        .and_then(|()| args.daemon.validate())
        .map_err(|e| UsageError(e.to_string()))?;
    let ledger = global.open_ledger_checked().await?;
    let daemon = Daemon::build(Arc::new(args.settings), args.daemon, ledger).await?;
    let shutdown = Shutdown::new();
    tokio::spawn(stop_on_signals(shutdown.clone()));
    let report = daemon.run(shutdown).await?;
    info!(
        ran = report.ran,
        done = report.done,
        dead = report.dead,
        "gunsync stopped"
    );
    Ok(())
}

/// First signal: graceful stop. Second: interrupt running jobs now.
pub(super) async fn stop_on_signals(shutdown: Shutdown) {
    shutdown::signal().await;
    info!("stop signal received; finishing running jobs");
    shutdown.stop();
    shutdown::signal().await;
    warn!("second stop signal; releasing running jobs");
    shutdown.cancel_running();
}
