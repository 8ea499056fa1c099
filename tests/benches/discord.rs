//! The Discord bot under load, as a separate `comfycord` process against the in-repo fake
//! Discord and fake ComfyUI (both on loopback, in this process):
//! 1. ack latency (INTERACTION_CREATE sent → callback request received) for single
//!    interactions (baseline) and bursts of 50 and 200 `/generate`, p50/p99 over rounds;
//! 2. the bot's RSS (VmRSS) idle after READY, and with 1,000 jobs waiting behind a stuck one;
//! 3. completion overhead (ComfyUI's `execution_success` → the result upload reaching Discord),
//!    median over sequential jobs.
//!
//! Reproduce: `cargo build --release -p bot && cargo bench -p tests --bench discord`
//! (append `-- ack` or `-- rss` for one phase). The fakes share the machine's cores with the bot.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tests::bot_harness::{copy_workflows, embed_title};
use tests::fake_comfyui::{FakeComfy, FakeOptions};
use tests::fake_discord::{
    FakeDiscord, InteractionSpec, RecordedRequest, GENERAL_CHANNEL_ID, GUILD_ID,
};

/// (burst size, rounds); each round is drained before the next.
const BURSTS: [(usize, usize); 3] = [(1, 20), (50, 5), (200, 5)];
const SEQUENTIAL_JOBS: usize = 20;
const QUEUED_JOBS: usize = 1_000;
/// A `comfycord` child with its own fakes; the child is killed (and its folder removed) when
/// this is dropped, panics included, before the fakes stop.
struct Stand {
    child: Child,
    dir: PathBuf,
    discord: FakeDiscord,
    comfy: FakeComfy,
}

