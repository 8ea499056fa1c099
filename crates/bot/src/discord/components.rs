//! Buttons under results and the Edit modal. Everything a button needs is in its custom_id
//! (action and job id) and the journal, so buttons work after a restart.

use std::sync::Arc;
use std::time::Instant;

use generators::{Derivation, JobId};
use poise::serenity_prelude as serenity;
use serenity::Builder as _;
use serenity::{
    ActionRowComponent, ComponentInteraction, CreateActionRow, CreateAllowedMentions,
    CreateInputText, CreateInteractionResponse, CreateInteractionResponseMessage, CreateModal,
    EditInteractionResponse, Http, InputTextStyle, ModalInteraction,
};

use super::access;
use super::launch;
use super::render::{self, Action};
use super::reply::{caller_of, capitalise, ephemeral, internal, Responder};
use super::{Data, Error};

/// The modal's text input id.
const PROMPT_INPUT: &str = "prompt";
/// Modal titles are limited to 45 characters.
const MODAL_TITLE: &str = "Edit the prompt";

/// Routes interaction events the framework does not handle (components, modals).
pub async fn on_event(
    framework: poise::FrameworkContext<'_, Arc<Data>, Error>,
    event: &serenity::FullEvent,
) -> Result<(), Error> {
    let connected = match event {
        serenity::FullEvent::Ready { .. } | serenity::FullEvent::Resume { .. } => Some(true),
        serenity::FullEvent::ShardStageUpdate { event } => {
            Some(event.new == serenity::ConnectionStage::Connected)
        }
        _ => None,
    };
    if let Some(c) = connected {
        framework
            .user_data
            .metrics
            .gateway_connected
            .store(c, std::sync::atomic::Ordering::Relaxed);
        return Ok(());
    }
    let serenity::FullEvent::InteractionCreate { interaction } = event else {
        return Ok(());
    };
    let data = framework.user_data.clone();
    let http = framework.serenity_context.http.clone();
    let user = match interaction {
        serenity::Interaction::Component(c) => Some(&c.user),
        serenity::Interaction::Modal(m) => Some(&m.user),
        _ => None,
    };
    if user.is_some_and(|u| !access::caller_is_known(u.id.get())) {
        let response = ephemeral(access::UNKNOWN_CALLER);
        let sent = match interaction {
            serenity::Interaction::Component(c) => c.create_response(&http, response).await,
            serenity::Interaction::Modal(m) => m.create_response(&http, response).await,
            _ => Ok(()),
        };
        if let Err(e) = sent {
            tracing::warn!(error = %e, "could not refuse an interaction without a caller");
        }
        return Ok(());
    }
    match interaction {
        serenity::Interaction::Component(c) => on_component(&data, &http, c).await,
        serenity::Interaction::Modal(m) => on_modal(&data, &http, m).await,
        _ => Ok(()),
    }
}

