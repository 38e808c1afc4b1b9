//! `hark serve`: the daemon until SIGTERM or SIGINT.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use hark::{Config, Server};
use tracing::{error, info, warn};

use crate::runtime;

pub(crate) fn serve(path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path).with_context(|| {
        format!(
            "configuration {} (check it with `hark check-config {}`)",
            path.display(),
            path.display()
        )
    })?;
    config.check_serveable()?;
    for l in &config.listeners {
        if !l.address.ip().is_loopback() {
            warn!(listener = %l.name, address = %l.address, "listening beyond loopback: make sure a firewall limits who can reach this port");
        }
    }
    let rt = runtime()?;
    rt.block_on(async {
        let server = Server::bind(config).await?;
        match hark::systemd::notify("READY=1") {
            Ok(_) => {}
            Err(e) => warn!("cannot notify systemd: {e}"),
        }
        let report = server
            .run(async {
                shutdown_signal().await;
                let _ = hark::systemd::notify("STOPPING=1");
            })
            .await;
        info!(
            accepted = report.accepted,
            refused = report.refused,
            "hark stopped"
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// Completes on SIGTERM (systemd stop) or SIGINT (Ctrl-C).
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => info!("SIGTERM: shutting down"),
                _ = int.recv() => info!("SIGINT: shutting down"),
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            error!("cannot install signal handlers ({e}); stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}
