//! Messages the server sends over `/ws`: JSON text frames and binary preview frames.

use bytes::Bytes;
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Why a frame could not be decoded. The raw text stays in the error for logs.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("WebSocket text frame is not a ComfyUI message ({source}): {raw}")]
    Json {
        raw: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("binary frame of {len} bytes is truncated: {what}")]
    Truncated { len: usize, what: &'static str },
    #[error("binary frame metadata is not valid JSON: {0}")]
    Metadata(#[source] serde_json::Error),
}

/// One node's entry in a `progress_state` snapshot.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NodeProgress {
    #[serde(default)]
    pub value: f64,
    #[serde(default)]
    pub max: f64,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub display_node_id: Option<String>,
    #[serde(default)]
    pub parent_node_id: Option<String>,
    #[serde(default)]
    pub real_node_id: Option<String>,
}

/// `execution_error` data.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ExecutionErrorInfo {
    pub prompt_id: String,
    #[serde(default)]
    pub node_id: Option<String>,
    #[serde(default)]
    pub node_type: Option<String>,
    #[serde(default)]
    pub exception_type: String,
    #[serde(default)]
    pub exception_message: String,
    #[serde(default)]
    pub traceback: Vec<String>,
    #[serde(default)]
    pub executed: Vec<String>,
}

/// `execution_interrupted` data.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct InterruptInfo {
    pub prompt_id: String,
    #[serde(default)]
    pub node_id: Option<String>,
    #[serde(default)]
    pub node_type: Option<String>,
    #[serde(default)]
    pub executed: Vec<String>,
}

/// A JSON message from the server. Unknown types (custom nodes send their own) are kept.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// Queue size, broadcast on every queue change; `sid` only in the first frame.
    Status {
        queue_remaining: u64,
        sid: Option<String>,
    },
    ExecutionStart {
        prompt_id: String,
    },
    ExecutionCached {
        prompt_id: String,
        nodes: Vec<String>,
    },
    /// A node starts; `node: None` with the prompt id means the prompt is over (history is written).
    /// After a reconnect the server replays the running node with neither prompt id nor display node.
    Executing {
        prompt_id: Option<String>,
        node: Option<String>,
        display_node: Option<String>,
    },
    Progress {
        prompt_id: Option<String>,
        node: Option<String>,
        value: f64,
        max: f64,
    },
    ProgressState {
        prompt_id: String,
        nodes: IndexMap<String, NodeProgress>,
    },
    Executed {
        prompt_id: String,
        node: String,
        display_node: Option<String>,
        output: Map<String, Value>,
    },
    ExecutionSuccess {
        prompt_id: String,
    },
    ExecutionError(Box<ExecutionErrorInfo>),
    ExecutionInterrupted(InterruptInfo),
    FeatureFlags(Map<String, Value>),
    Unknown {
        kind: String,
        data: Value,
    },
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct StatusData {
    #[serde(default)]
    status: Option<StatusInner>,
    #[serde(default)]
    sid: Option<String>,
}
#[derive(Deserialize)]
struct StatusInner {
    #[serde(default)]
    exec_info: Option<ExecInfo>,
}
#[derive(Deserialize)]
struct ExecInfo {
    #[serde(default)]
    queue_remaining: u64,
}
#[derive(Deserialize)]
struct PromptOnly {
    prompt_id: String,
}
#[derive(Deserialize)]
struct CachedData {
    prompt_id: String,
    #[serde(default)]
    nodes: Vec<String>,
}
#[derive(Deserialize)]
struct ExecutingData {
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    display_node: Option<String>,
    #[serde(default)]
    prompt_id: Option<String>,
}
#[derive(Deserialize)]
struct ProgressData {
    value: f64,
    max: f64,
    #[serde(default)]
    prompt_id: Option<String>,
    #[serde(default)]
    node: Option<String>,
}
#[derive(Deserialize)]
struct ProgressStateData {
    prompt_id: String,
    #[serde(default)]
    nodes: IndexMap<String, NodeProgress>,
}
#[derive(Deserialize)]
struct ExecutedData {
    prompt_id: String,
    node: String,
    #[serde(default)]
    display_node: Option<String>,
    #[serde(default)]
    output: Option<Map<String, Value>>,
}

