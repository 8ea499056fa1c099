//! Starting a job from an acknowledged interaction: the one path slash commands, buttons and
//! the edit modal share. The interaction is always deferred before anything here runs.

use std::sync::atomic::Ordering;

use generators::{JobId, JobRequest, Origin, PrepareError};
use poise::serenity_prelude as serenity;
use serenity::Builder as _;
use serenity::Http;

use super::access;
use super::message::{MessageEdit, Route};
use super::render;
use super::reply::{capitalise, internal, submit_error_message, Responder, RESTARTING};
use super::Data;

/// The check every job-starting interaction passes first: the bot is not stopping and the
/// caller may generate here. On refusal the caller has been told; returns false.
pub async fn admit(data: &Data, http: &Http, resp: &Responder) -> bool {
    data.metrics.acks.observe(resp.at.elapsed().as_secs_f64());
    // Discord times acknowledgements, not job setup: interactions already waiting in a burst
    // are acknowledged before this one's job is prepared, journaled and shown.
    tokio::task::yield_now().await;
    if data.stopping.load(Ordering::Relaxed) {
        resp.fail(http, RESTARTING).await;
        return false;
    }
    if let Err(msg) = access::may_generate(&data.config().discord, &resp.caller) {
        resp.fail(http, &capitalise(&msg)).await;
        return false;
    }
    true
}

/// Where a job's message goes: the interaction's own (deferred) response, or a further
/// message of the same interaction (the second and later jobs of one prompt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Original,
    Followup,
}

/// Checks `req`, shows the queued message with a Cancel button, and queues the job. Every
/// refusal reaches the user; nothing is left "thinking".
pub async fn start_job(data: &Data, http: &Http, resp: &Responder, id: JobId, req: JobRequest) {
    start_job_at(data, http, resp, id, req, Placement::Original).await
}

/// [`start_job`] with its message at `placement`. A refusal of a follow-up job is said
/// privately and leaves the jobs before it alone.
pub async fn start_job_at(
    data: &Data,
    http: &Http,
    resp: &Responder,
    id: JobId,
    req: JobRequest,
    placement: Placement,
) {
    let refuse = |message: String| async move {
        match placement {
            Placement::Original => resp.fail(http, &message).await,
            Placement::Followup => resp.whisper(http, &format!("⚠️ {message}")).await,
        }
    };
    let kinds = data.kinds();
    // Private delivery: the member asked for results by direct message. A press in that DM
    // already is one.
    let private = resp.private && resp.caller.guild.is_some() && !resp.caller.private_dm;
    if private && kinds.nsfw(&req.workflow) {
        return refuse(NSFW_NOT_BY_DM.into()).await;
    }
    if kinds.nsfw(&req.workflow) {
        let channel_nsfw = data.channel_is_nsfw(http, resp.channel).await;
        if let Err(msg) = access::nsfw_allowed(&req.workflow, true, channel_nsfw) {
            return refuse(msg).await;
        }
    }
    // The rng is not Send: it must be gone before the next await.
    let prepared = kinds.prepare(req, &mut rand::thread_rng());
    let spec = match prepared {
        Ok(s) => s,
        Err(PrepareError::Internal(e)) => return refuse(internal("patching a workflow", &e)).await,
        Err(e) => return refuse(e.to_string()).await,
    };
    let prompt = spec.prompt().map(str::to_string);
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
        components: Some(super::buttons::cancel_row(&id)),
        ..MessageEdit::default()
    };
    let shown = match placement {
        _ if private => match post_in_dm(http, resp.caller.user, &edit).await {
            Ok(m) => Ok(m),
            Err(why) => return refuse(why).await,
        },
        Placement::Original => edit.into_token_edit().execute(http, &resp.token).await,
        Placement::Followup => {
            serenity::CreateInteractionResponseFollowup::new()
                .embeds(edit.embeds.clone().unwrap_or_default())
                .components(edit.components.clone().unwrap_or_default())
                .allowed_mentions(serenity::CreateAllowedMentions::new())
                .execute(http, (None, &resp.token))
                .await
        }
    };
    let message = match shown {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(job = %id, error = %e, "could not show the queued message");
            return;
        }
    };
    // The token edits the interaction's own response; a further message (or one in the
    // member's DMs) is edited by id.
    let token =
        (placement == Placement::Original && !private).then(|| (resp.token.clone(), resp.at));
    let route = Route {
        channel: message.channel_id,
        guild: resp.caller.guild.filter(|_| !private),
        message: Some(message.id),
        token,
        upload_limit: if private {
            resp.upload_limit.min(DM_UPLOAD_LIMIT)
        } else {
            resp.upload_limit
        },
        prompt: prompt.clone(),
        shown: Some(tokio::time::Instant::now()),
    };
    if private && placement == Placement::Original {
        let link = render::message_link(None, message.channel_id.get(), message.id.get());
        resp.answer_privately(
            http,
            &format!("📬 On its way to your direct messages: {link}"),
        )
        .await;
    }
    data.routes.insert(id.clone(), route);
    let origin = Origin {
        owner: resp.caller.user,
        guild: resp.caller.guild,
        channel: Some(message.channel_id.get()),
        message: Some(message.id.get()),
        private,
    };
    let is_admin = access::is_admin(&data.config().discord, &resp.caller);
    let inputs: Vec<std::path::PathBuf> = spec.inputs.iter().map(|i| i.path.clone()).collect();
    if let Err(e) = data
        .scheduler
        .submit_as(id.clone(), spec, origin, is_admin)
        .await
    {
        data.routes.remove(&id);
        for p in inputs.iter().filter(|p| p.starts_with(data.inputs_dir())) {
            let _ = std::fs::remove_file(p);
        }
        if private {
            // The DM's "Queued" message would otherwise stay there forever.
            let _ = message.delete(http).await;
        }
        refuse(submit_error_message(&e)).await;
        return;
    }
    data.metrics.submitted.inc();
    tracing::info!(job = %id, user = resp.caller.user, "job queued");
}

