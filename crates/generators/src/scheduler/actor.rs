//! The actor that owns the scheduler's state: the fair queue, waiting and running jobs,
//! backends and their load. Only it touches them; the handle sends it commands.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use validation::Limiter;

use super::{
    fmt_wait, BackendStatus, CancelError, Command, Internal, JobPlace, Notice, SchedulerConfig,
    SchedulerStatus, SubmitError, PAUSED_KEY,
};
use crate::fair_queue::FairQueue;
use crate::generator::{GenEvent, GenJob, GenOutcome, Generator, Probe, RunControl};
use crate::job::{now_ms, JobId, JobRecord, JobSpec, JobState, Origin};
use crate::journal::{Journal, JournalError};

pub(super) struct Backend {
    pub(super) gen: Arc<dyn Generator>,
    pub(super) max_inflight: usize,
    pub(super) healthy: bool,
    pub(super) failures: u32,
    pub(super) last_error: Option<String>,
    pub(super) probe: Option<Probe>,
    pub(super) inflight: HashSet<JobId>,
}

impl Backend {
    pub(super) fn can_take(&self, spec: &JobSpec) -> bool {
        self.healthy && self.inflight.len() < self.max_inflight && self.fits(spec)
    }

    /// Whether it has what the job needs (as of its last probe, healthy or not).
    pub(super) fn fits(&self, spec: &JobSpec) -> bool {
        self.probe.as_ref().is_some_and(|p| p.accepts(spec))
    }

    pub(super) fn load(&self) -> (usize, u64) {
        (
            self.inflight.len(),
            self.probe.as_ref().map_or(0, |p| p.queue_remaining),
        )
    }
}

pub(super) struct Waiting {
    pub(super) record: JobRecord,
    /// The backend that just failed it, not to be used for the retry.
    pub(super) excluded: Option<usize>,
    /// Requeued after its backend was lost, with no other backend for it: it fails if no
    /// backend takes it by then.
    pub(super) lost_deadline: Option<(tokio::time::Instant, String)>,
}

pub(super) struct Running {
    pub(super) record: JobRecord,
    pub(super) backend: usize,
    pub(super) control: RunControl,
    /// Abandoned because its backend went down: retry rather than report.
    pub(super) backend_lost: bool,
}

pub(super) struct Actor {
    pub(super) config: SchedulerConfig,
    pub(super) limiter: Limiter,
    pub(super) backends: Vec<Backend>,
    pub(super) journal: Arc<dyn Journal>,
    pub(super) queue: FairQueue,
    pub(super) waiting: HashMap<JobId, Waiting>,
    pub(super) running: HashMap<JobId, Running>,
    pub(super) last_positions: HashMap<JobId, usize>,
    /// The queue generation whose places were last published.
    pub(super) published_generation: Option<u64>,
    pub(super) notices: mpsc::Sender<Notice>,
    /// Results found finished in the journal at startup, sent (waiting for room) before the
    /// actor takes its first message.
    pub(super) outbox: Vec<Notice>,
    pub(super) internal: mpsc::Sender<Internal>,
    pub(super) tracker: TaskTracker,
    pub(super) paused: bool,
}

impl Actor {
    pub(super) fn journal_log(&self, what: &str, r: Result<(), JournalError>) {
        if let Err(e) = r {
            tracing::error!(error = %e, "job journal: {what}");
        }
    }

    /// Every notice but progress and positions waits for room; those two are dropped when the
    /// front-end lags (the next ones supersede them anyway).
    pub(super) async fn notify(&self, n: Notice) {
        let _ = self.notices.send(n).await;
    }

    pub(super) async fn flush_outbox(&mut self) {
        for n in std::mem::take(&mut self.outbox) {
            self.notify(n).await;
        }
    }

    pub(super) fn notify_lossy(&self, n: Notice) {
        let _ = self.notices.try_send(n);
    }

