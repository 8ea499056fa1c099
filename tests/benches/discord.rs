//! The Discord bot under load, as a separate `comfycord` process against the in-repo fake
//! Discord and fake ComfyUI (both on loopback, in this process):
//! 1. ack latency (INTERACTION_CREATE sent → callback request received) for bursts of 50 and
//!    200 `/generate` interactions, p50/p99 over several rounds;
//! 2. the bot's RSS (VmRSS) idle after READY, and with 1,000 jobs waiting behind a stuck one;
//! 3. completion overhead (ComfyUI's `execution_success` → the result upload reaching Discord),
//!    median over sequential jobs.
//!
//! Reproduce: `cargo build --release -p bot && cargo bench -p tests --bench discord`

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tests::bot_harness::embed_title;
use tests::fake_comfyui::{FakeComfy, FakeOptions};
use tests::fake_discord::{FakeDiscord, InteractionSpec, GENERAL_CHANNEL_ID, GUILD_ID};

const ROUNDS: usize = 5;
const BURSTS: [usize; 2] = [50, 200];
const SEQUENTIAL_JOBS: usize = 20;
const QUEUED_JOBS: usize = 1_000;
/// The example models and the fake ComfyUI's stand-ins (as `bot_harness` does).
const MODEL_STAND_INS: [(&str, &str); 3] = [
    (
        "v1-5-pruned-emaonly.safetensors",
        "tiny_sd15_random.safetensors",
    ),
    ("RealESRGAN_x4plus.pth", "tiny_random_x4.safetensors"),
    ("add_detail.safetensors", "tiny_random_lora.safetensors"),
];

/// The `comfycord` child; killed (and its folder removed) when dropped, panics included.
struct BotProcess {
    child: Child,
    dir: PathBuf,
}

impl Drop for BotProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl BotProcess {
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("bot.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// `(VmRSS, VmHWM)` in KiB.
    fn rss_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/<pid>/status of the bot");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

/// A bot process with its own fakes. Field order: the bot stops before the fakes.
struct Stand {
    bot: BotProcess,
    discord: FakeDiscord,
    comfy: FakeComfy,
}

/// `target/release/comfycord`, next to the `deps/` folder this bench runs from.
fn bot_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("comfycord"))
        .expect("bench executable lives in target/<profile>/deps");
    if !bin.is_file() {
        eprintln!(
            "error: {} not found.\nBuild the bot first: cargo build --release -p bot\n\
             then: cargo bench -p tests --bench discord",
            bin.display()
        );
        std::process::exit(2);
    }
    bin
}

fn copy_workflows(into: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows");
    std::fs::create_dir_all(into).expect("workflows dir");
    for entry in std::fs::read_dir(&src).expect("read workflows/") {
        let path = entry.expect("entry").path();
        if !path.is_file() {
            continue;
        }
        let mut text = std::fs::read_to_string(&path).expect("read workflow");
        for (from, to) in MODEL_STAND_INS {
            text = text.replace(from, to);
        }
        std::fs::write(into.join(path.file_name().expect("name")), text).expect("copy workflow");
    }
}

