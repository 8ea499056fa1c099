//! `/describe` (an image → up to four prompts with buttons 1–4 that draw one at the image's
//! aspect) and `/blend` (2–5 images → one), through the real bot against the fake Discord and
//! the fake ComfyUI or a real one (`COMFYUI_URL`). Every wait is bounded.

use std::time::Duration;

use generators::OutputKind;
use tests::bot_harness::{button_ids, has_result, BotUnderTest, HarnessOptions};
use tests::fake_comfyui::tiny_png;
use tests::fake_discord::{
    InteractionSpec, SpecAttachment, StoredMessage, GENERAL_CHANNEL_ID, OTHER_USER_ID, USER_ID,
};

const WAIT: Duration = Duration::from_secs(180);

fn done(m: &StoredMessage) -> bool {
    !button_ids(m).is_empty() && !button_ids(m).iter().any(|b| b.starts_with("cc:cancel"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_offers_prompts_and_a_number_draws_one_at_the_images_aspect() {
    // The server's default steps apply to the drawn prompt (and keep a real CPU run short).
    let bot = BotUnderTest::start(HarnessOptions {
        config: serde_json::json!({"defaults": {"steps": 2}}),
        ..HarnessOptions::default()
    })
    .await;
    let sent = bot
        .discord
        .send_interaction(
            InteractionSpec::command("describe")
                .attachment_bytes("image", "wide.png", "image/png", tiny_png(96, 64))
                .in_channel(GENERAL_CHANNEL_ID)
                .by_user(USER_ID),
        )
        .unwrap();
    let answer = bot
        .wait_original(sent.id, WAIT, done)
        .await
        .expect("the prompts");
    let text = answer.content().to_string();
    assert!(text.contains("**Prompts from your image**"), "{text}");
    assert!(
        text.contains("**2.** watercolor painting of a coastal lighthouse"),
        "{text}"
    );
    assert!(answer.files.is_empty(), "the text is in the message");
    let ids = button_ids(&answer);
    let numbers: Vec<&String> = ids.iter().filter(|b| b.starts_with("cc:dp:")).collect();
    assert_eq!(numbers.len(), 4, "{ids:?}");
    let describe_job = bot.jobs_of(USER_ID).into_iter().next().unwrap();
    assert!(describe_job
        .outputs
        .iter()
        .any(|o| o.kind == OutputKind::Text));

    // Button 2: a generation with that prompt, at 96×64's 3:2.
    let sent = bot
        .discord
        .send_interaction(
            InteractionSpec::button(numbers[1], Some(answer.id))
                .in_channel(GENERAL_CHANNEL_ID)
                .by_user(USER_ID),
        )
        .unwrap();
    bot.wait_original(sent.id, WAIT, |m| has_result(m) && done(m))
        .await
        .expect("the drawn prompt's result");
    let drawn = bot.jobs_of(USER_ID).into_iter().next().unwrap();
    assert_eq!(drawn.spec.workflow, "txt2img");
    assert_eq!(drawn.spec.parent.as_ref(), Some(&describe_job.id));
    assert_eq!(
        drawn.spec.values["prompt"],
        "watercolor painting of a coastal lighthouse, soft washes"
    );
    let (w, h) = (
        drawn.spec.values["width"].as_f64().unwrap(),
        drawn.spec.values["height"].as_f64().unwrap(),
    );
    assert!((w / h - 1.5).abs() < 0.1, "3:2: {w}×{h}");
    assert_eq!(drawn.spec.values["steps"], 2, "the server's default steps");

    // Right-click → Apps → Describe on another member's picture answers the same way.
    let png = tiny_png(64, 64);
    let posted = bot.discord.post_member_message(
        GENERAL_CHANNEL_ID,
        OTHER_USER_ID,
        "my photo",
        &[SpecAttachment {
            option: String::new(),
            filename: "photo.png".into(),
            size: png.len(),
            content_type: "image/png".into(),
            bytes: Some(png.into()),
        }],
    );
    let sent = bot
        .discord
        .send_interaction(InteractionSpec::message_command("Describe", posted).by_user(USER_ID))
        .unwrap();
    let answer = bot
        .wait_original(sent.id, WAIT, done)
        .await
        .expect("prompts for a member's picture");
    assert!(answer.content().contains("**1.** "), "{}", answer.content());
    bot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blend_takes_three_images_and_weighs_them_equally() {
    let bot = BotUnderTest::start(HarnessOptions::default()).await;
    let sent = bot
        .discord
        .send_interaction(
            InteractionSpec::command("blend")
                .attachment_bytes("image1", "a.png", "image/png", tiny_png(64, 64))
                .attachment_bytes("image2", "b.png", "image/png", tiny_png(64, 48))
                .attachment_bytes("image3", "c.png", "image/png", tiny_png(48, 64))
                .option("prompt", "a dreamlike mix --steps 2")
                .in_channel(GENERAL_CHANNEL_ID)
                .by_user(USER_ID),
        )
        .unwrap();
    let result = bot
        .wait_original(sent.id, WAIT, |m| has_result(m) && done(m))
        .await
        .expect("the blend");
    assert_eq!(result.files.len(), 1, "one picture");
    let job = bot.jobs_of(USER_ID).into_iter().next().unwrap();
    assert_eq!(job.spec.workflow, "blend");
    assert_eq!(job.spec.values["prompt"], "a dreamlike mix");
    assert_eq!(job.spec.inputs.len(), 5, "every slot filled");
    assert_eq!(job.spec.inputs[0].path, job.spec.inputs[3].path);
    assert_eq!(job.spec.inputs[1].path, job.spec.inputs[4].path);
    assert_eq!(job.spec.values["mix3"], 0.6667);
    assert_eq!(job.spec.values["mix4"], 1.0);
    // One image is not a blend: refused, nothing queued.
    let before = bot.jobs_of(USER_ID).len();
    let sent = bot
        .discord
        .send_interaction(
            InteractionSpec::command("blend")
                .attachment_bytes("image1", "a.png", "image/png", tiny_png(64, 64))
                .in_channel(GENERAL_CHANNEL_ID)
                .by_user(USER_ID),
        )
        .unwrap();
    // Discord itself would not send it (image2 is required); the bot still answers.
    let cb = bot
        .discord
        .wait_for_request(|r| r.is_callback_for(sent.id), WAIT)
        .await
        .expect("answered");
    let data = cb.json.unwrap()["data"].clone();
    assert_eq!(data["flags"].as_u64().unwrap_or(0) & 64, 64, "{data}");
    let said = data["content"].as_str().unwrap_or_default();
    assert!(said.contains("/blend"), "{said}");
    assert_eq!(bot.jobs_of(USER_ID).len(), before);
    bot.shutdown().await;
}