async fn on_component(
    data: &Arc<Data>,
    http: &Arc<Http>,
    c: &ComponentInteraction,
) -> Result<(), Error> {
    let at = Instant::now();
    let caller = caller_of(&c.user, c.member.as_ref(), c.guild_id, c.channel_id);
    let resp = Responder::new(&c.token, at, caller, c.attachment_size_limit);
    let Some((action, job)) = render::parse_custom_id(&c.data.custom_id) else {
        c.create_response(http, ephemeral("This button is no longer supported."))
            .await?;
        return Ok(());
    };
    match action {
        Action::Edit => {
            // A modal must be the first response, so it goes out before anything else.
            let record = data.journal.get(&job).ok().flatten();
            let prompt = record.as_ref().and_then(|r| r.spec.prompt());
            let Some(prompt) = prompt else {
                c.create_response(
                    http,
                    ephemeral("That job is gone or has no prompt to edit."),
                )
                .await?;
                return Ok(());
            };
            let input = CreateInputText::new(InputTextStyle::Paragraph, "Prompt", PROMPT_INPUT)
                .value(render::truncate_chars(
                    prompt,
                    render::MAX_MODAL_VALUE_CHARS,
                ))
                .max_length(render::MAX_MODAL_VALUE_CHARS as u16)
                .required(true);
            let modal = CreateModal::new(render::custom_id(Action::EditSubmit, &job), MODAL_TITLE)
                .components(vec![CreateActionRow::InputText(input)]);
            c.create_response(http, CreateInteractionResponse::Modal(modal))
                .await?;
            Ok(())
        }
        Action::Info => {
            c.create_response(
                http,
                CreateInteractionResponse::Defer(
                    CreateInteractionResponseMessage::new().ephemeral(true),
                ),
            )
            .await?;
            let text = match data.journal.get(&job) {
                Ok(Some(r)) => render::info_text(&r),
                Ok(None) => "That job is no longer in the journal.".to_string(),
                Err(e) => internal("reading a job for Info", &e),
            };
            EditInteractionResponse::new()
                .content(text)
                .allowed_mentions(CreateAllowedMentions::new())
                .execute(http.as_ref(), &resp.token)
                .await?;
            Ok(())
        }
        Action::Cancel => {
            c.defer(http.as_ref()).await?;
            let admin = access::is_admin(&data.config().discord, &resp.caller);
            if let Err(e) = data.scheduler.cancel(&job, resp.caller.user, admin).await {
                resp.whisper(http, &capitalise(&e.to_string())).await;
            }
            Ok(())
        }
        Action::Delete => {
            c.defer(http.as_ref()).await?;
            let owner = data
                .journal
                .get(&job)
                .ok()
                .flatten()
                .map(|r| r.origin.owner);
            let admin = access::is_admin(&data.config().discord, &resp.caller);
            if owner != Some(resp.caller.user) && !admin {
                resp.whisper(
                    http,
                    "Only the person who made this (or an admin) can delete it.",
                )
                .await;
                return Ok(());
            }
            if let Err(e) = c.message.delete(http.as_ref()).await {
                resp.whisper(http, &internal("deleting a result", &e)).await;
            }
            Ok(())
        }
        Action::Upscale | Action::Vary | Action::Reroll | Action::Animate | Action::Retry => {
            // The new job gets its own message: a deferred reply to this click.
            c.create_response(
                http,
                CreateInteractionResponse::Defer(CreateInteractionResponseMessage::new()),
            )
            .await?;
            let how = match action {
                Action::Upscale => Derivation::Upscale,
                Action::Vary => Derivation::Vary,
                Action::Reroll => Derivation::Reroll,
                Action::Animate => Derivation::Animate,
                _ => Derivation::Retry,
            };
            derive(data, http, &resp, &job, how).await;
            Ok(())
        }
        Action::EditSubmit => {
            c.create_response(http, ephemeral("This button is no longer supported."))
                .await?;
            Ok(())
        }
    }
}

async fn on_modal(data: &Arc<Data>, http: &Arc<Http>, m: &ModalInteraction) -> Result<(), Error> {
    let at = Instant::now();
    m.create_response(
        http,
        CreateInteractionResponse::Defer(CreateInteractionResponseMessage::new()),
    )
    .await?;
    let caller = caller_of(&m.user, m.member.as_ref(), m.guild_id, m.channel_id);
    let resp = Responder::new(&m.token, at, caller, m.attachment_size_limit);
    let Some((Action::EditSubmit, job)) = render::parse_custom_id(&m.data.custom_id) else {
        resp.fail(http, "This form is no longer supported.").await;
        return Ok(());
    };
    let prompt = m
        .data
        .components
        .iter()
        .flat_map(|row| row.components.iter())
        .find_map(|c| match c {
            ActionRowComponent::InputText(t) if t.custom_id == PROMPT_INPUT => t.value.clone(),
            _ => None,
        })
        .unwrap_or_default();
    derive(data, http, &resp, &job, Derivation::Edit { prompt }).await;
    Ok(())
}

/// Starts the job a button (or the modal) asks for, from the source job in the journal.
async fn derive(data: &Arc<Data>, http: &Http, resp: &Responder, source: &JobId, how: Derivation) {
    if !launch::admit(data, http, resp).await {
        return;
    }
    let record = match data.journal.get(source) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return resp
                .fail(http, "That job is no longer in the journal.")
                .await
        }
        Err(e) => return resp.fail(http, &internal("reading a source job", &e)).await,
    };
    let req = match data.kinds().derive(&record, &how) {
        Ok(r) => r,
        Err(e) => return resp.fail(http, &e.to_string()).await,
    };
    launch::start_job(data, http, resp, JobId::new(), req).await;
}
