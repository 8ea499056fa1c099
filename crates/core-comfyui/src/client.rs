//! The HTTP side of one ComfyUI server, plus [`ComfyClient::submit`], which ties a prompt to the
//! WebSocket router before posting it.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use rand::Rng;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;
use url::Url;

use crate::error::{node_problems, ComfyError, NodeProblem, PromptRejection};
use crate::job::Job;
use crate::object_info::{NodeInfo, ObjectInfo};
use crate::types::{FileRef, FolderType, HistoryEntry, PromptAccepted, QueueSnapshot, SystemStats};
use crate::workflow::Workflow;
use crate::ws::{self, ConnectionState, Router};

/// Error bodies kept in full up to this size; beyond it they are cut (they are for logs).
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// Timeouts, limits and retry policy for one backend. Defaults suit a LAN server.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub base_url: Url,
    /// Stable id of this client's WebSocket; random when `None`.
    pub client_id: Option<String>,
    /// Whole-request timeout for API calls (not for downloads, which use `download_timeout`).
    pub request_timeout: Duration,
    pub download_timeout: Duration,
    pub connect_timeout: Duration,
    /// Extra attempts for idempotent requests that failed transiently.
    pub retries: u32,
    pub retry_base_delay: Duration,
    /// JSON answers larger than this are refused (`/object_info` is ~0.5 MB on a stock server).
    pub max_json_bytes: usize,
    /// Default cap for `/view` downloads.
    pub max_download_bytes: u64,
    /// Larger WebSocket messages close the connection (it is then reopened).
    pub max_ws_message_bytes: usize,
    /// The server sends no pings; we ping to notice a dead connection.
    pub ping_interval: Duration,
    pub reconnect_max_delay: Duration,
    /// After this long without a connection, jobs waiting on it end as lost.
    pub give_up_after: Duration,
    /// How long `submit` and `connect` wait for the WebSocket.
    pub connect_wait: Duration,
    /// Events buffered per job before the oldest kind (progress, previews) are dropped.
    pub event_buffer: usize,
}

impl ClientConfig {
    pub fn new(base_url: &str) -> Result<ClientConfig, ComfyError> {
        let invalid = |reason: &str| ComfyError::InvalidUrl {
            url: base_url.to_string(),
            reason: reason.to_string(),
        };
        let mut url = Url::parse(base_url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("use an http:// or https:// URL"));
        }
        if url.host().is_none() {
            return Err(invalid("the URL has no host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("the URL must not have a query or fragment"));
        }
        // A trailing slash makes relative joins keep a reverse-proxy path prefix.
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        Ok(ClientConfig {
            base_url: url,
            client_id: None,
            request_timeout: Duration::from_secs(30),
            download_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(5),
            retries: 3,
            retry_base_delay: Duration::from_millis(200),
            max_json_bytes: 64 * 1024 * 1024,
            max_download_bytes: 512 * 1024 * 1024,
            max_ws_message_bytes: 64 * 1024 * 1024,
            ping_interval: Duration::from_secs(15),
            reconnect_max_delay: Duration::from_secs(30),
            give_up_after: Duration::from_secs(600),
            connect_wait: Duration::from_secs(10),
            event_buffer: 256,
        })
    }
}

/// Options for one prompt.
#[derive(Debug, Clone, Default)]
pub struct PromptOptions {
    /// The prompt's id; random when `None`. Choosing it lets a caller record it before
    /// posting, so a crash in between cannot lose track of a queued prompt.
    pub prompt_id: Option<String>,
    /// Jump the server's queue.
    pub front: bool,
    /// Stored with the item; `extra_pnginfo` ends up in saved PNGs.
    pub extra_data: Map<String, Value>,
}

/// A file to upload with `POST /upload/image`.
#[derive(Debug, Clone)]
pub struct UploadRequest {
    pub filename: String,
    pub bytes: Bytes,
    pub mime: String,
    pub folder: FolderType,
    pub subfolder: String,
    pub overwrite: bool,
}

impl UploadRequest {
    pub fn input_image(filename: impl Into<String>, bytes: impl Into<Bytes>, mime: &str) -> Self {
        UploadRequest {
            filename: filename.into(),
            bytes: bytes.into(),
            mime: mime.to_string(),
            folder: FolderType::Input,
            subfolder: String::new(),
            overwrite: false,
        }
    }
}

/// HTTP plumbing shared with the WebSocket task.
#[derive(Debug)]
pub(crate) struct Http {
    pub config: ClientConfig,
    pub client: reqwest::Client,
}

/// What went into a request, so it can be rebuilt for a retry.
enum Body {
    None,
    Json(Value),
    Upload(UploadRequest),
}

impl Http {
    pub fn url(&self, path: &str) -> Url {
        // base_url ends with '/', and paths are relative constants.
        self.config
            .base_url
            .join(path)
            .unwrap_or_else(|_| self.config.base_url.clone())
    }

