//! Peer benchmark: throughput of the `effectum` 0.7 SQLite job queue, to set beside
//! `gunsync bench worker --job-ms 0`. Not part of gunsync (a standalone package, run by
//! `scripts/bench-peers`).
//!
//! On a fresh temporary database it enqueues N no-op jobs (`Queue::add_jobs`, 2000 a call, as
//! gunsync's bench enqueues), then starts one `Worker` with `max_concurrency` W and measures the
//! time from worker start until the worker has finished all N, i.e. until each completion has
//! been written by effectum's writer thread. It then checks through the queue that no job is
//! left active, and in the file that all N succeeded, and prints one JSON line.
//!
//! effectum sets its SQLite pragmas itself and offers no setting: `synchronous = NORMAL`, and
//! `PRAGMA journal = wal`, which is no SQLite pragma (the name is `journal_mode`), so SQLite
//! ignores it and the file keeps the default rollback journal. `journal_mode` in the output is
//! what the file really has, read back after the run.
//!
//! Usage: `bench-peer-effectum [--jobs N] [--workers W]` (defaults 20000 and 4).

use std::time::{Duration, Instant};

use effectum::{Error, Job, JobRunner, JobState, Queue, RunningJob, Worker};

const JOB_TYPE: &str = "noop";
const ENQUEUE_BATCH: u64 = 2000;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (jobs, workers) = parse_args()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("effectum.db");
    let queue = Queue::new(&path).await?;

    let enqueue_started = Instant::now();
    let mut added = 0;
    while added < jobs {
        let batch = ENQUEUE_BATCH.min(jobs - added);
        let batch_jobs = (0..batch).map(|_| Job::builder(JOB_TYPE).build()).collect();
        queue.add_jobs(batch_jobs).await?;
        added += batch;
    }
    let enqueue_seconds = enqueue_started.elapsed().as_secs_f64();

    let noop = JobRunner::builder(JOB_TYPE, |_job: RunningJob, _context: ()| async {
        Ok::<(), Error>(())
    })
    .build();
    let started = Instant::now();
    let worker = Worker::builder(&queue, ())
        .max_concurrency(workers)
        .jobs([noop])
        .build()
        .await?;
    // `finished` counts a job once its completion is committed (or has failed), so this waits
    // for the database, not only for the handler. Polling an atomic costs the queue nothing.
    while worker.counts().finished < jobs {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let seconds = started.elapsed().as_secs_f64();

    let active = queue.num_active_jobs().await?;
    if active.pending + active.running != 0 {
        return Err(format!(
            "jobs left active: {} pending, {} running",
            active.pending, active.running
        )
        .into());
    }
    worker.unregister(Some(Duration::from_secs(10))).await?;
    queue.close(Duration::from_secs(10)).await?;

    let conn = rusqlite::Connection::open(&path)?;
    let succeeded: u64 = conn.query_row(
        "SELECT count(*) FROM jobs WHERE status = ?1",
        [JobState::Succeeded.as_str()],
        |r| r.get(0),
    )?;
    if succeeded != jobs {
        return Err(format!("{succeeded} of {jobs} jobs succeeded").into());
    }
    let journal_mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;

    println!(
        concat!(
            r#"{{"peer":"effectum","version":"0.7.0","jobs":{},"workers":{},"#,
            r#""synchronous":"normal","journal_mode":"{}","enqueue_seconds":{:.6},"#,
            r#""seconds":{:.6},"jobs_per_sec":{:.0}}}"#
        ),
        jobs,
        workers,
        journal_mode.to_lowercase(),
        enqueue_seconds,
        seconds,
        jobs as f64 / seconds
    );
    Ok(())
}

fn parse_args() -> Result<(u64, u16), String> {
    let (mut jobs, mut workers) = (20_000u64, 4u16);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--jobs" => jobs = value.parse().map_err(|e| format!("--jobs {value}: {e}"))?,
            "--workers" => {
                workers = value
                    .parse()
                    .map_err(|e| format!("--workers {value}: {e}"))?
            }
            _ => {
                return Err(format!(
                    "unknown flag {flag}; usage: [--jobs N] [--workers W]"
                ))
            }
        }
    }
    if jobs == 0 || workers == 0 {
        return Err("--jobs and --workers must be at least 1".into());
    }
    Ok((jobs, workers))
}
