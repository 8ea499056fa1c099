//! The scheduler: a fair queue in front of the backends.
//!
//! One actor task owns all state; the [`Scheduler`] handle talks to it over a channel. It
//! dispatches each user's oldest job in round-robin order to the least-loaded healthy backend
//! that can run the workflow (at most `max_inflight_per_backend` each), keeps every waiting
//! job's position current, cancels in every state, probes backend health, retries a job once
//! elsewhere when its backend fails, and journals every step so a restart resumes everything.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use progress::{JobPlan, Update};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use validation::{Limiter, LimitsConfig, Refusal};

use crate::fair_queue::FairQueue;
use crate::generator::{GenOutcome, Generator, Probe};
use crate::job::{JobId, JobSpec, Origin, SavedOutput};
use crate::journal::{Journal, JournalError};

mod actor;
mod health;

use actor::{Actor, Backend};
use health::health_loop;

/// Notices queued for the front-end before the actor waits for it to catch up.
const NOTICE_BUFFER: usize = 4096;
const COMMAND_BUFFER: usize = 256;
/// Journal meta key: "1" while an admin has paused dispatching.
const PAUSED_KEY: &str = "scheduler_paused";

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Jobs given to one backend at once; 1 keeps positions and cancels exact.
    pub max_inflight_per_backend: usize,
    /// Per-backend overrides of `max_inflight_per_backend`, by backend name.
    pub max_inflight: HashMap<String, usize>,
    /// Backend attempts per job: 2 means one retry (elsewhere, or on the same backend once it
    /// is back).
    pub max_attempts: u32,
    /// Probe period of a healthy backend.
    pub health_interval: Duration,
    /// A probe without an answer in this long has failed.
    pub probe_timeout: Duration,
    /// Probe period of a backend that failed its last probe: short, so one that answers again
    /// is back in service within seconds.
    pub down_probe_interval: Duration,
    /// Failed probes in a row before a backend is taken out of rotation. A lost connection
    /// (the WebSocket dropped) plus one failed probe is enough.
    pub down_after_failures: u32,
    /// A job whose backend was lost, and that no other backend can run, waits this long for
    /// it to come back before it fails.
    pub lost_job_wait: Duration,
    pub limits: LimitsConfig,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_inflight_per_backend: 1,
            max_inflight: HashMap::new(),
            max_attempts: 2,
            health_interval: Duration::from_secs(10),
            probe_timeout: Duration::from_secs(3),
            down_probe_interval: Duration::from_secs(2),
            down_after_failures: 2,
            lost_job_wait: Duration::from_secs(300),
            limits: LimitsConfig::default(),
        }
    }
}

/// What happened to a job, for the front-end. Look the job up in the journal for its origin.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    Queued {
        id: JobId,
        position: usize,
    },
    Started {
        id: JobId,
        backend: String,
    },
    Plan {
        id: JobId,
        plan: JobPlan,
    },
    Progress {
        id: JobId,
        update: Update,
    },
    Retrying {
        id: JobId,
        reason: String,
    },
    /// Outputs saved; show them, then call [`Scheduler::delivered`].
    Finished {
        id: JobId,
        outputs: Vec<SavedOutput>,
    },
    Failed {
        id: JobId,
        reason: String,
    },
    Cancelled {
        id: JobId,
    },
}

