//! A fake Discord (REST API v10 + gateway) on loopback, for end-to-end tests of the bot.
//!
//! REST answers under `http://127.0.0.1:PORT/api/v10/...`; the same listener plays Discord's
//! CDN at `http://127.0.0.1:PORT/attachments/{id}/{filename}`, where every attachment URL the
//! fake hands out points (interaction attachments and files the bot uploaded). The gateway is a
//! second loopback listener speaking JSON text frames (`ws://127.0.0.1:PORT2`). Point serenity 0.12.5 at it
//! with `HttpBuilder::new(token).proxy(fake.rest_url()).ratelimiter_disabled(true)` and
//! `ClientBuilder::new_with_http(http, intents)` (see `shared/notes/discord-platform.md` §2), or,
//! to keep serenity's rate limiter on, resolve `discord.com` to [`FakeDiscord::tls_address`]
//! and trust [`tls::ca_file`] (a third listener serves the same API over TLS).
//!
//! ```ignore
//! let discord = FakeDiscord::start().await;
//! // ... start the bot against discord.rest_url() with discord.token() ...
//! discord.wait_for_session(Duration::from_secs(10)).await.expect("bot identified");
//! let sent = discord.send_interaction(InteractionSpec::command("imagine").option("prompt", "a cat"))?;
//! let ack = discord.wait_for_request(|r| r.is_callback_for(sent.id), Duration::from_secs(5)).await;
//! discord.shutdown().await;
//! ```
//!
//! What it models: one bot, one guild ([`GUILD_ID`]) with a general and an NSFW channel and two
//! roles, two human users, interactions injected by the test, the interaction
//! callback/webhook life cycle (ack deadline, double ack, token expiry, "first follow-up after
//! a defer edits the loading message"), channel messages, command registration, and the
//! switches in [`Faults`]. Every REST request and every gateway frame is recorded.
//!
//! Not modelled: per-route rate-limit buckets (429s are scripted only), zlib compression on the
//! gateway (the fake always sends text), `?with_response=true` on callbacks, guild lookups other
//! than roles/channels/members, threads, reactions, permissions checks.

mod faults;
pub mod fixtures;
mod gateway;
mod rest;
pub mod tls;
mod waits;

pub use faults::{FailWhich, Faults};
pub use fixtures::{
    dm_channel_id, InteractionSpec, MessageOrigin, SpecAttachment, SpecKind, StoredFile,
    StoredMessage, APPLICATION_ID, ARTIST_ROLE_ID, BOT_USER_ID, EVERYONE_ROLE_ID,
    GENERAL_CHANNEL_ID, GUILD_ID, NSFW_CHANNEL_ID, OTHER_USER_ID, USER_ID,
};

use indexmap::IndexMap;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How the fake behaves.
#[derive(Clone, Debug)]
pub struct FakeOptions {
    /// The bot token; REST calls must carry `Authorization: Bot <token>` and IDENTIFY must
    /// carry it (with or without the `Bot ` prefix).
    pub token: String,
    /// Sent in op 10 Hello. Discord uses about 41 s; tests use less.
    pub heartbeat_interval: Duration,
    /// Sent as `attachment_size_limit` in every interaction.
    pub attachment_size_limit: u64,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            token: "fake-bot-token".into(),
            heartbeat_interval: Duration::from_millis(41_250),
            attachment_size_limit: fixtures::DEFAULT_ATTACHMENT_SIZE_LIMIT,
        }
    }
}

/// One uploaded file (a multipart part other than `payload_json`).
#[derive(Clone, Debug)]
pub struct RecordedFile {
    /// The part name, e.g. `files[0]`.
    pub field: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: bytes::Bytes,
}

/// Bytes the fake serves at `GET /attachments/{id}/{filename}`.
#[derive(Clone, Debug)]
pub(crate) struct Blob {
    pub filename: String,
    pub content_type: Option<String>,
    /// `None`: `size` zero bytes (an attachment made with [`InteractionSpec::attachment`]).
    pub data: Option<bytes::Bytes>,
    pub size: usize,
}

/// A parsed request body, handed from the recording middleware to the handlers.
#[derive(Clone, Debug, Default)]
pub(crate) struct Parsed {
    pub json: Option<Value>,
    pub files: Vec<RecordedFile>,
}

