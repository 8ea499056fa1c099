//! What the client's handles, its jobs and its WebSocket task share.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::ComfyError;
use crate::http::Http;
use crate::router::{End, Router};

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

/// The part of the client that background tasks hold; it does not keep the client alive.
#[derive(Debug)]
pub(crate) struct Shared {
    pub http: Http,
    pub router: Router,
    pub state: watch::Sender<ConnectionState>,
    pub client_id: String,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
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
