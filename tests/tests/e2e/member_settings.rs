//! `/settings` and `/prefer`: a member's defaults set through the panel, kept across a restart,
//! applied under the command's options and inline flags, over the server's defaults, and
//! remix applied to a follow-up. The real bot against the fake Discord and the fake ComfyUI or
//! a real one (`COMFYUI_URL`). Every wait is bounded.

use std::time::Duration;

use generators::JobRecord;
use serde_json::{json, Value};
use tests::bot_harness::{button_ids, has_result, BotUnderTest, HarnessOptions};
use tests::fake_discord::{
    InteractionSpec, RecordedRequest, GENERAL_CHANNEL_ID, OTHER_USER_ID, USER_ID,
};

const WAIT: Duration = Duration::from_secs(120);

async fn callback(bot: &BotUnderTest, id: u64) -> RecordedRequest {
    bot.discord
        .wait_for_request(|r| r.is_callback_for(id), WAIT)
        .await
        .expect("the interaction is acknowledged")
}

/// Sends `spec` as [`USER_ID`] and returns its callback's `(type, data)`.
async fn answer(bot: &BotUnderTest, spec: InteractionSpec) -> (u64, Value) {
    let sent = bot.discord.send_interaction(spec.by_user(USER_ID)).unwrap();
    let cb = callback(bot, sent.id).await;
    let data = cb
        .json
        .as_ref()
        .map(|j| j["data"].clone())
        .unwrap_or_default();
    (cb.callback_type().unwrap_or(0), data)
}

fn generate(prompt: &str, user: u64) -> InteractionSpec {
    InteractionSpec::command("generate")
        .option("prompt", prompt)
        .in_channel(GENERAL_CHANNEL_ID)
        .by_user(user)
}

/// The finished job an interaction started.
async fn job_of(bot: &BotUnderTest, spec: InteractionSpec, owner: u64) -> (JobRecord, u64) {
    let sent = bot.discord.send_interaction(spec).unwrap();
    let result = bot
        .wait_original(sent.id, WAIT, |m| {
            has_result(m) && !button_ids(m).iter().any(|b| b.starts_with("cc:cancel"))
        })
        .await
        .expect("a result");
    let record = bot.jobs_of(owner).into_iter().next().expect("the job");
    (record, result.id)
}

fn ratio(r: &JobRecord) -> f64 {
    let v = &r.spec.values;
    v["width"].as_f64().unwrap() / v["height"].as_f64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_persist_apply_under_options_and_over_server_defaults() {
    let mut bot = BotUnderTest::start(HarnessOptions {
        // Few steps everywhere: a real CPU ComfyUI takes about 10 s a step at 16:9.
        config: json!({"defaults": {"aspect": "3:2", "steps": 2}}),
        ..HarnessOptions::default()
    })
    .await;
    let (ty, panel) = answer(&bot, InteractionSpec::command("settings")).await;
    assert_eq!(ty, 4);
    assert_eq!(panel["flags"].as_u64().unwrap_or(0) & 64, 64, "private");
    assert!(panel["content"]
        .as_str()
        .unwrap()
        .contains("Aspect: server default (3:2)"));
    assert_eq!(
        panel["components"].as_array().unwrap().len(),
        5,
        "four menus (the server has styles) and a row of buttons"
    );

    for (id, value, expect) in [
        ("cs:aspect", "16:9", "Aspect: **16:9**"),
        ("cs:steps", "4", "Steps: **4**"),
    ] {
        let (ty, data) = answer(&bot, InteractionSpec::select(id, &[value], None)).await;
        assert_eq!(ty, 7, "the panel is redrawn in place");
        assert!(data["content"].as_str().unwrap().contains(expect), "{data}");
    }
    let (ty, data) = answer(&bot, InteractionSpec::button("cs:remix", None)).await;
    assert_eq!(ty, 7);
    assert!(data["content"].as_str().unwrap().contains("Remix: **on**"));
    let (ty, form) = answer(&bot, InteractionSpec::button("cs:negative", None)).await;
    assert_eq!(ty, 9, "a form for the text");
    let field = form["components"][0]["components"][0]["custom_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (ty, data) = answer(
        &bot,
        InteractionSpec::modal_submit(
            form["custom_id"].as_str().unwrap(),
            &[(&field, "ugly, blurry")],
        ),
    )
    .await;
    assert_eq!(ty, 7);
    assert!(
        data["content"]
            .as_str()
            .unwrap()
            .contains("Negative: **ugly, blurry**"),
        "{data}"
    );
    let sent = bot
        .discord
        .send_interaction(
            InteractionSpec::command("prefer")
                .option("suffix", "film grain")
                .by_user(USER_ID),
        )
        .unwrap();
    bot.wait_original(sent.id, WAIT, |m| m.content().contains("film grain"))
        .await
        .expect("the suffix is confirmed");

    // Kept across a restart.
    bot.stop_bot().await.expect("a clean stop");
    bot.start_bot().await;

    let (mine, result) = job_of(&bot, generate("a cat", USER_ID), USER_ID).await;
    let v = &mine.spec.values;
    assert_eq!(v["prompt"], "a cat, film grain");
    assert_eq!(v["steps"], 4, "the member's steps beat the server's");
    assert_eq!(v["negative"], "ugly, blurry");
    assert!((ratio(&mine) - 16.0 / 9.0).abs() < 0.2, "16:9: {v:?}");
    // An inline flag and a command option beat the settings.
    let (over, _) = job_of(
        &bot,
        generate("a dog --steps 3 --no fur", USER_ID)
            .option("width", 64)
            .option("height", 64),
        USER_ID,
    )
    .await;
    assert_eq!(over.spec.values["steps"], 3);
    assert_eq!(over.spec.values["negative"], "ugly, blurry, fur");
    assert_eq!(
        (
            over.spec.values["width"].clone(),
            over.spec.values["height"].clone()
        ),
        (json!(64), json!(64))
    );
    // Another member, with no settings, gets the server's default aspect.
    let (theirs, _) = job_of(&bot, generate("a cow", OTHER_USER_ID), OTHER_USER_ID).await;
    assert!(
        (ratio(&theirs) - 1.5).abs() < 0.1,
        "3:2: {:?}",
        theirs.spec.values
    );
    assert_eq!(theirs.spec.values["prompt"], "a cow");
    assert_eq!(theirs.spec.values["steps"], 2, "the server's default steps");

    // Remix (set in the panel before the restart) applies to a follow-up: the form first.
    let message = bot.discord.message(result).unwrap();
    let vary = button_ids(&message)
        .into_iter()
        .find(|b| b.starts_with("cc:vx:"))
        .unwrap();
    let (ty, form) = answer(&bot, InteractionSpec::button(&vary, Some(result))).await;
    assert_eq!(ty, 9);
    assert_eq!(
        form["components"][0]["components"][0]["value"],
        "a cat, film grain"
    );

    // Reset: back to the server's defaults.
    let (ty, data) = answer(&bot, InteractionSpec::button("cs:reset", None)).await;
    assert_eq!(ty, 7);
    assert!(
        data["content"]
            .as_str()
            .unwrap()
            .contains("Steps: server default (2)"),
        "{data}"
    );
    bot.shutdown().await;
}
