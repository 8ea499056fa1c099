//! Results a member keeps working on: a batch as one grid with U1–U4 and V1–V4, the
//! follow-ups of one image (subtle and strong variations, creative upscale, zoom, square,
//! pan), remix, `/show`, and a chain of follow-ups across a restart. The real bot against the
//! fake Discord, and the fake ComfyUI or a real one (`COMFYUI_URL`). Every wait is bounded.

use std::time::Duration;

use generators::JobRecord;
use serde_json::Value;
use tests::bot_harness::{
    button_ids, generate, has_result, real_comfy, BotUnderTest, HarnessOptions,
};
use tests::fake_discord::{
    InteractionSpec, RecordedRequest, SpecAttachment, StoredMessage, GENERAL_CHANNEL_ID,
    OTHER_USER_ID, USER_ID,
};

/// Generous: a real CPU ComfyUI runs these one after another.
const WAIT: Duration = Duration::from_secs(120);

fn button(m: &StoredMessage, prefix: &str) -> String {
    button_ids(m)
        .into_iter()
        .find(|b| b.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} button on {:?}", button_ids(m)))
}

/// The `prefix` button for image `n` (1-based) of a grid.
fn nth(m: &StoredMessage, prefix: &str, n: usize) -> String {
    button_ids(m)
        .into_iter()
        .find(|b| b.starts_with(prefix) && b.ends_with(&format!(":{n}")))
        .unwrap_or_else(|| panic!("no {prefix}…:{n} button on {:?}", button_ids(m)))
}

