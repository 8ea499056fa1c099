//! `/settings` (a member's defaults as a private panel) and `/prefer` (the text added after
//! every prompt).

use super::{say_ephemeral, Ctx};
use crate::discord::settings_panel::{member_settings, panel_message, save_settings};
use crate::discord::{render, Error};

/// Your defaults: workflow, aspect, steps, negative prompt, suffix and remix.
#[poise::command(slash_command)]
pub async fn settings(ctx: Ctx<'_>) -> Result<(), Error> {
    let data = ctx.data();
    let s = member_settings(data, ctx.interaction.user.id.get());
    let http = ctx.serenity_context().http.as_ref();
    ctx.interaction
        .create_response(
            http,
            poise::serenity_prelude::CreateInteractionResponse::Message(panel_message(data, &s)),
        )
        .await?;
    Ok(())
}

/// Text added after every prompt you write (leave it out to stop).
#[poise::command(slash_command)]
pub async fn prefer(
    ctx: Ctx<'_>,
    #[description = "Added after every prompt, e.g. \"film grain, 35mm\""]
    #[max_length = 300]
    suffix: Option<String>,
) -> Result<(), Error> {
    ctx.defer_ephemeral().await?;
    let data = ctx.data();
    let user = ctx.interaction.user.id.get();
    let text = suffix.as_deref().unwrap_or_default();
    let cleaned = match validation::text::check_text(
        "suffix",
        text,
        generators::settings::MAX_SUFFIX_CHARS,
        true,
    ) {
        Ok(t) => t,
        Err(e) => {
            return say_ephemeral(ctx, crate::discord::reply::capitalise(&e.to_string())).await
        }
    };
    let mut s = member_settings(data, user);
    s.prefs.suffix = (!cleaned.is_empty()).then(|| cleaned.clone());
    let said = match save_settings(data, user, &s) {
        Ok(()) if cleaned.is_empty() => "Your prompts get nothing added any more.".to_string(),
        Ok(()) => format!(
            "Every prompt you write now ends with: {}",
            render::truncate_chars(&cleaned, 300)
        ),
        Err(e) => e,
    };
    say_ephemeral(ctx, said).await
}
