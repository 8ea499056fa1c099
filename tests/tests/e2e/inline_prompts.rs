//! Inline parameters typed in a prompt (`--ar`, `--seed`, `--no`, `--steps`, `--NAME`,
//! `{a, b}` permutations, `--repeat`) through the real bot, against the fake Discord and the
//! fake ComfyUI or a real one (`COMFYUI_URL`). Every wait is bounded.

use std::time::Duration;

use generators::JobRecord;
use tests::bot_harness::{finished, real_comfy, typed, BotUnderTest, HarnessOptions};
use tests::fake_discord::USER_ID;

const WAIT: Duration = Duration::from_secs(120);

/// The jobs `USER_ID` started, oldest first.
fn jobs(bot: &BotUnderTest) -> Vec<JobRecord> {
    let mut all = bot.jobs_of(USER_ID);
    all.reverse();
    all
}

/// The private refusal an interaction ended with.
async fn refusal(bot: &BotUnderTest, token: &str) -> String {
    bot.private_followup(token, WAIT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_in_the_prompt_set_values_and_leave_the_prompt_sent_to_comfyui() {
    let bot = BotUnderTest::start(HarnessOptions::default()).await;
    let sent = bot
        .discord
        .send_interaction(
            typed(r#"a sign saying "--no entry" on a castle --ar 16:9 --seed 7 --steps 3 --no people, cars"#)
                .option("steps", 2),
        )
        .unwrap();
    let result = bot
        .wait_original(sent.id, WAIT, finished)
        .await
        .expect("a result");
    let record = jobs(&bot).pop().expect("a job");
    let prompt = r#"a sign saying "--no entry" on a castle"#;
    assert_eq!(record.spec.values["prompt"], prompt);
    assert_eq!(record.spec.values["seed"], 7);
    assert_eq!(
        record.spec.values["steps"], 2,
        "the command's own option beats --steps"
    );
    let negative = record.spec.values["negative"].as_str().unwrap();
    assert!(negative.ends_with("people, cars"), "{negative}");
    let (w, h) = (
        record.spec.values["width"].as_u64().unwrap(),
        record.spec.values["height"].as_u64().unwrap(),
    );
    assert!(
        w > h && (w as f64 / h as f64 - 16.0 / 9.0).abs() < 0.2,
        "{w}×{h}"
    );
    assert!(
        result.content().contains("--no entry"),
        "{}",
        result.content()
    );
    assert!(!result.content().contains("--seed"), "{}", result.content());
    if !real_comfy() {
        let posted = bot
            .comfy
            .requests()
            .into_iter()
            .filter(|q| q.path.ends_with("/prompt") && q.method == "POST")
            .filter_map(|q| q.json())
            .next_back()
            .expect("a prompt was posted");
        assert_eq!(posted["prompt"]["6"]["inputs"]["text"], prompt);
        assert_eq!(posted["prompt"]["3"]["inputs"]["seed"], 7);
    }
    bot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_flag_is_refused_with_the_nearest_and_nothing_runs() {
    let bot = BotUnderTest::start(HarnessOptions::default()).await;
    for (prompt, expect) in [
        ("a fox --sed 5", "unknown flag --sed; did you mean --seed?"),
        (
            "a fox --steps many",
            "--steps needs a whole number, not \"many\"",
        ),
        ("a fox --ar wide", "unknown aspect ratio wide"),
        ("{a, b, c} fox --repeat 3", "one prompt may start at most 8"),
        ("a fox --steps 500", "steps must be between"),
    ] {
        let sent = bot.discord.send_interaction(typed(prompt)).unwrap();
        let said = refusal(&bot, &sent.token).await;
        assert!(said.contains(expect), "{prompt}: {said}");
    }
    assert!(jobs(&bot).is_empty(), "nothing was queued");
    bot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permutations_and_repeat_start_one_job_message_each() {
    let bot = BotUnderTest::start(HarnessOptions::default()).await;
    let sent = bot
        .discord
        .send_interaction(
            typed("a {red, blue} car --repeat 2 --steps 2")
                .option("width", 64)
                .option("height", 64),
        )
        .unwrap();
    // Four results: the command's own message and three more.
    let done = bot
        .discord
        .wait_for_messages(4, |m| finished(m) && m.content().contains(" car"), WAIT)
        .await;
    assert!(done.is_some(), "four results");
    let mut prompts: Vec<String> = jobs(&bot)
        .iter()
        .map(|r| r.spec.values["prompt"].as_str().unwrap().to_string())
        .collect();
    prompts.sort();
    assert_eq!(
        prompts,
        ["a blue car", "a blue car", "a red car", "a red car"]
    );
    let seeds: std::collections::HashSet<_> = jobs(&bot)
        .iter()
        .map(|r| r.spec.values["seed"].clone())
        .collect();
    assert_eq!(seeds.len(), 4, "each job draws its own seed");
    assert!(bot.wait_original(sent.id, WAIT, finished).await.is_some());
    bot.shutdown().await;
}
