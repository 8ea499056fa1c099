//! The slash commands. Each one acknowledges first, then parses, calls tested code, renders.

use std::sync::Arc;
use std::time::Instant;

use core_comfyui::WorkflowKind;
use generators::{JobId, JobPlace};
use poise::serenity_prelude as serenity;
use serde_json::{Map, Value};
use serenity::{CreateAutocompleteResponse, CreateEmbed};

use super::access::{self, Caller};
use super::launch::{self, Incoming, Responder};
use super::render;
use super::{Data, Error};
use crate::jobs::{self, JobRequest};

pub type Ctx<'a> = poise::ApplicationContext<'a, Arc<Data>, Error>;

/// What a user is told when the bot is shutting down.
pub const RESTARTING: &str = "The bot is restarting; try again in a minute.";

/// Choices one autocomplete answer may hold (Discord's limit).
const MAX_AUTOCOMPLETE: usize = 25;
/// Jobs per `/history` page.
const HISTORY_PAGE: usize = 10;
/// LoRAs per `/loras` page.
const LORAS_PAGE: usize = 40;
/// Upscale factors offered.
const MIN_FACTOR: f64 = 1.0;
const MAX_FACTOR: f64 = 4.0;

/// Every command, for registration.
pub fn all() -> Vec<poise::Command<Arc<Data>, Error>> {
    vec![
        generate(),
        edit(),
        upscale(),
        animate(),
        status(),
        queue(),
        cancel(),
        history(),
        workflows(),
        loras(),
        help(),
        admin(),
        cosmos(),
    ]
}

pub fn caller_of(interaction: &serenity::CommandInteraction) -> Caller {
    Caller {
        user: interaction.user.id.get(),
        guild: interaction.guild_id.map(|g| g.get()),
        channel: interaction.channel_id.get(),
        roles: interaction
            .member
            .as_ref()
            .map(|m| m.roles.iter().map(|r| r.get()).collect())
            .unwrap_or_default(),
    }
}

fn responder(ctx: &Ctx<'_>, at: Instant) -> Responder {
    let i = ctx.interaction;
    Responder {
        token: i.token.clone(),
        at,
        channel: i.channel_id,
        upload_limit: u64::from(i.attachment_size_limit).max(1),
        caller: caller_of(i),
    }
}

/// Defers publicly (the job's message), checks access, and starts the job.
async fn launch_from_command(
    ctx: Ctx<'_>,
    kind: WorkflowKind,
    workflow: Option<String>,
    values: Map<String, Value>,
    aspect: Option<String>,
    attachments: Vec<&serenity::Attachment>,
    extra: impl FnOnce(&core_comfyui::WorkflowDef, &[jobs::LocalImage], &mut Map<String, Value>),
) -> Result<(), Error> {
    let at = Instant::now();
    ctx.defer().await?;
    let data = ctx.data().clone();
    data.metrics.acks.observe(at.elapsed());
    let http = ctx.serenity_context().http.clone();
    let resp = responder(&ctx, at);
    if data.stopping.load(std::sync::atomic::Ordering::Relaxed) {
        resp.fail(&http, RESTARTING).await;
        return Ok(());
    }
    if let Err(msg) = access::may_generate(&data.config().discord, &resp.caller) {
        resp.fail(&http, &launch::capitalise(&msg)).await;
        return Ok(());
    }
    let catalog = data.catalog();
    let mut needs: Vec<&str> = values.keys().map(String::as_str).collect();
    if !attachments.is_empty() {
        needs.push("image");
    }
    let name = match workflow {
        Some(w) => w,
        None => match jobs::pick_workflow(&catalog, kind, &needs).or_else(|| {
            (kind == WorkflowKind::Txt2img && !attachments.is_empty())
                .then(|| jobs::pick_workflow(&catalog, WorkflowKind::Img2img, &needs))
                .flatten()
        }) {
            Some(w) => w,
            None => {
                let msg = format!(
                    "No {} workflow takes {}; see /workflows.",
                    jobs::kind_name(kind),
                    if needs.is_empty() {
                        "these options".to_string()
                    } else {
                        needs.join(", ")
                    }
                );
                resp.fail(&http, &msg).await;
                return Ok(());
            }
        },
    };
    // Cosmos jobs have no ComfyUI workflow: their rules live in the Cosmos backend.
    let cosmos = generators::cosmos::spec::CosmosKind::from_workflow(&name).is_some();
    let def = catalog.get(&name);
    if def.is_none() && !cosmos {
        resp.fail(
            &http,
            &format!(
                "Unknown workflow {name:?}; available: {}.",
                catalog.names().collect::<Vec<_>>().join(", ")
            ),
        )
        .await;
        return Ok(());
    }
    let id = JobId::new();
    let incoming: Vec<Incoming> = attachments.into_iter().map(Incoming::from).collect();
    let allow_video = cosmos || def.is_some_and(|d| d.manifest.kind == WorkflowKind::Video);
    let images = match launch::fetch_inputs(&data, &id, &incoming, allow_video).await {
        Ok(i) => i,
        Err(msg) => {
            resp.fail(&http, &msg).await;
            return Ok(());
        }
    };
    let mut values = values;
    if let Some(def) = def {
        extra(def, &images, &mut values);
    }
    let req = JobRequest {
        workflow: name,
        values,
        aspect,
        images,
        parent: None,
    };
    launch::start_job(&data, &http, &resp, id, req).await;
    Ok(())
}

