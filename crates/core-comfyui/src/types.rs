//! JSON shapes ComfyUI answers with (checked against ComfyUI 0.3.64). Fields a client does not
//! need to branch on stay as `serde_json::Value` so newer servers still decode.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Which of ComfyUI's folders a file lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FolderType {
    #[default]
    Output,
    Input,
    Temp,
}

impl FolderType {
    pub fn as_str(self) -> &'static str {
        match self {
            FolderType::Output => "output",
            FolderType::Input => "input",
            FolderType::Temp => "temp",
        }
    }
}

/// A file on the server, as `/view`, `/upload/image` and history outputs name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileRef {
    #[serde(alias = "name")]
    pub filename: String,
    #[serde(default)]
    pub subfolder: String,
    #[serde(rename = "type", default)]
    pub folder: FolderType,
}

impl FileRef {
    /// How a `LoadImage` node refers to an uploaded input file: `subfolder/name`.
    pub fn load_image_name(&self) -> String {
        if self.subfolder.is_empty() {
            self.filename.clone()
        } else {
            format!("{}/{}", self.subfolder, self.filename)
        }
    }
}

/// Reply of `POST /prompt` (200).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PromptAccepted {
    pub prompt_id: String,
    /// The server's counter; a float when the client chose a number.
    pub number: f64,
    #[serde(default)]
    pub node_errors: Value,
}

/// `status` of a history entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HistoryStatus {
    #[serde(default)]
    pub status_str: String,
    #[serde(default)]
    pub completed: bool,
    /// `[event, data]` pairs of the `execution_*` events.
    #[serde(default)]
    pub messages: Vec<(String, Value)>,
}

/// One entry of `GET /history/{id}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HistoryEntry {
    /// The queue tuple `[number, prompt_id, prompt, extra_data, outputs_to_execute]`.
    #[serde(default)]
    pub prompt: Value,
    /// Each output node's UI dict, by node id.
    #[serde(default)]
    pub outputs: IndexMap<String, Map<String, Value>>,
    #[serde(default)]
    pub status: Option<HistoryStatus>,
    #[serde(default)]
    pub meta: Value,
}

impl HistoryEntry {
    /// The data of the last `execution_*` message with this name, if any.
    pub fn message(&self, event: &str) -> Option<&Value> {
        self.status
            .as_ref()?
            .messages
            .iter()
            .rev()
            .find(|(name, _)| name == event)
            .map(|(_, data)| data)
    }
}

/// One item of `GET /queue`: `[number, prompt_id, prompt, extra_data, outputs_to_execute]`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueItem {
    pub number: f64,
    pub prompt_id: String,
    /// `extra_data.client_id`, when the submitter set one.
    pub client_id: Option<String>,
}

impl QueueItem {
    fn from_value(v: &Value) -> Option<QueueItem> {
        let a = v.as_array()?;
        Some(QueueItem {
            number: a.first()?.as_f64()?,
            prompt_id: a.get(1)?.as_str()?.to_string(),
            client_id: a
                .get(3)
                .and_then(|e| e.get("client_id"))
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }
}

/// `GET /queue`, with pending items sorted by number (the server sends its raw heap).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueSnapshot {
    pub running: Vec<QueueItem>,
    pub pending: Vec<QueueItem>,
}

impl QueueSnapshot {
    pub(crate) fn from_value(v: &Value) -> Option<QueueSnapshot> {
        let list = |key: &str| -> Option<Vec<QueueItem>> {
            v.get(key)?
                .as_array()?
                .iter()
                .map(QueueItem::from_value)
                .collect()
        };
        let mut pending = list("queue_pending")?;
        pending.sort_by(|a, b| a.number.total_cmp(&b.number));
        Some(QueueSnapshot {
            running: list("queue_running")?,
            pending,
        })
    }

    /// Whether the prompt is running or waiting.
    pub fn contains(&self, prompt_id: &str) -> bool {
        self.is_running(prompt_id) || self.position(prompt_id).is_some()
    }

    pub fn is_running(&self, prompt_id: &str) -> bool {
        self.running.iter().any(|i| i.prompt_id == prompt_id)
    }

    /// 0-based place among pending items.
    pub fn position(&self, prompt_id: &str) -> Option<usize> {
        self.pending.iter().position(|i| i.prompt_id == prompt_id)
    }
}

/// `GET /system_stats`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SystemStats {
    pub system: SystemInfo,
    #[serde(default)]
    pub devices: Vec<DeviceInfo>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SystemInfo {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub ram_total: u64,
    #[serde(default)]
    pub ram_free: u64,
    #[serde(default)]
    pub comfyui_version: Option<String>,
    #[serde(default)]
    pub python_version: Option<String>,
    #[serde(default)]
    pub pytorch_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DeviceInfo {
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub index: Option<u32>,
    #[serde(default)]
    pub vram_total: u64,
    #[serde(default)]
    pub vram_free: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn queue_pending_is_sorted_by_number() {
        let v = json!({"queue_running": [[3, "a", {}, {"client_id": "c"}, ["9"]]],
                       "queue_pending": [[7, "c", {}, {}, []], [5.0, "b", {}, {}, []]]});
        let q = QueueSnapshot::from_value(&v).unwrap();
        assert_eq!(q.running[0].client_id.as_deref(), Some("c"));
        assert_eq!(q.position("b"), Some(0));
        assert_eq!(q.position("c"), Some(1));
        assert!(q.contains("a") && !q.contains("zz"));
        assert!(QueueSnapshot::from_value(&json!({"queue_running": 3})).is_none());
    }

    #[test]
    fn history_entry_decodes_recorded_shape() {
        let v = json!({"prompt": [0, "p", {}, {"client_id": "x"}, ["3"]],
            "outputs": {"3": {"images": [{"filename": "a.png", "subfolder": "", "type": "output"}]}},
            "status": {"status_str": "success", "completed": true, "messages": [["execution_start", {"prompt_id": "p"}], ["execution_success", {"prompt_id": "p"}]]},
            "meta": {}});
        let h: HistoryEntry = serde_json::from_value(v).unwrap();
        assert!(h.message("execution_success").is_some());
        assert!(h.message("execution_error").is_none());
        assert_eq!(h.outputs["3"]["images"][0]["filename"], "a.png");
    }
}
