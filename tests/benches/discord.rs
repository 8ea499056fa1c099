//! The Discord bot under load, as a separate process against the in-repo fake Discord and fake
//! ComfyUI (both on loopback, in this process), beside a floor: `examples/floor_bot.rs`, the
//! least a serenity + poise bot can do for the same commands on the same fake.
//! 1. ack latency (INTERACTION_CREATE sent → callback request received) of `/status` and
//!    `/generate` in bursts of 50, comfycord (its ComfyUI busy with a long job) against the
//!    floor (aim: within 10 %), and of `/generate` in bursts of 200 whose jobs finish at once;
//! 2. completion overhead (ComfyUI's `execution_success` → the result upload reaching Discord)
//!    over sequential jobs;
//! 3. edit spacing: the closest two edits of one job's message, progress edits against the
//!    configured interval, and whether every job's last edit carries its result;
//! 4. the bot's RSS (VmRSS) idle after READY, and with 1,000 jobs waiting behind a stuck one.
//!
//! Reproduce: `cargo build --release -p bot -p tests --example floor_bot && cargo bench -p
//! tests --bench discord` (append `-- ack`, `-- edits` or `-- rss` for one phase). The fakes
//! share the machine's cores with the bot.

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

/// Rounds of each burst of 50 compared with the floor; each round is drained before the next.
const FLOOR_ROUNDS: usize = 12;
const FLOOR_BURST: usize = 50;
/// Quiet time after each compared burst: one edit interval and a margin.
const SETTLE: Duration = Duration::from_millis(EDIT_INTERVAL_MS + 700);
/// Rounds of the larger `/generate` burst.
const BIG_BURST: (usize, usize) = (200, 3);
const SEQUENTIAL_JOBS: usize = 40;
/// The edit interval the bench configures, and the jobs of the edit-spacing phase: several at
/// once on one backend, so the later ones also show their place in the queue.
const EDIT_INTERVAL_MS: u64 = 1500;
const SPACED_JOBS: usize = 4;
const SPACED_STEPS: u64 = 25;
const SPACED_STEP_DELAY: Duration = Duration::from_millis(120);
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

/// `target/release/<rel>`, beside the `deps/` folder this bench runs from.
fn release_binary(rel: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join(rel))
        .expect("bench executable lives in target/<profile>/deps");
    if !bin.is_file() {
        eprintln!(
            "error: {} not found.\nBuild it first: cargo build --release -p bot -p tests --example floor_bot\n\
             then: cargo bench -p tests --bench discord",
            bin.display()
        );
        std::process::exit(2);
    }
    bin
}

/// Which program a stand runs.
#[derive(Clone, Copy)]
enum Program<'a> {
    Comfycord(&'a Path),
    Floor(&'a Path),
}

/// The commands compared with the floor.
#[derive(Clone, Copy, PartialEq)]
enum Cmd {
    Status,
    Generate,
}

impl Cmd {
    fn name(self) -> &'static str {
        match self {
            Cmd::Status => "/status",
            Cmd::Generate => "/generate",
        }
    }
}

/// Fakes and a bot process; `step_delay` is the fake ComfyUI's time per sampler step.
async fn start(program: Program<'_>, step_delay: Duration, tag: &str) -> Stand {
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
        "progress": {"edit_interval_ms": EDIT_INTERVAL_MS},
        "limits": {"user_per_minute": 60_000, "user_burst": 10_000, "global_per_minute": 1_000_000,
                   "global_burst": 100_000, "max_pending_per_user": 10_000, "max_queue_depth": 100_000},
        "discord": {"token": discord.token(), "api_base": discord.rest_url(), "register_in_guild": GUILD_ID},
    });
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, config.to_string()).expect("write config");
    let log = std::fs::File::create(dir.join("bot.log")).expect("bot.log");
    let mut command = match program {
        Program::Comfycord(bin) => {
            let mut c = Command::new(bin);
            c.arg("--config").arg(&config_path);
            c
        }
        Program::Floor(bin) => {
            let mut c = Command::new(bin);
            c.arg(discord.token())
                .arg(discord.rest_url())
                .arg(GUILD_ID.to_string());
            c
        }
    };
    // A clean environment: DISCORD_TOKEN, COMFYUI_URL and COMFYCORD_* would override the file.
    let child = command
        .current_dir(&dir)
        .env_clear()
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn the bot");
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
            "the bot was not ready in 60 s ({exit:?}):\n{}",
            stand.log_tail()
        );
    }
    stand
}