/// One REST request as the fake received it, with the answer's status.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// The path without the query, e.g. `/api/v10/users/@me`.
    pub path: String,
    pub query: Option<String>,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub user_agent: Option<String>,
    pub body_len: usize,
    /// The JSON body, or a multipart body's `payload_json` part.
    pub json: Option<Value>,
    /// Multipart file parts.
    pub files: Vec<RecordedFile>,
    /// The status the fake answered.
    pub status: u16,
    /// The Discord error `code` of an error answer.
    pub error_code: Option<u64>,
    /// When the request arrived.
    pub at: Instant,
}

impl RecordedRequest {
    /// The path with `/api/v10` removed.
    pub fn route(&self) -> &str {
        self.path.strip_prefix("/api/v10").unwrap_or(&self.path)
    }

    /// `true` for `POST /interactions/{id}/.../callback`.
    pub fn is_callback_for(&self, interaction_id: u64) -> bool {
        self.method == "POST"
            && self
                .route()
                .starts_with(&format!("/interactions/{}/", interaction_id))
            && self.route().ends_with("/callback")
    }

    /// The callback type of an interaction callback (`json.type`).
    pub fn callback_type(&self) -> Option<u64> {
        self.json.as_ref()?.get("type")?.as_u64()
    }
}

/// One gateway frame, in either direction.
#[derive(Clone, Debug)]
pub struct GatewayFrame {
    /// Connection number, from 0 in accept order.
    pub conn: usize,
    /// `true`: the fake sent it; `false`: the client did.
    pub from_fake: bool,
    pub op: u64,
    pub t: Option<String>,
    pub s: Option<u64>,
    pub d: Value,
}

/// What the fake knows about one injected interaction.
#[derive(Clone, Debug)]
pub struct InteractionRecord {
    pub id: u64,
    pub token: String,
    pub spec: InteractionSpec,
    pub sent_at: Instant,
    /// Callback types accepted, in order (a rejected second ack is not listed).
    pub acks: Vec<u64>,
    /// The initial response message (callback 4 or 5).
    pub original: Option<u64>,
    /// The message a component interaction sits on.
    pub component_message: Option<u64>,
}

/// An injected interaction, as returned by [`FakeDiscord::send_interaction`].
#[derive(Clone, Debug)]
pub struct SentInteraction {
    pub id: u64,
    pub token: String,
    /// The INTERACTION_CREATE `d` that was sent.
    pub payload: Value,
}

/// A token shaped like Discord's: base64 of `interaction:<id>:<secret>`.
fn interaction_token(id: u64) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        "interaction:{id}:{}",
        uuid::Uuid::new_v4().simple()
    ))
}

pub(crate) enum Outgoing {
    Text(String),
    Close(u16, String),
}

pub(crate) struct ConnHandle {
    pub tx: mpsc::UnboundedSender<Outgoing>,
    pub session_id: Option<String>,
}

#[derive(Default)]
pub(crate) struct Inner {
    pub requests: Vec<RecordedRequest>,
    pub frames: Vec<GatewayFrame>,
    pub messages: IndexMap<u64, StoredMessage>,
    pub interactions: IndexMap<u64, InteractionRecord>,
    pub conns: IndexMap<usize, ConnHandle>,
    /// session id → last sequence number sent.
    pub sessions: HashMap<String, u64>,
    pub next_conn: usize,
    next_id: u64,
    pub global_commands: Vec<Value>,
    pub guild_commands: HashMap<u64, Vec<Value>>,
    /// Attachment id → what `GET /attachments/{id}/{filename}` serves.
    pub blobs: HashMap<u64, Blob>,
}

impl Inner {
    /// A fresh snowflake-sized id.
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        1_300_000_000_000_000_000 + self.next_id
    }

    /// Queues a dispatch on connection `conn` with the session's next sequence number.
    pub fn dispatch_on(&mut self, conn: usize, t: &str, d: Value) -> Result<(), String> {
        let handle = self
            .conns
            .get(&conn)
            .ok_or_else(|| format!("gateway connection {conn} is closed"))?;
        let session = handle
            .session_id
            .clone()
            .ok_or_else(|| format!("gateway connection {conn} has not identified"))?;
        let seq = self.sessions.entry(session).or_insert(0);
        *seq += 1;
        let s = *seq;
        // Logged in `frames` by the connection task when written.
        let frame = json!({"op": 0, "s": s, "t": t, "d": d});
        handle
            .tx
            .send(Outgoing::Text(frame.to_string()))
            .map_err(|_| format!("gateway connection {conn} is closed"))
    }

    /// The newest open connection that has identified or resumed.
    pub fn live_conn(&self) -> Option<usize> {
        self.conns
            .iter()
            .rev()
            .find(|(_, c)| c.session_id.is_some())
            .map(|(k, _)| *k)
    }
}