impl Notice {
    pub fn id(&self) -> &JobId {
        match self {
            Notice::Queued { id, .. }
            | Notice::Started { id, .. }
            | Notice::Plan { id, .. }
            | Notice::Progress { id, .. }
            | Notice::Retrying { id, .. }
            | Notice::Finished { id, .. }
            | Notice::Failed { id, .. }
            | Notice::Cancelled { id } => id,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("{0}")]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Every backend answered, and none has what the job needs.
    #[error("{}", no_backend_message(workflow, missing.as_deref()))]
    NoBackend {
        workflow: String,
        /// The value no backend offers (`checkpoint "x.safetensors"`), when that is the reason.
        missing: Option<String>,
    },
    #[error("the scheduler has stopped")]
    Closed,
}

/// "5 min", "90 s".
fn fmt_wait(d: Duration) -> String {
    let secs = d.as_secs_f64().ceil() as u64;
    if secs >= 120 && secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

fn no_backend_message(workflow: &str, missing: Option<&str>) -> String {
    match missing {
        Some(m) => format!("no backend offers {m} for workflow {workflow}; choose another value"),
        None => format!(
            "no backend can run workflow {workflow} right now (missing nodes or model files); an admin can run `comfycord check`"
        ),
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CancelError {
    #[error("there is no job {0}")]
    NotFound(JobId),
    #[error("only the person who started this job or an admin can cancel it")]
    NotOwner,
    #[error("this job is already {0}")]
    AlreadyOver(&'static str),
    #[error("the scheduler has stopped")]
    Closed,
}

/// One backend as `/status` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendStatus {
    pub name: String,
    pub healthy: bool,
    /// Why the last probe failed, while it is failing.
    pub last_error: Option<String>,
    pub inflight: usize,
    pub queue_remaining: u64,
    pub detail: String,
    pub workflows: Vec<String>,
    /// Per workflow and parameter, the values this backend offers (checkpoints, LoRAs, ...).
    pub choices: HashMap<String, HashMap<String, Vec<serde_json::Value>>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerStatus {
    pub backends: Vec<BackendStatus>,
    pub waiting: usize,
    pub running: usize,
    pub paused: bool,
}

/// Where one of a user's jobs is.
#[derive(Debug, Clone, PartialEq)]
pub enum JobPlace {
    Waiting { position: usize },
    Running { backend: String },
}

enum Command {
    Submit {
        id: JobId,
        spec: Box<JobSpec>,
        origin: Origin,
        is_admin: bool,
        reply: oneshot::Sender<Result<JobId, SubmitError>>,
    },
    Cancel {
        id: JobId,
        requester: u64,
        is_admin: bool,
        reply: oneshot::Sender<Result<(), CancelError>>,
    },
    Delivered {
        id: JobId,
        reply: oneshot::Sender<Result<bool, JournalError>>,
    },
    Status {
        reply: oneshot::Sender<SchedulerStatus>,
    },
    Places {
        owner: u64,
        reply: oneshot::Sender<Vec<(JobId, JobPlace)>>,
    },
    Pause {
        paused: bool,
        reply: oneshot::Sender<()>,
    },
    /// Cancels every waiting job; returns how many.
    Clear { reply: oneshot::Sender<usize> },
}

enum Internal {
    /// The backend took the job under this id: journal it, so a restart can reattach.
    Submitted {
        id: JobId,
        remote_id: String,
    },
    Done {
        id: JobId,
        outcome: GenOutcome,
    },
    Health {
        backend: usize,
        result: Result<Probe, String>,
        /// The backend's standing connection was down when the probe ended.
        link_lost: bool,
    },
}

/// A clonable handle to the scheduler task.
#[derive(Clone, Debug)]
pub struct Scheduler {
    commands: mpsc::Sender<Command>,
}

async fn ask<T>(
    tx: &mpsc::Sender<Command>,
    make: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Option<T> {
    let (reply, rx) = oneshot::channel();
    tx.send(make(reply)).await.ok()?;
    rx.await.ok()
}

impl Scheduler {
    /// Restores unfinished jobs from the journal and starts the scheduler and one health
    /// prober per backend, all owned by `tracker` and stopped by `cancel`. On stop, running
    /// jobs are left running on their backends and resumed by the next start.
    pub fn start(
        config: SchedulerConfig,
        backends: Vec<Arc<dyn Generator>>,
        journal: Arc<dyn Journal>,
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<(Scheduler, mpsc::Receiver<Notice>), JournalError> {
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_BUFFER);
        let (notice_tx, notice_rx) = mpsc::channel(NOTICE_BUFFER);
        let (internal_tx, internal_rx) = mpsc::channel(NOTICE_BUFFER);
        let restored = journal.unfinished()?;
        // An admin's pause outlives a restart.
        let paused = journal.meta_get(PAUSED_KEY)?.as_deref() == Some("1");
        if paused {
            tracing::warn!(
                "dispatching is paused (by an admin before the restart); /admin resume starts it"
            );
        }
        for (index, gen) in backends.iter().enumerate() {
            tracker.spawn(health_loop(
                index,
                gen.clone(),
                config.clone(),
                internal_tx.clone(),
                cancel.clone(),
            ));
        }
        let mut actor = Actor {
            limiter: Limiter::new(config.limits.clone()),
            config: config.clone(),
            backends: backends
                .into_iter()
                .map(|gen| Backend {
                    max_inflight: config
                        .max_inflight
                        .get(gen.name())
                        .copied()
                        .unwrap_or(config.max_inflight_per_backend)
                        .max(1),
                    gen,
                    healthy: false,
                    failures: 0,
                    last_error: None,
                    probe: None,
                    inflight: HashSet::new(),
                })
                .collect(),
            journal,
            queue: FairQueue::new(),
            waiting: HashMap::new(),
            running: HashMap::new(),
            last_positions: HashMap::new(),
            published_generation: None,
            notices: notice_tx,
            outbox: Vec::new(),
            internal: internal_tx,
            tracker: tracker.clone(),
            paused,
        };
        actor.restore(restored);
        tracker.spawn(actor.run(cmd_rx, internal_rx, cancel));
        Ok((Scheduler { commands: cmd_tx }, notice_rx))
    }

    /// Queues a job after the limits allow it. Admins bypass limits.
    pub async fn submit(
        &self,
        spec: JobSpec,
        origin: Origin,
        is_admin: bool,
    ) -> Result<JobId, SubmitError> {
        self.submit_as(JobId::new(), spec, origin, is_admin).await
    }

    /// [`Scheduler::submit`] with an id chosen by the caller, so a front-end can route the
    /// job's first notices before `submit` returns.
    pub async fn submit_as(
        &self,
        id: JobId,
        spec: JobSpec,
        origin: Origin,
        is_admin: bool,
    ) -> Result<JobId, SubmitError> {
        ask(&self.commands, |reply| Command::Submit {
            id,
            spec: Box::new(spec),
            origin,
            is_admin,
            reply,
        })
        .await
        .unwrap_or(Err(SubmitError::Closed))
    }

    /// Cancels a waiting or running job. Only its owner or an admin may.
    pub async fn cancel(
        &self,
        id: &JobId,
        requester: u64,
        is_admin: bool,
    ) -> Result<(), CancelError> {
        ask(&self.commands, |reply| Command::Cancel {
            id: id.clone(),
            requester,
            is_admin,
            reply,
        })
        .await
        .unwrap_or(Err(CancelError::Closed))
    }

    /// Records that a finished job was shown to its user; false if it already had been.
    pub async fn delivered(&self, id: &JobId) -> Result<bool, JournalError> {
        ask(&self.commands, |reply| Command::Delivered {
            id: id.clone(),
            reply,
        })
        .await
        .unwrap_or(Ok(false))
    }

    pub async fn status(&self) -> Option<SchedulerStatus> {
        ask(&self.commands, |reply| Command::Status { reply }).await
    }

    /// One user's waiting and running jobs with their places.
    pub async fn places(&self, owner: u64) -> Vec<(JobId, JobPlace)> {
        ask(&self.commands, |reply| Command::Places { owner, reply })
            .await
            .unwrap_or_default()
    }

    /// Stops (or restarts) dispatching; waiting jobs stay queued.
    /// Stops (or restarts) dispatching; returns once it is recorded, so a restart right
    /// after keeps it.
    pub async fn pause(&self, paused: bool) {
        let _ = ask(&self.commands, |reply| Command::Pause { paused, reply }).await;
    }

    /// Cancels every waiting job (running ones continue); returns how many were removed.
    pub async fn clear(&self) -> usize {
        ask(&self.commands, |reply| Command::Clear { reply })
            .await
            .unwrap_or(0)
    }
}
