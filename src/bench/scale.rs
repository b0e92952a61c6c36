//! `gunsync bench scale`: how long what a cycle, a job, the CLI and the endpoints do takes on a
//! ledger of N jobs. Builds the ledger ([`Ledger::populate_scale`]: a month of production, mostly
//! done, some dead, 5 % of deletions retrying later, some discovers pending), then times each
//! operation through the same ledger calls the daemon and the CLI make, and every README query.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::http::ProcessSample;
use crate::ledger::lease::LeaseParams;
use crate::ledger::operator::SCALE_KEY_PREFIX;
use crate::ledger::{
    Completion, Finish, JobFilter, JobId, JobKind, JobState, Ledger, LedgerError, LedgerOptions,
    NewJob, Requeue, Synchronous, Uniqueness, Vacuum,
};
use crate::timestamp::Timestamp;

/// Keys per sync batch (the cycle checks uniqueness 5 000 keys at a time).
const BATCH: u64 = 5000;
/// How a sync cycle enqueues discovers.
const DISCOVERY: Uniqueness = Uniqueness::Revision {
    retry_dead_after: Duration::from_secs(86_400),
};
/// Read-only operations run this many times; the median is reported.
const REPEAT: usize = 5;
/// Jobs leased and finished per transaction in the lease measurement (the pool's window).
const LEASE_WINDOW: u32 = 20;

/// The `bench scale` report.
#[derive(Clone, Debug, Serialize)]
pub struct ScaleBench {
    pub jobs: u64,
    pub attempts: u64,
    pub synchronous: Synchronous,
    pub build_seconds: f64,
    pub file_bytes: u64,
    /// Each operation's time in milliseconds (median of 5 for the read-only ones).
    pub operations: Vec<Operation>,
    /// The benchmark process's RSS before and after 100 `/metrics`-like stats reads.
    pub rss_mb_before_scrapes: Option<f64>,
    pub rss_mb_after_scrapes: Option<f64>,
    pub prune: PruneResult,
}

