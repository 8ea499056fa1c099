//! What happens to a submitted prompt: its events and, at the end, its outcome read from
//! `/history`.

use bytes::Bytes;
use indexmap::IndexMap;
use serde_json::{Map, Value};

use crate::events::{ExecutionErrorInfo, InterruptInfo, NodeProgress, PreviewFormat};
use crate::types::{FileRef, HistoryEntry};

/// Something that happened to one job.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    /// The server began running it.
    Started,
    /// Nodes whose outputs are reused from the server's cache.
    Cached {
        nodes: Vec<String>,
    },
    /// A node starts.
    Executing {
        node: String,
        display_node: Option<String>,
    },
    /// A node's progress bar (KSampler: steps).
    Progress {
        node: Option<String>,
        value: f64,
        max: f64,
    },
    /// Snapshot of every started node.
    NodeStates(IndexMap<String, NodeProgress>),
    /// A node produced UI output (saved images, text, ...).
    Executed {
        node: String,
        output: Map<String, Value>,
    },
    /// A preview image while sampling.
    Preview {
        node: Option<String>,
        format: PreviewFormat,
        image: Bytes,
    },
    /// Progress text a node sent.
    Text {
        node: String,
        text: String,
    },
    /// A node raised; the outcome follows.
    Failing {
        node: Option<String>,
        message: String,
    },
    /// The WebSocket dropped; the job is still followed and will be reconciled.
    Disconnected,
    Reconnected,
    /// Always the last event.
    Finished(Outcome),
}

/// What kind of file an output is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Image,
    AnimatedImage,
    Video,
    Audio,
    Other,
}

impl MediaKind {
    fn classify(filename: &str, animated: bool) -> MediaKind {
        let ext = filename
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "gif" | "apng" => MediaKind::AnimatedImage,
            "webp" | "png" if animated => MediaKind::AnimatedImage,
            "png" | "jpg" | "jpeg" | "webp" | "bmp" | "tif" | "tiff" => MediaKind::Image,
            "mp4" | "webm" | "mov" | "mkv" | "avi" => MediaKind::Video,
            "wav" | "mp3" | "flac" | "ogg" | "opus" | "m4a" => MediaKind::Audio,
            _ => MediaKind::Other,
        }
    }
}

/// One file an output node saved.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputFile {
    pub node_id: String,
    /// The UI key it came under (`images`, `gifs`, `videos`, `audio`, ...).
    pub key: String,
    pub media: MediaKind,
    pub file: FileRef,
}

/// Everything a finished prompt produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outputs {
    pub files: Vec<OutputFile>,
    /// UI values that are not files (text, numbers, flags), by node id then key.
    pub other: IndexMap<String, Map<String, Value>>,
}

impl Outputs {
    /// Collects files from every output node's UI dict; any list of `{filename, ...}` objects
    /// counts, so custom nodes (`gifs`, `videos`) work too.
    pub fn from_history(entry: &HistoryEntry) -> Outputs {
        let mut out = Outputs::default();
        for (node_id, ui) in &entry.outputs {
            let animated = ui
                .get("animated")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|v| v.as_bool() == Some(true)));
            for (key, value) in ui {
                let files: Option<Vec<FileRef>> = value.as_array().and_then(|items| {
                    if items.is_empty() {
                        return None;
                    }
                    items
                        .iter()
                        .map(|i| serde_json::from_value::<FileRef>(i.clone()).ok())
                        .collect()
                });
                match files {
                    Some(files) => out.files.extend(files.into_iter().map(|file| OutputFile {
                        node_id: node_id.clone(),
                        key: key.clone(),
                        media: MediaKind::classify(&file.filename, animated),
                        file,
                    })),
                    None => {
                        out.other
                            .entry(node_id.clone())
                            .or_default()
                            .insert(key.clone(), value.clone());
                    }
                }
            }
        }
        out
    }
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Success(Outputs),
    /// A node raised (`execution_error`).
    Failed(Box<ExecutionErrorInfo>),
    /// Stopped while running (`execution_interrupted`).
    Interrupted(InterruptInfo),
    /// Deleted from the queue before it ran.
    Cancelled,
    /// The server lost it (restart) or we could not reach the server for too long.
    Lost {
        reason: String,
    },
}

