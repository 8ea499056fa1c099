//! The real bot (`bot::serve::serve`) run against the fake Discord and the fake ComfyUI, all on
//! loopback, with its config, journal and outputs in a temp folder. Used by the end-to-end
//! suite and the bench binary.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::fake_comfyui::{self, FakeComfy};
use crate::fake_discord::{
    self, FakeDiscord, InteractionSpec, StoredMessage, GENERAL_CHANNEL_ID, GUILD_ID, USER_ID,
};

/// Start-up (gateway session and command registration) must finish within this.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How the bot under test is set up.
#[derive(Clone, Debug)]
pub struct HarnessOptions {
    pub discord: fake_discord::FakeOptions,
    pub comfy: fake_comfyui::FakeOptions,
    /// Merged over the generated config (objects merge key by key).
    pub config: Value,
    /// Extra workflows: (name, workflow JSON, manifest JSON), written beside the examples.
    pub extra_workflows: Vec<(String, Value, Value)>,
    /// Use the fake ComfyUI even when `COMFYUI_URL` names a real one (the test needs the
    /// fake's switches or its request log).
    pub fake_comfy_only: bool,
}

impl Default for HarnessOptions {
    fn default() -> Self {
        HarnessOptions {
            discord: fake_discord::FakeOptions::default(),
            comfy: fake_comfyui::FakeOptions::default(),
            config: json!({}),
            extra_workflows: Vec::new(),
            fake_comfy_only: false,
        }
    }
}

/// A running bot with its fakes.
pub struct BotUnderTest {
    pub discord: FakeDiscord,
    pub comfy: FakeComfy,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    bot: Option<(oneshot::Sender<()>, JoinHandle<anyhow::Result<()>>)>,
}

impl std::fmt::Debug for BotUnderTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotUnderTest")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// The config the harness runs the bot with: the fake Discord (serenity's rate limiter on),
/// one backend at `comfy_url`, workflows, data and outputs under `dir`, generous limits.
pub fn base_config(discord: &FakeDiscord, comfy_url: &str, dir: &Path) -> Value {
    json!({
        "backends": [{"name": "fake", "url": comfy_url}],
        "workflows_dir": dir.join("workflows"),
        "data_dir": dir.join("data"),
        "outputs": {"dir": dir.join("outputs")},
        "progress": {"edit_interval_ms": 100},
        "limits": {"user_per_minute": 600, "user_burst": 100, "global_per_minute": 6000,
                   "global_burst": 1000, "max_pending_per_user": 50, "max_queue_depth": 2000},
        "discord": {
            "token": discord.token(),
            // Attachments are served here; with `tls_override`, nothing else is.
            "api_base": discord.rest_url(),
            // As in production: serenity's rate limiter on, talking to "discord.com".
            "tls_override": {
                "address": discord.tls_address(),
                "ca_file": fake_discord::tls::ca_file(),
            },
            "register_in_guild": GUILD_ID,
        },
    })
}