    fn build(&self, method: &Method, url: &Url, body: &Body) -> Result<RequestBuilder, ComfyError> {
        let req = self
            .client
            .request(method.clone(), url.clone())
            .timeout(self.config.request_timeout);
        Ok(match body {
            Body::None => req,
            Body::Json(v) => req.json(v),
            Body::Upload(u) => {
                let part = reqwest::multipart::Part::stream(u.bytes.clone())
                    .file_name(u.filename.clone())
                    .mime_str(&u.mime)
                    .map_err(|e| ComfyError::Http {
                        endpoint: "upload/image".into(),
                        source: e,
                    })?;
                let mut form = reqwest::multipart::Form::new()
                    .part("image", part)
                    .text("type", u.folder.as_str())
                    .text("subfolder", u.subfolder.clone());
                if u.overwrite {
                    form = form.text("overwrite", "true");
                }
                req.multipart(form)
            }
        })
    }

    fn map_send_error(&self, endpoint: &str, e: reqwest::Error) -> ComfyError {
        if e.is_timeout() {
            ComfyError::Timeout {
                endpoint: endpoint.to_string(),
                after: self.config.request_timeout,
            }
        } else if e.is_connect() {
            ComfyError::Connect {
                endpoint: endpoint.to_string(),
                source: e,
            }
        } else {
            ComfyError::Http {
                endpoint: endpoint.to_string(),
                source: e,
            }
        }
    }

    /// Sends once; a non-2xx answer becomes [`ComfyError::Status`] with its body, except the
    /// statuses the caller wants to read itself.
    async fn send_once(
        &self,
        method: &Method,
        endpoint: &str,
        url: &Url,
        body: &Body,
        pass: &[StatusCode],
    ) -> Result<Response, ComfyError> {
        let resp = self
            .build(method, url, body)?
            .send()
            .await
            .map_err(|e| self.map_send_error(endpoint, e))?;
        let status = resp.status();
        if status.is_success() || pass.contains(&status) {
            return Ok(resp);
        }
        let body = read_capped(resp, MAX_ERROR_BODY_BYTES, endpoint, self)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        Err(ComfyError::Status {
            endpoint: endpoint.to_string(),
            status: status.as_u16(),
            body,
        })
    }

    /// Sends, retrying transient failures with exponential backoff and jitter when `idempotent`.
    async fn send(
        &self,
        method: Method,
        endpoint: &str,
        url: Url,
        body: Body,
        idempotent: bool,
        pass: &[StatusCode],
    ) -> Result<Response, ComfyError> {
        let attempts = if idempotent {
            self.config.retries + 1
        } else {
            1
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.send_once(&method, endpoint, &url, &body, pass).await {
                Ok(resp) => return Ok(resp),
                Err(e) if attempt < attempts && e.is_transient() => {
                    let delay = backoff(
                        self.config.retry_base_delay,
                        attempt,
                        Duration::from_secs(5),
                    );
                    tracing::debug!(endpoint, attempt, ?delay, error = %e, "retrying ComfyUI request");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ComfyError> {
        let resp = self
            .send(Method::GET, path, self.url(path), Body::None, true, &[])
            .await?;
        self.decode(resp, path).await
    }

    async fn decode<T: DeserializeOwned>(
        &self,
        resp: Response,
        endpoint: &str,
    ) -> Result<T, ComfyError> {
        let bytes = read_capped(resp, self.config.max_json_bytes, endpoint, self).await?;
        serde_json::from_slice(&bytes).map_err(|source| ComfyError::Decode {
            endpoint: endpoint.to_string(),
            body: String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_ERROR_BODY_BYTES)])
                .into_owned(),
            source,
        })
    }

    /// POST whose reply body is empty (ComfyUI's action endpoints).
    pub(crate) async fn post_action(
        &self,
        path: &str,
        body: Value,
        idempotent: bool,
    ) -> Result<(), ComfyError> {
        self.send(
            Method::POST,
            path,
            self.url(path),
            Body::Json(body),
            idempotent,
            &[],
        )
        .await
        .map(drop)
    }

    pub async fn history(&self, prompt_id: &str) -> Result<Option<HistoryEntry>, ComfyError> {
        let path = format!("history/{}", urlencode_segment(prompt_id));
        let mut map: indexmap::IndexMap<String, HistoryEntry> = self.get_json(&path).await?;
        Ok(map.swap_remove(prompt_id))
    }

    pub async fn queue(&self) -> Result<QueueSnapshot, ComfyError> {
        let v: Value = self.get_json("queue").await?;
        QueueSnapshot::from_value(&v).ok_or_else(|| ComfyError::Decode {
            endpoint: "queue".into(),
            body: v.to_string(),
            source: <serde_json::Error as serde::de::Error>::custom(
                "expected {queue_running: [...], queue_pending: [...]}",
            ),
        })
    }
}

fn urlencode_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Exponential backoff with ±25 % jitter, capped.
pub(crate) fn backoff(base: Duration, attempt: u32, cap: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let capped = exp.min(cap);
    let jitter = rand::thread_rng().gen_range(0.75..=1.25);
    capped.mul_f64(jitter)
}

/// Reads a body, refusing more than `limit` bytes (checked against Content-Length first).
async fn read_capped(
    resp: Response,
    limit: usize,
    endpoint: &str,
    http: &Http,
) -> Result<Bytes, ComfyError> {
    let too_large = || ComfyError::TooLarge {
        what: format!("the answer to {endpoint}"),
        limit: limit as u64,
    };
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut buf = BytesMut::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| http.map_send_error(endpoint, e))?;
        if buf.len() + chunk.len() > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
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