impl ServerMessage {
    /// Decodes one text frame. A known type whose data does not fit is an error; an unknown
    /// type is [`ServerMessage::Unknown`].
    pub fn decode(text: &str) -> Result<ServerMessage, FrameError> {
        let wrap = |source| FrameError::Json {
            raw: text.to_string(),
            source,
        };
        let env: Envelope<'_> = serde_json::from_str(text).map_err(wrap)?;
        let data = env.data.map(RawValue::get).unwrap_or("null");
        fn parse<'a, T: Deserialize<'a>>(data: &'a str) -> Result<T, serde_json::Error> {
            serde_json::from_str(data)
        }
        let msg = match env.kind.as_ref() {
            "status" => {
                let d: StatusData = parse(data).map_err(wrap)?;
                ServerMessage::Status {
                    queue_remaining: d
                        .status
                        .and_then(|s| s.exec_info)
                        .map(|e| e.queue_remaining)
                        .unwrap_or(0),
                    sid: d.sid,
                }
            }
            "execution_start" => ServerMessage::ExecutionStart {
                prompt_id: parse::<PromptOnly>(data).map_err(wrap)?.prompt_id,
            },
            "execution_cached" => {
                let d: CachedData = parse(data).map_err(wrap)?;
                ServerMessage::ExecutionCached {
                    prompt_id: d.prompt_id,
                    nodes: d.nodes,
                }
            }
            "executing" => {
                let d: ExecutingData = parse(data).map_err(wrap)?;
                ServerMessage::Executing {
                    prompt_id: d.prompt_id,
                    node: d.node,
                    display_node: d.display_node,
                }
            }
            "progress" => {
                let d: ProgressData = parse(data).map_err(wrap)?;
                ServerMessage::Progress {
                    prompt_id: d.prompt_id,
                    node: d.node,
                    value: d.value,
                    max: d.max,
                }
            }
            "progress_state" => {
                let d: ProgressStateData = parse(data).map_err(wrap)?;
                ServerMessage::ProgressState {
                    prompt_id: d.prompt_id,
                    nodes: d.nodes,
                }
            }
            "executed" => {
                let d: ExecutedData = parse(data).map_err(wrap)?;
                ServerMessage::Executed {
                    prompt_id: d.prompt_id,
                    node: d.node,
                    display_node: d.display_node,
                    output: d.output.unwrap_or_default(),
                }
            }
            "execution_success" => ServerMessage::ExecutionSuccess {
                prompt_id: parse::<PromptOnly>(data).map_err(wrap)?.prompt_id,
            },
            "execution_error" => ServerMessage::ExecutionError(parse(data).map_err(wrap)?),
            "execution_interrupted" => {
                ServerMessage::ExecutionInterrupted(parse(data).map_err(wrap)?)
            }
            "feature_flags" => ServerMessage::FeatureFlags(parse(data).map_err(wrap)?),
            other => ServerMessage::Unknown {
                kind: other.to_string(),
                data: parse(data).map_err(wrap)?,
            },
        };
        Ok(msg)
    }

    /// The prompt this message is about, when it says.
    pub fn prompt_id(&self) -> Option<&str> {
        match self {
            ServerMessage::ExecutionStart { prompt_id }
            | ServerMessage::ExecutionCached { prompt_id, .. }
            | ServerMessage::ProgressState { prompt_id, .. }
            | ServerMessage::Executed { prompt_id, .. }
            | ServerMessage::ExecutionSuccess { prompt_id } => Some(prompt_id),
            ServerMessage::Executing { prompt_id, .. }
            | ServerMessage::Progress { prompt_id, .. } => prompt_id.as_deref(),
            ServerMessage::ExecutionError(e) => Some(&e.prompt_id),
            ServerMessage::ExecutionInterrupted(i) => Some(&i.prompt_id),
            _ => None,
        }
    }
}

