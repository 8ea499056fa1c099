//! A job's Discord message: where it is ([`Route`]), how it is edited (by interaction token
//! while fresh, by channel after), and how a request rides out Discord's transient failures
//! and global rate limits.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use generators::{JobId, JobRecord};
use poise::serenity_prelude as serenity;
use serenity::Builder as _;
use serenity::{
    ChannelId, CreateActionRow, CreateAllowedMentions, CreateAttachment, CreateEmbed,
    CreateInteractionResponseFollowup, CreateMessage, EditInteractionResponse, EditMessage, Http,
    Message, MessageId,
};

use super::render::DEFAULT_UPLOAD_LIMIT;
use super::Data;

/// Discord error codes that mean the interaction token can no longer be used.
const TOKEN_DEAD_CODES: [isize; 3] = [50027, 10015, 10062];
/// "Unknown Message": the message was deleted.
pub const UNKNOWN_MESSAGE: isize = 10008;
/// Wait after a 429 serenity did not wait out itself (its limiter is off: `api_base`).
pub const RATE_LIMIT_FALLBACK: Duration = Duration::from_secs(1);

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
    /// The job's prompt, shown on its progress and end.
    pub prompt: Option<String>,
    /// When this process showed the message; progress edits keep the edit interval from it.
    pub shown: Option<tokio::time::Instant>,
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
        prompt: record.spec.prompt().map(str::to_string),
        shown: None,
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
pub async fn post_job_message(
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

/// First wait after a transient failure; doubled after each, up to [`RETRY_MAX_DELAY`].
pub const RETRY_FIRST_DELAY: Duration = Duration::from_millis(500);
pub const RETRY_MAX_DELAY: Duration = Duration::from_secs(10);
/// Attempts at one request, at most, whatever the time bound.
const MAX_ATTEMPTS: u32 = 32;

/// What a failed Discord request means for delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Worth trying again: a 5xx, a network error, a 429 the limiter did not wait out.
    Transient,
    /// The message is gone (deleted, or its token's message unknown).
    Gone,
    /// The upload was too large for Discord.
    TooLarge,
    /// Anything else (permissions, a bad request): trying again will not help.
    Other,
}

/// Sorts a serenity error into a [`Failure`].
pub fn classify(e: &serenity::Error) -> Failure {
    match e {
        serenity::Error::Http(serenity::HttpError::UnsuccessfulRequest(r)) => {
            let status = r.status_code.as_u16();
            if status == 429 || status >= 500 {
                Failure::Transient
            } else if status == 413 || matches!(r.error.code, 40005 | 50045) {
                Failure::TooLarge
            } else if status == 404 || r.error.code == UNKNOWN_MESSAGE {
                Failure::Gone
            } else {
                Failure::Other
            }
        }
        serenity::Error::Http(serenity::HttpError::Request(_)) | serenity::Error::Io(_) => {
            Failure::Transient
        }
        _ => Failure::Other,
    }
}

/// Runs `attempt` until it succeeds, fails for good, or `within` has passed, waiting with
/// backoff between transient failures.
pub async fn retry_transient<T, F, Fut>(
    what: &str,
    within: Duration,
    mut attempt: F,
) -> Result<T, serenity::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, serenity::Error>>,
{
    let deadline = tokio::time::Instant::now() + within;
    let mut delay = RETRY_FIRST_DELAY;
    let mut tries = 0;
    loop {
        tries += 1;
        let result = match tokio::time::timeout_at(deadline, attempt()).await {
            Ok(r) => r,
            Err(_) => Err(serenity::Error::Other("Discord did not answer in time")),
        };
        let e = match result {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let transient = classify(&e) == Failure::Transient;
        if !transient || tries >= MAX_ATTEMPTS || tokio::time::Instant::now() + delay >= deadline {
            return Err(e);
        }
        tracing::warn!(error = %e, attempt = tries, retry_in_ms = delay.as_millis() as u64, "{what} failed; trying again");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RETRY_MAX_DELAY);
    }
}

/// [`retry_transient`] that also waits out a global rate limit before each attempt and counts
/// the 429s that reach it.
pub async fn retrying<T, F, Fut>(
    data: &Data,
    what: &str,
    within: Duration,
    mut attempt: F,
) -> Result<T, serenity::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, serenity::Error>>,
{
    retry_transient(what, within, || {
        let next = attempt();
        async move {
            data.discord_pause.wait().await;
            let r = next.await;
            if let Err(e) = &r {
                if matches!(discord_error(e), Some((429, _))) {
                    data.metrics.rate_limited.inc();
                }
            }
            r
        }
    })
    .await
}

/// [`edit_job_message`] retried through transient failures for `config.delivery_retry`. The
/// route is read again before each attempt: an earlier one may have dropped a dead token.
pub async fn edit_retrying(
    data: &Data,
    http: &Http,
    id: &JobId,
    route: &Route,
    edit: &MessageEdit,
) -> Result<Message, serenity::Error> {
    let config = data.config();
    retrying(
        data,
        "editing a job's message",
        config.delivery_retry(),
        || {
            let route = data.routes.get(id).unwrap_or_else(|| route.clone());
            let edit = edit.clone();
            let fresh = config.interaction_fresh();
            async move { edit_job_message(http, &data.routes, id, &route, fresh, edit).await }
        },
    )
    .await
}

/// While Discord has rate limited the bot as a whole, nothing else is sent until it ends.
#[derive(Debug, Default)]
pub struct GlobalPause {
    until: Mutex<Option<tokio::time::Instant>>,
}

impl GlobalPause {
    /// Discord said to stop for `d` (a 429 with the global flag).
    pub fn hold_for(&self, d: Duration) {
        let until = tokio::time::Instant::now() + d;
        let mut g = self.until.lock().unwrap_or_else(|p| p.into_inner());
        *g = Some(g.map_or(until, |u| u.max(until)));
    }

    /// Waits out the current pause, if any.
    pub async fn wait(&self) {
        let until = *self.until.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(u) = until {
            tokio::time::sleep_until(u).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_global_pause_holds_until_it_ends_and_only_lengthens() {
        let pause = GlobalPause::default();
        let start = tokio::time::Instant::now();
        pause.wait().await;
        pause.hold_for(Duration::from_millis(200));
        // A shorter hold does not cut the longer one short.
        pause.hold_for(Duration::from_millis(10));
        pause.wait().await;
        assert!(start.elapsed() >= Duration::from_millis(200));
    }
}
