//! Shutdown as a value with two levels (soft and hard stop). Only `main` listens for signals;
//! everything else takes a `Shutdown`, so tests stop components without signals.

use tokio_util::sync::CancellationToken;

/// `stop_leasing` asks loops to take no new work; `cancel_running` (fired after the grace
/// period) asks running jobs to give their leases back.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    stop_leasing: CancellationToken,
    cancel_running: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Soft stop: finish what is running, lease nothing more.
    pub fn stop(&self) {
        self.stop_leasing.cancel();
    }

    /// Hard stop: also interrupt running jobs (they release their leases).
    pub fn cancel_running(&self) {
        self.stop_leasing.cancel();
        self.cancel_running.cancel();
    }

    pub fn is_stopping(&self) -> bool {
        self.stop_leasing.is_cancelled()
    }

    /// Resolves once a soft (or hard) stop was asked for.
    pub async fn stopped(&self) {
        self.stop_leasing.cancelled().await
    }

    /// Resolves once running jobs must give up.
    pub async fn running_cancelled(&self) {
        self.cancel_running.cancelled().await
    }
}

/// Waits for SIGINT or SIGTERM (the daemon's only signal handling).
pub async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
