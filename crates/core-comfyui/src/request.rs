//! What a caller gives the client: where the server is and how patient to be, a prompt's
//! options, a file to upload.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value};
use url::Url;

use crate::error::ComfyError;
use crate::types::FolderType;

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
}
