//! Starting a job from an acknowledged interaction: the one path slash commands, buttons and
//! the edit modal share. The interaction is always deferred before anything here runs.

use std::path::PathBuf;
use std::time::Instant;

use generators::{JobId, JobRecord, Origin, SubmitError};
use poise::serenity_prelude as serenity;
use serenity::Builder as _;
use serenity::{ChannelId, CreateAllowedMentions, CreateInteractionResponseFollowup, Http};
use validation::attachment::{inspect, precheck, DeclaredAttachment};
use validation::Refusal;

use super::access::{self, Caller};
use super::delivery::{retry_transient, MessageEdit, Route};
use super::render;
use super::Data;
use crate::jobs::{prepare, JobRequest, LocalImage, PrepareError};

/// Ephemeral replies ride out Discord's brief 5xx answers for this long.
const REPLY_RETRY: std::time::Duration = std::time::Duration::from_secs(10);

/// An acknowledged interaction: its token, where it came from, who sent it.
#[derive(Debug, Clone)]
pub struct Responder {
    pub token: String,
    pub at: Instant,
    pub channel: ChannelId,
    pub upload_limit: u64,
    pub caller: Caller,
}

impl Responder {
    /// Replaces the deferred "thinking" message with an error only the caller sees.
    pub async fn fail(&self, http: &Http, message: &str) {
        let text = render::truncate_chars(&format!("⚠️ {message}"), render::MAX_CONTENT_CHARS);
        // A follow-up right after a defer would edit the public loading message; delete it
        // first so the error can be ephemeral.
        if http
            .delete_original_interaction_response(&self.token)
            .await
            .is_err()
        {
            let edit = serenity::EditInteractionResponse::new()
                .content(text.clone())
                .allowed_mentions(CreateAllowedMentions::new());
            if edit.execute(http, &self.token).await.is_ok() {
                return;
            }
        }
        let reply = CreateInteractionResponseFollowup::new()
            .content(text)
            .ephemeral(true)
            .allowed_mentions(CreateAllowedMentions::new());
        let sent = retry_transient("an ephemeral error", REPLY_RETRY, || {
            reply.clone().execute(http, (None, &self.token))
        })
        .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, "could not tell the user about an error");
        }
    }

    /// An ephemeral follow-up (after a deferred update, where it makes a new message).
    pub async fn whisper(&self, http: &Http, message: &str) {
        let reply = CreateInteractionResponseFollowup::new()
            .content(render::truncate_chars(message, render::MAX_CONTENT_CHARS))
            .ephemeral(true)
            .allowed_mentions(CreateAllowedMentions::new());
        let sent = retry_transient("an ephemeral reply", REPLY_RETRY, || {
            reply.clone().execute(http, (None, &self.token))
        })
        .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, "could not send an ephemeral reply");
        }
    }
}

/// Logs an internal error with an id and returns the sentence to show instead.
pub fn internal(context: &str, error: &dyn std::fmt::Display) -> String {
    let id = format!("{:08x}", rand::random::<u32>());
    tracing::error!(error_id = %id, %context, %error, "internal error");
    format!(
        "Something went wrong on our side. If it keeps happening, give an admin this id: `{id}`."
    )
}

/// What a user is told when the scheduler refuses a job.
pub fn submit_error_message(e: &SubmitError) -> String {
    match e {
        SubmitError::Refused(r) => r.to_string(),
        SubmitError::NoBackend { .. } => e.to_string(),
        SubmitError::Closed => "The bot is restarting; try again in a minute.".into(),
        SubmitError::Journal(j) => internal("journal insert", j),
    }
}

pub fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// An attachment the user sent, as Discord describes it.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub filename: String,
    pub content_type: Option<String>,
    pub size: u64,
    pub url: String,
}

impl From<&serenity::Attachment> for Incoming {
    fn from(a: &serenity::Attachment) -> Self {
        Incoming {
            filename: a.filename.clone(),
            content_type: a.content_type.clone(),
            size: u64::from(a.size),
            url: a.url.clone(),
        }
    }
}

/// Downloads and checks the user's attachments into the inputs folder, named after the job.
pub async fn fetch_inputs(
    data: &Data,
    job: &JobId,
    incoming: &[Incoming],
    allow_video: bool,
) -> Result<Vec<LocalImage>, String> {
    let mut rules = data.config().attachment_rules();
    rules.allow_video = allow_video;
    let dir = data.inputs_dir();
    let mut out = Vec::new();
    for (i, a) in incoming.iter().enumerate() {
        let declared = DeclaredAttachment {
            filename: a.filename.clone(),
            content_type: a.content_type.clone(),
            size: a.size,
            url: a.url.clone(),
        };
        let checked_url = match data.test_attachment_base() {
            // A test Discord serves its own attachments.
            Some(base) if a.url.starts_with(&base) => {
                let mut d = declared.clone();
                d.url = "https://cdn.discordapp.com/attachments/test".into();
                precheck(&d, &rules)
            }
            _ => precheck(&declared, &rules),
        };
        checked_url.map_err(|r| r.to_string())?;
        let bytes = download(data, &a.url, rules.max_bytes)
            .await
            .map_err(|e| format!("Could not download {}: {e}", a.filename))?;
        // Decoding is CPU and memory work: off the async threads, a bounded number at once.
        let permit = data
            .decodes
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| internal("waiting to check an input", &e))?;
        let (bytes, media) = {
            let rules = rules.clone();
            let declared = declared.clone();
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let media = inspect(&bytes, &declared, &rules);
                (bytes, media)
            })
            .await
            .map_err(|e| internal("checking an input", &e))?
        };
        let media = media.map_err(|r: Refusal| r.to_string())?;
        let path = dir.join(format!("{}-{i}.{}", job.as_str(), media.format.extension()));
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| internal("creating the inputs folder", &e))?;
        tokio::fs::write(&path, &bytes)
            .await
            .map_err(|e| internal("saving an input", &e))?;
        out.push(LocalImage {
            path,
            format: media.format,
        });
    }
    Ok(out)
}

