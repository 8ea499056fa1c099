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

/// Checks `req`, shows the queued message with a Cancel button, and queues the job. Every
/// refusal reaches the user; nothing is left "thinking".
pub async fn start_job(data: &Data, http: &Http, resp: &Responder, id: JobId, req: JobRequest) {
    let kinds = data.kinds();
    if kinds.nsfw(&req.workflow) {
        let channel_nsfw = data.channel_is_nsfw(http, resp.channel).await;
        if let Err(msg) = access::nsfw_allowed(&req.workflow, true, channel_nsfw) {
            return resp.fail(http, &msg).await;
        }
    }
    // The rng is not Send: it must be gone before the next await.
    let prepared = kinds.prepare(req, &mut rand::thread_rng());
    let spec = match prepared {
        Ok(s) => s,
        Err(PrepareError::Internal(e)) => {
            return resp.fail(http, &internal("patching a workflow", &e)).await
        }
        Err(e) => return resp.fail(http, &e.to_string()).await,
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
        prompt: prompt.clone(),
        shown: Some(tokio::time::Instant::now()),
    };
    data.routes.insert(id.clone(), route);
    let origin = Origin {
        owner: resp.caller.user,
        guild: resp.caller.guild,
        channel: Some(resp.channel.get()),
        message: Some(message.id.get()),
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
        resp.fail(http, &submit_error_message(&e)).await;
        return;
    }
    data.metrics.submitted.inc();
    tracing::info!(job = %id, user = resp.caller.user, "job queued");
}
