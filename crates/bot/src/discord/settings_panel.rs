//! `/settings`: a member's defaults as a private panel of select menus and buttons. Every
//! change is saved to the journal at once and the panel redrawn in place.

use std::sync::Arc;

use generators::settings::{
    self, MemberSettings, Preferences, MAX_NEGATIVE_CHARS, MAX_SUFFIX_CHARS,
};
use poise::serenity_prelude as serenity;
use serenity::{
    ButtonStyle, ComponentInteraction, ComponentInteractionDataKind, CreateActionRow,
    CreateAllowedMentions, CreateButton, CreateInputText, CreateInteractionResponse,
    CreateInteractionResponseMessage, CreateModal, CreateSelectMenu, CreateSelectMenuKind,
    CreateSelectMenuOption, Http, InputTextStyle, ModalInteraction,
};

use super::reply::{ephemeral, internal};
use super::{Data, Error};

/// Prefix of the panel's custom ids.
const PREFIX: &str = "cs:";
/// The select value meaning "not set: the server's default applies".
const UNSET: &str = "unset";
/// Steps offered in the panel (a workflow's own bounds still apply when a job is made).
const STEP_CHOICES: [u32; 7] = [4, 8, 12, 20, 30, 40, 50];
/// Options one select menu may hold (Discord's limit), one of them "server default".
const MAX_SELECT_OPTIONS: usize = 25;
/// The text input of the panel's forms.
const TEXT_INPUT: &str = "text";

/// Whether a custom id belongs to the settings panel.
pub fn owns(custom_id: &str) -> bool {
    custom_id.starts_with(PREFIX)
}

/// `user`'s settings (the defaults if the journal cannot be read; that is logged).
pub fn member_settings(data: &Data, user: u64) -> MemberSettings {
    settings::load(data.journal.as_ref(), user).unwrap_or_else(|e| {
        tracing::warn!(user, error = %e, "cannot read member settings");
        MemberSettings::default()
    })
}

/// Saves `user`'s settings; the error is a sentence for the member.
pub fn save_settings(data: &Data, user: u64, s: &MemberSettings) -> Result<(), String> {
    settings::save(data.journal.as_ref(), user, s).map_err(|e| internal("saving settings", &e))
}

fn shown(mine: Option<String>, server: Option<String>) -> String {
    match (mine, server) {
        (Some(v), _) => format!("**{v}**"),
        (None, Some(v)) => format!("server default ({v})"),
        (None, None) => "workflow default".into(),
    }
}

/// The panel's text: each setting, and where the value comes from when not set.
pub fn panel_text(s: &MemberSettings, server: &Preferences) -> String {
    let p = &s.prefs;
    let text = |v: &Option<String>| v.clone().filter(|t| !t.is_empty());
    [
        "**Your settings**: used whenever a command, a button or an inline flag does not say otherwise.".to_string(),
        format!("Workflow: {}", shown(p.workflow.clone(), server.workflow.clone())),
        format!("Aspect: {}", shown(p.aspect.clone(), server.aspect.clone())),
        format!(
            "Steps: {}",
            shown(p.steps.map(|n| n.to_string()), server.steps.map(|n| n.to_string()))
        ),
        format!("Negative: {}", shown(text(&p.negative), text(&server.negative))),
        format!("Style: {}", shown(p.style.clone(), server.style.clone())),
        format!("Suffix: {}", shown(text(&p.suffix), text(&server.suffix))),
        format!("Remix: **{}**", if s.remix { "on" } else { "off" }),
        format!(
            "Private delivery: **{}**",
            if s.private {
                "on** (progress and results come by direct message)"
            } else {
                "off**"
            }
        ),
    ]
    .join("\n")
}

fn select(
    id: &str,
    placeholder: &str,
    current: Option<&str>,
    values: Vec<String>,
) -> CreateActionRow {
    let mut options =
        vec![CreateSelectMenuOption::new("Server default", UNSET)
            .default_selection(current.is_none())];
    options.extend(values.into_iter().take(MAX_SELECT_OPTIONS - 1).map(|v| {
        CreateSelectMenuOption::new(v.clone(), v.clone())
            .default_selection(current == Some(v.as_str()))
    }));
    let menu = CreateSelectMenu::new(
        format!("{PREFIX}{id}"),
        CreateSelectMenuKind::String { options },
    )
    .placeholder(placeholder);
    CreateActionRow::SelectMenu(menu)
}

