//! HTTP plumbing shared by the client and the WebSocket task: timeouts, retries of idempotent
//! calls with backoff, capped bodies, and errors that keep what the server said.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use rand::Rng;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use crate::error::ComfyError;
use crate::request::{ClientConfig, UploadRequest};
use crate::types::{HistoryEntry, QueueSnapshot};

/// Error bodies kept in full up to this size; beyond it they are cut (they are for logs).
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// HTTP plumbing shared with the WebSocket task.
#[derive(Debug)]
pub(crate) struct Http {
    pub config: ClientConfig,
    pub client: reqwest::Client,
}

/// What went into a request, so it can be rebuilt for a retry.
pub(crate) enum Body {
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

    pub(crate) fn build(
        &self,
        method: &Method,
        url: &Url,
        body: &Body,
    ) -> Result<RequestBuilder, ComfyError> {
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

    pub(crate) fn map_send_error(&self, endpoint: &str, e: reqwest::Error) -> ComfyError {
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
    pub(crate) async fn send(
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

    pub(crate) async fn decode<T: DeserializeOwned>(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(1);
        assert!(backoff(base, 1, cap) <= Duration::from_millis(125));
        assert!(backoff(base, 3, cap) >= Duration::from_millis(300));
        assert!(backoff(base, 30, cap) <= Duration::from_millis(1250));
    }
}
