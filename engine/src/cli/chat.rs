//! `hark chat`: a text conversation through an agent.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use hark::Config;

use crate::runtime;

pub(crate) fn chat(agent: &str, path: &Path, tenant: &str) -> anyhow::Result<ExitCode> {
    let config = Config::load(path).with_context(|| format!("configuration {}", path.display()))?;
    runtime()?.block_on(async {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let (router, chat) =
            hark::chat::router_for(&config, agent, Some(tx)).map_err(anyhow::Error::msg)?;
        hark::chat::run(
            router,
            chat,
            tenant,
            tokio::io::stdin(),
            tokio::io::stdout(),
            rx,
        )
        .await?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
