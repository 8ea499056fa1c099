//! The ComfyUI generator: one backend, any manifest workflow.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use core_comfyui::{
    Catalog, ComfyClient, ComfyError, JobEvent, Outcome, PromptOptions, UploadRequest, Workflow,
};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use progress::{JobPlan, NodeRole, Update};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::generator::{GenEvent, GenJob, GenOutcome, Generator, Probe, RunControl};
use crate::job::SavedOutput;
use crate::outputs;

/// How long a backend's `/object_info` verdict (which workflows fit) is reused between probes.
const OBJECT_INFO_TTL: Duration = Duration::from_secs(300);

/// The progress plan of a workflow: titles, roles and sampler steps.
pub fn plan_for(workflow: &Workflow) -> JobPlan {
    let mut plan = JobPlan::default();
    for id in workflow.node_ids() {
        let class = workflow.class_type(id).unwrap_or_default();
        let steps = (NodeRole::classify(class) == NodeRole::Sampler)
            .then(|| workflow.input(id, "steps").and_then(Value::as_u64))
            .flatten()
            .map(|s| s as u32);
        plan.add(id, class, workflow.title(id), steps);
    }
    plan
}

/// A ComfyUI job event as a progress update.
pub fn progress_update(ev: &JobEvent) -> Option<Update> {
    Some(match ev {
        JobEvent::Started => Update::Started,
        JobEvent::Cached { nodes } => Update::Cached {
            nodes: nodes.clone(),
        },
        JobEvent::Executing { node, display_node } => Update::NodeStarted {
            node: display_node.clone().unwrap_or_else(|| node.clone()),
        },
        JobEvent::Progress { node, value, max } => Update::Step {
            node: node.clone(),
            value: *value,
            max: *max,
        },
        JobEvent::Preview { image, format, .. } => Update::Preview {
            image: image.clone(),
            mime: format.mime(),
        },
        _ => return None,
    })
}

type Choices = HashMap<String, HashMap<String, Vec<Value>>>;

#[derive(Debug, Clone, Default)]
struct Capabilities {
    workflows: HashSet<String>,
    choices: Choices,
}

/// The server's list behind each choice parameter of each workflow.
fn choices_offered(catalog: &Catalog, info: &core_comfyui::ObjectInfo) -> Choices {
    let mut out = Choices::new();
    for def in catalog.iter() {
        for (param, spec) in &def.manifest.params {
            if spec.rule.kind != validation::ParamKind::Choice {
                continue;
            }
            let Some(target) = spec.targets.first() else {
                continue;
            };
            let class = def.workflow.class_type(&target.node).unwrap_or_default();
            if let Some(core_comfyui::InputKind::Combo { options, .. }) =
                info.get(class).and_then(|n| n.input(&target.input))
            {
                out.entry(def.name.clone())
                    .or_default()
                    .insert(param.clone(), options);
            }
        }
    }
    out
}

#[derive(Debug)]
struct Inner {
    name: String,
    client: ComfyClient,
    catalog: RwLock<Arc<Catalog>>,
    out_dir: PathBuf,
    /// Which workflows fit and the choices they offer, and when that was learned; `None`
    /// forces a fresh `/object_info`.
    fits: Mutex<Option<(Instant, Capabilities)>>,
}

/// Runs jobs on one ComfyUI server.
#[derive(Debug, Clone)]
pub struct ComfyGenerator {
    inner: Arc<Inner>,
}

impl ComfyGenerator {
    pub fn new(
        name: impl Into<String>,
        client: ComfyClient,
        catalog: Arc<Catalog>,
        out_dir: impl Into<PathBuf>,
    ) -> Self {
        client.start();
        ComfyGenerator {
            inner: Arc::new(Inner {
                name: name.into(),
                client,
                catalog: RwLock::new(catalog),
                out_dir: out_dir.into(),
                fits: Mutex::new(None),
            }),
        }
    }

    pub fn client(&self) -> &ComfyClient {
        &self.inner.client
    }

