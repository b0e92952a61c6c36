//! `gunsync sync` (not written yet).

use super::GlobalArgs;

/// (not written yet)
#[derive(Debug, clap::Args)]
pub struct SyncArgs {}

pub async fn execute(_args: SyncArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    anyhow::bail!("gunsync sync is not implemented yet")
}
