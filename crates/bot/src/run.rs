//! `comfycord run`: one workflow from the terminal, through the same checks and client as the
//! bot: validate → patch → upload inputs → queue → follow progress → save outputs.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use core_comfyui::{
    Catalog, CatalogError, ComfyClient, ComfyError, JobEvent, Outcome, PromptOptions,
    UploadRequest, Workflow,
};
use indexmap::IndexMap;
use progress::{
    spawn_throttled, JobPlan, NodeRole, ProgressSink, SinkError, Snapshot, Tracker, Update,
};
use serde_json::{Map, Value};
use validation::attachment::{inspect, AttachmentRules, DeclaredAttachment, MediaFormat};
use validation::{ParamKind, ParamRule, RawRequest, Refusal};

use crate::config::Config;

/// Terminal redraws are cheap; a short interval keeps the bar lively.
pub const TERMINAL_EDIT_INTERVAL: Duration = Duration::from_millis(200);
/// Words of the prompt kept in output file names.
const NAME_WORDS: usize = 6;
const NAME_CHARS: usize = 48;

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct RunArgs {
    pub workflow: String,
    pub prompt: Option<String>,
    /// `name=value` pairs, parsed by each parameter's type.
    pub params: Vec<(String, String)>,
    /// Local images for the workflow's image parameters, in order.
    pub images: Vec<PathBuf>,
    pub aspect: Option<String>,
    pub backend: Option<String>,
    pub out_dir: PathBuf,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub prompt_id: String,
    pub files: Vec<PathBuf>,
    /// Every parameter's final value, the seed included.
    pub values: IndexMap<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Refused(#[from] Refusal),
    #[error("unknown workflow {name:?}; available: {available}")]
    UnknownWorkflow { name: String, available: String },
    #[error("unknown backend {name:?}; configured: {configured}")]
    UnknownBackend { name: String, configured: String },
    #[error("{count} image(s) given but workflow {workflow} takes {takes}")]
    ImageCount {
        workflow: String,
        count: usize,
        takes: usize,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot save {path}: {source}")]
    Save {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Comfy(#[from] ComfyError),
    #[error("the workflow failed: {0}")]
    Failed(String),
    #[error("cancelled")]
    Cancelled,
}

/// Reads a `--param` value as the parameter's type; what does not parse stays text, so the
/// validator can say exactly what was wrong with it.
pub fn parse_param_value(rule: Option<&ParamRule>, raw: &str) -> Value {
    let text = || Value::String(raw.to_string());
    let Some(rule) = rule else { return text() };
    match rule.kind {
        ParamKind::Int | ParamKind::Seed => raw
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| raw.trim().parse::<u64>().map(Value::from))
            .unwrap_or_else(|_| text()),
        ParamKind::Float => raw
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(text),
        ParamKind::Bool => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "on" => Value::Bool(true),
            "false" | "no" | "0" | "off" => Value::Bool(false),
            _ => text(),
        },
        ParamKind::Choice if rule.choices.iter().any(Value::is_number) => raw
            .trim()
            .parse::<f64>()
            .ok()
            .map(Value::from)
            .unwrap_or_else(text),
        _ => text(),
    }
}

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

/// Maps a job event to a progress update.
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

/// `a-lighthouse-on-a-cliff` from the prompt's first words.
pub fn slug(prompt: &str) -> String {
    let words: Vec<String> = prompt
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(NAME_WORDS)
        .map(str::to_lowercase)
        .collect();
    let mut s: String = words.join("-").chars().take(NAME_CHARS).collect();
    if s.is_empty() {
        s.push_str("comfycord");
    }
    s
}

fn mime_from_extension(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "mp4" => "video/mp4",
        _ => return None,
    })
}