async fn start(bin: &Path, comfy_opts: FakeOptions, tag: &str) -> Stand {
    let discord = FakeDiscord::start().await;
    // Measure late acks instead of refusing them (Discord's 3 s deadline is reported).
    discord.faults().set_ack_deadline(None);
    let comfy = FakeComfy::start_with(comfy_opts).await;
    let dir = std::env::temp_dir().join(format!("comfycord-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_workflows(&dir.join("workflows"));
    let config = json!({
        "backends": [{"name": "fake", "url": comfy.url()}],
        "workflows_dir": dir.join("workflows"),
        "data_dir": dir.join("data"),
        "outputs": {"dir": dir.join("outputs")},
        "progress": {"edit_interval_ms": 1500},
        "limits": {"user_per_minute": 60_000, "user_burst": 10_000, "global_per_minute": 1_000_000,
                   "global_burst": 100_000, "max_pending_per_user": 10_000, "max_queue_depth": 100_000},
        "discord": {"token": discord.token(), "api_base": discord.rest_url(), "register_in_guild": GUILD_ID},
    });
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, config.to_string()).expect("write config");
    let log = std::fs::File::create(dir.join("bot.log")).expect("bot.log");
    let mut cmd = Command::new(bin);
    cmd.arg("--config")
        .arg(&config_path)
        .current_dir(&dir)
        .env("RUST_LOG", "warn")
        .env_remove("DISCORD_TOKEN")
        .env_remove("COMFYUI_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("COMFYCORD_")) {
        cmd.env_remove(k);
    }
    let child = cmd.spawn().expect("spawn comfycord");
    let mut stand = Stand {
        bot: BotProcess { child, dir },
        discord,
        comfy,
    };
    // Ready = commands registered in the guild (poise's setup, after READY).
    let route = format!("/guilds/{GUILD_ID}/commands");
    for _ in 0..120 {
        let put = stand
            .discord
            .wait_for_request(
                |r| r.method == "PUT" && r.route().ends_with(&route) && r.status == 200,
                Duration::from_millis(500),
            )
            .await;
        if put.is_some() {
            return stand;
        }
        if let Ok(Some(status)) = stand.bot.child.try_wait() {
            panic!("comfycord exited ({status}):\n{}", stand.bot.log_tail());
        }
    }
    panic!(
        "comfycord did not register its commands within 60 s:\n{}",
        stand.bot.log_tail()
    );
}

fn generate(prompt: &str, user: u64) -> InteractionSpec {
    InteractionSpec::command("generate")
        .option("prompt", prompt)
        .option("steps", 1)
        .in_channel(GENERAL_CHANNEL_ID)
        .by_user(user)
}

/// How an interaction's job ended, from its original message; `None` while it runs.
#[derive(PartialEq)]
enum End {
    Result,
    Failed,
}

fn job_end(d: &FakeDiscord, id: u64) -> Option<End> {
    let m = d.message(d.interaction(id)?.original?)?;
    if m.deleted || matches!(embed_title(&m).as_deref(), Some("Failed" | "Cancelled")) {
        return Some(End::Failed);
    }
    let result = !m.files.is_empty() && !m.files.iter().any(|f| f.filename.starts_with("preview"));
    result.then_some(End::Result)
}

/// Polls `done` every `every` until it holds or `timeout` passes; light on the CPU the bot needs.
async fn poll(timeout: Duration, every: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(every).await;
    }
    done()
}

/// Sends `n` interactions at once from distinct users; returns their ids.
fn send_burst(d: &FakeDiscord, n: usize, label: &str, first_user: u64) -> Vec<u64> {
    (0..n)
        .map(|i| {
            let spec = generate(&format!("{label} #{i}#"), first_user + i as u64);
            d.send_interaction(spec).expect("send interaction").id
        })
        .collect()
}

/// Interaction id → when its first callback arrived.
fn callback_times(d: &FakeDiscord) -> HashMap<u64, Instant> {
    let mut out = HashMap::new();
    for r in d.requests() {
        let parts: Vec<&str> = r.route().split('/').collect();
        if r.method == "POST"
            && parts.len() == 5
            && parts[1] == "interactions"
            && parts[4] == "callback"
        {
            if let Ok(id) = parts[2].parse() {
                out.entry(id).or_insert(r.at);
            }
        }
    }
    out
}

/// Nearest-rank percentile of sorted samples.
fn pct(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISSED"
    }
}

