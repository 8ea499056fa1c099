//! Commands that show things: `/status`, `/queue`, `/cancel`, `/history`, `/workflows`,
//! `/loras`, `/help`.

use generators::JobId;
use poise::serenity_prelude as serenity;
use serenity::CreateAutocompleteResponse;

use super::{caller, choices, say_ephemeral, Ctx};
use crate::discord::reply::{capitalise, internal, RESTARTING};
use crate::discord::{access, render, Data, Error};

/// Jobs per `/history` page.
const HISTORY_PAGE: usize = 10;
/// LoRAs per `/loras` page.
const LORAS_PAGE: usize = 40;

/// Backends, their health and queues, and this bot's queue.
#[poise::command(slash_command)]
pub async fn status(ctx: Ctx<'_>) -> Result<(), Error> {
    ctx.defer_ephemeral().await?;
    let Some(s) = ctx.data().scheduler.status().await else {
        return say_ephemeral(ctx, RESTARTING.into()).await;
    };
    let embed = render::status_embed(&s);
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
            let record = data.journal.get(id).ok().flatten();
            render::queue_line(id, place, record.as_ref())
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
    let caller = caller(&ctx);
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
        Err(e) => capitalise(&e.to_string()),
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
        Err(e) => return say_ephemeral(ctx, internal("reading history", &e)).await,
    };
    if records.is_empty() {
        return say_ephemeral(ctx, format!("No results on page {page}.")).await;
    }
    let lines: Vec<String> = records.iter().map(render::history_line).collect();
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
    let lines: Vec<String> = catalog.iter().map(render::workflow_line).collect();
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

/// The server's styles and wildcards.
#[poise::command(slash_command)]
pub async fn styles(ctx: Ctx<'_>) -> Result<(), Error> {
    ctx.defer_ephemeral().await?;
    say_ephemeral(ctx, render::styles_text(&ctx.data().library())).await
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

async fn ac_my_jobs(ctx: Ctx<'_>, partial: &str) -> CreateAutocompleteResponse {
    let user = ctx.interaction.user.id.get();
    let ids = ctx.data().scheduler.places(user).await;
    choices(ids.into_iter().map(|(id, _)| id.to_string()), partial)
}
