//! The `gunsync` command line (DESIGN §6): one clap `Command` enum, one file per subcommand.
//! Exit status: 0 success, 2 usage error, 1 anything else, with one line on stderr.

mod bench;
mod cancel;
mod demo;
mod enqueue;
mod jobs;
mod migrate;
pub mod output;
mod prune;
mod requeue;
mod run;
pub mod show;
mod stats;
mod sync;
mod ui;

use clap::{Args, Parser, Subcommand};

use crate::ledger::{
    DEFAULT_DATABASE, DEFAULT_MAX_CONNECTIONS, JobId, JobKind, JobState, Ledger, LedgerOptions,
    Synchronous,
};

/// An error in how gunsync was called (exit status 2), found after clap's own parsing.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

#[derive(Debug, Parser)]
#[command(
    name = "gunsync",
    version,
    about = "Mirror OIP records from GUN relays into Elasticsearch through a durable SQLite job ledger"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// The ledger: an SQLite file path or `sqlite:` URL (created if missing, except by the
    /// commands that only read: jobs, show, stats), or a `postgres://user@host/db` URL that
    /// several gunsync nodes share
    #[arg(long, global = true, env = "GUNSYNC_DATABASE", default_value = DEFAULT_DATABASE, value_parser = parse_database)]
    pub database: String,
    /// PostgreSQL only: connections this process opens at most (one listens for other nodes'
    /// wake-ups); size the server's max_connections for every node
    #[arg(
        long,
        global = true,
        env = "GUNSYNC_DATABASE_MAX_CONNECTIONS",
        default_value_t = DEFAULT_MAX_CONNECTIONS,
        value_parser = clap::value_parser!(u32).range(2..=64)
    )]
    pub database_max_connections: u32,
    /// SQLite `synchronous` setting: `full` survives power loss, `normal` is faster
    #[arg(
        long,
        global = true,
        env = "GUNSYNC_SYNCHRONOUS",
        value_enum,
        default_value = "full"
    )]
    pub synchronous: Synchronous,
}

impl GlobalArgs {
    /// Opens the ledger named by `--database`, creating it if missing.
    pub async fn open_ledger(&self) -> anyhow::Result<Ledger> {
        Ok(Ledger::open(self.ledger_options()).await?)
    }

    /// Opens the existing ledger named by `--database` for reading only: a mistyped path is an
    /// error ("no ledger at …"), never a new empty ledger; read-only media work.
    pub async fn open_ledger_read_only(&self) -> anyhow::Result<Ledger> {
        Ok(Ledger::open_read_only(self.ledger_options()).await?)
    }

    /// Opens the ledger for work (`run`, `sync`): it must pass `PRAGMA quick_check` first, so a
    /// damaged file is refused before a damaged index can hide jobs.
    pub async fn open_ledger_checked(&self) -> anyhow::Result<Ledger> {
        let ledger = self.open_ledger().await?;
        if let Err(e) = ledger.quick_check().await {
            ledger.close().await;
            return Err(e.into());
        }
        Ok(ledger)
    }

    fn ledger_options(&self) -> LedgerOptions {
        LedgerOptions::new(&self.database)
            .synchronous(self.synchronous)
            .max_connections(self.database_max_connections)
    }
}

/// `--database` must name something.
fn parse_database(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        Err("the database path is empty".into())
    } else {
        Ok(text.to_owned())
    }
}

/// Parses a `--state` value. Done here rather than by clap so the error is one line (DESIGN §6).
pub(crate) fn parse_state(name: &str) -> Result<JobState, UsageError> {
    name.parse().map_err(|e| UsageError(format!("{e}")))
}

/// Parses a `--kind` (or `KIND`) value; see [`parse_state`].
pub(crate) fn parse_kind(name: &str) -> Result<JobKind, UsageError> {
    name.parse().map_err(|e| UsageError(format!("{e}")))
}

/// Parses job ids given on the command line; see [`parse_state`].
pub(crate) fn parse_ids(ids: &[String]) -> Result<Vec<JobId>, UsageError> {
    ids.iter()
        .map(|id| id.parse::<JobId>().map_err(UsageError))
        .collect()
}

/// Parses a whole number option such as `--limit`; see [`parse_state`].
pub(crate) fn parse_count(option: &str, text: &str) -> Result<u32, UsageError> {
    text.trim()
        .parse()
        .map_err(|_| UsageError(format!("{option} {text:?}: expected a whole number")))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Run(run::RunArgs),
    Sync(sync::SyncArgs),
    Migrate(migrate::MigrateArgs),
    Jobs(jobs::JobsArgs),
    Show(show::ShowArgs),
    Stats(stats::StatsArgs),
    Requeue(requeue::RequeueArgs),
    Cancel(cancel::CancelArgs),
    Enqueue(enqueue::EnqueueArgs),
    Prune(prune::PruneArgs),
    Bench(bench::BenchArgs),
    Demo(demo::DemoArgs),
    Ui(ui::UiArgs),
}

/// Runs the parsed command.
pub async fn execute(cli: Cli) -> anyhow::Result<()> {
    let global = cli.global;
    match cli.command {
        Command::Run(args) => run::execute(args, &global).await,
        Command::Sync(args) => sync::execute(args, &global).await,
        Command::Migrate(args) => migrate::execute(args, &global).await,
        Command::Jobs(args) => jobs::execute(args, &global).await,
        Command::Show(args) => show::execute(args, &global).await,
        Command::Stats(args) => stats::execute(args, &global).await,
        Command::Requeue(args) => requeue::execute(args, &global).await,
        Command::Cancel(args) => cancel::execute(args, &global).await,
        Command::Enqueue(args) => enqueue::execute(args, &global).await,
        Command::Prune(args) => prune::execute(args, &global).await,
        Command::Bench(args) => bench::execute(args, &global).await,
        Command::Demo(args) => demo::execute(args, &global).await,
        Command::Ui(args) => ui::execute(args, &global).await,
    }
}
