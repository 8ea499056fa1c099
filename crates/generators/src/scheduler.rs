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
use crate::generator::{GenEvent, GenJob, GenOutcome, Generator, Probe, RunControl};
use crate::job::{now_ms, JobId, JobRecord, JobSpec, JobState, Origin, SavedOutput};
use crate::journal::{Journal, JournalError};

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
        spec: JobSpec,
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
    Gen {
        id: JobId,
        event: GenEvent,
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
            notices: notice_tx,
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
            spec,
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

/// Probes one backend: every `health_interval` while it answers, every
/// `down_probe_interval` while it does not, and at once whenever its connection drops or
/// comes back (the quickest signal that a server died or returned).
async fn health_loop(
    index: usize,
    gen: Arc<dyn Generator>,
    config: SchedulerConfig,
    internal: mpsc::Sender<Internal>,
    cancel: CancellationToken,
) {
    let mut link = gen.connection();
    loop {
        let probe = async {
            match tokio::time::timeout(config.probe_timeout, gen.probe()).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "no answer within {} s",
                    config.probe_timeout.as_secs_f64()
                )),
            }
        };
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = probe => r,
        };
        let link_lost = link.as_ref().is_some_and(|l| !l.borrow().is_up());
        let wait = if result.is_ok() {
            config.health_interval
        } else {
            config.down_probe_interval
        };
        if internal
            .send(Internal::Health {
                backend: index,
                result,
                link_lost,
            })
            .await
            .is_err()
        {
            return;
        }
        let link_changed = async {
            match link.as_mut() {
                Some(l) => {
                    let was_up = l.borrow_and_update().is_up();
                    // Only a change between up and down matters (not every reconnect attempt).
                    l.wait_for(|s| s.is_up() != was_up).await.is_ok()
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            changed = link_changed => {
                if !changed {
                    // The connection is gone for good (the client was dropped): plain probes.
                    link = None;
                }
            }
        }
    }
}

struct Backend {
    gen: Arc<dyn Generator>,
    max_inflight: usize,
    healthy: bool,
    failures: u32,
    last_error: Option<String>,
    probe: Option<Probe>,
    inflight: HashSet<JobId>,
}

impl Backend {
    fn can_take(&self, spec: &JobSpec) -> bool {
        self.healthy && self.inflight.len() < self.max_inflight && self.fits(spec)
    }

    /// Whether it has what the job needs (as of its last probe, healthy or not).
    fn fits(&self, spec: &JobSpec) -> bool {
        self.probe.as_ref().is_some_and(|p| p.accepts(spec))
    }

    fn load(&self) -> (usize, u64) {
        (
            self.inflight.len(),
            self.probe.as_ref().map_or(0, |p| p.queue_remaining),
        )
    }
}

struct Waiting {
    record: JobRecord,
    /// The backend that just failed it, not to be used for the retry.
    excluded: Option<usize>,
    /// Requeued after its backend was lost, with no other backend for it: it fails if no
    /// backend takes it by then.
    lost_deadline: Option<(tokio::time::Instant, String)>,
}

struct Running {
    record: JobRecord,
    backend: usize,
    control: RunControl,
    /// Abandoned because its backend went down: retry rather than report.
    backend_lost: bool,
}

struct Actor {
    config: SchedulerConfig,
    limiter: Limiter,
    backends: Vec<Backend>,
    journal: Arc<dyn Journal>,
    queue: FairQueue,
    waiting: HashMap<JobId, Waiting>,
    running: HashMap<JobId, Running>,
    last_positions: HashMap<JobId, usize>,
    notices: mpsc::Sender<Notice>,
    internal: mpsc::Sender<Internal>,
    tracker: TaskTracker,
    paused: bool,
}

impl Actor {
    fn journal_log(&self, what: &str, r: Result<(), JournalError>) {
        if let Err(e) = r {
            tracing::error!(error = %e, "job journal: {what}");
        }
    }

    /// Important notices wait for room; progress and positions are dropped when the
    /// front-end lags (they are superseded by the next ones anyway).
    async fn notify(&self, n: Notice) {
        let _ = self.notices.send(n).await;
    }

    fn notify_lossy(&self, n: Notice) {
        let _ = self.notices.try_send(n);
    }

    /// Takes a waiting job out of the queue (it is about to end or run).
    fn forget_waiting(&mut self, id: &JobId) -> Option<Waiting> {
        self.queue.remove(id);
        self.last_positions.remove(id);
        self.waiting.remove(id)
    }

