//! Runtime misbehaviour switches. Every method takes `&self`, so tests can flip them while the
//! bot is running.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// A scripted run of 429 answers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct RateLimit {
    pub remaining: u64,
    pub retry_after: f64,
    pub global: bool,
}

/// Switches; defaults are Discord's real behaviour.
#[derive(Debug)]
pub struct Faults {
    /// Milliseconds; `u64::MAX` = no deadline.
    ack_deadline_ms: AtomicU64,
    reject_double_ack: AtomicBool,
    token_ttl_ms: AtomicU64,
    expired_status: AtomicU64,
    max_body: AtomicU64,
    max_file: AtomicU64,
    latency_ms: AtomicU64,
    rate_limit: Mutex<Option<RateLimit>>,
    server_errors: Mutex<Option<ServerErrors>>,
    no_heartbeat_ack: AtomicBool,
    /// Users whose privacy settings refuse DMs from the bot (50007 on a DM post).
    closed_dms: Mutex<Vec<u64>>,
}

/// Which requests fail with a 5xx, and how many more.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FailWhich {
    /// Every API request.
    All,
    /// Requests that upload files (results, previews).
    Uploads,
    /// Message edits (`PATCH`), by token or by channel.
    Edits,
    /// New messages (`POST`s other than interaction callbacks): follow-ups, channel messages.
    NewMessages,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ServerErrors {
    pub remaining: u64,
    pub status: u16,
    pub which: FailWhich,
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128 - 1) as u64
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            ack_deadline_ms: AtomicU64::new(3_000),
            reject_double_ack: AtomicBool::new(true),
            token_ttl_ms: AtomicU64::new(15 * 60 * 1000),
            expired_status: AtomicU64::new(401),
            max_body: AtomicU64::new(25 * 1024 * 1024),
            max_file: AtomicU64::new(super::fixtures::DEFAULT_ATTACHMENT_SIZE_LIMIT),
            latency_ms: AtomicU64::new(0),
            rate_limit: Mutex::new(None),
            server_errors: Mutex::new(None),
            no_heartbeat_ack: AtomicBool::new(false),
            closed_dms: Mutex::new(Vec::new()),
        }
    }
}

