//! Jobs as the scheduler, the journal and the generators see them. No Discord types: the
//! origin is plain ids the bot gives and reads back.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A job's id: 16 lowercase hex characters, short enough for Discord custom ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub String);

impl JobId {
    pub fn new() -> JobId {
        JobId(format!("{:016x}", rand::random::<u64>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for JobId {
    fn default() -> Self {
        JobId::new()
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who asked and where the answer goes (Discord ids as plain numbers).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub owner: u64,
    pub guild: Option<u64>,
    pub channel: Option<u64>,
    /// The progress message, edited into the result.
    pub message: Option<u64>,
    /// Delivered by direct message (`channel` is the DM) for a job asked for in `guild`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub private: bool,
}

/// An input file kept on disk until the job is over; uploaded to whichever backend runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    /// The manifest parameter it fills.
    pub param: String,
    pub path: PathBuf,
    pub mime: String,
}

/// What to run: a workflow and every parameter's final value (defaults and the seed resolved
/// at submission, so a retry or a restart makes the same thing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub workflow: String,
    pub values: Map<String, Value>,
    #[serde(default)]
    pub inputs: Vec<InputFile>,
    /// The job this one was derived from (upscale, vary, ...), for linking results.
    #[serde(default)]
    pub parent: Option<JobId>,
    /// Where each value came from, for Info (a value not listed was given by whoever
    /// started the job: a button, the CLI, an older record).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, ValueSource>,
    /// Texts with wildcards as typed, before the picks (a reroll picks again).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub templates: BTreeMap<String, String>,
}

/// Where a job's value came from, highest precedence first: a command's option, an inline
/// flag, a style, the member's settings, the server's defaults, the workflow's default, a
/// random pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueSource {
    Option,
    Flag,
    Style,
    Member,
    Server,
    Workflow,
    Random,
    /// Written by a newer version.
    #[serde(other)]
    Unknown,
}

impl ValueSource {
    /// How Info names it.
    pub fn label(self) -> &'static str {
        match self {
            ValueSource::Option => "command option",
            ValueSource::Flag => "inline flag",
            ValueSource::Style => "style",
            ValueSource::Member => "your settings",
            ValueSource::Server => "server default",
            ValueSource::Workflow => "workflow default",
            ValueSource::Random => "random",
            ValueSource::Unknown => "unknown",
        }
    }
}

impl JobSpec {
    /// The prompt text, when the job has one.
    pub fn prompt(&self) -> Option<&str> {
        self.values.get("prompt").and_then(Value::as_str)
    }
}

/// Where a job is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobState {
    /// In our queue.
    Waiting,
    /// Given to a backend (uploading inputs, or queued inside it).
    Running {
        backend: String,
    },
    /// Done; outputs saved; not yet shown to the user.
    Finished,
    /// Shown to the user: nothing more to do.
    Delivered,
    Failed {
        reason: String,
    },
    Cancelled,
}

impl JobState {
    /// Whether the job still needs the scheduler (after a restart too).
    pub fn is_active(&self) -> bool {
        matches!(self, JobState::Waiting | JobState::Running { .. })
    }

    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobState::Delivered | JobState::Failed { .. } | JobState::Cancelled
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            JobState::Waiting => "waiting",
            JobState::Running { .. } => "running",
            JobState::Finished => "finished",
            JobState::Delivered => "delivered",
            JobState::Failed { .. } => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

/// What kind of file an output is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    Image,
    Animation,
    Video,
    Audio,
    /// Text a node showed (`PreviewAny`, a captioner), saved as a `.txt` file.
    Text,
    Other,
}

/// One saved output file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedOutput {
    pub path: PathBuf,
    pub kind: OutputKind,
    pub bytes: u64,
    /// The sidecar JSON with every parameter, the workflow and the seed.
    pub sidecar: Option<PathBuf>,
}

/// Everything the journal keeps about a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: JobId,
    /// Order of submission; waiting jobs are re-queued in this order after a restart.
    pub seq: i64,
    pub spec: JobSpec,
    pub origin: Origin,
    pub state: JobState,
    /// The backend's id for the job (ComfyUI's prompt_id), once submitted there.
    pub remote_id: Option<String>,
    pub outputs: Vec<SavedOutput>,
    /// Backend attempts so far (a job is retried once when its backend goes down).
    pub attempts: u32,
    /// Unix milliseconds.
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Most pixels a side an upscale may produce.
pub const MAX_UPSCALE_SIDE: u32 = 16384;

/// The exact size an upscale by `factor` must end at, whatever the model's own scale is
/// (the upscale workflow resizes to it after the model).
pub fn upscale_target(width: u32, height: u32, factor: f64) -> Option<(u32, u32)> {
    let scale = |x: u32| (f64::from(x) * factor).round();
    let (w, h) = (scale(width), scale(height));
    let fits = |v: f64| v >= 1.0 && v <= f64::from(MAX_UPSCALE_SIDE);
    (factor.is_finite() && factor > 0.0 && fits(w) && fits(h)).then_some((w as u32, h as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upscale_targets() {
        assert_eq!(upscale_target(40, 24, 2.0), Some((80, 48)));
        assert_eq!(upscale_target(333, 100, 1.5), Some((500, 150)));
        assert_eq!(upscale_target(10_000, 10, 2.0), None);
        assert_eq!(upscale_target(10, 10, 0.0), None);
        assert_eq!(upscale_target(10, 10, f64::NAN), None);
        let id = JobId::new();
        assert_eq!(id.as_str().len(), 16);
        assert!(id.as_str().chars().all(|c| c.is_ascii_hexdigit()));
    }
}