fn generate(prompt: &str, user: u64) -> InteractionSpec {
    generate_steps(prompt, user, 1)
}

fn generate_steps(prompt: &str, user: u64, steps: u64) -> InteractionSpec {
    InteractionSpec::command("generate")
        .option("prompt", prompt)
        .option("steps", steps)
        .in_channel(GENERAL_CHANNEL_ID)
        .by_user(user)
}

fn spec(cmd: Cmd, label: &str, user: u64) -> InteractionSpec {
    match cmd {
        Cmd::Status => InteractionSpec::command("status")
            .in_channel(GENERAL_CHANNEL_ID)
            .by_user(user),
        Cmd::Generate => generate(label, user),
    }
}

/// Whether the interaction's deferred answer was filled in (the "thinking…" replaced).
fn answered(d: &FakeDiscord, id: u64) -> bool {
    d.interaction(id)
        .and_then(|i| d.message(i.original?))
        .is_some_and(|m| !m.loading)
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
async fn send_burst(d: &FakeDiscord, cmd: Cmd, n: usize, label: &str, first_user: u64) -> Vec<u64> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let spec = spec(cmd, &format!("{label} #{i}#"), first_user + i as u64);
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

/// `rounds` bursts of `n` `cmd`, each drained before the next: every answer filled in, and on
/// comfycord every `/generate` job ended. Returns sorted latencies (ms).
async fn ack_bursts(
    s: &Stand,
    cmd: Cmd,
    jobs: bool,
    (n, rounds): (usize, usize),
    next_user: &mut u64,
) -> Vec<f64> {
    let mut lat = Vec::new();
    for round in 0..rounds {
        let label = format!("{} burst {n} round {round}", cmd.name());
        let ids = send_burst(&s.discord, cmd, n, &label, *next_user).await;
        *next_user += n as u64;
        wait_acked(&s.discord, &ids).await;
        let cbs = callback_times(&s.discord);
        let mut round_lat: Vec<f64> = ids
            .iter()
            .map(|id| ms(cbs[id].duration_since(s.discord.interaction(*id).expect("sent").sent_at)))
            .collect();
        let drained = poll(Duration::from_secs(180), Duration::from_millis(20), || {
            ids.iter().all(|id| {
                if jobs && cmd == Cmd::Generate {
                    job_end(&s.discord, *id).is_some()
                } else {
                    answered(&s.discord, *id)
                }
            })
        })
        .await;
        assert!(drained, "not answered after 180 s:\n{}", s.log_tail());
        round_lat.sort_by(f64::total_cmp);
        lat.extend(round_lat);
    }
    lat.sort_by(f64::total_cmp);
    lat
}

/// Each message's edits (PATCHes of `@original`), in arrival order, for the given interactions.
fn edits_of(d: &FakeDiscord, tokens: &[String]) -> Vec<Vec<RecordedRequest>> {
    let requests = d.requests();
    tokens
        .iter()
        .map(|t| {
            let mut edits: Vec<RecordedRequest> = requests
                .iter()
                .filter(|r| r.method == "PATCH" && r.route().contains(t.as_str()))
                .cloned()
                .collect();
            edits.sort_by_key(|r| r.at);
            edits
        })
        .collect()
}

/// Whether an edit carries the job's result (an upload that is not a preview).
fn is_result_edit(r: &RecordedRequest) -> bool {
    r.files.iter().any(|f| {
        f.filename
            .as_deref()
            .is_some_and(|n| !n.starts_with("preview"))
    })
}

/// Runs `SPACED_JOBS` long jobs at once; per message, the gaps between edits before the
/// result, and the gap to the result edit. Returns (progress gaps, result gaps, edits, jobs
/// whose last edit holds the result).
async fn edit_spacing(s: &Stand) -> (Vec<f64>, Vec<f64>, usize, usize) {
    let mut sent = Vec::new();
    for i in 0..SPACED_JOBS {
        let spec = generate_steps(
            &format!("spaced #{i}#"),
            40_000_000 + i as u64,
            SPACED_STEPS,
        );
        sent.push(s.discord.send_interaction(spec).expect("send interaction"));
    }
    let ids: Vec<u64> = sent.iter().map(|i| i.id).collect();
    let step = SPACED_STEP_DELAY.as_secs_f64() * SPACED_STEPS as f64;
    let budget = Duration::from_secs_f64(60.0 + 4.0 * step * SPACED_JOBS as f64);
    let done = poll(budget, Duration::from_millis(50), || {
        ids.iter().all(|id| job_end(&s.discord, *id).is_some())
    })
    .await;
    assert!(done, "spaced jobs still running:\n{}", s.log_tail());
    let tokens: Vec<String> = sent.iter().map(|i| i.token.clone()).collect();
    let (mut progress, mut result, mut edits, mut last_is_result) = (vec![], vec![], 0, 0);
    for message in edits_of(&s.discord, &tokens) {
        edits += message.len();
        let Some(end) = message.iter().position(is_result_edit) else {
            continue;
        };
        last_is_result += usize::from(end + 1 == message.len());
        for pair in message[..=end].windows(2) {
            let gap = ms(pair[1].at.duration_since(pair[0].at));
            if is_result_edit(&pair[1]) {
                result.push(gap);
            } else {
                progress.push(gap);
            }
        }
    }
    progress.sort_by(f64::total_cmp);
    result.sort_by(f64::total_cmp);
    (progress, result, edits, last_is_result)
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
        let first = 30_000_000 + batch as u64 * 100;
        let sent = send_burst(&s.discord, Cmd::Generate, 100, &label, first).await;
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
    // `cargo bench -p tests --bench discord -- rss` runs only the phases named (ack, edits, rss).
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let run = |phase: &str| only.is_empty() || only.iter().any(|a| a == phase);
    let bin = release_binary("comfycord");
    println!("comfycord: {}", bin.display());
    let comfycord = Program::Comfycord(&bin);

    if run("ack") {
        let floor_bin = release_binary("examples/floor_bot");
        let cmds = [Cmd::Status, Cmd::Generate];
        let mut next_user = 10_000_000;
        // Both bots run at once, each on its own fakes, and take turns burst by burst (who goes
        // first alternates), so a noisy moment of the machine falls on both alike. Beside the
        // floor, comfycord's ComfyUI is busy with a long job, as a real one is for seconds to
        // minutes: each `/generate` is acknowledged, shown as queued, journaled, and waits.
        let floor = start(
            Program::Floor(&floor_bin),
            Duration::from_millis(1),
            "floor",
        )
        .await;
        let busy = start(comfycord, Duration::from_secs(600), "busy").await;
        let (mut floor_lat, mut bot_lat) = (vec![Vec::new(); 2], vec![Vec::new(); 2]);
        // Per command, each round's comfycord p50 over the floor's p50 (paired, so slow drift
        // of the machine cancels out).
        let mut paired = vec![Vec::new(); 2];
        for round in 0..FLOOR_ROUNDS {
            for (i, cmd) in cmds.into_iter().enumerate() {
                let mut turns = [(&floor, &mut floor_lat[i]), (&busy, &mut bot_lat[i])];
                if round % 2 == 1 {
                    turns.reverse();
                }
                let mut p50s = [0.0; 2];
                for (stand, out) in turns {
                    let burst = (FLOOR_BURST, 1);
                    let lat = ack_bursts(stand, cmd, false, burst, &mut next_user).await;
                    p50s[usize::from(std::ptr::eq(stand, &busy))] = pct(&lat, 50.0);
                    out.extend(lat);
                    // Pacing, not a wait for a result: the last burst's later edits (each
                    // job's place in line, one edit interval on) land before the next burst.
                    tokio::time::sleep(SETTLE).await;
                }
                paired[i].push(p50s[1] / p50s[0]);
            }
        }
        drop((floor, busy));
        for lat in floor_lat
            .iter_mut()
            .chain(bot_lat.iter_mut())
            .chain(paired.iter_mut())
        {
            lat.sort_by(f64::total_cmp);
        }
        // A fast ComfyUI (1 step of 1 ms per job): bursts whose jobs also finish at once.
        let s = start(comfycord, Duration::from_millis(1), "fast").await;
        let big = ack_bursts(&s, Cmd::Generate, true, BIG_BURST, &mut next_user).await;
        let overhead = completion_overhead(&s, 20_000_000).await;
        drop(s);
        println!(
            "\nack latency: INTERACTION_CREATE sent → callback received, {FLOOR_ROUNDS} bursts of {FLOOR_BURST}"
        );
        for (i, cmd) in cmds.iter().enumerate() {
            let (f, b) = (&floor_lat[i], &bot_lat[i]);
            let (r50, r99) = (pct(b, 50.0) / pct(f, 50.0), pct(b, 99.0) / pct(f, 99.0));
            let rounds = &paired[i];
            let (lo, mid, hi) = (rounds[0], pct(rounds, 50.0), rounds[rounds.len() - 1]);
            println!("  {:<10} floor     {}", cmd.name(), stats(f));
            println!("  {:<10} comfycord {}", "", stats(b));
            println!(
                "  {:<10} ratio p50 {r50:.2}×  p99 {r99:.2}×  per round p50 median {mid:.2}× ({lo:.2}–{hi:.2})  aim within 10 % of the floor: {}",
                "",
                verdict(r50 <= 1.10 && r99 <= 1.10)
            );
        }
        let late = big.iter().filter(|l| **l > 3000.0).count();
        println!(
            "  /generate  burst {}: {}  over 3 s: {late}",
            BIG_BURST.0,
            stats(&big)
        );
        let median = pct(&overhead, 50.0);
        let (min, max) = (overhead[0], overhead[overhead.len() - 1]);
        println!("\ncompletion overhead: ComfyUI execution_success → result upload received");
        println!(
            "  {} jobs: median {median:.1} ms  min {min:.1} ms  max {max:.1} ms  (ComfyUI stamps whole ms)  aim p50 ≤ 10 ms, max ≤ 50 ms: {}",
            overhead.len(),
            verdict(median <= 10.0 && max <= 50.0)
        );
    }

    if run("edits") {
        let s = start(comfycord, SPACED_STEP_DELAY, "edits").await;
        let (progress, result, edits, last_is_result) = edit_spacing(&s).await;
        drop(s);
        let interval = EDIT_INTERVAL_MS as f64;
        println!(
            "\nedit spacing: {SPACED_JOBS} jobs of {SPACED_STEPS} steps at once, edit interval {EDIT_INTERVAL_MS} ms, {edits} edits"
        );
        let closest = progress.first().copied().unwrap_or(f64::NAN);
        println!(
            "  progress edits: {} gaps, closest {closest:.1} ms, median {:.1} ms  aim ≥ {interval} ms: {}",
            progress.len(),
            pct(&progress, 50.0),
            verdict(closest >= interval)
        );
        println!(
            "  result edit after the last progress edit: closest {:.1} ms, median {:.1} ms (sent at once, not held back)",
            result.first().copied().unwrap_or(f64::NAN),
            pct(&result, 50.0)
        );
        println!(
            "  last edit holds the result: {last_is_result}/{SPACED_JOBS} jobs  aim all: {}",
            verdict(last_is_result == SPACED_JOBS)
        );
    }

    if run("rss") {
        let floor_bin = release_binary("examples/floor_bot");
        let floor = start(
            Program::Floor(&floor_bin),
            Duration::from_millis(1),
            "floor",
        )
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (floor_idle, _, floor_anon) = floor.rss_mib();
        drop(floor);
        // RSS: a ComfyUI whose first job never finishes, so every later job waits in the bot.
        let s = start(comfycord, Duration::from_secs(600), "slow").await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (idle, _, idle_anon) = s.rss_mib();
        let (queued, failed) = queue_up(&s).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (loaded, peak, anon) = s.rss_mib();
        drop(s);
        println!("\nbot RSS (VmRSS of the comfycord process; heap and stacks = RssAnon)");
        println!("  the floor bot idle: {floor_idle:>6.1} MiB (anon {floor_anon:>5.1})");
        let aim = verdict(idle <= 12.0);
        println!(
            "  idle after READY:  {idle:>6.1} MiB (anon {idle_anon:>5.1})  aim ≤ 12 MiB: {aim}"
        );
        let aim = verdict(loaded < 40.0 && queued == QUEUED_JOBS);
        println!(
            "  {queued} jobs queued: {loaded:>6.1} MiB (anon {anon:>5.1})  aim < 40 MiB: {aim}  \
             peak VmHWM {peak:.1} MiB, {failed} refused/failed"
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    bench().await;
}
