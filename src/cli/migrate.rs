//! `gunsync migrate` (not written yet).

use super::GlobalArgs;

/// (not written yet)
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {}

pub async fn execute(_args: MigrateArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    anyhow::bail!("gunsync migrate is not implemented yet")
}
