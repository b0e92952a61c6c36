//! The daemon's HTTP endpoints (axum): `/healthz` (can the ledger be read *and written*, is a
//! circuit open, when did the last cycle finish), `/metrics` (Prometheus text, job gauges
//! refreshed from the ledger at scrape) and `/health/memory` (RSS and open-fd samples over time
//! with their growth rate, taken on a timer only), and the dashboard under `/ui` ([`ui`]): the
//! only part that changes the ledger, through the same ledger calls as the CLI.

pub mod ui;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::ledger::{JobKind, JobState, Ledger};
use crate::shutdown::Shutdown;
use crate::timestamp::Timestamp;
use crate::worker::Breakers;
pub use ui::UiAccess;

/// Memory samples kept (at one per 10 s: the last hour).
pub const MEMORY_SAMPLES: usize = 360;
/// How often the memory tracker samples.
pub const MEMORY_SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// The process-wide Prometheus recorder, installed on first use. Every `metrics::` call in the
/// crate (worker attempts, client requests, cycles) lands here.
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            warn!("a metrics recorder was already installed; /metrics shows only its own gauges");
        }
        handle
    })
}

/// What the endpoints read.
#[derive(Clone)]
pub struct HttpState {
    ledger: Ledger,
    breakers: Arc<Breakers>,
    metrics: PrometheusHandle,
    memory: Arc<MemoryTracker>,
    ui: Arc<UiAccess>,
    /// The worker pool's wake-up, poked after the dashboard requeued jobs (`None` in `gunsync ui`).
    wake: Option<Arc<tokio::sync::Notify>>,
    started: Instant,
}

impl HttpState {
    pub fn new(
        ledger: Ledger,
        breakers: Arc<Breakers>,
        memory: Arc<MemoryTracker>,
        ui: UiAccess,
    ) -> Self {
        HttpState {
            ledger,
            breakers,
            metrics: metrics_handle().clone(),
            memory,
            ui: Arc::new(ui),
            wake: None,
            started: Instant::now(),
        }
    }

    /// Wakes the worker pool when the dashboard makes jobs runnable, so they start at once
    /// instead of at the pool's next idle poll.
    pub fn waking(mut self, wake: Arc<tokio::sync::Notify>) -> Self {
        self.wake = Some(wake);
        self
    }
}

/// The router (tests can mount it without a socket).
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/health/memory", get(memory))
        .merge(ui::routes())
        .with_state(state)
}

/// Serves the endpoints on `listener` until `shutdown`.
///
/// # Errors
/// When the server fails to accept connections.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        info!(listen = %addr, "http endpoints listening");
    }
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.stopped().await })
        .await
}

