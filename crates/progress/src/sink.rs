//! Delivering snapshots without flooding: one task per message holds only the newest state,
//! edits at most once per interval, never has two edits in flight, waits out 429s, and always
//! delivers the final state.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::tracker::Snapshot;

/// Default gap between two edits of one message.
pub const DEFAULT_EDIT_INTERVAL: Duration = Duration::from_millis(1500);
/// Attempts to deliver the final state through errors before giving up on it.
const MAX_FINAL_ATTEMPTS: u32 = 20;
/// Wait after a failure that names no retry time.
const FAILURE_BACKOFF: Duration = Duration::from_secs(2);

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SinkError {
    /// Rate limited (HTTP 429): wait this long, then send the newest state.
    #[error("rate limited; retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    /// The message is gone (deleted, token expired): stop editing it.
    #[error("the progress message is gone: {0}")]
    Gone(String),
    #[error("{0}")]
    Failed(String),
}

/// Where snapshots go: a Discord message edit, a terminal line.
pub trait ProgressSink: Send + Sync + 'static {
    fn deliver(&self, snapshot: &Snapshot) -> impl Future<Output = Result<(), SinkError>> + Send;
}

#[derive(Clone)]
struct Slot {
    snapshot: Snapshot,
    is_final: bool,
}

/// Feeds one message's sink. Dropping it without [`ProgressHandle::finish`] stops the task.
#[derive(Debug)]
pub struct ProgressHandle {
    tx: watch::Sender<Option<Slot>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<u64>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("is_final", &self.is_final)
            .finish_non_exhaustive()
    }
}

impl ProgressHandle {
    /// Replaces the pending state; cheap, never waits.
    pub fn update(&self, snapshot: Snapshot) {
        self.tx.send_replace(Some(Slot {
            snapshot,
            is_final: false,
        }));
    }

    /// Sends the final state and waits until it is delivered (or given up). Returns the number
    /// of deliveries made.
    pub async fn finish(self, snapshot: Snapshot) -> u64 {
        self.tx.send_replace(Some(Slot {
            snapshot,
            is_final: true,
        }));
        self.task.await.unwrap_or(0)
    }

    /// Stops without a final state: pending states are dropped, an edit already in flight is
    /// awaited. Afterwards nothing more reaches the sink, so the caller may replace the
    /// message (with a result) without a late progress edit overwriting it.
    pub async fn stop(self) -> u64 {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or(0)
    }
}

/// Resolves once [`ProgressHandle::stop`] is called; never if the handle is gone (then the
/// closed update channel ends the loop).
async fn stop_requested(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|stopped| *stopped).await.is_err() {
        std::future::pending::<()>().await
    }
}

/// Starts the delivery task for one message; the first state goes out at once.
pub fn spawn_throttled<S: ProgressSink>(sink: S, interval: Duration) -> ProgressHandle {
    start(sink, interval, None)
}

/// Starts the delivery task for a message last written at `shown`: the first state waits
/// until `shown + interval`, like every later one.
pub fn spawn_throttled_after<S: ProgressSink>(
    sink: S,
    interval: Duration,
    shown: Instant,
) -> ProgressHandle {
    start(sink, interval, Some(shown))
}

fn start<S: ProgressSink>(sink: S, interval: Duration, shown: Option<Instant>) -> ProgressHandle {
    let (tx, rx) = watch::channel(None);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(deliver_loop(sink, interval, shown, rx, stop_rx));
    ProgressHandle { tx, stop, task }
}

