//! `gunsync run` (not written yet).

use super::GlobalArgs;

/// (not written yet)
#[derive(Debug, clap::Args)]
pub struct RunArgs {}

pub async fn execute(_args: RunArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    anyhow::bail!("gunsync run is not implemented yet")
}
