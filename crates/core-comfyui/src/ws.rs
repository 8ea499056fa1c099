//! The one WebSocket per backend: connect, announce preview metadata support, route every
//! message to the job it belongs to, ping to notice dead connections, reconnect with backoff,
//! and afterwards reconcile from `/queue` and `/history` every job whose end may have been missed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::events::{BinaryFrame, ServerMessage};
use crate::http::backoff;
use crate::job::JobEvent;
use crate::router::End;
use crate::shared::{ConnectionState, Shared};

/// First delay between reconnect attempts; doubles up to `reconnect_max_delay`.
const RECONNECT_BASE_DELAY: Duration = Duration::from_millis(250);

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
    // Which prompts to judge is fixed before asking: one posted while /queue answers is missing
    // from that answer although it is alive.
    let prompts = match only {
        Some(id) => vec![id],
        None => shared.router.posted_prompts(),
    };
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