    /// Takes a waiting job out of the queue (it is about to end or run).
    pub(super) fn forget_waiting(&mut self, id: &JobId) -> Option<Waiting> {
        self.queue.remove(id);
        self.last_positions.remove(id);
        self.waiting.remove(id)
    }

    /// Ends a job as failed or cancelled: journal first, then the notice.
    pub(super) async fn end(&mut self, id: JobId, failure: Option<String>) {
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

    pub(super) fn restore(&mut self, records: Vec<JobRecord>) {
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
                    self.outbox.push(Notice::Finished {
                        id: rec.id.clone(),
                        outputs: rec.outputs.clone(),
                    });
                }
                _ => {}
            }
        }
    }

    pub(super) fn enqueue(&mut self, record: JobRecord, excluded: Option<usize>, front: bool) {
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

    pub(super) fn pending_for(&self, owner: u64) -> usize {
        self.queue.count_for(owner)
            + self
                .running
                .values()
                .filter(|r| r.record.origin.owner == owner)
                .count()
    }

    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut internal: mpsc::Receiver<Internal>,
        cancel: CancellationToken,
    ) {
        self.dispatch();
        self.flush_outbox().await;
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

    pub(super) async fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Submit {
                id,
                spec,
                origin,
                is_admin,
                reply,
            } => {
                let _ = reply.send(self.submit(id, *spec, origin, is_admin));
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
    pub(super) fn no_backend(&self, spec: &JobSpec) -> SubmitError {
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

    pub(super) fn submit(
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

    pub(super) async fn cancel(
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

    pub(super) fn status(&self) -> SchedulerStatus {
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
    pub(super) fn dispatch(&mut self) {
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

    pub(super) fn start_run(
        &mut self,
        mut record: JobRecord,
        backend: usize,
        remote_id: Option<String>,
    ) {
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
        let notices = self.notices.clone();
        let job_id = id.clone();
        let started = Notice::Started {
            id: id.clone(),
            backend: name,
        };
        // Every line logged while the job runs carries its id and backend.
        let span =
            tracing::info_span!("job", job = %id, backend = %self.backends[backend].gen.name());
        // The job's own notices (started, plan, progress) go straight to the front-end, in
        // order; only what the journal needs passes through the actor. Its end is sent by the
        // actor after `Done`, so it always comes after them.
        self.tracker.spawn(tracing::Instrument::instrument(
            async move {
                let _ = notices.send(started).await;
                let forward = async {
                    while let Some(event) = ev_rx.recv().await {
                        let id = job_id.clone();
                        match event {
                            GenEvent::Submitting { remote_id } => {
                                let _ = internal.send(Internal::Submitted { id, remote_id }).await;
                            }
                            GenEvent::Plan(plan) => {
                                let _ = notices.send(Notice::Plan { id, plan }).await;
                            }
                            // Superseded by the next one: dropped when the front-end lags.
                            GenEvent::Progress(update) => {
                                let _ = notices.try_send(Notice::Progress { id, update });
                            }
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
    }

    pub(super) async fn internal(&mut self, msg: Internal) {
        match msg {
            Internal::Submitted { id, remote_id } => {
                if let Some(r) = self.running.get_mut(&id) {
                    r.record.remote_id = Some(remote_id.clone());
                    let attempts = r.record.attempts;
                    self.journal_log(
                        "remote id",
                        self.journal.set_remote(&id, Some(&remote_id), attempts),
                    );
                }
            }
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

    pub(super) async fn finished(&mut self, id: JobId, outcome: GenOutcome) {
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

    pub(super) fn publish_positions(&mut self) {
        // Most turns of the loop (a status request, a progress report) move nobody.
        if self.published_generation == Some(self.queue.generation()) {
            return;
        }
        self.published_generation = Some(self.queue.generation());
        for (id, pos) in self.queue.positions() {
            if self.last_positions.get(&id) != Some(&pos) {
                self.last_positions.insert(id.clone(), pos);
                self.notify_lossy(Notice::Queued { id, position: pos });
            }
        }
    }
}