fn put(values: &mut Map<String, Value>, name: &str, v: Option<impl Into<Value>>) {
    if let Some(v) = v {
        values.insert(name.into(), v.into());
    }
}

/// Generate an image from a prompt.
#[poise::command(slash_command)]
#[allow(clippy::too_many_arguments)]
pub async fn generate(
    ctx: Ctx<'_>,
    #[description = "What to draw"]
    #[max_length = 2000]
    prompt: String,
    #[description = "What to avoid"]
    #[max_length = 2000]
    negative: Option<String>,
    #[description = "Workflow (default: txt2img, or img2img with an image)"]
    #[autocomplete = "ac_workflow"]
    workflow: Option<String>,
    #[description = "Aspect ratio instead of width/height"]
    #[autocomplete = "ac_aspect"]
    aspect: Option<String>,
    #[description = "Width in pixels (multiple of 8)"] width: Option<u32>,
    #[description = "Height in pixels (multiple of 8)"] height: Option<u32>,
    #[description = "Sampling steps"] steps: Option<u32>,
    #[description = "Prompt strength (CFG)"] cfg: Option<f64>,
    #[description = "Seed; the same seed and settings give the same image"]
    #[min = 0]
    seed: Option<i64>,
    #[description = "Images at once"] batch: Option<u32>,
    #[description = "LoRA to apply"]
    #[autocomplete = "ac_lora"]
    lora: Option<String>,
    #[description = "LoRA strength"] lora_strength: Option<f64>,
    #[description = "Start from this image (img2img)"] image: Option<serenity::Attachment>,
) -> Result<(), Error> {
    let mut v = Map::new();
    v.insert("prompt".into(), prompt.into());
    put(&mut v, "negative", negative);
    put(&mut v, "width", width);
    put(&mut v, "height", height);
    put(&mut v, "steps", steps);
    put(&mut v, "cfg", cfg);
    put(&mut v, "seed", seed);
    put(&mut v, "batch", batch);
    put(&mut v, "lora", lora);
    put(&mut v, "lora_strength", lora_strength);
    let kind = if image.is_some() {
        WorkflowKind::Img2img
    } else {
        WorkflowKind::Txt2img
    };
    launch_from_command(
        ctx,
        kind,
        workflow,
        v,
        aspect,
        image.iter().collect(),
        |_, _, _| {},
    )
    .await
}

/// Edit an image by instruction.
#[poise::command(slash_command)]
pub async fn edit(
    ctx: Ctx<'_>,
    #[description = "The image to edit"] image: serenity::Attachment,
    #[description = "What to change"]
    #[max_length = 2000]
    instruction: String,
    #[description = "A second image, for workflows that take one"] image2: Option<
        serenity::Attachment,
    >,
    #[description = "Seed"]
    #[min = 0]
    seed: Option<i64>,
) -> Result<(), Error> {
    let mut v = Map::new();
    v.insert("prompt".into(), instruction.into());
    put(&mut v, "seed", seed);
    let images: Vec<&serenity::Attachment> = std::iter::once(&image).chain(image2.iter()).collect();
    launch_from_command(ctx, WorkflowKind::Edit, None, v, None, images, |_, _, _| {}).await
}

