//! `gunsync ui`: the dashboard over a ledger without running the daemon (no sync, no workers),
//! for inspecting a ledger and acting on it. The daemon serves the same pages at `/ui`.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use super::GlobalArgs;
use super::output::outln;
use crate::config::DEFAULT_LISTEN;
use crate::http::{self, HttpState, MemoryTracker, UiAccess};
use crate::secret::Secret;
use crate::shutdown::Shutdown;
use crate::worker::Breakers;

/// Serve the web dashboard (/ui) over the ledger until Ctrl-C, without running the daemon
///
/// Pages: overview (counts, backlog, throughput, sync cycles, health), jobs (filter, keyset
/// pages), one job (why it is where it is, every attempt) and dead jobs by reason. Actions
/// (requeue with attempts reset, cancel) go through the same ledger code as the CLI. On a
/// loopback address pages and actions need no token unless GUNSYNC_UI_TOKEN is set; on any other
/// address GUNSYNC_UI_TOKEN is required and every page asks for it once.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  gunsync --database data/gunsync.db ui            # http://127.0.0.1:9464/ui
  GUNSYNC_UI_TOKEN=$(openssl rand -hex 16) gunsync ui --listen 0.0.0.0:9464")]
pub struct UiArgs {
    /// Address to serve the dashboard on (the daemon's own listener if it is not running)
    #[arg(long, env = "GUNSYNC_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Token the dashboard asks for before any action (and, off loopback, before any page)
    #[arg(long = "ui-token", env = "GUNSYNC_UI_TOKEN", hide_env_values = true)]
    ui_token: Option<Secret>,
}

pub async fn execute(args: UiArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    // A mistyped path is an error, never a new empty ledger to look at.
    global.open_ledger_read_only().await?.close().await;
    let ledger = global.open_ledger().await?;
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() && args.ui_token.is_none() {
        anyhow::bail!(
            "the dashboard on {addr} (not a loopback address) needs GUNSYNC_UI_TOKEN: set it, or \
             listen on 127.0.0.1"
        );
    }
    let state = HttpState::new(
        ledger.clone(),
        Arc::new(Breakers::new()),
        Arc::new(MemoryTracker::default()),
        UiAccess::new(Some(addr), args.ui_token.as_ref()),
    );
    outln!("dashboard: http://{addr}/ui  (Ctrl-C stops it)")?;
    let shutdown = Shutdown::new();
    tokio::spawn(super::run::stop_on_signals(shutdown.clone()));
    http::serve(listener, state, shutdown).await?;
    ledger.close().await;
    Ok(())
}