/// The panel's controls: workflow, aspect, steps and (where the server has styles) style
/// menus; remix, private delivery, negative, suffix, reset.
pub fn panel_rows(
    s: &MemberSettings,
    workflows: Vec<String>,
    styles: Vec<String>,
) -> Vec<CreateActionRow> {
    let p = &s.prefs;
    let aspects = validation::ASPECT_PRESETS
        .iter()
        .map(|a| a.0.to_string())
        .collect();
    let steps = STEP_CHOICES.iter().map(u32::to_string).collect();
    let remix = if s.remix { "Remix: on" } else { "Remix: off" };
    let private = if s.private {
        "Private: on"
    } else {
        "Private: off"
    };
    let toggle = |on: bool| {
        if on {
            ButtonStyle::Success
        } else {
            ButtonStyle::Secondary
        }
    };
    let button = |id: &str, label: &str, style| {
        CreateButton::new(format!("{PREFIX}{id}"))
            .label(label)
            .style(style)
    };
    let mut rows = vec![
        select("workflow", "Workflow", p.workflow.as_deref(), workflows),
        select("aspect", "Aspect ratio", p.aspect.as_deref(), aspects),
        select(
            "steps",
            "Steps",
            p.steps.map(|n| n.to_string()).as_deref(),
            steps,
        ),
    ];
    if !styles.is_empty() {
        rows.push(select("style", "Style", p.style.as_deref(), styles));
    }
    rows.push(CreateActionRow::Buttons(vec![
        button("remix", remix, toggle(s.remix)),
        button("private", private, toggle(s.private)),
        button("negative", "Negative…", ButtonStyle::Secondary),
        button("suffix", "Suffix…", ButtonStyle::Secondary),
        button("reset", "Reset", ButtonStyle::Danger),
    ]));
    rows
}

/// The workflows a member may prefer: those `/generate` can pick (text to image).
pub fn preferable_workflows(data: &Data) -> Vec<String> {
    data.catalog()
        .iter()
        .filter(|d| d.manifest.kind == core_comfyui::WorkflowKind::Txt2img)
        .map(|d| d.name.clone())
        .collect()
}

/// The panel as a message body.
pub fn panel_message(data: &Data, s: &MemberSettings) -> CreateInteractionResponseMessage {
    CreateInteractionResponseMessage::new()
        .content(panel_text(s, &data.config().defaults))
        .components(panel_rows(
            s,
            preferable_workflows(data),
            data.library()
                .styles()
                .map(|(n, _)| n.to_string())
                .collect(),
        ))
        .allowed_mentions(CreateAllowedMentions::new())
        .ephemeral(true)
}

/// Applies one choice of the panel to `s`: `field` is the id after the prefix.
pub fn apply_choice(s: &mut MemberSettings, field: &str, value: &str) -> Result<(), String> {
    let value = (value != UNSET).then(|| value.to_string());
    match field {
        "workflow" => s.prefs.workflow = value,
        "style" => s.prefs.style = value,
        "aspect" => {
            if let Some(a) = value
                .as_deref()
                .filter(|a| validation::request::parse_ratio(a).is_none())
            {
                return Err(format!("{a} is not an aspect ratio."));
            }
            s.prefs.aspect = value;
        }
        "steps" => {
            s.prefs.steps = match value {
                None => None,
                Some(v) => Some(
                    v.parse::<u32>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or("Steps must be a whole number from 1.")?,
                ),
            }
        }
        _ => return Err("This control is no longer supported.".into()),
    }
    Ok(())
}

fn text_form(
    field: &str,
    title: &str,
    current: Option<&str>,
    max: usize,
) -> CreateInteractionResponse {
    let input = CreateInputText::new(InputTextStyle::Paragraph, title, TEXT_INPUT)
        .value(current.unwrap_or_default())
        .placeholder("Leave empty to use the server's default")
        .max_length(max as u16)
        .required(false);
    let modal = CreateModal::new(format!("{PREFIX}{field}:form"), title)
        .components(vec![CreateActionRow::InputText(input)]);
    CreateInteractionResponse::Modal(modal)
}