/// The values an upscale workflow needs for `factor`: the factor itself, or a target size.
pub fn upscale_values(
    def: &core_comfyui::WorkflowDef,
    factor: f64,
    size: Option<(u32, u32)>,
    values: &mut Map<String, Value>,
) {
    if def.manifest.params.contains_key("factor") {
        values.insert("factor".into(), factor.into());
    } else if let Some((w, h)) = size.and_then(|(w, h)| generators::upscale_target(w, h, factor)) {
        values.insert("target_width".into(), w.into());
        values.insert("target_height".into(), h.into());
    }
}

/// Upscale an image.
#[poise::command(slash_command)]
pub async fn upscale(
    ctx: Ctx<'_>,
    #[description = "The image to upscale"] image: serenity::Attachment,
    #[description = "How much larger (default 2)"]
    #[min = 1.0]
    #[max = 4.0]
    factor: Option<f64>,
) -> Result<(), Error> {
    let factor = factor.unwrap_or(2.0).clamp(MIN_FACTOR, MAX_FACTOR);
    let size = image.width.zip(image.height);
    launch_from_command(
        ctx,
        WorkflowKind::Upscale,
        None,
        Map::new(),
        None,
        vec![&image],
        move |def, images, v| {
            let size = size.or_else(|| images.first().and_then(|i| image_size(&i.path)));
            upscale_values(def, factor, size, v);
        },
    )
    .await
}

/// The pixel size of an image file, from its header.
pub fn image_size(path: &std::path::Path) -> Option<(u32, u32)> {
    image::ImageReader::open(path)
        .ok()?
        .with_guessed_format()
        .ok()?
        .into_dimensions()
        .ok()
}

/// Animate an image.
#[poise::command(slash_command)]
pub async fn animate(
    ctx: Ctx<'_>,
    #[description = "The first frame"] image: serenity::Attachment,
    #[description = "What should happen"]
    #[max_length = 2000]
    prompt: String,
    #[description = "Number of frames"] frames: Option<u32>,
) -> Result<(), Error> {
    let mut v = Map::new();
    v.insert("prompt".into(), prompt.into());
    put(&mut v, "frames", frames);
    launch_from_command(
        ctx,
        WorkflowKind::Video,
        None,
        v,
        None,
        vec![&image],
        |_, _, _| {},
    )
    .await
}

/// Transform a video with NVIDIA Cosmos on the GPU host.
#[poise::command(slash_command)]
#[allow(clippy::too_many_arguments)]
pub async fn cosmos(
    ctx: Ctx<'_>,
    #[description = "The input video (MP4)"] video: serenity::Attachment,
    #[description = "What the new video shows"]
    #[max_length = 2000]
    prompt: String,
    #[description = "What to avoid"]
    #[max_length = 2000]
    negative: Option<String>,
    #[description = "Weight of the blurred-video control, 0–1 (default 0.25)"]
    #[min = 0.0]
    #[max = 1.0]
    vis: Option<f64>,
    #[description = "Weight of the edge control, 0–1 (default 0.25)"]
    #[min = 0.0]
    #[max = 1.0]
    edge: Option<f64>,
    #[description = "Weight of the depth control, 0–1 (default 0.25)"]
    #[min = 0.0]
    #[max = 1.0]
    depth: Option<f64>,
    #[description = "Weight of the segmentation control, 0–1 (default 0.25)"]
    #[min = 0.0]
    #[max = 1.0]
    seg: Option<f64>,
    #[description = "Diffusion steps (default 35)"] steps: Option<u32>,
    #[description = "Guidance (default 5)"] guidance: Option<f64>,
    #[description = "Seed"]
    #[min = 1]
    seed: Option<i64>,
    #[description = "How far from the input to start, 0–80 (default 70)"] sigma_max: Option<f64>,
    #[description = "Frames per second of the output (default 24)"] fps: Option<u32>,
    #[description = "Blur of the vis control"]
    #[autocomplete = "ac_strength"]
    blur_strength: Option<String>,
    #[description = "Canny threshold of the edge control"]
    #[autocomplete = "ac_strength"]
    canny_threshold: Option<String>,
) -> Result<(), Error> {
    if ctx.data().config().cosmos.is_none() {
        ctx.defer_ephemeral().await?;
        return say_ephemeral(ctx, "No Cosmos host is configured on this bot.".into()).await;
    }
    let mut v = Map::new();
    v.insert("prompt".into(), prompt.into());
    put(&mut v, "negative", negative);
    put(&mut v, "vis", vis);
    put(&mut v, "edge", edge);
    put(&mut v, "depth", depth);
    put(&mut v, "seg", seg);
    put(&mut v, "steps", steps);
    put(&mut v, "guidance", guidance);
    put(&mut v, "seed", seed);
    put(&mut v, "sigma_max", sigma_max);
    put(&mut v, "fps", fps);
    put(&mut v, "blur_strength", blur_strength);
    put(&mut v, "canny_threshold", canny_threshold);
    launch_from_command(
        ctx,
        WorkflowKind::Video,
        Some(generators::cosmos::spec::TRANSFER_WORKFLOW.to_string()),
        v,
        None,
        vec![&video],
        |_, _, _| {},
    )
    .await
}