/// One burst size: `ROUNDS` bursts, each drained before the next. Returns sorted latencies (ms).
async fn ack_bursts(s: &Stand, n: usize, next_user: &mut u64) -> Vec<f64> {
    let mut lat = Vec::new();
    for round in 0..ROUNDS {
        let ids = send_burst(
            &s.discord,
            n,
            &format!("burst {n} round {round}"),
            *next_user,
        );
        *next_user += n as u64;
        let acked = poll(Duration::from_secs(30), Duration::from_millis(25), || {
            ids.iter().all(|id| {
                s.discord
                    .interaction(*id)
                    .is_some_and(|i| !i.acks.is_empty())
            })
        })
        .await;
        assert!(
            acked,
            "burst of {n}: not every interaction was acknowledged within 30 s"
        );
        let cbs = callback_times(&s.discord);
        let mut round_lat = Vec::new();
        for id in &ids {
            let sent = s.discord.interaction(*id).expect("sent").sent_at;
            round_lat.push(ms(cbs[id].duration_since(sent)));
        }
        // Drain: every job of the round ends before the next burst.
        let drained = poll(Duration::from_secs(180), Duration::from_millis(100), || {
            ids.iter().all(|id| job_end(&s.discord, *id).is_some())
        })
        .await;
        assert!(
            drained,
            "burst of {n}: jobs still running after 180 s:\n{}",
            s.bot.log_tail()
        );
        let failed = ids
            .iter()
            .filter(|id| job_end(&s.discord, **id) == Some(End::Failed))
            .count();
        round_lat.sort_by(f64::total_cmp);
        println!(
            "  burst {n:>3} round {}: ack p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms{}",
            round + 1,
            pct(&round_lat, 50.0),
            pct(&round_lat, 99.0),
            round_lat[round_lat.len() - 1],
            if failed > 0 {
                format!("  ({failed} jobs failed)")
            } else {
                String::new()
            }
        );
        lat.extend(round_lat);
    }
    lat.sort_by(f64::total_cmp);
    lat
}

