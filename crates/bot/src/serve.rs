//! The long-running process: the scheduler on the SQLite journal, one ComfyUI generator per
//! backend, output retention, all started once and stopped cleanly on ctrl-c or SIGTERM.
//! Jobs still running at shutdown stay in the journal and are resumed at the next start.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use generators::{Journal, SqliteJournal};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::engine::{load_catalog, start_engine};

/// From ctrl-c or SIGTERM to exit, at most (Docker's stop timeout is 10 s before SIGKILL).
pub const SHUTDOWN_BUDGET: Duration = Duration::from_secs(8);

/// How often old outputs are pruned.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

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

/// Downloaded inputs are kept this long when outputs have no age limit (Reroll needs them).
const INPUTS_DEFAULT_MAX_AGE: Duration = Duration::from_secs(30 * 86_400);

/// Removes files in `dir` last modified more than `max_age` before `now`; returns how many.
pub fn prune_inputs(dir: &std::path::Path, max_age: Duration, now: SystemTime) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .and_then(|m| m.modified().ok())
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > max_age);
        if old && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Prunes the outputs folder by count and age (if configured) and old downloaded inputs,
/// hourly, until `cancel`.
async fn retention_loop(config: Config, cancel: CancellationToken) {
    let keep = config.outputs.keep_count;
    let age = config
        .outputs
        .max_age_days
        .map(|d| Duration::from_secs(d * 86_400));
    let inputs = config.data_dir.join("inputs");
    loop {
        if keep.is_some() || age.is_some() {
            match generators::outputs::apply_retention(
                &config.outputs.dir,
                keep,
                age,
                SystemTime::now(),
            ) {
                Ok(r) if r.removed > 0 => {
                    tracing::info!(removed = r.removed, kept = r.kept, "old outputs removed")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, dir = %config.outputs.dir.display(), "output retention failed")
                }
            }
        }
        let removed = prune_inputs(
            &inputs,
            age.unwrap_or(INPUTS_DEFAULT_MAX_AGE),
            SystemTime::now(),
        );
        if removed > 0 {
            tracing::info!(removed, "old downloaded inputs removed");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(RETENTION_EVERY) => {}
        }
    }
}

/// Runs the bot until `shutdown` resolves (or the Discord connection fails for good).
pub async fn serve(
    config: Config,
    config_path: &std::path::Path,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    // Fail before touching anything when the token is missing.
    crate::discord::bot_token(&config)?;
    // Held until this function returns; a second bot on this data folder refuses to start.
    let _lock = crate::data_lock::DataDirLock::acquire(&config.data_dir)?;
    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open(&config.journal_path())?);
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let catalog = load_catalog(&config)?;
    let engine = start_engine(&config, catalog, journal, &cancel, &tracker)?;
    let clients: Vec<_> = engine
        .generators
        .iter()
        .map(|g| g.client().clone())
        .collect();
    tracker.spawn(retention_loop(config.clone(), cancel.clone()));
    let metrics = Arc::new(crate::health::Metrics::default());
    if let Some(listen) = config.health.listen {
        let state = crate::health::HealthState {
            metrics: metrics.clone(),
            scheduler: engine.scheduler.clone(),
            journal: engine.journal.clone(),
        };
        let stop = cancel.clone();
        tracker.spawn(async move {
            if let Err(e) = crate::health::serve(listen, state, stop).await {
                tracing::error!(%listen, error = %e, "the health endpoint could not start");
            }
        });
    }
    let bot = crate::discord::run(
        config,
        config_path,
        engine,
        metrics,
        cancel.clone(),
        &tracker,
    );
    tokio::pin!(bot);
    let (result, deadline) = tokio::select! {
        r = &mut bot => (r, tokio::time::Instant::now() + SHUTDOWN_BUDGET),
        _ = shutdown => {
            tracing::info!(
                "shutting down; running jobs stay queued on their backends and resume at the next start"
            );
            let deadline = tokio::time::Instant::now() + SHUTDOWN_BUDGET;
            cancel.cancel();
            // The Discord side keeps within its own share; this only guards against a hang.
            let r = tokio::time::timeout_at(deadline, bot)
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the Discord side did not stop in time")));
            (r, deadline)
        }
    };
    cancel.cancel();
    let stopped = tokio::time::timeout_at(deadline, async {
        for c in &clients {
            c.shutdown().await;
        }
        tracker.close();
        tracker.wait().await;
    })
    .await;
    if stopped.is_err() {
        tracing::warn!("some tasks were still stopping when the shutdown budget ran out");
    }
    tracing::info!("stopped");
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_inputs_are_pruned_and_recent_ones_kept() {
        let dir =
            std::env::temp_dir().join(format!("comfycord-inputs-{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        let now = SystemTime::now();
        for (name, age_days) in [("old.png", 40u64), ("new.png", 1)] {
            let f = std::fs::File::create(dir.join(name)).unwrap();
            f.set_modified(now - Duration::from_secs(age_days * 86_400))
                .unwrap();
        }
        assert_eq!(prune_inputs(&dir, INPUTS_DEFAULT_MAX_AGE, now), 1);
        assert!(!dir.join("old.png").exists() && dir.join("new.png").exists());
        assert_eq!(
            prune_inputs(&dir.join("missing"), INPUTS_DEFAULT_MAX_AGE, now),
            0
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
