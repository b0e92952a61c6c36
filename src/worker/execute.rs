//! Runs one leased job and says how it ended. `decide` maps a handler's result to a ledger
//! transition and is pure; `execute` adds the impure parts: catching panics, the job deadline,
//! heartbeats while the job runs long, giving the lease back at a hard stop. The pool writes the
//! transition (with others, in one transaction) and then `report`s it.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tracing::{Instrument, debug, error, info, warn};

use super::{JobError, JobHandler, JobRun, WorkerConfig};
use crate::ledger::{Backoff, Finish, JobState, LeasedJob, Ledger, LedgerError};
use crate::shutdown::Shutdown;
use crate::timestamp::Timestamp;

/// How a job's run ended, as the executor hands it to the pool.
#[derive(Debug)]
pub(super) enum Ran {
    /// The handler returned (or panicked, or ran out of time): the transition to write.
    Ended {
        job: LeasedJob,
        finish: Finish,
        elapsed: Duration,
    },
    /// Given back at a hard stop, the attempt not counted (already written).
    Released,
    /// The lease was lost (expired and taken over) while it ran; nothing may be written.
    LeaseLost,
    /// Could not be given back at a hard stop; its lease will expire and it will run again.
    Unrecorded,
}

/// The transition for a handler's result: success is `Done`; a permanent error, or a transient
/// one on the last allowed attempt, is `Dead`; any other transient error retries after the
/// backoff for this attempt (raised to the peer's `Retry-After`); a systemic error gives the job
/// back without counting the attempt (`Paused`: the pool's circuit decides when work resumes).
pub fn decide(
    job: &LeasedJob,
    result: Result<(), JobError>,
    now: Timestamp,
    policy: &Backoff,
    jitter_sample: f64,
) -> Finish {
    match result {
        Ok(()) => Finish::Done,
        Err(JobError::Permanent {
            reason,
            http_status,
        }) => Finish::Dead {
            error: reason,
            http_status,
        },
        Err(JobError::Systemic {
            system,
            reason,
            http_status,
        }) => Finish::Paused {
            error: format!("paused, {system} circuit open: {reason}"),
            http_status,
        },
        Err(JobError::Transient {
            reason,
            http_status,
            ..
        }) if job.attempt >= job.max_attempts => Finish::Dead {
            error: format!("{reason} (gave up after {} attempts)", job.attempt),
            http_status,
        },
        Err(JobError::Transient {
            reason,
            retry_after,
            http_status,
        }) => Finish::Retry {
            at: now.plus(policy.delay(job.attempt, retry_after, jitter_sample)),
            error: reason,
            http_status,
        },
    }
}

/// Runs one leased job to its end: catches panics, enforces the job deadline, heartbeats while
/// it runs long, gives the lease back at a hard stop, opens a circuit on a systemic failure.
/// Writes nothing of the result itself: the pool commits it with the others.
pub(super) async fn execute(
    job: LeasedJob,
    handler: Option<Arc<dyn JobHandler>>,
    ledger: Ledger,
    config: Arc<WorkerConfig>,
    shutdown: Shutdown,
) -> Ran {
    let span = tracing::info_span!("job", job.id = %job.id, job.kind = %job.kind_name, job.key = %job.key, attempt = job.attempt);
    run(job, handler, ledger, config, shutdown)
        .instrument(span)
        .await
}

async fn run(
    job: LeasedJob,
    handler: Option<Arc<dyn JobHandler>>,
    ledger: Ledger,
    config: Arc<WorkerConfig>,
    shutdown: Shutdown,
) -> Ran {
    let started = Instant::now();
    let kind = job.kind().ok();
    let run = JobRun::new(job, ledger.clone());
    let result = match handler {
        None => Err(JobError::permanent(format!(
            "no handler for job kind {:?}",
            run.job.kind_name
        ))),
        Some(handler) => {
            let work = AssertUnwindSafe(handler.run(&run)).catch_unwind();
            let deadline = config.job_deadline;
            tokio::select! {
                result = tokio::time::timeout(deadline, work) => match result {
                    Ok(Ok(result)) => result,
                    Ok(Err(panic)) => Err(JobError::transient(format!("handler panicked: {}", panic_message(&*panic)))),
                    // A budget, like a record's node and byte budgets: over it is dead at once.
                    Err(_) => Err(JobError::permanent(format!(
                        "job deadline exceeded: still running after {}s (GUNSYNC_JOB_DEADLINE_MS)",
                        deadline.as_secs_f64()
                    ))),
                },
                lost = keep_lease(&run.job, &ledger, config.lease_for) => {
                    warn!(error = %lost, "lease lost while running; abandoning the attempt");
                    return Ran::LeaseLost;
                }
                _ = shutdown.running_cancelled() => {
                    return match ledger.release(run.job.id, &run.job.lease_token, ledger.now()).await {
                        Ok(()) => { info!("released at shutdown"); Ran::Released }
                        Err(e) => { warn!(error = %e, "could not release at shutdown; the lease will expire"); Ran::Unrecorded }
                    };
                }
            }
        }
    };
    let elapsed = started.elapsed();
    let job = run.job;
    if let Err(JobError::Systemic { system, reason, .. }) = &result {
        trip(&config, &ledger, system, reason).await;
    }
    let finish = decide(
        &job,
        result,
        ledger.now(),
        &config.backoff_for(kind),
        rand::random_range(-1.0..=1.0),
    );
    metrics::histogram!("gunsync_job_duration_seconds", "kind" => job.kind_name.clone())
        .record(elapsed.as_secs_f64());
    Ran::Ended {
        job,
        finish,
        elapsed,
    }
}

