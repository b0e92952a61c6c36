//! `gunsync enqueue` (not written yet).

use super::GlobalArgs;

/// (not written yet)
#[derive(Debug, clap::Args)]
pub struct EnqueueArgs {}

pub async fn execute(_args: EnqueueArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    anyhow::bail!("gunsync enqueue is not implemented yet")
}
