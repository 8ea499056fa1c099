//! Answers to an acknowledged interaction: who sent it ([`Caller`]), the [`Responder`] that
//! replies to it, and the sentences users see for errors.

use std::time::Instant;

use generators::SubmitError;
use poise::serenity_prelude as serenity;
use serenity::Builder as _;
use serenity::{
    ChannelId, CreateAllowedMentions, CreateInteractionResponse, CreateInteractionResponseFollowup,
    CreateInteractionResponseMessage, Http,
};

use super::access::Caller;
use super::message::retry_transient;
use super::render;

/// What a user is told when the bot is shutting down.
pub const RESTARTING: &str = "The bot is restarting; try again in a minute.";

/// Who sent an interaction, from its parts (commands, buttons and forms alike).
pub fn caller_of(
    user: &serenity::User,
    member: Option<&serenity::Member>,
    guild: Option<serenity::GuildId>,
    channel: ChannelId,
) -> Caller {
    Caller {
        user: user.id.get(),
        guild: guild.map(|g| g.get()),
        channel: channel.get(),
        roles: member
            .map(|m| m.roles.iter().map(|r| r.get()).collect())
            .unwrap_or_default(),
        private_dm: false,
    }
}

/// The text typed into a form's input `id` (empty when the form does not have it).
pub fn modal_text(m: &serenity::ModalInteraction, id: &str) -> String {
    m.data
        .components
        .iter()
        .flat_map(|row| row.components.iter())
        .find_map(|c| match c {
            serenity::ActionRowComponent::InputText(t) if t.custom_id == id => t.value.clone(),
            _ => None,
        })
        .unwrap_or_default()
}

/// An immediate reply only the caller sees.
pub fn ephemeral(text: &str) -> CreateInteractionResponse {
    CreateInteractionResponse::Message(
        CreateInteractionResponseMessage::new()
            .content(render::truncate_chars(text, render::MAX_CONTENT_CHARS))
            .ephemeral(true)
            .allowed_mentions(CreateAllowedMentions::new()),
    )
}

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
    /// The caller's results go to their DMs (their settings, read once per interaction).
    pub private: bool,
}

impl Responder {
    /// For an interaction that arrived at `at`.
    pub fn new(token: &str, at: Instant, caller: Caller, attachment_size_limit: u32) -> Responder {
        Responder {
            token: token.to_string(),
            at,
            channel: ChannelId::new(caller.channel.max(1)),
            upload_limit: u64::from(attachment_size_limit).max(1),
            caller,
            private: false,
        }
    }

    /// This responder with the caller's private-delivery setting.
    pub fn with_private(mut self, private: bool) -> Responder {
        self.private = private;
        self
    }

    /// Replaces the deferred "thinking" message with an error only the caller sees.
    pub async fn fail(&self, http: &Http, message: &str) {
        self.answer_privately(http, &format!("⚠️ {message}")).await
    }

    /// Replaces the deferred "thinking" message with `text`, which only the caller sees.
    pub async fn answer_privately(&self, http: &Http, text: &str) {
        let text = render::truncate_chars(text, render::MAX_CONTENT_CHARS);
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

    /// Replaces the deferred "thinking" message with a result (files past the first ten go
    /// in follow-ups).
    pub async fn show(&self, http: &Http, view: super::result_view::ResultMessage) {
        let mut chunks = view.chunks.into_iter();
        let mut edit = serenity::EditInteractionResponse::new()
            .content(view.content)
            .components(view.rows)
            .allowed_mentions(CreateAllowedMentions::new());
        for file in chunks.next().unwrap_or_default() {
            edit = edit.new_attachment(file);
        }
        if let Err(e) = edit.execute(http, &self.token).await {
            tracing::warn!(error = %e, "could not show a result");
            self.fail(http, &internal("showing a result", &e)).await;
            return;
        }
        for files in chunks {
            let more = CreateInteractionResponseFollowup::new()
                .add_files(files)
                .allowed_mentions(CreateAllowedMentions::new());
            if let Err(e) = more.execute(http, (None, &self.token)).await {
                tracing::warn!(error = %e, "could not post more files of a result");
            }
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
        SubmitError::Closed => RESTARTING.into(),
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
