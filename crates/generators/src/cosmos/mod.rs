//! The Cosmos backend: NVIDIA cosmos-transfer1 jobs on a remote GPU host over SSH, behind the
//! same [`Generator`] trait as ComfyUI.
//!
//! Per job: preflight (checkout, checkpoints, image; a busy GPU makes the job wait), upload the
//! input video, the spec and our wrapper script into the job's own run folder (temporary name,
//! then rename), start a detached container named after the job, follow its log into phases,
//! take the exit code from `docker wait` (cross-checked with the wrapper's completion marker
//! and Docker's OOM flag), download the video, and remove the container and only this job's
//! folders. The container outlives SSH drops and bot restarts; the backend reattaches by name.

pub mod family;
pub mod logs;
pub mod remote;
pub mod spec;
pub mod ssh;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use progress::Update;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::generator::{GenEvent, GenJob, GenOutcome, Generator, Probe, RunControl};
use crate::job::{OutputKind, SavedOutput};
use crate::outputs;
use logs::{classify, LogReader, RunFailure};
use remote::{marker_exit_code, valid_job_id, HostLayout};
use spec::CosmosKind;
use ssh::{SshConfig, SshConn, SshError};

/// Lines of output kept to explain a failure.
const TAIL_LINES: usize = 60;
/// Recent phase lines kept for `/status`.
const RECENT_LINES: usize = 5;
/// Reconnect attempts after the SSH connection drops mid-job, with growing waits.
const RECONNECT_ATTEMPTS: u32 = 8;
const RECONNECT_FIRST_WAIT: Duration = Duration::from_millis(250);
const RECONNECT_MAX_WAIT: Duration = Duration::from_secs(15);

/// Everything the backend needs (the bot builds it from config).
#[derive(Debug, Clone)]
pub struct CosmosSettings {
    pub name: String,
    pub ssh: SshConfig,
    pub layout: HostLayout,
    /// A job running longer is killed and failed.
    pub job_timeout: Duration,
    /// How often a busy GPU is checked again.
    pub busy_poll: Duration,
    pub outputs_dir: PathBuf,
    /// Largest video downloaded.
    pub max_download: u64,
}

struct Inner {
    settings: CosmosSettings,
    conn: tokio::sync::Mutex<Option<Arc<SshConn>>>,
    recent: Mutex<VecDeque<String>>,
}

/// A Cosmos host.
#[derive(Clone)]
pub struct CosmosGenerator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CosmosGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CosmosGenerator")
            .field("name", &self.inner.settings.name)
            .finish_non_exhaustive()
    }
}

fn failed(reason: impl Into<String>, retryable: bool) -> GenOutcome {
    GenOutcome::Failed {
        reason: reason.into(),
        retryable,
    }
}

/// How following the container ended.
enum Followed {
    Exited,
    Cancelled,
    Abandoned,
    TimedOut,
    Lost(SshError),
}

impl CosmosGenerator {
    pub fn new(settings: CosmosSettings) -> CosmosGenerator {
        CosmosGenerator {
            inner: Arc::new(Inner {
                settings,
                conn: tokio::sync::Mutex::new(None),
                recent: Mutex::new(VecDeque::new()),
            }),
        }
    }

    pub fn settings(&self) -> &CosmosSettings {
        &self.inner.settings
    }

    fn layout(&self) -> &HostLayout {
        &self.inner.settings.layout
    }

    /// The open connection, or a new one.
    async fn conn(&self) -> Result<Arc<SshConn>, SshError> {
        let mut guard = self.inner.conn.lock().await;
        if let Some(c) = guard.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let c = Arc::new(SshConn::connect(&self.inner.settings.ssh).await?);
        *guard = Some(c.clone());
        Ok(c)
    }

    async fn forget_conn(&self) {
        if let Some(c) = self.inner.conn.lock().await.take() {
            c.close().await;
        }
    }

