//! `gunsync cancel` (not written yet).

use super::GlobalArgs;

/// (not written yet)
#[derive(Debug, clap::Args)]
pub struct CancelArgs {}

pub async fn execute(_args: CancelArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    anyhow::bail!("gunsync cancel is not implemented yet")
}
