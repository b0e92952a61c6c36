//! `gunsync stats` (not written yet).

use super::GlobalArgs;

/// (not written yet)
#[derive(Debug, clap::Args)]
pub struct StatsArgs {}

pub async fn execute(_args: StatsArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    anyhow::bail!("gunsync stats is not implemented yet")
}