    /// Swaps the workflows (admin reload); the next probe re-checks them.
    pub fn set_catalog(&self, catalog: Arc<Catalog>) {
        *self
            .inner
            .catalog
            .write()
            .unwrap_or_else(|p| p.into_inner()) = catalog;
        *self.inner.fits.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn catalog(&self) -> Arc<Catalog> {
        self.inner
            .catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn failed(reason: impl Into<String>, retryable: bool) -> GenOutcome {
    GenOutcome::Failed {
        reason: reason.into(),
        retryable,
    }
}

/// Whether a client error is the backend's fault (worth another backend) or the job's.
fn comfy_failure(context: &str, e: &ComfyError) -> GenOutcome {
    let retryable = !matches!(
        e,
        ComfyError::PromptRejected(_) | ComfyError::TooLarge { .. }
    );
    failed(format!("{context}: {e}"), retryable)
}

impl Generator for ComfyGenerator {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn run(
        &self,
        job: GenJob,
        events: mpsc::Sender<GenEvent>,
        control: RunControl,
    ) -> BoxFuture<'static, GenOutcome> {
        let this = self.clone();
        async move { this.run_job(job, events, control).await }.boxed()
    }

    fn probe(&self) -> BoxFuture<'static, Result<Probe, String>> {
        let this = self.clone();
        async move { this.probe_now().await }.boxed()
    }

    fn connection(&self) -> Option<tokio::sync::watch::Receiver<core_comfyui::ConnectionState>> {
        Some(self.inner.client.connection_state())
    }
}

impl ComfyGenerator {
    async fn run_job(
        &self,
        job: GenJob,
        events: mpsc::Sender<GenEvent>,
        control: RunControl,
    ) -> GenOutcome {
        let client = &self.inner.client;
        let catalog = self.catalog();
        let Some(def) = catalog.get(&job.spec.workflow) else {
            return failed(
                format!("workflow {} is not loaded", job.spec.workflow),
                false,
            );
        };
        // The values were checked and completed when the job was made: the graph is patched
        // once, with the uploaded inputs' names in place of the placeholders.
        let patch = |values: &serde_json::Map<String, Value>| {
            def.manifest
                .patch(&def.workflow, values)
                .map_err(|e| failed(e.to_string(), false))
        };
        let (mut comfy_job, workflow, values) = match &job.remote_id {
            Some(remote) => {
                let workflow = match patch(&job.spec.values) {
                    Ok(w) => w,
                    Err(f) => return f,
                };
                match client.attach(remote).await {
                    Ok(j) => (j, workflow, job.spec.values.clone()),
                    Err(e) => return comfy_failure("could not re-attach to ComfyUI", &e),
                }
            }
            None => {
                let mut values = job.spec.values.clone();
                for input in &job.spec.inputs {
                    let bytes = match tokio::fs::read(&input.path).await {
                        Ok(b) => b,
                        Err(e) => {
                            return failed(
                                format!("input image {} is gone: {e}", input.path.display()),
                                false,
                            )
                        }
                    };
                    let ext = input
                        .path
                        .extension()
                        .and_then(|e| e.to_str())
                        .unwrap_or("png");
                    let name = format!("comfycord_{}_{}.{ext}", job.id, input.param);
                    match client
                        .upload(UploadRequest::input_image(name, bytes, &input.mime))
                        .await
                    {
                        Ok(f) => {
                            values.insert(input.param.clone(), Value::String(f.load_image_name()));
                        }
                        Err(e) => return comfy_failure("could not upload the input image", &e),
                    }
                }
                let workflow = match patch(&values) {
                    Ok(w) => w,
                    Err(f) => return f,
                };
                let prompt_id = format!("comfycord-{}-{:08x}", job.id, rand::random::<u32>());
                let _ = events
                    .send(GenEvent::Submitting {
                        remote_id: prompt_id.clone(),
                    })
                    .await;
                let options = PromptOptions {
                    prompt_id: Some(prompt_id),
                    ..PromptOptions::default()
                };
                match client.submit(&workflow, options).await {
                    Ok(j) => (j, workflow, values),
                    Err(e) => return comfy_failure("ComfyUI did not take the job", &e),
                }
            }
        };
        let _ = events.send(GenEvent::Plan(plan_for(&workflow))).await;
        let mut cancel_sent = false;
        let outcome = loop {
            tokio::select! {
                biased;
                _ = control.abandon.cancelled() => return GenOutcome::Abandoned,
                _ = control.cancel.cancelled(), if !cancel_sent => {
                    cancel_sent = true;
                    if let Err(e) = comfy_job.cancel().await {
                        tracing::warn!(job = %job.id, error = %e, "could not cancel on ComfyUI");
                    }
                }
                ev = comfy_job.next_event() => match ev {
                    Some(JobEvent::Finished(outcome)) => break outcome,
                    Some(ev) => {
                        if let Some(u) = progress_update(&ev) {
                            let _ = events.send(GenEvent::Progress(u)).await;
                        }
                    }
                    None => break Outcome::Lost { reason: "the job's event stream ended".into() },
                },
            }
        };
        match outcome {
            Outcome::Success(out) => {
                let _ = events.send(GenEvent::Progress(Update::Uploading)).await;
                self.save(&job, &workflow, &values, comfy_job.prompt_id(), &out)
                    .await
            }
            Outcome::Failed(e) => failed(
                format!(
                    "node {} ({}) failed: {}",
                    e.node_id.as_deref().unwrap_or("?"),
                    e.node_type.as_deref().unwrap_or("?"),
                    e.exception_message.trim()
                ),
                false,
            ),
            Outcome::Interrupted(_) | Outcome::Cancelled if cancel_sent => GenOutcome::Cancelled,
            Outcome::Interrupted(i) => failed(
                format!(
                    "interrupted on the ComfyUI server at node {}",
                    i.node_id.as_deref().unwrap_or("?")
                ),
                false,
            ),
            Outcome::Cancelled => failed("removed from the ComfyUI queue by someone else", false),
            Outcome::Lost { reason } => failed(reason, true),
        }
    }

