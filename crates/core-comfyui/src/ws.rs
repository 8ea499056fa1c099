//! The one WebSocket per backend: connect, announce preview metadata support, route every
//! message to the job it belongs to, ping to notice dead connections, reconnect with backoff,
//! and afterwards reconcile from `/queue` and `/history` every job whose end may have been missed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{backoff, Shared};
use crate::error::ComfyError;
use crate::events::{BinaryFrame, ServerMessage};
use crate::job::JobEvent;

/// First delay between reconnect attempts; doubles up to `reconnect_max_delay`.
const RECONNECT_BASE_DELAY: Duration = Duration::from_millis(250);

/// The WebSocket's state, as [`crate::ComfyClient::connection_state`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Not started yet.
    Idle,
    Connected,
    /// Between attempts; `attempts` counts failures since the last good connection.
    Disconnected {
        attempts: u32,
        last_error: String,
    },
    /// Shut down.
    Closed,
}

impl ConnectionState {
    /// Whether the WebSocket is open (so progress can arrive).
    pub fn is_up(&self) -> bool {
        matches!(self, ConnectionState::Connected)
    }
}

/// How a job's wait ended, before its outcome is read from `/history`.
#[derive(Debug)]
pub(crate) enum End {
    /// `executing {node: null}` (or history says it is over): read the outcome from history.
    Finished,
    /// Deleted from the queue before it ran.
    Cancelled,
    /// The server no longer knows the prompt, or we lost it for too long.
    Vanished(String),
}

struct Subscriber {
    events: mpsc::Sender<JobEvent>,
    end: Option<oneshot::Sender<End>>,
    /// Set once `POST /prompt` succeeded; only posted prompts are reconciled.
    posted: bool,
    dropped_events: u64,
}

#[derive(Default)]
struct RouterState {
    subscribers: HashMap<String, Subscriber>,
    /// The prompt our client has running, for frames that do not name one (legacy previews,
    /// the reconnect replay of `executing`).
    current: Option<String>,
    /// Counts connections; a change between subscribe and post means the socket dropped.
    epoch: u64,
    queue_remaining: u64,
}

/// Routes events to per-job channels by prompt id.
pub(crate) struct Router {
    state: Mutex<RouterState>,
    buffer: usize,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("buffer", &self.buffer)
            .finish_non_exhaustive()
    }
}

/// A job's side of the router.
#[derive(Debug)]
pub(crate) struct Subscription {
    pub epoch: u64,
    pub events: mpsc::Receiver<JobEvent>,
    pub end: oneshot::Receiver<End>,
}

