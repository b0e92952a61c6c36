//! `gunsync bench`: prints measurements as JSON on stdout.

use std::io::IsTerminal;
use std::time::Duration;

use clap::Subcommand;

use super::output::outln;
use super::{GlobalArgs, UsageError};
use crate::bench::soak::SoakOptions;
use crate::bench::sync::{SyncBench, SyncBenchOptions};
use crate::bench::{self, BenchDatabase};
use crate::shutdown::{self, Shutdown};
use crate::worker::WorkerConfig;

/// Measure gunsync on this machine (prints JSON)
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  gunsync bench ledger --jobs 20000\n  gunsync bench worker --jobs 2000 --job-ms 5 --workers 8\n  gunsync bench sync --records 1000,10000,100000\n  gunsync bench scale --jobs 10000,100000,1000000\n  gunsync bench soak --cycles 500 --records 1000"
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
        /// Worker processes sharing a PostgreSQL --database: the jobs are enqueued first, then
        /// this many `bench worker` processes drain them together (wall time of all of them)
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=16))]
        processes: Option<u16>,
    },
    /// One sync cycle and its discovery over N records in the relay and ES emulators (the real
    /// syncer, worker pool and handlers), then a second cycle over the same records. One run per
    /// size, each on fresh emulators and a temporary ledger. Then the same discovery by the
    /// daemon (`gunsync run`, a child process) for the memory of gunsync alone.
    Sync {
        /// Record counts, comma-separated
        #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        records: Vec<u64>,
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
        workers: u16,
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
        es_concurrency: u16,
    },
    /// How long what a sync cycle, the pool, the CLI and the endpoints run takes on a ledger of N
    /// jobs (a month of production: 90% done, 3% dead, 5% deletions retrying later, 2% pending
    /// discovers, 1.4 attempt rows per job), every README query and every dashboard page (its
    /// `rows` are the page's bytes); then a prune with vacuum. One temporary ledger per size;
    /// with --database (one size only), the ledger is built in that new file and kept.
    Scale {
        /// Ledger sizes, comma-separated
        #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000", value_parser = clap::value_parser!(u64).range(1000..=100_000_000))]
        jobs: Vec<u64>,
    },
    /// The daemon (`gunsync run`, a child process) against emulators with --records records and
    /// --failing deletions whose ES delete fails forever: a warm-up until every record is
    /// discovered (at least --warmup cycles), then N measured cycles; samples the daemon's RSS
    /// and open fds each cycle and judges growth, fds and DELETEs per failing DID.
    Soak {
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        cycles: u64,
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        records: u64,
        /// Deletions whose ES delete fails forever
        #[arg(long, default_value_t = 5)]
        failing: usize,
        /// Cycle interval in milliseconds (GUN_SYNC_INTERVAL)
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(10..))]
        interval_ms: u64,
        /// Least warm-up cycles before the measured ones (default: a fifth of --cycles); the
        /// warm-up also lasts until discovery is done
        #[arg(long)]
        warmup: Option<u64>,
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
        workers: u16,
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
        es_concurrency: u16,
        #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..=1000))]
        max_attempts: u32,
        /// First retry delay in milliseconds (fast, so failing deletions use up their attempts)
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
        backoff_base_ms: u64,
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
        backoff_max_ms: u64,
        /// Exit 1 when a target is missed
        #[arg(long)]
        check: bool,
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
            outln!("{}", serde_json::to_string(&report)?)?;
        }
        What::Worker {
            jobs,
            job_ms,
            workers,
            lease_ms,
            processes,
        } => {
            if let Some(processes) = processes {
                return run_worker_processes(
                    global, &database, jobs, job_ms, workers, lease_ms, processes,
                )
                .await;
            }
            let BenchDatabase::Path(_) = database else {
                return run_worker_bench(global, true, jobs, job_ms, workers, lease_ms).await;
            };
            run_worker_bench(global, false, jobs, job_ms, workers, lease_ms).await?;
        }
        What::Sync {
            records,
            workers,
            es_concurrency,
        } => {
            let options = SyncBenchOptions {
                workers: usize::from(workers),
                es_concurrency: usize::from(es_concurrency),
                synchronous: global.synchronous,
            };
            let mut runs = Vec::new();
            for n in records {
                let mut run = bench::sync::sync_bench_one(n, &options).await?;
                // The same discovery by the daemon in its own process: its memory alone.
                let daemon = SoakOptions {
                    cycles: 1,
                    records: n,
                    failing: 0,
                    // Longer than a cycle over 100 000 known records on a busy machine, so
                    // back-to-back cycles do not starve the discovery being measured.
                    interval: Duration::from_secs(5),
                    warmup_cycles: 1,
                    workers: usize::from(workers),
                    es_concurrency: usize::from(es_concurrency),
                    max_attempts: 12,
                    backoff_base: Duration::from_millis(100),
                    backoff_max: Duration::from_secs(2),
                    synchronous: global.synchronous.as_str().to_owned(),
                    progress_every: 0,
                };
                let soak = bench::soak::soak(&std::env::current_exe()?, &daemon).await?;
                run.gunsync_alone = Some(bench::sync::DaemonMemory {
                    rss_peak_mb: soak.rss.peak_mb,
                    rss_max_sampled_mb: soak.rss.max_mb_overall,
                    rss_end_mb: soak.rss.end_mb,
                    seconds: soak.duration_s,
                });
                if verbose {
                    eprintln!(
                        "{:>8} records: cycle {:>9.0} records/s, cycle+discovery {:>7.0} records/s, {:.2} requests/record, second cycle {} requests",
                        run.records,
                        run.cycle.records_per_sec,
                        run.cycle_and_discovery_records_per_sec,
                        run.requests_per_record.total,
                        run.second_cycle.requests.total
                    );
                }
                runs.push(run);
            }
            outln!("{}", serde_json::to_string(&SyncBench { runs })?)?;
        }
        What::Scale { jobs } => {
            let keep = match &database {
                BenchDatabase::Path(p) if jobs.len() > 1 => {
                    return Err(UsageError(format!(
                        "--database {p} keeps one ledger: give one size with --jobs"
                    ))
                    .into());
                }
                BenchDatabase::Path(p) if crate::ledger::Ledger::is_postgres_url(p) => {
                    Some(p.clone())
                }
                BenchDatabase::Path(p) => Some(
                    p.strip_prefix("sqlite://")
                        .or_else(|| p.strip_prefix("sqlite:"))
                        .unwrap_or(p)
                        .to_owned(),
                ),
                BenchDatabase::Temporary => None,
            };
            let mut runs = Vec::new();
            for n in jobs {
                let run =
                    bench::scale::scale_bench(n, keep.as_deref(), global.synchronous, |line| {
                        if verbose {
                            eprintln!("{n:>9} jobs: {line}");
                        }
                    })
                    .await?;
                runs.push(run);
            }
            outln!("{}", serde_json::json!({ "runs": runs }))?;
        }
        What::Soak {
            cycles,
            records,
            failing,
            interval_ms,
            warmup,
            workers,
            es_concurrency,
            max_attempts,
            backoff_base_ms,
            backoff_max_ms,
            check,
        } => {
            if backoff_base_ms > backoff_max_ms {
                return Err(UsageError(
                    "--backoff-base-ms must not exceed --backoff-max-ms".into(),
                )
                .into());
            }
            let options = SoakOptions {
                cycles,
                records,
                failing,
                interval: Duration::from_millis(interval_ms),
                warmup_cycles: warmup.unwrap_or(cycles / 5),
                workers: usize::from(workers),
                es_concurrency: usize::from(es_concurrency),
                max_attempts,
                backoff_base: Duration::from_millis(backoff_base_ms),
                backoff_max: Duration::from_millis(backoff_max_ms),
                synchronous: global.synchronous.as_str().to_owned(),
                progress_every: if verbose { 25 } else { 0 },
            };
            let report = bench::soak::soak(&std::env::current_exe()?, &options).await?;
            outln!("{}", serde_json::to_string(&report)?)?;
            if check && !report.targets.pass {
                anyhow::bail!("soak missed a target: {:?}", report.targets);
            }
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
        prefetch: usize::from(workers) * crate::worker::PREFETCH_PER_WORKER,
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
    outln!("{}", serde_json::to_string(&report)?)?;
    Ok(())
}

