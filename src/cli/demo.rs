//! `gunsync demo` (not written yet).

use super::GlobalArgs;

/// (not written yet)
#[derive(Debug, clap::Args)]
pub struct DemoArgs {}

pub async fn execute(_args: DemoArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    anyhow::bail!("gunsync demo is not implemented yet")
}
