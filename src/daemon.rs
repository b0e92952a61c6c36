//! The daemon assembled: one relay client, one search client, the worker pool, the sync loop and
//! the HTTP endpoints over one ledger, all stopped by one [`Shutdown`]. `gunsync run` and
//! `gunsync demo` both run this; only `main` turns signals into a stop.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tracing::{error, info};

use crate::config::{DaemonSettings, Settings};
use crate::http::{self, HttpState, MEMORY_SAMPLE_EVERY, MemoryTracker, UiAccess};
use crate::jobs::{self, JobContext};
use crate::ledger::{Ledger, LedgerError};
use crate::relay::{RelayClient, RelayError};
use crate::search::{SearchClient, SearchError};
use crate::shutdown::Shutdown;
use crate::sync::Syncer;
use crate::worker::breaker::Probe;
use crate::worker::{Breakers, DrainReport, WorkerConfig, WorkerPool};

/// Why the daemon could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Relay(#[from] RelayError),
    #[error(transparent)]
    Search(#[from] SearchError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("http endpoints failed: {0}")]
    Http(#[source] std::io::Error),
}

/// The clients and the job context, built once from settings.
pub struct Services {
    pub settings: Arc<Settings>,
    pub ledger: Ledger,
    pub relay: RelayClient,
    pub search: SearchClient,
    /// Circuits of the systems the jobs need, shared by the pool and the endpoints.
    pub breakers: Arc<Breakers>,
}

impl Services {
    /// Builds one relay client and one search client (no request is sent).
    ///
    /// # Errors
    /// When a client cannot be built (TLS backend, invalid index name).
    pub fn build(settings: Arc<Settings>, ledger: Ledger) -> Result<Self, DaemonError> {
        let relay = RelayClient::new(settings.relay_options())?;
        let search = SearchClient::new(settings.search_options())?;
        let probe_client = search.clone();
        let probe: Probe = Arc::new(move || {
            let search = probe_client.clone();
            Box::pin(async move { search.ping().await.map_err(|e| e.to_string()) })
        });
        let breakers = Arc::new(Breakers::new().with_probe(jobs::ELASTICSEARCH, probe));
        Ok(Services {
            settings,
            ledger,
            relay,
            search,
            breakers,
        })
    }

    /// The sync cycle runner.
    pub fn syncer(&self) -> Syncer {
        Syncer::new(
            self.ledger.clone(),
            self.relay.clone(),
            self.settings.clone(),
        )
    }

    /// A worker pool with both handlers.
    pub fn pool(&self) -> WorkerPool {
        let ctx = Arc::new(JobContext::new(
            &self.settings,
            self.ledger.clone(),
            self.relay.clone(),
            self.search.clone(),
        ));
        let config = WorkerConfig {
            breakers: self.breakers.clone(),
            ..self.settings.worker_config()
        };
        WorkerPool::new(self.ledger.clone(), jobs::registry(ctx), config)
    }
}

/// A daemon ready to run: its listener is bound, so callers know the address first.
pub struct Daemon {
    services: Services,
    daemon: DaemonSettings,
    listener: TcpListener,
}

impl Daemon {
    /// Builds the clients and binds the HTTP listener.
    ///
    /// # Errors
    /// [`DaemonError::Listen`] when the address is taken; client build errors.
    pub async fn build(
        settings: Arc<Settings>,
        daemon: DaemonSettings,
        ledger: Ledger,
    ) -> Result<Self, DaemonError> {
        let services = Services::build(settings, ledger)?;
        let listener =
            TcpListener::bind(daemon.listen)
                .await
                .map_err(|source| DaemonError::Listen {
                    addr: daemon.listen,
                    source,
                })?;
        Ok(Daemon {
            services,
            daemon,
            listener,
        })
    }

    /// The bound HTTP address (port 0 resolved).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Runs until `shutdown` is stopped, then stops gracefully: no new cycle or lease, running
    /// jobs get `DEFAULT_SHUTDOWN_GRACE` to finish and are released after it.
    ///
    /// # Errors
    /// When the ledger fails at start-up or the HTTP server fails.
    pub async fn run(self, shutdown: Shutdown) -> Result<DrainReport, DaemonError> {
        let Daemon {
            services,
            daemon,
            listener,
        } = self;
        let pool = services.pool();
        let wake = pool.waker();
        // Other nodes' enqueues and requeues wake this pool at once (PostgreSQL; the task ends
        // when the ledger closes).
        let _listener = services.ledger.listen(wake.clone());
        let memory = Arc::new(MemoryTracker::default());
        let ui = UiAccess::new(listener.local_addr().ok(), daemon.ui_token.as_ref());
        let state = HttpState::new(
            services.ledger.clone(),
            services.breakers.clone(),
            memory.clone(),
            ui,
        )
        .waking(wake.clone());

        let memory_task = tokio::spawn(memory.run(MEMORY_SAMPLE_EVERY, shutdown.clone()));
        let http_shutdown = shutdown.clone();
        let http_task = tokio::spawn(async move {
            let result = http::serve(listener, state, http_shutdown.clone()).await;
            if let Err(e) = &result {
                error!(error = %e, "http endpoints failed; stopping");
                http_shutdown.stop();
            }
            result
        });
        let sync_task = daemon.sync_enabled.then(|| {
            info!(
                interval_ms = daemon.sync_interval.as_millis() as u64,
                peers = services.settings.peers.len(),
                "sync loop started"
            );
            tokio::spawn(services.syncer().waking(wake).run_loop(
                daemon.sync_interval,
                daemon.cycle_retention,
                shutdown.clone(),
            ))
        });
        if !daemon.sync_enabled {
            info!("sync disabled (GUN_SYNC_ENABLED=false): working queued jobs only");
        }

        let pool_result = pool.run(shutdown.clone()).await;
        // The pool ends only on a stop or a start-up failure; make sure everything else stops.
        shutdown.stop();
        if let Some(task) = sync_task {
            let _ = task.await;
        }
        let http_result = http_task.await;
        let _ = memory_task.await;
        services.ledger.close().await;
        let report = pool_result?;
        match http_result {
            Ok(Err(e)) => Err(DaemonError::Http(e)),
            _ => Ok(report),
        }
    }
}
