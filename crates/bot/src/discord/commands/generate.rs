//! The commands that start jobs: `/generate`, `/edit`, `/upscale`, `/animate`, `/cosmos`,
//! and their autocompletes.

use core_comfyui::WorkflowKind;
use generators::cosmos::spec as cosmos_spec;
use generators::kinds::catalog::FACTOR_PARAM;
use poise::serenity_prelude as serenity;
use serde_json::Map;
use serenity::CreateAutocompleteResponse;

use super::{choices, launch_from_command, lora_names, put, say_ephemeral, Ask, Ctx};
use crate::discord::Error;

/// Upscale factors offered.
const MIN_FACTOR: f64 = 1.0;
const MAX_FACTOR: f64 = 4.0;
const DEFAULT_FACTOR: f64 = 2.0;

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
    #[description = "A style from /styles"]
    #[autocomplete = "ac_style"]
    style: Option<String>,
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
    let ask = Ask {
        workflow,
        aspect,
        style,
        ..Ask::new(kind, v)
    };
    launch_from_command(ctx, ask, image.iter().collect()).await
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
    launch_from_command(ctx, Ask::new(WorkflowKind::Edit, v), images).await
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
    let mut v = Map::new();
    let factor = factor
        .unwrap_or(DEFAULT_FACTOR)
        .clamp(MIN_FACTOR, MAX_FACTOR);
    v.insert(FACTOR_PARAM.into(), factor.into());
    launch_from_command(ctx, Ask::new(WorkflowKind::Upscale, v), vec![&image]).await
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
    launch_from_command(ctx, Ask::new(WorkflowKind::Video, v), vec![&image]).await
}

/// Prompts from an image: press 1–4 on the answer to draw one.
#[poise::command(slash_command)]
pub async fn describe(
    ctx: Ctx<'_>,
    #[description = "The image to describe"] image: serenity::Attachment,
) -> Result<(), Error> {
    let ask = Ask::new(WorkflowKind::Describe, Map::new());
    launch_from_command(ctx, ask, vec![&image]).await
}

/// Blend 2–5 images into one picture.
#[poise::command(slash_command)]
pub async fn blend(
    ctx: Ctx<'_>,
    #[description = "First image"] image1: serenity::Attachment,
    #[description = "Second image"] image2: serenity::Attachment,
    #[description = "Third image"] image3: Option<serenity::Attachment>,
    #[description = "Fourth image"] image4: Option<serenity::Attachment>,
    #[description = "Fifth image"] image5: Option<serenity::Attachment>,
    #[description = "What the blend should show (optional)"]
    #[max_length = 2000]
    prompt: Option<String>,
) -> Result<(), Error> {
    let mut v = Map::new();
    put(&mut v, "prompt", prompt);
    let images: Vec<&serenity::Attachment> = [Some(&image1), Some(&image2)]
        .into_iter()
        .chain([image3.as_ref(), image4.as_ref(), image5.as_ref()])
        .flatten()
        .collect();
    launch_from_command(ctx, Ask::new(WorkflowKind::Blend, v), images).await
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
    let ask = Ask {
        workflow: Some(cosmos_spec::TRANSFER_WORKFLOW.to_string()),
        ..Ask::new(WorkflowKind::Video, v)
    };
    launch_from_command(ctx, ask, vec![&video]).await
}

async fn ac_strength(_ctx: Ctx<'_>, partial: &str) -> CreateAutocompleteResponse {
    choices(
        generators::cosmos::spec::STRENGTHS
            .iter()
            .map(|s| s.to_string()),
        partial,
    )
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

async fn ac_style(ctx: Ctx<'_>, partial: &str) -> CreateAutocompleteResponse {
    let library = ctx.data().library();
    choices(library.styles().map(|(n, _)| n.to_string()), partial)
}

async fn ac_lora(ctx: Ctx<'_>, partial: &str) -> CreateAutocompleteResponse {
    choices(lora_names(ctx.data()).await.into_iter(), partial)
}
