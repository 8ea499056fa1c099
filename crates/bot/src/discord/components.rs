//! Buttons under results and the Edit modal. Everything a button needs is in its custom_id
//! (action and job id) and the journal, so buttons work after a restart.

use std::sync::Arc;
use std::time::Instant;

use core_comfyui::WorkflowKind;
use generators::cosmos::spec::{self as cosmos_spec, CosmosKind};
use generators::{JobId, JobRecord};
use poise::serenity_prelude as serenity;
use serde_json::Value;
use serenity::Builder as _;
use serenity::{
    ActionRowComponent, ComponentInteraction, CreateActionRow, CreateAllowedMentions,
    CreateInputText, CreateInteractionResponse, CreateInteractionResponseMessage, CreateModal,
    EditInteractionResponse, Http, InputTextStyle, ModalInteraction,
};

use super::access::{self, Caller};
use super::launch::{self, Responder};
use super::render::{self, Action};
use super::{Data, Error};
use crate::jobs::{self, JobRequest, LocalImage};

/// The modal's text input id.
const PROMPT_INPUT: &str = "prompt";
/// Modal titles are limited to 45 characters.
const MODAL_TITLE: &str = "Edit the prompt";
/// Denoise for Vary when the img2img workflow takes one: close to the source, visibly new.
const VARY_DENOISE: f64 = 0.55;
/// The Upscale button's factor.
const BUTTON_UPSCALE_FACTOR: f64 = 2.0;

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

fn caller_of(
    user: &serenity::User,
    member: Option<&serenity::Member>,
    guild: Option<serenity::GuildId>,
    channel: serenity::ChannelId,
) -> Caller {
    Caller {
        user: user.id.get(),
        guild: guild.map(|g| g.get()),
        channel: channel.get(),
        roles: member
            .map(|m| m.roles.iter().map(|r| r.get()).collect())
            .unwrap_or_default(),
    }
}

