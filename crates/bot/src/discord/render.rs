//! What the bot shows: progress embeds, result text, the Info card. Pure functions
//! over serenity's builders, within Discord's limits.

use generators::{JobId, JobRecord, OutputKind, SavedOutput};
use poise::serenity_prelude as serenity;
use progress::render::EmbedView;
use serde_json::Value;
use serenity::CreateEmbed;

/// Discord's limit on message content, in characters.
pub const MAX_CONTENT_CHARS: usize = 2000;
/// Files one message may carry.
pub const MAX_FILES_PER_MESSAGE: usize = 10;
/// The upload limit when the interaction's own is unknown (after a restart): Discord's default.
pub const DEFAULT_UPLOAD_LIMIT: u64 = 10 * 1024 * 1024;
/// Embed description limit, in characters.
const MAX_EMBED_DESCRIPTION_CHARS: usize = 4096;
/// Embed field value limit, in characters.
const MAX_FIELD_VALUE_CHARS: usize = 1024;
/// Fields one embed may hold (Discord allows 25; `/status` shows 20 backends).
const MAX_EMBED_FIELDS: usize = 20;
/// How much of the prompt a result or progress message repeats.
const PROMPT_SHOWN_CHARS: usize = 300;
/// Text input limit in a modal.
pub const MAX_MODAL_VALUE_CHARS: usize = 4000;
const COLOUR_RUNNING: u32 = 0x5865F2;
const COLOUR_FAILED: u32 = 0xED4245;
const COLOUR_CANCELLED: u32 = 0x99AAB5;

/// `s` cut to at most `max` characters (not bytes), with an ellipsis when cut.
pub fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Text safe inside inline code: backticks would end it early.
fn code_safe(s: &str) -> String {
    s.replace('`', "ˋ")
}

/// The progress embed for one snapshot view; `thumbnail` names an attached preview.
pub fn progress_embed(
    view: &EmbedView,
    prompt: Option<&str>,
    thumbnail: Option<&str>,
) -> CreateEmbed {
    let mut e = CreateEmbed::new()
        .title(truncate_chars(&view.title, 256))
        .description(truncate_chars(
            &view.description,
            MAX_EMBED_DESCRIPTION_CHARS,
        ))
        .colour(COLOUR_RUNNING);
    if let Some(p) = prompt {
        e = e.field(
            "Prompt",
            truncate_chars(p, MAX_FIELD_VALUE_CHARS.min(PROMPT_SHOWN_CHARS)),
            false,
        );
    }
    for (name, value) in &view.fields {
        e = e.field(name, truncate_chars(value, MAX_FIELD_VALUE_CHARS), true);
    }
    if let Some(t) = thumbnail {
        e = e.thumbnail(format!("attachment://{t}"));
    }
    e
}

/// The embed for a job that failed or was cancelled.
pub fn ended_embed(failed: bool, reason: &str, prompt: Option<&str>) -> CreateEmbed {
    let (title, colour) = if failed {
        ("Failed", COLOUR_FAILED)
    } else {
        ("Cancelled", COLOUR_CANCELLED)
    };
    let mut e = CreateEmbed::new()
        .title(title)
        .description(truncate_chars(reason, MAX_EMBED_DESCRIPTION_CHARS))
        .colour(colour);
    if let Some(p) = prompt {
        e = e.field("Prompt", truncate_chars(p, PROMPT_SHOWN_CHARS), false);
    }
    e
}

/// The embed shown on a job's message while the bot restarts.
pub fn paused_embed(text: &str, prompt: Option<&str>) -> CreateEmbed {
    let mut e = CreateEmbed::new()
        .title("Paused: restarting")
        .description(text)
        .colour(COLOUR_CANCELLED);
    if let Some(p) = prompt {
        e = e.field("Prompt", truncate_chars(p, PROMPT_SHOWN_CHARS), false);
    }
    e
}

/// A link to a message.
pub fn message_link(guild: Option<u64>, channel: u64, message: u64) -> String {
    let g = guild.map_or_else(|| "@me".to_string(), |g| g.to_string());
    format!("https://discord.com/channels/{g}/{channel}/{message}")
}

fn show_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The result's text: prompt, seed, workflow, time, a link to the source of a derived job, and
/// notes on files too large to upload. Never more than Discord allows.
pub fn result_content(
    record: &JobRecord,
    source_link: Option<&str>,
    too_large: &[(String, u64)],
    upload_limit: u64,
) -> String {
    let mut head = Vec::new();
    if let Some(p) = record.spec.values.get("prompt").and_then(Value::as_str) {
        head.push(format!(
            "**{}**",
            truncate_chars(p, PROMPT_SHOWN_CHARS).replace('*', "\\*")
        ));
    }
    let mut facts = vec![format!("`{}`", record.spec.workflow)];
    if let Some(seed) = record.spec.values.get("seed") {
        facts.push(format!("seed {}", show_value(seed)));
    }
    if let (Some(s), Some(f)) = (record.started_ms, record.finished_ms) {
        facts.push(format!("{:.1} s", (f - s).max(0) as f64 / 1000.0));
    }
    head.push(facts.join(" · "));
    if let Some(link) = source_link {
        head.push(format!("from {link}"));
    }
    for (name, size) in too_large {
        head.push(format!(
            "{name} is {} and over this channel's upload limit of {}; it is kept on the server.",
            validation::refusal::fmt_bytes(*size),
            validation::refusal::fmt_bytes(upload_limit)
        ));
    }
    truncate_chars(&head.join("\n"), MAX_CONTENT_CHARS)
}

