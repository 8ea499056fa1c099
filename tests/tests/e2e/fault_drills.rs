//! Fault drills against the real bot: ComfyUI restarted mid-job, its WebSocket dropped, a 429
//! storm from Discord, gateway reconnect (op 7) and invalid session (op 9), a full outputs
//! disk, a corrupt journal; plus the health and metrics endpoint that reports them.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tests::bot_harness::{
    button_ids, embed_title, generate, has_result, is_sampling, long_generate, slow_comfy,
    BotUnderTest, HarnessOptions,
};
use tests::fake_discord::{FailWhich, InteractionSpec, StoredMessage, GENERAL_CHANNEL_ID, USER_ID};
use tests::support::eventually;

const WAIT: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("the endpoint answers");
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The value of an unlabelled or labelled sample in Prometheus text, if present.
fn metrics_sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

/// Like [`metrics_sample`], failing the test when the sample is missing.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics_sample(metrics, name).unwrap_or_else(|| panic!("{name} in:\n{metrics}"))
}

async fn wait_healthy(base: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (code, body) = get(&format!("{base}/healthz")).await;
        if code == 200 {
            return serde_json::from_str(&body).unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never healthy: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts a job and waits until it samples.
async fn sampling(bot: &BotUnderTest, prompt: &str, steps: u32) -> u64 {
    let s = bot
        .discord
        .send_interaction(generate(prompt).option("steps", steps))
        .unwrap();
    bot.wait_original(s.id, WAIT, is_sampling)
        .await
        .expect("running");
    s.id
}

/// The job's message once it says Failed, and the reason it gives.
async fn failure(bot: &BotUnderTest, id: u64) -> (StoredMessage, String) {
    let failed = bot
        .wait_original(id, WAIT, |m| embed_title(m).as_deref() == Some("Failed"))
        .await
        .unwrap_or_else(|| panic!("the job ends as failed\n{}", bot.transcript()));
    let reason = failed.payload["embeds"][0]["description"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (failed, reason)
}

async fn run_one(bot: &BotUnderTest, prompt: &str) -> StoredMessage {
    let s = bot.discord.send_interaction(generate(prompt)).unwrap();
    bot.wait_original(s.id, WAIT, has_result)
        .await
        .unwrap_or_else(|| panic!("{prompt}: a result\n{}", bot.transcript()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_report_the_bot() {
    let port = free_port();
    let bot = BotUnderTest::start(HarnessOptions {
        config: json!({"health": {"listen": format!("127.0.0.1:{port}")}}),
        ..HarnessOptions::default()
    })
    .await;
    let base = format!("http://127.0.0.1:{port}");
    let health = wait_healthy(&base).await;
    assert_eq!(health["gateway_connected"], true);
    assert_eq!(health["journal_writable"], true);
    assert_eq!(health["backends"][0]["healthy"], true, "{health}");
    run_one(&bot, "counted").await;
    // The result is on Discord before the bot counts it as delivered (it counts once the
    // edit has returned): wait for the counter rather than read it at once.
    let metrics = eventually(30, "the delivery is counted", || async {
        let (code, metrics) = get(&format!("{base}/metrics")).await;
        match (
            code,
            metrics_sample(&metrics, "comfycord_jobs_total{event=\"delivered\"}"),
        ) {
            (200, Some(1.0)) => Ok(metrics),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(
        sample(&metrics, "comfycord_jobs_total{event=\"submitted\"}"),
        1.0
    );
    assert!(sample(&metrics, "comfycord_ack_latency_seconds_count") >= 1.0);
    assert!(
        sample(
            &metrics,
            "comfycord_ack_latency_seconds_bucket{le=\"+Inf\"}"
        ) >= 1.0
    );
    assert!(sample(&metrics, "comfycord_progress_edits_total") >= 1.0);
    assert_eq!(sample(&metrics, "comfycord_queue_depth"), 0.0);
    assert_eq!(
        sample(&metrics, "comfycord_backend_inflight{backend=\"fake\"}"),
        0.0
    );
    assert_eq!(sample(&metrics, "comfycord_gateway_connected"), 1.0);
    // The Docker HEALTHCHECK path: `comfycord healthcheck` asks the same endpoint.
    let ok = bot::health::check(format!("0.0.0.0:{port}").parse().unwrap()).await;
    assert!(ok.is_ok(), "{ok:?}");
    bot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comfyui_restarted_mid_job_fails_the_job_clearly() {
    let bot = BotUnderTest::start(HarnessOptions {
        fake_comfy_only: true,
        comfy: slow_comfy(200),
        config: json!({"comfyui": {"give_up_after_secs": 3, "reconnect_max_delay_secs": 1}}),
        ..HarnessOptions::default()
    })
    .await;
    let id = sampling(&bot, "interrupted", 30).await;
    bot.comfy.restart().await;
    let (failed, text) = failure(&bot, id).await;
    assert!(!text.is_empty(), "a reason is given");
    assert_eq!(
        button_ids(&failed)
            .iter()
            .map(|b| b.split(':').nth(1).unwrap_or_default().to_string())
            .collect::<Vec<_>>(),
        vec!["retry"],
        "no Cancel left on a dead job, a Retry instead"
    );
    bot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_comfyui_websocket_still_delivers() {
    let bot = BotUnderTest::start(HarnessOptions {
        fake_comfy_only: true,
        comfy: slow_comfy(30),
        ..HarnessOptions::default()
    })
    .await;
    bot.comfy.faults().drop_ws_after_job_messages(4);
    run_one(&bot, "through a reconnect").await;
    bot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_from_discord_loses_no_result() {
    let port = free_port();
    let bot = BotUnderTest::start(HarnessOptions {
        comfy: slow_comfy(100),
        config: json!({"health": {"listen": format!("127.0.0.1:{port}")}}),
        ..HarnessOptions::default()
    })
    .await;
    let s = bot
        .discord
        .send_interaction(long_generate("stormy", 20))
        .unwrap();
    bot.wait_original(s.id, WAIT, is_sampling)
        .await
        .expect("running");
    // Every request for a while is refused with 429.
    bot.discord.faults().rate_limit_next(8, 0.2, false);
    let r = bot
        .wait_original(s.id, WAIT, has_result)
        .await
        .unwrap_or_else(|| panic!("the result arrives\n{}", bot.transcript()));
    assert!(r.content().contains("stormy"));
    let refused = bot
        .discord
        .requests()
        .iter()
        .filter(|r| r.status == 429)
        .count();
    assert!(refused >= 1, "the storm happened");
    // serenity waited each 429 out itself (its limiter is on, as in production) and reports
    // them from a task of their own: wait for the count.
    eventually(30, "the 429s are counted", || async {
        let (_, metrics) = get(&format!("http://127.0.0.1:{port}/metrics")).await;
        match metrics_sample(&metrics, "comfycord_discord_rate_limited_total") {
            Some(n) if n >= 1.0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    bot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_reconnect_and_invalid_session_are_survived() {
    let bot = BotUnderTest::start(HarnessOptions {
        ..HarnessOptions::default()
    })
    .await;
    let identifies = |bot: &BotUnderTest, op: u64| {
        bot.discord
            .gateway_frames()
            .iter()
            .filter(|f| !f.from_fake && f.op == op)
            .count()
    };
    let before = identifies(&bot, 2) + identifies(&bot, 6);
    assert!(bot.discord.send_reconnect() > 0, "op 7 sent");
    bot.discord
        .wait_for_frame(
            |f| !f.from_fake && (f.op == 6 || f.op == 2) && f.conn > 0,
            WAIT,
        )
        .await
        .expect("the bot resumes or identifies again");
    // The new connection must be live (the fake answered RESUMED or READY on it) before an
    // interaction can go out on it.
    bot.discord
        .wait_for_frame(
            |f| {
                f.from_fake
                    && f.conn > 0
                    && matches!(f.t.as_deref(), Some("RESUMED") | Some("READY"))
            },
            WAIT,
        )
        .await
        .expect("a live session after op 7");
    run_one(&bot, "after op 7").await;
    let newest_conn = bot
        .discord
        .gateway_frames()
        .iter()
        .map(|f| f.conn)
        .max()
        .unwrap_or(0);
    assert!(bot.discord.send_invalid_session(false) > 0, "op 9 sent");
    // serenity waits 5 s between identifies, then identifies on a new connection: READY there.
    bot.discord
        .wait_for_frame(
            |f| f.from_fake && f.conn > newest_conn && f.t.as_deref() == Some("READY"),
            WAIT,
        )
        .await
        .expect("re-identified after op 9");
    assert!(identifies(&bot, 2) + identifies(&bot, 6) >= before + 2);
    run_one(&bot, "after op 9").await;
    bot.shutdown().await;
}

/// Unmounts (and removes) the drill's tmpfs even when the test fails.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outputs_disk_fails_the_job_clearly_and_keeps_it() {
    let dir = std::env::temp_dir().join(format!("comfycord-full-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&dir)
        .status()
        .expect("mount runs");
    assert!(
        mounted.success(),
        "this drill needs root to mount a 64 KiB tmpfs"
    );
    let _unmount = Unmount(dir.clone());
    // Fill it until not even a one-byte file fits (tmpfs hands out whole pages).
    std::fs::create_dir_all(dir.join("outputs")).unwrap();
    let block = vec![0u8; 4096];
    let mut full = false;
    for i in 0..10_000 {
        let mut f = match std::fs::File::create(dir.join(format!("filler{i}"))) {
            Ok(f) => f,
            Err(_) => {
                full = true;
                break;
            }
        };
        while std::io::Write::write_all(&mut f, &block).is_ok() {}
        if std::fs::write(dir.join("outputs/probe"), b"x").is_err() {
            full = true;
            break;
        }
        let _ = std::fs::remove_file(dir.join("outputs/probe"));
    }
    assert!(full, "the tmpfs filled up");
    let bot = BotUnderTest::start(HarnessOptions {
        config: json!({"outputs": {"dir": dir.join("outputs")}}),
        ..HarnessOptions::default()
    })
    .await;
    let s = bot.discord.send_interaction(generate("no room")).unwrap();
    let failed = bot
        .wait_original(s.id, WAIT, |m| embed_title(m).as_deref() == Some("Failed"))
        .await
        .unwrap_or_else(|| {
            let j = generators::SqliteJournal::open(&bot.dir.join("data/journal.sqlite3")).unwrap();
            let r = generators::Journal::recent_for_owner(&j, USER_ID, 10, 0).unwrap();
            panic!("failed\n{:?}\n{}", r[0].outputs, bot.transcript())
        });
    let reason = failed.payload["embeds"][0]["description"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("no space left"), "{reason}");
    // Not lost: the journal has it as failed, with its reason.
    let journal = generators::SqliteJournal::open(&bot.dir.join("data/journal.sqlite3"));
    bot.shutdown().await;
    let journal = journal.expect("journal opens");
    let records = generators::Journal::recent_for_owner(&journal, USER_ID, 10, 0).unwrap();
    assert!(
        matches!(&records[0].state, generators::JobState::Failed { reason } if reason.contains("no space left")),
        "{:?}",
        records[0].state
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_journal_stops_startup_and_is_left_untouched() {
    let dir = std::env::temp_dir().join(format!(
        "comfycord-corrupt-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let journal = data.join("journal.sqlite3");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&journal, &garbage).unwrap();
    let config = dir.join("config.json");
    let workflows = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows");
    std::fs::write(
        &config,
        json!({
            "backends": [{"name": "x", "url": "http://127.0.0.1:9"}],
            "workflows_dir": workflows,
            "data_dir": data,
            "discord": {"token": "t", "api_base": "http://127.0.0.1:9"},
        })
        .to_string(),
    )
    .unwrap();
    let cfg = bot::config::Config::load_from(&config, &bot::config::Environment::empty()).unwrap();
    let err = tokio::time::timeout(
        WAIT,
        bot::serve::serve(cfg, &config, std::future::pending()),
    )
    .await
    .expect("returns at once")
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("journal.sqlite3"), "names the file: {msg}");
    assert_eq!(
        std::fs::read(&journal).unwrap(),
        garbage,
        "never overwritten"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_waiting_users_and_the_next_start_resumes() {
    let mut bot = BotUnderTest::start(HarnessOptions {
        config: json!({"discord": {"admin_users": [USER_ID]}}),
        ..HarnessOptions::default()
    })
    .await;
    let pause = bot
        .discord
        .send_interaction(
            InteractionSpec::command("admin")
                .option("pause", json!({"type": 1, "options": []}))
                .in_channel(GENERAL_CHANNEL_ID)
                .by_user(USER_ID),
        )
        .unwrap();
    bot.wait_original(pause.id, WAIT, |m| m.content().contains("Queue paused"))
        .await
        .expect("paused");
    let s = bot
        .discord
        .send_interaction(generate("held over a restart"))
        .unwrap();
    bot.wait_original(s.id, WAIT, |m| {
        embed_title(m).as_deref() == Some("Queued: next up")
    })
    .await
    .expect("queued");
    bot.stop_bot().await.expect("clean stop");
    let told = bot
        .wait_original(s.id, WAIT, |m| {
            embed_title(m).as_deref() == Some("Paused: restarting")
        })
        .await
        .unwrap_or_else(|| panic!("the waiting user is told\n{}", bot.transcript()));
    let text = told.payload["embeds"][0]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("keeps its place"), "{text}");
    // The admin's pause outlives the restart: /status says so, and the job waits for resume.
    bot.start_bot().await;
    let status = bot
        .discord
        .send_interaction(
            InteractionSpec::command("status")
                .in_channel(GENERAL_CHANNEL_ID)
                .by_user(USER_ID),
        )
        .unwrap();
    bot.wait_original(status.id, WAIT, |m| {
        m.payload
            .get("embeds")
            .and_then(|e| e[0]["description"].as_str())
            .is_some_and(|d| d.contains("queue paused") && d.contains("1 waiting"))
    })
    .await
    .unwrap_or_else(|| panic!("still paused after the restart\n{}", bot.transcript()));
    let resume = bot
        .discord
        .send_interaction(
            InteractionSpec::command("admin")
                .option("resume", json!({"type": 1, "options": []}))
                .in_channel(GENERAL_CHANNEL_ID)
                .by_user(USER_ID),
        )
        .unwrap();
    bot.wait_original(resume.id, WAIT, |m| m.content().contains("Queue resumed"))
        .await
        .expect("resumed");
    bot.wait_original(s.id, WAIT, has_result)
        .await
        .unwrap_or_else(|| panic!("delivered after the resume\n{}", bot.transcript()));
    bot.shutdown().await;
}

/// A fake ComfyUI without previews (so only results upload files), `step_ms` per step.
fn plain_comfy(step_ms: u64) -> tests::fake_comfyui::FakeOptions {
    tests::fake_comfyui::FakeOptions {
        previews: false,
        step_delay: Duration::from_millis(step_ms),
        ..tests::fake_comfyui::FakeOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_on_the_result_upload_is_retried() {
    let bot = BotUnderTest::start(HarnessOptions {
        fake_comfy_only: true,
        comfy: plain_comfy(50),
        ..HarnessOptions::default()
    })
    .await;
    let id = sampling(&bot, "through 503s", 10).await;
    bot.discord.faults().fail_next(3, 503, FailWhich::Uploads);
    let r = bot
        .wait_original(id, WAIT, has_result)
        .await
        .unwrap_or_else(|| panic!("the result arrives\n{}", bot.transcript()));
    assert!(r.content().contains("through 503s"));
    let refused = bot
        .discord
        .requests()
        .iter()
        .filter(|r| r.status == 503 && !r.files.is_empty())
        .count();
    assert_eq!(refused, 3, "three uploads refused, then one taken");
    bot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_refusing_every_edit_gets_the_result_posted_as_a_new_message() {
    let bot = BotUnderTest::start(HarnessOptions {
        fake_comfy_only: true,
        comfy: plain_comfy(50),
        config: json!({"discord": {"delivery_retry_secs": 2}}),
        ..HarnessOptions::default()
    })
    .await;
    let s = bot
        .discord
        .send_interaction(generate("edits are down").option("steps", 10))
        .unwrap();
    let original = bot
        .wait_original(s.id, WAIT, is_sampling)
        .await
        .expect("running");
    bot.discord
        .faults()
        .fail_next(u64::MAX, 502, FailWhich::Edits);
    let posted = bot
        .discord
        .wait_for_message(|m| m.id != original.id && has_result(m), WAIT)
        .await
        .unwrap_or_else(|| panic!("the result as a new message\n{}", bot.transcript()));
    bot.discord.faults().fail_next(0, 502, FailWhich::Edits);
    assert!(
        posted.content().contains("edits are down"),
        "{}",
        posted.content()
    );
    assert!(
        !has_result(&bot.discord.message(original.id).unwrap()),
        "the refused edit never landed"
    );
    bot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_offered_again_after_a_restart_posts_nothing_twice() {
    // Twelve images: ten on the result, two in an extra message.
    let many = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 12, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "many"}}
    });
    let manifest = json!({"params": {
        "prompt": {"type": "string", "node": "2", "input": "filename_prefix", "required": true}
    }});
    let mut bot = BotUnderTest::start(HarnessOptions {
        config: json!({"discord": {"delivery_retry_secs": 1}}),
        extra_workflows: vec![("many".into(), many, manifest)],
        ..HarnessOptions::default()
    })
    .await;
    // New messages fail: the result edit lands, the extra message does not.
    bot.discord
        .faults()
        .fail_next(u64::MAX, 503, FailWhich::NewMessages);
    let s = bot
        .discord
        .send_interaction(
            InteractionSpec::command("generate")
                .option("prompt", "dozen")
                .option("workflow", "many")
                .in_channel(GENERAL_CHANNEL_ID)
                .by_user(USER_ID),
        )
        .unwrap();
    let shown = bot
        .wait_original(s.id, WAIT, has_result)
        .await
        .unwrap_or_else(|| panic!("the result\n{}", bot.transcript()));
    assert_eq!(shown.files.len(), 10);
    bot.discord
        .wait_for_request(|r| r.status == 503 && r.files.len() == 2, WAIT)
        .await
        .expect("the extra message is refused");
    bot.stop_bot().await.expect("clean stop");
    bot.discord
        .faults()
        .fail_next(0, 503, FailWhich::NewMessages);
    bot.start_bot().await;
    let extra = bot
        .discord
        .wait_for_message(|m| m.id != shown.id && m.files.len() == 2, WAIT)
        .await
        .unwrap_or_else(|| panic!("the extra files after the restart\n{}", bot.transcript()));
    assert!(!extra.deleted);
    let reqs = bot.discord.requests();
    let result_edits = reqs
        .iter()
        .filter(|r| r.method == "PATCH" && r.files.len() == 10 && r.status == 200)
        .count();
    let extras = reqs
        .iter()
        .filter(|r| r.method == "POST" && r.files.len() == 2 && r.status == 200)
        .count();
    assert_eq!(
        (result_edits, extras),
        (1, 1),
        "the result shown once, the extra posted once\n{}",
        bot.transcript()
    );
    bot.shutdown().await;
}

/// Default detection settings, as an admin gets them: the bound below is the product's.
const LOSS_NOTICED_WITHIN: Duration = Duration::from_secs(10);
/// A backend answering again is back in service (the lost job resubmitted) within this.
const BACK_IN_SERVICE_WITHIN: Duration = Duration::from_secs(10);

fn lost_title(m: &StoredMessage) -> bool {
    embed_title(m).as_deref() == Some("Backend lost: running it again")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_comfyui_is_noticed_at_once_and_its_job_runs_again_when_it_returns() {
    let bot = BotUnderTest::start(HarnessOptions {
        fake_comfy_only: true,
        comfy: slow_comfy(100),
        ..HarnessOptions::default()
    })
    .await;
    let id = sampling(&bot, "through a crash", 30).await;
    let killed_at = std::time::Instant::now();
    bot.comfy.kill().await;
    let lost = bot
        .wait_original(id, WAIT, lost_title)
        .await
        .unwrap_or_else(|| panic!("the member is told\n{}", bot.transcript()));
    let noticed = killed_at.elapsed();
    assert!(
        noticed < LOSS_NOTICED_WITHIN,
        "the loss was noticed after {noticed:?}"
    );
    let why = lost.payload["embeds"][0]["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["name"] == "Why")
        .and_then(|f| f["value"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(
        why.contains("stopped answering") && why.contains("when fake is back"),
        "{why}"
    );
    // /status shows the backend down at once, with the reason.
    let status = bot
        .discord
        .send_interaction(
            InteractionSpec::command("status")
                .in_channel(GENERAL_CHANNEL_ID)
                .by_user(USER_ID),
        )
        .unwrap();
    bot.wait_original(status.id, WAIT, |m| {
        m.payload
            .get("embeds")
            .and_then(|e| e[0]["fields"].as_array().cloned())
            .is_some_and(|f| {
                f.iter().any(|f| {
                    f["name"].as_str().is_some_and(|n| n.contains("🔴"))
                        && f["value"].as_str().is_some_and(|v| v.starts_with("down:"))
                })
            })
    })
    .await
    .unwrap_or_else(|| panic!("/status shows it down\n{}", bot.transcript()));
    // Back: the job is submitted again within seconds, runs, and is delivered once.
    let prompts_before = bot
        .comfy
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/prompt")
        .count();
    let revived_at = std::time::Instant::now();
    bot.comfy.revive().await;
    tests::support::eventually(30, "the job is submitted again", || async {
        let n = bot
            .comfy
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path == "/prompt")
            .count();
        if n > prompts_before {
            Ok(())
        } else {
            Err(format!("{n} prompts"))
        }
    })
    .await;
    let back = revived_at.elapsed();
    // Shown with --nocapture; README quotes these.
    eprintln!("loss noticed after {noticed:?}; back in service after {back:?}");
    assert!(
        back < BACK_IN_SERVICE_WITHIN,
        "back in service after {back:?}"
    );
    bot.wait_original(id, WAIT, has_result)
        .await
        .unwrap_or_else(|| panic!("delivered after the return\n{}", bot.transcript()));
    let result_edits = bot
        .discord
        .requests()
        .iter()
        .filter(|r| {
            r.method == "PATCH"
                && r.status == 200
                && r.files
                    .iter()
                    .any(|f| !f.filename.as_deref().unwrap_or("").starts_with("preview"))
        })
        .count();
    assert_eq!(result_edits, 1, "one result\n{}", bot.transcript());
    bot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_stays_away_fails_the_job_with_a_retry_button() {
    let bot = BotUnderTest::start(HarnessOptions {
        fake_comfy_only: true,
        comfy: slow_comfy(100),
        config: json!({"comfyui": {"lost_job_wait_secs": 2}}),
        ..HarnessOptions::default()
    })
    .await;
    let id = sampling(&bot, "stranded", 30).await;
    bot.comfy.kill().await;
    let (failed, reason) = failure(&bot, id).await;
    assert!(reason.contains("did not come back within 2 s"), "{reason}");
    let retry = button_ids(&failed)
        .into_iter()
        .find(|b| b.starts_with("cc:retry:"))
        .unwrap_or_else(|| panic!("a Retry button: {:?}", button_ids(&failed)));
    // The member presses Retry once the server is back: the same job runs again.
    bot.comfy.revive().await;
    let click = bot
        .discord
        .send_interaction(
            InteractionSpec::button(&retry, Some(failed.id))
                .in_channel(GENERAL_CHANNEL_ID)
                .by_user(USER_ID),
        )
        .unwrap();
    let again = bot
        .wait_original(click.id, WAIT, has_result)
        .await
        .unwrap_or_else(|| panic!("the retried job's result\n{}", bot.transcript()));
    assert!(again.content().contains("stranded"), "{}", again.content());
    // Exactly as before: the same seed.
    let seeds: Vec<_> = bot
        .jobs_of(USER_ID)
        .iter()
        .map(|r| r.spec.values.get("seed").cloned())
        .collect();
    assert_eq!(seeds.len(), 2);
    assert_eq!(seeds[0], seeds[1], "Retry keeps the seed");
    bot.shutdown().await;
}
