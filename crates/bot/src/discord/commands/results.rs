//! Commands about results: `/show` (a job's result again, with its buttons), `/remix`
//! (follow-ups open the prompt form first), and the message commands Upscale and Vary
//! (right-click any image message → Apps).

use std::time::Instant;

use generators::{JobId, JobRecord, JobState};
use poise::serenity_prelude as serenity;
use serenity::CreateAutocompleteResponse;

use core_comfyui::WorkflowKind;
use serde_json::Map;
use serenity::{
    CreateActionRow, CreateInputText, CreateInteractionResponse, CreateModal, InputTextStyle,
};

use super::{caller, choices, launch_from_command, say_ephemeral, Ask, Ctx};
use crate::discord::access::Caller;
use crate::discord::buttons::{Action, Press};
use crate::discord::components::PROMPT_INPUT;
use crate::discord::components::{remix_on, set_remix};
use crate::discord::reply::ephemeral;
use crate::discord::reply::{internal, Responder};
use crate::discord::result_view::result_message;
use crate::discord::{access, render, Error};

/// Jobs offered by `/show`'s autocomplete.
const SHOW_CHOICES: usize = 25;

/// Why `caller` may not see `record` again here, if not: a job made in direct messages is
/// private to its owner (and admins); one made in a server is shown in that server only.
pub fn may_show(record: &JobRecord, caller: &Caller, admin: bool) -> Result<(), String> {
    if admin || record.origin.owner == caller.user {
        return Ok(());
    }
    if record.origin.private {
        return Err("That job was delivered privately; only its owner can show it.".into());
    }
    match record.origin.guild {
        None => Err("That job was made in direct messages; only its owner can show it.".into()),
        Some(g) if Some(g) != caller.guild => {
            Err("That job was made in another server; only its owner can show it here.".into())
        }
        Some(_) => Ok(()),
    }
}

/// Post a job's result again, with all its buttons.
#[poise::command(slash_command)]
pub async fn show(
    ctx: Ctx<'_>,
    #[description = "Job id (see /history)"]
    #[autocomplete = "ac_my_results"]
    job: String,
) -> Result<(), Error> {
    let at = Instant::now();
    ctx.defer().await?;
    let data = ctx.data();
    let caller = caller(&ctx);
    let i = ctx.interaction;
    let resp = Responder::new(&i.token, at, caller.clone(), i.attachment_size_limit);
    let http = ctx.serenity_context().http.as_ref();
    let admin = access::is_admin(&data.config().discord, &caller);
    let id = JobId(job.trim().to_string());
    let record = match data.journal.get(&id) {
        Ok(Some(r)) => r,
        Ok(None) => {
            resp.fail(
                http,
                &format!(
                    "There is no job `{}` in the journal.",
                    render::truncate_chars(&id.0, 64)
                ),
            )
            .await;
            return Ok(());
        }
        Err(e) => {
            resp.fail(http, &internal("reading a job for /show", &e))
                .await;
            return Ok(());
        }
    };
    if let Err(why) = may_show(&record, &caller, admin) {
        resp.fail(http, &why).await;
        return Ok(());
    }
    if !matches!(record.state, JobState::Finished | JobState::Delivered) {
        let why = format!(
            "Job `{}` is {}; /show posts finished results.",
            record.id,
            record.state.name()
        );
        resp.fail(http, &why).await;
        return Ok(());
    }
    let link = record
        .origin
        .channel
        .zip(record.origin.message)
        .map(|(c, m)| render::message_link(record.origin.guild, c, m));
    let view = result_message(data, &record, None, resp.upload_limit, link.as_deref()).await;
    if view.chunks.is_empty() && !record.outputs.is_empty() {
        resp.fail(http, "The files of that job are no longer on the server.")
            .await;
        return Ok(());
    }
    resp.show(http, view).await;
    Ok(())
}

async fn ac_my_results(ctx: Ctx<'_>, partial: &str) -> CreateAutocompleteResponse {
    let user = ctx.interaction.user.id.get();
    let records = ctx
        .data()
        .journal
        .recent_for_owner(user, SHOW_CHOICES, 0)
        .unwrap_or_default();
    choices(records.into_iter().map(|r| r.id.to_string()), partial)
}

/// Remix: the follow-ups that draw (V, Vary, Zoom, Pan, Reroll, ...) open the prompt first.
#[poise::command(slash_command)]
pub async fn remix(
    ctx: Ctx<'_>,
    #[description = "On or off (leave out to switch)"] on: Option<bool>,
) -> Result<(), Error> {
    ctx.defer_ephemeral().await?;
    let data = ctx.data();
    let user = ctx.interaction.user.id.get();
    let on = on.unwrap_or(!remix_on(data, user));
    let text = match set_remix(data, user, on) {
        Ok(()) if on => "Remix is **on**: variations, zooms, pans and rerolls open the prompt first, so you can change it for that follow-up.".to_string(),
        Ok(()) => "Remix is **off**: follow-ups start at once with the prompt they came from.".to_string(),
        Err(e) => e,
    };
    say_ephemeral(ctx, text).await
}