/// The Info card: every value the job ran with and a command that repeats it.
pub fn info_text(record: &JobRecord) -> String {
    let mut lines = vec![format!(
        "**Job** `{}` · workflow `{}` · {}",
        record.id,
        record.spec.workflow,
        record.state.name()
    )];
    let mut command = format!("/generate workflow:{}", record.spec.workflow);
    for (name, value) in &record.spec.values {
        let shown = show_value(value);
        // Where it came from, when the job says (buttons and older jobs do not).
        let source = record
            .spec
            .sources
            .get(name)
            .map(|s| format!(" · _{}_", s.label()))
            .unwrap_or_default();
        lines.push(format!(
            "**{name}**: {}{source}",
            truncate_chars(&shown, 300)
        ));
        if !matches!(value, Value::Null)
            && !shown.starts_with("pending.")
            && !name.contains("image")
        {
            command.push_str(&format!(" {name}:{}", code_safe(&shown)));
        }
    }
    if let Some(parent) = &record.spec.parent {
        lines.push(format!("**from job**: `{parent}`"));
    }
    let command = format!("`{}`", truncate_chars(&command, 1200));
    let body = truncate_chars(
        &lines.join("\n"),
        MAX_CONTENT_CHARS - command.chars().count() - 1,
    );
    format!("{body}\n{command}")
}

/// A describe result's prompts, numbered like its buttons.
pub fn described_list(prompts: &[String]) -> String {
    let mut lines = vec!["**Prompts from your image** (a number below draws it):".to_string()];
    for (i, p) in prompts.iter().enumerate() {
        lines.push(format!(
            "**{}.** {}",
            i + 1,
            code_safe(&truncate_chars(p, 400))
        ));
    }
    lines.join("\n")
}

/// `/styles`: each style with what it does, then the wildcards.
pub fn styles_text(library: &generators::styles::Library) -> String {
    let mut lines = Vec::new();
    for (name, style) in library.styles() {
        let what = style
            .description
            .clone()
            .unwrap_or_else(|| style.positive.clone());
        lines.push(format!(
            "**{name}**: {}",
            truncate_chars(&what.replace('\n', " "), 150)
        ));
    }
    if lines.is_empty() {
        lines.push("No styles are set up on this server.".into());
    } else {
        lines.insert(
            0,
            "Use one with `--style NAME` in a prompt, the `style` option, or /settings.".into(),
        );
    }
    let wild: Vec<String> = library
        .wildcard_names()
        .map(|(n, count)| format!("`__{n}__` ({count})"))
        .collect();
    if !wild.is_empty() {
        lines.push(format!(
            "Wildcards (a line picked by the seed): {}",
            wild.join(", ")
        ));
    }
    truncate_chars(&lines.join("\n"), MAX_CONTENT_CHARS)
}

/// Whether a job's first output can feed an image workflow.
pub fn first_image(outputs: &[SavedOutput]) -> Option<&SavedOutput> {
    outputs.iter().find(|o| o.kind == OutputKind::Image)
}

/// Backends, their health and queues, and this bot's queue, for `/status`.
pub fn status_embed(s: &generators::SchedulerStatus) -> CreateEmbed {
    let mut embed = CreateEmbed::new()
        .title("comfycord status")
        .description(format!(
            "{} waiting · {} running{}",
            s.waiting,
            s.running,
            if s.paused { " · **queue paused**" } else { "" }
        ));
    for b in s.backends.iter().take(MAX_EMBED_FIELDS) {
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
            truncate_chars(
                &format!(
                    "{state}{}\nrunning {} · server queue {} · {} workflows · {} checkpoints",
                    b.detail,
                    b.inflight,
                    b.queue_remaining,
                    b.workflows.len(),
                    models
                ),
                MAX_FIELD_VALUE_CHARS,
            ),
            false,
        );
    }
    embed
}

/// A link to the job's message, when it has one, as ` · <link>`.
fn link_suffix(record: &JobRecord) -> String {
    let o = &record.origin;
    o.channel
        .zip(o.message)
        .map(|(c, m)| format!(" · {}", message_link(o.guild, c, m)))
        .unwrap_or_default()
}

/// One of the caller's jobs in `/queue`.
pub fn queue_line(id: &JobId, place: &generators::JobPlace, record: Option<&JobRecord>) -> String {
    let where_ = match place {
        generators::JobPlace::Running { backend } => format!("running on {backend}"),
        generators::JobPlace::Waiting { position: 0 } => "next up".to_string(),
        generators::JobPlace::Waiting { position } => format!("{position} ahead of it"),
    };
    let link = record.map(link_suffix).unwrap_or_default();
    format!("`{id}` {where_}{link}")
}

