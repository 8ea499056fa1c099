//! Buttons under results, the Edit form and remix forms. Everything a button needs is in its
//! custom_id (action, job, image number) and the journal, so buttons work after a restart.

use std::sync::Arc;
use std::time::Instant;

use generators::{FollowUp, JobId, JobRecord};
use poise::serenity_prelude as serenity;
use serenity::Builder as _;
use serenity::{
    ComponentInteraction, CreateActionRow, CreateAllowedMentions, CreateInputText,
    CreateInteractionResponse, CreateInteractionResponseMessage, CreateModal,
    EditInteractionResponse, Http, InputTextStyle, ModalInteraction,
};

use super::access;
use super::buttons::{Action, Press};
use super::launch;
use super::render;
use super::reply::{caller_of, capitalise, ephemeral, internal, modal_text, Responder};
use super::result_view::result_message;
use super::settings_panel;
use super::{Data, Error};

/// The text input id of every prompt form.
pub const PROMPT_INPUT: &str = "prompt";
/// Form titles (Discord allows 45 characters).
const EDIT_TITLE: &str = "Edit the prompt";
const REMIX_TITLE: &str = "Remix: change the prompt";
/// Whether `user` has remix on: follow-ups that draw open the prompt form first.
pub fn remix_on(data: &Data, user: u64) -> bool {
    super::settings_panel::member_settings(data, user).remix
}

/// Turns `user`'s remix setting on or off; kept in the journal, so it survives restarts.
pub fn set_remix(data: &Data, user: u64, on: bool) -> Result<(), String> {
    let mut settings = super::settings_panel::member_settings(data, user);
    settings.remix = on;
    super::settings_panel::save_settings(data, user, &settings)
}

/// The prompt form for `press` on `job`, prefilled with `prompt`.
fn prompt_form(press: &Press, title: &str, prompt: &str) -> CreateInteractionResponse {
    let input = CreateInputText::new(InputTextStyle::Paragraph, "Prompt", PROMPT_INPUT)
        .value(render::truncate_chars(
            prompt,
            render::MAX_MODAL_VALUE_CHARS,
        ))
        .max_length(render::MAX_MODAL_VALUE_CHARS as u16)
        .required(true);
    let modal = CreateModal::new(press.custom_id(), title)
        .components(vec![CreateActionRow::InputText(input)]);
    CreateInteractionResponse::Modal(modal)
}

