//! Getting a job's progress and result onto its Discord message.
//!
//! Each job has one message. While its interaction token is fresh, that message is edited
//! through the token (no channel permissions needed); after `interaction_fresh_secs`, or once
//! the token is refused, through the channel with the bot token, so a job of an hour still
//! delivers. Notices from the scheduler feed a per-job tracker and a throttled sink; the
//! result replaces the progress once the sink has stopped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use generators::outputs::{fit_file_for_upload, Upload};
use generators::{JobId, JobRecord, Notice, SavedOutput};
use poise::serenity_prelude as serenity;
use progress::render::EmbedView;
use progress::{
    spawn_throttled, JobPlan, ProgressHandle, ProgressSink, SinkError, Snapshot, Tracker, Update,
};
use serenity::Builder as _;
use serenity::{
    ChannelId, CreateActionRow, CreateAllowedMentions, CreateAttachment, CreateEmbed,
    CreateInteractionResponseFollowup, CreateMessage, EditInteractionResponse, EditMessage, Http,
    Message, MessageId,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::render::{self, DEFAULT_UPLOAD_LIMIT, MAX_FILES_PER_MESSAGE};
use super::Data;

/// Discord error codes that mean the interaction token can no longer be used.
const TOKEN_DEAD_CODES: [isize; 3] = [50027, 10015, 10062];
/// "Unknown Message": the message was deleted.
const UNKNOWN_MESSAGE: isize = 10008;
/// Wait after a 429 whose body we cannot read.
const RATE_LIMIT_FALLBACK: Duration = Duration::from_secs(1);
const PREVIEW_JPEG: &str = "preview.jpg";
const PREVIEW_PNG: &str = "preview.png";

/// Where a job's message is and how to reach it.
#[derive(Debug, Clone)]
pub struct Route {
    pub channel: ChannelId,
    pub guild: Option<u64>,
    pub message: Option<MessageId>,
    /// The interaction token and when the interaction arrived.
    pub token: Option<(String, Instant)>,
    /// The interaction's `attachment_size_limit`.
    pub upload_limit: u64,
}

/// Routes of the jobs this process started; jobs from before a restart get theirs from the
/// journal (channel and message, no token).
#[derive(Debug, Default)]
pub struct Routes {
    map: Mutex<HashMap<JobId, Route>>,
}

impl Routes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Route>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, id: JobId, route: Route) {
        self.lock().insert(id, route);
    }

    pub fn remove(&self, id: &JobId) -> Option<Route> {
        self.lock().remove(id)
    }

    pub fn get(&self, id: &JobId) -> Option<Route> {
        self.lock().get(id).cloned()
    }

    fn forget_token(&self, id: &JobId) {
        if let Some(r) = self.lock().get_mut(id) {
            r.token = None;
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The route of a job from its journal record (after a restart).
pub fn route_from_record(record: &JobRecord) -> Option<Route> {
    let channel = record.origin.channel?;
    Some(Route {
        channel: ChannelId::new(channel),
        guild: record.origin.guild,
        message: record.origin.message.map(MessageId::new),
        token: None,
        upload_limit: DEFAULT_UPLOAD_LIMIT,
    })
}

/// One edit of a job's message, in either transport's terms.
#[derive(Debug, Default, Clone)]
pub struct MessageEdit {
    pub content: Option<String>,
    pub embeds: Option<Vec<CreateEmbed>>,
    pub components: Option<Vec<CreateActionRow>>,
    pub files: Vec<CreateAttachment>,
    /// Drop the attachments the message has (an old preview).
    pub clear_files: bool,
}

/// Applies a [`MessageEdit`] to either builder: they share these methods but no trait.
macro_rules! apply_edit {
    ($edit:expr, $builder:expr, $clear:ident) => {{
        let edit = $edit;
        let mut b = $builder.allowed_mentions(CreateAllowedMentions::new());
        if let Some(c) = edit.content {
            b = b.content(c);
        }
        if let Some(e) = edit.embeds {
            b = b.embeds(e);
        }
        if let Some(c) = edit.components {
            b = b.components(c);
        }
        if edit.clear_files {
            b = b.$clear();
        }
        for f in edit.files {
            b = b.new_attachment(f);
        }
        b
    }};
}

impl MessageEdit {
    pub(super) fn into_token_edit(self) -> EditInteractionResponse {
        apply_edit!(self, EditInteractionResponse::new(), clear_attachments)
    }

    fn into_channel_edit(self) -> EditMessage {
        apply_edit!(self, EditMessage::new(), remove_all_attachments)
    }
}

/// The Discord error code and HTTP status of a failed request, if it was one.
pub fn discord_error(e: &serenity::Error) -> Option<(u16, isize)> {
    match e {
        serenity::Error::Http(serenity::HttpError::UnsuccessfulRequest(r)) => {
            Some((r.status_code.as_u16(), r.error.code))
        }
        _ => None,
    }
}

fn token_is_dead(e: &serenity::Error) -> bool {
    matches!(discord_error(e), Some((401, _)) | Some((404, _)))
        || discord_error(e).is_some_and(|(_, code)| TOKEN_DEAD_CODES.contains(&code))
}

/// Edits a job's message: through the token while it is fresh, else through the channel.
pub async fn edit_job_message(
    http: &Http,
    routes: &Routes,
    id: &JobId,
    route: &Route,
    fresh_for: Duration,
    edit: MessageEdit,
) -> Result<Message, serenity::Error> {
    if let Some((token, at)) = &route.token {
        if at.elapsed() < fresh_for {
            let fallback = edit.clone();
            match edit.into_token_edit().execute(http, token).await {
                Ok(m) => return Ok(m),
                Err(e) if token_is_dead(&e) && route.message.is_some() => {
                    tracing::info!(job = %id, error = %e, "interaction token refused; using channel messages");
                    routes.forget_token(id);
                    return edit_by_channel(http, route, fallback).await;
                }
                Err(e) => return Err(e),
            }
        }
        routes.forget_token(id);
    }
    edit_by_channel(http, route, edit).await
}

async fn edit_by_channel(
    http: &Http,
    route: &Route,
    edit: MessageEdit,
) -> Result<Message, serenity::Error> {
    let Some(message) = route.message else {
        return Err(serenity::Error::Other("the job's message is unknown"));
    };
    edit.into_channel_edit()
        .execute(http, (route.channel, message, None))
        .await
}

/// Posts an extra message for a job (more files than one message holds, or a replacement for
/// a deleted message).
async fn post_job_message(
    http: &Http,
    route: &Route,
    fresh_for: Duration,
    content: String,
    components: Vec<CreateActionRow>,
    files: Vec<CreateAttachment>,
) -> Result<Message, serenity::Error> {
    if let Some((token, at)) = &route.token {
        if at.elapsed() < fresh_for {
            let b = CreateInteractionResponseFollowup::new()
                .content(content.clone())
                .components(components.clone())
                .allowed_mentions(CreateAllowedMentions::new())
                .add_files(files.clone());
            match b.execute(http, (None, token)).await {
                Ok(m) => return Ok(m),
                Err(e) if token_is_dead(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let b = CreateMessage::new()
        .content(content)
        .components(components)
        .allowed_mentions(CreateAllowedMentions::new())
        .add_files(files);
    route.channel.send_message(http, b).await
}

/// Attempts at an end-state or result edit through 429s (progress edits just skip ahead).
const MAX_RATE_LIMITED_ATTEMPTS: u32 = 10;

/// [`edit_job_message`] that waits out rate limits, a bounded number of times: a result must
/// not be lost to a 429 storm.
async fn edit_with_retry(
    data: &Data,
    http: &Http,
    id: &JobId,
    route: &Route,
    fresh_for: Duration,
    edit: &MessageEdit,
) -> Result<Message, serenity::Error> {
    let mut attempt = 1;
    loop {
        // The route may have lost its token on an earlier attempt.
        let route = data.routes.get(id).unwrap_or_else(|| route.clone());
        match edit_job_message(http, &data.routes, id, &route, fresh_for, edit.clone()).await {
            Err(e)
                if matches!(discord_error(&e), Some((429, _)))
                    && attempt < MAX_RATE_LIMITED_ATTEMPTS =>
            {
                data.metrics
                    .rate_limited
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(RATE_LIMIT_FALLBACK * attempt).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Edits one job's message with progress snapshots.
struct DiscordSink {
    http: Arc<Http>,
    data: Arc<Data>,
    id: JobId,
    prompt: Option<String>,
}

fn sink_error(e: &serenity::Error) -> SinkError {
    match discord_error(e) {
        Some((429, _)) => SinkError::RateLimited {
            retry_after: RATE_LIMIT_FALLBACK,
        },
        Some((_, UNKNOWN_MESSAGE)) => SinkError::Gone(e.to_string()),
        Some((404, _)) => SinkError::Gone(e.to_string()),
        _ => SinkError::Failed(e.to_string()),
    }
}

impl ProgressSink for DiscordSink {
    async fn deliver(&self, s: &Snapshot) -> Result<(), SinkError> {
        let Some(route) = self.data.routes.get(&self.id) else {
            return Err(SinkError::Gone("no route".into()));
        };
        let view = EmbedView::from_snapshot(s);
        let mut edit = MessageEdit::default();
        let preview = s.preview.as_ref().filter(|_| view.show_preview);
        let name = preview.map(|p| {
            if p.mime == "image/png" {
                PREVIEW_PNG
            } else {
                PREVIEW_JPEG
            }
        });
        if let (Some(p), Some(name)) = (preview, name) {
            edit.files
                .push(CreateAttachment::bytes(p.image.to_vec(), name));
            edit.clear_files = false;
        }
        edit.embeds = Some(vec![render::progress_embed(
            &view,
            self.prompt.as_deref(),
            name,
        )]);
        let fresh = self.data.config().interaction_fresh();
        match edit_job_message(&self.http, &self.data.routes, &self.id, &route, fresh, edit).await {
            Ok(_) => {
                self.data
                    .metrics
                    .progress_edits
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                if matches!(discord_error(&e), Some((429, _))) {
                    self.data
                        .metrics
                        .rate_limited
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Err(sink_error(&e))
            }
        }
    }
}

/// A job being followed.
struct Live {
    tracker: Tracker,
    started: tokio::time::Instant,
    progress: ProgressHandle,
}

/// Consumes the scheduler's notices until `cancel`: progress into messages, results and
/// failures onto them. Heavy work (fitting files, uploads) runs on `data.tasks`.
pub async fn run(
    data: Arc<Data>,
    http: Arc<Http>,
    mut notices: mpsc::Receiver<Notice>,
    cancel: CancellationToken,
) {
    let mut live: HashMap<JobId, Live> = HashMap::new();
    loop {
        let notice = tokio::select! {
            _ = cancel.cancelled() => break,
            n = notices.recv() => match n {
                Some(n) => n,
                None => break,
            },
        };
        let id = notice.id().clone();
        let update = match notice {
            Notice::Queued { position, .. } => Update::Queued {
                position: Some(position),
            },
            Notice::Started { .. } => Update::Started,
            Notice::Plan { plan, .. } => {
                if let Some(l) = live_for(&data, &http, &mut live, &id) {
                    l.tracker = Tracker::new(plan, l.started);
                }
                continue;
            }
            Notice::Progress { update, .. } => update,
            Notice::Retrying { reason, .. } => {
                tracing::warn!(job = %id, %reason, "retrying on another backend");
                continue;
            }
            Notice::Finished { outputs, .. } => {
                let progress = live.remove(&id).map(|l| l.progress);
                let (data, http) = (data.clone(), http.clone());
                data.tasks.clone().spawn(async move {
                    if let Some(p) = progress {
                        p.stop().await;
                    }
                    deliver_result(&data, &http, &id, &outputs).await;
                });
                continue;
            }
            Notice::Failed { reason, .. } => {
                end(&data, &http, &mut live, id, Some(reason));
                continue;
            }
            Notice::Cancelled { .. } => {
                end(&data, &http, &mut live, id, None);
                continue;
            }
        };
        if let Some(l) = live_for(&data, &http, &mut live, &id) {
            let snapshot = l.tracker.apply(update, tokio::time::Instant::now()).clone();
            l.progress.update(snapshot);
        }
    }
    // Shutting down: let edits in flight finish; the journal resumes the rest.
    for (_, l) in live.drain() {
        l.progress.stop().await;
    }
}

fn live_for<'a>(
    data: &Arc<Data>,
    http: &Arc<Http>,
    live: &'a mut HashMap<JobId, Live>,
    id: &JobId,
) -> Option<&'a mut Live> {
    if !live.contains_key(id) {
        let record = data.journal.get(id).ok().flatten();
        if data.routes.get(id).is_none() {
            // A job from before a restart: its message is in the journal.
            data.routes
                .insert(id.clone(), route_from_record(record.as_ref()?)?);
        }
        let prompt = record
            .as_ref()
            .and_then(|r| r.spec.values.get("prompt"))
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let sink = DiscordSink {
            http: http.clone(),
            data: data.clone(),
            id: id.clone(),
            prompt,
        };
        let started = tokio::time::Instant::now();
        live.insert(
            id.clone(),
            Live {
                tracker: Tracker::new(JobPlan::default(), started),
                started,
                progress: spawn_throttled(sink, data.config().edit_interval()),
            },
        );
    }
    live.get_mut(id)
}

/// A failed (`reason`) or cancelled job: stop its progress and say so on its message.
fn end(
    data: &Arc<Data>,
    http: &Arc<Http>,
    live: &mut HashMap<JobId, Live>,
    id: JobId,
    reason: Option<String>,
) {
    let progress = live.remove(&id).map(|l| l.progress);
    let (data, http) = (data.clone(), http.clone());
    data.tasks.clone().spawn(async move {
        if let Some(p) = progress {
            p.stop().await;
        }
        let record = data.journal.get(&id).ok().flatten();
        let route = data
            .routes
            .remove(&id)
            .or_else(|| record.as_ref().and_then(route_from_record));
        let Some(route) = route else { return };
        let prompt = record
            .as_ref()
            .and_then(|r| r.spec.values.get("prompt"))
            .and_then(|v| v.as_str());
        let text = match &reason {
            Some(r) => r.as_str(),
            None => "The job was cancelled.",
        };
        let counter = if reason.is_some() {
            &data.metrics.failed
        } else {
            &data.metrics.cancelled
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let edit = MessageEdit {
            embeds: Some(vec![render::ended_embed(reason.is_some(), text, prompt)]),
            components: Some(Vec::new()),
            clear_files: true,
            ..MessageEdit::default()
        };
        let fresh = data.config().interaction_fresh();
        if let Err(e) = edit_with_retry(&data, &http, &id, &route, fresh, &edit).await {
            tracing::warn!(job = %id, error = %e, "could not show the job's end");
        }
        super::launch::remove_inputs(&data, record.as_ref());
    });
}

/// Files to upload and the ones too large for the channel.
fn prepare_uploads(
    outputs: &[SavedOutput],
    limit: u64,
) -> (Vec<CreateAttachment>, Vec<(String, u64)>) {
    let mut files = Vec::new();
    let mut too_large = Vec::new();
    for o in outputs {
        let name = o
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output".into());
        match fit_file_for_upload(&o.path, o.kind, limit) {
            Ok(Upload::File { name, bytes, .. }) => {
                files.push(CreateAttachment::bytes(bytes, name))
            }
            Ok(Upload::TooLarge { size, .. }) => too_large.push((name, size)),
            Err(e) => {
                tracing::warn!(path = %o.path.display(), error = %e, "output cannot be uploaded");
                too_large.push((name, o.bytes));
            }
        }
    }
    (files, too_large)
}

/// Posts a finished job's outputs with their buttons, then records the delivery.
pub async fn deliver_result(data: &Arc<Data>, http: &Http, id: &JobId, outputs: &[SavedOutput]) {
    let record = match data.journal.get(id) {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(job = %id, error = %e, "cannot read a finished job");
            return;
        }
    };
    let Some(route) = data.routes.get(id).or_else(|| route_from_record(&record)) else {
        // Not from Discord: nothing to show it on.
        let _ = data.scheduler.delivered(id).await;
        return;
    };
    let limit = route.upload_limit;
    let owned = outputs.to_vec();
    let (files, too_large) = tokio::task::spawn_blocking(move || prepare_uploads(&owned, limit))
        .await
        .unwrap_or_default();
    let source_link = record
        .spec
        .parent
        .as_ref()
        .and_then(|p| data.journal.get(p).ok().flatten())
        .and_then(|p| {
            Some(render::message_link(
                p.origin.guild,
                p.origin.channel?,
                p.origin.message?,
            ))
        });
    let content = render::result_content(&record, source_link.as_deref(), &too_large, limit);
    let rows = render::result_rows(id, data.offers(&record));
    let mut chunks: Vec<Vec<CreateAttachment>> = files
        .chunks(MAX_FILES_PER_MESSAGE)
        .map(<[_]>::to_vec)
        .collect();
    let first = if chunks.is_empty() {
        Vec::new()
    } else {
        chunks.remove(0)
    };
    let fresh = data.config().interaction_fresh();
    let edit = MessageEdit {
        content: Some(content.clone()),
        embeds: Some(Vec::new()),
        components: Some(rows.clone()),
        files: first.clone(),
        clear_files: true,
    };
    let shown = match edit_with_retry(data, http, id, &route, fresh, &edit).await {
        Ok(_) => true,
        Err(e)
            if matches!(discord_error(&e), Some((_, UNKNOWN_MESSAGE)))
                || route.message.is_none() =>
        {
            // The progress message was deleted: post the result as a new message.
            post_job_message(http, &route, fresh, content.clone(), rows.clone(), first)
                .await
                .map_err(|e| tracing::error!(job = %id, error = %e, "cannot post the result"))
                .is_ok()
        }
        Err(e)
            if matches!(
                discord_error(&e),
                Some((413, _)) | Some((_, 40005)) | Some((_, 50045))
            ) =>
        {
            let note = format!(
                "{content}\nThe files were refused as too large; they are kept on the server."
            );
            let edit = MessageEdit {
                content: Some(render::truncate_chars(&note, render::MAX_CONTENT_CHARS)),
                embeds: Some(Vec::new()),
                components: Some(rows.clone()),
                clear_files: true,
                ..MessageEdit::default()
            };
            edit_job_message(http, &data.routes, id, &route, fresh, edit)
                .await
                .is_ok()
        }
        Err(e) => {
            tracing::error!(job = %id, error = %e, "cannot show the result");
            false
        }
    };
    for chunk in chunks {
        if let Err(e) =
            post_job_message(http, &route, fresh, String::new(), Vec::new(), chunk).await
        {
            tracing::warn!(job = %id, error = %e, "cannot post more outputs");
        }
    }
    if shown {
        data.metrics
            .results
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = data.scheduler.delivered(id).await {
            tracing::error!(job = %id, error = %e, "cannot record the delivery");
        }
        data.routes.remove(id);
    }
    // Not shown: the job stays undelivered in the journal and is retried at the next start.
}