/// Prompt characters shown per `/history` line.
const HISTORY_PROMPT_CHARS: usize = 60;

/// One result in `/history`.
pub fn history_line(r: &JobRecord) -> String {
    format!(
        "`{}` {} · {} · {}{}",
        r.id,
        r.state.name(),
        r.spec.workflow,
        truncate_chars(r.spec.prompt().unwrap_or(""), HISTORY_PROMPT_CHARS),
        link_suffix(r)
    )
}

/// One workflow in `/workflows`.
pub fn workflow_line(d: &core_comfyui::WorkflowDef) -> String {
    format!(
        "**{}** ({}{}) {}\n  options: {}",
        d.name,
        generators::kinds::kind_name(d.manifest.kind),
        if d.manifest.nsfw { ", NSFW" } else { "" },
        d.manifest.description.as_deref().unwrap_or(""),
        d.manifest
            .params
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use generators::{JobSpec, JobState, Origin};
    use serde_json::json;

    fn record() -> JobRecord {
        let mut values = serde_json::Map::new();
        values.insert("prompt".into(), json!("a `cat` *on* a mat"));
        values.insert("seed".into(), json!(42));
        values.insert("steps".into(), json!(20));
        JobRecord {
            id: JobId("0123456789abcdef".into()),
            seq: 1,
            spec: JobSpec {
                workflow: "txt2img".into(),
                values,
                inputs: vec![],
                parent: None,
                sources: Default::default(),
                templates: Default::default(),
            },
            origin: Origin::default(),
            state: JobState::Finished,
            remote_id: None,
            outputs: vec![],
            attempts: 1,
            created_ms: 0,
            started_ms: Some(1000),
            finished_ms: Some(3500),
        }
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate_chars("héllo", 5), "héllo");
        assert_eq!(truncate_chars("héllo wörld", 6), "héllo…");
        assert_eq!(
            truncate_chars(&"é".repeat(3000), 2000).chars().count(),
            2000
        );
    }

    #[test]
    fn result_content_has_prompt_seed_time_and_notes() {
        let r = record();
        let text = result_content(
            &r,
            Some("https://x/y"),
            &[("big.mp4".into(), 30 << 20)],
            10 << 20,
        );
        assert!(text.contains("a `cat` \\*on\\* a mat"), "{text}");
        assert!(text.contains("seed 42") && text.contains("2.5 s"), "{text}");
        assert!(text.contains("from https://x/y"));
        assert!(text.contains("big.mp4 is 30.0 MiB"), "{text}");
        let mut long = r.clone();
        long.spec
            .values
            .insert("prompt".into(), json!("x".repeat(5000)));
        let many: Vec<(String, u64)> = (0..200).map(|i| (format!("f{i}.mp4"), 1 << 30)).collect();
        assert!(result_content(&long, None, &many, 1).chars().count() <= MAX_CONTENT_CHARS);
    }

    #[test]
    fn info_lists_values_and_a_copyable_command() {
        let text = info_text(&record());
        assert!(
            text.contains("**steps**: 20\n"),
            "no source, no label: {text}"
        );
        let mut sourced = record();
        sourced
            .spec
            .sources
            .insert("steps".into(), generators::ValueSource::Member);
        let text = info_text(&sourced);
        assert!(text.contains("**steps**: 20 · _your settings_"), "{text}");
        assert!(
            text.contains(
                "`/generate workflow:txt2img prompt:a ˋcatˋ *on* a mat seed:42 steps:20`"
            ),
            "{text}"
        );
        let mut big = record();
        big.spec
            .values
            .insert("negative".into(), json!("n".repeat(4000)));
        assert!(info_text(&big).chars().count() <= MAX_CONTENT_CHARS);
    }

    #[test]
    fn listing_lines_link_to_the_job_message() {
        let record: JobRecord = serde_json::from_value(serde_json::json!({
            "id": "abc", "seq": 1,
            "spec": {"workflow": "txt2img", "values": {"prompt": "a cat"}},
            "origin": {"owner": 7, "guild": 1, "channel": 2, "message": 3},
            "state": {"state": "finished"}, "remote_id": null, "outputs": [],
            "attempts": 1, "created_ms": 0, "started_ms": null, "finished_ms": null
        }))
        .unwrap();
        let link = "https://discord.com/channels/1/2/3";
        assert_eq!(
            history_line(&record),
            format!("`abc` finished · txt2img · a cat · {link}")
        );
        let place = generators::JobPlace::Waiting { position: 2 };
        assert_eq!(
            queue_line(&record.id, &place, Some(&record)),
            format!("`abc` 2 ahead of it · {link}")
        );
        let next = generators::JobPlace::Waiting { position: 0 };
        assert_eq!(queue_line(&record.id, &next, None), "`abc` next up");
    }
}