/// The prompt a follow-up on `record` starts from (its own or an ancestor's).
fn inherited_prompt(data: &Data, record: &JobRecord) -> Option<String> {
    generators::kinds::lineage_prompt(record, &|id| data.journal.get(id).ok().flatten())
}

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
        serenity::Interaction::Component(c) if settings_panel::owns(&c.data.custom_id) => {
            settings_panel::on_component(&data, &http, c).await
        }
        serenity::Interaction::Modal(m) if settings_panel::owns(&m.data.custom_id) => {
            settings_panel::on_modal(&data, &http, m).await
        }
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
    let Some(press) = Press::parse(&c.data.custom_id) else {
        c.create_response(http, ephemeral("This button is no longer supported."))
            .await?;
        return Ok(());
    };
    let job = press.job.clone();
    let remix = press.action.remixable() && remix_on(data, resp.caller.user);
    match press.action {
        Action::Edit => {
            // A form must be the first response, so it goes out before anything else.
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
            let submit = Press::new(Action::EditSubmit, &job);
            c.create_response(http, prompt_form(&submit, EDIT_TITLE, prompt))
                .await?;
            Ok(())
        }
        _ if remix => {
            let record = data.journal.get(&job).ok().flatten();
            let prompt = record
                .as_ref()
                .and_then(|r| inherited_prompt(data, r))
                .unwrap_or_default();
            if record.is_none() {
                c.create_response(http, ephemeral("That job is no longer in the journal."))
                    .await?;
                return Ok(());
            }
            c.create_response(
                http,
                prompt_form(&press.clone().as_form(), REMIX_TITLE, &prompt),
            )
            .await?;
            Ok(())
        }
        Action::Pick => {
            // The picked image gets its own message, a reply to this click.
            c.create_response(
                http,
                CreateInteractionResponse::Defer(CreateInteractionResponseMessage::new()),
            )
            .await?;
            let record = match data.journal.get(&job) {
                Ok(Some(r)) => r,
                Ok(None) => {
                    resp.fail(http, "That job is no longer in the journal.")
                        .await;
                    return Ok(());
                }
                Err(e) => {
                    resp.fail(http, &internal("reading a job", &e)).await;
                    return Ok(());
                }
            };
            let link = render::message_link(
                c.guild_id.map(|g| g.get()),
                c.channel_id.get(),
                c.message.id.get(),
            );
            let view = result_message(
                data,
                &record,
                Some(press.image),
                resp.upload_limit,
                Some(&link),
            )
            .await;
            if view.chunks.is_empty() {
                let gone = format!(
                    "Image {} of this result is no longer on the server.",
                    press.image + 1
                );
                resp.fail(http, &gone).await;
                return Ok(());
            }
            resp.show(http, view).await;
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
        Action::EditSubmit => {
            c.create_response(http, ephemeral("This button is no longer supported."))
                .await?;
            Ok(())
        }
        action => {
            let Some(how) = action.derivation() else {
                c.create_response(http, ephemeral("This button is no longer supported."))
                    .await?;
                return Ok(());
            };
            // The new job gets its own message: a deferred reply to this click.
            c.create_response(
                http,
                CreateInteractionResponse::Defer(CreateInteractionResponseMessage::new()),
            )
            .await?;
            let follow = FollowUp {
                how,
                image: press.image,
                prompt: None,
            };
            derive(data, http, &resp, &job, follow).await;
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
    let press = Press::parse(&m.data.custom_id);
    let prompt = modal_text(m, PROMPT_INPUT);
    if let Some(p) = press.as_ref().filter(|p| p.action == Action::VaryMessage) {
        vary_message(data, http, &resp, m.channel_id, &p.job, prompt).await;
        return Ok(());
    }
    let how = press
        .as_ref()
        .filter(|p| p.form || p.action == Action::EditSubmit)
        .and_then(|p| p.action.derivation());
    let (Some(press), Some(how)) = (press, how) else {
        resp.fail(http, "This form is no longer supported.").await;
        return Ok(());
    };
    let follow = FollowUp {
        how,
        image: press.image,
        prompt: Some(prompt),
    };
    derive(data, http, &resp, &press.job, follow).await;
    Ok(())
}

/// Starts the job a button (or a form) asks for, from the source job in the journal.
async fn derive(data: &Arc<Data>, http: &Http, resp: &Responder, source: &JobId, follow: FollowUp) {
    let record = match data.journal.get(source) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return resp
                .fail(http, "That job is no longer in the journal.")
                .await
        }
        Err(e) => return resp.fail(http, &internal("reading a source job", &e)).await,
    };
    let member = settings_panel::member_settings(data, resp.caller.user);
    let resp = &in_private_dm(resp, &record).with_private(member.private);
    if !launch::admit(data, http, resp).await {
        return;
    }
    let lookup = |id: &JobId| data.journal.get(id).ok().flatten();
    let mut req = match data.kinds().derive(&record, &follow, &lookup) {
        Ok(r) => r,
        Err(e) => return resp.fail(http, &e.to_string()).await,
    };
    // A reroll picks its wildcards again with its new seed; a retry keeps them as they were.
    match follow.how {
        generators::Derivation::Reroll if follow.prompt.is_none() => {
            let templates = &record.spec.templates;
            let refilled = generators::kinds::refill_wildcards(
                &data.catalog(),
                &data.library(),
                &mut req,
                templates,
            );
            if let Err(e) = refilled {
                tracing::info!(job = %record.id, error = %e, "reroll keeps its picked words");
            }
        }
        generators::Derivation::Retry => req.templates = record.spec.templates.clone(),
        _ => {}
    }
    // Settings apply to follow-ups too, where the follow-up sets nothing of its own.
    generators::kinds::fill_follow_up(
        &data.catalog(),
        &mut req,
        &member.prefs,
        &data.config().defaults,
    );
    launch::start_job(data, http, resp, JobId::new(), req).await;
}

/// A press in a DM on the member's own privately delivered job counts as made in the server
/// the job came from, so every follow-up works there as it would in the server.
fn in_private_dm(resp: &Responder, record: &JobRecord) -> Responder {
    let mut resp = resp.clone();
    let own = record.origin.owner == resp.caller.user;
    if resp.caller.guild.is_none() && record.origin.private && own {
        resp.caller.guild = record.origin.guild;
        resp.caller.private_dm = true;
    }
    resp
}

/// The "Vary" message command's form was sent: vary the image of message `message` (any
/// member's) in `channel` with `prompt`.
async fn vary_message(
    data: &Arc<Data>,
    http: &Http,
    resp: &Responder,
    channel: serenity::ChannelId,
    message: &JobId,
    prompt: String,
) {
    if !launch::admit(data, http, resp).await {
        return;
    }
    let Ok(message_id) = message.as_str().parse::<u64>() else {
        return resp.fail(http, "This form is no longer supported.").await;
    };
    let msg = match http
        .get_message(channel, serenity::MessageId::new(message_id.max(1)))
        .await
    {
        Ok(m) => m,
        Err(e) => {
            tracing::info!(error = %e, "the message to vary is gone");
            return resp
                .fail(
                    http,
                    "That message is gone or out of reach; nothing to vary.",
                )
                .await;
        }
    };
    let Some(image) = super::commands::results::first_image(&msg) else {
        return resp.fail(http, "That message has no image attached.").await;
    };
    let id = JobId::new();
    let incoming = [super::inputs::Incoming::from(image)];
    let input = match super::inputs::fetch_inputs(data, &id, &incoming, false).await {
        Ok(mut i) if !i.is_empty() => i.remove(0),
        Ok(_) => return resp.fail(http, "That message has no image attached.").await,
        Err(e) => return resp.fail(http, &e).await,
    };
    let req = match generators::kinds::vary_image(
        &data.catalog(),
        input,
        prompt,
        generators::Strength::Strong,
    ) {
        Ok(r) => r,
        Err(e) => return resp.fail(http, &e.to_string()).await,
    };
    let private = settings_panel::member_settings(data, resp.caller.user).private;
    let resp = &resp.clone().with_private(private);
    launch::start_job(data, http, resp, id, req).await;
}
