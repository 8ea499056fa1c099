//! Backend health: a probe loop per backend, and what the actor does with the answers
//! (marking backends up or down, failing jobs nothing can run, ending jobs whose backend
//! did not come back).

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::generator::{Generator, Probe};
use crate::job::JobId;

use super::actor::Actor;
use super::{Internal, SchedulerConfig};

/// Probes one backend: every `health_interval` while it answers, every
/// `down_probe_interval` while it does not, and at once whenever its connection drops or
/// comes back (the quickest signal that a server died or returned).
pub(super) async fn health_loop(
    index: usize,
    gen: Arc<dyn Generator>,
    config: SchedulerConfig,
    internal: mpsc::Sender<Internal>,
    cancel: CancellationToken,
) {
    let mut link = gen.connection();
    loop {
        let probe = async {
            match tokio::time::timeout(config.probe_timeout, gen.probe()).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "no answer within {} s",
                    config.probe_timeout.as_secs_f64()
                )),
            }
        };
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = probe => r,
        };
        let link_lost = link.as_ref().is_some_and(|l| !l.borrow().is_up());
        let wait = if result.is_ok() {
            config.health_interval
        } else {
            config.down_probe_interval
        };
        if internal
            .send(Internal::Health {
                backend: index,
                result,
                link_lost,
            })
            .await
            .is_err()
        {
            return;
        }
        let link_changed = async {
            match link.as_mut() {
                Some(l) => {
                    let was_up = l.borrow_and_update().is_up();
                    // Only a change between up and down matters (not every reconnect attempt).
                    l.wait_for(|s| s.is_up() != was_up).await.is_ok()
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            changed = link_changed => {
                if !changed {
                    // The connection is gone for good (the client was dropped): plain probes.
                    link = None;
                }
            }
        }
    }
}

impl Actor {
    /// Once every backend has answered a probe, a waiting job whose workflow none of them can
    /// run would wait forever: fail it with the reason instead.
    pub(super) async fn fail_unrunnable(&mut self) {
        if self.backends.iter().any(|b| b.probe.is_none()) {
            return;
        }
        let stuck: Vec<(JobId, String)> = self
            .waiting
            .iter()
            .filter(|(_, w)| {
                !self
                    .backends
                    .iter()
                    .enumerate()
                    .any(|(i, b)| Some(i) != w.excluded && b.fits(&w.record.spec))
            })
            .map(|(id, w)| (id.clone(), self.no_backend(&w.record.spec).to_string()))
            .collect();
        for (id, reason) in stuck {
            self.forget_waiting(&id);
            self.end(id, Some(reason)).await;
        }
    }

    pub(super) fn health(&mut self, index: usize, result: Result<Probe, String>, link_lost: bool) {
        let down_after = self.config.down_after_failures.max(1);
        let b = &mut self.backends[index];
        match result {
            Ok(probe) => {
                if !b.healthy {
                    tracing::info!(
                        backend = b.gen.name(),
                        detail = probe.detail,
                        "backend healthy"
                    );
                }
                b.healthy = true;
                b.failures = 0;
                b.last_error = None;
                b.probe = Some(probe);
            }
            Err(e) => {
                b.failures += 1;
                // A dropped connection plus a failed probe is proof enough.
                if b.healthy && (link_lost || b.failures >= down_after) {
                    tracing::warn!(backend = b.gen.name(), error = %e, link_lost, "backend down; its jobs run again");
                    b.healthy = false;
                    for id in b.inflight.clone() {
                        if let Some(r) = self.running.get_mut(&id) {
                            r.backend_lost = true;
                            r.control.abandon.cancel();
                        }
                    }
                } else if b.failures == 1 {
                    tracing::debug!(backend = b.gen.name(), error = %e, "backend probe failed");
                }
                self.backends[index].last_error = Some(e);
            }
        }
    }

    /// Jobs waiting for a lost backend that did not come back in time fail, with the reason.
    pub(super) async fn expire_lost(&mut self) {
        let now = tokio::time::Instant::now();
        let expired: Vec<(JobId, String)> = self
            .waiting
            .iter()
            .filter_map(|(id, w)| {
                let (deadline, reason) = w.lost_deadline.as_ref()?;
                (*deadline <= now).then(|| (id.clone(), reason.clone()))
            })
            .collect();
        for (id, reason) in expired {
            self.forget_waiting(&id);
            self.end(id, Some(reason)).await;
        }
    }
}
