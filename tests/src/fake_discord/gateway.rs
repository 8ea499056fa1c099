//! The gateway: a loopback listener speaking JSON text frames. On accept it sends op 10 Hello;
//! op 2 Identify (token checked) gets READY and GUILD_CREATE; op 1 gets op 11 (unless
//! [`Faults::set_no_heartbeat_ack`](super::Faults::set_no_heartbeat_ack)); op 6 Resume of a
//! known session gets RESUMED, of an unknown one op 9 `false`. Several connections may be
//! open; the newest identified one receives injected events.

use super::{fixtures, ConnHandle, GatewayFrame, Outgoing, Shared};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

pub(crate) async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let stream = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            acc = listener.accept() => match acc {
                Ok((s, _)) => {
                    // Discord's gateway does not hold small frames back (Nagle + delayed ACK
                    // would add ~40 ms to an interaction sent right after another).
                    let _ = s.set_nodelay(true);
                    s
                }
                Err(_) => continue,
            },
        };
        let s = shared.clone();
        shared.tracker.spawn(run_conn(s, stream));
    }
}

fn log_frame(shared: &Shared, conn: usize, from_fake: bool, v: &Value) {
    let frame = GatewayFrame {
        conn,
        from_fake,
        op: v.get("op").and_then(Value::as_u64).unwrap_or(u64::MAX),
        t: v.get("t").and_then(Value::as_str).map(str::to_string),
        s: v.get("s").and_then(Value::as_u64),
        d: v.get("d").cloned().unwrap_or(Value::Null),
    };
    shared.lock().frames.push(frame);
    shared.bump();
}

async fn run_conn(shared: Arc<Shared>, stream: TcpStream) {
    let cancel = shared.cancel.clone();
    let ws = tokio::select! {
        _ = cancel.cancelled() => return,
        ws = tokio_tungstenite::accept_async(stream) => match ws {
            Ok(ws) => ws,
            Err(_) => return,
        },
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let conn = {
        let mut g = shared.lock();
        let c = g.next_conn;
        g.next_conn += 1;
        g.conns.insert(
            c,
            ConnHandle {
                tx: tx.clone(),
                session_id: None,
            },
        );
        c
    };
    let hello = json!({
        "op": 10,
        "d": {"heartbeat_interval": shared.opts.heartbeat_interval.as_millis() as u64},
    });
    let _ = tx.send(Outgoing::Text(hello.to_string()));

    let (mut sink, mut incoming) = ws.split();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            out = rx.recv() => match out {
                Some(Outgoing::Text(text)) => {
                    if let Ok(v) = serde_json::from_str::<Value>(&text) {
                        log_frame(&shared, conn, true, &v);
                    }
                    if sink.send(Message::Text(text)).await.is_err() {
                        break;
                    }
                }
                Some(Outgoing::Close(code, reason)) => {
                    let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    break;
                }
                None => break,
            },
            inc = incoming.next() => match inc {
                Some(Ok(Message::Text(text))) => handle_client(&shared, conn, &text, &tx),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    shared.lock().conns.shift_remove(&conn);
    shared.bump();
}

fn token_ok(shared: &Shared, d: &Value) -> bool {
    let t = d.get("token").and_then(Value::as_str).unwrap_or("");
    t.strip_prefix("Bot ").unwrap_or(t) == shared.opts.token
}

fn handle_client(shared: &Shared, conn: usize, text: &str, tx: &mpsc::UnboundedSender<Outgoing>) {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        let _ = tx.send(Outgoing::Close(
            4002,
            "Error while decoding payload.".into(),
        ));
        return;
    };
    log_frame(shared, conn, false, &v);
    let d = v.get("d").cloned().unwrap_or(Value::Null);
    match v.get("op").and_then(Value::as_u64) {
        Some(1) if !shared.faults.no_heartbeat_ack() => {
            let _ = tx.send(Outgoing::Text(json!({"op": 11}).to_string()));
        }
        Some(2) => {
            if !token_ok(shared, &d) {
                let _ = tx.send(Outgoing::Close(4004, "Authentication failed.".into()));
                return;
            }
            let mut g = shared.lock();
            let identified = g
                .conns
                .get(&conn)
                .map(|c| c.session_id.is_some())
                .unwrap_or(true);
            if identified {
                let _ = tx.send(Outgoing::Close(4005, "Already authenticated.".into()));
                return;
            }
            let sid = uuid::Uuid::new_v4().simple().to_string();
            g.sessions.insert(sid.clone(), 0);
            if let Some(c) = g.conns.get_mut(&conn) {
                c.session_id = Some(sid.clone());
            }
            let _ = g.dispatch_on(conn, "READY", fixtures::ready(&sid, &shared.gateway_url));
            let _ = g.dispatch_on(conn, "GUILD_CREATE", fixtures::guild_create());
        }
        Some(6) => {
            if !token_ok(shared, &d) {
                let _ = tx.send(Outgoing::Close(4004, "Authentication failed.".into()));
                return;
            }
            let sid = d.get("session_id").and_then(Value::as_str).unwrap_or("");
            let mut g = shared.lock();
            if g.sessions.contains_key(sid) {
                if let Some(c) = g.conns.get_mut(&conn) {
                    c.session_id = Some(sid.to_string());
                }
                let _ = g.dispatch_on(conn, "RESUMED", json!({}));
            } else {
                let _ = tx.send(Outgoing::Text(json!({"op": 9, "d": false}).to_string()));
            }
        }
        _ => {}
    }
}
