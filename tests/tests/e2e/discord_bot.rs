//! The real bot end to end: the `comfycord` serve path against the fake Discord (REST +
//! gateway, payloads checked with serenity's types) and the transcript-faithful fake ComfyUI.
//! Every wait is bounded.

use std::time::Duration;

use serde_json::{json, Value};
use tests::bot_harness::{
    button_ids, embed_title, generate, has_result, is_sampling, long_generate, real_comfy,
    slow_comfy, BotUnderTest, HarnessOptions,
};
use tests::fake_comfyui::{self, tiny_png};
use tests::fake_discord::{
    InteractionSpec, StoredMessage, GENERAL_CHANNEL_ID, NSFW_CHANNEL_ID, OTHER_USER_ID, USER_ID,
};
use tests::support::png_bomb;

const WAIT: Duration = Duration::from_secs(30);
/// Discord's acknowledgement deadline.
const ACK_DEADLINE: Duration = Duration::from_secs(3);

fn button(m: &StoredMessage, prefix: &str) -> String {
    button_ids(m)
        .into_iter()
        .find(|b| b.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} button on {:?}", button_ids(m)))
}

/// The callback the bot sent for an interaction, checked to be within Discord's deadline.
async fn ack(bot: &BotUnderTest, id: u64) -> tests::fake_discord::RecordedRequest {
    let sent_at = bot.discord.interaction(id).expect("sent").sent_at;
    let r = bot
        .discord
        .wait_for_request(|r| r.is_callback_for(id), WAIT)
        .await
        .expect("the interaction is acknowledged");
    assert!(
        r.at.duration_since(sent_at) < ACK_DEADLINE,
        "acknowledged after {:?}",
        r.at.duration_since(sent_at)
    );
    assert_eq!(r.status, 204, "callback accepted: {r:?}");
    r
}