    async fn save(
        &self,
        job: &GenJob,
        workflow: &Workflow,
        values: &serde_json::Map<String, Value>,
        prompt_id: &str,
        out: &core_comfyui::Outputs,
    ) -> GenOutcome {
        let prompt = values.get("prompt").and_then(Value::as_str);
        let finished_ms = crate::job::now_ms();
        let stem = outputs::output_stem(prompt, &job.spec.workflow, finished_ms);
        let mut saved = Vec::new();
        for (index, file) in out.files.iter().enumerate() {
            let bytes = match self.inner.client.download(&file.file, None).await {
                Ok(b) => b,
                Err(e) => {
                    return failed(
                        format!("could not fetch {} from ComfyUI: {e}", file.file.filename),
                        false,
                    )
                }
            };
            let ext = Path::new(&file.file.filename)
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("bin")
                .to_ascii_lowercase();
            let path =
                match outputs::save_output(&self.inner.out_dir, &stem, index + 1, &ext, &bytes)
                    .await
                {
                    Ok(p) => p,
                    Err(e) => return failed(e.to_string(), false),
                };
            let sidecar = outputs::Sidecar {
                job_id: job.id.clone(),
                workflow: job.spec.workflow.clone(),
                values: values.clone(),
                workflow_json: workflow.to_value(),
                seed: values.get("seed").and_then(Value::as_u64),
                backend: Some(self.inner.name.clone()),
                remote_id: Some(prompt_id.to_string()),
                created_ms: job.created_ms,
                finished_ms,
            };
            // A small file, but written with fsync: off the async threads.
            let (p, sc) = (path.clone(), sidecar);
            let written = tokio::task::spawn_blocking(move || outputs::write_sidecar(&p, &sc))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            let sidecar_path = match written {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(job = %job.id, error = %e, "could not write the sidecar");
                    None
                }
            };
            let animated = matches!(file.media, core_comfyui::MediaKind::AnimatedImage);
            saved.push(SavedOutput {
                kind: outputs::kind_of(&file.file.filename, animated),
                bytes: bytes.len() as u64,
                path,
                sidecar: sidecar_path,
            });
        }
        // Text a node showed (`PreviewAny`, a captioner's `text`): one file per node, its
        // entries a line each, so a describe job's prompts are kept like any output.
        for (node, ui) in &out.other {
            let Some(Value::Array(entries)) = ui.get("text") else {
                continue;
            };
            let text: Vec<&str> = entries.iter().filter_map(Value::as_str).collect();
            if text.is_empty() {
                continue;
            }
            let bytes = text.join("\n").into_bytes();
            let index = saved.len() + 1;
            match outputs::save_output(&self.inner.out_dir, &stem, index, "txt", &bytes).await {
                Ok(path) => saved.push(SavedOutput {
                    kind: crate::job::OutputKind::Text,
                    bytes: bytes.len() as u64,
                    path,
                    sidecar: None,
                }),
                Err(e) => {
                    tracing::warn!(job = %job.id, node, error = %e, "could not save a text output");
                    return failed(e.to_string(), false);
                }
            }
        }
        GenOutcome::Succeeded(saved)
    }