    /// Reconnects with backoff after a drop; `None` when the host stays unreachable.
    async fn reconnect(&self, control: &RunControl) -> Result<Arc<SshConn>, SshError> {
        self.forget_conn().await;
        let mut wait = RECONNECT_FIRST_WAIT;
        let mut last = SshError::Channel("the connection dropped".into());
        for _ in 0..RECONNECT_ATTEMPTS {
            match self.conn().await {
                Ok(c) => return Ok(c),
                Err(e @ SshError::HostKeyMismatch { .. }) => return Err(e),
                Err(e) => last = e,
            }
            tokio::select! {
                _ = control.abandon.cancelled() => return Err(last),
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(RECONNECT_MAX_WAIT);
        }
        Err(last)
    }

    fn note(&self, line: &str) {
        let mut r = self.inner.recent.lock().unwrap_or_else(|p| p.into_inner());
        if r.len() == RECENT_LINES {
            r.pop_front();
        }
        r.push_back(line.to_string());
    }

    /// Lines recently seen from the host's jobs, for `/status`.
    pub fn recent_lines(&self) -> Vec<String> {
        self.inner
            .recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    async fn run_job(
        self,
        job: GenJob,
        events: mpsc::Sender<GenEvent>,
        control: RunControl,
    ) -> GenOutcome {
        let Some(kind) = CosmosKind::from_workflow(&job.spec.workflow) else {
            return failed(format!("{} is not a Cosmos job", job.spec.workflow), false);
        };
        let id = job.id.as_str().to_string();
        if !valid_job_id(&id) {
            return failed(format!("job id {id:?} cannot name a container"), false);
        }
        let _ = events.send(GenEvent::Plan(logs::plan())).await;
        let conn = match self.conn().await {
            Ok(c) => c,
            Err(e) => {
                return failed(
                    e.to_string(),
                    !matches!(e, SshError::HostKeyMismatch { .. }),
                )
            }
        };
        let layout = self.layout().clone();
        // After a restart the container may already exist: follow it instead of starting anew.
        let exists = job.remote_id.is_some()
            && matches!(conn.exec(&layout.inspect_command(kind, &id)).await, Ok(o) if o.ok());
        if !exists {
            if let Err(outcome) = self.start(&conn, kind, &job, &events, &control).await {
                return outcome;
            }
        }
        let _ = events.send(GenEvent::Progress(Update::Started)).await;
        let mut reader = LogReader::default();
        let mut tail: VecDeque<String> = VecDeque::new();
        let deadline = tokio::time::Instant::now() + self.inner.settings.job_timeout;
        let mut conn = conn;
        let mut lines_seen: u64 = 0;
        let followed = loop {
            match self
                .follow(
                    &conn,
                    kind,
                    &id,
                    &mut lines_seen,
                    &mut reader,
                    &mut tail,
                    &events,
                    &control,
                    deadline,
                )
                .await
            {
                Followed::Lost(e) => {
                    tracing::warn!(job = %id, error = %e, "SSH to the Cosmos host dropped; reattaching");
                    match self.reconnect(&control).await {
                        Ok(c) => conn = c,
                        Err(e) if control.abandon.is_cancelled() => {
                            tracing::debug!(job = %id, error = %e, "abandoned while reconnecting");
                            break Followed::Abandoned;
                        }
                        Err(e) => break Followed::Lost(e),
                    }
                }
                other => break other,
            }
        };
        match followed {
            Followed::Abandoned => return GenOutcome::Abandoned,
            // Left running: the scheduler retries or fails it; the journal keeps the name.
            Followed::Lost(e) => return failed(e.to_string(), true),
            Followed::Cancelled => {
                let _ = conn.exec(&layout.kill_command(kind, &id)).await;
                let _ = conn.exec(&layout.wait_command(kind, &id)).await;
                let _ = conn.exec(&layout.cleanup_command(kind, &id)).await;
                return GenOutcome::Cancelled;
            }
            Followed::TimedOut => {
                let _ = conn.exec(&layout.kill_command(kind, &id)).await;
                let _ = conn.exec(&layout.cleanup_command(kind, &id)).await;
                return failed(
                    format!(
                        "the Cosmos job ran longer than {} min and was stopped",
                        self.inner.settings.job_timeout.as_secs() / 60
                    ),
                    false,
                );
            }
            Followed::Exited => {}
        }
        let tail: Vec<String> = tail.into_iter().collect();
        let outcome = self.collect(&conn, kind, &job, &tail).await;
        if let Err(e) = conn.exec(&layout.cleanup_command(kind, &id)).await {
            tracing::warn!(job = %id, error = %e, "could not clean up on the Cosmos host");
        }
        outcome
    }

    /// Preflight, GPU-busy wait, uploads, and `docker run -d`.
    async fn start(
        &self,
        conn: &SshConn,
        kind: CosmosKind,
        job: &GenJob,
        events: &mpsc::Sender<GenEvent>,
        control: &RunControl,
    ) -> Result<(), GenOutcome> {
        let s = &self.inner.settings;
        let l = &s.layout;
        let id = job.id.as_str();
        let ssh = |e: SshError| failed(e.to_string(), true);
        let pre = conn.exec(&l.preflight_command()).await.map_err(ssh)?;
        if !pre.ok() {
            let why: Vec<&str> = pre
                .stdout
                .lines()
                .chain(pre.stderr.lines())
                .filter(|l| !l.trim().is_empty())
                .collect();
            return Err(failed(
                format!("the Cosmos host is not ready: {}", why.join("; ")),
                true,
            ));
        }
        let deadline = tokio::time::Instant::now() + s.job_timeout;
        let mut told = false;
        loop {
            let busy = conn.exec(&l.busy_command()).await.map_err(ssh)?;
            if busy.stdout.trim().is_empty() {
                break;
            }
            if !told {
                tracing::info!(job = %id, running = %busy.stdout.trim(), "Cosmos GPU busy; waiting");
                let _ = events
                    .send(GenEvent::Progress(Update::Queued { position: None }))
                    .await;
                told = true;
            }
            tokio::select! {
                _ = control.cancel.cancelled() => return Err(GenOutcome::Cancelled),
                _ = control.abandon.cancelled() => return Err(GenOutcome::Abandoned),
                _ = tokio::time::sleep_until(deadline) => return Err(failed("the Cosmos GPU stayed busy; try again later", false)),
                _ = tokio::time::sleep(s.busy_poll) => {}
            }
        }
        let Some(input) = job.spec.inputs.first() else {
            return Err(failed("a Cosmos job needs an input video", false));
        };
        let _ = events.send(GenEvent::Progress(Update::Uploading)).await;
        conn.exec(&l.mkdirs_command(id)).await.map_err(ssh)?;
        conn.upload_file(&input.path, &l.input_video(id), s.ssh.transfer_timeout)
            .await
            .map_err(ssh)?;
        let spec_json = spec::spec_json(kind, id, &job.spec.values);
        let spec_bytes = serde_json::to_vec_pretty(&spec_json).unwrap_or_default();
        conn.upload(&spec_bytes, &l.spec_path(id), s.ssh.transfer_timeout)
            .await
            .map_err(ssh)?;
        conn.upload(
            remote::WRAPPER_SCRIPT.as_bytes(),
            &l.wrapper(),
            s.ssh.transfer_timeout,
        )
        .await
        .map_err(ssh)?;
        let _ = events
            .send(GenEvent::Submitting {
                remote_id: l.container(kind, id),
            })
            .await;
        let run = conn.exec(&l.run_command(kind, id)).await.map_err(ssh)?;
        if !run.ok() {
            let code = run.code.map_or(-1, |c| c as i32);
            let tail: Vec<String> = run.stderr.lines().map(str::to_string).collect();
            let failure = classify(code, false, &tail).unwrap_or(RunFailure::NonZeroExit(code));
            let _ = conn.exec(&l.cleanup_command(kind, id)).await;
            return Err(failed(failure.message(), false));
        }
        Ok(())
    }

    /// Streams the container's log into progress until it exits (or cancel, abandon, the
    /// deadline, or the connection dropping).
    #[allow(clippy::too_many_arguments)]
    async fn follow(
        &self,
        conn: &SshConn,
        kind: CosmosKind,
        id: &str,
        lines_seen: &mut u64,
        reader: &mut LogReader,
        tail: &mut VecDeque<String>,
        events: &mpsc::Sender<GenEvent>,
        control: &RunControl,
        deadline: tokio::time::Instant,
    ) -> Followed {
        let command = self.layout().logs_command(kind, id, *lines_seen);
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let stream = conn.exec_lines(&command, move |line| {
            let _ = tx.send(line.to_string());
        });
        tokio::pin!(stream);
        let ended = loop {
            tokio::select! {
                biased;
                _ = control.cancel.cancelled() => return Followed::Cancelled,
                _ = control.abandon.cancelled() => return Followed::Abandoned,
                _ = tokio::time::sleep_until(deadline) => return Followed::TimedOut,
                Some(line) = rx.recv() => self.take_line(line, lines_seen, reader, tail, events).await,
                r = &mut stream => break r,
            }
        };
        // Lines that arrived with the end of the stream.
        while let Ok(line) = rx.try_recv() {
            self.take_line(line, lines_seen, reader, tail, events).await;
        }
        match ended {
            // `docker logs -f` ends when the container does; a missing status means the
            // connection went away under it.
            Ok(Some(_)) => Followed::Exited,
            Ok(None) => Followed::Lost(SshError::Channel("the log stream was cut".into())),
            Err(e) => Followed::Lost(e),
        }
    }

    async fn take_line(
        &self,
        line: String,
        lines_seen: &mut u64,
        reader: &mut LogReader,
        tail: &mut VecDeque<String>,
        events: &mpsc::Sender<GenEvent>,
    ) {
        *lines_seen += 1;
        for u in reader.line(&line) {
            if matches!(u, Update::NodeStarted { .. }) {
                self.note(&line);
            }
            let _ = events.send(GenEvent::Progress(u)).await;
        }
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }

    /// Exit code, classification and the video.
    async fn collect(
        &self,
        conn: &SshConn,
        kind: CosmosKind,
        job: &GenJob,
        tail: &[String],
    ) -> GenOutcome {
        let s = &self.inner.settings;
        let l = &s.layout;
        let id = job.id.as_str();
        let waited = match conn.exec(&l.wait_command(kind, id)).await {
            Ok(o) => o,
            Err(e) => return failed(e.to_string(), true),
        };
        let mut code: Option<i32> = waited.stdout.trim().parse().ok();
        let state: Value = match conn.exec(&l.inspect_command(kind, id)).await {
            Ok(o) if o.ok() => serde_json::from_str(o.stdout.trim()).unwrap_or(Value::Null),
            _ => Value::Null,
        };
        let oom = state
            .get("OOMKilled")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if code.is_none() {
            code = state
                .get("ExitCode")
                .and_then(Value::as_i64)
                .map(|c| c as i32);
        }
        // The wrapper's marker says what torchrun returned; prefer it when Docker is silent.
        let marker = conn
            .exec(&l.marker_command(id))
            .await
            .ok()
            .and_then(|o| marker_exit_code(&o.stdout));
        if let (Some(c), Some(m)) = (code, marker) {
            if c != m {
                tracing::warn!(job = %id, docker = c, marker = m, "exit codes disagree; using Docker's");
            }
        }
        let Some(code) = code.or(marker) else {
            return failed("the Cosmos container's exit code could not be read", false);
        };
        if let Some(f) = classify(code, oom, tail) {
            return failed(f.message(), false);
        }
        let video = format!("{}/output.mp4", l.output_dir(id));
        let bytes = match conn
            .download(&video, s.max_download, s.ssh.transfer_timeout)
            .await
        {
            Ok(Some(b)) if !b.is_empty() => b,
            Ok(_) => return failed(RunFailure::MissingOutput.message(), false),
            Err(e) => return failed(e.to_string(), true),
        };
        let finished_ms = crate::job::now_ms();
        let prompt = job.spec.values.get("prompt").and_then(Value::as_str);
        let stem = outputs::output_stem(prompt, &job.spec.workflow, finished_ms);
        let path = match outputs::save_output(&s.outputs_dir, &stem, 1, "mp4", &bytes).await {
            Ok(p) => p,
            Err(e) => return failed(e.to_string(), false),
        };
        let sidecar = outputs::Sidecar {
            job_id: job.id.clone(),
            workflow: job.spec.workflow.clone(),
            values: job.spec.values.clone(),
            workflow_json: spec::journal_record(kind, id, &job.spec.values),
            seed: job.spec.values.get("seed").and_then(Value::as_u64),
            backend: Some(s.name.clone()),
            remote_id: Some(l.container(kind, id)),
            created_ms: job.created_ms,
            finished_ms,
        };
        let p = path.clone();
        let sidecar_path =
            tokio::task::spawn_blocking(move || outputs::write_sidecar(&p, &sidecar))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)))
                .map_err(|e| tracing::warn!(job = %id, error = %e, "could not write the sidecar"))
                .ok();
        GenOutcome::Succeeded(vec![SavedOutput {
            path,
            kind: OutputKind::Video,
            bytes: bytes.len() as u64,
            sidecar: sidecar_path,
        }])
    }

    async fn probe_host(self) -> Result<Probe, String> {
        let conn = self.conn().await.map_err(|e| e.to_string())?;
        let l = self.layout();
        let pre = conn
            .exec(&l.preflight_command())
            .await
            .map_err(|e| e.to_string())?;
        if !pre.ok() {
            self.forget_conn().await;
            return Err(format!(
                "not ready: {}",
                pre.stdout.lines().collect::<Vec<_>>().join("; ")
            ));
        }
        let gpu = conn
            .exec(l.gpu_command())
            .await
            .ok()
            .and_then(|o| remote::describe_gpu(&o.stdout))
            .unwrap_or_else(|| "GPU unknown (nvidia-smi failed)".into());
        let running = conn
            .exec(&l.busy_command())
            .await
            .map(|o| o.stdout)
            .unwrap_or_default();
        let running: Vec<&str> = running.lines().filter(|l| !l.trim().is_empty()).collect();
        let mut detail = format!(
            "Cosmos · {gpu} · {}",
            if running.is_empty() {
                "idle".to_string()
            } else {
                format!("running {}", running.join(", "))
            }
        );
        if let Some(last) = self.recent_lines().last() {
            let msg = logs::loguru_message(last).map_or(last.as_str(), |(_, m)| m);
            detail.push_str(&format!(
                " · last: {}",
                msg.chars().take(120).collect::<String>()
            ));
        }
        Ok(Probe {
            workflows: HashSet::from([
                spec::TRANSFER_WORKFLOW.to_string(),
                spec::UPSCALE_WORKFLOW.to_string(),
            ]),
            choices: HashMap::new(),
            queue_remaining: running.len() as u64,
            detail,
        })
    }
}

impl Generator for CosmosGenerator {
    fn name(&self) -> &str {
        &self.inner.settings.name
    }

    fn run(
        &self,
        job: GenJob,
        events: mpsc::Sender<GenEvent>,
        control: RunControl,
    ) -> BoxFuture<'static, GenOutcome> {
        Box::pin(self.clone().run_job(job, events, control))
    }

    fn probe(&self) -> BoxFuture<'static, Result<Probe, String>> {
        Box::pin(self.clone().probe_host())
    }
}