    /// Ends a job as failed or cancelled: journal first, then the notice.
    async fn end(&mut self, id: JobId, failure: Option<String>) {
        let (state, notice) = match failure {
            Some(reason) => (
                JobState::Failed {
                    reason: reason.clone(),
                },
                Notice::Failed {
                    id: id.clone(),
                    reason,
                },
            ),
            None => (JobState::Cancelled, Notice::Cancelled { id: id.clone() }),
        };
        self.journal_log(state.name(), self.journal.set_state(&id, &state, now_ms()));
        self.notify(notice).await;
    }

    fn restore(&mut self, records: Vec<JobRecord>) {
        for rec in records {
            match rec.state.clone() {
                JobState::Waiting => self.enqueue(rec, None, false),
                JobState::Running { backend } => {
                    let index = self.backends.iter().position(|b| b.gen.name() == backend);
                    match (index, rec.remote_id.clone()) {
                        (Some(b), Some(remote)) => {
                            tracing::info!(job = %rec.id, backend, "resuming job after restart");
                            self.start_run(rec, b, Some(remote));
                        }
                        _ => {
                            // Never reached the backend, or the backend is gone from the config.
                            self.journal_log(
                                "requeue",
                                self.journal
                                    .set_state(&rec.id, &JobState::Waiting, now_ms()),
                            );
                            self.enqueue(rec, None, false);
                        }
                    }
                }
                JobState::Finished => {
                    self.notify_lossy(Notice::Finished {
                        id: rec.id.clone(),
                        outputs: rec.outputs.clone(),
                    });
                }
                _ => {}
            }
        }
    }

    fn enqueue(&mut self, record: JobRecord, excluded: Option<usize>, front: bool) {
        let owner = record.origin.owner;
        let id = record.id.clone();
        if front {
            self.queue.push_front(owner, id.clone());
        } else {
            self.queue.push(owner, id.clone());
        }
        self.waiting.insert(
            id,
            Waiting {
                record,
                excluded,
                lost_deadline: None,
            },
        );
    }

