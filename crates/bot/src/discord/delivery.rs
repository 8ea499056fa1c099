//! Getting a job's progress and result onto its Discord message.
//!
//! Each job has one message. While its interaction token is fresh, that message is edited
//! through the token (no channel permissions needed); after `interaction_fresh_secs`, or once
//! the token is refused, through the channel with the bot token, so a job of an hour still
//! delivers. Notices from the scheduler feed a per-job tracker and a throttled sink; the
//! result replaces the progress once the sink has stopped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use generators::{Follower, JobEnd, JobId, Notice, SavedOutput, Step};
use poise::serenity_prelude as serenity;
use progress::render::EmbedView;
use progress::{spawn_throttled_after, ProgressHandle, ProgressSink, SinkError, Snapshot};
use serenity::{CreateActionRow, CreateAttachment, Http, MessageId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::buttons;
use super::message::{
    classify, discord_error, edit_job_message, edit_retrying, post_job_message, retrying,
    route_from_record, Failure, MessageEdit, Route, RATE_LIMIT_FALLBACK, UNKNOWN_MESSAGE,
};
use super::render;
use super::result_view::result_message;
use super::Data;

const PREVIEW_JPEG: &str = "preview.jpg";
const PREVIEW_PNG: &str = "preview.png";
/// A result Discord refused for good is offered again this long later, doubling each time,
/// at most [`MAX_REDELIVERIES`] times; after that it waits for the next start.
const REDELIVERY_FIRST_DELAY: Duration = Duration::from_secs(120);
const MAX_REDELIVERIES: u32 = 5;

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
                self.data.metrics.progress_edits.inc();
                Ok(())
            }
            Err(e) => {
                if matches!(discord_error(&e), Some((429, _))) {
                    self.data.metrics.rate_limited.inc();
                }
                Err(sink_error(&e))
            }
        }
    }
}

/// Consumes the scheduler's notices until `cancel`: progress into messages, results and
/// failures onto them. Heavy work (fitting files, uploads) runs on `data.tasks`.
pub async fn run(
    data: Arc<Data>,
    http: Arc<Http>,
    mut notices: mpsc::Receiver<Notice>,
    cancel: CancellationToken,
) {
    let mut follower = Follower::new();
    // One throttled editor per followed job that has a message.
    let mut live: HashMap<JobId, ProgressHandle> = HashMap::new();
    loop {
        let notice = tokio::select! {
            _ = cancel.cancelled() => break,
            n = notices.recv() => match n {
                Some(n) => n,
                None => break,
            },
        };
        if let Notice::Retrying { id, reason } = &notice {
            tracing::warn!(job = %id, %reason, "the job runs again");
        }
        match follower.follow(notice, tokio::time::Instant::now()) {
            (_, Step::Planned) => {}
            (id, Step::Show(snapshot)) => {
                if let Some(progress) = live_for(&data, &http, &mut live, &id) {
                    progress.update(snapshot);
                }
            }
            (id, Step::End { end: outcome, .. }) => {
                let progress = live.remove(&id);
                let (data, http) = (data.clone(), http.clone());
                data.tasks.clone().spawn(async move {
                    if let Some(p) = progress {
                        p.stop().await;
                    }
                    match outcome {
                        JobEnd::Finished(outputs) => {
                            deliver_result(&data, &http, &id, &outputs).await
                        }
                        JobEnd::Failed(reason) => end(&data, &http, id, Some(reason)).await,
                        JobEnd::Cancelled => end(&data, &http, id, None).await,
                    }
                });
            }
        }
    }
    // Shutting down: let edits in flight finish; the journal resumes the rest.
    for (_, progress) in live.drain() {
        progress.stop().await;
    }
}