/// The label of every button, row by row.
fn labels(m: &StoredMessage) -> Vec<Vec<String>> {
    m.payload
        .get("components")
        .and_then(Value::as_array)
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    r["components"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|b| b["label"].as_str().unwrap_or_default().to_string())
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn callback(bot: &BotUnderTest, id: u64) -> RecordedRequest {
    bot.discord
        .wait_for_request(|r| r.is_callback_for(id), WAIT)
        .await
        .expect("the interaction is acknowledged")
}

/// Presses `custom_id` on message `on` as [`USER_ID`]; returns the interaction id.
fn press(bot: &BotUnderTest, custom_id: &str, on: u64) -> u64 {
    let spec = InteractionSpec::button(custom_id, Some(on)).by_user(USER_ID);
    bot.discord.send_interaction(spec).expect("sent").id
}

/// The finished result answering interaction `id` (not the progress before it).
async fn result_of(bot: &BotUnderTest, id: u64) -> StoredMessage {
    bot.wait_original(id, WAIT, |m| {
        has_result(m) && !button_ids(m).iter().any(|b| b.starts_with("cc:cancel"))
    })
    .await
    .unwrap_or_else(|| panic!("interaction {id} ends in a result"))
}

/// The job whose message is `m` (from its Info button's id).
fn job_of(bot: &BotUnderTest, m: &StoredMessage) -> JobRecord {
    let info = button(m, "cc:info:");
    let id = info.split(':').nth(2).expect("a job id");
    bot.jobs_of(USER_ID)
        .into_iter()
        .find(|r| r.id.as_str() == id)
        .unwrap_or_else(|| panic!("job {id} is in the journal"))
}

fn size_of(path: &std::path::Path) -> (u32, u32) {
    image::image_dimensions(path).expect("an image on disk")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_one_grid_with_u_and_v_buttons_per_image() {
    let bot = BotUnderTest::start(HarnessOptions::default()).await;
    let sent = bot
        .discord
        .send_interaction(generate("four owls").option("batch", 4))
        .unwrap();
    let grid = result_of(&bot, sent.id).await;
    assert_eq!(
        labels(&grid),
        [
            vec!["U1", "U2", "U3", "U4", "🔄"],
            vec!["V1", "V2", "V3", "V4"],
            vec!["Edit", "Info", "Delete"],
        ]
    );
    assert_eq!(grid.files.len(), 1, "one picture: {:?}", grid.files);
    assert_eq!(grid.files[0].filename, "grid.png");
    let upload = bot
        .discord
        .wait_for_request(
            |r| {
                r.files
                    .iter()
                    .any(|f| f.filename.as_deref() == Some("grid.png"))
            },
            WAIT,
        )
        .await
        .expect("the grid's upload");
    let picture = image::load_from_memory(&upload.files[0].data).expect("the grid is a PNG");
    // Four 64×64 images in two columns, 8 px apart.
    assert_eq!((picture.width(), picture.height()), (136, 136));
    let source = job_of(&bot, &grid);
    assert_eq!(source.outputs.len(), 4);

    // U2: image 2 alone, as its own result with every follow-up, linked to the grid.
    let u2 = press(&bot, &nth(&grid, "cc:u:", 2), grid.id);
    assert_eq!(callback(&bot, u2).await.callback_type(), Some(5));
    let picked = result_of(&bot, u2).await;
    let second = source.outputs[1]
        .path
        .file_name()
        .unwrap()
        .to_string_lossy();
    assert_eq!(picked.files.len(), 1);
    assert_eq!(picked.files[0].filename, second);
    assert!(
        picked.content().starts_with("Image 2 of 4"),
        "{}",
        picked.content()
    );
    assert!(
        picked.content().contains(&format!("/{}", grid.id)),
        "links the grid: {}",
        picked.content()
    );
    let rows = labels(&picked);
    assert!(rows[0].contains(&"Vary (Subtle)".to_string()), "{rows:?}");
    assert!(
        rows.iter().flatten().any(|l| l == "Zoom Out 2×"),
        "{rows:?}"
    );
    assert!(button_ids(&picked).iter().all(|b| b.ends_with(":2")));

    // V3 on the grid: a strong variation of image 3; Vary (Subtle) under U2: image 2, subtle.
    let v3 = press(&bot, &nth(&grid, "cc:vx:", 3), grid.id);
    let subtle = press(&bot, &button(&picked, "cc:vary:"), picked.id);
    for (click, image, denoise) in [(v3, 2, 0.7), (subtle, 1, 0.35)] {
        let varied = result_of(&bot, click).await;
        let record = job_of(&bot, &varied);
        assert_eq!(record.spec.workflow, "img2img");
        assert_eq!(record.spec.parent.as_ref(), Some(&source.id));
        assert_eq!(record.spec.values["denoise"], denoise);
        assert_eq!(record.spec.values["prompt"], "four owls");
        assert_eq!(
            std::fs::read(&record.spec.inputs[0].path).expect("the input"),
            std::fs::read(&source.outputs[image].path).expect("the source image"),
            "image {} is the one varied",
            image + 1
        );
    }
    bot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zoom_square_and_pan_send_the_padding_and_get_the_new_size() {
    let bot = BotUnderTest::start(HarnessOptions::default()).await;
    let sent = bot
        .discord
        .send_interaction(generate("a harbour").option("width", 96))
        .unwrap();
    let result = result_of(&bot, sent.id).await;
    let source = job_of(&bot, &result);
    assert_eq!(size_of(&source.outputs[0].path), (96, 64));
    // (button, left, top, right, bottom)
    let cases = [
        ("cc:z2:", 48, 32, 48, 32),
        ("cc:z15:", 24, 16, 24, 16),
        ("cc:sq:", 0, 16, 0, 16),
        ("cc:pl:", 48, 0, 0, 0),
        ("cc:pr:", 0, 0, 48, 0),
        ("cc:pu:", 0, 32, 0, 0),
        ("cc:pd:", 0, 0, 0, 32),
    ];
    let clicks: Vec<u64> = cases
        .iter()
        .map(|c| press(&bot, &button(&result, c.0), result.id))
        .collect();
    for (click, (name, l, t, r, b)) in clicks.into_iter().zip(cases) {
        let done = result_of(&bot, click).await;
        let record = job_of(&bot, &done);
        assert_eq!(record.spec.workflow, "outpaint", "{name}");
        let pads: Vec<u64> = ["pad_left", "pad_top", "pad_right", "pad_bottom"]
            .iter()
            .map(|p| record.spec.values[*p].as_u64().unwrap())
            .collect();
        assert_eq!(pads, [l, t, r, b], "{name}");
        assert_eq!(record.spec.values["prompt"], "a harbour", "{name}");
        assert_eq!(
            size_of(&record.outputs[0].path),
            (96 + l as u32 + r as u32, 64 + t as u32 + b as u32),
            "{name}: the picture grew by the padding"
        );
        if !real_comfy() {
            // What ComfyUI was asked: the pad node got exactly these numbers.
            let posted = bot
                .comfy
                .requests()
                .into_iter()
                .filter(|q| q.path.ends_with("/prompt") && q.method == "POST")
                .filter_map(|q| q.json())
                .find(|j| j["prompt_id"].as_str() == record.remote_id.as_deref())
                .unwrap_or_else(|| panic!("{name}: the prompt was posted"));
            let pad = &posted["prompt"]["13"]["inputs"];
            assert_eq!(pad["left"], l);
            assert_eq!(pad["top"], t);
            assert_eq!(pad["right"], r);
            assert_eq!(pad["bottom"], b);
        }
    }
    bot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remix_opens_the_prompt_form_and_the_follow_up_draws_the_new_prompt() {
    let bot = BotUnderTest::start(HarnessOptions::default()).await;
    let remix = bot
        .discord
        .send_interaction(
            InteractionSpec::command("remix")
                .option("on", true)
                .by_user(USER_ID),
        )
        .unwrap();
    let said = bot
        .wait_original(remix.id, WAIT, |m| m.content().contains("Remix is"))
        .await
        .expect("the setting is confirmed");
    assert!(said.content().contains("**on**"), "{}", said.content());
    let sent = bot
        .discord
        .send_interaction(generate("a red kite"))
        .unwrap();
    let result = result_of(&bot, sent.id).await;

    let click = press(&bot, &button(&result, "cc:vx:"), result.id);
    let cb = callback(&bot, click).await;
    assert_eq!(cb.callback_type(), Some(9), "the form comes first");
    let form = &cb.json.as_ref().unwrap()["data"];
    let field = &form["components"][0]["components"][0];
    assert_eq!(field["value"], "a red kite", "prefilled");
    let submit = bot
        .discord
        .send_interaction(
            InteractionSpec::modal_submit(
                form["custom_id"].as_str().unwrap(),
                &[(field["custom_id"].as_str().unwrap(), "a blue kite")],
            )
            .by_user(USER_ID),
        )
        .unwrap();
    assert_eq!(callback(&bot, submit.id).await.callback_type(), Some(5));
    let remixed = result_of(&bot, submit.id).await;
    assert!(
        remixed.content().contains("a blue kite"),
        "{}",
        remixed.content()
    );
    let record = job_of(&bot, &remixed);
    assert_eq!(
        record.spec.values["denoise"], 0.7,
        "still a strong variation"
    );
    assert_eq!(record.spec.workflow, "img2img");

    // Upscale by model draws nothing: no form even with remix on. Remix off: no form at all.
    let up = press(&bot, &button(&result, "cc:up:"), result.id);
    assert_eq!(callback(&bot, up).await.callback_type(), Some(5));
    let off = bot
        .discord
        .send_interaction(InteractionSpec::command("remix").by_user(USER_ID))
        .unwrap();
    bot.wait_original(off.id, WAIT, |m| m.content().contains("**off**"))
        .await
        .expect("switched off");
    let again = press(&bot, &button(&result, "cc:vx:"), result.id);
    assert_eq!(callback(&bot, again).await.callback_type(), Some(5));
    result_of(&bot, again).await;
    result_of(&bot, up).await;
    bot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_five_follow_ups_survives_a_restart_and_show_reposts_a_job() {
    let mut bot = BotUnderTest::start(HarnessOptions::default()).await;
    let sent = bot.discord.send_interaction(generate("a lantern")).unwrap();
    let mut message = result_of(&bot, sent.id).await;
    let first = job_of(&bot, &message);
    let steps = [
        "cc:vary:", "cc:z2:", "RESTART", "cc:pr:", "cc:upc:", "cc:vx:",
    ];
    let mut chain = vec![first.id.clone()];
    for step in steps {
        if step == "RESTART" {
            bot.stop_bot().await.expect("a clean stop");
            bot.start_bot().await;
            continue;
        }
        let click = press(&bot, &button(&message, step), message.id);
        let next = result_of(&bot, click).await;
        assert!(
            next.content().contains(&format!("/{}", message.id)),
            "{step}: links its source: {}",
            next.content()
        );
        let record = job_of(&bot, &next);
        assert_eq!(record.spec.parent.as_ref(), chain.last(), "{step}");
        assert_eq!(
            record.spec.values["prompt"], "a lantern",
            "{step}: the prompt carries on"
        );
        chain.push(record.id.clone());
        message = next;
    }
    assert_eq!(chain.len(), 6, "five follow-ups");
    let last = job_of(&bot, &message);
    assert_eq!(last.spec.workflow, "img2img");
    let upscaled = bot
        .jobs_of(USER_ID)
        .into_iter()
        .find(|r| Some(&r.id) == last.spec.parent.as_ref())
        .unwrap();
    assert_eq!(upscaled.spec.workflow, "upscale_creative");

    // /show: the first job again, with its buttons, for another member of the server.
    let show = bot
        .discord
        .send_interaction(
            InteractionSpec::command("show")
                .option("job", first.id.as_str())
                .by_user(OTHER_USER_ID),
        )
        .unwrap();
    let shown = bot
        .wait_original(show.id, WAIT, has_result)
        .await
        .expect("the job is shown again");
    assert_eq!(shown.files.len(), 1);
    assert!(button_ids(&shown).iter().any(|b| b.starts_with("cc:vx:")));
    assert!(shown.content().contains("a lantern"), "{}", shown.content());
    let missing = bot
        .discord
        .send_interaction(
            InteractionSpec::command("show")
                .option("job", "0000000000000000")
                .by_user(USER_ID),
        )
        .unwrap();
    let said = bot
        .discord
        .wait_for_request(
            |r| {
                r.route().contains(&missing.token)
                    && r.method == "POST"
                    && !r.route().ends_with("/callback")
            },
            WAIT,
        )
        .await
        .expect("a refusal");
    let text = said.json.unwrap()["content"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(text.contains("no job `0000000000000000`"), "{text}");
    bot.shutdown().await;
}

/// A 64×64 PNG with some structure, as a member would post.
fn members_png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 64, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 4) as u8, 90])
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_commands_upscale_and_vary_any_members_image() {
    let bot = BotUnderTest::start(HarnessOptions::default()).await;
    let registered = bot.discord.commands(Some(tests::fake_discord::GUILD_ID));
    for name in ["Upscale", "Vary"] {
        assert!(
            registered
                .iter()
                .any(|c| c["name"] == name && c["type"] == 3),
            "{name} is registered as a message command"
        );
    }
    let png = members_png();
    let posted = bot.discord.post_member_message(
        GENERAL_CHANNEL_ID,
        OTHER_USER_ID,
        "a painted boat",
        &[SpecAttachment {
            option: String::new(),
            filename: "boat.png".into(),
            size: png.len(),
            content_type: "image/png".into(),
            bytes: Some(png.clone().into()),
        }],
    );

    let up = bot
        .discord
        .send_interaction(InteractionSpec::message_command("Upscale", posted).by_user(USER_ID))
        .unwrap();
    assert_eq!(callback(&bot, up.id).await.callback_type(), Some(5));
    let upscaled = result_of(&bot, up.id).await;
    let record = job_of(&bot, &upscaled);
    assert_eq!(record.spec.workflow, "upscale");
    assert_eq!(size_of(&record.outputs[0].path), (128, 128));

    let vary = bot
        .discord
        .send_interaction(InteractionSpec::message_command("Vary", posted).by_user(USER_ID))
        .unwrap();
    let cb = callback(&bot, vary.id).await;
    assert_eq!(cb.callback_type(), Some(9), "a form for the prompt");
    let form = &cb.json.as_ref().unwrap()["data"];
    let field = &form["components"][0]["components"][0];
    assert_eq!(
        field["value"], "a painted boat",
        "prefilled with the message's text"
    );
    let submit = bot
        .discord
        .send_interaction(
            InteractionSpec::modal_submit(
                form["custom_id"].as_str().unwrap(),
                &[(field["custom_id"].as_str().unwrap(), "a painted ship")],
            )
            .by_user(USER_ID),
        )
        .unwrap();
    let varied = result_of(&bot, submit.id).await;
    assert!(
        varied.content().contains("a painted ship"),
        "{}",
        varied.content()
    );
    let record = job_of(&bot, &varied);
    assert_eq!(record.spec.workflow, "img2img");
    assert_eq!(record.spec.values["denoise"], 0.7);
    assert_eq!(std::fs::read(&record.spec.inputs[0].path).unwrap(), png);

    // A message without an image: a clear, private refusal.
    let text_only =
        bot.discord
            .post_member_message(GENERAL_CHANNEL_ID, OTHER_USER_ID, "just words", &[]);
    let none = bot
        .discord
        .send_interaction(InteractionSpec::message_command("Vary", text_only).by_user(USER_ID))
        .unwrap();
    let cb = callback(&bot, none.id).await;
    assert_eq!(cb.callback_type(), Some(4));
    let data = &cb.json.as_ref().unwrap()["data"];
    assert_eq!(data["flags"].as_u64().unwrap_or(0) & 64, 64);
    assert!(
        data["content"].as_str().unwrap().contains("no image"),
        "{data}"
    );
    bot.shutdown().await;
}