/// What the "Vary" form says (Discord allows 45 characters).
const VARY_TITLE: &str = "Vary this image";
/// The factor of the Upscale message command.
const MESSAGE_UPSCALE_FACTOR: f64 = 2.0;

/// The first image attached to a message.
pub fn first_image(msg: &serenity::Message) -> Option<&serenity::Attachment> {
    msg.attachments.iter().find(|a| {
        let by_type = a
            .content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("image/"));
        let name = a.filename.to_ascii_lowercase();
        by_type
            || [".png", ".jpg", ".jpeg", ".webp"]
                .iter()
                .any(|e| name.ends_with(e))
    })
}

const NO_IMAGE: &str = "That message has no image attached.";

/// Upscale the image of any message (right-click → Apps → Upscale).
#[poise::command(context_menu_command = "Upscale")]
pub async fn upscale_message(ctx: Ctx<'_>, message: serenity::Message) -> Result<(), Error> {
    let Some(image) = first_image(&message) else {
        return say_ephemeral(ctx, NO_IMAGE.into()).await;
    };
    let mut values = Map::new();
    values.insert("factor".into(), MESSAGE_UPSCALE_FACTOR.into());
    launch_from_command(ctx, Ask::new(WorkflowKind::Upscale, values), vec![image]).await
}

/// Prompts from the image of any message (right-click → Apps → Describe), as `/describe`.
#[poise::command(context_menu_command = "Describe")]
pub async fn describe_message(ctx: Ctx<'_>, message: serenity::Message) -> Result<(), Error> {
    let Some(image) = first_image(&message) else {
        return say_ephemeral(ctx, NO_IMAGE.into()).await;
    };
    let ask = Ask::new(WorkflowKind::Describe, Map::new());
    launch_from_command(ctx, ask, vec![image]).await
}

/// Vary the image of any message (right-click → Apps → Vary): a form asks for the prompt,
/// prefilled with the message's text.
#[poise::command(context_menu_command = "Vary")]
pub async fn vary_message(ctx: Ctx<'_>, message: serenity::Message) -> Result<(), Error> {
    let http = ctx.serenity_context().http.as_ref();
    // The form is the first response, so the checks that can refuse at once come before it.
    let refused = access::may_generate(&ctx.data().config().discord, &caller(&ctx))
        .err()
        .map(|why| crate::discord::reply::capitalise(&why))
        .or_else(|| {
            first_image(&message)
                .is_none()
                .then(|| NO_IMAGE.to_string())
        });
    if let Some(why) = refused {
        ctx.interaction
            .create_response(http, ephemeral(&why))
            .await?;
        return Ok(());
    }
    let press = Press::new(Action::VaryMessage, &JobId(message.id.get().to_string())).as_form();
    let input = CreateInputText::new(InputTextStyle::Paragraph, "Prompt", PROMPT_INPUT)
        .placeholder("What the new image should show")
        .value(render::truncate_chars(
            message.content.trim(),
            render::MAX_MODAL_VALUE_CHARS,
        ))
        .max_length(render::MAX_MODAL_VALUE_CHARS as u16)
        .required(true);
    let modal = CreateModal::new(press.custom_id(), VARY_TITLE)
        .components(vec![CreateActionRow::InputText(input)]);
    ctx.interaction
        .create_response(http, CreateInteractionResponse::Modal(modal))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use generators::{JobSpec, Origin};

    fn record(owner: u64, guild: Option<u64>) -> JobRecord {
        JobRecord {
            id: JobId("abc".into()),
            seq: 1,
            spec: JobSpec {
                workflow: "txt2img".into(),
                values: Default::default(),
                inputs: vec![],
                parent: None,
                sources: Default::default(),
                templates: Default::default(),
            },
            origin: Origin {
                owner,
                guild,
                channel: Some(5),
                message: Some(6),
                private: false,
            },
            state: JobState::Delivered,
            remote_id: None,
            outputs: vec![],
            attempts: 1,
            created_ms: 0,
            started_ms: None,
            finished_ms: None,
        }
    }

    fn caller(user: u64, guild: Option<u64>) -> Caller {
        Caller {
            user,
            guild,
            ..Caller::default()
        }
    }

    #[test]
    fn private_and_foreign_jobs_show_only_for_their_owner_or_admins() {
        let here = record(1, Some(10));
        assert!(may_show(&here, &caller(2, Some(10)), false).is_ok());
        assert!(may_show(&here, &caller(2, Some(11)), false).is_err());
        assert!(may_show(&here, &caller(1, Some(11)), false).is_ok());
        let dm = record(1, None);
        let e = may_show(&dm, &caller(2, Some(10)), false).unwrap_err();
        assert!(e.contains("direct messages"), "{e}");
        assert!(may_show(&dm, &caller(2, Some(10)), true).is_ok());
        assert!(may_show(&dm, &caller(1, None), false).is_ok());
        let mut private = record(1, Some(10));
        private.origin.private = true;
        let e = may_show(&private, &caller(2, Some(10)), false).unwrap_err();
        assert!(e.contains("delivered privately"), "{e}");
        assert!(may_show(&private, &caller(1, Some(10)), false).is_ok());
    }
}
