//! `/ws?clientId=…` (and `/api/ws`): the upgrade is done by hand on the HTTP port (axum's `ws`
//! feature is not used), then one task per connection forwards queued frames and reads client
//! frames. Registration, the first `status` frame, feature flags and the quirky
//! "pop whatever is registered under my id when I close" cleanup follow ComfyUI's handler.

use super::pyjson::{self, obj};
use super::routes::text_response;
use super::state::{message_text, Conn, Outgoing, Shared, Target, SOCKET_QUEUE};
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

/// aiohttp's default `max_msg_size` for incoming frames.
const MAX_INCOMING: usize = 4 * 1024 * 1024;

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// aiohttp's handshake checks, with its 400 texts.
fn check_handshake(h: &HeaderMap) -> Result<String, String> {
    let upgrade = header_str(h, header::UPGRADE);
    if upgrade.map(|u| u.trim().to_ascii_lowercase()) != Some("websocket".into()) {
        return Err(format!(
            "No WebSocket UPGRADE hdr: {}\n Can \"Upgrade\" only to \"WebSocket\".",
            upgrade.unwrap_or("None")
        ));
    }
    let connection = header_str(h, header::CONNECTION);
    if !connection
        .map(|c| c.to_ascii_lowercase().contains("upgrade"))
        .unwrap_or(false)
    {
        return Err(format!(
            "No CONNECTION upgrade hdr: {}",
            connection.unwrap_or("None")
        ));
    }
    let version = header_str(h, header::SEC_WEBSOCKET_VERSION).unwrap_or("");
    if !["13", "8", "7"].contains(&version) {
        return Err(format!("Unsupported version: {}", version));
    }
    let key = header_str(h, header::SEC_WEBSOCKET_KEY).unwrap_or("");
    let b64 = key.len() == 24
        && key.ends_with("==")
        && key[..22]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/');
    if !b64 {
        return Err(format!("Handshake error: {}", pyjson::str_repr(key)));
    }
    Ok(key.to_string())
}

/// First value of `clientId` in the query string.
fn client_id_param(query: Option<&str>) -> String {
    super::routes::parse_query(query.unwrap_or(""))
        .into_iter()
        .find(|(k, _)| k == "clientId")
        .map(|(_, v)| v)
        .unwrap_or_default()
}

pub(crate) async fn handler(shared: Arc<Shared>, mut req: Request<Body>) -> Response {
    if shared.faults.reject_ws_on() {
        return text_response(StatusCode::SERVICE_UNAVAILABLE, "503: Service Unavailable");
    }
    let key = match check_handshake(req.headers()) {
        Ok(k) => k,
        Err(msg) => return text_response(StatusCode::BAD_REQUEST, &msg),
    };
    let requested = client_id_param(req.uri().query());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let task_shared = shared.clone();
    let cancel = shared.cancel.child_token();
    shared.tracker.spawn(async move {
        let upgraded = tokio::select! {
            _ = cancel.cancelled() => return,
            up = on_upgrade => match up { Ok(u) => u, Err(_) => return },
        };
        let config = WebSocketConfig {
            max_message_size: Some(MAX_INCOMING),
            max_frame_size: Some(MAX_INCOMING),
            ..Default::default()
        };
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        run_socket(task_shared, ws, requested, cancel).await;
    });

    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

async fn run_socket<S>(
    shared: Arc<Shared>,
    ws: WebSocketStream<S>,
    requested: String,
    cancel: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let conn_id = shared.next_conn.fetch_add(1, Ordering::SeqCst);
    let sid = if requested.is_empty() {
        uuid::Uuid::new_v4().simple().to_string()
    } else {
        requested
    };
    let (tx, mut rx) = mpsc::channel::<Outgoing>(SOCKET_QUEUE);
    let kill = cancel.child_token();
    shared.ws_total.fetch_add(1, Ordering::SeqCst);
    shared.ws_open.fetch_add(1, Ordering::SeqCst);
    {
        // Register and queue the greeting under one lock, so no broadcast slips in before it.
        let mut g = shared.lock();
        g.sockets.shift_remove(&sid);
        g.sockets.insert(sid.clone(), conn_id);
        g.sockets_meta.shift_remove(&sid);
        g.sockets_meta
            .insert(sid.clone(), Value::Object(Default::default()));
        g.conns.insert(
            conn_id,
            Conn {
                tx: tx.clone(),
                kill: kill.clone(),
            },
        );
        let mut greeting = g.status_data();
        if let Value::Object(m) = &mut greeting {
            m.insert("sid".into(), Value::String(sid.clone()));
        }
        let target = Target::Sid(sid.clone());
        g.send_text(&target, message_text("status", greeting));
        // Reconnect while this client's prompt runs: tell it the current node (no prompt_id).
        if g.client_id.as_deref() == Some(sid.as_str()) {
            if let Some(node) = g.last_node_id.clone() {
                g.send_text(
                    &target,
                    message_text("executing", obj([("node", node.into())])),
                );
            }
        }
    }
    drop(tx);

    let (mut sink, mut stream) = ws.split();
    let mut first_message = true;
    loop {
        tokio::select! {
            _ = kill.cancelled() => break,
            out = rx.recv() => match out {
                Some(Outgoing::Frame(msg)) => {
                    if sink.send(msg).await.is_err() {
                        break;
                    }
                }
                Some(Outgoing::Kill) | None => break,
            },
            inc = stream.next() => match inc {
                Some(Ok(Message::Text(text))) => {
                    handle_client_text(&shared, &sid, &text, &mut first_message);
                }
                Some(Ok(_)) => {} // binary, ping/pong (answered by tungstenite), close handshake
                Some(Err(_)) | None => break,
            },
        }
    }

    // Cleanup happens before the connection is dropped, so a client that reconnects after
    // seeing the drop always finds the registry already cleaned.
    {
        let mut g = shared.lock();
        if g.conns.remove(&conn_id).is_some() {
            // ComfyUI pops whatever is registered under this id, even a newer connection that
            // reused it; faithfully reproduced (a client must not keep two sockets per id).
            g.sockets.shift_remove(&sid);
            g.sockets_meta.shift_remove(&sid);
        }
    }
    shared.ws_open.fetch_sub(1, Ordering::SeqCst);
    drop(sink);
    drop(stream);
}

fn handle_client_text(shared: &Shared, sid: &str, text: &str, first_message: &mut bool) {
    // Only a JSON object counts as "the first message" (a decode error leaves the flag set).
    let Ok(Value::Object(msg)) = serde_json::from_str::<Value>(text) else {
        return;
    };
    if *first_message && msg.get("type").and_then(Value::as_str) == Some("feature_flags") {
        let flags = msg
            .get("data")
            .cloned()
            .unwrap_or(Value::Object(Default::default()));
        let mut g = shared.lock();
        if g.sockets_meta.contains_key(sid) {
            g.sockets_meta.insert(sid.to_string(), flags);
        }
        g.send_text(
            &Target::Sid(sid.to_string()),
            message_text("feature_flags", super::routes::server_features()),
        );
    }
    *first_message = false;
}