/// What a member with private delivery is told about an NSFW workflow.
const NSFW_NOT_BY_DM: &str = "NSFW workflows are not sent by direct message. Turn Private delivery off in /settings to run this one in an age-restricted channel.";
/// What a member is told when their DMs are closed to the bot.
pub const DMS_CLOSED: &str = "I cannot send you direct messages: your privacy settings block them. Allow direct messages from this server's members (Server menu → Privacy Settings), or turn Private delivery off in /settings.";
/// Discord's code for "Cannot send messages to this user".
const CANNOT_DM_CODE: isize = 50007;
/// The upload limit of a direct message (no server boost applies there).
const DM_UPLOAD_LIMIT: u64 = 10 * 1024 * 1024;

/// Posts a job's first message in `user`'s DMs; the sentence for the member when that fails.
async fn post_in_dm(
    http: &Http,
    user: u64,
    edit: &MessageEdit,
) -> Result<serenity::Message, String> {
    let why = |e: serenity::Error| {
        let closed = matches!(
            &e,
            serenity::Error::Http(serenity::HttpError::UnsuccessfulRequest(r))
                if r.error.code == CANNOT_DM_CODE
        );
        if closed {
            DMS_CLOSED.to_string()
        } else {
            tracing::warn!(user, error = %e, "cannot open a direct message");
            "I could not reach your direct messages just now; try again, or turn Private delivery off in /settings.".to_string()
        }
    };
    let dm = serenity::UserId::new(user.max(1))
        .create_dm_channel(http)
        .await
        .map_err(why)?;
    let message = serenity::CreateMessage::new()
        .embeds(edit.embeds.clone().unwrap_or_default())
        .components(edit.components.clone().unwrap_or_default())
        .allowed_mentions(serenity::CreateAllowedMentions::new());
    dm.id.send_message(http, message).await.map_err(why)
}