impl Outcome {
    /// Reads the outcome from a history entry.
    pub fn from_history(prompt_id: &str, entry: &HistoryEntry) -> Outcome {
        if let Some(data) = entry.message("execution_error") {
            let mut info: ExecutionErrorInfo =
                serde_json::from_value(data.clone()).unwrap_or(ExecutionErrorInfo {
                    prompt_id: prompt_id.to_string(),
                    node_id: None,
                    node_type: None,
                    exception_type: String::new(),
                    exception_message: "ComfyUI reported an error it did not describe".into(),
                    traceback: Vec::new(),
                    executed: Vec::new(),
                });
            info.prompt_id = prompt_id.to_string();
            return Outcome::Failed(Box::new(info));
        }
        if let Some(data) = entry.message("execution_interrupted") {
            let info = serde_json::from_value(data.clone()).unwrap_or(InterruptInfo {
                prompt_id: prompt_id.to_string(),
                node_id: None,
                node_type: None,
                executed: Vec::new(),
            });
            return Outcome::Interrupted(info);
        }
        match &entry.status {
            Some(s) if s.status_str == "error" => Outcome::Failed(Box::new(ExecutionErrorInfo {
                prompt_id: prompt_id.to_string(),
                node_id: None,
                node_type: None,
                exception_type: String::new(),
                exception_message: "ComfyUI marked the prompt as failed".into(),
                traceback: Vec::new(),
                executed: Vec::new(),
            })),
            _ => Outcome::Success(Outputs::from_history(entry)),
        }
    }

    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(v: Value) -> HistoryEntry {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn outputs_cover_images_videos_and_other_ui() {
        let h = entry(json!({"outputs": {
            "9": {"images": [{"filename": "a_00001_.png", "subfolder": "", "type": "output"}]},
            "12": {"gifs": [{"filename": "v.mp4", "subfolder": "vid", "type": "output", "format": "video/h264-mp4"}]},
            "13": {"images": [{"filename": "anim.webp", "subfolder": "", "type": "output"}], "animated": [true]},
            "14": {"text": ["hello"]}
        }, "status": {"status_str": "success", "completed": true, "messages": []}}));
        let Outcome::Success(out) = Outcome::from_history("p", &h) else {
            panic!()
        };
        let kinds: Vec<(String, MediaKind)> = out
            .files
            .iter()
            .map(|f| (f.file.filename.clone(), f.media))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("a_00001_.png".to_string(), MediaKind::Image),
                ("v.mp4".to_string(), MediaKind::Video),
                ("anim.webp".to_string(), MediaKind::AnimatedImage),
            ]
        );
        assert_eq!(out.files[1].file.subfolder, "vid");
        assert_eq!(out.other["13"]["animated"], json!([true]));
        assert_eq!(out.other["14"]["text"], json!(["hello"]));
    }

    #[test]
    fn error_and_interrupt_outcomes() {
        let h = entry(
            json!({"outputs": {}, "status": {"status_str": "error", "completed": false, "messages": [
            ["execution_start", {"prompt_id": "p"}],
            ["execution_error", {"prompt_id": "p", "node_id": "2", "node_type": "TestSyncError", "exception_type": "RuntimeError", "exception_message": "boom\n", "traceback": [], "executed": ["1"]}]]}}),
        );
        match Outcome::from_history("p", &h) {
            Outcome::Failed(e) => {
                assert_eq!(e.node_type.as_deref(), Some("TestSyncError"));
                assert_eq!(e.exception_message, "boom\n");
            }
            other => panic!("{other:?}"),
        }
        let h = entry(
            json!({"outputs": {}, "status": {"status_str": "error", "completed": false, "messages": [
            ["execution_interrupted", {"prompt_id": "p", "node_id": "2", "node_type": "TestSleep", "executed": []}]]}}),
        );
        assert!(
            matches!(Outcome::from_history("p", &h), Outcome::Interrupted(i) if i.node_id.as_deref() == Some("2"))
        );
    }
}
