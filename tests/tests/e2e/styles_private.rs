//! Styles (`--style`, the `style` option, `/styles`), wildcards picked by the job's seed and
//! reloaded with `/admin reload`, Info naming where each value came from, and private
//! delivery by direct message (follow-ups from the DM, and closed DMs). The real bot against
//! the fake Discord and the fake ComfyUI or a real one (`COMFYUI_URL`). Every wait is bounded.

use std::time::Duration;

use generators::{JobRecord, ValueSource};
use serde_json::json;
use tests::bot_harness::{button_ids, finished, typed, BotUnderTest, HarnessOptions};
use tests::fake_discord::{
    dm_channel_id, InteractionSpec, StoredMessage, GENERAL_CHANNEL_ID, USER_ID,
};

const WAIT: Duration = Duration::from_secs(120);

/// Runs `spec` to its result; the newest job of [`USER_ID`] and the result message.
async fn run(bot: &BotUnderTest, spec: InteractionSpec) -> (JobRecord, StoredMessage) {
    let sent = bot.discord.send_interaction(spec).unwrap();
    let result = bot
        .wait_original(sent.id, WAIT, finished)
        .await
        .expect("a result");
    let job = bot.jobs_of(USER_ID).into_iter().next().expect("the job");
    (job, result)
}

/// The ephemeral follow-up (refusal or note) an interaction ended with.
async fn private_answer(bot: &BotUnderTest, token: &str) -> String {
    bot.private_followup(token, WAIT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn styles_dress_the_prompt_and_wildcards_repeat_with_the_seed() {
    let bot = BotUnderTest::start(HarnessOptions {
        config: json!({"discord": {"admin_users": [USER_ID]}}),
        ..HarnessOptions::default()
    })
    .await;
    // /styles lists the example styles and wildcards.
    let sent = bot
        .discord
        .send_interaction(InteractionSpec::command("styles").by_user(USER_ID))
        .unwrap();
    let listed = bot
        .wait_original(sent.id, WAIT, |m| m.content().contains("noir"))
        .await
        .expect("/styles answers");
    assert!(
        listed.content().contains("`__animal__`"),
        "{}",
        listed.content()
    );

    // A flag names the style; an explicit flag beats the style's cfg; Info says so.
    let (job, result) = run(
        &bot,
        typed("a __animal__ in the rain --style noir --seed 5 --steps 2"),
    )
    .await;
    let v = &job.spec.values;
    let prompt = v["prompt"].as_str().unwrap().to_string();
    assert!(
        prompt.starts_with("film noir photograph of a ") && !prompt.contains("__"),
        "{prompt}"
    );
    assert_eq!(v["cfg"], 6.5, "the style's cfg");
    assert!(v["negative"].as_str().unwrap().contains("colour, cartoon"));
    assert_eq!(job.spec.sources["cfg"], ValueSource::Style);
    assert_eq!(job.spec.sources["steps"], ValueSource::Flag);
    assert_eq!(job.spec.sources["seed"], ValueSource::Flag);
    let info = bot
        .discord
        .send_interaction(
            InteractionSpec::button(&format!("cc:info:{}", job.id), Some(result.id))
                .in_channel(GENERAL_CHANNEL_ID)
                .by_user(USER_ID),
        )
        .unwrap();
    let card = bot
        .wait_original(info.id, WAIT, |m| m.content().contains("**cfg**"))
        .await
        .expect("Info answers")
        .content()
        .to_string();
    assert!(card.contains("**cfg**: 6.5 · _style_"), "{card}");
    assert!(card.contains("**steps**: 2 · _inline flag_"), "{card}");
    assert!(card.contains("_workflow default_"), "{card}");

    // 🔄 picks again with the reroll's new seed, from the text as typed.
    let reroll = button_ids(&result)
        .into_iter()
        .find(|b| b.starts_with("cc:reroll"))
        .expect("a reroll button");
    let sent = bot
        .discord
        .send_interaction(
            InteractionSpec::button(&reroll, Some(result.id))
                .in_channel(GENERAL_CHANNEL_ID)
                .by_user(USER_ID),
        )
        .unwrap();
    bot.wait_original(sent.id, WAIT, finished)
        .await
        .expect("the reroll's result");
    let rerolled = bot.jobs_of(USER_ID).into_iter().next().unwrap();
    let template = &job.spec.templates["prompt"];
    assert_eq!(
        template,
        "film noir photograph of a __animal__ in the rain, black and white, hard shadows, 35mm"
    );
    assert_eq!(&rerolled.spec.templates["prompt"], template);
    let seed = rerolled.spec.values["seed"].as_u64().unwrap();
    assert_ne!(seed, 5);
    let (library, _) = generators::styles::Library::load(&bot.dir.join("workflows"));
    assert_eq!(
        rerolled.spec.values["prompt"],
        library.fill_wildcards(template, seed).unwrap().as_str(),
        "picked by the new seed"
    );

    // The same seed picks the same line; the style option works like the flag.
    let (again, _) = run(
        &bot,
        typed("a __animal__ in the rain --seed 5 --steps 2").option("style", "noir"),
    )
    .await;
    assert_eq!(again.spec.values["prompt"], prompt.as_str());
    assert_eq!(again.spec.sources["prompt"], ValueSource::Option);

    // Misspelt names are refused with the nearest one, and nothing runs.
    let before = bot.jobs_of(USER_ID).len();
    for (text, expect) in [
        ("a fox --style nior", "did you mean \"noir\""),
        ("a __animl__", "did you mean __animal__"),
    ] {
        let sent = bot.discord.send_interaction(typed(text)).unwrap();
        let said = private_answer(&bot, &sent.token).await;
        assert!(said.contains(expect), "{text}: {said}");
    }
    assert_eq!(bot.jobs_of(USER_ID).len(), before);

    // A wildcard file added by an admin is picked up by /admin reload.
    std::fs::write(bot.dir.join("workflows/wildcards/weather.txt"), "drizzle\n").unwrap();
    let sent = bot
        .discord
        .send_interaction(typed("a fox in __weather__ --steps 2"))
        .unwrap();
    let said = private_answer(&bot, &sent.token).await;
    assert!(said.contains("__weather__ is not a wildcard"), "{said}");
    let sent = bot
        .discord
        .send_interaction(
            InteractionSpec::command("admin")
                .option("reload", json!({"type": 1, "options": []}))
                .in_channel(GENERAL_CHANNEL_ID)
                .by_user(USER_ID),
        )
        .unwrap();
    bot.wait_original(sent.id, WAIT, |m| m.content().contains("3 wildcard(s)"))
        .await
        .expect("the reload counts the new wildcard file");
    let (job, _) = run(&bot, typed("a fox in __weather__ --steps 2")).await;
    assert_eq!(job.spec.values["prompt"], "a fox in drizzle");
    bot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_delivery_goes_to_dms_follow_ups_work_there_and_closed_dms_are_said() {
    let bot = BotUnderTest::start(HarnessOptions::default()).await;
    let dm = dm_channel_id(USER_ID);
    let sent = bot
        .discord
        .send_interaction(InteractionSpec::button("cs:private", None).by_user(USER_ID))
        .unwrap();
    let cb = bot
        .discord
        .wait_for_request(|r| r.is_callback_for(sent.id), WAIT)
        .await
        .expect("the panel answers");
    let panel = cb.json.unwrap()["data"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(panel.contains("Private delivery: **on**"), "{panel}");

    let sent = bot
        .discord
        .send_interaction(typed("a lighthouse --steps 2"))
        .unwrap();
    let ack = bot
        .discord
        .wait_for_request(|r| r.is_callback_for(sent.id), WAIT)
        .await
        .expect("acknowledged");
    assert_eq!(
        ack.json.unwrap()["data"]["flags"].as_u64().unwrap_or(0) & 64,
        64,
        "deferred privately: the channel sees nothing"
    );
    let note = private_answer(&bot, &sent.token).await;
    assert!(note.contains("direct messages"), "{note}");
    let result = bot
        .discord
        .wait_for_message(|m| m.channel_id == dm && finished(m), WAIT)
        .await
        .expect("the result in the DM");
    assert!(
        bot.discord
            .messages()
            .iter()
            .filter(|m| m.channel_id == GENERAL_CHANNEL_ID && !m.deleted)
            .all(|m| m.ephemeral()),
        "nothing public in the channel"
    );
    let job = bot.jobs_of(USER_ID).into_iter().next().unwrap();
    assert!(job.origin.private);
    let reroll = button_ids(&result)
        .into_iter()
        .find(|b| b.starts_with("cc:reroll"))
        .expect("the same buttons in the DM");

    // A follow-up pressed in the DM runs and answers in the DM.
    let sent = bot
        .discord
        .send_interaction(
            InteractionSpec::button(&reroll, Some(result.id))
                .in_dm()
                .in_channel(dm)
                .by_user(USER_ID),
        )
        .unwrap();
    bot.wait_original(sent.id, WAIT, finished)
        .await
        .expect("the reroll's result in the DM");
    let jobs = bot.jobs_of(USER_ID);
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0].spec.parent.as_ref(), Some(&job.id));

    // DMs closed: said clearly, nothing queued.
    bot.discord.faults().set_dms_closed(USER_ID, true);
    let sent = bot.discord.send_interaction(typed("a boat")).unwrap();
    let said = private_answer(&bot, &sent.token).await;
    assert!(said.contains("cannot send you direct messages"), "{said}");
    assert_eq!(bot.jobs_of(USER_ID).len(), 2, "nothing was queued");
    bot.shutdown().await;
}