/// A fresh temp folder for one bot.
pub fn temp_dir(tag: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("comfycord-bot-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The example models and the fake ComfyUI's (the real test server's) stand-ins for them.
const MODEL_STAND_INS: [(&str, &str); 3] = [
    (
        "v1-5-pruned-emaonly.safetensors",
        "tiny_sd15_random.safetensors",
    ),
    ("RealESRGAN_x4plus.pth", "tiny_random_x4.safetensors"),
    ("add_detail.safetensors", "tiny_random_lora.safetensors"),
];

/// Copies the example workflows, pointed at the models the test server has, as an admin
/// would edit them for their own models.
pub fn copy_workflows(into: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows");
    std::fs::create_dir_all(into).expect("workflows dir");
    // The wildcards folder as it is (lists of words, no models in them).
    let wild = src.join(generators::styles::WILDCARDS_DIR);
    if wild.is_dir() {
        let to = into.join(generators::styles::WILDCARDS_DIR);
        std::fs::create_dir_all(&to).expect("wildcards dir");
        for entry in std::fs::read_dir(&wild).expect("wildcards") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy wildcard");
        }
    }
    for entry in std::fs::read_dir(&src).expect("workflows") {
        let entry = entry.expect("entry");
        if !entry.path().is_file() {
            continue;
        }
        let mut text = std::fs::read_to_string(entry.path()).expect("read workflow");
        for (from, to) in MODEL_STAND_INS {
            text = text.replace(from, to);
        }
        std::fs::write(into.join(entry.file_name()), text).expect("copy workflow");
    }
}

impl BotUnderTest {
    pub async fn start(opts: HarnessOptions) -> BotUnderTest {
        // The bot's logs, shown for failing tests (RUST_LOG picks the level).
        use tracing_subscriber::prelude::*;
        let filter = std::env::var("RUST_LOG")
            .ok()
            .and_then(|s| s.parse::<tracing_subscriber::filter::Targets>().ok())
            .unwrap_or_else(|| {
                tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO)
            });
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_test_writer()
            .finish()
            .with(filter)
            .try_init();
        let discord = FakeDiscord::start_with(opts.discord.clone()).await;
        let comfy = FakeComfy::start_with(opts.comfy.clone()).await;
        let dir = temp_dir("e2e");
        let workflows = dir.join("workflows");
        copy_workflows(&workflows);
        for (name, workflow, manifest) in &opts.extra_workflows {
            for (file, value) in [
                (format!("{name}.json"), workflow),
                (format!("{name}.manifest.json"), manifest),
            ] {
                let mut text = value.to_string();
                for (from, to) in MODEL_STAND_INS {
                    text = text.replace(from, to);
                }
                std::fs::write(workflows.join(file), text).expect("write workflow");
            }
        }
        // With COMFYUI_URL set, the suite runs against that real server instead.
        let comfy_url = match std::env::var("COMFYUI_URL") {
            Ok(url) if !url.trim().is_empty() && !opts.fake_comfy_only => url.trim().to_string(),
            _ => comfy.url(),
        };
        let mut config = base_config(&discord, &comfy_url, &dir);
        merge(&mut config, &opts.config);
        let config_path = dir.join("config.json");
        std::fs::write(
            &config_path,
            serde_json::to_string_pretty(&config).expect("json"),
        )
        .expect("write config");
        let mut b = BotUnderTest {
            discord,
            comfy,
            dir,
            config_path,
            bot: None,
        };
        b.start_bot().await;
        b
    }

    /// Starts the bot process (again) on the same config, journal and outputs, and waits until
    /// it is connected and has registered its commands.
    pub async fn start_bot(&mut self) {
        assert!(self.bot.is_none(), "the bot is already running");
        let config =
            bot::config::Config::load_from(&self.config_path, &bot::config::Environment::empty())
                .expect("config");
        let since = std::time::Instant::now();
        let (tx, rx) = oneshot::channel::<()>();
        let path = self.config_path.clone();
        let handle = tokio::spawn(async move {
            bot::serve::serve(config, &path, async {
                let _ = rx.await;
            })
            .await
        });
        self.bot = Some((tx, handle));
        let registered = registered_since(&self.discord, since).await;
        // A bot that stopped on its own says why, instead of a bare timeout.
        if let Some((_, handle)) = self.bot.as_mut().filter(|(_, h)| h.is_finished()) {
            match handle.await {
                Ok(Err(e)) => panic!("the bot stopped while starting: {e:#}"),
                Ok(Ok(())) => panic!("the bot stopped while starting, without an error"),
                Err(e) => panic!("the bot's task failed while starting: {e}"),
            }
        }
        assert!(registered, "the bot connects and registers its commands");
    }

    /// Stops the bot as ctrl-c would and waits for it to exit; the fakes keep running.
    pub async fn stop_bot(&mut self) -> anyhow::Result<()> {
        let (tx, handle) = self.bot.take().expect("the bot is running");
        let _ = tx.send(());
        tokio::time::timeout(Duration::from_secs(30), handle)
            .await
            .expect("the bot stops within 30 s")
            .expect("the bot task does not panic")
    }

    /// The message answering an interaction, once `pred` holds for it.
    pub async fn wait_original(
        &self,
        interaction: u64,
        timeout: Duration,
        pred: impl Fn(&StoredMessage) -> bool,
    ) -> Option<StoredMessage> {
        self.discord
            .wait_for_message(
                |m| m.interaction_id == Some(interaction) && pred(m),
                timeout,
            )
            .await
    }

    /// One user's jobs in the bot's journal, newest first (read beside the running bot).
    /// The ephemeral follow-up (a refusal, a private note) the interaction with `token` ends
    /// with; asserts it is ephemeral.
    pub async fn private_followup(&self, token: &str, timeout: Duration) -> String {
        let r = self
            .discord
            .wait_for_request(
                |r| {
                    r.method == "POST"
                        && r.route().contains(token)
                        && !r.route().ends_with("/callback")
                },
                timeout,
            )
            .await
            .expect("an ephemeral follow-up");
        let json = r.json.expect("json");
        assert_eq!(
            json["flags"].as_u64().unwrap_or(0) & 64,
            64,
            "ephemeral: {json}"
        );
        json["content"].as_str().unwrap_or_default().to_string()
    }

    pub fn jobs_of(&self, owner: u64) -> Vec<generators::JobRecord> {
        use generators::Journal as _;
        let journal = generators::SqliteJournal::open(&self.dir.join("data/journal.sqlite3"))
            .expect("the bot's journal opens");
        journal
            .recent_for_owner(owner, 1000, 0)
            .expect("the journal lists jobs")
    }

    /// A one-line-per-request summary of what the bot sent, for failure messages.
    pub fn transcript(&self) -> String {
        self.discord
            .requests()
            .iter()
            .map(|r| {
                format!(
                    "{} {} -> {} {} files={:?}",
                    r.method,
                    r.route(),
                    r.status,
                    r.json.as_ref().map(render_short).unwrap_or_default(),
                    r.files
                        .iter()
                        .map(|f| f.filename.clone())
                        .collect::<Vec<_>>()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub async fn shutdown(mut self) {
        if self.bot.is_some() {
            let _ = self.stop_bot().await;
        }
        self.discord.shutdown().await;
        self.comfy.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether a bot registered its commands (in the test guild) after `since`, within the start
/// timeout. Commands are registered in poise's setup, after READY: the bot is then serving.
pub async fn registered_since(discord: &FakeDiscord, since: std::time::Instant) -> bool {
    discord
        .wait_for_request(
            |r| {
                r.at >= since
                    && r.method == "PUT"
                    && r.route().ends_with(&format!("/guilds/{GUILD_ID}/commands"))
                    && r.status == 200
            },
            START_TIMEOUT,
        )
        .await
        .is_some()
}

/// The custom_ids of every button on a message.
pub fn button_ids(m: &StoredMessage) -> Vec<String> {
    m.payload
        .get("components")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["custom_id"].as_str().map(str::to_string))
        .collect()
}

/// A message that shows a finished job: output files (not a progress preview) and the
/// result buttons.
pub fn has_result(m: &StoredMessage) -> bool {
    !m.files.is_empty()
        && !m.files.iter().any(|f| f.filename.starts_with("preview"))
        && button_ids(m).iter().any(|b| b.starts_with("cc:reroll:"))
}

/// Whether a job's message shows it sampling.
pub fn is_sampling(m: &StoredMessage) -> bool {
    embed_title(m).is_some_and(|t| t.contains("Sampling"))
}

/// `/generate` by the test user in the general channel, at 64×64 so that a real CPU ComfyUI
/// (COMFYUI_URL) answers in seconds.
pub fn generate(prompt: &str) -> InteractionSpec {
    InteractionSpec::command("generate")
        .option("prompt", prompt)
        .option("width", 64)
        .option("height", 64)
        .in_channel(GENERAL_CHANNEL_ID)
        .by_user(USER_ID)
}

/// `/generate` with `prompt` typed as is (inline flags and all), at the workflow's own size.
pub fn typed(prompt: &str) -> InteractionSpec {
    InteractionSpec::command("generate")
        .option("prompt", prompt)
        .in_channel(GENERAL_CHANNEL_ID)
        .by_user(USER_ID)
}

/// A job message that shows its result and no longer offers Cancel.
pub fn finished(m: &StoredMessage) -> bool {
    has_result(m) && !button_ids(m).iter().any(|b| b.starts_with("cc:cancel"))
}

/// Whether the suites run against a real ComfyUI (`COMFYUI_URL`) instead of the fake.
pub fn real_comfy() -> bool {
    std::env::var("COMFYUI_URL").is_ok_and(|u| !u.trim().is_empty())
}

/// `/generate` for a job that keeps running for a few seconds on either server: `steps` steps
/// at 64² on the fake (slowed with [`slow_comfy`]); at 256² on a CPU ComfyUI with the tiny
/// checkpoint, where a step takes about 0.7 s.
pub fn long_generate(prompt: &str, steps: u32) -> InteractionSpec {
    let spec = generate(prompt).option("steps", steps);
    if real_comfy() {
        spec.option("width", 256).option("height", 256)
    } else {
        spec
    }
}

/// A fake ComfyUI with previews that takes `step_ms` per sampler step.
pub fn slow_comfy(step_ms: u64) -> fake_comfyui::FakeOptions {
    fake_comfyui::FakeOptions {
        previews: true,
        step_delay: Duration::from_millis(step_ms),
        ..fake_comfyui::FakeOptions::default()
    }
}

/// The first embed's title, if any.
pub fn embed_title(m: &StoredMessage) -> Option<String> {
    m.payload
        .get("embeds")?
        .as_array()?
        .first()?
        .get("title")?
        .as_str()
        .map(str::to_string)
}

fn render_short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 300 {
        format!("{}…", s.chars().take(300).collect::<String>())
    } else {
        s
    }
}
