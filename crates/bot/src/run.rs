//! `comfycord run`: one workflow from the terminal, through the same checks, scheduler and
//! generator as the bot: validate → queue → upload inputs → follow progress → save outputs.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use core_comfyui::{Catalog, CatalogError, ComfyError};
use generators::{
    Follower, JobEnd, JobRequest, LocalInput, MemoryJournal, Notice, Origin, PrepareError, Step,
    SubmitError,
};
use progress::{spawn_throttled, ProgressSink, SinkError, Snapshot};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use validation::attachment::{inspect, AttachmentRules, DeclaredAttachment, MediaFormat};
use validation::{ParamKind, ParamRule, Refusal};

use crate::config::Config;
use crate::engine::start_engine;

/// Terminal redraws are cheap; a short interval keeps the bar lively.
pub const TERMINAL_EDIT_INTERVAL: Duration = Duration::from_millis(200);

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
    pub job_id: String,
    pub files: Vec<PathBuf>,
    /// Every parameter's final value, the seed included.
    pub values: Map<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Refused(#[from] Refusal),
    #[error("unknown backend {name:?}; configured: {configured}")]
    UnknownBackend { name: String, configured: String },
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
    #[error("{0}")]
    Prepare(#[from] PrepareError),
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

/// Checks a local image like a Discord attachment (size, magic bytes, dimensions).
fn check_image(path: &Path, rules: &AttachmentRules) -> Result<MediaFormat, RunError> {
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
    Ok(inspect(&bytes, &declared, rules)?.format)
}

/// Runs one workflow to its end through the same scheduler and generator the bot uses (with an
/// in-memory journal). `sink` shows progress; `cancel` resolving cancels the job.
pub async fn run_workflow<S: ProgressSink>(
    config: &Config,
    args: RunArgs,
    sink: S,
    cancel: impl Future<Output = ()>,
) -> Result<RunResult, RunError> {
    let (catalog, _) = Catalog::load_dir(&config.workflows_dir)?;
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
    // Text is parsed by each parameter's type; an unknown workflow is refused by `prepare`.
    let rules = catalog
        .get(&args.workflow)
        .map(|d| d.manifest.rules())
        .unwrap_or_default();
    // Check everything local before touching the server.
    let mut values = Map::new();
    if let Some(p) = &args.prompt {
        values.insert("prompt".into(), Value::String(p.clone()));
    }
    for (name, value) in &args.params {
        values.insert(name.clone(), parse_param_value(rules.get(name), value));
    }
    let attachment_rules = config.attachment_rules();
    let mut images = Vec::new();
    for path in &args.images {
        let format = check_image(path, &attachment_rules)?;
        images.push(LocalInput {
            path: path.clone(),
            format,
        });
    }
    let catalog = Arc::new(catalog);
    // The same engine as the bot: one backend (the one asked for), no Cosmos host, an
    // in-memory journal, outputs in --out.
    let mut engine_config = config.clone();
    engine_config.backends = vec![backend.clone()];
    engine_config.cosmos = None;
    engine_config.outputs.dir = args.out_dir.clone();
    let kinds = crate::engine::job_kinds(&engine_config, catalog.clone());
    let request = JobRequest {
        workflow: args.workflow.clone(),
        values,
        aspect: args.aspect.clone(),
        inputs: images,
        parent: None,
        sources: Default::default(),
        templates: Default::default(),
    };
    let spec = kinds.prepare(request, &mut rand::thread_rng())?;
    let values = spec.values.clone();

    let stop = CancellationToken::new();
    // Every early return below stops the engine's tasks.
    let _stop_on_return = stop.clone().drop_guard();
    let tasks = TaskTracker::new();
    let engine = start_engine(
        &engine_config,
        catalog,
        Arc::new(MemoryJournal::new()),
        &stop,
        &tasks,
    )
    .map_err(|e| RunError::Failed(format!("{e:#}")))?;
    let client = engine.generators[0].client().clone();
    client.wait_connected().await?;
    let (scheduler, mut notices) = (engine.scheduler, engine.notices);
    let id = match scheduler.submit(spec, Origin::default(), true).await {
        Ok(id) => id,
        Err(SubmitError::Refused(r)) => return Err(RunError::Refused(r)),
        Err(e) => return Err(RunError::Failed(e.to_string())),
    };

    let progress = spawn_throttled(sink, TERMINAL_EDIT_INTERVAL);
    let mut follower = Follower::new();
    tokio::pin!(cancel);
    let mut cancel_sent = false;
    let (result, last) = loop {
        let notice = tokio::select! {
            n = notices.recv() => n,
            _ = &mut cancel, if !cancel_sent => {
                cancel_sent = true;
                if let Err(e) = scheduler.cancel(&id, 0, true).await {
                    tracing::warn!(error = %e, "could not cancel the job");
                }
                continue;
            }
        };
        // A stopped scheduler ends the job like a failure would.
        let notice = notice.unwrap_or_else(|| Notice::Failed {
            id: id.clone(),
            reason: "the scheduler stopped".into(),
        });
        if let Notice::Retrying { reason, .. } = &notice {
            tracing::warn!(%reason, "the job runs again");
        }
        match follower.follow(notice, tokio::time::Instant::now()).1 {
            Step::Planned => {}
            Step::Show(snapshot) => progress.update(snapshot),
            Step::End { end, last } => {
                let result = match end {
                    JobEnd::Finished(outputs) => Ok(outputs),
                    JobEnd::Failed(reason) => Err(RunError::Failed(reason)),
                    JobEnd::Cancelled => Err(RunError::Cancelled),
                };
                break (result, last);
            }
        }
    };
    progress.finish(last).await;
    stop.cancel();
    tasks.close();
    tasks.wait().await;
    client.shutdown().await;
    result.map(|outputs| RunResult {
        job_id: id.to_string(),
        files: outputs.into_iter().map(|o| o.path).collect(),
        values,
    })
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
}
