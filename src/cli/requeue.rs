//! `gunsync requeue` (not written yet).

use super::GlobalArgs;

/// (not written yet)
#[derive(Debug, clap::Args)]
pub struct RequeueArgs {}

pub async fn execute(_args: RequeueArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    anyhow::bail!("gunsync requeue is not implemented yet")
}