async fn on_component(
    data: &Arc<Data>,
    http: &Arc<Http>,
    c: &ComponentInteraction,
) -> Result<(), Error> {
    let at = Instant::now();
    let caller = caller_of(&c.user, c.member.as_ref(), c.guild_id, c.channel_id);
    let resp = Responder {
        token: c.token.clone(),
        at,
        channel: c.channel_id,
        upload_limit: u64::from(c.attachment_size_limit).max(1),
        caller,
    };
    let Some((action, job)) = render::parse_custom_id(&c.data.custom_id) else {
        c.create_response(http, ephemeral("This button is no longer supported."))
            .await?;
        return Ok(());
    };
    match action {
        Action::Edit => {
            // A modal must be the first response, so it goes out before anything else.
            let prompt = data.journal.get(&job).ok().flatten().and_then(|r| {
                r.spec
                    .values
                    .get("prompt")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
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
                    &prompt,
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
                Err(e) => launch::internal("reading a job for Info", &e),
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
                resp.whisper(http, &launch::capitalise(&e.to_string()))
                    .await;
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
                resp.whisper(http, &launch::internal("deleting a result", &e))
                    .await;
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
            derive(data, http, &resp, action, &job, None).await;
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
    let resp = Responder {
        token: m.token.clone(),
        at,
        channel: m.channel_id,
        upload_limit: u64::from(m.attachment_size_limit).max(1),
        caller: caller_of(&m.user, m.member.as_ref(), m.guild_id, m.channel_id),
    };
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
    derive(data, http, &resp, Action::EditSubmit, &job, Some(prompt)).await;
    Ok(())
}

fn ephemeral(text: &str) -> CreateInteractionResponse {
    CreateInteractionResponse::Message(
        CreateInteractionResponseMessage::new()
            .content(text)
            .ephemeral(true)
            .allowed_mentions(CreateAllowedMentions::new()),
    )
}

/// What a derived job runs: the workflow and request built from the source job.
pub fn derived_request(
    catalog: &core_comfyui::Catalog,
    source: &JobRecord,
    action: Action,
    new_prompt: Option<String>,
) -> Result<JobRequest, String> {
    if CosmosKind::from_workflow(&source.spec.workflow).is_some() {
        return derived_cosmos(source, action, new_prompt);
    }
    let source_def = catalog
        .get(&source.spec.workflow)
        .ok_or_else(|| format!("Workflow {} is no longer loaded.", source.spec.workflow))?;
    let output_image = || {
        render::first_image(&source.outputs)
            .filter(|o| o.path.exists())
            .map(|o| LocalImage {
                path: o.path.clone(),
                format: validation::MediaFormat::sniff(&std::fs::read(&o.path).unwrap_or_default())
                    .unwrap_or(validation::MediaFormat::Png),
            })
            .ok_or_else(|| "This result's image is no longer on the server.".to_string())
    };
    let prompt = source.spec.values.get("prompt").cloned();
    let mut req = JobRequest {
        parent: Some(source.id.clone()),
        ..JobRequest::default()
    };
    let pick = |kind: WorkflowKind, needs: &[&str]| {
        jobs::pick_workflow(catalog, kind, needs)
            .ok_or_else(|| format!("No {} workflow is loaded.", jobs::kind_name(kind)))
    };
    match action {
        Action::Reroll | Action::EditSubmit | Action::Retry => {
            req.workflow = source.spec.workflow.clone();
            req.values = jobs::reusable_values(&source.spec, source_def, action == Action::Reroll);
            if let Some(p) = new_prompt {
                req.values.insert("prompt".into(), Value::String(p));
            }
            for input in &source.spec.inputs {
                if !input.path.exists() {
                    return Err(
                        "The image this job started from is no longer on the server.".into(),
                    );
                }
                req.images.push(LocalImage {
                    path: input.path.clone(),
                    format: validation::MediaFormat::from_mime(&input.mime)
                        .unwrap_or(validation::MediaFormat::Png),
                });
            }
        }
        Action::Upscale => {
            req.workflow = pick(WorkflowKind::Upscale, &["image"])?;
            let image = output_image()?;
            let size = super::commands::image_size(&image.path);
            req.images.push(image);
            if let Some(def) = catalog.get(&req.workflow) {
                super::commands::upscale_values(def, BUTTON_UPSCALE_FACTOR, size, &mut req.values);
            }
        }
        Action::Vary => {
            req.workflow = pick(WorkflowKind::Img2img, &["image"])?;
            req.images.push(output_image()?);
            let def = catalog
                .get(&req.workflow)
                .ok_or("No img2img workflow is loaded.")?;
            // Keep the settings both workflows share, with a fresh seed.
            for (k, v) in jobs::reusable_values(&source.spec, source_def, true) {
                if def.manifest.params.contains_key(&k)
                    && !["width", "height", "batch"].contains(&k.as_str())
                {
                    req.values.insert(k, v);
                }
            }
            if def.manifest.params.contains_key("denoise") {
                req.values.insert("denoise".into(), VARY_DENOISE.into());
            }
        }
        Action::Animate => {
            req.workflow = pick(WorkflowKind::Video, &["image"])?;
            req.images.push(output_image()?);
            if let Some(p) = prompt {
                req.values.insert("prompt".into(), p);
            }
        }
        Action::Edit | Action::Info | Action::Delete | Action::Cancel => {
            return Err("That button does not start a job.".into());
        }
    }
    Ok(req)
}

/// A job derived from a Cosmos result: rerun, edit the prompt, or upscale the video.
fn derived_cosmos(
    source: &JobRecord,
    action: Action,
    new_prompt: Option<String>,
) -> Result<JobRequest, String> {
    let mut req = JobRequest {
        parent: Some(source.id.clone()),
        ..JobRequest::default()
    };
    let local = |path: &std::path::Path, mime: &str| LocalImage {
        path: path.to_path_buf(),
        format: validation::MediaFormat::from_mime(mime).unwrap_or(validation::MediaFormat::Mp4),
    };
    match action {
        Action::Reroll | Action::EditSubmit | Action::Retry => {
            req.workflow = source.spec.workflow.clone();
            req.values = source
                .spec
                .values
                .iter()
                .filter(|(k, _)| {
                    k.as_str() != cosmos_spec::VIDEO_PARAM
                        && !(action == Action::Reroll && k.as_str() == "seed")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if let Some(p) = new_prompt {
                req.values.insert("prompt".into(), Value::String(p));
            }
            let input = source
                .spec
                .inputs
                .first()
                .filter(|i| i.path.exists())
                .ok_or("The video this job started from is no longer on the server.")?;
            req.images.push(local(&input.path, &input.mime));
        }
        Action::Upscale => {
            let video = source
                .outputs
                .iter()
                .find(|o| o.kind == generators::OutputKind::Video && o.path.exists())
                .ok_or("This result's video is no longer on the server.")?;
            req.workflow = cosmos_spec::UPSCALE_WORKFLOW.to_string();
            req.images.push(local(&video.path, "video/mp4"));
        }
        _ => return Err("That button does not work on Cosmos results.".into()),
    }
    Ok(req)
}

/// Starts the job a button (or the modal) asks for, from the source job in the journal.
async fn derive(
    data: &Arc<Data>,
    http: &Http,
    resp: &Responder,
    action: Action,
    source: &JobId,
    new_prompt: Option<String>,
) {
    data.metrics.acks.observe(resp.at.elapsed());
    if data.stopping.load(std::sync::atomic::Ordering::Relaxed) {
        return resp.fail(http, super::commands::RESTARTING).await;
    }
    if let Err(msg) = access::may_generate(&data.config().discord, &resp.caller) {
        return resp.fail(http, &launch::capitalise(&msg)).await;
    }
    let record = match data.journal.get(source) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return resp
                .fail(http, "That job is no longer in the journal.")
                .await
        }
        Err(e) => {
            return resp
                .fail(http, &launch::internal("reading a source job", &e))
                .await
        }
    };
    let req = match derived_request(&data.catalog(), &record, action, new_prompt) {
        Ok(r) => r,
        Err(msg) => return resp.fail(http, &msg).await,
    };
    launch::start_job(data, http, resp, JobId::new(), req).await;
}
