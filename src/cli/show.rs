//! `gunsync show ID`: one job, its whole attempt history, and in plain words why it is where it
//! is and when it runs next. [`explain`] is pure, so every case is tested as a table row.

use std::time::Duration;

use anyhow::anyhow;
use serde::Serialize;

use super::output::{Table, out, precise, print_json, relative};
use super::{GlobalArgs, UsageError};
use crate::ledger::{AttemptView, Backoff, JobId, JobView};

/// `last_error` of a job reclaimed after its lease expired (DESIGN §2).
const LEASE_EXPIRED: &str = "lease expired";
use crate::timestamp::Timestamp;

/// Explain one job: state, schedule, lease, last error and every attempt
///
/// Says where the job is and why: waiting to run, backing off after attempt n (or held back by a
/// peer's Retry-After), running on a worker until its lease expires, reclaimed after a lease
/// expired, or finished (done, dead with the reason, cancelled). Then lists every attempt with
/// its start, duration, outcome, HTTP status and error.
/// `--json` prints the job object of `gunsync jobs --json` plus `attempts_log` (the attempts) and
/// `explanation` (`why`, `next_run_at`). An unknown id exits with status 1.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  gunsync show 4711
  gunsync show 4711 --json | jq '.attempts_log[] | {attempt, outcome, http_status, error}'")]
pub struct ShowArgs {
    /// The job id (the ID column of `gunsync jobs`)
    #[arg(value_name = "ID", allow_negative_numbers = true)]
    id: String,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
}

/// Where a job is headed, in words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// One sentence: why the job is in its state.
    pub why: String,
    /// When it runs next (`None`: running now, or finished).
    pub next_run_at: Option<Timestamp>,
}

#[derive(Serialize)]
struct ShowJson<'a> {
    #[serde(flatten)]
    job: &'a JobView,
    attempts_log: &'a [AttemptView],
    explanation: &'a Explanation,
}

pub async fn execute(args: ShowArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let id: JobId = args.id.parse().map_err(UsageError)?;
    let ledger = global.open_ledger_read_only().await?;
    let found = ledger.get_job(id).await?;
    ledger.close().await;
    let (job, attempts) = found.ok_or_else(|| anyhow!("job {id} not found"))?;
    let now = Timestamp::now();
    let explanation = explain(&job, &attempts, now);
    if args.json {
        return print_json(&ShowJson {
            job: &job,
            attempts_log: &attempts,
            explanation: &explanation,
        });
    }
    out!("{}", render(&job, &attempts, &explanation, now))?;
    Ok(())
}

/// Why `job` is where it is. `attempts` is its history, oldest first.
pub fn explain(job: &JobView, attempts: &[AttemptView], now: Timestamp) -> Explanation {
    let last = attempts.last();
    let tries = format!("{} of {}", job.attempts, job.max_attempts);
    let at = |t: Timestamp| format!("{} ({t})", relative(t, now));
    let (why, next_run_at) = match job.state.as_str() {
        "pending" => {
            let when = if job.run_at > now {
                format!("scheduled to run {}", at(job.run_at))
            } else if now.since(job.run_at) < Duration::from_secs(1) {
                "runnable now; the next free worker takes it".to_string()
            } else {
                format!(
                    "runnable since {}; the next free worker takes it",
                    relative(job.run_at, now)
                )
            };
            let origin = match last {
                None => "waiting to run its first attempt".to_string(),
                Some(a) if a.outcome == "interrupted" => format!(
                    "waiting to run: attempt {} was given back at shutdown and did not count",
                    a.attempt
                ),
                Some(_) => format!("waiting to run (requeued after {tries} attempts)"),
            };
            (format!("{origin}; {when}"), Some(job.run_at))
        }
        "retrying" => {
            let n = last.map_or(job.attempts, |a| a.attempt);
            let cause = match last {
                Some(a) if a.outcome == "lease_expired" => format!(
                    "lease expiry: the worker running attempt {n} stopped renewing its lease \
                     (crashed or hung), so the job was reclaimed"
                ),
                Some(a) if held_by_retry_after(a, job.run_at) => format!(
                    "Retry-After: attempt {n} got HTTP {} and the peer asked to wait longer \
                     than the backoff",
                    a.http_status.unwrap_or_default()
                ),
                _ => format!("backoff after attempt {n} failed"),
            };
            (
                format!(
                    "{cause}; attempt {} of {} runs {}",
                    job.attempts + 1,
                    job.max_attempts,
                    at(job.run_at)
                ),
                Some(job.run_at),
            )
        }
        "running" => {
            let holder = job.leased_by.as_deref().unwrap_or("a worker");
            let why = match job.lease_expires_at {
                Some(exp) if exp > now => format!(
                    "running attempt {tries} on {holder}; its lease expires {} unless renewed",
                    at(exp)
                ),
                Some(exp) => format!(
                    "attempt {tries} was running on {holder}, but its lease expired {}; the \
                     reclaimer will return the job to retrying",
                    at(exp)
                ),
                None => format!("running attempt {tries} on {holder}"),
            };
            (why, None)
        }
        "done" => (
            format!(
                "finished: done {} after {tries} attempts",
                job.processed_at.map_or("-".into(), at)
            ),
            None,
        ),
        "dead" => {
            let permanent_status = last
                .and_then(|a| a.http_status)
                .filter(|s| (400..500).contains(s) && *s != 408 && *s != 429);
            let reason = match (job.last_error.as_deref(), permanent_status) {
                (Some(LEASE_EXPIRED), _) => {
                    "its worker stopped during the last attempt: lease expired".to_string()
                }
                (_, Some(status)) => format!("a permanent error, HTTP {status}"),
                (Some(e), _) if e.contains("gave up after") => "it ran out of attempts".into(),
                _ if job.attempts < job.max_attempts => "a permanent error".into(),
                _ => "it ran out of attempts".into(),
            };
            (
                format!(
                    "finished: dead {} after {tries} attempts ({reason}); `gunsync requeue {}` \
                     gives it one more try",
                    job.processed_at.map_or("-".into(), at),
                    job.id
                ),
                None,
            )
        }
        "cancelled" => (
            format!(
                "finished: cancelled by an operator {}; `gunsync requeue {}` runs it again",
                job.processed_at.map_or("-".into(), at),
                job.id
            ),
            None,
        ),
        other => (format!("unknown state {other:?}"), None),
    };
    Explanation { why, next_run_at }
}