/// Logs and counts how an attempt ended, once its transition is written (`state`) or found
/// fenced off (`None`: the lease was lost).
pub(super) fn report(job: &LeasedJob, finish: &Finish, elapsed: Duration, state: Option<JobState>) {
    let span = tracing::info_span!("job", job.id = %job.id, job.kind = %job.kind_name, job.key = %job.key, attempt = job.attempt);
    let _entered = span.enter();
    let elapsed_ms = elapsed.as_millis() as u64;
    let Some(state) = state else {
        warn!(
            elapsed_ms,
            "lease lost before the result was recorded; another worker owns the job"
        );
        return;
    };
    metrics::counter!("gunsync_job_attempts_total", "kind" => job.kind_name.clone(), "outcome" => state.as_str()).increment(1);
    match (state, finish) {
        (JobState::Done, _) => debug!(elapsed_ms, "job done"),
        (JobState::Retrying, Finish::Retry { at, error, .. }) => {
            warn!(elapsed_ms, error = %error, retry_at = %at, "job failed; will retry")
        }
        (JobState::Pending, Finish::Paused { error, .. }) => {
            info!(elapsed_ms, error = %error, "job given back; it runs when the circuit closes")
        }
        (JobState::Dead, Finish::Retry { error, .. } | Finish::Dead { error, .. }) => {
            error!(elapsed_ms, error = %error, "job dead")
        }
        _ => {}
    }
}

/// Opens `system`'s circuit and, when that is news, records it in the ledger for `stats`.
async fn trip(config: &WorkerConfig, ledger: &Ledger, system: &str, reason: &str) {
    if let Some(transition) = config.breakers.trip(system, reason) {
        super::pool::mirror(ledger, &[transition]).await;
    }
}

/// Extends the lease whenever half of it is left while the job runs: the first time half a lease
/// before it would expire (a job leased ahead waited for its slot, so that can be soon after it
/// starts), then every half lease. Returns only when the lease is lost (the caller then abandons
/// the job).
async fn keep_lease(job: &LeasedJob, ledger: &Ledger, lease_for: Duration) -> LedgerError {
    let half = (lease_for / 2).max(Duration::from_millis(10));
    let mut next = job.lease_expires_at.minus(half);
    loop {
        tokio::time::sleep(next.since(ledger.now())).await;
        next = ledger.now().plus(half);
        let now = ledger.now();
        match ledger
            .heartbeat(job.id, &job.lease_token, now.plus(lease_for), now)
            .await
        {
            Ok(()) => debug!("lease extended"),
            Err(e @ LedgerError::LeaseLost(_)) => return e,
            // A busy database now is not a lost lease; try again next period.
            Err(e) => warn!(error = %e, "heartbeat failed"),
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{JobId, LeaseToken};

    fn job(attempt: u32, max_attempts: u32) -> LeasedJob {
        LeasedJob {
            id: JobId(1),
            kind_name: "delete".into(),
            key: "did:gun:x:1".into(),
            payload: serde_json::json!({}),
            attempt,
            max_attempts,
            lease_token: LeaseToken::generate(),
            lease_expires_at: Timestamp::now(),
        }
    }

    #[test]
    fn decide_maps_each_result_to_its_transition() {
        let now = Timestamp::parse("2026-11-23T08:00:00.000Z").unwrap();
        let policy = Backoff {
            base: Duration::from_secs(30),
            max: Duration::from_secs(3600),
            jitter: 0.2,
        };
        let transient = |retry_after| JobError::Transient {
            reason: "es 503".into(),
            retry_after,
            http_status: Some(503),
        };
        let table: Vec<(LeasedJob, Result<(), JobError>, Finish)> = vec![
            (job(1, 12), Ok(()), Finish::Done),
            (
                job(1, 12),
                Err(JobError::Permanent {
                    reason: "bad record".into(),
                    http_status: None,
                }),
                Finish::Dead {
                    error: "bad record".into(),
                    http_status: None,
                },
            ),
            (
                job(1, 12),
                Err(transient(None)),
                Finish::Retry {
                    at: now.plus(Duration::from_secs(30)),
                    error: "es 503".into(),
                    http_status: Some(503),
                },
            ),
            (
                job(3, 12),
                Err(transient(None)),
                Finish::Retry {
                    at: now.plus(Duration::from_secs(120)),
                    error: "es 503".into(),
                    http_status: Some(503),
                },
            ),
            (
                job(1, 12),
                Err(transient(Some(Duration::from_secs(90)))),
                Finish::Retry {
                    at: now.plus(Duration::from_secs(90)),
                    error: "es 503".into(),
                    http_status: Some(503),
                },
            ),
            (
                job(12, 12),
                Err(transient(None)),
                Finish::Dead {
                    error: "es 503 (gave up after 12 attempts)".into(),
                    http_status: Some(503),
                },
            ),
        ];
        for (job, result, expected) in table {
            assert_eq!(
                decide(&job, result.clone(), now, &policy, 0.0),
                expected,
                "{result:?} at attempt {}",
                job.attempt
            );
        }
    }

    #[test]
    fn panic_payloads_become_messages() {
        let p = std::panic::catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
        assert_eq!(panic_message(&*p), "boom 1");
    }
}
