//! `gunsync jobs` (not written yet).

use super::GlobalArgs;

/// (not written yet)
#[derive(Debug, clap::Args)]
pub struct JobsArgs {}

pub async fn execute(_args: JobsArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    anyhow::bail!("gunsync jobs is not implemented yet")
}
