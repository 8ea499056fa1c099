//! The slash commands. Each one acknowledges first, then parses, calls tested code, renders.

mod admin;
mod generate;
mod info;
pub mod results;
mod settings;

use std::sync::Arc;
use std::time::Instant;

use core_comfyui::WorkflowKind;
use generators::{JobId, JobRequest};
use poise::serenity_prelude as serenity;
use serde_json::{Map, Value};
use serenity::CreateAutocompleteResponse;

use super::access::Caller;
use super::inputs::{fetch_inputs, Incoming};
use super::reply::{caller_of, Responder};
use super::{launch, render, Data, Error};

pub use info::lora_names;

pub type Ctx<'a> = poise::ApplicationContext<'a, Arc<Data>, Error>;

/// Choices one autocomplete answer may hold (Discord's limit).
const MAX_AUTOCOMPLETE: usize = 25;

/// Every command, for registration.
pub fn all() -> Vec<poise::Command<Arc<Data>, Error>> {
    vec![
        generate::generate(),
        generate::edit(),
        generate::upscale(),
        generate::animate(),
        generate::describe(),
        generate::blend(),
        info::status(),
        info::queue(),
        info::cancel(),
        info::history(),
        info::workflows(),
        info::styles(),
        info::loras(),
        info::help(),
        results::show(),
        results::remix(),
        settings::settings(),
        settings::prefer(),
        results::upscale_message(),
        results::vary_message(),
        results::describe_message(),
        admin::admin(),
        generate::cosmos(),
    ]
}

/// Who ran the command.
pub fn caller(ctx: &Ctx<'_>) -> Caller {
    let i = ctx.interaction;
    caller_of(&i.user, i.member.as_deref(), i.guild_id, i.channel_id)
}

/// What a job-starting command asks for.
#[derive(Debug, Clone)]
struct Ask {
    kind: WorkflowKind,
    workflow: Option<String>,
    values: Map<String, Value>,
    aspect: Option<String>,
    style: Option<String>,
}

impl Ask {
    fn new(kind: WorkflowKind, values: Map<String, Value>) -> Ask {
        Ask {
            kind,
            workflow: None,
            values,
            aspect: None,
            style: None,
        }
    }
}

/// Defers (publicly, or privately for a member whose results go to their DMs), admits the
/// caller, plans the jobs, fetches the attachments, and starts each job.
async fn launch_from_command(
    ctx: Ctx<'_>,
    ask: Ask,
    attachments: Vec<&serenity::Attachment>,
) -> Result<(), Error> {
    let at = Instant::now();
    let data = ctx.data().clone();
    let i = ctx.interaction;
    let member = super::settings_panel::member_settings(&data, i.user.id.get());
    if member.private && i.guild_id.is_some() {
        ctx.defer_ephemeral().await?;
    } else {
        ctx.defer().await?;
    }
    let http = ctx.serenity_context().http.clone();
    let resp = Responder::new(&i.token, at, caller(&ctx), i.attachment_size_limit)
        .with_private(member.private);
    if !launch::admit(&data, &http, &resp).await {
        return Ok(());
    }
    let has_inputs = !attachments.is_empty();
    let config = data.config();
    let (catalog, library) = (data.catalog(), data.library());
    let plan = generators::kinds::plan_prompt(generators::kinds::PromptInput {
        catalog: &catalog,
        library: &library,
        kind: ask.kind,
        named: ask.workflow.as_deref(),
        slash: &ask.values,
        slash_aspect: ask.aspect.as_deref(),
        slash_style: ask.style.as_deref(),
        has_inputs,
        member: &member.prefs,
        server: &config.defaults,
    });
    let plan = match plan {
        Ok(p) => p,
        Err(msg) => {
            resp.fail(&http, &msg).await;
            return Ok(());
        }
    };
    let name = plan.workflow;
    let kinds = data.kinds();
    if !kinds.knows(&name) {
        let msg = format!(
            "Unknown workflow {name:?}; available: {}.",
            kinds.workflows().join(", ")
        );
        resp.fail(&http, &msg).await;
        return Ok(());
    }
    let incoming: Vec<Incoming> = attachments.into_iter().map(Incoming::from).collect();
    // One message per job: the first in the command's own answer, the others after it.
    for (i, job) in plan.jobs.into_iter().enumerate() {
        let placement = if i == 0 {
            launch::Placement::Original
        } else {
            launch::Placement::Followup
        };
        let id = JobId::new();
        let inputs = match fetch_inputs(&data, &id, &incoming, kinds.takes_video(&name)).await {
            Ok(i) => i,
            Err(msg) if i == 0 => {
                resp.fail(&http, &msg).await;
                return Ok(());
            }
            Err(msg) => {
                resp.whisper(&http, &format!("⚠️ {msg}")).await;
                return Ok(());
            }
        };
        let req = JobRequest {
            workflow: name.clone(),
            values: job.values,
            aspect: job.aspect,
            inputs,
            parent: None,
            sources: job.sources,
            templates: job.templates,
        };
        launch::start_job_at(&data, &http, &resp, id, req, placement).await;
    }
    Ok(())
}

fn put(values: &mut Map<String, Value>, name: &str, v: Option<impl Into<Value>>) {
    if let Some(v) = v {
        values.insert(name.into(), v.into());
    }
}

async fn say_ephemeral(ctx: Ctx<'_>, text: String) -> Result<(), Error> {
    ctx.send(
        poise::CreateReply::default()
            .content(render::truncate_chars(&text, render::MAX_CONTENT_CHARS))
            .ephemeral(true)
            .allowed_mentions(serenity::CreateAllowedMentions::new()),
    )
    .await?;
    Ok(())
}

fn choices(items: impl Iterator<Item = String>, partial: &str) -> CreateAutocompleteResponse {
    let needle = partial.to_lowercase();
    let list = items
        .filter(|s| s.to_lowercase().contains(&needle))
        .take(MAX_AUTOCOMPLETE)
        .map(|s| serenity::AutocompleteChoice::new(render::truncate_chars(&s, 100), s))
        .collect();
    CreateAutocompleteResponse::new().set_choices(list)
}
