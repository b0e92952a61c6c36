//! Circuit breakers for the systems jobs depend on (Elasticsearch). A *systemic* failure — a
//! wrong password (401/403), a cluster that refuses connections, a TLS failure — is a property
//! of the configuration or the cluster, not of the job: it opens the system's circuit, the pool
//! leases nothing while a circuit is open (both job kinds need Elasticsearch), and a probe on a
//! backoff closes it. The jobs that met the failure go back to `pending` without burning an
//! attempt, so a configuration mistake never kills a job.
//!
//! Circuit state is process health, not job state: it lives here, in memory. The pool mirrors
//! it into the ledger (`circuits`) only so that `gunsync stats` in another process can show it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::timestamp::Timestamp;

/// First wait before probing an open circuit; doubles up to [`MAX_PROBE_DELAY`].
pub const FIRST_PROBE_DELAY: Duration = Duration::from_secs(1);
/// Longest wait between two probes of an open circuit.
pub const MAX_PROBE_DELAY: Duration = Duration::from_secs(30);

/// Asks whether a system works again (`Err` = why not).
pub type Probe = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// An open circuit as operators see it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OpenCircuit {
    pub system: String,
    /// The failure that opened it (or the last failed probe).
    pub reason: String,
    pub since: Timestamp,
    pub next_probe_at: Timestamp,
}

/// The breakers of one worker pool. Cheap to share (`Arc`).
#[derive(Default)]
pub struct Breakers {
    systems: Mutex<Vec<System>>,
}

struct System {
    name: String,
    probe: Option<Probe>,
    open: Option<Open>,
}

struct Open {
    reason: String,
    since: Timestamp,
    delay: Duration,
    next_probe: Instant,
    next_probe_at: Timestamp,
}

/// A state change the pool mirrors into the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    Opened(OpenCircuit),
    Closed(String),
}

impl std::fmt::Debug for Breakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breakers")
            .field("open", &self.open_circuits())
            .finish()
    }
}

impl Breakers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `system` with the probe that closes its circuit. A system tripped without a
    /// probe closes once its delay has passed, and the next job tests it.
    pub fn with_probe(self, system: &str, probe: Probe) -> Self {
        find_or_insert(&mut self.lock(), system).probe = Some(probe);
        self
    }

    /// Opens `system`'s circuit (or, if open, records the newer reason).
    pub fn trip(&self, system: &str, reason: &str) -> Option<Transition> {
        let mut systems = self.lock();
        let entry = find_or_insert(&mut systems, system);
        if let Some(open) = &mut entry.open {
            open.reason = reason.to_owned();
            return None;
        }
        warn!(
            system,
            reason, "circuit opened: pausing work until it answers again"
        );
        entry.open = Some(Open::new(reason.to_owned(), FIRST_PROBE_DELAY));
        Some(Transition::Opened(view(entry)))
    }

    /// Whether any circuit is open.
    pub fn any_open(&self) -> bool {
        self.lock().iter().any(|s| s.open.is_some())
    }

    /// The open circuits, for `/healthz`, `/metrics` and `stats`.
    pub fn open_circuits(&self) -> Vec<OpenCircuit> {
        self.lock()
            .iter()
            .filter(|s| s.open.is_some())
            .map(view)
            .collect()
    }

    /// How long until the earliest probe is due (`None` = nothing open).
    pub fn next_probe_in(&self) -> Option<Duration> {
        let now = Instant::now();
        self.lock()
            .iter()
            .filter_map(|s| s.open.as_ref())
            .map(|o| o.next_probe.saturating_duration_since(now))
            .min()
    }

    /// Probes every open circuit whose probe is due: a success closes it, a failure waits twice
    /// as long (up to [`MAX_PROBE_DELAY`]) for the next one. Returns what changed.
    pub async fn probe_due(&self) -> Vec<Transition> {
        let now = Instant::now();
        let due: Vec<(String, Option<Probe>)> = self
            .lock()
            .iter()
            .filter(|s| s.open.as_ref().is_some_and(|o| o.next_probe <= now))
            .map(|s| (s.name.clone(), s.probe.clone()))
            .collect();
        let mut changes = Vec::new();
        for (name, probe) in due {
            let result = match probe {
                Some(probe) => probe().await,
                None => Ok(()),
            };
            let mut systems = self.lock();
            let entry = find_or_insert(&mut systems, &name);
            match result {
                Ok(()) => {
                    if let Some(open) = entry.open.take() {
                        info!(system = %name, since = %open.since, "circuit closed: resuming work");
                        changes.push(Transition::Closed(name));
                    }
                }
                Err(reason) => {
                    if let Some(open) = &mut entry.open {
                        let delay = (open.delay * 2).min(MAX_PROBE_DELAY);
                        warn!(system = %name, reason = %reason, retry_in_ms = delay.as_millis() as u64, "circuit still open");
                        let since = open.since;
                        *open = Open::new(reason, delay);
                        open.since = since;
                        changes.push(Transition::Opened(view(entry)));
                    }
                }
            }
        }
        changes
    }

    fn lock(&self) -> MutexGuard<'_, Vec<System>> {
        self.systems.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Open {
    fn new(reason: String, delay: Duration) -> Self {
        Open {
            reason,
            since: Timestamp::now(),
            delay,
            next_probe: Instant::now() + delay,
            next_probe_at: Timestamp::now().plus(delay),
        }
    }
}