/// A press or a choice on the panel.
pub async fn on_component(
    data: &Arc<Data>,
    http: &Http,
    c: &ComponentInteraction,
) -> Result<(), Error> {
    let user = c.user.id.get();
    let field = c.data.custom_id.trim_start_matches(PREFIX);
    let mut s = member_settings(data, user);
    let changed = match (&c.data.kind, field) {
        (ComponentInteractionDataKind::StringSelect { values }, _) => {
            let value = values.first().map_or(UNSET, String::as_str);
            apply_choice(&mut s, field, value)
        }
        (_, "remix") => {
            s.remix = !s.remix;
            Ok(())
        }
        (_, "private") => {
            s.private = !s.private;
            Ok(())
        }
        (_, "reset") => {
            s = MemberSettings::default();
            Ok(())
        }
        (_, "negative") => {
            let form = text_form(
                "negative",
                "Default negative prompt",
                s.prefs.negative.as_deref(),
                MAX_NEGATIVE_CHARS,
            );
            c.create_response(http, form).await?;
            return Ok(());
        }
        (_, "suffix") => {
            let form = text_form(
                "suffix",
                "Added after every prompt",
                s.prefs.suffix.as_deref(),
                MAX_SUFFIX_CHARS,
            );
            c.create_response(http, form).await?;
            return Ok(());
        }
        _ => Err("This control is no longer supported.".into()),
    };
    let saved = changed.and_then(|()| save_settings(data, user, &s));
    let response = match saved {
        Ok(()) => CreateInteractionResponse::UpdateMessage(panel_message(data, &s)),
        Err(why) => ephemeral(&why),
    };
    c.create_response(http, response).await?;
    Ok(())
}

/// The negative or suffix form of the panel was sent.
pub async fn on_modal(data: &Arc<Data>, http: &Http, m: &ModalInteraction) -> Result<(), Error> {
    let user = m.user.id.get();
    let field = m
        .data
        .custom_id
        .trim_start_matches(PREFIX)
        .trim_end_matches(":form");
    let text = super::reply::modal_text(m, TEXT_INPUT);
    let mut s = member_settings(data, user);
    let max = if field == "negative" {
        MAX_NEGATIVE_CHARS
    } else {
        MAX_SUFFIX_CHARS
    };
    let checked = validation::text::check_text(field, &text, max, true)
        .map_err(|e| super::reply::capitalise(&e.to_string()));
    let result = checked.and_then(|t| {
        let value = (!t.is_empty()).then_some(t);
        match field {
            "negative" => s.prefs.negative = value,
            "suffix" => s.prefs.suffix = value,
            _ => return Err("This form is no longer supported.".to_string()),
        }
        save_settings(data, user, &s)
    });
    let response = match result {
        Ok(()) => CreateInteractionResponse::UpdateMessage(panel_message(data, &s)),
        Err(why) => ephemeral(&why),
    };
    m.create_response(http, response).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_set_and_unset_and_bad_ones_are_refused() {
        let mut s = MemberSettings::default();
        apply_choice(&mut s, "aspect", "16:9").unwrap();
        apply_choice(&mut s, "steps", "12").unwrap();
        apply_choice(&mut s, "workflow", "txt2img_lora").unwrap();
        assert_eq!(
            (
                s.prefs.aspect.as_deref(),
                s.prefs.steps,
                s.prefs.workflow.as_deref()
            ),
            (Some("16:9"), Some(12), Some("txt2img_lora"))
        );
        apply_choice(&mut s, "steps", UNSET).unwrap();
        assert_eq!(s.prefs.steps, None);
        assert!(apply_choice(&mut s, "aspect", "9:1").is_err());
        assert!(apply_choice(&mut s, "steps", "0").is_err());
        assert!(apply_choice(&mut s, "nope", "1").is_err());
    }

    #[test]
    fn the_panel_says_where_each_value_comes_from_and_fits_discord() {
        let s = MemberSettings {
            prefs: Preferences {
                steps: Some(12),
                ..Preferences::default()
            },
            remix: true,
            private: false,
        };
        let server = Preferences {
            aspect: Some("3:2".into()),
            ..Preferences::default()
        };
        let text = panel_text(&s, &server);
        assert!(text.contains("Steps: **12**"), "{text}");
        assert!(text.contains("Aspect: server default (3:2)"), "{text}");
        assert!(text.contains("Workflow: workflow default"), "{text}");
        assert!(text.contains("Remix: **on**"), "{text}");
        let many: Vec<String> = (0..40).map(|i| format!("w{i}")).collect();
        assert!(text.contains("Private delivery: **off**"), "{text}");
        let rows = serde_json::to_value(panel_rows(&s, many.clone(), Vec::new())).unwrap();
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), 4, "no style menu without styles");
        let with_styles = panel_rows(&s, many.clone(), vec!["noir".into()]);
        assert_eq!(with_styles.len(), 5, "Discord's limit of five rows");
        let last = serde_json::to_value(&with_styles[4]).unwrap();
        assert_eq!(last["components"].as_array().unwrap().len(), 5);
        assert_eq!(
            rows[0]["components"][0]["options"]
                .as_array()
                .unwrap()
                .len(),
            MAX_SELECT_OPTIONS
        );
        let steps = &rows[2]["components"][0]["options"];
        let chosen: Vec<&str> = steps
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["default"] == true)
            .map(|o| o["value"].as_str().unwrap())
            .collect();
        assert_eq!(chosen, ["12"]);
    }
}