/// Binary event types (big-endian u32 at the start of every binary frame).
const PREVIEW_IMAGE: u32 = 1;
const TEXT: u32 = 3;
const PREVIEW_IMAGE_WITH_METADATA: u32 = 4;

/// Image encoding of a preview.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviewFormat {
    Jpeg,
    Png,
    Webp,
    Other(u32),
}

impl PreviewFormat {
    fn from_code(code: u32) -> PreviewFormat {
        match code {
            1 => PreviewFormat::Jpeg,
            2 => PreviewFormat::Png,
            other => PreviewFormat::Other(other),
        }
    }

    fn from_mime(mime: &str) -> PreviewFormat {
        match mime {
            "image/jpeg" => PreviewFormat::Jpeg,
            "image/png" => PreviewFormat::Png,
            "image/webp" => PreviewFormat::Webp,
            _ => PreviewFormat::Other(0),
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            PreviewFormat::Jpeg => "image/jpeg",
            PreviewFormat::Png => "image/png",
            PreviewFormat::Webp => "image/webp",
            PreviewFormat::Other(_) => "application/octet-stream",
        }
    }
}

/// The JSON header of a type-4 preview.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PreviewMeta {
    #[serde(default)]
    pub node_id: Option<String>,
    #[serde(default)]
    pub prompt_id: Option<String>,
    #[serde(default)]
    pub display_node_id: Option<String>,
    #[serde(default)]
    pub parent_node_id: Option<String>,
    #[serde(default)]
    pub real_node_id: Option<String>,
    #[serde(default)]
    pub image_type: String,
}

/// A binary frame: a preview image (with or without metadata), progress text, or something new.
#[derive(Debug, Clone, PartialEq)]
pub enum BinaryFrame {
    Preview {
        format: PreviewFormat,
        image: Bytes,
    },
    PreviewWithMetadata {
        meta: PreviewMeta,
        format: PreviewFormat,
        image: Bytes,
    },
    Text {
        node_id: String,
        text: String,
    },
    Unknown {
        event_type: u32,
        payload: Bytes,
    },
}

fn be_u32(frame: &Bytes, at: usize, what: &'static str) -> Result<u32, FrameError> {
    frame
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or(FrameError::Truncated {
            len: frame.len(),
            what,
        })
}