fn find_or_insert<'a>(systems: &'a mut Vec<System>, name: &str) -> &'a mut System {
    match systems.iter().position(|s| s.name == name) {
        Some(i) => &mut systems[i],
        None => {
            systems.push(System {
                name: name.to_owned(),
                probe: None,
                open: None,
            });
            systems.last_mut().expect("just pushed")
        }
    }
}

fn view(system: &System) -> OpenCircuit {
    let open = system.open.as_ref().expect("viewed while open");
    OpenCircuit {
        system: system.name.clone(),
        reason: open.reason.clone(),
        since: open.since,
        next_probe_at: open.next_probe_at,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    fn probe(ok: Arc<AtomicBool>) -> Probe {
        Arc::new(move || {
            let ok = ok.load(Ordering::SeqCst);
            Box::pin(async move { if ok { Ok(()) } else { Err("still 401".into()) } })
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_tripped_circuit_stays_open_until_a_probe_succeeds() {
        let healthy = Arc::new(AtomicBool::new(false));
        let breakers = Breakers::new().with_probe("elasticsearch", probe(healthy.clone()));
        assert!(!breakers.any_open());
        assert!(matches!(
            breakers.trip("elasticsearch", "elasticsearch answered 401"),
            Some(Transition::Opened(_))
        ));
        assert_eq!(
            breakers.trip("elasticsearch", "again"),
            None,
            "already open"
        );
        assert!(breakers.any_open());
        assert_eq!(breakers.next_probe_in(), Some(FIRST_PROBE_DELAY));

        assert!(
            breakers.probe_due().await.is_empty(),
            "no probe before it is due"
        );
        tokio::time::advance(FIRST_PROBE_DELAY).await;
        let changes = breakers.probe_due().await;
        assert!(matches!(&changes[..], [Transition::Opened(c)] if c.reason == "still 401"));
        assert_eq!(
            breakers.next_probe_in(),
            Some(FIRST_PROBE_DELAY * 2),
            "backs off"
        );

        healthy.store(true, Ordering::SeqCst);
        tokio::time::advance(FIRST_PROBE_DELAY * 2).await;
        assert_eq!(
            breakers.probe_due().await,
            vec![Transition::Closed("elasticsearch".into())]
        );
        assert!(!breakers.any_open());
        assert!(breakers.open_circuits().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn probe_delays_are_capped() {
        let breakers = Breakers::new().with_probe("es", probe(Arc::new(AtomicBool::new(false))));
        breakers.trip("es", "refused");
        for _ in 0..10 {
            tokio::time::advance(MAX_PROBE_DELAY).await;
            breakers.probe_due().await;
        }
        assert_eq!(breakers.next_probe_in(), Some(MAX_PROBE_DELAY));
    }

    #[tokio::test(start_paused = true)]
    async fn a_system_without_a_probe_closes_when_its_delay_passes() {
        let breakers = Breakers::new();
        breakers.trip("relay", "refused");
        tokio::time::advance(FIRST_PROBE_DELAY).await;
        assert_eq!(
            breakers.probe_due().await,
            vec![Transition::Closed("relay".into())]
        );
    }
}