/// The progress editor of a job's message, started on its first notice; `None` for a job
/// with no message (from the CLI, or its message is unknown).
fn live_for<'a>(
    data: &Arc<Data>,
    http: &Arc<Http>,
    live: &'a mut HashMap<JobId, ProgressHandle>,
    id: &JobId,
) -> Option<&'a mut ProgressHandle> {
    if !live.contains_key(id) {
        let route = match data.routes.get(id) {
            Some(route) => route,
            None => {
                // A job from before a restart: its message is in the journal.
                let record = data.journal.get(id).ok().flatten()?;
                let route = route_from_record(&record)?;
                data.routes.insert(id.clone(), route.clone());
                route
            }
        };
        let sink = DiscordSink {
            http: http.clone(),
            data: data.clone(),
            id: id.clone(),
            prompt: route.prompt.clone(),
        };
        // The message was just shown (or edited): the first edit keeps the interval too.
        let shown = route.shown.unwrap_or_else(tokio::time::Instant::now);
        live.insert(
            id.clone(),
            spawn_throttled_after(sink, data.config().edit_interval(), shown),
        );
    }
    live.get_mut(id)
}

/// A failed (`reason`) or cancelled job: say so on its message.
async fn end(data: &Arc<Data>, http: &Arc<Http>, id: JobId, reason: Option<String>) {
    let record = data.journal.get(&id).ok().flatten();
    let route = data
        .routes
        .remove(&id)
        .or_else(|| record.as_ref().and_then(route_from_record));
    let Some(route) = route else { return };
    let text = match &reason {
        Some(r) => r.as_str(),
        None => "The job was cancelled.",
    };
    let counter = if reason.is_some() {
        &data.metrics.failed
    } else {
        &data.metrics.cancelled
    };
    counter.inc();
    // A failure can be run again as it was; a cancelled job is over.
    let components = if reason.is_some() {
        buttons::retry_row(&id)
    } else {
        Vec::new()
    };
    let edit = MessageEdit {
        embeds: Some(vec![render::ended_embed(
            reason.is_some(),
            text,
            route.prompt.as_deref(),
        )]),
        components: Some(components),
        clear_files: true,
        ..MessageEdit::default()
    };
    if let Err(e) = edit_retrying(data, http, &id, &route, &edit).await {
        tracing::warn!(job = %id, error = %e, "could not show the job's end");
    }
    super::inputs::remove_inputs(data, record.as_ref());
}

/// What a result's delivery has done so far, kept in the journal (meta `delivery:<job>`) so
/// that a delivery repeated after a crash or a refusal posts nothing twice.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeliveryLog {
    /// The result (with its first files and buttons) is on Discord.
    pub shown: bool,
    /// It went out as a new message instead of replacing the progress.
    pub posted_as: Option<u64>,
    /// Indexes of the extra messages (files past the first ten) already posted.
    pub extra_posted: Vec<usize>,
}

fn log_key(id: &JobId) -> String {
    format!("delivery:{id}")
}

fn read_log(data: &Data, id: &JobId) -> DeliveryLog {
    match data.journal.meta_get(&log_key(id)) {
        Ok(Some(text)) => serde_json::from_str(&text).unwrap_or_else(|e| {
            tracing::warn!(job = %id, error = %e, "unreadable delivery log; delivering from the start");
            DeliveryLog::default()
        }),
        Ok(None) => DeliveryLog::default(),
        Err(e) => {
            tracing::warn!(job = %id, error = %e, "cannot read the delivery log");
            DeliveryLog::default()
        }
    }
}

/// Records a step before the next one is taken.
fn save_log(data: &Data, id: &JobId, log: &DeliveryLog) {
    let text = serde_json::to_string(log).unwrap_or_default();
    if let Err(e) = data.journal.meta_set(&log_key(id), &text) {
        tracing::warn!(job = %id, error = %e, "cannot record a delivery step");
    }
}

/// How the result got onto Discord.
enum Shown {
    Edited,
    Posted(MessageId),
}