impl BinaryFrame {
    /// Decodes a frame without copying the image bytes.
    pub fn decode(frame: Bytes) -> Result<BinaryFrame, FrameError> {
        let event_type = be_u32(&frame, 0, "event type")?;
        match event_type {
            PREVIEW_IMAGE => {
                let code = be_u32(&frame, 4, "image format")?;
                Ok(BinaryFrame::Preview {
                    format: PreviewFormat::from_code(code),
                    image: frame.slice(8..),
                })
            }
            PREVIEW_IMAGE_WITH_METADATA => {
                let len = be_u32(&frame, 4, "metadata length")? as usize;
                let end = 8usize
                    .checked_add(len)
                    .filter(|&e| e <= frame.len())
                    .ok_or(FrameError::Truncated {
                        len: frame.len(),
                        what: "metadata",
                    })?;
                let meta: PreviewMeta =
                    serde_json::from_slice(&frame[8..end]).map_err(FrameError::Metadata)?;
                Ok(BinaryFrame::PreviewWithMetadata {
                    format: PreviewFormat::from_mime(&meta.image_type),
                    meta,
                    image: frame.slice(end..),
                })
            }
            TEXT => {
                let len = be_u32(&frame, 4, "node id length")? as usize;
                let end = 8usize
                    .checked_add(len)
                    .filter(|&e| e <= frame.len())
                    .ok_or(FrameError::Truncated {
                        len: frame.len(),
                        what: "node id",
                    })?;
                Ok(BinaryFrame::Text {
                    node_id: String::from_utf8_lossy(&frame[8..end]).into_owned(),
                    text: String::from_utf8_lossy(&frame[end..]).into_owned(),
                })
            }
            other => Ok(BinaryFrame::Unknown {
                event_type: other,
                payload: frame.slice(4..),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_recorded_messages() {
        let m = ServerMessage::decode(r#"{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "abc"}}"#).unwrap();
        assert_eq!(
            m,
            ServerMessage::Status {
                queue_remaining: 0,
                sid: Some("abc".into())
            }
        );
        let m = ServerMessage::decode(
            r#"{"type": "executing", "data": {"node": null, "prompt_id": "p"}}"#,
        )
        .unwrap();
        assert_eq!(
            m,
            ServerMessage::Executing {
                prompt_id: Some("p".into()),
                node: None,
                display_node: None
            }
        );
        // The reconnect replay has neither prompt_id nor display_node.
        let m = ServerMessage::decode(r#"{"type":"executing","data":{"node":"2"}}"#).unwrap();
        assert_eq!(m.prompt_id(), None);
        let m = ServerMessage::decode(r#"{"type": "progress", "data": {"value": 0.5, "max": 2.0, "prompt_id": "p", "node": "2"}}"#).unwrap();
        assert!(matches!(m, ServerMessage::Progress { value, .. } if value == 0.5));
        let m =
            ServerMessage::decode(r#"{"data": {"x": 1}, "type": "crystools.monitor"}"#).unwrap();
        assert!(matches!(m, ServerMessage::Unknown { kind, .. } if kind == "crystools.monitor"));
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        for bad in [
            "",
            "{",
            "[]",
            r#"{"type": 5}"#,
            r#"{"type": "progress", "data": {"value": "x"}}"#,
            r#"{"type": "execution_start", "data": {}}"#,
        ] {
            assert!(ServerMessage::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn binary_layouts() {
        let mut f = vec![0, 0, 0, 1, 0, 0, 0, 1];
        f.extend_from_slice(&[0xff, 0xd8, 0xff]);
        assert_eq!(
            BinaryFrame::decode(Bytes::from(f)).unwrap(),
            BinaryFrame::Preview {
                format: PreviewFormat::Jpeg,
                image: Bytes::from_static(&[0xff, 0xd8, 0xff])
            }
        );
        let meta = br#"{"node_id":"3","prompt_id":"p","display_node_id":"3","parent_node_id":null,"real_node_id":"3","image_type":"image/png"}"#;
        let mut f = vec![0, 0, 0, 4];
        f.extend_from_slice(&(meta.len() as u32).to_be_bytes());
        f.extend_from_slice(meta);
        f.extend_from_slice(&[0x89, 0x50]);
        match BinaryFrame::decode(Bytes::from(f)).unwrap() {
            BinaryFrame::PreviewWithMetadata {
                meta,
                format,
                image,
            } => {
                assert_eq!(meta.prompt_id.as_deref(), Some("p"));
                assert_eq!(format, PreviewFormat::Png);
                assert_eq!(&image[..], &[0x89, 0x50]);
            }
            other => panic!("{other:?}"),
        }
        let mut f = vec![0, 0, 0, 3, 0, 0, 0, 2];
        f.extend_from_slice(b"12hello");
        assert_eq!(
            BinaryFrame::decode(Bytes::from(f)).unwrap(),
            BinaryFrame::Text {
                node_id: "12".into(),
                text: "hello".into()
            }
        );
        // Truncated or lying lengths are errors.
        for bad in [
            vec![0, 0],
            vec![0, 0, 0, 1],
            vec![0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff],
            vec![0, 0, 0, 3, 0, 0, 1, 0, b'x'],
        ] {
            assert!(BinaryFrame::decode(Bytes::from(bad)).is_err());
        }
    }
}
