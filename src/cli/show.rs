//! `gunsync show` (not written yet).

use super::GlobalArgs;

/// (not written yet)
#[derive(Debug, clap::Args)]
pub struct ShowArgs {}

pub async fn execute(_args: ShowArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    anyhow::bail!("gunsync show is not implemented yet")
}
