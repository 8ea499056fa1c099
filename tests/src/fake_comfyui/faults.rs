//! Runtime fault switches for the fake server. Every method takes `&self`, so tests can flip
//! them while requests and jobs are in flight.

use super::pyjson;
use super::state::{Shared, Target};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, Weak};
use std::time::Duration;

/// Faults armed for "the next job"; the worker takes them when a job starts.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct JobFaults {
    pub drop_ws_after: Option<usize>,
    pub interrupt_after_progress: Option<usize>,
}

pub struct Faults {
    shared: Weak<Shared>,
    next_job: Mutex<JobFaults>,
    http_delay_ns: AtomicU64,
    fail_next: AtomicUsize,
    malformed: Mutex<Vec<String>>,
    path_delays: Mutex<Vec<(String, Duration)>>,
    unknown_events: AtomicBool,
    reject_ws: AtomicBool,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("next_job", &self.next_job_peek())
            .field("http_delay", &self.http_delay_value())
            .field("fail_next", &self.fail_next.load(Ordering::SeqCst))
            .field("unknown_events", &self.unknown_events())
            .field("reject_ws", &self.reject_ws_on())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Faults {
    pub(crate) fn new(shared: Weak<Shared>) -> Self {
        Faults {
            shared,
            next_job: Mutex::new(JobFaults::default()),
            http_delay_ns: AtomicU64::new(0),
            fail_next: AtomicUsize::new(0),
            malformed: Mutex::new(Vec::new()),
            path_delays: Mutex::new(Vec::new()),
            unknown_events: AtomicBool::new(false),
            reject_ws: AtomicBool::new(false),
        }
    }

    /// During the NEXT job, right after its `n`-th WebSocket message (counting every frame the
    /// worker emits for that job from `execution_start` on, binary previews included, each
    /// emission once however many sockets get it), every open socket is cut: frames already
    /// queued are flushed, then the TCP connection is dropped without a close frame. The job
    /// itself runs on and its history entry is written. `n = 0` cuts before `execution_start`.
    pub fn drop_ws_after_job_messages(&self, n: usize) {
        lock(&self.next_job).drop_ws_after = Some(n);
    }

    /// Every HTTP answer is held back by `d` after the request was handled (so side effects,
    /// and WebSocket messages they cause, happen before the client sees the reply).
    /// `Duration::ZERO` turns it off. WebSocket upgrades are not delayed.
    pub fn http_delay(&self, d: Duration) {
        self.http_delay_ns
            .store(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::SeqCst);
    }

    /// Like [`Faults::http_delay`], for answers on paths starting with `path_prefix` (with or
    /// without the `/api` prefix) only; added to the global delay. `Duration::ZERO` removes it.
    pub fn http_delay_on(&self, path_prefix: &str, d: Duration) {
        let mut list = lock(&self.path_delays);
        list.retain(|(p, _)| p != path_prefix);
        if !d.is_zero() {
            list.push((path_prefix.to_string(), d));
        }
    }

    /// The next `n` HTTP requests (WebSocket upgrades excluded) are answered with aiohttp's
    /// 500 page without being handled.
    pub fn fail_next_http(&self, n: usize) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// The next JSON answer on a path starting with `path_prefix` (with or without the `/api`
    /// prefix) is cut in half: status 200, `application/json`, invalid body. The request is
    /// still handled normally. Several calls queue up.
    pub fn malformed_json_next(&self, path_prefix: &str) {
        lock(&self.malformed).push(path_prefix.to_string());
    }

    /// The next job is interrupted, as `POST /interrupt` would, right after its `k`-th
    /// `progress` message (`k = 0`: at its first node). Cooperative like the real thing: it
    /// takes effect at the next progress update or node start.
    pub fn interrupt_after_progress(&self, k: usize) {
        lock(&self.next_job).interrupt_after_progress = Some(k);
    }

    /// Before each job message also broadcast a `crystools.monitor` frame and send a custom
    /// `fake_custom_node.event` frame to the job's recipients, as custom node packs do.
    pub fn send_unknown_events(&self, on: bool) {
        self.unknown_events.store(on, Ordering::SeqCst);
    }

    /// Sends, right now, one text frame of exactly `bytes` bytes (a valid JSON message of an
    /// unknown type, padded; never smaller than the bare envelope) to every registered socket.
    pub fn send_oversized_frame(&self, bytes: usize) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let envelope = |pad: usize| {
            pyjson::dumps(&json!({"type": "fake.oversized", "data": {"pad": "x".repeat(pad)}}))
        };
        let base = envelope(0).len();
        let text = envelope(bytes.saturating_sub(base));
        shared.lock().send_text(&Target::Broadcast, text);
    }

    /// While on, WebSocket upgrades are refused with 503.
    pub fn reject_ws(&self, on: bool) {
        self.reject_ws.store(on, Ordering::SeqCst);
    }

    // ---- internal accessors ----

    pub(crate) fn take_job_faults(&self) -> JobFaults {
        std::mem::take(&mut *lock(&self.next_job))
    }

    fn next_job_peek(&self) -> JobFaults {
        *lock(&self.next_job)
    }

    pub(crate) fn http_delay_value(&self) -> Duration {
        Duration::from_nanos(self.http_delay_ns.load(Ordering::SeqCst))
    }

    pub(crate) fn http_delay_for(&self, path: &str) -> Duration {
        let plain = path.strip_prefix("/api").unwrap_or(path);
        let extra: Duration = lock(&self.path_delays)
            .iter()
            .filter(|(p, _)| path.starts_with(p.as_str()) || plain.starts_with(p.as_str()))
            .map(|(_, d)| *d)
            .sum();
        self.http_delay_value() + extra
    }

    pub(crate) fn take_fail(&self) -> bool {
        self.fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    pub(crate) fn take_malformed(&self, path: &str) -> bool {
        let plain = path.strip_prefix("/api").unwrap_or(path);
        let mut list = lock(&self.malformed);
        match list
            .iter()
            .position(|p| path.starts_with(p.as_str()) || plain.starts_with(p.as_str()))
        {
            Some(i) => {
                list.remove(i);
                true
            }
            None => false,
        }
    }

    pub(crate) fn unknown_events(&self) -> bool {
        self.unknown_events.load(Ordering::SeqCst)
    }

    pub(crate) fn reject_ws_on(&self) -> bool {
        self.reject_ws.load(Ordering::SeqCst)
    }
}