async fn ac_strength(_ctx: Ctx<'_>, partial: &str) -> CreateAutocompleteResponse {
    choices(
        generators::cosmos::spec::STRENGTHS
            .iter()
            .map(|s| s.to_string()),
        partial,
    )
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

/// Backends, their health and queues, and this bot's queue.
#[poise::command(slash_command)]
pub async fn status(ctx: Ctx<'_>) -> Result<(), Error> {
    ctx.defer_ephemeral().await?;
    let Some(s) = ctx.data().scheduler.status().await else {
        return say_ephemeral(ctx, "The bot is restarting; try again in a minute.".into()).await;
    };
    let mut embed = CreateEmbed::new()
        .title("comfycord status")
        .description(format!(
            "{} waiting · {} running{}",
            s.waiting,
            s.running,
            if s.paused { " · **queue paused**" } else { "" }
        ));
    for b in s.backends.iter().take(20) {
        let models: usize = b
            .choices
            .values()
            .flat_map(|p| p.get("checkpoint"))
            .map(Vec::len)
            .max()
            .unwrap_or(0);
        let state = match (&b.last_error, b.healthy) {
            (Some(e), false) => format!("down: {e}\n"),
            (Some(e), true) => format!("last probe failed: {e}\n"),
            (None, _) => String::new(),
        };
        embed = embed.field(
            format!("{} {}", if b.healthy { "🟢" } else { "🔴" }, b.name),
            render::truncate_chars(
                &format!(
                    "{state}{}\nrunning {} · server queue {} · {} workflows · {} checkpoints",
                    b.detail,
                    b.inflight,
                    b.queue_remaining,
                    b.workflows.len(),
                    models
                ),
                1024,
            ),
            false,
        );
    }
    ctx.send(poise::CreateReply::default().embed(embed).ephemeral(true))
        .await?;
    Ok(())
}

/// Your waiting and running jobs.
#[poise::command(slash_command)]
pub async fn queue(ctx: Ctx<'_>) -> Result<(), Error> {
    ctx.defer_ephemeral().await?;
    let user = ctx.interaction.user.id.get();
    let data = ctx.data();
    let places = data.scheduler.places(user).await;
    if places.is_empty() {
        return say_ephemeral(ctx, "You have no jobs waiting or running.".into()).await;
    }
    let lines: Vec<String> = places
        .iter()
        .map(|(id, place)| {
            let where_ = match place {
                JobPlace::Running { backend } => format!("running on {backend}"),
                JobPlace::Waiting { position: 0 } => "next up".to_string(),
                JobPlace::Waiting { position } => format!("{position} ahead of it"),
            };
            let link = data
                .journal
                .get(id)
                .ok()
                .flatten()
                .and_then(|r| {
                    Some(render::message_link(
                        r.origin.guild,
                        r.origin.channel?,
                        r.origin.message?,
                    ))
                })
                .map(|l| format!(" · {l}"))
                .unwrap_or_default();
            format!("`{id}` {where_}{link}")
        })
        .collect();
    say_ephemeral(ctx, lines.join("\n")).await
}

/// Cancel one of your jobs (your newest if none is named).
#[poise::command(slash_command)]
pub async fn cancel(
    ctx: Ctx<'_>,
    #[description = "Job id (see /queue)"]
    #[autocomplete = "ac_my_jobs"]
    job: Option<String>,
) -> Result<(), Error> {
    ctx.defer_ephemeral().await?;
    let data = ctx.data();
    let caller = caller_of(ctx.interaction);
    let id = match job {
        Some(j) => JobId(j.trim().to_string()),
        None => match data.scheduler.places(caller.user).await.into_iter().last() {
            Some((id, _)) => id,
            None => return say_ephemeral(ctx, "You have no jobs waiting or running.".into()).await,
        },
    };
    let admin = access::is_admin(&data.config().discord, &caller);
    let text = match data.scheduler.cancel(&id, caller.user, admin).await {
        Ok(()) => format!("Cancelling `{id}`."),
        Err(e) => launch::capitalise(&e.to_string()),
    };
    say_ephemeral(ctx, text).await
}

/// Your recent results.
#[poise::command(slash_command)]
pub async fn history(
    ctx: Ctx<'_>,
    #[description = "Page (1 is the newest)"]
    #[min = 1]
    page: Option<u32>,
) -> Result<(), Error> {
    ctx.defer_ephemeral().await?;
    let page = page.unwrap_or(1).max(1) as usize;
    let user = ctx.interaction.user.id.get();
    let data = ctx.data();
    let records = match data
        .journal
        .recent_for_owner(user, HISTORY_PAGE, (page - 1) * HISTORY_PAGE)
    {
        Ok(r) => r,
        Err(e) => return say_ephemeral(ctx, launch::internal("reading history", &e)).await,
    };
    if records.is_empty() {
        return say_ephemeral(ctx, format!("No results on page {page}.")).await;
    }
    let lines: Vec<String> = records
        .iter()
        .map(|r| {
            let prompt = r
                .spec
                .values
                .get("prompt")
                .and_then(Value::as_str)
                .unwrap_or("");
            let link = r
                .origin
                .channel
                .zip(r.origin.message)
                .map(|(c, m)| format!(" · {}", render::message_link(r.origin.guild, c, m)))
                .unwrap_or_default();
            format!(
                "`{}` {} · {} · {}{link}",
                r.id,
                r.state.name(),
                r.spec.workflow,
                render::truncate_chars(prompt, 60)
            )
        })
        .collect();
    say_ephemeral(
        ctx,
        format!("**Your results, page {page}**\n{}", lines.join("\n")),
    )
    .await
}

/// The workflows you can use.
#[poise::command(slash_command)]
pub async fn workflows(ctx: Ctx<'_>) -> Result<(), Error> {
    ctx.defer_ephemeral().await?;
    let catalog = ctx.data().catalog();
    let lines: Vec<String> = catalog
        .iter()
        .map(|d| {
            format!(
                "**{}** ({}{}) {}\n  options: {}",
                d.name,
                jobs::kind_name(d.manifest.kind),
                if d.manifest.nsfw { ", NSFW" } else { "" },
                d.manifest.description.as_deref().unwrap_or(""),
                d.manifest
                    .params
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .collect();
    say_ephemeral(
        ctx,
        if lines.is_empty() {
            "No workflows are loaded.".into()
        } else {
            lines.join("\n")
        },
    )
    .await
}

/// Every LoRA the backends offer.
pub async fn lora_names(data: &Data) -> Vec<String> {
    let Some(status) = data.scheduler.status().await else {
        return Vec::new();
    };
    let mut names: Vec<String> = status
        .backends
        .iter()
        .flat_map(|b| b.choices.values())
        .flat_map(|params| params.iter())
        .filter(|(p, _)| p.as_str() == "lora" || p.ends_with("_lora"))
        .flat_map(|(_, values)| values.iter())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// LoRAs on the backends.
#[poise::command(slash_command)]
pub async fn loras(
    ctx: Ctx<'_>,
    #[description = "Only names containing this"] search: Option<String>,
    #[description = "Page"]
    #[min = 1]
    page: Option<u32>,
) -> Result<(), Error> {
    ctx.defer_ephemeral().await?;
    let all = lora_names(ctx.data()).await;
    let needle = search.unwrap_or_default().to_lowercase();
    let found: Vec<&String> = all
        .iter()
        .filter(|n| n.to_lowercase().contains(&needle))
        .collect();
    let page = page.unwrap_or(1).max(1) as usize;
    let pages = found.len().div_ceil(LORAS_PAGE).max(1);
    let shown: Vec<String> = found
        .iter()
        .skip((page - 1) * LORAS_PAGE)
        .take(LORAS_PAGE)
        .map(|n| format!("`{n}`"))
        .collect();
    let text = if found.is_empty() {
        "No LoRAs found.".to_string()
    } else {
        format!(
            "**LoRAs** ({} found, page {page}/{pages})\n{}",
            found.len(),
            shown.join("\n")
        )
    };
    say_ephemeral(ctx, text).await
}

/// How to use comfycord.
#[poise::command(slash_command)]
pub async fn help(ctx: Ctx<'_>) -> Result<(), Error> {
    ctx.defer_ephemeral().await?;
    say_ephemeral(
        ctx,
        "**comfycord**\n\
         `/generate prompt:…` makes an image; add `image:` for img2img, `lora:` for a LoRA, `aspect:` or `width:`/`height:`, `steps:`, `cfg:`, `seed:`, `batch:`.\n\
         `/edit image: instruction:` changes an image · `/upscale image: factor:` · `/animate image: prompt:`.\n\
         Under a result: Upscale, Vary (a variation of it), Reroll (new seed), Edit (change the prompt), Animate, Info (every setting and a command to repeat it), Delete.\n\
         `/queue` shows your jobs, `/cancel` stops one, `/history` lists your results, `/workflows` and `/loras` list what is available, `/status` shows the servers."
            .to_string(),
    )
    .await
}

/// Admin: reload, pause, resume or clear the queue.
#[poise::command(
    slash_command,
    subcommands("reload", "pause", "resume", "clear"),
    subcommand_required
)]
pub async fn admin(_ctx: Ctx<'_>) -> Result<(), Error> {
    Ok(())
}

/// Defers and checks admin rights; false (and a reply) when the caller is not an admin.
async fn admin_gate(ctx: Ctx<'_>) -> Result<bool, Error> {
    ctx.defer_ephemeral().await?;
    if access::is_admin(&ctx.data().config().discord, &caller_of(ctx.interaction)) {
        return Ok(true);
    }
    say_ephemeral(ctx, "Only comfycord admins can do that.".into()).await?;
    Ok(false)
}

/// Reload config.json (access rules) and the workflows folder.
#[poise::command(slash_command)]
pub async fn reload(ctx: Ctx<'_>) -> Result<(), Error> {
    if !admin_gate(ctx).await? {
        return Ok(());
    }
    let text = match ctx.data().reload() {
        Ok(summary) => summary,
        Err(e) => format!("Reload failed; nothing changed.\n{e}"),
    };
    say_ephemeral(ctx, text).await
}

/// Stop starting new jobs (waiting jobs stay queued).
#[poise::command(slash_command)]
pub async fn pause(ctx: Ctx<'_>) -> Result<(), Error> {
    if !admin_gate(ctx).await? {
        return Ok(());
    }
    ctx.data().scheduler.pause(true).await;
    say_ephemeral(
        ctx,
        "Queue paused; running jobs finish, waiting jobs stay queued.".into(),
    )
    .await
}

/// Start jobs again.
#[poise::command(slash_command)]
pub async fn resume(ctx: Ctx<'_>) -> Result<(), Error> {
    if !admin_gate(ctx).await? {
        return Ok(());
    }
    ctx.data().scheduler.pause(false).await;
    say_ephemeral(ctx, "Queue resumed.".into()).await
}

/// Cancel every waiting job.
#[poise::command(slash_command)]
pub async fn clear(ctx: Ctx<'_>) -> Result<(), Error> {
    if !admin_gate(ctx).await? {
        return Ok(());
    }
    let n = ctx.data().scheduler.clear().await;
    say_ephemeral(
        ctx,
        format!("Removed {n} waiting job(s); running jobs continue."),
    )
    .await
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

async fn ac_workflow(ctx: Ctx<'_>, partial: &str) -> CreateAutocompleteResponse {
    let catalog = ctx.data().catalog();
    let names: Vec<String> = catalog
        .iter()
        .filter(|d| {
            matches!(
                d.manifest.kind,
                WorkflowKind::Txt2img | WorkflowKind::Img2img | WorkflowKind::Custom
            )
        })
        .map(|d| d.name.clone())
        .collect();
    choices(names.into_iter(), partial)
}

async fn ac_aspect(_ctx: Ctx<'_>, partial: &str) -> CreateAutocompleteResponse {
    choices(
        validation::ASPECT_PRESETS
            .iter()
            .map(|(n, _, _)| n.to_string()),
        partial,
    )
}

async fn ac_lora(ctx: Ctx<'_>, partial: &str) -> CreateAutocompleteResponse {
    choices(lora_names(ctx.data()).await.into_iter(), partial)
}

async fn ac_my_jobs(ctx: Ctx<'_>, partial: &str) -> CreateAutocompleteResponse {
    let user = ctx.interaction.user.id.get();
    let ids = ctx.data().scheduler.places(user).await;
    choices(ids.into_iter().map(|(id, _)| id.to_string()), partial)
}