impl Faults {
    /// A callback arriving later than `d` after the interaction was sent gets
    /// 404 `{"code":10062,"message":"Unknown interaction"}`. Default 3 s; `None` disables it.
    pub fn set_ack_deadline(&self, d: Option<Duration>) {
        self.ack_deadline_ms
            .store(d.map(ms).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// While on (the default), a second callback for one interaction gets
    /// 400 `{"code":40060}`; off, every callback is accepted.
    pub fn set_reject_double_ack(&self, on: bool) {
        self.reject_double_ack.store(on, Ordering::SeqCst);
    }

    /// Webhook calls (`/webhooks/{app}/{token}...`) made later than `ttl` after the interaction
    /// was sent fail with `status` (401 or 404) and code 50027 "Invalid Webhook Token".
    /// Default 15 min and 401. `Duration::ZERO` expires every token at once.
    pub fn set_token_ttl(&self, ttl: Duration, status: u16) {
        self.token_ttl_ms.store(ms(ttl), Ordering::SeqCst);
        self.expired_status
            .store(u64::from(status), Ordering::SeqCst);
    }

    /// Request bodies over `bytes` get 413 `{"code":40005,"message":"Request entity too
    /// large"}` without being handled. Default 25 MiB.
    pub fn set_max_body(&self, bytes: u64) {
        self.max_body.store(bytes, Ordering::SeqCst);
    }

    /// Uploaded files over `bytes` each get 413 `{"code":40005}`. Default 10 MiB (Discord's
    /// default `attachment_size_limit`, also sent in every interaction).
    pub fn set_max_file(&self, bytes: u64) {
        self.max_file.store(bytes, Ordering::SeqCst);
    }

    /// Every REST request waits `d` before it is handled (it "arrives" late, so it also counts
    /// against the ack deadline). `Duration::ZERO` turns it off.
    pub fn set_latency(&self, d: Duration) {
        self.latency_ms.store(ms(d), Ordering::SeqCst);
    }

    /// The next `n` REST requests get 429 with `Retry-After`, the `X-RateLimit-*` headers and
    /// `{"message","retry_after","global"}`, without being handled. `n = 0` clears it.
    /// Attachment downloads (`GET /attachments/...`) neither get nor use up these 429s.
    pub fn rate_limit_next(&self, n: u64, retry_after: f64, global: bool) {
        let mut g = self.rate_limit.lock().unwrap_or_else(|e| e.into_inner());
        *g = (n > 0).then_some(RateLimit {
            remaining: n,
            retry_after,
            global,
        });
    }

    /// The next `n` API requests of kind `which` get `status` (a 5xx) with Discord's error
    /// body, without being handled; `u64::MAX` keeps failing until cleared with `n = 0`.
    /// Attachment downloads are never failed.
    pub fn fail_next(&self, n: u64, status: u16, which: FailWhich) {
        let mut g = self.server_errors.lock().unwrap_or_else(|e| e.into_inner());
        *g = (n > 0).then_some(ServerErrors {
            remaining: n,
            status,
            which,
        });
    }

    /// While on, gateway heartbeats (op 1) get no op 11 ACK (a zombie connection).
    /// `user` closes (or opens) their DMs to the bot: posting in their DM channel gets
    /// Discord's 403 "Cannot send messages to this user" (50007).
    pub fn set_dms_closed(&self, user: u64, closed: bool) {
        let mut g = self.closed_dms.lock().unwrap_or_else(|p| p.into_inner());
        g.retain(|u| *u != user);
        if closed {
            g.push(user);
        }
    }

    pub(crate) fn dms_closed(&self, user: u64) -> bool {
        self.closed_dms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&user)
    }

    pub fn set_no_heartbeat_ack(&self, on: bool) {
        self.no_heartbeat_ack.store(on, Ordering::SeqCst);
    }

    // ---- internal accessors ----

    pub(crate) fn ack_deadline(&self) -> Option<Duration> {
        match self.ack_deadline_ms.load(Ordering::SeqCst) {
            u64::MAX => None,
            v => Some(Duration::from_millis(v)),
        }
    }

    pub(crate) fn reject_double_ack(&self) -> bool {
        self.reject_double_ack.load(Ordering::SeqCst)
    }

    pub(crate) fn token_ttl(&self) -> (Duration, u16) {
        let status = self.expired_status.load(Ordering::SeqCst);
        (
            Duration::from_millis(self.token_ttl_ms.load(Ordering::SeqCst)),
            u16::try_from(status).unwrap_or(401),
        )
    }

    pub(crate) fn max_body(&self) -> u64 {
        self.max_body.load(Ordering::SeqCst)
    }

    pub(crate) fn max_file(&self) -> u64 {
        self.max_file.load(Ordering::SeqCst)
    }

    pub(crate) fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms.load(Ordering::SeqCst))
    }

    /// Takes one scripted 429, if any is left.
    pub(crate) fn take_rate_limit(&self) -> Option<RateLimit> {
        let mut g = self.rate_limit.lock().unwrap_or_else(|e| e.into_inner());
        let rl = (*g)?;
        *g = (rl.remaining > 1).then_some(RateLimit {
            remaining: rl.remaining - 1,
            ..rl
        });
        Some(rl)
    }

    /// Takes one scripted server error for a request (`is_upload`, `is_edit`, `is_new`), if one
    /// applies.
    pub(crate) fn take_server_error(
        &self,
        is_upload: bool,
        is_edit: bool,
        is_new: bool,
    ) -> Option<u16> {
        let mut g = self.server_errors.lock().unwrap_or_else(|e| e.into_inner());
        let e = (*g)?;
        let applies = match e.which {
            FailWhich::All => true,
            FailWhich::Uploads => is_upload,
            FailWhich::Edits => is_edit,
            FailWhich::NewMessages => is_new,
        };
        if !applies {
            return None;
        }
        *g = (e.remaining > 1).then_some(ServerErrors {
            remaining: e.remaining.saturating_sub(1),
            ..e
        });
        if e.remaining == u64::MAX {
            *g = Some(e);
        }
        Some(e.status)
    }

    pub(crate) fn no_heartbeat_ack(&self) -> bool {
        self.no_heartbeat_ack.load(Ordering::SeqCst)
    }
}
