//! `/admin reload|pause|resume|clear`, for the admins named in the config.

use super::{caller, say_ephemeral, Ctx};
use crate::discord::{access, Error};

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
    if access::is_admin(&ctx.data().config().discord, &caller(&ctx)) {
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