/// Reads and checks a local image like a Discord attachment (size, magic bytes, dimensions).
fn read_image(path: &Path, rules: &AttachmentRules) -> Result<(Vec<u8>, MediaFormat), RunError> {
    let bytes = std::fs::read(path).map_err(|source| RunError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let declared = DeclaredAttachment {
        filename: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        content_type: mime_from_extension(path).map(str::to_string),
        size: bytes.len() as u64,
        url: String::new(),
    };
    let media = inspect(&bytes, &declared, rules)?;
    Ok((bytes, media.format))
}

/// Runs one workflow to its end. `sink` shows progress; `cancel` resolving cancels the job.
pub async fn run_workflow<S: ProgressSink>(
    config: &Config,
    args: RunArgs,
    sink: S,
    cancel: impl Future<Output = ()>,
) -> Result<RunResult, RunError> {
    let (catalog, _) = Catalog::load_dir(&config.workflows_dir)?;
    let def = catalog
        .get(&args.workflow)
        .ok_or_else(|| RunError::UnknownWorkflow {
            name: args.workflow.clone(),
            available: catalog.names().collect::<Vec<_>>().join(", "),
        })?;
    let backend = match &args.backend {
        None => &config.backends[0],
        Some(name) => config
            .backends
            .iter()
            .find(|b| &b.name == name)
            .ok_or_else(|| RunError::UnknownBackend {
                name: name.clone(),
                configured: config
                    .backends
                    .iter()
                    .map(|b| b.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?,
    };
    let rules: IndexMap<String, ParamRule> = def
        .manifest
        .params
        .iter()
        .map(|(n, p)| (n.clone(), p.rule.clone()))
        .collect();

    // Check everything local before touching the server.
    let mut raw = RawRequest {
        values: Map::new(),
        aspect: args.aspect.clone(),
    };
    if let Some(p) = &args.prompt {
        raw.values.insert("prompt".into(), Value::String(p.clone()));
    }
    for (name, value) in &args.params {
        raw.values
            .insert(name.clone(), parse_param_value(rules.get(name), value));
    }
    let image_params: Vec<&String> = rules
        .iter()
        .filter(|(_, r)| r.kind == ParamKind::Image)
        .map(|(n, _)| n)
        .collect();
    if args.images.len() > image_params.len() {
        return Err(RunError::ImageCount {
            workflow: args.workflow.clone(),
            count: args.images.len(),
            takes: image_params.len(),
        });
    }
    let attachment_rules = config.attachment_rules();
    let mut images = Vec::new();
    for (param, path) in image_params.iter().zip(&args.images) {
        let (bytes, format) = read_image(path, &attachment_rules)?;
        // A placeholder that passes validation; replaced by the uploaded name below.
        raw.values.insert(
            (*param).clone(),
            Value::String(format!("pending.{}", format.extension())),
        );
        images.push(((*param).clone(), bytes, format));
    }
    let mut values = validation::validate(&rules, &raw)?;

    let client = ComfyClient::connect(config.client_config(backend)).await?;
    for (param, bytes, format) in images {
        let name = format!("comfycord_{}.{}", &uuid_hex()[..12], format.extension());
        let uploaded = client
            .upload(UploadRequest::input_image(name, bytes, format.mime()))
            .await?;
        values.insert(param, Value::String(uploaded.load_image_name()));
    }
    let patched = def
        .manifest
        .apply(&def.workflow, &values, &mut rand::thread_rng())
        .map_err(|e| match e {
            core_comfyui::PatchError::Refused(r) => RunError::Refused(r),
            other => RunError::Failed(other.to_string()),
        })?;
    let mut job = client
        .submit(&patched.workflow, PromptOptions::default())
        .await?;
    let prompt_id = job.prompt_id().to_string();

    let progress = spawn_throttled(sink, TERMINAL_EDIT_INTERVAL);
    let mut tracker = Tracker::new(plan_for(&patched.workflow), tokio::time::Instant::now());
    progress.update(
        tracker
            .apply(
                Update::Queued { position: None },
                tokio::time::Instant::now(),
            )
            .clone(),
    );
    tokio::pin!(cancel);
    let mut cancel_sent = false;
    let outcome = loop {
        let ev = tokio::select! {
            ev = job.next_event() => ev,
            _ = &mut cancel, if !cancel_sent => {
                cancel_sent = true;
                if let Err(e) = job.cancel().await {
                    tracing::warn!(error = %e, "could not cancel the job");
                }
                continue;
            }
        };
        match ev {
            Some(JobEvent::Finished(outcome)) => break outcome,
            Some(ev) => {
                if let Some(u) = progress_update(&ev) {
                    progress.update(tracker.apply(u, tokio::time::Instant::now()).clone());
                }
            }
            None => {
                break Outcome::Lost {
                    reason: "the job stream ended".into(),
                }
            }
        }
    };
    let now = tokio::time::Instant::now;
    let result = match outcome {
        Outcome::Success(outputs) => {
            progress.update(tracker.apply(Update::Uploading, now()).clone());
            let stem = format!(
                "{}-{}",
                slug(
                    patched
                        .values
                        .get("prompt")
                        .and_then(Value::as_str)
                        .unwrap_or(&args.workflow)
                ),
                &prompt_id[..8.min(prompt_id.len())]
            );
            let saved = save_outputs(&client, &outputs, &args.out_dir, &stem).await;
            match saved {
                Ok(files) => Ok(RunResult {
                    prompt_id,
                    files,
                    values: patched.values,
                }),
                Err(e) => Err(e),
            }
        }
        Outcome::Failed(e) => Err(RunError::Failed(format!(
            "node {} ({}): {}",
            e.node_id.as_deref().unwrap_or("?"),
            e.node_type.as_deref().unwrap_or("?"),
            e.exception_message.trim()
        ))),
        Outcome::Interrupted(_) | Outcome::Cancelled if cancel_sent => Err(RunError::Cancelled),
        Outcome::Interrupted(i) => Err(RunError::Failed(format!(
            "interrupted on the server at node {}",
            i.node_id.as_deref().unwrap_or("?")
        ))),
        Outcome::Cancelled => Err(RunError::Cancelled),
        Outcome::Lost { reason } => Err(RunError::Failed(reason)),
    };
    let last = match &result {
        Ok(_) => Update::Finished,
        Err(RunError::Cancelled) => Update::Cancelled,
        Err(e) => Update::Failed {
            reason: e.to_string(),
        },
    };
    progress.finish(tracker.apply(last, now()).clone()).await;
    client.shutdown().await;
    result
}

fn uuid_hex() -> String {
    format!("{:032x}", rand::random::<u128>())
}

async fn save_outputs(
    client: &ComfyClient,
    outputs: &core_comfyui::Outputs,
    dir: &Path,
    stem: &str,
) -> Result<Vec<PathBuf>, RunError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|source| RunError::Save {
            path: dir.to_path_buf(),
            source,
        })?;
    let mut files = Vec::new();
    for (i, out) in outputs.files.iter().enumerate() {
        let ext = Path::new(&out.file.filename)
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("bin")
            .to_ascii_lowercase();
        let path = dir.join(format!("{stem}-{}.{ext}", i + 1));
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(|source| RunError::Save {
                path: path.clone(),
                source,
            })?;
        client.download_to(&out.file, &mut file, None).await?;
        files.push(path);
    }
    Ok(files)
}

/// Draws the progress line on stderr: redrawn in place on a terminal, one line per update otherwise.
#[derive(Debug, Clone, Copy)]
pub struct TerminalSink {
    pub redraw: bool,
}

impl ProgressSink for TerminalSink {
    async fn deliver(&self, s: &Snapshot) -> Result<(), SinkError> {
        let line = progress::render::terminal_line(s);
        if self.redraw {
            let end = if s.phase.is_final() { "\n" } else { "" };
            eprint!("\r{line}\x1b[K{end}");
        } else {
            eprintln!("{line}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_parse_by_kind() {
        let int = ParamRule::new(ParamKind::Int);
        assert_eq!(parse_param_value(Some(&int), "20"), json!(20));
        assert_eq!(parse_param_value(Some(&int), "twenty"), json!("twenty"));
        let seed = ParamRule::new(ParamKind::Seed);
        assert_eq!(
            parse_param_value(Some(&seed), "18446744073709551615"),
            json!(u64::MAX)
        );
        assert_eq!(
            parse_param_value(Some(&ParamRule::new(ParamKind::Float)), "7.5"),
            json!(7.5)
        );
        assert_eq!(
            parse_param_value(Some(&ParamRule::new(ParamKind::Bool)), "yes"),
            json!(true)
        );
        assert_eq!(parse_param_value(None, "x"), json!("x"));
        let frames = ParamRule {
            choices: vec![json!(16), json!(24)],
            ..ParamRule::new(ParamKind::Choice)
        };
        assert_eq!(parse_param_value(Some(&frames), "24"), json!(24.0));
        assert_eq!(
            parse_param_value(Some(&ParamRule::new(ParamKind::Choice)), "euler"),
            json!("euler")
        );
    }

    #[test]
    fn slugs() {
        assert_eq!(
            slug("A lighthouse, on a cliff at sunset!"),
            "a-lighthouse-on-a-cliff-at"
        );
        assert_eq!(slug("  ***  "), "comfycord");
        assert_eq!(slug("Über café"), "über-café");
    }

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
}
