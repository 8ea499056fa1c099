//! The long-running process: one client per backend, started once, stopped cleanly on
//! ctrl-c or SIGTERM.

use anyhow::Context as _;
use core_comfyui::{Catalog, ComfyClient, ConnectionState};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Runs until `shutdown` resolves.
pub async fn serve(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let (catalog, errors) = Catalog::load_dir(&config.workflows_dir)
        .with_context(|| format!("loading workflows from {}", config.workflows_dir.display()))?;
    for e in &errors {
        tracing::error!(error = %e, "workflow skipped");
    }
    tracing::info!(workflows = ?catalog.names().collect::<Vec<_>>(), "workflows loaded");
    if config.discord.token.is_none() {
        tracing::warn!("DISCORD_TOKEN is not set");
    }
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut clients = Vec::new();
    for b in &config.backends {
        let client = ComfyClient::new(config.client_config(b))
            .with_context(|| format!("backend {}", b.name))?;
        client.start();
        // Report each backend's state and check the workflows against it whenever it connects.
        let (name, c, catalog, cancel) = (
            b.name.clone(),
            client.clone(),
            catalog.clone(),
            cancel.clone(),
        );
        tracker.spawn(async move {
            let mut state = c.connection_state();
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    changed = state.changed() => if changed.is_err() { break },
                }
                let now = state.borrow_and_update().clone();
                match now {
                    ConnectionState::Connected => {
                        tracing::info!(backend = %name, "backend connected");
                        match c.object_info().await {
                            Ok(info) => {
                                for (workflow, problems) in catalog.check(&info) {
                                    for p in problems {
                                        tracing::warn!(backend = %name, workflow, problem = %p, "workflow does not fit backend");
                                    }
                                }
                            }
                            Err(e) => tracing::warn!(backend = %name, error = %e, "could not read /object_info"),
                        }
                    }
                    ConnectionState::Disconnected { attempts, last_error } if attempts <= 1 => {
                        tracing::warn!(backend = %name, error = %last_error, "backend unreachable; retrying with backoff");
                    }
                    _ => {}
                }
            }
        });
        clients.push(client);
    }
    tracker.close();
    shutdown.await;
    tracing::info!("shutting down");
    cancel.cancel();
    for c in &clients {
        c.shutdown().await;
    }
    tracker.wait().await;
    tracing::info!("stopped");
    Ok(())
}