/// The ephemeral error a refused interaction ends with.
async fn refusal(bot: &BotUnderTest, token: &str) -> String {
    bot.private_followup(token, WAIT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_acks_streams_progress_and_posts_result_with_buttons() {
    let bot = BotUnderTest::start(HarnessOptions {
        comfy: slow_comfy(60),
        ..HarnessOptions::default()
    })
    .await;
    let commands = bot.discord.commands(Some(tests::fake_discord::GUILD_ID));
    let names: Vec<&str> = commands.iter().filter_map(|c| c["name"].as_str()).collect();
    for c in [
        "generate",
        "edit",
        "upscale",
        "animate",
        "status",
        "queue",
        "cancel",
        "history",
        "workflows",
        "loras",
        "help",
        "admin",
    ] {
        assert!(names.contains(&c), "{c} registered: {names:?}");
    }

    let sent = bot
        .discord
        .send_interaction(
            generate("a red fox <@123> @everyone")
                .option("steps", 8)
                .option("seed", 42),
        )
        .unwrap();
    let cb = ack(&bot, sent.id).await;
    assert_eq!(cb.callback_type(), Some(5), "deferred first");
    let result = bot
        .wait_original(sent.id, WAIT, has_result)
        .await
        .unwrap_or_else(|| panic!("a result; requests:\n{}", bot.transcript()));
    assert!(
        result.content().contains("a red fox"),
        "{}",
        result.content()
    );
    assert!(result.content().contains("seed 42"), "{}", result.content());
    assert!(
        result.files[0].filename.ends_with(".png"),
        "{:?}",
        result.files
    );
    for prefix in [
        "cc:up:",
        "cc:vary:",
        "cc:reroll:",
        "cc:edit:",
        "cc:anim:",
        "cc:info:",
        "cc:del:",
    ] {
        button(&result, prefix);
    }
    // Progress: edits with the bar before the result, at least one with a preview thumbnail.
    let edits: Vec<_> = bot
        .discord
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.route().contains(&sent.token))
        .collect();
    let progress: Vec<_> = edits
        .iter()
        .filter(|r| {
            r.json.as_ref().is_some_and(|j| {
                j["embeds"][0]["description"]
                    .as_str()
                    .is_some_and(|d| d.contains('%'))
            })
        })
        .collect();
    assert!(progress.len() >= 2, "progress edits: {}", progress.len());
    assert!(
        progress.iter().any(|r| r
            .files
            .iter()
            .any(|f| f.filename.as_deref() == Some("preview.jpg"))),
        "a preview thumbnail was shown"
    );
    // No mention is ever resolved: every message the bot wrote says so.
    for r in bot.discord.requests() {
        if matches!(r.method.as_str(), "PATCH" | "POST")
            && !r.route().ends_with("/callback")
            && !r.route().contains("/commands")
        {
            let j = r.json.as_ref().expect("json body");
            assert_eq!(
                j["allowed_mentions"]["parse"],
                json!([]),
                "{} {}: {j}",
                r.method,
                r.path
            );
        }
    }
    assert!(
        bot.discord.unknown_route_requests().is_empty(),
        "{:?}",
        bot.discord.unknown_route_requests()
    );
    bot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_result_button_works() {
    let bot = BotUnderTest::start(HarnessOptions::default()).await;
    let sent = bot
        .discord
        .send_interaction(generate("a lighthouse"))
        .unwrap();
    ack(&bot, sent.id).await;
    let result = bot
        .wait_original(sent.id, WAIT, has_result)
        .await
        .expect("a result");
    let source_link = format!("/{}/{}", GENERAL_CHANNEL_ID, result.id);

    // Info: ephemeral, every value and a command.
    let info = bot
        .discord
        .send_interaction(
            InteractionSpec::button(&button(&result, "cc:info:"), Some(result.id)).by_user(USER_ID),
        )
        .unwrap();
    let cb = ack(&bot, info.id).await;
    assert_eq!(cb.callback_type(), Some(5));
    assert_eq!(
        cb.json.as_ref().unwrap()["data"]["flags"]
            .as_u64()
            .unwrap_or(0)
            & 64,
        64
    );
    let card = bot
        .wait_original(info.id, WAIT, |m| m.content().contains("**seed**"))
        .await
        .expect("info card");
    assert!(
        card.content()
            .contains("`/generate workflow:txt2img prompt:a lighthouse"),
        "{}",
        card.content()
    );

    // Reroll, Upscale, Vary, Animate: each a new job whose result links back to the source.
    for (prefix, workflow, ext) in [
        ("cc:reroll:", "txt2img", ".png"),
        ("cc:up:", "upscale", ".png"),
        ("cc:vary:", "img2img", ".png"),
        ("cc:anim:", "animate", ".webp"),
    ] {
        let click = bot
            .discord
            .send_interaction(
                InteractionSpec::button(&button(&result, prefix), Some(result.id)).by_user(USER_ID),
            )
            .unwrap();
        assert_eq!(
            ack(&bot, click.id).await.callback_type(),
            Some(5),
            "{prefix}"
        );
        let derived = bot
            .wait_original(click.id, WAIT, |m| {
                !m.files.is_empty() && !button_ids(m).iter().any(|b| b.starts_with("cc:cancel"))
            })
            .await
            .unwrap_or_else(|| panic!("{prefix} gives a result"));
        assert!(
            derived.content().contains(&format!("`{workflow}`")),
            "{prefix}: {}",
            derived.content()
        );
        assert!(
            derived.content().contains(&source_link),
            "{prefix} links its source: {}",
            derived.content()
        );
        assert!(
            derived.files.iter().any(|f| f.filename.ends_with(ext)),
            "{prefix}: {:?}",
            derived.files
        );
    }

    // Delete: refused for someone else, done for the owner.
    let del = button(&result, "cc:del:");
    let other = bot
        .discord
        .send_interaction(InteractionSpec::button(&del, Some(result.id)).by_user(OTHER_USER_ID))
        .unwrap();
    assert_eq!(ack(&bot, other.id).await.callback_type(), Some(6));
    assert!(refusal(&bot, &other.token)
        .await
        .contains("Only the person who made this"));
    assert!(!bot.discord.message(result.id).unwrap().deleted);
    let mine = bot
        .discord
        .send_interaction(InteractionSpec::button(&del, Some(result.id)).by_user(USER_ID))
        .unwrap();
    ack(&bot, mine.id).await;
    bot.discord
        .wait_for_request(
            |r| r.method == "DELETE" && r.route().ends_with(&format!("/messages/{}", result.id)),
            WAIT,
        )
        .await
        .expect("the result is deleted");
    assert!(bot.discord.message(result.id).unwrap().deleted);
    bot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_button_opens_a_prefilled_modal_and_runs_the_new_prompt() {
    let bot = BotUnderTest::start(HarnessOptions::default()).await;
    let sent = bot.discord.send_interaction(generate("a red fox")).unwrap();
    ack(&bot, sent.id).await;
    let result = bot
        .wait_original(sent.id, WAIT, has_result)
        .await
        .expect("a result");
    let click = bot
        .discord
        .send_interaction(
            InteractionSpec::button(&button(&result, "cc:edit:"), Some(result.id)).by_user(USER_ID),
        )
        .unwrap();
    let cb = ack(&bot, click.id).await;
    assert_eq!(cb.callback_type(), Some(9), "a modal is the first response");
    let modal = &cb.json.as_ref().unwrap()["data"];
    let field = &modal["components"][0]["components"][0];
    assert_eq!(field["value"], "a red fox");
    let submit = bot
        .discord
        .send_interaction(
            InteractionSpec::modal_submit(
                modal["custom_id"].as_str().unwrap(),
                &[(field["custom_id"].as_str().unwrap(), "a blue fox")],
            )
            .by_user(USER_ID),
        )
        .unwrap();
    assert_eq!(ack(&bot, submit.id).await.callback_type(), Some(5));
    let edited = bot
        .wait_original(submit.id, WAIT, has_result)
        .await
        .expect("the edited result");
    assert!(
        edited.content().contains("a blue fox"),
        "{}",
        edited.content()
    );
    bot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_button_stops_a_running_job() {
    let bot = BotUnderTest::start(HarnessOptions {
        comfy: slow_comfy(300),
        ..HarnessOptions::default()
    })
    .await;
    let sent = bot
        .discord
        .send_interaction(long_generate("slow", 30))
        .unwrap();
    ack(&bot, sent.id).await;
    let running = bot
        .wait_original(sent.id, WAIT, is_sampling)
        .await
        .expect("sampling shown");
    let click = bot
        .discord
        .send_interaction(
            InteractionSpec::button(&button(&running, "cc:cancel:"), Some(running.id))
                .by_user(USER_ID),
        )
        .unwrap();
    assert_eq!(ack(&bot, click.id).await.callback_type(), Some(6));
    let ended = bot
        .wait_original(sent.id, WAIT, |m| {
            embed_title(m).as_deref() == Some("Cancelled")
        })
        .await
        .expect("the message says cancelled");
    assert!(
        button_ids(&ended).is_empty(),
        "no buttons left: {:?}",
        button_ids(&ended)
    );
    bot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_specific_ephemeral_and_leave_nothing_thinking() {
    let bot = BotUnderTest::start(HarnessOptions {
        config: json!({
            "limits": {"user_burst": 1, "user_per_minute": 1},
            "discord": {"allowed_channels": [GENERAL_CHANNEL_ID]},
        }),
        ..HarnessOptions::default()
    })
    .await;
    // A channel the bot is not enabled in.
    let s = bot
        .discord
        .send_interaction(generate("x").in_channel(NSFW_CHANNEL_ID))
        .unwrap();
    ack(&bot, s.id).await;
    let text = refusal(&bot, &s.token).await;
    assert!(text.contains("not enabled in this channel"), "{text}");
    // A value out of range names the option and the bounds.
    let s = bot
        .discord
        .send_interaction(generate("x").option("steps", 500))
        .unwrap();
    ack(&bot, s.id).await;
    let text = refusal(&bot, &s.token).await;
    assert!(text.contains("steps must be between 1 and 50"), "{text}");
    // The rate limit says when to retry.
    let first = bot.discord.send_interaction(generate("one")).unwrap();
    ack(&bot, first.id).await;
    bot.wait_original(first.id, WAIT, has_result)
        .await
        .expect("first runs");
    let second = bot.discord.send_interaction(generate("two")).unwrap();
    ack(&bot, second.id).await;
    let text = refusal(&bot, &second.token).await;
    assert!(text.contains("try again in"), "{text}");
    // Refused interactions do not stay "thinking": their loading message is deleted.
    for token in [&second.token] {
        bot.discord
            .wait_for_request(
                |r| r.method == "DELETE" && r.route().contains(token.as_str()),
                WAIT,
            )
            .await
            .expect("loading message removed");
    }
    bot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsfw_workflows_run_only_in_age_restricted_channels() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows");
    let workflow: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("txt2img.json")).unwrap()).unwrap();
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("txt2img.manifest.json")).unwrap())
            .unwrap();
    manifest["nsfw"] = json!(true);
    manifest["kind"] = json!("custom");
    let bot = BotUnderTest::start(HarnessOptions {
        extra_workflows: vec![("spicy".into(), workflow, manifest)],
        ..HarnessOptions::default()
    })
    .await;
    let s = bot
        .discord
        .send_interaction(generate("x").option("workflow", "spicy"))
        .unwrap();
    ack(&bot, s.id).await;
    let text = refusal(&bot, &s.token).await;
    assert!(text.contains("age-restricted"), "{text}");
    let ok = bot
        .discord
        .send_interaction(
            generate("x")
                .option("workflow", "spicy")
                .in_channel(NSFW_CHANNEL_ID),
        )
        .unwrap();
    ack(&bot, ok.id).await;
    let r = bot
        .wait_original(ok.id, WAIT, has_result)
        .await
        .unwrap_or_else(|| panic!("runs in the NSFW channel:\n{}", bot.transcript()));
    assert!(r.content().contains("`spicy`"));
    bot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_falls_back_to_channel_messages() {
    let bot = BotUnderTest::start(HarnessOptions {
        comfy: slow_comfy(150),
        config: json!({"discord": {"interaction_fresh_secs": 1}}),
        ..HarnessOptions::default()
    })
    .await;
    bot.discord
        .faults()
        .set_token_ttl(Duration::from_secs(1), 401);
    let sent = bot
        .discord
        .send_interaction(long_generate("long job", 10))
        .unwrap();
    ack(&bot, sent.id).await;
    let result = bot
        .wait_original(sent.id, WAIT, has_result)
        .await
        .expect("delivered");
    let via_channel = bot
        .discord
        .requests()
        .into_iter()
        .find(|r| {
            r.method == "PATCH"
                && r.route() == format!("/channels/{GENERAL_CHANNEL_ID}/messages/{}", result.id)
                && !r.files.is_empty()
        })
        .expect("the result went through the channel with the bot token");
    assert_eq!(via_channel.status, 200);
    assert!(via_channel
        .authorization
        .as_deref()
        .unwrap_or_default()
        .starts_with("Bot "));
    bot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_job_delivers_the_result_once() {
    let mut bot = BotUnderTest::start(HarnessOptions {
        comfy: slow_comfy(100),
        ..HarnessOptions::default()
    })
    .await;
    let sent = bot
        .discord
        .send_interaction(long_generate("survives restarts", 10))
        .unwrap();
    ack(&bot, sent.id).await;
    bot.wait_original(sent.id, WAIT, is_sampling)
        .await
        .expect("running");
    bot.stop_bot().await.expect("clean stop");
    bot.start_bot().await;
    let result = bot
        .wait_original(sent.id, WAIT, has_result)
        .await
        .expect("delivered after restart");
    // One attempt means one POST /prompt (each attempt posts once); the fake can also count
    // them.
    let jobs = bot.jobs_of(USER_ID);
    assert_eq!(
        (jobs.len(), jobs[0].attempts),
        (1, 1),
        "submitted once: {jobs:?}"
    );
    if !real_comfy() {
        let posts = bot
            .comfy
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.starts_with("/prompt"))
            .count();
        assert_eq!(posts, 1, "ComfyUI got the prompt once");
    }
    bot.stop_bot().await.expect("clean stop");
    let result_edits = bot
        .discord
        .requests()
        .iter()
        .filter(|r| {
            r.method == "PATCH"
                && r.route().ends_with(&format!("/messages/{}", result.id))
                && r.files.iter().any(|f| {
                    f.filename
                        .as_deref()
                        .is_some_and(|n| n.ends_with(".png") && !n.starts_with("preview"))
                })
        })
        .count();
    assert_eq!(result_edits, 1, "the result is posted exactly once");
    bot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn img2img_from_an_attachment() {
    let bot = BotUnderTest::start(HarnessOptions {
        ..HarnessOptions::default()
    })
    .await;
    let sent = bot
        .discord
        .send_interaction(
            InteractionSpec::command("generate")
                .option("prompt", "repaint")
                .in_channel(GENERAL_CHANNEL_ID)
                .by_user(USER_ID)
                .attachment_bytes("image", "in.png", "image/png", tiny_png(64, 48)),
        )
        .unwrap();
    ack(&bot, sent.id).await;
    let r = bot
        .wait_original(sent.id, WAIT, has_result)
        .await
        .expect("a result");
    assert!(r.content().contains("`img2img`"), "{}", r.content());
    // The job ran on the uploaded attachment (the fake's log shows the upload too).
    let job = &bot.jobs_of(USER_ID)[0];
    assert_eq!(job.spec.inputs.len(), 1, "{job:?}");
    if !real_comfy() {
        assert!(
            bot.comfy
                .requests()
                .iter()
                .any(|q| q.path.starts_with("/upload/image")),
            "the attachment was uploaded to ComfyUI"
        );
    }
    // A file that is not what it claims is refused with the reason.
    let bad = bot
        .discord
        .send_interaction(
            InteractionSpec::command("generate")
                .option("prompt", "x")
                .in_channel(GENERAL_CHANNEL_ID)
                .by_user(USER_ID)
                .attachment_bytes(
                    "image",
                    "fake.png",
                    "image/png",
                    b"GIF89a not a png".to_vec(),
                ),
        )
        .unwrap();
    ack(&bot, bad.id).await;
    let text = refusal(&bot, &bad.token).await;
    assert!(text.contains("fake.png"), "{text}");
    // A decompression bomb (8192² of 16-bit RGBA claimed by a tiny file) is refused from its
    // header, with what it would cost.
    let bomb = bot
        .discord
        .send_interaction(
            InteractionSpec::command("generate")
                .option("prompt", "x")
                .in_channel(GENERAL_CHANNEL_ID)
                .by_user(USER_ID)
                .attachment_bytes("image", "bomb.png", "image/png", png_bomb(8192)),
        )
        .unwrap();
    ack(&bot, bomb.id).await;
    let text = refusal(&bot, &bomb.token).await;
    assert!(
        text.contains("bomb.png would need 512.0 MiB of memory to open (8192×8192)"),
        "{text}"
    );
    bot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_users_at_once_are_all_acknowledged_and_served() {
    let bot = BotUnderTest::start(HarnessOptions {
        comfy: fake_comfyui::FakeOptions {
            step_delay: Duration::from_millis(1),
            ..fake_comfyui::FakeOptions::default()
        },
        ..HarnessOptions::default()
    })
    .await;
    let sent: Vec<_> = (0..50u64)
        .map(|i| {
            bot.discord
                .send_interaction(
                    generate(&format!("user {i}"))
                        .option("steps", 4)
                        .by_user(2_000_000 + i),
                )
                .unwrap()
        })
        .collect();
    for s in &sent {
        assert_eq!(ack(&bot, s.id).await.callback_type(), Some(5));
    }
    for s in &sent {
        bot.wait_original(s.id, Duration::from_secs(120), has_result)
            .await
            .unwrap_or_else(|| panic!("interaction {} got its result", s.id));
    }
    bot.shutdown().await;
}

/// The text (content and embed text) of a message.
fn text_of(m: &StoredMessage) -> String {
    let mut t = m.content().to_string();
    if let Some(embeds) = m.payload.get("embeds").and_then(Value::as_array) {
        for e in embeds {
            t.push_str(&e.to_string());
        }
    }
    t
}

/// Runs a slash command and returns its (ephemeral) answer once it contains `expect`.
async fn ask(bot: &BotUnderTest, spec: InteractionSpec, expect: &str) -> String {
    let s = bot.discord.send_interaction(spec).unwrap();
    let cb = ack(bot, s.id).await;
    assert_eq!(cb.callback_type(), Some(5));
    assert_eq!(
        cb.json.as_ref().unwrap()["data"]["flags"]
            .as_u64()
            .unwrap_or(0)
            & 64,
        64,
        "ephemeral"
    );
    let m = bot
        .wait_original(s.id, WAIT, |m| text_of(m).contains(expect))
        .await
        .unwrap_or_else(|| panic!("an answer containing {expect:?}:\n{}", bot.transcript()));
    text_of(&m)
}

fn sub(name: &str) -> InteractionSpec {
    InteractionSpec::command("admin")
        .option(name, json!({"type": 1, "options": []}))
        .in_channel(GENERAL_CHANNEL_ID)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn information_and_admin_commands() {
    let bot = BotUnderTest::start(HarnessOptions {
        config: json!({"discord": {"admin_users": [USER_ID]}}),
        ..HarnessOptions::default()
    })
    .await;
    let cmd = |name: &str| {
        InteractionSpec::command(name)
            .in_channel(GENERAL_CHANNEL_ID)
            .by_user(USER_ID)
    };
    // The first health probe may still be running (a real server's /object_info is large).
    let mut status = String::new();
    for _ in 0..50 {
        status = ask(&bot, cmd("status"), "comfycord status").await;
        if status.contains("🟢") {
            break;
        }
        bot.discord
            .wait_for_request(|_| false, Duration::from_millis(200))
            .await;
    }
    assert!(
        status.contains("fake") && status.contains("ComfyUI 0.3.64"),
        "{status}"
    );
    let workflows = ask(&bot, cmd("workflows"), "txt2img").await;
    assert!(
        workflows.contains("img2img") && workflows.contains("options: "),
        "{workflows}"
    );
    ask(&bot, cmd("loras"), "tiny_random_lora.safetensors").await;
    ask(&bot, cmd("help"), "/generate").await;
    ask(&bot, cmd("queue"), "no jobs waiting or running").await;

    // Only admins may pause; a paused queue holds jobs until resumed.
    ask(
        &bot,
        sub("pause").by_user(OTHER_USER_ID),
        "Only comfycord admins",
    )
    .await;
    ask(&bot, sub("pause").by_user(USER_ID), "Queue paused").await;
    let job = bot.discord.send_interaction(generate("held")).unwrap();
    ack(&bot, job.id).await;
    // The scheduler's own notice (not just the placeholder shown before submitting).
    bot.wait_original(job.id, WAIT, |m| {
        embed_title(m).as_deref() == Some("Queued: next up")
    })
    .await
    .expect("queued while paused");
    let q = ask(&bot, cmd("queue"), "next up").await;
    assert!(q.contains("/channels/"), "links to the job's message: {q}");
    ask(&bot, sub("resume").by_user(USER_ID), "Queue resumed").await;
    bot.wait_original(job.id, WAIT, has_result)
        .await
        .expect("runs after resume");
    let history = ask(&bot, cmd("history"), "held").await;
    assert!(history.contains("txt2img"), "{history}");
    ask(
        &bot,
        sub("reload").by_user(USER_ID),
        "Reloaded: 11 workflow(s)",
    )
    .await;
    // Clear removes waiting jobs and says how many.
    ask(&bot, sub("pause").by_user(USER_ID), "Queue paused").await;
    let waiting = bot
        .discord
        .send_interaction(generate("to be cleared"))
        .unwrap();
    ack(&bot, waiting.id).await;
    bot.wait_original(waiting.id, WAIT, |m| {
        embed_title(m).as_deref() == Some("Queued: next up")
    })
    .await
    .expect("queued");
    ask(&bot, sub("clear").by_user(USER_ID), "Removed 1 waiting job").await;
    bot.wait_original(waiting.id, WAIT, |m| {
        embed_title(m).as_deref() == Some("Cancelled")
    })
    .await
    .expect("the cleared job says so");
    bot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autocomplete_offers_workflows_and_searches_many_loras() {
    let mut info = fake_comfyui::default_object_info().clone();
    let mut loras: Vec<Value> = (0..40)
        .map(|i| json!(format!("style_{i:02}.safetensors")))
        .collect();
    loras.push(json!("tiny_random_lora.safetensors"));
    info["LoraLoader"]["input"]["required"]["lora_name"][0] = Value::Array(loras);
    let bot = BotUnderTest::start(HarnessOptions {
        fake_comfy_only: true,
        comfy: fake_comfyui::FakeOptions {
            object_info: info,
            ..fake_comfyui::FakeOptions::default()
        },
        ..HarnessOptions::default()
    })
    .await;
    let choices = |cb: &tests::fake_discord::RecordedRequest| -> Vec<String> {
        assert_eq!(cb.callback_type(), Some(8));
        cb.json.as_ref().unwrap()["data"]["choices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["value"].as_str().unwrap().to_string())
            .collect()
    };
    // LoRAs come from the backend's first probe, which may still be on its way: ask until
    // the list is there (each ask is a new interaction).
    let got = tests::support::eventually(30, "LoRAs offered", || async {
        let all = bot
            .discord
            .send_interaction(
                InteractionSpec::autocomplete("generate", "lora", "")
                    .in_channel(GENERAL_CHANNEL_ID),
            )
            .unwrap();
        let got = choices(&ack(&bot, all.id).await);
        if got.is_empty() {
            Err("no choices yet".to_string())
        } else {
            Ok(got)
        }
    })
    .await;
    assert_eq!(got.len(), 25, "capped at Discord's 25: {got:?}");
    let some = bot
        .discord
        .send_interaction(
            InteractionSpec::autocomplete("generate", "lora", "STYLE_3")
                .in_channel(GENERAL_CHANNEL_ID),
        )
        .unwrap();
    let got = choices(&ack(&bot, some.id).await);
    assert_eq!(got.len(), 10, "search reaches past the first 25: {got:?}");
    assert!(got.iter().all(|n| n.starts_with("style_3")), "{got:?}");
    let wf = bot
        .discord
        .send_interaction(
            InteractionSpec::autocomplete("generate", "workflow", "lora")
                .in_channel(GENERAL_CHANNEL_ID),
        )
        .unwrap();
    assert_eq!(
        choices(&ack(&bot, wf.id).await),
        vec!["txt2img_lora".to_string()]
    );
    // The LoRA picked runs on the workflow that takes one.
    let run = bot
        .discord
        .send_interaction(generate("styled").option("lora", "style_07.safetensors"))
        .unwrap();
    ack(&bot, run.id).await;
    let r = bot
        .wait_original(run.id, WAIT, has_result)
        .await
        .expect("a result");
    assert!(r.content().contains("`txt2img_lora`"), "{}", r.content());
    bot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_upscale_and_animate_commands_take_an_image() {
    let bot = BotUnderTest::start(HarnessOptions::default()).await;
    let png = tiny_png(64, 48);
    for (spec, workflow, ext) in [
        (
            InteractionSpec::command("edit").option("instruction", "make it blue"),
            "edit",
            ".png",
        ),
        (
            InteractionSpec::command("upscale").option("factor", 2.0),
            "upscale",
            ".png",
        ),
        (
            InteractionSpec::command("animate")
                .option("prompt", "waves")
                .option("frames", 4),
            "animate",
            ".webp",
        ),
    ] {
        let s = bot
            .discord
            .send_interaction(
                spec.in_channel(GENERAL_CHANNEL_ID)
                    .by_user(USER_ID)
                    .attachment_bytes("image", "in.png", "image/png", png.clone()),
            )
            .unwrap();
        assert_eq!(ack(&bot, s.id).await.callback_type(), Some(5));
        let r = bot
            .wait_original(s.id, WAIT, |m| {
                !m.files.is_empty() && button_ids(m).iter().any(|b| b.starts_with("cc:info:"))
            })
            .await
            .unwrap_or_else(|| panic!("{workflow}: a result\n{}", bot.transcript()));
        assert!(
            r.content().contains(&format!("`{workflow}`")),
            "{}",
            r.content()
        );
        assert!(
            r.files.iter().any(|f| f.filename.ends_with(ext)),
            "{workflow}: {:?}",
            r.files
        );
    }
    bot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosmos_video_jobs_run_on_the_ssh_host_and_upscale() {
    use tests::cosmos_host::{CosmosHost, CosmosHostOptions};
    let host = CosmosHost::start(CosmosHostOptions::default());
    let bot = BotUnderTest::start(HarnessOptions {
        config: json!({"cosmos": {
            "host": "127.0.0.1",
            "port": host.port(),
            "user": host.user(),
            "ssh_key": host.client_key_path(),
            "host_key": host.host_public_key(),
            "remote_dir": host.remote_dir(),
            "docker_image": host.image(),
            "busy_poll_secs": 1,
        }}),
        ..HarnessOptions::default()
    })
    .await;
    let video = std::fs::read(CosmosHost::input_video()).unwrap();
    let s = bot
        .discord
        .send_interaction(
            InteractionSpec::command("cosmos")
                .option("prompt", "the same street in snow")
                .option("edge", 0.6)
                .in_channel(GENERAL_CHANNEL_ID)
                .by_user(USER_ID)
                .attachment_bytes("video", "street.mp4", "video/mp4", video),
        )
        .unwrap();
    assert_eq!(ack(&bot, s.id).await.callback_type(), Some(5));
    let result = bot
        .wait_original(s.id, Duration::from_secs(60), has_result)
        .await
        .unwrap_or_else(|| panic!("a Cosmos result\n{}", bot.transcript()));
    assert!(
        result.content().contains("`cosmos_transfer`"),
        "{}",
        result.content()
    );
    assert!(result.files.iter().any(|f| f.filename.ends_with(".mp4")));
    let ids = button_ids(&result);
    assert!(
        !ids.iter()
            .any(|b| b.starts_with("cc:vary:") || b.starts_with("cc:anim:")),
        "{ids:?}"
    );
    let up = bot
        .discord
        .send_interaction(
            InteractionSpec::button(&button(&result, "cc:up:"), Some(result.id)).by_user(USER_ID),
        )
        .unwrap();
    ack(&bot, up.id).await;
    let upscaled = bot
        .wait_original(up.id, Duration::from_secs(60), |m| {
            !m.files.is_empty() && button_ids(m).iter().any(|b| b.starts_with("cc:info:"))
        })
        .await
        .unwrap_or_else(|| panic!("an upscaled result\n{}", bot.transcript()));
    assert!(
        upscaled.content().contains("`cosmos_upscale`"),
        "{}",
        upscaled.content()
    );
    let status = ask(
        &bot,
        InteractionSpec::command("status")
            .in_channel(GENERAL_CHANNEL_ID)
            .by_user(USER_ID),
        "cosmos",
    )
    .await;
    assert!(
        status.contains("Cosmos ·") && status.contains("H100"),
        "{status}"
    );
    bot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_over_the_upload_limit_is_kept_and_reported_with_its_size() {
    use tests::cosmos_host::{CosmosHost, CosmosHostOptions};
    let host = CosmosHost::start(CosmosHostOptions::default());
    let bot = BotUnderTest::start(HarnessOptions {
        discord: tests::fake_discord::FakeOptions {
            attachment_size_limit: 2_000,
            ..tests::fake_discord::FakeOptions::default()
        },
        config: json!({"cosmos": {
            "host": "127.0.0.1",
            "port": host.port(),
            "user": host.user(),
            "ssh_key": host.client_key_path(),
            "host_key": host.host_public_key(),
            "remote_dir": host.remote_dir(),
            "docker_image": host.image(),
        }}),
        ..HarnessOptions::default()
    })
    .await;
    let video = std::fs::read(CosmosHost::input_video()).unwrap();
    let s = bot
        .discord
        .send_interaction(
            InteractionSpec::command("cosmos")
                .option("prompt", "too big for the channel")
                .in_channel(GENERAL_CHANNEL_ID)
                .by_user(USER_ID)
                .attachment_bytes("video", "in.mp4", "video/mp4", video),
        )
        .unwrap();
    ack(&bot, s.id).await;
    let m = bot
        .wait_original(s.id, Duration::from_secs(60), |m| {
            m.content().contains("over this channel's upload limit")
        })
        .await
        .unwrap_or_else(|| panic!("the size is reported\n{}", bot.transcript()));
    assert!(m.files.is_empty(), "nothing over the limit was uploaded");
    assert!(m.content().contains("KiB"), "{}", m.content());
    let saved: Vec<_> = std::fs::read_dir(bot.dir.join("outputs"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "mp4"))
        .collect();
    assert_eq!(saved.len(), 1, "the video is kept on the server");
    bot.shutdown().await;
}

/// The ephemeral message an interaction was answered with directly (callback type 4).
async fn direct_answer(bot: &BotUnderTest, id: u64) -> String {
    let r = bot
        .discord
        .wait_for_request(|r| r.is_callback_for(id), WAIT)
        .await
        .unwrap_or_else(|| panic!("interaction {id} is answered\n{}", bot.transcript()));
    assert_eq!(r.status, 204, "callback accepted: {r:?}");
    let json = r.json.expect("json");
    assert_eq!(json["type"], 4, "a message, not a defer: {json}");
    assert_eq!(
        json["data"]["flags"].as_u64().unwrap_or(0) & 64,
        64,
        "ephemeral: {json}"
    );
    json["data"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_interactions_get_an_answer_and_the_bot_stays_up() {
    let bot = BotUnderTest::start(HarnessOptions::default()).await;
    // Parsed by serenity, but no command of ours matches.
    let s = bot
        .discord
        .send_interaction(
            InteractionSpec::command("frobnicate")
                .in_channel(GENERAL_CHANNEL_ID)
                .by_user(USER_ID),
        )
        .unwrap();
    let text = direct_answer(&bot, s.id).await;
    assert!(text.contains("no /frobnicate command"), "{text}");
    // A required option missing.
    let s = bot
        .discord
        .send_interaction(
            InteractionSpec::command("generate")
                .option("steps", 5)
                .in_channel(GENERAL_CHANNEL_ID)
                .by_user(USER_ID),
        )
        .unwrap();
    let text = direct_answer(&bot, s.id).await;
    assert!(text.contains("does not match the command"), "{text}");
    // An option of the wrong type (text where steps is a number).
    let s = bot
        .discord
        .send_interaction(generate("x").option("steps", "many"))
        .unwrap();
    let text = direct_answer(&bot, s.id).await;
    assert!(
        text.contains("does not match the command") || text.contains("could not be read"),
        "{text}"
    );
    // Payloads serenity cannot parse at all: it drops them, the bot still answers.
    type Mangle = fn(&mut Value);
    let unparseable: [(&str, Mangle); 4] = [
        ("no data", |d| {
            d.as_object_mut().unwrap().remove("data");
        }),
        ("options not a list", |d| {
            d["data"]["options"] = json!("steps=5")
        }),
        ("an integer option holding text", |d| {
            d["data"]["options"] = json!([{"name": "steps", "type": 4, "value": "many"}])
        }),
        ("an unknown interaction type", |d| d["type"] = json!(99)),
    ];
    for (what, mangle) in unparseable {
        let s = bot
            .discord
            .send_interaction_with(generate(what), mangle)
            .unwrap();
        let text = direct_answer(&bot, s.id).await;
        assert!(text.contains("cannot read"), "{what}: {text}");
    }
    // Neither member nor user: refused, never queued.
    let s = bot
        .discord
        .send_interaction_with(generate("nobody"), |d| {
            let d = d.as_object_mut().unwrap();
            d.remove("member");
            d.remove("user");
        })
        .unwrap();
    let text = direct_answer(&bot, s.id).await;
    assert!(text.contains("did not say who sent"), "{text}");
    // The same for a button.
    let s = bot
        .discord
        .send_interaction_with(
            InteractionSpec::button("cc:reroll:0000000000000001", None)
                .in_channel(GENERAL_CHANNEL_ID)
                .by_user(USER_ID),
            |d| {
                let d = d.as_object_mut().unwrap();
                d.remove("member");
                d.remove("user");
            },
        )
        .unwrap();
    let text = direct_answer(&bot, s.id).await;
    assert!(text.contains("did not say who sent"), "{text}");
    // Still up, and nothing above was queued: the next job is the first the backend sees.
    let s = bot
        .discord
        .send_interaction(generate("still here"))
        .unwrap();
    bot.wait_original(s.id, WAIT, has_result)
        .await
        .unwrap_or_else(|| panic!("a normal job still runs\n{}", bot.transcript()));
    let mine = bot.jobs_of(USER_ID);
    assert_eq!(mine.len(), 1, "only the last job was queued: {mine:?}");
    // serenity's stand-in user for "no user" is id 1: nothing may be queued for it.
    assert!(bot.jobs_of(1).is_empty());
    bot.shutdown().await;
}