/// Whether a failed attempt's retry was pushed out by a peer's `Retry-After` rather than the
/// backoff: only 429 and 503 carry one, and the wait is longer than the default backoff (with
/// its jitter) allows for that attempt.
fn held_by_retry_after(attempt: &AttemptView, run_at: Timestamp) -> bool {
    let (Some(status), Some(finished)) = (attempt.http_status, attempt.finished_at) else {
        return false;
    };
    if status != 429 && status != 503 {
        return false;
    }
    let n = u32::try_from(attempt.attempt).unwrap_or(u32::MAX);
    let longest_backoff = Backoff::default().delay(n, None, 1.0);
    run_at.since(finished) > longest_backoff + Duration::from_secs(1)
}

fn render(
    job: &JobView,
    attempts: &[AttemptView],
    explanation: &Explanation,
    now: Timestamp,
) -> String {
    let at = |t: Timestamp| format!("{t} ({})", relative(t, now));
    let mut lines: Vec<(&str, String)> = vec![
        ("job", format!("{} ({} {})", job.id, job.kind, job.key)),
        ("state", job.state.clone()),
        (
            "attempts",
            format!("{} of {}", job.attempts, job.max_attempts),
        ),
        ("why", explanation.why.clone()),
        (
            "next run",
            match explanation.next_run_at {
                Some(t) => at(t),
                None if job.state == "running" => "running now".into(),
                None => "never (finished; requeue to run it again)".into(),
            },
        ),
    ];
    if job.state == "running" {
        lines.push((
            "lease",
            format!(
                "held by {}, expires {}",
                job.leased_by.as_deref().unwrap_or("?"),
                job.lease_expires_at.map_or("?".into(), at)
            ),
        ));
    }
    lines.push((
        "last error",
        job.last_error.clone().unwrap_or_else(|| "-".into()),
    ));
    lines.push(("priority", job.priority.to_string()));
    lines.push(("created", at(job.created_at)));
    lines.push(("updated", at(job.updated_at)));
    if let Some(t) = job.processed_at {
        lines.push(("finished", at(t)));
    }
    lines.push(("payload", job.payload.to_string()));

    let mut out = String::new();
    for (label, value) in lines {
        out.push_str(&format!("{label:<11} {value}\n"));
    }
    out.push('\n');
    if attempts.is_empty() {
        out.push_str("no attempts yet\n");
        return out;
    }
    let mut table = Table::new([
        "ATTEMPT", "STARTED", "DURATION", "OUTCOME", "HTTP", "WORKER", "ERROR",
    ]);
    for a in attempts {
        table.row(vec![
            a.attempt.to_string(),
            at(a.started_at),
            match a.finished_at {
                Some(f) => precise(f.since(a.started_at)),
                None => format!("{} so far", precise(now.since(a.started_at))),
            },
            a.outcome.clone(),
            a.http_status.map_or("-".into(), |s| s.to_string()),
            a.leased_by.clone().unwrap_or_else(|| "-".into()),
            a.error.as_deref().unwrap_or("-").replace('\n', " "),
        ]);
    }
    out.push_str(&table.render());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    fn job(state: &str, attempts: i64, max_attempts: i64) -> JobView {
        JobView {
            id: 7,
            kind: "delete".into(),
            key: "did:gun:abc:1".into(),
            state: state.into(),
            priority: 0,
            attempts,
            max_attempts,
            run_at: t("2026-11-23T08:04:00.000Z"),
            lease_expires_at: None,
            leased_by: None,
            last_error: None,
            created_at: t("2026-11-23T07:00:00.000Z"),
            updated_at: t("2026-11-23T07:59:00.000Z"),
            processed_at: None,
            revision: None,
            payload: serde_json::json!({}),
        }
    }

    fn attempt(n: i64, outcome: &str, status: Option<i64>) -> AttemptView {
        AttemptView {
            attempt: n,
            started_at: t("2026-11-23T07:58:59.000Z"),
            finished_at: Some(t("2026-11-23T07:59:00.000Z")),
            outcome: outcome.into(),
            error: Some("boom".into()),
            http_status: status,
            leased_by: Some("host:1".into()),
        }
    }

    #[test]
    fn every_state_is_explained_with_its_cause_and_next_run() {
        let now = t("2026-11-23T08:00:00.000Z");
        let lease = |mut j: JobView, exp: &str| {
            j.lease_expires_at = Some(t(exp));
            j.leased_by = Some("host:1".into());
            j
        };
        let finished = |mut j: JobView| {
            j.processed_at = Some(t("2026-11-23T05:00:00.000Z"));
            j
        };
        let far = |mut j: JobView| {
            j.run_at = t("2026-11-23T09:00:00.000Z");
            j
        };
        let runnable = |mut j: JobView| {
            j.run_at = t("2026-11-23T07:50:00.000Z");
            j
        };
        let table: Vec<(JobView, Vec<AttemptView>, &str, bool)> = vec![
            (
                job("pending", 0, 12),
                vec![],
                "waiting to run its first attempt; scheduled to run in 4m",
                true,
            ),
            (
                runnable(job("pending", 0, 12)),
                vec![],
                "runnable since 10m ago",
                true,
            ),
            (
                job("pending", 1, 12),
                vec![attempt(1, "interrupted", None)],
                "given back at shutdown",
                true,
            ),
            (
                job("pending", 3, 12),
                vec![attempt(3, "dead", None)],
                "requeued after 3 of 12 attempts",
                true,
            ),
            (
                job("retrying", 2, 12),
                vec![attempt(2, "retry", Some(500))],
                "backoff after attempt 2 failed; attempt 3 of 12 runs in 4m",
                true,
            ),
            (
                far(job("retrying", 1, 12)),
                vec![attempt(1, "retry", Some(429))],
                "Retry-After: attempt 1 got HTTP 429",
                true,
            ),
            (
                job("retrying", 5, 12),
                vec![attempt(5, "retry", Some(503))],
                "backoff after attempt 5",
                true,
            ),
            (
                job("retrying", 1, 12),
                vec![attempt(1, "lease_expired", None)],
                "lease expiry",
                true,
            ),
            (
                lease(job("running", 1, 12), "2026-11-23T08:01:00.000Z"),
                vec![],
                "running attempt 1 of 12 on host:1; its lease expires in 1m",
                false,
            ),
            (
                lease(job("running", 1, 12), "2026-11-23T07:59:00.000Z"),
                vec![],
                "lease expired 1m ago",
                false,
            ),
            (
                finished(job("done", 1, 12)),
                vec![],
                "finished: done 3h ago",
                false,
            ),
            (
                finished(job("dead", 12, 12)),
                vec![],
                "(it ran out of attempts); `gunsync requeue 7`",
                false,
            ),
            (
                finished(job("dead", 1, 12)),
                vec![],
                "(a permanent error)",
                false,
            ),
            (
                finished(job("cancelled", 0, 12)),
                vec![],
                "cancelled by an operator 3h ago",
                false,
            ),
        ];
        for (job, attempts, expected, has_next_run) in table {
            let e = explain(&job, &attempts, now);
            assert!(
                e.why.contains(expected),
                "{} {}: {:?} lacks {expected:?}",
                job.state,
                job.attempts,
                e.why
            );
            assert_eq!(e.next_run_at.is_some(), has_next_run, "{}", e.why);
        }
    }
}
