//! `gunsync bench` (not written yet).

use super::GlobalArgs;

/// (not written yet)
#[derive(Debug, clap::Args)]
pub struct BenchArgs {}

pub async fn execute(_args: BenchArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    anyhow::bail!("gunsync bench is not implemented yet")
}
