//! The HTTP side of one ComfyUI server, plus [`ComfyClient::submit`], which ties a prompt to the
//! WebSocket router before posting it.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;
use url::Url;

use crate::error::{node_problems, ComfyError, NodeProblem, PromptRejection};
use crate::http::{Body, Http};
use crate::object_info::ObjectInfo;
use crate::prompt::Job;
use crate::request::{ClientConfig, PromptOptions, UploadRequest};
use crate::router::Router;
use crate::shared::{ConnectionState, Shared};
use crate::types::{FileRef, HistoryEntry, PromptAccepted, QueueSnapshot, SystemStats};
use crate::workflow::Workflow;
use crate::ws;

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    started: std::sync::Once,
    /// Dropping the last client handle stops the WebSocket task.
    _stop_on_drop: DropGuard,
}

/// A client for one ComfyUI server. Cheap to clone; all clones share one WebSocket.
#[derive(Debug, Clone)]
pub struct ComfyClient {
    inner: Arc<Inner>,
}

impl ComfyClient {
    /// Builds the client without any IO. The WebSocket starts on [`ComfyClient::start`],
    /// [`ComfyClient::connect`] or the first [`ComfyClient::submit`].
    pub fn new(config: ClientConfig) -> Result<ComfyClient, ComfyError> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| ComfyError::Http {
                endpoint: "client setup".into(),
                source: e,
            })?;
        Self::with_http_client(config, client)
    }

    /// Same as [`ComfyClient::new`] but shares an existing reqwest client (and its pool).
    pub fn with_http_client(
        config: ClientConfig,
        client: reqwest::Client,
    ) -> Result<ComfyClient, ComfyError> {
        let client_id = config
            .client_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let cancel = CancellationToken::new();
        let (state, _) = watch::channel(ConnectionState::Idle);
        let shared = Arc::new(Shared {
            router: Router::new(config.event_buffer),
            http: Http { config, client },
            state,
            client_id,
            cancel: cancel.clone(),
            tracker: TaskTracker::new(),
        });
        Ok(ComfyClient {
            inner: Arc::new(Inner {
                shared,
                started: std::sync::Once::new(),
                _stop_on_drop: cancel.drop_guard(),
            }),
        })
    }

    /// Builds the client and waits until its WebSocket is open.
    pub async fn connect(config: ClientConfig) -> Result<ComfyClient, ComfyError> {
        let client = ComfyClient::new(config)?;
        client.wait_connected().await?;
        Ok(client)
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    pub fn base_url(&self) -> &Url {
        &self.shared().http.config.base_url
    }

    pub fn client_id(&self) -> &str {
        &self.shared().client_id
    }

    /// Starts the WebSocket task (once; later calls do nothing).
    pub fn start(&self) {
        self.inner.started.call_once(|| {
            let shared = self.shared().clone();
            self.shared().tracker.spawn(ws::run(shared));
        });
    }

    /// The server's queue size (pending + running) from its latest `status` broadcast.
    pub fn queue_remaining(&self) -> u64 {
        self.shared().router.queue_remaining()
    }

    /// Watches the WebSocket's state.
    pub fn connection_state(&self) -> watch::Receiver<ConnectionState> {
        self.shared().state.subscribe()
    }

    /// Waits (up to `connect_wait`) until the WebSocket is open.
    pub async fn wait_connected(&self) -> Result<(), ComfyError> {
        self.start();
        let waited = self.shared().http.config.connect_wait;
        let mut rx = self.connection_state();
        let outcome = tokio::time::timeout(waited, async {
            rx.wait_for(|s| matches!(s, ConnectionState::Connected | ConnectionState::Closed))
                .await
                .map(|s| s.clone())
        })
        .await;
        match outcome {
            Ok(Ok(ConnectionState::Connected)) => Ok(()),
            Ok(_) => Err(ComfyError::Closed),
            Err(_) => Err(ComfyError::NotConnected {
                waited,
                reason: match &*rx.borrow() {
                    ConnectionState::Disconnected { last_error, .. } => last_error.clone(),
                    other => format!("{other:?}"),
                },
            }),
        }
    }

    /// Stops the WebSocket task and waits for it. Jobs still waiting end as lost.
    pub async fn shutdown(&self) {
        let shared = self.shared();
        shared.cancel.cancel();
        shared.tracker.close();
        shared.tracker.wait().await;
    }

    /// Queues a workflow and returns the job, whose events are routed to it alone. The
    /// WebSocket is open and the job subscribed before the prompt is posted, so no event is
    /// missed however fast the server is.
    pub async fn submit(
        &self,
        workflow: &Workflow,
        options: PromptOptions,
    ) -> Result<Job, ComfyError> {
        self.wait_connected().await?;
        let shared = self.shared().clone();
        let prompt_id = options
            .prompt_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let subscription = shared.router.subscribe(&prompt_id);
        match self
            .post_prompt(workflow.as_map(), &prompt_id, &options)
            .await
        {
            Ok((server_id, number, warnings)) => {
                // Servers that ignore a client-chosen id pick their own; follow theirs.
                let prompt_id = if server_id != prompt_id {
                    shared.router.rekey(&prompt_id, &server_id);
                    server_id
                } else {
                    prompt_id
                };
                let needs_check = shared.router.mark_posted(&prompt_id, subscription.epoch);
                if needs_check {
                    // The socket dropped while we were posting: the end may have been missed.
                    shared
                        .tracker
                        .spawn(ws::reconcile(shared.clone(), Some(prompt_id.clone())));
                }
                Ok(Job::new(prompt_id, number, warnings, subscription, shared))
            }
            Err(e) => {
                shared.router.unsubscribe(&prompt_id);
                Err(e)
            }
        }
    }

    /// Follows a prompt queued earlier (by this client id, possibly before a restart): its
    /// events if it still runs, its outcome from history if it ended, `Lost` if the server no
    /// longer knows it.
    pub async fn attach(&self, prompt_id: &str) -> Result<Job, ComfyError> {
        self.wait_connected().await?;
        let shared = self.shared().clone();
        let subscription = shared.router.subscribe(prompt_id);
        shared.router.mark_posted(prompt_id, subscription.epoch);
        shared
            .tracker
            .spawn(ws::reconcile(shared.clone(), Some(prompt_id.to_string())));
        Ok(Job::new(
            prompt_id.to_string(),
            0.0,
            Vec::new(),
            subscription,
            shared,
        ))
    }

    /// `POST /prompt`. Not retried: a retry could queue the prompt twice.
    async fn post_prompt(
        &self,
        prompt: &Map<String, Value>,
        prompt_id: &str,
        options: &PromptOptions,
    ) -> Result<(String, f64, Vec<NodeProblem>), ComfyError> {
        let http = &self.shared().http;
        let mut body = json!({
            "prompt": prompt,
            "client_id": self.client_id(),
            "prompt_id": prompt_id,
        });
        if !options.extra_data.is_empty() {
            body["extra_data"] = Value::Object(options.extra_data.clone());
        }
        if options.front {
            body["front"] = Value::Bool(true);
        }
        let resp = http
            .send(
                Method::POST,
                "prompt",
                http.url("prompt"),
                Body::Json(body),
                false,
                &[StatusCode::BAD_REQUEST],
            )
            .await?;
        if resp.status() == StatusCode::BAD_REQUEST {
            let raw: Value = http.decode(resp, "prompt").await?;
            return Err(PromptRejection::from_body(raw).into());
        }
        let accepted: PromptAccepted = http.decode(resp, "prompt").await?;
        Ok((
            accepted.prompt_id,
            accepted.number,
            node_problems(&accepted.node_errors),
        ))
    }

    /// `GET /history/{id}`; `None` when the server does not know the prompt.
    pub async fn history(&self, prompt_id: &str) -> Result<Option<HistoryEntry>, ComfyError> {
        self.shared().http.history(prompt_id).await
    }

    /// `GET /queue`, pending sorted by number.
    pub async fn queue(&self) -> Result<QueueSnapshot, ComfyError> {
        self.shared().http.queue().await
    }

    /// Cancels a prompt in any state: pending → deleted (its job ends as cancelled), running →
    /// interrupted (its job ends as interrupted), finished → nothing.
    pub async fn cancel(&self, prompt_id: &str) -> Result<(), ComfyError> {
        crate::shared::cancel(self.shared(), prompt_id).await
    }

    pub async fn object_info(&self) -> Result<ObjectInfo, ComfyError> {
        self.shared().http.get_json("object_info").await
    }

    pub async fn system_stats(&self) -> Result<SystemStats, ComfyError> {
        self.shared().http.get_json("system_stats").await
    }

    /// `POST /upload/image`. Safe to retry: identical bytes under the same name give the same file.
    pub async fn upload(&self, upload: UploadRequest) -> Result<FileRef, ComfyError> {
        let http = &self.shared().http;
        let resp = http
            .send(
                Method::POST,
                "upload/image",
                http.url("upload/image"),
                Body::Upload(upload),
                true,
                &[],
            )
            .await?;
        http.decode(resp, "upload/image").await
    }

    fn view_url(&self, file: &FileRef) -> Url {
        let mut url = self.shared().http.url("view");
        url.query_pairs_mut()
            .append_pair("filename", &file.filename)
            .append_pair("subfolder", &file.subfolder)
            .append_pair("type", file.folder.as_str());
        url
    }

    async fn view_response(&self, file: &FileRef) -> Result<Response, ComfyError> {
        let http = &self.shared().http;
        let url = self.view_url(file);
        let resp = http
            .send(Method::GET, "view", url, Body::None, true, &[])
            .await?;
        Ok(resp)
    }

    /// Downloads a file, refusing more than `limit` bytes (default: the config's cap).
    pub async fn download(&self, file: &FileRef, limit: Option<u64>) -> Result<Bytes, ComfyError> {
        let limit = limit.unwrap_or(self.shared().http.config.max_download_bytes);
        let mut buf = Vec::new();
        self.download_to(file, &mut buf, Some(limit)).await?;
        Ok(Bytes::from(buf))
    }

    /// Streams a file into `out` without holding it in memory; returns the byte count.
    pub async fn download_to<W: AsyncWrite + Unpin>(
        &self,
        file: &FileRef,
        out: &mut W,
        limit: Option<u64>,
    ) -> Result<u64, ComfyError> {
        let http = &self.shared().http;
        let limit = limit.unwrap_or(http.config.max_download_bytes);
        let too_large = || ComfyError::TooLarge {
            what: format!("{} on the ComfyUI server", file.filename),
            limit,
        };
        let resp = self.view_response(file).await?;
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut written = 0u64;
        let mut stream = resp.bytes_stream();
        let deadline = tokio::time::Instant::now() + http.config.download_timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, stream.next())
                .await
                .map_err(|_| ComfyError::Timeout {
                    endpoint: "view".into(),
                    after: http.config.download_timeout,
                })?;
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|e| http.map_send_error("view", e))?;
            written += chunk.len() as u64;
            if written > limit {
                return Err(too_large());
            }
            out.write_all(&chunk)
                .await
                .map_err(|source| ComfyError::Io {
                    context: format!("saving {}", file.filename),
                    source,
                })?;
        }
        out.flush().await.map_err(|source| ComfyError::Io {
            context: format!("saving {}", file.filename),
            source,
        })?;
        Ok(written)
    }
}