/// `bench worker --processes N`: enqueues the jobs, then runs N `bench worker` processes on the
/// same PostgreSQL ledger at once and reports the jobs per second of all of them together (wall
/// time from the first start to the last exit).
async fn run_worker_processes(
    global: &GlobalArgs,
    database: &BenchDatabase,
    jobs: u64,
    job_ms: u64,
    workers: u16,
    lease_ms: u64,
    processes: u16,
) -> anyhow::Result<()> {
    let BenchDatabase::Path(url) = database else {
        return Err(UsageError(
            "--processes needs a shared ledger: --database postgres://…".into(),
        )
        .into());
    };
    let ledger = global.open_ledger().await?;
    if !ledger.is_shared() {
        ledger.close().await;
        return Err(UsageError(
            "--processes needs a ledger processes can share: --database postgres://…".into(),
        )
        .into());
    }
    bench::enqueue_worker_jobs(&ledger, jobs).await?;
    ledger.close().await;
    let exe = std::env::current_exe()?;
    let started = std::time::Instant::now();
    let children = (0..processes)
        .map(|_| {
            tokio::process::Command::new(&exe)
                .args(["--database", url, "bench", "worker"])
                .args(["--jobs", &jobs.to_string(), "--job-ms", &job_ms.to_string()])
                .args([
                    "--workers",
                    &workers.to_string(),
                    "--lease-ms",
                    &lease_ms.to_string(),
                ])
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::inherit())
                .kill_on_drop(true)
                .output()
        })
        .collect::<Vec<_>>();
    let outputs = futures::future::try_join_all(children).await?;
    let seconds = started.elapsed().as_secs_f64();
    let mut reports = Vec::new();
    for output in outputs {
        if !output.status.success() {
            anyhow::bail!("a bench worker process failed: {}", output.status);
        }
        let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        reports.push(report);
    }
    let ran: u64 = reports
        .iter()
        .map(|r| r["report"]["ran"].as_u64().unwrap_or(0))
        .sum();
    outln!(
        "{}",
        serde_json::json!({
            "jobs": jobs,
            "processes": processes,
            "workers": workers,
            "job_ms": job_ms,
            "seconds": seconds,
            "ran": ran,
            "jobs_per_sec": (ran as f64 / seconds.max(1e-9)).round(),
            "per_process": reports,
        })
    )?;
    Ok(())
}