async fn download(data: &Data, url: &str, max: u64) -> Result<Vec<u8>, String> {
    let mut resp = data
        .downloads
        .get(url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| e.without_url().to_string())?;
    let mut bytes = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| e.without_url().to_string())?
    {
        if (bytes.len() + chunk.len()) as u64 > max {
            return Err(format!(
                "it is over the {} limit",
                validation::refusal::fmt_bytes(max)
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Deletes a job's downloaded inputs (never outputs of other jobs it derived from).
pub fn remove_inputs(data: &Data, record: Option<&JobRecord>) {
    let Some(record) = record else { return };
    let dir = data.inputs_dir();
    for input in &record.spec.inputs {
        if input.path.starts_with(&dir) {
            let _ = std::fs::remove_file(&input.path);
        }
    }
}

/// Checks `req`, shows the queued message with a Cancel button, and queues the job. Every
/// refusal reaches the user; nothing is left "thinking".
pub async fn start_job(data: &Data, http: &Http, resp: &Responder, id: JobId, req: JobRequest) {
    let nsfw = data
        .catalog()
        .get(&req.workflow)
        .is_some_and(|d| d.manifest.nsfw);
    if nsfw {
        let channel_nsfw = data.channel_is_nsfw(http, resp.channel).await;
        if let Err(msg) = access::nsfw_allowed(&req.workflow, true, channel_nsfw) {
            return resp.fail(http, &msg).await;
        }
    }
    let catalog = data.catalog();
    let prepared = prepare(&catalog, req, &mut rand::thread_rng());
    let prepared = match prepared {
        Ok(p) => p,
        Err(PrepareError::Patch(e)) => {
            return resp.fail(http, &internal("patching a workflow", &e)).await
        }
        Err(e) => return resp.fail(http, &e.to_string()).await,
    };
    let prompt = prepared
        .values
        .get("prompt")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let queued = progress::render::EmbedView {
        title: "Queued".into(),
        description: format!("`{}` 0%", progress::render::bar(0.0)),
        fields: Vec::new(),
        show_preview: false,
    };
    let edit = MessageEdit {
        embeds: Some(vec![render::progress_embed(
            &queued,
            prompt.as_deref(),
            None,
        )]),
        components: Some(render::cancel_row(&id)),
        ..MessageEdit::default()
    };
    let message = match edit.into_token_edit().execute(http, &resp.token).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(job = %id, error = %e, "could not show the queued message");
            return;
        }
    };
    let route = Route {
        channel: resp.channel,
        guild: resp.caller.guild,
        message: Some(message.id),
        token: Some((resp.token.clone(), resp.at)),
        upload_limit: resp.upload_limit,
    };
    data.routes.insert(id.clone(), route);
    let origin = Origin {
        owner: resp.caller.user,
        guild: resp.caller.guild,
        channel: Some(resp.channel.get()),
        message: Some(message.id.get()),
    };
    let is_admin = access::is_admin(&data.config().discord, &resp.caller);
    let spec = prepared.spec;
    let (workflow, values) = (spec.workflow.clone(), spec.values.clone());
    let inputs: Vec<PathBuf> = spec.inputs.iter().map(|i| i.path.clone()).collect();
    if let Err(e) = data
        .scheduler
        .submit_as(id.clone(), spec, origin, is_admin)
        .await
    {
        data.routes.remove(&id);
        for p in inputs.iter().filter(|p| p.starts_with(data.inputs_dir())) {
            let _ = std::fs::remove_file(p);
        }
        resp.fail(http, &submit_error_message(&e)).await;
        return;
    }
    if let Some(kind) = generators::cosmos::spec::CosmosKind::from_workflow(&workflow) {
        // The readable prompt and run specs, kept in the journal beside the job.
        let record = generators::cosmos::spec::journal_record(kind, id.as_str(), &values);
        if let Err(e) = data
            .journal
            .meta_set(&format!("cosmos_spec:{id}"), &record.to_string())
        {
            tracing::warn!(job = %id, error = %e, "could not record the Cosmos specs");
        }
    }
    data.metrics
        .submitted
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(job = %id, user = resp.caller.user, "job queued");
}