async fn deliver_loop<S: ProgressSink>(
    sink: S,
    interval: Duration,
    shown: Option<Instant>,
    mut rx: watch::Receiver<Option<Slot>>,
    mut stop: watch::Receiver<bool>,
) -> u64 {
    let mut last_sent: Option<Instant> = shown;
    let mut delivered = 0u64;
    let mut final_attempts = 0u32;
    let mut retry_now = false;
    loop {
        if !retry_now {
            tokio::select! {
                biased;
                _ = stop_requested(&mut stop) => return delivered,
                changed = rx.changed() => if changed.is_err() {
                    // The handle was dropped without a final state: nothing more to show.
                    return delivered;
                },
            }
        }
        retry_now = false;
        if let Some(t) = last_sent {
            // Updates that arrive while we wait replace each other in the watch.
            tokio::select! {
                biased;
                _ = stop_requested(&mut stop) => return delivered,
                _ = tokio::time::sleep_until(t + interval) => {}
            }
        }
        let Some(slot) = rx.borrow_and_update().clone() else {
            continue;
        };
        let started = Instant::now();
        // Boxed: an HTTP edit's future is tens of KiB, and this task lives as long as its job,
        // queued ones included; inline, a thousand waiting jobs would hold it a thousand times.
        match Box::pin(sink.deliver(&slot.snapshot)).await {
            Ok(()) => {
                delivered += 1;
                last_sent = Some(started);
                if slot.is_final {
                    return delivered;
                }
            }
            Err(SinkError::Gone(why)) => {
                tracing::debug!(%why, "progress message gone; stopping its updates");
                return delivered;
            }
            Err(e) => {
                let wait = match &e {
                    SinkError::RateLimited { retry_after } => *retry_after,
                    _ => FAILURE_BACKOFF,
                };
                tracing::debug!(error = %e, ?wait, "progress edit failed; will send the newest state");
                if slot.is_final {
                    final_attempts += 1;
                    if final_attempts >= MAX_FINAL_ATTEMPTS {
                        tracing::warn!(error = %e, "giving up on the final progress state");
                        return delivered;
                    }
                }
                tokio::select! {
                    biased;
                    _ = stop_requested(&mut stop) => return delivered,
                    _ = tokio::time::sleep(wait) => {}
                }
                // Whatever is newest now (maybe the final state) goes next, without waiting
                // for another change and without the interval (the wait already spaced it).
                last_sent = None;
                retry_now = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::Phase;
    use std::sync::{Arc, Mutex};

    fn snap(percent: f64) -> Snapshot {
        Snapshot {
            phase: Phase::Sampling,
            queue_position: None,
            node: None,
            step: None,
            percent,
            eta: None,
            elapsed: Duration::ZERO,
            preview: None,
            error: None,
            note: None,
        }
    }

    /// Records deliveries with their (paused-clock) times; can fail with 429 a number of times.
    #[derive(Clone, Default)]
    struct Recorder {
        sent: Arc<Mutex<Vec<(Instant, f64)>>>,
        fail_429: Arc<Mutex<u32>>,
        in_flight: Arc<Mutex<bool>>,
        edit_latency: Duration,
    }

    impl ProgressSink for Recorder {
        async fn deliver(&self, s: &Snapshot) -> Result<(), SinkError> {
            {
                let mut f = self.in_flight.lock().unwrap();
                assert!(!*f, "two edits in flight");
                *f = true;
            }
            tokio::time::sleep(self.edit_latency).await;
            *self.in_flight.lock().unwrap() = false;
            let mut fails = self.fail_429.lock().unwrap();
            if *fails > 0 {
                *fails -= 1;
                return Err(SinkError::RateLimited {
                    retry_after: Duration::from_millis(700),
                });
            }
            self.sent.lock().unwrap().push((Instant::now(), s.percent));
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn stop_waits_for_the_edit_in_flight_and_drops_the_rest() {
        let rec = Recorder {
            edit_latency: Duration::from_millis(300),
            ..Recorder::default()
        };
        let h = spawn_throttled(rec.clone(), Duration::from_secs(1));
        h.update(snap(10.0));
        // Let the first edit start, then queue a newer state and stop mid-edit.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            *rec.in_flight.lock().unwrap(),
            "first edit should be in flight"
        );
        h.update(snap(20.0));
        let delivered = h.stop().await;
        assert_eq!(delivered, 1);
        assert!(!*rec.in_flight.lock().unwrap());
        let sent: Vec<f64> = rec.sent.lock().unwrap().iter().map(|(_, p)| *p).collect();
        assert_eq!(
            sent,
            vec![10.0],
            "the pending 20% must not be sent after stop"
        );
        // And nothing arrives later either.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(rec.sent.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn thousand_events_over_ten_seconds_make_at_most_eight_edits() {
        let rec = Recorder {
            edit_latency: Duration::from_millis(120),
            ..Recorder::default()
        };
        let interval = Duration::from_millis(1500);
        let handle = spawn_throttled(rec.clone(), interval);
        for i in 0..1000 {
            handle.update(snap(i as f64 / 10.0));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let delivered = handle.finish(snap(100.0)).await;
        let sent = rec.sent.lock().unwrap().clone();
        assert_eq!(delivered as usize, sent.len());
        assert!(sent.len() <= 8, "{} edits", sent.len());
        assert!(
            sent.len() >= 7,
            "{} edits: the throttle should not starve updates",
            sent.len()
        );
        for pair in sent.windows(2) {
            assert!(
                pair[1].0 - pair[0].0 >= interval,
                "edits {:?} apart",
                pair[1].0 - pair[0].0
            );
        }
        assert_eq!(
            sent.last().unwrap().1,
            100.0,
            "the final state is delivered last"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_edit_keeps_the_interval_from_when_the_message_was_shown() {
        let rec = Recorder::default();
        let interval = Duration::from_millis(1500);
        let shown = Instant::now();
        let handle = spawn_throttled_after(rec.clone(), interval, shown);
        // Progress arrives a moment after the queued message went out.
        tokio::time::sleep(Duration::from_millis(2)).await;
        handle.update(snap(5.0));
        tokio::time::sleep(Duration::from_millis(100)).await;
        handle.update(snap(9.0));
        let delivered = handle.finish(snap(100.0)).await;
        let sent = rec.sent.lock().unwrap().clone();
        assert_eq!(delivered as usize, sent.len());
        assert!(
            sent[0].0 - shown >= interval,
            "first edit {:?} after the message appeared",
            sent[0].0 - shown
        );
        // Coalesced: the pending 9% was replaced by the final state before its turn came.
        let percents: Vec<f64> = sent.iter().map(|(_, p)| *p).collect();
        assert_eq!(percents, vec![100.0]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_storm_loses_no_final_state() {
        let rec = Recorder::default();
        *rec.fail_429.lock().unwrap() = 12;
        let handle = spawn_throttled(rec.clone(), Duration::from_millis(1500));
        for i in 0..50 {
            handle.update(snap(f64::from(i)));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        handle.finish(snap(100.0)).await;
        let sent = rec.sent.lock().unwrap().clone();
        assert_eq!(sent.last().map(|s| s.1), Some(100.0));
        assert_eq!(*rec.fail_429.lock().unwrap(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn gone_message_stops_quietly() {
        #[derive(Clone)]
        struct Gone;
        impl ProgressSink for Gone {
            async fn deliver(&self, _: &Snapshot) -> Result<(), SinkError> {
                Err(SinkError::Gone("deleted".into()))
            }
        }
        let handle = spawn_throttled(Gone, Duration::from_millis(10));
        handle.update(snap(1.0));
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), handle.finish(snap(2.0))).await,
            Ok(0)
        );
    }
}