/// Puts the result on Discord: replaces the progress message, or (deleted, or Discord keeps
/// refusing the edit) posts it as a new message. `Err` carries what Discord said.
async fn show_result(
    data: &Data,
    http: &Http,
    id: &JobId,
    route: &Route,
    edit: &MessageEdit,
) -> Result<Shown, String> {
    let config = data.config();
    let fresh = config.interaction_fresh();
    let post = |content: String, rows: Vec<CreateActionRow>, files: Vec<CreateAttachment>| {
        retrying(
            data,
            "posting a result",
            config.delivery_retry(),
            move || {
                post_job_message(
                    http,
                    route,
                    fresh,
                    content.clone(),
                    rows.clone(),
                    files.clone(),
                )
            },
        )
    };
    let content = edit.content.clone().unwrap_or_default();
    let rows = edit.components.clone().unwrap_or_default();
    let failure = if route.message.is_none() {
        Failure::Gone
    } else {
        match edit_retrying(data, http, id, route, edit).await {
            Ok(_) => return Ok(Shown::Edited),
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "the result could not replace the progress message");
                match classify(&e) {
                    // Files refused as too large: say so on the message, keep them here.
                    Failure::TooLarge => {
                        let note = format!(
                            "{content}\nThe files were refused as too large; they are kept on the server."
                        );
                        let text_only = MessageEdit {
                            content: Some(render::truncate_chars(&note, render::MAX_CONTENT_CHARS)),
                            embeds: Some(Vec::new()),
                            components: Some(rows.clone()),
                            clear_files: true,
                            ..MessageEdit::default()
                        };
                        return edit_retrying(data, http, id, route, &text_only)
                            .await
                            .map(|_| Shown::Edited)
                            .map_err(|e| e.to_string());
                    }
                    other => other,
                }
            }
        }
    };
    // Deleted, or Discord kept failing the edit: a new message carries the result.
    tracing::info!(job = %id, ?failure, "posting the result as a new message");
    match post(content.clone(), rows, edit.files.clone()).await {
        Ok(m) => {
            if failure != Failure::Gone {
                // Best effort: point the stuck progress message at the result.
                let pointer = MessageEdit {
                    content: Some(format!(
                        "Finished: the result is in {}.",
                        render::message_link(route.guild, route.channel.get(), m.id.get())
                    )),
                    embeds: Some(Vec::new()),
                    components: Some(Vec::new()),
                    clear_files: true,
                    ..MessageEdit::default()
                };
                let _ = edit_job_message(http, &data.routes, id, route, fresh, pointer).await;
            }
            Ok(Shown::Posted(m.id))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Posts a finished job's outputs with their buttons, then records the delivery. Each step is
/// recorded before the next, so a repeat (after a crash, or after Discord refused) goes on
/// where this one stopped. When Discord refuses the result for longer than
/// `discord.delivery_retry_secs`, the member is told it is saved and it is offered again later.
pub async fn deliver_result(
    data: &Arc<Data>,
    http: &Arc<Http>,
    id: &JobId,
    outputs: &[SavedOutput],
) {
    for redeliveries in 0..=MAX_REDELIVERIES {
        let Some(wait) = deliver_attempt(data, http, id, outputs, redeliveries).await else {
            return;
        };
        tokio::select! {
            _ = data.cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One delivery; `Some(wait)`: Discord refused it, try again after `wait`.
async fn deliver_attempt(
    data: &Arc<Data>,
    http: &Arc<Http>,
    id: &JobId,
    outputs: &[SavedOutput],
    redeliveries: u32,
) -> Option<Duration> {
    let mut record = match data.journal.get(id) {
        Ok(Some(r)) => r,
        Ok(None) => return None,
        Err(e) => {
            tracing::error!(job = %id, error = %e, "cannot read a finished job");
            return None;
        }
    };
    // What the generator reported is what gets shown.
    record.outputs = outputs.to_vec();
    let Some(route) = data.routes.get(id).or_else(|| route_from_record(&record)) else {
        // Not from Discord: nothing to show it on.
        let _ = data.scheduler.delivered(id).await;
        return None;
    };
    let limit = route.upload_limit;
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
    let view = result_message(data, &record, None, limit, source_link.as_deref()).await;
    let (content, rows, mut chunks) = (view.content, view.rows, view.chunks);
    let first = if chunks.is_empty() {
        Vec::new()
    } else {
        chunks.remove(0)
    };
    let mut log = read_log(data, id);
    if !log.shown {
        let edit = MessageEdit {
            content: Some(content.clone()),
            embeds: Some(Vec::new()),
            components: Some(rows.clone()),
            files: first,
            clear_files: true,
        };
        match show_result(data, http, id, &route, &edit).await {
            Ok(how) => {
                log.shown = true;
                if let Shown::Posted(m) = how {
                    log.posted_as = Some(m.get());
                }
                save_log(data, id, &log);
            }
            Err(reason) => {
                tracing::error!(job = %id, %reason, "Discord refused the result");
                return later(data, http, id, &route, redeliveries, &reason, false).await;
            }
        }
    }
    let fresh = data.config().interaction_fresh();
    for (i, chunk) in chunks.into_iter().enumerate() {
        if log.extra_posted.contains(&i) {
            continue;
        }
        let posted = retrying(
            data,
            "posting more outputs",
            data.config().delivery_retry(),
            || {
                post_job_message(
                    http,
                    &route,
                    fresh,
                    String::new(),
                    Vec::new(),
                    chunk.clone(),
                )
            },
        )
        .await;
        match posted {
            Ok(_) => {
                log.extra_posted.push(i);
                save_log(data, id, &log);
            }
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "cannot post more outputs");
                return later(data, http, id, &route, redeliveries, &e.to_string(), true).await;
            }
        }
    }
    data.metrics.results.inc();
    if let Err(e) = data.scheduler.delivered(id).await {
        tracing::error!(job = %id, error = %e, "cannot record the delivery");
    }
    if let Err(e) = data.journal.meta_delete(&log_key(id)) {
        tracing::debug!(job = %id, error = %e, "cannot remove a delivery log");
    }
    data.routes.remove(id);
    None
}

/// Discord refused the result for the whole retry window: tell the member (if Discord takes
/// that much, and the result is not already shown) and offer it again later. The job stays
/// undelivered in the journal throughout, so a restart delivers it too.
async fn later(
    data: &Arc<Data>,
    http: &Arc<Http>,
    id: &JobId,
    route: &Route,
    redeliveries: u32,
    reason: &str,
    shown: bool,
) -> Option<Duration> {
    let again = redeliveries < MAX_REDELIVERIES;
    let wait = REDELIVERY_FIRST_DELAY * 2u32.pow(redeliveries);
    if shown {
        // Only extra files are missing; the result and its buttons stay as they are.
        return again.then_some(wait);
    }
    let text = if again {
        format!(
            "The result is ready, but Discord would not take it ({}). It is saved; the bot tries again in {} minute(s).",
            render::truncate_chars(reason, 200),
            wait.as_secs().div_ceil(60)
        )
    } else {
        format!(
            "The result is ready, but Discord would not take it ({}). It is saved and is posted when the bot next starts.",
            render::truncate_chars(reason, 200)
        )
    };
    let note = MessageEdit {
        embeds: Some(vec![render::ended_embed(true, &text, None)]),
        components: Some(Vec::new()),
        clear_files: true,
        ..MessageEdit::default()
    };
    let fresh = data.config().interaction_fresh();
    if let Err(e) = edit_job_message(http, &data.routes, id, route, fresh, note).await {
        tracing::warn!(job = %id, error = %e, "could not tell the member the result is delayed");
    }
    again.then_some(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_logs_read_back_what_was_recorded() {
        let log = DeliveryLog {
            shown: true,
            posted_as: Some(42),
            extra_posted: vec![0, 2],
        };
        let text = serde_json::to_string(&log).unwrap();
        assert_eq!(serde_json::from_str::<DeliveryLog>(&text).unwrap(), log);
    }
}