    /// The last `max_items` history entries, oldest first.
    pub async fn recent_history(
        &self,
        max_items: u32,
    ) -> Result<indexmap::IndexMap<String, HistoryEntry>, ComfyError> {
        self.shared()
            .http
            .get_json(&format!("history?max_items={max_items}"))
            .await
    }

    /// `GET /queue`, pending sorted by number.
    pub async fn queue(&self) -> Result<QueueSnapshot, ComfyError> {
        self.shared().http.queue().await
    }

    /// `POST /queue {"delete": [...]}`: removes pending prompts (a running one is untouched).
    pub async fn delete_queued(&self, prompt_ids: &[&str]) -> Result<(), ComfyError> {
        self.shared()
            .http
            .post_action("queue", json!({ "delete": prompt_ids }), true)
            .await
    }

    /// `POST /queue {"clear": true}`: removes every pending prompt.
    pub async fn clear_queue(&self) -> Result<(), ComfyError> {
        self.shared()
            .http
            .post_action("queue", json!({ "clear": true }), true)
            .await
    }

    /// `POST /interrupt`: with an id, stops that prompt only if it is running; without, stops
    /// whatever runs.
    pub async fn interrupt(&self, prompt_id: Option<&str>) -> Result<(), ComfyError> {
        let body = match prompt_id {
            Some(id) => json!({ "prompt_id": id }),
            None => json!({}),
        };
        self.shared()
            .http
            .post_action("interrupt", body, true)
            .await
    }

    /// Cancels a prompt in any state: pending → deleted (its job ends as cancelled), running →
    /// interrupted (its job ends as interrupted), finished → nothing.
    pub async fn cancel(&self, prompt_id: &str) -> Result<(), ComfyError> {
        ws::cancel(self.shared(), prompt_id).await
    }

    /// `POST /free`.
    pub async fn free(&self, unload_models: bool, free_memory: bool) -> Result<(), ComfyError> {
        self.shared()
            .http
            .post_action(
                "free",
                json!({ "unload_models": unload_models, "free_memory": free_memory }),
                true,
            )
            .await
    }

    pub async fn object_info(&self) -> Result<ObjectInfo, ComfyError> {
        self.shared().http.get_json("object_info").await
    }

    /// One class from `GET /object_info/{class}`; `None` when the server lacks it.
    pub async fn node_info(&self, class: &str) -> Result<Option<NodeInfo>, ComfyError> {
        let mut map: ObjectInfo = self
            .shared()
            .http
            .get_json(&format!("object_info/{}", urlencode_segment(class)))
            .await?;
        Ok(map.swap_remove(class))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_rules() {
        let c = ClientConfig::new("http://127.0.0.1:8188").unwrap();
        assert_eq!(c.base_url.as_str(), "http://127.0.0.1:8188/");
        let c = ClientConfig::new("https://host/comfy").unwrap();
        assert_eq!(
            c.base_url.join("prompt").unwrap().as_str(),
            "https://host/comfy/prompt"
        );
        for bad in ["ftp://x", "not a url", "http://h/?q=1", "ws://h"] {
            assert!(ClientConfig::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff_grows_and_caps() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(1);
        assert!(backoff(base, 1, cap) <= Duration::from_millis(125));
        assert!(backoff(base, 3, cap) >= Duration::from_millis(300));
        assert!(backoff(base, 30, cap) <= Duration::from_millis(1250));
    }
}