    fn pending_for(&self, owner: u64) -> usize {
        self.queue.count_for(owner)
            + self
                .running
                .values()
                .filter(|r| r.record.origin.owner == owner)
                .count()
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut internal: mpsc::Receiver<Internal>,
        cancel: CancellationToken,
    ) {
        self.dispatch();
        self.publish_positions();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                Some(cmd) = commands.recv() => self.command(cmd).await,
                Some(msg) = internal.recv() => self.internal(msg).await,
                else => break,
            }
            self.dispatch();
            self.publish_positions();
        }
        // Leave running jobs on their backends; the journal says where to find them.
        for r in self.running.values() {
            r.control.abandon.cancel();
        }
    }

    async fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Submit {
                id,
                spec,
                origin,
                is_admin,
                reply,
            } => {
                let _ = reply.send(self.submit(id, spec, origin, is_admin));
            }
            Command::Cancel {
                id,
                requester,
                is_admin,
                reply,
            } => {
                let r = self.cancel(&id, requester, is_admin).await;
                let _ = reply.send(r);
            }
            Command::Delivered { id, reply } => {
                let _ = reply.send(self.journal.mark_delivered(&id));
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Command::Places { owner, reply } => {
                let positions: HashMap<JobId, usize> = self.queue.positions().into_iter().collect();
                let mut out: Vec<(JobId, JobPlace)> = self
                    .running
                    .iter()
                    .filter(|(_, r)| r.record.origin.owner == owner)
                    .map(|(id, r)| {
                        (
                            id.clone(),
                            JobPlace::Running {
                                backend: self.backends[r.backend].gen.name().to_string(),
                            },
                        )
                    })
                    .collect();
                let mut waiting: Vec<(JobId, JobPlace)> = self
                    .queue
                    .iter()
                    .filter(|(u, _)| *u == owner)
                    .map(|(_, id)| {
                        (
                            id.clone(),
                            JobPlace::Waiting {
                                position: positions.get(id).copied().unwrap_or(0),
                            },
                        )
                    })
                    .collect();
                waiting.sort_by_key(|(_, p)| match p {
                    JobPlace::Waiting { position } => *position,
                    JobPlace::Running { .. } => 0,
                });
                out.extend(waiting);
                let _ = reply.send(out);
            }
            Command::Pause { paused, reply } => {
                self.paused = paused;
                let value = if paused { "1" } else { "0" };
                self.journal_log("pause", self.journal.meta_set(PAUSED_KEY, value));
                let _ = reply.send(());
            }
            Command::Clear { reply } => {
                let ids: Vec<JobId> = self.queue.iter().map(|(_, id)| id.clone()).collect();
                for id in &ids {
                    self.forget_waiting(id);
                    self.end(id.clone(), None).await;
                }
                let _ = reply.send(ids.len());
            }
        }
    }

    /// Why no backend takes this job: a value none offers, or the workflow itself.
    fn no_backend(&self, spec: &JobSpec) -> SubmitError {
        let missing = self
            .backends
            .iter()
            .filter_map(|b| b.probe.as_ref())
            .filter(|p| p.workflows.contains(&spec.workflow))
            .find_map(|p| p.missing_value(spec));
        SubmitError::NoBackend {
            workflow: spec.workflow.clone(),
            missing,
        }
    }

    fn submit(
        &mut self,
        id: JobId,
        spec: JobSpec,
        origin: Origin,
        is_admin: bool,
    ) -> Result<JobId, SubmitError> {
        let all_probed = self.backends.iter().all(|b| b.probe.is_some());
        if all_probed && !self.backends.iter().any(|b| b.fits(&spec)) {
            return Err(self.no_backend(&spec));
        }
        let depth = self.queue.len() + self.running.len();
        self.limiter.admit(
            origin.owner,
            is_admin,
            self.pending_for(origin.owner),
            depth,
        )?;
        let mut record = JobRecord {
            id,
            seq: 0,
            spec,
            origin,
            state: JobState::Waiting,
            remote_id: None,
            outputs: Vec::new(),
            attempts: 0,
            created_ms: now_ms(),
            started_ms: None,
            finished_ms: None,
        };
        record.seq = self.journal.insert(&record)?;
        let id = record.id.clone();
        self.enqueue(record, None, false);
        Ok(id)
    }

    async fn cancel(
        &mut self,
        id: &JobId,
        requester: u64,
        is_admin: bool,
    ) -> Result<(), CancelError> {
        let allowed = |owner: u64| is_admin || owner == requester;
        if let Some(w) = self.waiting.get(id) {
            if !allowed(w.record.origin.owner) {
                return Err(CancelError::NotOwner);
            }
            self.forget_waiting(id);
            self.end(id.clone(), None).await;
            return Ok(());
        }
        if let Some(r) = self.running.get(id) {
            if !allowed(r.record.origin.owner) {
                return Err(CancelError::NotOwner);
            }
            // The generator deletes or interrupts it on the backend; its outcome follows.
            r.control.cancel.cancel();
            return Ok(());
        }
        match self.journal.get(id) {
            Ok(Some(rec)) if !allowed(rec.origin.owner) => Err(CancelError::NotOwner),
            Ok(Some(rec)) => Err(CancelError::AlreadyOver(rec.state.name())),
            _ => Err(CancelError::NotFound(id.clone())),
        }
    }

    fn status(&self) -> SchedulerStatus {
        SchedulerStatus {
            backends: self
                .backends
                .iter()
                .map(|b| BackendStatus {
                    name: b.gen.name().to_string(),
                    healthy: b.healthy,
                    last_error: b.last_error.clone(),
                    inflight: b.inflight.len(),
                    queue_remaining: b.probe.as_ref().map_or(0, |p| p.queue_remaining),
                    detail: b
                        .probe
                        .as_ref()
                        .map_or_else(|| "not reached yet".into(), |p| p.detail.clone()),
                    workflows: {
                        let mut w: Vec<String> = b
                            .probe
                            .as_ref()
                            .map(|p| p.workflows.iter().cloned().collect())
                            .unwrap_or_default();
                        w.sort();
                        w
                    },
                    choices: b
                        .probe
                        .as_ref()
                        .map(|p| p.choices.clone())
                        .unwrap_or_default(),
                })
                .collect(),
            waiting: self.queue.len(),
            running: self.running.len(),
            paused: self.paused,
        }
    }

    /// Gives jobs to backends while any can take one.
    fn dispatch(&mut self) {
        if self.paused {
            return;
        }
        loop {
            let backends = &self.backends;
            let waiting = &self.waiting;
            let pick = |id: &JobId| -> Option<usize> {
                let w = waiting.get(id)?;
                backends
                    .iter()
                    .enumerate()
                    .filter(|(i, b)| Some(*i) != w.excluded && b.can_take(&w.record.spec))
                    .min_by_key(|(_, b)| b.load())
                    .map(|(i, _)| i)
            };
            let Some((_, id)) = self.queue.pop_next(|id| pick(id).is_some()) else {
                return;
            };
            let Some(backend) = pick(&id) else { return };
            // pop_next already took it out of the queue.
            self.last_positions.remove(&id);
            let Some(w) = self.waiting.remove(&id) else {
                continue;
            };
            self.start_run(w.record, backend, None);
        }
    }

    fn start_run(&mut self, mut record: JobRecord, backend: usize, remote_id: Option<String>) {
        let name = self.backends[backend].gen.name().to_string();
        let id = record.id.clone();
        let state = JobState::Running {
            backend: name.clone(),
        };
        if remote_id.is_none() {
            record.attempts += 1;
            self.journal_log(
                "attempt",
                self.journal.set_remote(&id, None, record.attempts),
            );
        }
        self.journal_log("start", self.journal.set_state(&id, &state, now_ms()));
        record.state = state;
        let control = RunControl::default();
        let job = GenJob {
            id: id.clone(),
            spec: record.spec.clone(),
            remote_id,
            created_ms: record.created_ms,
        };
        let (ev_tx, mut ev_rx) = mpsc::channel(256);
        let run = self.backends[backend].gen.run(job, ev_tx, control.clone());
        let internal = self.internal.clone();
        let job_id = id.clone();
        // Every line logged while the job runs carries its id and backend.
        let span =
            tracing::info_span!("job", job = %id, backend = %self.backends[backend].gen.name());
        self.tracker.spawn(tracing::Instrument::instrument(
            async move {
                let forward = async {
                    while let Some(event) = ev_rx.recv().await {
                        if internal
                            .send(Internal::Gen {
                                id: job_id.clone(),
                                event,
                            })
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                };
                let (outcome, ()) = tokio::join!(run, forward);
                let _ = internal
                    .send(Internal::Done {
                        id: job_id,
                        outcome,
                    })
                    .await;
            },
            span,
        ));
        self.backends[backend].inflight.insert(id.clone());
        self.running.insert(
            id.clone(),
            Running {
                record,
                backend,
                control,
                backend_lost: false,
            },
        );
        self.notify_lossy(Notice::Started { id, backend: name });
    }

    async fn internal(&mut self, msg: Internal) {
        match msg {
            Internal::Gen { id, event } => match event {
                GenEvent::Submitting { remote_id } => {
                    if let Some(r) = self.running.get_mut(&id) {
                        r.record.remote_id = Some(remote_id.clone());
                        let attempts = r.record.attempts;
                        self.journal_log(
                            "remote id",
                            self.journal.set_remote(&id, Some(&remote_id), attempts),
                        );
                    }
                }
                GenEvent::Plan(plan) => self.notify_lossy(Notice::Plan { id, plan }),
                GenEvent::Progress(update) => self.notify_lossy(Notice::Progress { id, update }),
            },
            Internal::Done { id, outcome } => self.finished(id, outcome).await,
            Internal::Health {
                backend,
                result,
                link_lost,
            } => {
                self.health(backend, result, link_lost);
                self.fail_unrunnable().await;
                self.expire_lost().await;
            }
        }
    }

    /// Once every backend has answered a probe, a waiting job whose workflow none of them can
    /// run would wait forever: fail it with the reason instead.
    async fn fail_unrunnable(&mut self) {
        if self.backends.iter().any(|b| b.probe.is_none()) {
            return;
        }
        let stuck: Vec<(JobId, String)> = self
            .waiting
            .iter()
            .filter(|(_, w)| {
                !self
                    .backends
                    .iter()
                    .enumerate()
                    .any(|(i, b)| Some(i) != w.excluded && b.fits(&w.record.spec))
            })
            .map(|(id, w)| (id.clone(), self.no_backend(&w.record.spec).to_string()))
            .collect();
        for (id, reason) in stuck {
            self.forget_waiting(&id);
            self.end(id, Some(reason)).await;
        }
    }

    async fn finished(&mut self, id: JobId, outcome: GenOutcome) {
        let Some(run) = self.running.remove(&id) else {
            return;
        };
        let backend_name = self.backends[run.backend].gen.name().to_string();
        self.backends[run.backend].inflight.remove(&id);
        let outcome = match outcome {
            GenOutcome::Abandoned if run.backend_lost => GenOutcome::Failed {
                reason: format!("backend {backend_name} stopped answering"),
                retryable: true,
            },
            other => other,
        };
        match outcome {
            GenOutcome::Succeeded(outputs) => {
                self.journal_log("finish", self.journal.finish(&id, &outputs, now_ms()));
                self.notify(Notice::Finished { id, outputs }).await;
            }
            GenOutcome::Failed { reason, retryable } => {
                let workflow = &run.record.spec.workflow;
                let elsewhere = self
                    .backends
                    .iter()
                    .enumerate()
                    .any(|(i, b)| i != run.backend && b.fits(&run.record.spec));
                let again = retryable && run.record.attempts < self.config.max_attempts;
                if again && (elsewhere || run.backend_lost) {
                    tracing::warn!(job = %id, backend = backend_name, %reason, elsewhere, "running the job again");
                    let mut record = run.record;
                    record.state = JobState::Waiting;
                    record.remote_id = None;
                    self.journal_log(
                        "retry",
                        self.journal.set_state(&id, &JobState::Waiting, now_ms()),
                    );
                    self.journal_log("retry", self.journal.set_remote(&id, None, record.attempts));
                    let notice = if elsewhere {
                        self.enqueue(record, Some(run.backend), true);
                        format!("{reason}; running it again on another backend")
                    } else {
                        // Only this backend can run it: wait for it to come back, bounded.
                        let wait = self.config.lost_job_wait;
                        self.enqueue(record, None, true);
                        if let Some(w) = self.waiting.get_mut(&id) {
                            w.lost_deadline = Some((
                                tokio::time::Instant::now() + wait,
                                format!(
                                    "{reason}, and it did not come back within {}",
                                    fmt_wait(wait)
                                ),
                            ));
                        }
                        format!(
                            "{reason}; the job runs again when {backend_name} is back (waiting up to {})",
                            fmt_wait(wait)
                        )
                    };
                    self.notify(Notice::Retrying { id, reason: notice }).await;
                } else {
                    let reason = if retryable && !elsewhere && self.backends.len() > 1 {
                        format!("{reason} (no other backend can run {workflow})")
                    } else {
                        reason
                    };
                    self.end(id, Some(reason)).await;
                }
            }
            GenOutcome::Cancelled => self.end(id, None).await,
            GenOutcome::Abandoned => {
                // Shutdown: the journal still says Running, so the next start resumes it.
            }
        }
    }

    fn health(&mut self, index: usize, result: Result<Probe, String>, link_lost: bool) {
        let down_after = self.config.down_after_failures.max(1);
        let b = &mut self.backends[index];
        match result {
            Ok(probe) => {
                if !b.healthy {
                    tracing::info!(
                        backend = b.gen.name(),
                        detail = probe.detail,
                        "backend healthy"
                    );
                }
                b.healthy = true;
                b.failures = 0;
                b.last_error = None;
                b.probe = Some(probe);
            }
            Err(e) => {
                b.failures += 1;
                // A dropped connection plus a failed probe is proof enough.
                if b.healthy && (link_lost || b.failures >= down_after) {
                    tracing::warn!(backend = b.gen.name(), error = %e, link_lost, "backend down; its jobs run again");
                    b.healthy = false;
                    for id in b.inflight.clone() {
                        if let Some(r) = self.running.get_mut(&id) {
                            r.backend_lost = true;
                            r.control.abandon.cancel();
                        }
                    }
                } else if b.failures == 1 {
                    tracing::debug!(backend = b.gen.name(), error = %e, "backend probe failed");
                }
                self.backends[index].last_error = Some(e);
            }
        }
    }

    /// Jobs waiting for a lost backend that did not come back in time fail, with the reason.
    async fn expire_lost(&mut self) {
        let now = tokio::time::Instant::now();
        let expired: Vec<(JobId, String)> = self
            .waiting
            .iter()
            .filter_map(|(id, w)| {
                let (deadline, reason) = w.lost_deadline.as_ref()?;
                (*deadline <= now).then(|| (id.clone(), reason.clone()))
            })
            .collect();
        for (id, reason) in expired {
            self.forget_waiting(&id);
            self.end(id, Some(reason)).await;
        }
    }

    fn publish_positions(&mut self) {
        for (id, pos) in self.queue.positions() {
            if self.last_positions.get(&id) != Some(&pos) {
                self.last_positions.insert(id.clone(), pos);
                self.notify_lossy(Notice::Queued { id, position: pos });
            }
        }
    }
}
