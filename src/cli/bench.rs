//! `gunsync bench`: prints measurements as JSON on stdout.

use std::io::IsTerminal;
use std::time::Duration;

use clap::Subcommand;

use super::{GlobalArgs, UsageError};
use crate::bench::{self, BenchDatabase};
use crate::shutdown::{self, Shutdown};
use crate::worker::WorkerConfig;

/// Measure gunsync on this machine (prints JSON)
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  gunsync bench ledger --jobs 20000\n  gunsync bench worker --jobs 2000 --job-ms 5 --workers 8"
)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, Subcommand)]
enum What {
    /// Ledger throughput: enqueue and lease+complete at batch 1, 100, 1000, under synchronous
    /// FULL and NORMAL. Uses temporary databases unless --database is given on the command line.
    Ledger {
        /// Jobs per phase (batch-1 phases use at most 2000)
        #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        jobs: u64,
    },
    /// Worker pool end to end: N jobs that each sleep --job-ms, run by the real pool until none
    /// is runnable. On an existing --database it resumes (a killed run's leases are reclaimed).
    Worker {
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        jobs: u64,
        /// How long each job takes, in milliseconds
        #[arg(long, default_value_t = 0)]
        job_ms: u64,
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
        workers: u16,
        /// Lease length in milliseconds
        #[arg(long, default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(10..))]
        lease_ms: u64,
    },
}

pub async fn execute(args: BenchArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    // Only an explicit --database flag points a benchmark at a file; GUNSYNC_DATABASE in the
    // environment (the production ledger) is deliberately ignored.
    let explicit = std::env::args().any(|a| a == "--database" || a.starts_with("--database="));
    let database = if explicit {
        BenchDatabase::Path(global.database.clone())
    } else {
        BenchDatabase::Temporary
    };
    let verbose = std::io::stderr().is_terminal();
    match args.what {
        What::Ledger { jobs } => {
            let report = bench::ledger_bench(jobs, &database, |r| {
                if verbose {
                    eprintln!(
                        "{:>14} batch {:>4} {:>6}: {:>9.0} jobs/s",
                        r.phase,
                        r.batch,
                        r.synchronous.as_str(),
                        r.jobs_per_sec
                    );
                }
            })
            .await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        What::Worker {
            jobs,
            job_ms,
            workers,
            lease_ms,
        } => {
            let BenchDatabase::Path(_) = database else {
                return run_worker_bench(global, true, jobs, job_ms, workers, lease_ms).await;
            };
            run_worker_bench(global, false, jobs, job_ms, workers, lease_ms).await?;
        }
    }
    Ok(())
}

async fn run_worker_bench(
    global: &GlobalArgs,
    temporary: bool,
    jobs: u64,
    job_ms: u64,
    workers: u16,
    lease_ms: u64,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut global = global.clone();
    if temporary {
        global.database = dir.path().join("bench.db").to_string_lossy().into_owned();
    }
    let ledger = global.open_ledger().await?;
    if workers == 0 {
        return Err(UsageError("--workers must be at least 1".into()).into());
    }
    let config = WorkerConfig {
        workers: usize::from(workers),
        lease_for: Duration::from_millis(lease_ms),
        reclaim_every: Duration::from_millis(lease_ms).min(Duration::from_secs(15)),
        ..WorkerConfig::default()
    };
    let stop = Shutdown::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        shutdown::signal().await;
        on_signal.stop();
    });
    let report = bench::worker_bench(
        ledger.clone(),
        jobs,
        Duration::from_millis(job_ms),
        config,
        stop,
    )
    .await?;
    ledger.close().await;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