/// `200` when the ledger reads and writes and no circuit is open; otherwise `503` with the
/// reason in `error` (and the details in `ledger` / `circuits`).
async fn healthz(State(state): State<HttpState>) -> Response {
    let uptime = state.started.elapsed().as_secs();
    let health = state.ledger.health();
    let circuits = state.breakers.open_circuits();
    let ledger = match (
        &health.corrupt,
        &health.write_error,
        state.ledger.ping().await,
    ) {
        (Some(corrupt), _, _) => Err(format!("corrupt: {corrupt}")),
        (None, Some(failure), _) => Err(format!(
            "writes failing since {}: {}",
            failure.since, failure.error
        )),
        (None, None, Err(e)) => Err(format!("error: {e}")),
        (None, None, Ok(())) => Ok(()),
    };
    let last = state.ledger.last_cycle_finished_at().await.ok().flatten();
    let error = match (&ledger, circuits.first()) {
        (Err(e), _) => Some(format!("ledger {e}")),
        (Ok(()), Some(c)) => Some(format!(
            "{} circuit open since {}: {}",
            c.system, c.since, c.reason
        )),
        (Ok(()), None) => None,
    };
    let body = json!({
        "status": if error.is_none() { "ok" } else { "unavailable" },
        "ledger": ledger.as_ref().map_or_else(|e| e.clone(), |()| "ok".to_owned()),
        "circuits": circuits,
        "error": error,
        "lastCycleFinishedAt": last.map(|t| t.to_string()),
        "uptimeSeconds": uptime,
    });
    let status = if error.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics_text(State(state): State<HttpState>) -> Response {
    match state.ledger.stats(Timestamp::now(), 0).await {
        Ok(stats) => {
            metrics::gauge!("gunsync_ledger_up").set(1.0);
            for kind in JobKind::ALL {
                let by_state = stats.kinds.get(kind.as_str());
                for s in JobState::ALL {
                    let n = by_state
                        .and_then(|m| m.get(s.as_str()))
                        .copied()
                        .unwrap_or(0);
                    metrics::gauge!("gunsync_jobs", "kind" => kind.as_str(), "state" => s.as_str())
                        .set(n as f64);
                }
            }
            metrics::gauge!("gunsync_jobs_runnable").set(stats.runnable as f64);
            metrics::gauge!("gunsync_oldest_runnable_age_seconds")
                .set(stats.oldest_runnable_age_s.unwrap_or(0.0));
            metrics::gauge!("gunsync_expired_leases").set(stats.expired_leases as f64);
            metrics::gauge!("gunsync_ledger_writes_failing").set(f64::from(u8::from(
                state.ledger.health().write_error.is_some(),
            )));
        }
        Err(e) => {
            warn!(error = %e, "ledger stats for /metrics failed");
            metrics::gauge!("gunsync_ledger_up").set(0.0);
        }
    }
    if let Ok(Some(at)) = state.ledger.last_cycle_finished_at().await {
        metrics::gauge!("gunsync_last_cycle_finished_timestamp_seconds")
            .set(at.as_datetime().timestamp_millis() as f64 / 1000.0);
    }
    let open = state.breakers.open_circuits();
    let es = crate::jobs::ELASTICSEARCH;
    let es_open = open.iter().any(|c| c.system == es);
    metrics::gauge!("gunsync_circuit_open", "system" => es).set(f64::from(u8::from(es_open)));
    let sample = ProcessSample::now();
    if let Some(fds) = sample.open_fds {
        metrics::gauge!("process_open_fds").set(fds as f64);
    }
    if let Some(rss) = sample.rss_bytes {
        metrics::gauge!("process_resident_memory_bytes").set(rss as f64);
    }
    state.metrics.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// The samples the timer took: a GET never takes one, so callers cannot distort the slope.
async fn memory(State(state): State<HttpState>) -> Response {
    Json(state.memory.report()).into_response()
}

/// One reading of the process's memory and descriptors (`None` where /proc is unavailable).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcessSample {
    pub at: Timestamp,
    pub rss_bytes: Option<u64>,
    pub open_fds: Option<u64>,
}

impl ProcessSample {
    /// Reads `/proc/self/status` (VmRSS) and counts `/proc/self/fd`.
    pub fn now() -> Self {
        ProcessSample {
            at: Timestamp::now(),
            rss_bytes: rss_bytes(),
            open_fds: open_fds(),
        }
    }
}

fn rss_bytes() -> Option<u64> {
    proc_status_kib("self", "VmRSS:").map(|kb| kb * 1024)
}

/// A `kB` field (`VmRSS:`, `VmHWM:` …) of `/proc/<pid>/status`; `pid` may be `self`.
pub fn proc_status_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn open_fds() -> Option<u64> {
    // The directory handle used to list it is one of the entries: don't count it.
    let entries = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some(entries.saturating_sub(1))
}

/// A bounded history of [`ProcessSample`]s, like OIP's memory tracker: enough to see a leak as a
/// slope (MB/min, fds/min) without growing itself.
#[derive(Debug)]
pub struct MemoryTracker {
    samples: Mutex<VecDeque<ProcessSample>>,
    capacity: usize,
}

impl Default for MemoryTracker {
    fn default() -> Self {
        Self::new(MEMORY_SAMPLES)
    }
}

impl MemoryTracker {
    pub fn new(capacity: usize) -> Self {
        MemoryTracker {
            samples: Mutex::new(VecDeque::with_capacity(capacity.max(2))),
            capacity: capacity.max(2),
        }
    }

    /// Takes a sample now, dropping the oldest when full.
    pub fn sample(&self) {
        self.push(ProcessSample::now());
    }

    fn push(&self, sample: ProcessSample) {
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() == self.capacity {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// Samples every `every` until `shutdown`.
    pub async fn run(self: Arc<Self>, every: Duration, shutdown: Shutdown) {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.sample(),
                _ = shutdown.stopped() => return,
            }
        }
    }

    /// The JSON of `/health/memory`.
    pub fn report(&self) -> serde_json::Value {
        let samples: Vec<ProcessSample> = self
            .samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        let mb = |b: Option<u64>| b.map(|b| (b as f64 / 1_048_576.0 * 100.0).round() / 100.0);
        let current = samples.last().copied().unwrap_or_else(ProcessSample::now);
        let (mb_per_min, fds_per_min, window_min) = growth(&samples);
        json!({
            "current": {
                "at": current.at.to_string(),
                "rssBytes": current.rss_bytes,
                "rssMB": mb(current.rss_bytes),
                "openFds": current.open_fds,
            },
            "growthRate": {
                "mbPerMin": mb_per_min,
                "fdsPerMin": fds_per_min,
            },
            "windowMinutes": window_min,
            "sampleCount": samples.len(),
            "maxSamples": self.capacity,
            "samples": samples.iter().map(|s| json!({
                "at": s.at.to_string(),
                "rssMB": mb(s.rss_bytes),
                "openFds": s.open_fds,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Growth between the oldest and newest sample: (MB/min, fds/min, window in minutes). Zero when
/// the window is shorter than a second.
fn growth(samples: &[ProcessSample]) -> (f64, f64, f64) {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return (0.0, 0.0, 0.0);
    };
    let minutes = last.at.since(first.at).as_secs_f64() / 60.0;
    if minutes < 1.0 / 60.0 {
        return (0.0, 0.0, minutes);
    }
    let per_min = |a: Option<u64>, b: Option<u64>, scale: f64| match (a, b) {
        (Some(a), Some(b)) => ((b as f64 - a as f64) / scale / minutes * 1000.0).round() / 1000.0,
        _ => 0.0,
    };
    (
        per_min(first.rss_bytes, last.rss_bytes, 1_048_576.0),
        per_min(first.open_fds, last.open_fds, 1.0),
        (minutes * 1000.0).round() / 1000.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(secs: i64, rss_mb: u64, fds: u64) -> ProcessSample {
        ProcessSample {
            at: Timestamp::parse("2026-11-23T08:00:00.000Z")
                .unwrap()
                .plus(Duration::from_secs(secs as u64)),
            rss_bytes: Some(rss_mb * 1_048_576),
            open_fds: Some(fds),
        }
    }

    #[test]
    fn growth_is_per_minute_over_the_window() {
        let table = [
            (vec![], (0.0, 0.0)),
            (vec![sample(0, 10, 5)], (0.0, 0.0)),
            (vec![sample(0, 10, 5), sample(120, 20, 9)], (5.0, 2.0)),
            (vec![sample(0, 20, 9), sample(60, 10, 9)], (-10.0, 0.0)),
        ];
        for (samples, (mb, fds)) in table {
            let (m, f, _) = growth(&samples);
            assert_eq!((m, f), (mb, fds), "{samples:?}");
        }
    }

    #[test]
    fn the_tracker_keeps_a_bounded_history() {
        let tracker = MemoryTracker::new(3);
        for i in 0..10 {
            tracker.push(sample(i * 60, 10 + i as u64, 5));
        }
        let report = tracker.report();
        assert_eq!(report["sampleCount"], 3);
        assert_eq!(report["growthRate"]["mbPerMin"], 1.0);
    }

    #[test]
    fn proc_readings_work_on_linux() {
        let s = ProcessSample::now();
        if cfg!(target_os = "linux") {
            assert!(s.rss_bytes.unwrap() > 0);
            assert!(s.open_fds.unwrap() > 0);
        }
    }
}
