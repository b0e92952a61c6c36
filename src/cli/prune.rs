//! `gunsync prune` (not written yet).

use super::GlobalArgs;

/// (not written yet)
#[derive(Debug, clap::Args)]
pub struct PruneArgs {}

pub async fn execute(_args: PruneArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    anyhow::bail!("gunsync prune is not implemented yet")
}