/// Sequential jobs: ms from ComfyUI's `execution_success` to the result upload arriving.
async fn completion_overhead(s: &Stand, first_user: u64) -> Vec<f64> {
    // Epoch milliseconds of an `Instant`, for ComfyUI's `timestamp` (epoch ms).
    let (anchor_sys, anchor) = (SystemTime::now(), Instant::now());
    let epoch_ms = |t: Instant| {
        let base = anchor_sys.duration_since(UNIX_EPOCH).expect("clock");
        ms(base)
            + (t.duration_since(anchor).as_secs_f64() - anchor.duration_since(t).as_secs_f64())
                * 1000.0
    };
    let mut uploads = Vec::new();
    for i in 0..SEQUENTIAL_JOBS {
        let marker = format!("completion overhead #{i}#");
        let sent = s
            .discord
            .send_interaction(generate(&marker, first_user + i as u64))
            .expect("send interaction");
        let done = poll(Duration::from_secs(30), Duration::from_millis(5), || {
            job_end(&s.discord, sent.id).is_some()
        })
        .await;
        assert!(
            done,
            "job {i} did not end within 30 s:\n{}",
            s.bot.log_tail()
        );
        let upload = s
            .discord
            .requests()
            .into_iter()
            .find(|r| {
                matches!(r.method.as_str(), "PATCH" | "POST")
                    && r.route().contains(&sent.token)
                    && r.files.iter().any(|f| {
                        f.filename
                            .as_deref()
                            .is_some_and(|n| !n.starts_with("preview"))
                    })
            })
            .unwrap_or_else(|| panic!("job {i}: no result upload reached Discord"));
        uploads.push((marker, upload.at));
    }
    let history: Value = reqwest::Client::new()
        .get(format!(
            "{}/history?max_items={}",
            s.comfy.url(),
            SEQUENTIAL_JOBS * 2
        ))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("GET /history")
        .json()
        .await
        .expect("history JSON");
    let entries = history.as_object().expect("history object");
    let mut out = Vec::new();
    for (marker, at) in uploads {
        let entry = entries
            .values()
            .find(|e| e["prompt"].to_string().contains(&marker))
            .unwrap_or_else(|| panic!("no history entry for {marker:?}"));
        let finished = entry["status"]["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m[0] == "execution_success")
            .and_then(|m| m[1]["timestamp"].as_f64())
            .unwrap_or_else(|| panic!("no execution_success for {marker:?}"));
        out.push(epoch_ms(at) - finished);
    }
    out.sort_by(f64::total_cmp);
    out
}

/// Sends `QUEUED_JOBS` interactions in batches and waits until each job is queued (its message
/// edited by the progress sink after the scheduler took it) or ended.
async fn queue_up(s: &Stand) -> (usize, usize) {
    let mut ids = Vec::new();
    for batch in 0..QUEUED_JOBS / 100 {
        let sent = send_burst(
            &s.discord,
            100,
            &format!("queued batch {batch}"),
            30_000_000 + batch as u64 * 100,
        );
        let acked = poll(Duration::from_secs(30), Duration::from_millis(25), || {
            sent.iter().all(|id| {
                s.discord
                    .interaction(*id)
                    .is_some_and(|i| !i.acks.is_empty())
            })
        })
        .await;
        assert!(acked, "queued batch {batch}: not acknowledged within 30 s");
        ids.extend(sent);
    }
    let settled = |id: &u64| {
        let d = &s.discord;
        job_end(d, *id).is_some()
            || d.interaction(*id)
                .and_then(|i| d.message(i.original?))
                .is_some_and(|m| m.edits >= 2)
    };
    let ok = poll(Duration::from_secs(180), Duration::from_millis(200), || {
        ids.iter().all(settled)
    })
    .await;
    assert!(
        ok,
        "not every job was queued within 180 s:\n{}",
        s.bot.log_tail()
    );
    let failed = ids
        .iter()
        .filter(|id| job_end(&s.discord, **id) == Some(End::Failed))
        .count();
    (ids.len() - failed, failed)
}

async fn bench() {
    let bin = bot_binary();
    println!("comfycord: {}", bin.display());

    // Ack latency and completion overhead: a fast ComfyUI (1 step of 1 ms per job).
    let fast = FakeOptions {
        step_delay: Duration::from_millis(1),
        ..FakeOptions::default()
    };
    let s = start(&bin, fast, "fast").await;
    let mut next_user = 10_000_000;
    let mut acks = Vec::new();
    for n in BURSTS {
        acks.push((n, ack_bursts(&s, n, &mut next_user).await));
    }
    let overhead = completion_overhead(&s, 20_000_000).await;
    drop(s);

    // RSS: a ComfyUI whose first job never finishes, so every later job waits in the bot.
    let slow = FakeOptions {
        step_delay: Duration::from_secs(600),
        ..FakeOptions::default()
    };
    let s = start(&bin, slow, "slow").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle, _) = s.bot.rss_kib();
    let (queued, failed) = queue_up(&s).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (loaded, peak) = s.bot.rss_kib();
    drop(s);

    println!("\nack latency: INTERACTION_CREATE sent → callback received ({ROUNDS} rounds each)");
    println!("  burst  samples    p50 ms    p99 ms    max ms  acks > 3 s  aim (p99 < 5 ms @ 50)");
    for (n, lat) in &acks {
        let p99 = pct(lat, 99.0);
        let late = lat.iter().filter(|l| **l > 3000.0).count();
        let aim = if *n == 50 { verdict(p99 < 5.0) } else { "-" };
        println!(
            "  {n:>5}  {:>7}  {:>8.2}  {:>8.2}  {:>8.2}  {late:>10}  {aim}",
            lat.len(),
            pct(lat, 50.0),
            p99,
            lat[lat.len() - 1]
        );
    }
    let median = pct(&overhead, 50.0);
    println!("\ncompletion overhead: ComfyUI execution_success → result upload received");
    println!(
        "  {} jobs: median {median:.1} ms  min {:.1} ms  max {:.1} ms  (ComfyUI timestamps are whole ms)  aim < 50 ms: {}",
        overhead.len(),
        overhead[0],
        overhead[overhead.len() - 1],
        verdict(median < 50.0)
    );
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!("\nbot RSS (VmRSS of the comfycord process)");
    println!(
        "  idle after READY:     {:>6.1} MiB  aim < 30 MiB: {}",
        mib(idle),
        verdict(mib(idle) < 30.0)
    );
    println!(
        "  {queued} jobs queued:    {:>6.1} MiB  aim < 64 MiB: {}  (peak VmHWM {:.1} MiB{})",
        mib(loaded),
        verdict(mib(loaded) < 64.0 && queued == QUEUED_JOBS),
        mib(peak),
        if failed > 0 {
            format!(", {failed} refused/failed")
        } else {
            String::new()
        }
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(bench());
}