impl Router {
    pub fn new(buffer: usize) -> Router {
        Router {
            state: Mutex::new(RouterState::default()),
            buffer: buffer.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, RouterState> {
        // A panic while holding this lock cannot leave the map inconsistent; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe(&self, prompt_id: &str) -> Subscription {
        let (tx, rx) = mpsc::channel(self.buffer);
        let (end_tx, end_rx) = oneshot::channel();
        let mut st = self.lock();
        st.subscribers.insert(
            prompt_id.to_string(),
            Subscriber {
                events: tx,
                end: Some(end_tx),
                posted: false,
                dropped_events: 0,
            },
        );
        Subscription {
            epoch: st.epoch,
            events: rx,
            end: end_rx,
        }
    }

    /// Marks the prompt as queued; true when the socket reconnected since `epoch`.
    pub fn mark_posted(&self, prompt_id: &str, epoch: u64) -> bool {
        let mut st = self.lock();
        let reconnected = st.epoch != epoch;
        if let Some(s) = st.subscribers.get_mut(prompt_id) {
            s.posted = true;
        }
        reconnected
    }

    /// Moves a subscription to the id the server chose.
    pub fn rekey(&self, from: &str, to: &str) {
        let mut st = self.lock();
        if let Some(s) = st.subscribers.remove(from) {
            st.subscribers.insert(to.to_string(), s);
        }
    }

    pub fn unsubscribe(&self, prompt_id: &str) {
        let mut st = self.lock();
        if let Some(s) = st.subscribers.remove(prompt_id) {
            if s.dropped_events > 0 {
                tracing::debug!(
                    prompt_id,
                    dropped = s.dropped_events,
                    "job read its events too slowly; some progress updates were skipped"
                );
            }
        }
        if st.current.as_deref() == Some(prompt_id) {
            st.current = None;
        }
    }

    fn deliver(st: &mut RouterState, prompt_id: &str, event: JobEvent) {
        if let Some(sub) = st.subscribers.get_mut(prompt_id) {
            // Never block the socket on one slow job: progress is latest-value, the outcome
            // comes from history, so a dropped intermediate event loses nothing that matters.
            if let Err(mpsc::error::TrySendError::Full(_)) = sub.events.try_send(event) {
                sub.dropped_events += 1;
            }
        }
    }

    pub fn finish(&self, prompt_id: &str, end: End) {
        let mut st = self.lock();
        if let Some(tx) = st.subscribers.get_mut(prompt_id).and_then(|s| s.end.take()) {
            let _ = tx.send(end);
        }
        if st.current.as_deref() == Some(prompt_id) {
            st.current = None;
        }
    }

    fn posted_prompts(&self) -> Vec<String> {
        self.lock()
            .subscribers
            .iter()
            .filter(|(_, s)| s.posted && s.end.is_some())
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn broadcast(&self, event: impl Fn() -> JobEvent) {
        let mut st = self.lock();
        let ids: Vec<String> = st.subscribers.keys().cloned().collect();
        for id in ids {
            Self::deliver(&mut st, &id, event());
        }
    }

    fn connected(&self) {
        let mut st = self.lock();
        st.epoch += 1;
        st.current = None;
    }

    fn set_current(&self, prompt_id: Option<String>) {
        self.lock().current = prompt_id;
    }

    pub fn queue_remaining(&self) -> u64 {
        self.lock().queue_remaining
    }

    /// Sends one server message to the job it concerns.
    pub fn route(&self, msg: ServerMessage) {
        let mut st = self.lock();
        let target = |st: &RouterState, id: Option<&str>| -> Option<String> {
            id.map(str::to_string).or_else(|| st.current.clone())
        };
        match msg {
            ServerMessage::Status {
                queue_remaining, ..
            } => st.queue_remaining = queue_remaining,
            ServerMessage::ExecutionStart { prompt_id } => {
                st.current = Some(prompt_id.clone());
                Self::deliver(&mut st, &prompt_id, JobEvent::Started);
            }
            ServerMessage::ExecutionCached { prompt_id, nodes } => {
                Self::deliver(&mut st, &prompt_id, JobEvent::Cached { nodes });
            }
            ServerMessage::Executing {
                prompt_id,
                node: None,
                ..
            } => {
                let Some(id) = prompt_id else { return };
                if st.current.as_deref() == Some(id.as_str()) {
                    st.current = None;
                }
                if let Some(tx) = st.subscribers.get_mut(&id).and_then(|s| s.end.take()) {
                    let _ = tx.send(End::Finished);
                }
            }
            ServerMessage::Executing {
                prompt_id,
                node: Some(node),
                display_node,
            } => {
                let Some(id) = target(&st, prompt_id.as_deref()) else {
                    return;
                };
                st.current = Some(id.clone());
                Self::deliver(&mut st, &id, JobEvent::Executing { node, display_node });
            }
            ServerMessage::Progress {
                prompt_id,
                node,
                value,
                max,
            } => {
                let Some(id) = target(&st, prompt_id.as_deref()) else {
                    return;
                };
                Self::deliver(&mut st, &id, JobEvent::Progress { node, value, max });
            }
            ServerMessage::ProgressState { prompt_id, nodes } => {
                Self::deliver(&mut st, &prompt_id, JobEvent::NodeStates(nodes));
            }
            ServerMessage::Executed {
                prompt_id,
                node,
                output,
                ..
            } => Self::deliver(&mut st, &prompt_id, JobEvent::Executed { node, output }),
            ServerMessage::ExecutionError(e) => {
                let id = e.prompt_id.clone();
                Self::deliver(
                    &mut st,
                    &id,
                    JobEvent::Failing {
                        node: e.node_id.clone(),
                        message: e.exception_message.clone(),
                    },
                );
            }
            ServerMessage::ExecutionSuccess { .. }
            | ServerMessage::ExecutionInterrupted(_)
            | ServerMessage::FeatureFlags(_) => {}
            ServerMessage::Unknown { kind, .. } => {
                tracing::trace!(kind, "ignoring unknown ComfyUI message type");
            }
        }
    }

    /// Sends one binary frame to the job it concerns.
    pub fn route_binary(&self, frame: BinaryFrame) {
        let mut st = self.lock();
        match frame {
            BinaryFrame::Preview { format, image } => {
                if let Some(id) = st.current.clone() {
                    Self::deliver(
                        &mut st,
                        &id,
                        JobEvent::Preview {
                            node: None,
                            format,
                            image,
                        },
                    );
                }
            }
            BinaryFrame::PreviewWithMetadata {
                meta,
                format,
                image,
            } => {
                let id = meta.prompt_id.clone().or_else(|| st.current.clone());
                if let Some(id) = id {
                    let node = meta.display_node_id.or(meta.node_id);
                    Self::deliver(
                        &mut st,
                        &id,
                        JobEvent::Preview {
                            node,
                            format,
                            image,
                        },
                    );
                }
            }
            BinaryFrame::Text { node_id, text } => {
                if let Some(id) = st.current.clone() {
                    Self::deliver(
                        &mut st,
                        &id,
                        JobEvent::Text {
                            node: node_id,
                            text,
                        },
                    );
                }
            }
            BinaryFrame::Unknown { event_type, .. } => {
                tracing::trace!(event_type, "ignoring unknown binary frame");
            }
        }
    }
}

fn ws_url(shared: &Shared) -> url::Url {
    let mut url = shared.http.url("ws");
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    // http→ws and https→wss are always allowed by the url crate.
    let _ = url.set_scheme(scheme);
    url.query_pairs_mut()
        .append_pair("clientId", &shared.client_id);
    url
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(shared: &Shared) -> Result<Socket, String> {
    let cfg = &shared.http.config;
    let ws_config = WebSocketConfig {
        max_message_size: Some(cfg.max_ws_message_bytes),
        max_frame_size: Some(cfg.max_ws_message_bytes),
        ..WebSocketConfig::default()
    };
    let url = ws_url(shared);
    let connect =
        tokio_tungstenite::connect_async_with_config(url.as_str(), Some(ws_config), false);
    let (mut socket, _) = tokio::time::timeout(cfg.connect_timeout, connect)
        .await
        .map_err(|_| format!("no WebSocket handshake within {:?}", cfg.connect_timeout))?
        .map_err(|e| e.to_string())?;
    // Ask for previews that name their prompt (binary type 4); older servers ignore it.
    let flags = r#"{"type":"feature_flags","data":{"supports_preview_metadata":true}}"#;
    socket
        .send(Message::Text(flags.into()))
        .await
        .map_err(|e| e.to_string())?;
    Ok(socket)
}

/// The connection task: runs until the client is dropped or shut down.
pub(crate) async fn run(shared: Arc<Shared>) {
    let cfg = shared.http.config.clone();
    let mut failures: u32 = 0;
    let mut down_since: Option<Instant> = None;
    let mut gave_up = false;
    let mut ever_connected = false;
    loop {
        let attempt = tokio::select! {
            _ = shared.cancel.cancelled() => break,
            r = open(&shared) => r,
        };
        match attempt {
            Ok(socket) => {
                failures = 0;
                gave_up = false;
                shared.router.connected();
                shared.state.send_replace(ConnectionState::Connected);
                tracing::info!(url = %cfg.base_url, "ComfyUI WebSocket connected");
                if ever_connected {
                    shared.router.broadcast(|| JobEvent::Reconnected);
                    shared.tracker.spawn(reconcile(shared.clone(), None));
                }
                ever_connected = true;
                let reason = read_loop(&shared, socket).await;
                if shared.cancel.is_cancelled() {
                    break;
                }
                tracing::warn!(url = %cfg.base_url, %reason, "ComfyUI WebSocket lost; reconnecting");
                shared.router.broadcast(|| JobEvent::Disconnected);
                shared.state.send_replace(ConnectionState::Disconnected {
                    attempts: 0,
                    last_error: reason,
                });
                down_since = Some(Instant::now());
            }
            Err(e) => {
                failures += 1;
                let since = *down_since.get_or_insert_with(Instant::now);
                tracing::debug!(url = %cfg.base_url, attempt = failures, error = %e, "ComfyUI WebSocket connect failed");
                shared.state.send_replace(ConnectionState::Disconnected {
                    attempts: failures,
                    last_error: e,
                });
                if !gave_up && since.elapsed() >= cfg.give_up_after {
                    gave_up = true;
                    let why = format!(
                        "lost the connection to ComfyUI at {} for {} s",
                        cfg.base_url,
                        since.elapsed().as_secs()
                    );
                    for id in shared.router.posted_prompts() {
                        shared.router.finish(&id, End::Vanished(why.clone()));
                    }
                }
                let delay = backoff(RECONNECT_BASE_DELAY, failures, cfg.reconnect_max_delay);
                tokio::select! {
                    _ = shared.cancel.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    shared.state.send_replace(ConnectionState::Closed);
    for id in shared.router.posted_prompts() {
        shared.router.finish(
            &id,
            End::Vanished("the ComfyUI client was shut down".into()),
        );
    }
}

/// Reads until the socket fails; returns why.
async fn read_loop(shared: &Shared, mut socket: Socket) -> String {
    let ping_every = shared.http.config.ping_interval;
    let mut ticker = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    let mut last_seen = Instant::now();
    loop {
        let frame = tokio::select! {
            _ = shared.cancel.cancelled() => {
                let _ = socket.close(None).await;
                return "shut down".into();
            }
            _ = ticker.tick() => {
                // Two intervals with no frame at all (not even a pong): the peer is gone.
                if last_seen.elapsed() > ping_every * 2 {
                    return format!("no answer to pings for {:?}", last_seen.elapsed());
                }
                if let Err(e) = socket.send(Message::Ping(Vec::new())).await {
                    return e.to_string();
                }
                continue;
            }
            f = socket.next() => f,
        };
        last_seen = Instant::now();
        match frame {
            None => return "the server closed the connection".into(),
            Some(Err(e)) => return e.to_string(),
            Some(Ok(Message::Text(text))) => match ServerMessage::decode(&text) {
                Ok(msg) => shared.router.route(msg),
                Err(e) => tracing::warn!(error = %e, "skipping undecodable ComfyUI message"),
            },
            Some(Ok(Message::Binary(data))) => match BinaryFrame::decode(Bytes::from(data)) {
                Ok(frame) => shared.router.route_binary(frame),
                Err(e) => tracing::warn!(error = %e, "skipping undecodable ComfyUI binary frame"),
            },
            Some(Ok(Message::Close(_))) => return "the server closed the connection".into(),
            Some(Ok(_)) => {} // ping/pong: tungstenite answers pings itself
        }
    }
}

/// Settles jobs whose end may have been missed: still queued → keep waiting (and learn which
/// one is running); in history → finished; in neither → vanished. `only` limits it to one prompt.
pub(crate) async fn reconcile(shared: Arc<Shared>, only: Option<String>) {
    let queue = match shared.http.queue().await {
        Ok(q) => q,
        Err(e) => {
            tracing::warn!(error = %e, "could not reconcile jobs after reconnect");
            return;
        }
    };
    if let Some(running) = queue
        .running
        .iter()
        .find(|i| i.client_id.as_deref() == Some(shared.client_id.as_str()))
    {
        shared.router.set_current(Some(running.prompt_id.clone()));
    }
    let prompts = match only {
        Some(id) => vec![id],
        None => shared.router.posted_prompts(),
    };
    for id in prompts {
        if queue.contains(&id) {
            continue;
        }
        match shared.http.history(&id).await {
            Ok(Some(_)) => shared.router.finish(&id, End::Finished),
            Ok(None) => shared.router.finish(
                &id,
                End::Vanished(format!(
                    "ComfyUI at {} no longer knows this prompt (it may have restarted)",
                    shared.http.config.base_url
                )),
            ),
            Err(e) => tracing::warn!(prompt_id = %id, error = %e, "could not reconcile job"),
        }
    }
}

/// See [`crate::ComfyClient::cancel`].
pub(crate) async fn cancel(shared: &Arc<Shared>, prompt_id: &str) -> Result<(), ComfyError> {
    let http = &shared.http;
    let interrupt = serde_json::json!({ "prompt_id": prompt_id });
    // Delete first, then interrupt: whichever state the prompt is in, one of them applies.
    http.post_action("queue", serde_json::json!({ "delete": [prompt_id] }), true)
        .await?;
    http.post_action("interrupt", interrupt.clone(), true)
        .await?;
    let queue = http.queue().await?;
    if queue.is_running(prompt_id) {
        // It may have left pending for running between the two calls, after the interrupt
        // was checked; a second interrupt is harmless. Its end arrives over the socket.
        http.post_action("interrupt", interrupt, true).await?;
    } else if queue.position(prompt_id).is_none() && http.history(prompt_id).await?.is_none() {
        // Deleted while pending: ComfyUI sends nothing for it, so end the job here.
        shared.router.finish(prompt_id, End::Cancelled);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::PreviewFormat;

    fn msg(text: &str) -> ServerMessage {
        ServerMessage::decode(text).unwrap()
    }

    #[tokio::test]
    async fn routes_by_prompt_and_falls_back_to_the_running_one() {
        let router = Router::new(16);
        let mut a = router.subscribe("A");
        let mut b = router.subscribe("B");
        router.route(msg(
            r#"{"type":"execution_start","data":{"prompt_id":"A","timestamp":1}}"#,
        ));
        // Legacy previews and the reconnect replay name no prompt: they belong to the running one.
        router.route_binary(BinaryFrame::Preview {
            format: PreviewFormat::Jpeg,
            image: Bytes::from_static(b"\xff\xd8"),
        });
        router.route(msg(r#"{"type":"executing","data":{"node":"2"}}"#));
        router.route(msg(
            r#"{"type":"progress","data":{"value":1,"max":4,"prompt_id":"B","node":"3"}}"#,
        ));
        router.route(msg(
            r#"{"type":"executing","data":{"node":null,"prompt_id":"A"}}"#,
        ));
        assert_eq!(a.events.try_recv().unwrap(), JobEvent::Started);
        assert!(matches!(
            a.events.try_recv().unwrap(),
            JobEvent::Preview { node: None, .. }
        ));
        assert!(
            matches!(a.events.try_recv().unwrap(), JobEvent::Executing { node, display_node: None } if node == "2")
        );
        assert!(a.events.try_recv().is_err());
        assert!(matches!(a.end.try_recv(), Ok(End::Finished)));
        assert!(
            matches!(b.events.try_recv().unwrap(), JobEvent::Progress { value, .. } if value == 1.0)
        );
        assert!(b.end.try_recv().is_err());
        // After A ended, a frame without a prompt id goes nowhere rather than to the wrong job.
        router.route_binary(BinaryFrame::Preview {
            format: PreviewFormat::Jpeg,
            image: Bytes::new(),
        });
        assert!(b.events.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_slow_job_loses_progress_not_its_end() {
        let router = Router::new(2);
        let mut sub = router.subscribe("P");
        for i in 0..10 {
            router.route(msg(&format!(
                r#"{{"type":"progress","data":{{"value":{i},"max":10,"prompt_id":"P","node":"3"}}}}"#
            )));
        }
        router.route(msg(
            r#"{"type":"executing","data":{"node":null,"prompt_id":"P"}}"#,
        ));
        let mut got = 0;
        while sub.events.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(got, 2);
        assert!(matches!(sub.end.try_recv(), Ok(End::Finished)));
    }

    #[tokio::test]
    async fn reconnect_between_subscribe_and_post_is_noticed() {
        let router = Router::new(4);
        let sub = router.subscribe("P");
        assert!(!router.mark_posted("P", sub.epoch));
        let sub2 = router.subscribe("Q");
        router.connected();
        assert!(router.mark_posted("Q", sub2.epoch));
        assert_eq!(router.posted_prompts().len(), 2);
    }
}