    async fn probe_now(&self) -> Result<Probe, String> {
        let client = &self.inner.client;
        let stats = client.system_stats().await.map_err(|e| e.to_string())?;
        let queue = client.queue().await.map_err(|e| e.to_string())?;
        let cached = self
            .inner
            .fits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|(at, _)| at.elapsed() < OBJECT_INFO_TTL)
            .map(|(_, caps)| caps.clone());
        let caps = match cached {
            Some(c) => c,
            None => {
                let info = client.object_info().await.map_err(|e| e.to_string())?;
                let catalog = self.catalog();
                let problems = catalog.check(&info);
                for (workflow, list) in &problems {
                    for p in list {
                        if p.blocking {
                            tracing::warn!(backend = %self.inner.name, workflow, problem = %p, "workflow cannot run on this backend");
                        } else {
                            tracing::info!(backend = %self.inner.name, workflow, problem = %p, "jobs using this value will go elsewhere or be refused");
                        }
                    }
                }
                let caps = Capabilities {
                    workflows: catalog.runnable(&info).into_iter().collect(),
                    choices: choices_offered(&catalog, &info),
                };
                *self.inner.fits.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now(), caps.clone()));
                caps
            }
        };
        let devices: Vec<String> = stats
            .devices
            .iter()
            .map(|d| {
                format!(
                    "{} ({:.1}/{:.1} GiB free)",
                    d.name,
                    d.vram_free as f64 / 1024f64.powi(3),
                    d.vram_total as f64 / 1024f64.powi(3)
                )
            })
            .collect();
        Ok(Probe {
            workflows: caps.workflows,
            choices: caps.choices,
            queue_remaining: (queue.running.len() + queue.pending.len()) as u64,
            detail: format!(
                "ComfyUI {} · {}",
                stats.system.comfyui_version.as_deref().unwrap_or("?"),
                devices.join(", ")
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plan_reads_titles_and_steps() {
        let w = Workflow::from_value(json!({
            "3": {"class_type": "KSampler", "inputs": {"steps": 25}, "_meta": {"title": "Base"}},
            "9": {"class_type": "SaveImage", "inputs": {}}
        }))
        .unwrap();
        let plan = plan_for(&w);
        assert_eq!(plan.nodes["3"].steps, Some(25));
        assert_eq!(plan.nodes["3"].title, "Base");
        assert_eq!(plan.nodes["9"].role, NodeRole::Saver);
    }

    #[test]
    fn rejected_prompts_are_not_retried_elsewhere() {
        let rejection = core_comfyui::PromptRejection::from_body(
            json!({"error": {"type": "x", "message": "m"}, "node_errors": {}}),
        );
        assert!(matches!(
            comfy_failure("c", &ComfyError::from(rejection)),
            GenOutcome::Failed {
                retryable: false,
                ..
            }
        ));
        assert!(matches!(
            comfy_failure("c", &ComfyError::Closed),
            GenOutcome::Failed {
                retryable: true,
                ..
            }
        ));
    }
}