pub(crate) struct Shared {
    pub opts: FakeOptions,
    pub faults: Faults,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
    inner: Mutex<Inner>,
    /// Bumped on every recorded request or frame; waiters watch it.
    pub version: watch::Sender<u64>,
    pub gateway_url: String,
    /// `http://127.0.0.1:PORT`, the base of attachment URLs.
    pub rest_url: String,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }
}

/// A running fake Discord on loopback.
pub struct FakeDiscord {
    shared: Arc<Shared>,
    rest_addr: SocketAddr,
    gateway_addr: SocketAddr,
    tls_addr: SocketAddr,
}

impl std::fmt::Debug for FakeDiscord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeDiscord")
            .field("rest_addr", &self.rest_addr)
            .field("gateway_addr", &self.gateway_addr)
            .finish_non_exhaustive()
    }
}

impl FakeDiscord {
    pub async fn start() -> FakeDiscord {
        Self::start_with(FakeOptions::default()).await
    }

    /// Binds two fresh loopback ports (REST and gateway) and starts serving.
    pub async fn start_with(opts: FakeOptions) -> FakeDiscord {
        let bind = || tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0));
        let rest = bind().await.expect("fake Discord: bind REST 127.0.0.1:0");
        let gw = bind()
            .await
            .expect("fake Discord: bind gateway 127.0.0.1:0");
        let tls = bind()
            .await
            .expect("fake Discord: bind TLS REST 127.0.0.1:0");
        let tls_addr = tls.local_addr().expect("fake Discord: TLS address");
        let rest_addr = rest.local_addr().expect("fake Discord: REST address");
        let gateway_addr = gw.local_addr().expect("fake Discord: gateway address");
        let shared = Arc::new(Shared {
            opts,
            faults: Faults::default(),
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
            inner: Mutex::new(Inner::default()),
            version: watch::channel(0).0,
            gateway_url: format!("ws://{}", gateway_addr),
            rest_url: format!("http://{}", rest_addr),
        });
        let app = rest::router(shared.clone());
        // The same API as `discord.com` over TLS, for serenity with its rate limiter on.
        shared.tracker.spawn(tls::serve(
            tls,
            app.clone(),
            shared.cancel.clone(),
            shared.tracker.clone(),
        ));
        let cancel = shared.cancel.clone();
        shared.tracker.spawn(async move {
            let _ = axum::serve(rest, app)
                .with_graceful_shutdown(cancel.cancelled_owned())
                .await;
        });
        shared
            .tracker
            .spawn(gateway::accept_loop(shared.clone(), gw));
        FakeDiscord {
            shared,
            rest_addr,
            gateway_addr,
            tls_addr,
        }
    }

    /// `http://127.0.0.1:PORT`: give it to `HttpBuilder::proxy`.
    pub fn rest_url(&self) -> String {
        self.shared.rest_url.clone()
    }

    /// Where the same REST API answers over TLS as `discord.com` (trust [`tls::ca_file`]).
    pub fn tls_address(&self) -> SocketAddr {
        self.tls_addr
    }

    /// `http://127.0.0.1:PORT/api/v10`, for raw clients.
    pub fn api_url(&self) -> String {
        format!("http://{}/api/v10", self.rest_addr)
    }

    /// `ws://127.0.0.1:PORT2`, the gateway (also returned by `GET /gateway`).
    pub fn gateway_url(&self) -> String {
        self.shared.gateway_url.clone()
    }

    /// The bot token the fake accepts.
    pub fn token(&self) -> &str {
        &self.shared.opts.token
    }

    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Every REST request so far (attachment downloads included), in arrival order of their
    /// answers.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// REST requests that got 404 because no route matched.
    pub fn unknown_route_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.status == 404 && r.error_code == Some(0))
            .collect()
    }

    /// Every gateway frame so far, both directions.
    pub fn gateway_frames(&self) -> Vec<GatewayFrame> {
        self.shared.lock().frames.clone()
    }

    /// Messages the fake stores (channel messages, interaction responses and follow-ups,
    /// deleted ones included with `deleted: true`), in creation order.
    pub fn messages(&self) -> Vec<StoredMessage> {
        self.shared.lock().messages.values().cloned().collect()
    }

    pub fn message(&self, id: u64) -> Option<StoredMessage> {
        self.shared.lock().messages.get(&id).cloned()
    }

    pub fn interaction(&self, id: u64) -> Option<InteractionRecord> {
        self.shared.lock().interactions.get(&id).cloned()
    }

    /// Commands registered with `PUT`, globally (`None`) or in a guild, as echoed back.
    pub fn commands(&self, guild: Option<u64>) -> Vec<Value> {
        let g = self.shared.lock();
        match guild {
            None => g.global_commands.clone(),
            Some(id) => g.guild_commands.get(&id).cloned().unwrap_or_default(),
        }
    }

    /// Gateway connections currently open.
    pub fn gateway_connections(&self) -> usize {
        self.shared.lock().conns.len()
    }

    /// The first request (already recorded or still to come) matching `pred`, or `None` after
    /// `timeout`.
    pub async fn wait_for_request(
        &self,
        pred: impl Fn(&RecordedRequest) -> bool,
        timeout: Duration,
    ) -> Option<RecordedRequest> {
        self.wait_until(timeout, |inner| {
            inner.requests.iter().find(|r| pred(r)).cloned()
        })
        .await
    }

    /// The first gateway frame (already recorded or still to come) matching `pred`.
    pub async fn wait_for_frame(
        &self,
        pred: impl Fn(&GatewayFrame) -> bool,
        timeout: Duration,
    ) -> Option<GatewayFrame> {
        self.wait_until(timeout, |inner| {
            inner.frames.iter().find(|f| pred(f)).cloned()
        })
        .await
    }

    /// Waits until a gateway connection has identified (or resumed); returns its session id.
    pub async fn wait_for_session(&self, timeout: Duration) -> Option<String> {
        self.wait_until(timeout, |inner| {
            let c = inner.live_conn()?;
            inner.conns.get(&c)?.session_id.clone()
        })
        .await
    }

    /// Polls `check` on every change until it returns `Some`, at most `timeout`.
    async fn wait_until<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&Inner) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.shared.version.subscribe();
        loop {
            rx.borrow_and_update();
            if let Some(v) = check(&self.shared.lock()) {
                return Some(v);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return None,
            }
        }
    }

    /// Sends INTERACTION_CREATE for `spec` on the newest identified gateway connection and
    /// registers the interaction (its id and token) for the callback and webhook routes.
    pub fn send_interaction(&self, spec: InteractionSpec) -> Result<SentInteraction, String> {
        self.send_interaction_with(spec, |_| {})
    }

    /// Like [`FakeDiscord::send_interaction`], with the INTERACTION_CREATE `d` changed by
    /// `mangle` before it is sent: a malformed interaction (no `data`, `options` not a list, an
    /// unknown type, no `member` or `user`) that the fake still answers callbacks for.
    pub fn send_interaction_with(
        &self,
        spec: InteractionSpec,
        mangle: impl FnOnce(&mut Value),
    ) -> Result<SentInteraction, String> {
        let mut g = self.shared.lock();
        let conn = g
            .live_conn()
            .ok_or("no identified gateway connection to send the interaction on")?;
        let id = g.next_id();
        let token = interaction_token(id);
        let command_id = g.next_id();
        let attachment_ids: Vec<u64> = spec.attachments.iter().map(|_| g.next_id()).collect();
        let mut component_message = None;
        let message = match &spec.kind {
            SpecKind::Component { message_id, .. } => {
                let known = message_id.filter(|m| g.messages.contains_key(m));
                let mid = match known {
                    Some(m) => m,
                    None => {
                        let mid = message_id.unwrap_or_else(|| g.next_id());
                        let mut payload = serde_json::Map::new();
                        payload.insert("content".into(), "(a message made up by the fake)".into());
                        let now = fixtures::now_timestamp();
                        g.messages.insert(
                            mid,
                            StoredMessage {
                                id: mid,
                                channel_id: spec.channel_id,
                                origin: MessageOrigin::Synthetic,
                                interaction_id: None,
                                payload,
                                files: Vec::new(),
                                timestamp: now,
                                edited_timestamp: None,
                                edits: 0,
                                deleted: false,
                                loading: false,
                            },
                        );
                        mid
                    }
                };
                component_message = Some(mid);
                g.messages
                    .get(&mid)
                    .map(|m| m.to_json(&self.shared.rest_url))
            }
            SpecKind::MessageCommand { target, .. } => g
                .messages
                .get(target)
                .map(|m| m.to_json(&self.shared.rest_url)),
            _ => None,
        };
        let mut payload = fixtures::interaction(
            &spec,
            id,
            &token,
            command_id,
            message,
            &attachment_ids,
            self.shared.opts.attachment_size_limit,
            &self.shared.rest_url,
        );
        mangle(&mut payload);
        for (a, aid) in spec.attachments.iter().zip(&attachment_ids) {
            g.blobs.insert(
                *aid,
                Blob {
                    filename: a.filename.clone(),
                    content_type: Some(a.content_type.clone()),
                    data: a.bytes.clone(),
                    size: a.size,
                },
            );
        }
        g.interactions.insert(
            id,
            InteractionRecord {
                id,
                token: token.clone(),
                spec,
                sent_at: Instant::now(),
                acks: Vec::new(),
                original: None,
                component_message,
            },
        );
        g.dispatch_on(conn, "INTERACTION_CREATE", payload.clone())?;
        drop(g);
        self.shared.bump();
        Ok(SentInteraction { id, token, payload })
    }

    /// A message `user` posts in `channel` with `files` attached (served at their attachment
    /// URLs like interaction attachments); the id, for a message command on it.
    pub fn post_member_message(
        &self,
        channel: u64,
        user: u64,
        content: &str,
        files: &[SpecAttachment],
    ) -> u64 {
        let mut g = self.shared.lock();
        let id = g.next_id();
        let mut stored = Vec::new();
        for f in files {
            let aid = g.next_id();
            g.blobs.insert(
                aid,
                Blob {
                    filename: f.filename.clone(),
                    content_type: Some(f.content_type.clone()),
                    data: f.bytes.clone(),
                    size: f.size,
                },
            );
            stored.push(StoredFile {
                id: aid,
                filename: f.filename.clone(),
                size: f.size,
                content_type: Some(f.content_type.clone()),
            });
        }
        let mut payload = serde_json::Map::new();
        payload.insert("content".into(), content.into());
        g.messages.insert(
            id,
            StoredMessage {
                id,
                channel_id: channel,
                origin: MessageOrigin::Member(user),
                interaction_id: None,
                payload,
                files: stored,
                timestamp: fixtures::now_timestamp(),
                edited_timestamp: None,
                edits: 0,
                deleted: false,
                loading: false,
            },
        );
        id
    }

    /// Sends any dispatch event (`op 0`, next sequence number) on the newest identified
    /// connection.
    pub fn dispatch(&self, t: &str, d: Value) -> Result<(), String> {
        let mut g = self.shared.lock();
        let conn = g.live_conn().ok_or("no identified gateway connection")?;
        g.dispatch_on(conn, t, d)?;
        drop(g);
        self.shared.bump();
        Ok(())
    }

    /// Sends a raw frame with opcode `op` and payload `d` on every open connection.
    fn send_op(&self, op: u64, d: Value) -> usize {
        let g = self.shared.lock();
        let text = json!({"op": op, "d": d}).to_string();
        g.conns
            .values()
            .filter(|c| c.tx.send(Outgoing::Text(text.clone())).is_ok())
            .count()
    }

    /// op 7 Reconnect on every open connection; returns how many got it.
    pub fn send_reconnect(&self) -> usize {
        self.send_op(7, Value::Null)
    }

    /// op 9 Invalid Session (`d` = `resumable`) on every open connection.
    pub fn send_invalid_session(&self, resumable: bool) -> usize {
        self.send_op(9, Value::Bool(resumable))
    }

    /// op 1: the server asks for a heartbeat now.
    pub fn request_heartbeat(&self) -> usize {
        self.send_op(1, Value::Null)
    }

    /// Closes every open connection with close `code` (e.g. 4000, 4004, 4014).
    pub fn close_gateway(&self, code: u16, reason: &str) -> usize {
        let g = self.shared.lock();
        g.conns
            .values()
            .filter(|c| c.tx.send(Outgoing::Close(code, reason.into())).is_ok())
            .count()
    }

    /// Stops both listeners and every connection task.
    pub async fn shutdown(self) {
        self.shared.cancel.cancel();
        self.shared.tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.shared.tracker.wait()).await;
    }
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}