#[derive(Clone, Debug, Serialize)]
pub struct Operation {
    pub name: String,
    pub ms: f64,
    /// Rows the operation returned or changed (what it was asked for).
    pub rows: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct PruneResult {
    /// `prune --older-than 7d --vacuum`: jobs deleted, seconds, file size before and after.
    pub jobs: u64,
    pub seconds: f64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Builds a ledger of `jobs` jobs — at `at`, a file that must not exist yet (kept for a look with
/// `sqlite3`) or an empty PostgreSQL ledger, or in a temporary file — and measures it.
pub async fn scale_bench(
    jobs: u64,
    at: Option<&str>,
    synchronous: Synchronous,
    mut progress: impl FnMut(&str),
) -> Result<ScaleBench, LedgerError> {
    let dir = tempfile::tempdir().map_err(|e| LedgerError::Invalid {
        what: "temporary directory",
        reason: e.to_string(),
    })?;
    let database = match at {
        Some(url) if Ledger::is_postgres_url(url) => url.to_owned(),
        Some(path) if Path::new(path).exists() => {
            return Err(LedgerError::Invalid {
                what: "--database",
                reason: format!(
                    "{path} exists: bench scale builds a new ledger and never touches an existing one"
                ),
            });
        }
        Some(path) => path.to_owned(),
        None => dir.path().join("scale.db").to_string_lossy().into_owned(),
    };
    let ledger = Ledger::open(LedgerOptions::new(database).synchronous(synchronous)).await?;
    let existing = ledger.stats(ledger.now(), 0).await?.total;
    if existing > 0 {
        ledger.close().await;
        return Err(LedgerError::Invalid {
            what: "--database",
            reason: format!(
                "{} holds {existing} jobs: bench scale builds a new ledger and never touches an \
                 existing one",
                ledger.location()
            ),
        });
    }
    let now = Timestamp::now();
    let started = Instant::now();
    let mut reported = 0;
    let attempts = ledger
        .populate_scale(jobs, now, &mut |n| {
            if n >= reported + jobs / 10 || n == jobs {
                reported = n;
                progress(&format!("built {n} of {jobs} jobs"));
            }
        })
        .await?;
    let build_seconds = started.elapsed().as_secs_f64();
    let file_bytes = ledger.file_size().await;
    let mut ops = Vec::new();
    let mut record = |name: &str, ms: f64, rows: u64| {
        progress(&format!("{name:>28}: {ms:>9.2} ms ({rows} rows)"));
        ops.push(Operation {
            name: name.to_owned(),
            ms: (ms * 1000.0).round() / 1000.0,
            rows,
        });
    };

    // A sync cycle: 5 000 index entries, all but 100 already discovered, then the deletion
    // registry's 5 000 DIDs (half known) looked up and enqueued.
    let now = Timestamp::now();
    let known_souls = sample(jobs, BATCH, |m| m < 90 && m % 10 != 5);
    let discover = |i: &u64| {
        NewJob::new(JobKind::Discover, format!("{SCALE_KEY_PREFIX}{i}")).revision(Some(*i as i64))
    };
    let known: Vec<NewJob> = known_souls.iter().map(discover).collect();
    // The daemon's own batch (`sync::BATCH`), then the 5 000 the target names.
    let (ms, report) = median(|| {
        ledger.enqueue_many(
            &known[..known.len().min(crate::sync::BATCH)],
            DISCOVERY,
            now,
        )
    })
    .await?;
    record("cycle_uniqueness_1000_known", ms, report.skipped);
    let (ms, report) = median(|| ledger.enqueue_many(&known, DISCOVERY, now)).await?;
    record("cycle_uniqueness_5000_known", ms, report.skipped);
    let mut mixed: Vec<NewJob> = known_souls.iter().skip(100).map(discover).collect();
    mixed.extend((0..100).map(|k| {
        NewJob::new(JobKind::Discover, format!("{SCALE_KEY_PREFIX}new-{k}")).revision(Some(k))
    }));
    let (ms, report) = once(|| ledger.enqueue_many(&mixed, DISCOVERY, now)).await?;
    record("cycle_uniqueness_5000_100_new", ms, report.created);
    // The deletion registry: half of the batch DIDs the ledger deleted already.
    let mut dids: Vec<String> = sample(jobs, BATCH / 2, |m| m < 90 && m % 10 == 5)
        .iter()
        .map(|i| format!("{SCALE_KEY_PREFIX}{i}"))
        .collect();
    let unknown = BATCH as usize - dids.len();
    dids.extend((0..unknown).map(|k| format!("{SCALE_KEY_PREFIX}unknown-{k}")));
    let (ms, found) = median(|| ledger.deleted_keys(&dids)).await?;
    record("deleted_keys_5000", ms, found.len() as u64);
    let deletes: Vec<NewJob> = dids
        .iter()
        .map(|d| NewJob::new(JobKind::Delete, d.clone()))
        .collect();
    let (ms, report) = once(|| {
        ledger.enqueue_many(
            &deletes,
            Uniqueness::FinishedWithin(Duration::from_secs(7 * 86_400)),
            now,
        )
    })
    .await?;
    record("cycle_delete_uniqueness_5000", ms, report.created);
    let (ms, _) = median(|| ledger.last_cycle_finished_at()).await?;
    record("last_cycle_finished_at", ms, 1);

    // The pool: lease a window, finish it and lease the next in one transaction, with the 5 %
    // retrying deletions scheduled later in the index.
    let worker = "bench-scale";
    let lease = || LeaseParams {
        max: LEASE_WINDOW,
        worker,
        lease_for: Duration::from_secs(60),
    };
    let mut held = ledger.lease(lease(), Timestamp::now()).await?;
    let mut rounds = 0u64;
    let mut moved = held.len() as u64;
    let started = Instant::now();
    while !held.is_empty() && rounds < 50 {
        let done: Vec<Completion> = held.iter().map(|j| j.completion(Finish::Done)).collect();
        let (_, next) = ledger
            .finish_and_lease(&done, lease(), Timestamp::now())
            .await?;
        held = next;
        moved += held.len() as u64;
        rounds += 1;
    }
    let per_round = started.elapsed().as_secs_f64() * 1000.0 / rounds.max(1) as f64;
    record("finish_and_lease_20", per_round, moved);
    let (ms, next) = median(|| ledger.next_run_at()).await?;
    record("next_run_at", ms, u64::from(next.is_some()));
    let (ms, next) = median(|| ledger.next_lease_expiry()).await?;
    record("next_lease_expiry", ms, u64::from(next.is_some()));
    let (ms, reclaimed) = median(|| ledger.reclaim_expired(Timestamp::now())).await?;
    record("reclaim_expired", ms, reclaimed.retrying + reclaimed.dead);

    // The CLI and the endpoints.
    let (ms, stats) = median(|| ledger.stats(Timestamp::now(), 10)).await?;
    record("stats", ms, stats.total as u64);
    let key = format!("{SCALE_KEY_PREFIX}{}", sample(jobs, 2, |m| m == 1)[1]);
    for (name, filter) in [
        ("jobs_newest", JobFilter::default()),
        (
            "jobs_key",
            JobFilter {
                key: Some(key.clone()),
                ..JobFilter::default()
            },
        ),
        (
            "jobs_kind_key",
            JobFilter {
                kind: Some(JobKind::Discover),
                key: Some(key.clone()),
                ..JobFilter::default()
            },
        ),
        ("jobs_state_done", by_state(JobState::Done)),
        ("jobs_state_dead", by_state(JobState::Dead)),
        ("jobs_state_retrying", by_state(JobState::Retrying)),
        ("jobs_state_pending", by_state(JobState::Pending)),
        (
            "jobs_kind_delete_state_dead",
            JobFilter {
                kind: Some(JobKind::Delete),
                ..by_state(JobState::Dead)
            },
        ),
    ] {
        let (ms, rows) = median(|| ledger.list_jobs(&filter)).await?;
        record(name, ms, rows.len() as u64);
    }
    let dead = ledger.list_jobs(&by_state(JobState::Dead)).await?;
    // A dead job, with its eight attempts.
    let shown_id = dead.get(1).map_or(JobId(1), |j| JobId(j.id));
    let (ms, shown) = median(|| ledger.get_job(shown_id)).await?;
    record("show", ms, shown.map_or(0, |(_, a)| a.len() as u64));
    let ids: Vec<JobId> = dead.iter().take(1).map(|j| JobId(j.id)).collect();
    let request = Requeue {
        ids,
        ..Requeue::default()
    };
    let mut quiet = |_, _| {};
    let (ms, report) = once(|| ledger.requeue(&request, Timestamp::now(), &mut quiet)).await?;
    record("requeue_id", ms, report.requeued.len() as u64);
    for (name, sql) in ledger.operator_queries() {
        let (ms, rows) = median(|| ledger.run_operator_query(sql)).await?;
        record(&format!("readme:{name}"), ms, rows);
    }

    // The dashboard's pages, through its router (the overview reads a day of attempts).
    for (path, ms, bytes) in crate::http::ui::time_pages(&ledger, shown_id, REPEAT).await {
        record(&format!("ui:{path}"), ms, bytes as u64);
    }

    // Memory across scrapes: `/metrics` reads the same stats.
    let rss_mb_before_scrapes = rss_mb();
    for _ in 0..100 {
        ledger.stats(Timestamp::now(), 0).await?;
    }
    let rss_mb_after_scrapes = rss_mb();

    // Prune a week's worth and give the space back.
    let started = Instant::now();
    let cutoff = Timestamp::now().minus(Duration::from_secs(7 * 86_400));
    let pruned = ledger.prune(cutoff, None, &mut |_| {}).await?;
    let space = ledger.give_back_space(Vacuum::Incremental).await?;
    let prune = PruneResult {
        jobs: pruned.jobs,
        seconds: started.elapsed().as_secs_f64(),
        bytes_before: space.bytes_before,
        bytes_after: space.bytes_after,
    };
    ledger.close().await;
    Ok(ScaleBench {
        jobs,
        attempts,
        synchronous,
        build_seconds,
        file_bytes,
        operations: ops,
        rss_mb_before_scrapes,
        rss_mb_after_scrapes,
        prune,
    })
}

fn by_state(state: JobState) -> JobFilter {
    JobFilter {
        state: Some(state),
        ..JobFilter::default()
    }
}

/// Up to `n` distinct ids of the mix (0-based, as in the keys) whose `id % 100` passes `class`,
/// spread over the whole ledger (old and new jobs alike).
fn sample(jobs: u64, n: u64, class: impl Fn(u64) -> bool) -> Vec<u64> {
    let matching = (0..100).filter(|m| class(*m)).count() as u64;
    let step = (jobs * matching / 100 / n.max(1)).max(1);
    (0..jobs)
        .filter(|i| class(i % 100))
        .step_by(step as usize)
        .take(n as usize)
        .collect()
}

async fn once<T, F, Fut>(f: F) -> Result<(f64, T), LedgerError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, LedgerError>>,
{
    let started = Instant::now();
    let value = f().await?;
    Ok((started.elapsed().as_secs_f64() * 1000.0, value))
}

async fn median<T, F, Fut>(f: F) -> Result<(f64, T), LedgerError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, LedgerError>>,
{
    let mut times = Vec::with_capacity(REPEAT);
    let mut last = None;
    for _ in 0..REPEAT {
        let started = Instant::now();
        last = Some(f().await?);
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[REPEAT / 2], last.expect("ran at least once")))
}

fn rss_mb() -> Option<f64> {
    ProcessSample::now()
        .rss_bytes
        .map(|b| (b as f64 / 1_048_576.0 * 10.0).round() / 10.0)
}
