//! One trait for every backend kind (ComfyUI over HTTP, Cosmos over SSH).

use std::collections::{HashMap, HashSet};

use futures_util::future::BoxFuture;
use progress::JobPlan;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::job::{JobId, JobSpec, SavedOutput};

/// A job as a generator gets it.
#[derive(Debug, Clone)]
pub struct GenJob {
    pub id: JobId,
    pub spec: JobSpec,
    /// Set when resuming after a restart: the backend's id of the job already queued there.
    pub remote_id: Option<String>,
    pub created_ms: i64,
}

/// What a generator reports while it runs a job.
#[derive(Debug, Clone, PartialEq)]
pub enum GenEvent {
    /// The backend's id for the job, sent BEFORE it is queued there, so the journal has it
    /// even if the process dies right after.
    Submitting {
        remote_id: String,
    },
    /// What the job consists of, for the progress display.
    Plan(JobPlan),
    Progress(progress::Update),
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum GenOutcome {
    Succeeded(Vec<SavedOutput>),
    /// `retryable`: the backend failed, not the job, so another backend may succeed.
    Failed {
        reason: String,
        retryable: bool,
    },
    Cancelled,
    /// The run was abandoned (shutdown, or its backend declared down); the remote job was
    /// left alone so it can be resumed or retried.
    Abandoned,
}

/// Tokens a run watches.
#[derive(Debug, Clone, Default)]
pub struct RunControl {
    /// The user cancelled: stop the job on the backend and report `Cancelled`.
    pub cancel: CancellationToken,
    /// Stop following without touching the backend: report `Abandoned`.
    pub abandon: CancellationToken,
}

/// A health probe's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Workflows this backend can run (every node class and input present).
    pub workflows: HashSet<String>,
    /// For a workflow's choice parameters backed by a server list (checkpoints, LoRAs,
    /// upscale models, samplers): the values this backend offers. A job is sent only where
    /// the values it uses are offered.
    pub choices: HashMap<String, HashMap<String, Vec<serde_json::Value>>>,
    /// Jobs queued or running inside the backend, from any client.
    pub queue_remaining: u64,
    /// One line for `/status` (version, devices, free VRAM).
    pub detail: String,
}

impl Probe {
    /// Whether this backend can run this job: its workflow, and every listed value it uses.
    pub fn accepts(&self, spec: &JobSpec) -> bool {
        self.workflows.contains(&spec.workflow) && self.missing_value(spec).is_none()
    }

    /// The first value the job uses that this backend does not offer, as `param "value"`.
    pub fn missing_value(&self, spec: &JobSpec) -> Option<String> {
        let lists = self.choices.get(&spec.workflow)?;
        lists.iter().find_map(|(param, offered)| {
            let v = spec.values.get(param)?;
            let offered = offered.iter().any(|o| validation::params::same_value(o, v));
            (!offered).then(|| format!("{param} {v}"))
        })
    }
}

/// A backend that runs jobs.
pub trait Generator: Send + Sync + 'static {
    fn name(&self) -> &str;

    /// Runs (or with `job.remote_id`, resumes) a job to its end, reporting on `events`.
    fn run(
        &self,
        job: GenJob,
        events: mpsc::Sender<GenEvent>,
        control: RunControl,
    ) -> BoxFuture<'static, GenOutcome>;

    /// Asks the backend how it is.
    fn probe(&self) -> BoxFuture<'static, Result<Probe, String>>;

    /// The state of a standing connection to the backend, when it keeps one (ComfyUI's
    /// WebSocket): its drop is the first sign of a dead server, its return of a live one.
    fn connection(&self) -> Option<tokio::sync::watch::Receiver<core_comfyui::ConnectionState>> {
        None
    }
}