impl Drop for Stand {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Stand {
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("bot.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// `(VmRSS, VmHWM, RssAnon)` in MiB.
    fn rss_mib(&self) -> (f64, f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/<pid>/status of the bot");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
                .map_or(0.0, |kib| kib / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"), field("RssAnon:"))
    }
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

/// Fakes and a bot process; `step_delay` is the fake ComfyUI's time per sampler step.
async fn start(bin: &Path, step_delay: Duration, tag: &str) -> Stand {
    let discord = FakeDiscord::start().await;
    // Measure late acks instead of refusing them (Discord's 3 s deadline is reported).
    discord.faults().set_ack_deadline(None);
    let opts = FakeOptions {
        step_delay,
        ..FakeOptions::default()
    };
    let comfy = FakeComfy::start_with(opts).await;
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
    // A clean environment: DISCORD_TOKEN, COMFYUI_URL and COMFYCORD_* would override the file.
    let child = Command::new(bin)
        .arg("--config")
        .arg(&config_path)
        .current_dir(&dir)
        .env_clear()
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn comfycord");
    let mut stand = Stand {
        child,
        dir,
        discord,
        comfy,
    };
    // Ready = commands registered in the guild (poise's setup, after READY).
    let route = format!("/guilds/{GUILD_ID}/commands");
    let registered = |r: &RecordedRequest| r.method == "PUT" && r.route().ends_with(&route);
    let ready = stand
        .discord
        .wait_for_request(registered, Duration::from_secs(60));
    if ready.await.is_none() {
        let exit = stand.child.try_wait();
        panic!(
            "comfycord not ready in 60 s ({exit:?}):\n{}",
            stand.log_tail()
        );
    }
    stand
}

fn generate(prompt: &str, user: u64) -> InteractionSpec {
    InteractionSpec::command("generate")
        .option("prompt", prompt)
        .option("steps", 1)
        .in_channel(GENERAL_CHANNEL_ID)
        .by_user(user)
}

/// How an interaction's job ended, from its original message: `Some(true)` with a result,
/// `Some(false)` refused or failed, `None` while it waits or runs.
fn job_end(d: &FakeDiscord, id: u64) -> Option<bool> {
    let m = d.message(d.interaction(id)?.original?)?;
    if m.deleted || matches!(embed_title(&m).as_deref(), Some("Failed" | "Cancelled")) {
        return Some(false);
    }
    let result = !m.files.is_empty() && !m.files.iter().any(|f| f.filename.starts_with("preview"));
    result.then_some(true)
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

/// Sends `n` interactions back to back from distinct users; returns their ids. Yields after
/// each so the fake's gateway task can write each frame soon after its `sent_at`.
async fn send_burst(d: &FakeDiscord, n: usize, label: &str, first_user: u64) -> Vec<u64> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let spec = generate(&format!("{label} #{i}#"), first_user + i as u64);
        ids.push(d.send_interaction(spec).expect("send interaction").id);
        tokio::task::yield_now().await;
    }
    ids
}

/// Interaction id → when its first callback arrived.
fn callback_times(d: &FakeDiscord) -> HashMap<u64, Instant> {
    let callbacks = d.requests().into_iter().rev(); // the earliest is inserted last
    let id = |r: &RecordedRequest| {
        r.route()
            .strip_prefix("/interactions/")?
            .split('/')
            .next()?
            .parse()
            .ok()
    };
    callbacks
        .filter(|r| r.method == "POST" && r.route().ends_with("/callback"))
        .filter_map(|r| Some((id(&r)?, r.at)))
        .collect()
}

/// Nearest-rank percentile of sorted samples.
fn pct(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// p50, p99 and max of sorted samples (ms).
fn stats(v: &[f64]) -> String {
    let (p50, p99, max) = (pct(v, 50.0), pct(v, 99.0), v[v.len() - 1]);
    format!("p50 {p50:>7.2} ms  p99 {p99:>7.2} ms  max {max:>7.2} ms")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn verdict(ok: bool) -> &'static str {
    ["MISSED", "ok"][usize::from(ok)]
}

/// Waits until every interaction got its callback.
async fn wait_acked(d: &FakeDiscord, ids: &[u64]) {
    let acked = |id: &u64| d.interaction(*id).is_some_and(|i| !i.acks.is_empty());
    let ok = poll(Duration::from_secs(30), Duration::from_millis(25), || {
        ids.iter().all(acked)
    })
    .await;
    assert!(ok, "not every interaction was acknowledged within 30 s");
}

fn count_failed(d: &FakeDiscord, ids: &[u64]) -> usize {
    let failed = |id: &&u64| job_end(d, **id) == Some(false);
    ids.iter().filter(failed).count()
}

/// `rounds` bursts of `n`, each drained before the next. Returns sorted latencies (ms).
async fn ack_bursts(s: &Stand, n: usize, rounds: usize, next_user: &mut u64) -> Vec<f64> {
    let mut lat = Vec::new();
    for round in 0..rounds {
        let label = format!("burst {n} round {round}");
        let ids = send_burst(&s.discord, n, &label, *next_user).await;
        *next_user += n as u64;
        wait_acked(&s.discord, &ids).await;
        let cbs = callback_times(&s.discord);
        let mut round_lat: Vec<f64> = ids
            .iter()
            .map(|id| ms(cbs[id].duration_since(s.discord.interaction(*id).expect("sent").sent_at)))
            .collect();
        let drained = poll(Duration::from_secs(180), Duration::from_millis(20), || {
            ids.iter().all(|id| job_end(&s.discord, *id).is_some())
        })
        .await;
        assert!(drained, "jobs running after 180 s:\n{}", s.log_tail());
        round_lat.sort_by(f64::total_cmp);
        if n > 1 {
            let failed = count_failed(&s.discord, &ids);
            println!(
                "  burst {n:>3} round {round}: {}  ({failed} jobs failed)",
                stats(&round_lat)
            );
        }
        lat.extend(round_lat);
    }
    lat.sort_by(f64::total_cmp);
    lat
}

/// Sequential jobs: ms from ComfyUI's `execution_success` to the result upload arriving.
async fn completion_overhead(s: &Stand, first_user: u64) -> Vec<f64> {
    // ComfyUI stamps epoch ms; the fake Discord's `Instant`s are mapped onto that clock.
    let epoch = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    let anchor = Instant::now();
    let url = format!("{}/history?max_items=1", s.comfy.url());
    let mut out = Vec::new();
    for i in 0..SEQUENTIAL_JOBS {
        let marker = format!("completion overhead #{i}#");
        let spec = generate(&marker, first_user + i as u64);
        let sent = s.discord.send_interaction(spec).expect("send interaction");
        let done = poll(Duration::from_secs(30), Duration::from_millis(5), || {
            job_end(&s.discord, sent.id).is_some()
        })
        .await;
        assert!(done, "job {i} did not end in 30 s:\n{}", s.log_tail());
        let is_result = |r: &RecordedRequest| {
            r.method != "GET"
                && r.route().contains(&sent.token)
                && r.files.iter().any(|f| {
                    f.filename
                        .as_deref()
                        .is_some_and(|n| !n.starts_with("preview"))
                })
        };
        let upload = s.discord.requests().into_iter().find(is_result);
        let upload = upload.expect("the result upload reached Discord");
        // One job at a time: the newest history entry is this job's.
        let get = async { reqwest::get(&url).await?.json::<Value>().await };
        let history = tokio::time::timeout(Duration::from_secs(10), get).await;
        let history = history
            .expect("GET /history in 10 s")
            .expect("GET /history");
        let entry = history
            .as_object()
            .and_then(|h| h.values().next())
            .expect("an entry");
        assert!(
            entry["prompt"].to_string().contains(&marker),
            "newest entry is job {i}"
        );
        let messages = entry["status"]["messages"].as_array().into_iter().flatten();
        let finished = messages
            .filter(|m| m[0] == "execution_success")
            .find_map(|m| m[1]["timestamp"].as_f64())
            .expect("execution_success in the history");
        out.push(ms(epoch + upload.at.duration_since(anchor)) - finished);
    }
    out.sort_by(f64::total_cmp);
    out
}

/// Sends `QUEUED_JOBS` interactions in batches of 100 and waits until the scheduler took each
/// job: the progress sink replaced start_job's "Queued" title ("Queued: N ahead of you", or a
/// later phase). Returns (queued, refused or failed).
async fn queue_up(s: &Stand) -> (usize, usize) {
    let mut ids = Vec::new();
    for batch in 0..QUEUED_JOBS / 100 {
        let label = format!("queued batch {batch}");
        let sent = send_burst(&s.discord, 100, &label, 30_000_000 + batch as u64 * 100).await;
        wait_acked(&s.discord, &sent).await;
        ids.extend(sent);
    }
    let d = &s.discord;
    let settled = |id: &u64| {
        job_end(d, *id).is_some()
            || d.interaction(*id)
                .and_then(|i| d.message(i.original?))
                .and_then(|m| embed_title(&m))
                .is_some_and(|t| t != "Queued")
    };
    let ok = poll(Duration::from_secs(180), Duration::from_millis(200), || {
        ids.iter().all(settled)
    })
    .await;
    let waiting = ids.iter().filter(|id| !settled(id)).count();
    assert!(ok, "{waiting} not queued in 180 s:\n{}", s.log_tail());
    let failed = count_failed(d, &ids);
    (ids.len() - failed, failed)
}

async fn bench() {
    let bin = bot_binary();
    // `cargo bench -p tests --bench discord -- rss` runs only the phases named (ack, rss).
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let run = |phase: &str| only.is_empty() || only.iter().any(|a| a == phase);
    println!("comfycord: {}", bin.display());

    if run("ack") {
        // Ack latency and completion overhead: a fast ComfyUI (1 step of 1 ms per job).
        let s = start(&bin, Duration::from_millis(1), "fast").await;
        let mut next_user = 10_000_000;
        let mut acks = Vec::new();
        for (n, rounds) in BURSTS {
            acks.push((n, ack_bursts(&s, n, rounds, &mut next_user).await));
        }
        let overhead = completion_overhead(&s, 20_000_000).await;
        drop(s);
        println!("\nack latency: INTERACTION_CREATE sent → callback received, all rounds");
        for (n, lat) in &acks {
            let late = lat.iter().filter(|l| **l > 3000.0).count();
            let aim = if *n == 50 {
                verdict(pct(lat, 99.0) < 5.0)
            } else {
                "-"
            };
            let count = lat.len();
            println!(
                "  burst {n:>3}: {count:>4} acks  {}  over 3 s: {late}  aim p99 < 5 ms: {aim}",
                stats(lat)
            );
        }
        let median = pct(&overhead, 50.0);
        let (min, max) = (overhead[0], overhead[overhead.len() - 1]);
        println!("\ncompletion overhead: ComfyUI execution_success → result upload received");
        println!(
            "  {} jobs: median {median:.1} ms  min {min:.1} ms  max {max:.1} ms  (ComfyUI stamps whole ms)  aim < 50 ms: {}",
            overhead.len(),
            verdict(median < 50.0)
        );
    }

    if run("rss") {
        // RSS: a ComfyUI whose first job never finishes, so every later job waits in the bot.
        let s = start(&bin, Duration::from_secs(600), "slow").await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (idle, _, idle_anon) = s.rss_mib();
        let (queued, failed) = queue_up(&s).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (loaded, peak, anon) = s.rss_mib();
        drop(s);
        println!("\nbot RSS (VmRSS of the comfycord process; heap and stacks = RssAnon)");
        let aim = verdict(idle < 30.0);
        println!(
            "  idle after READY:  {idle:>6.1} MiB (anon {idle_anon:>5.1})  aim < 30 MiB: {aim}"
        );
        let aim = verdict(loaded < 64.0 && queued == QUEUED_JOBS);
        println!(
            "  {queued} jobs queued: {loaded:>6.1} MiB (anon {anon:>5.1})  aim < 64 MiB: {aim}  \
             peak VmHWM {peak:.1} MiB, {failed} refused/failed"
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    bench().await;
}
