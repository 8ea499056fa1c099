//! The Discord front-end: poise commands, buttons, and delivery of progress and results.
//! Only this module touches serenity; it drives the engine through the scheduler and journal.

pub mod access;
pub mod buttons;
pub mod commands;
pub mod components;
pub mod delivery;
pub mod inputs;
pub mod launch;
pub mod message;
pub mod render;
pub mod reply;
pub mod result_view;
pub mod settings_panel;
pub mod unreadable;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context as _;
use core_comfyui::Catalog;
use futures_util::StreamExt as _;
use generators::{ComfyGenerator, JobRecord, Journal, Scheduler};
use poise::serenity_prelude as serenity;
use secrecy::ExposeSecret;
use serenity::{ChannelId, CreateAllowedMentions, GatewayIntents, Http};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::engine::Engine;
pub use crate::health::Metrics;

/// Internal errors of command handlers; users see a sentence with an id instead.
pub type Error = anyhow::Error;

/// The Discord side's share of the shutdown budget (see `serve::SHUTDOWN_BUDGET`):
/// last edits, then the notices, the gateway close and the uploads in flight, together.
const DISCORD_STOP_BUDGET: std::time::Duration = std::time::Duration::from_secs(7);
/// Progress edits in flight get at most this long to land before the notices go out.
const LAST_EDITS_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);
/// Restart notices sent at once.
const NOTICES_AT_ONCE: usize = 8;
/// Shutdown notices sent to waiting users, at most (each is a Discord edit).
const MAX_SHUTDOWN_NOTICES: usize = 50;

/// The bot's shared state.
pub struct Data {
    config: RwLock<Arc<Config>>,
    config_path: PathBuf,
    catalog: RwLock<Arc<Catalog>>,
    library: RwLock<Arc<generators::styles::Library>>,
    pub scheduler: Scheduler,
    pub journal: Arc<dyn Journal>,
    pub generators: Vec<ComfyGenerator>,
    pub routes: message::Routes,
    /// For attachments: no redirects off the CDN, bounded time.
    pub downloads: reqwest::Client,
    pub metrics: Arc<Metrics>,
    /// Set on shutdown: new interactions are turned away politely.
    pub stopping: AtomicBool,
    /// Result uploads and other work spawned per job; waited for at shutdown.
    pub tasks: TaskTracker,
    /// Cancelled at shutdown: delayed work (a result offered again later) stops waiting.
    pub cancel: CancellationToken,
    /// Set while Discord has rate limited the bot as a whole.
    pub discord_pause: message::GlobalPause,
    /// Input checks (full decodes) running at once, at most.
    pub decodes: Arc<tokio::sync::Semaphore>,
    nsfw_channels: Mutex<HashMap<u64, bool>>,
}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Data")
            .field("config_path", &self.config_path)
            .field("routes", &self.routes.len())
            .finish_non_exhaustive()
    }
}

/// Attachment downloads give up after this long.
const DOWNLOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl Data {
    pub fn new(
        config: Config,
        config_path: &Path,
        engine: &Engine,
        tasks: TaskTracker,
        metrics: Arc<Metrics>,
        cancel: CancellationToken,
    ) -> anyhow::Result<Data> {
        let downloads = reqwest::Client::builder()
            .timeout(DOWNLOAD_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the download client")?;
        let decodes = config.attachments.max_concurrent_decodes.max(1);
        Ok(Data {
            catalog: RwLock::new(engine.catalog.clone()),
            library: RwLock::new(crate::engine::load_library(&config)),
            config: RwLock::new(Arc::new(config)),
            config_path: config_path.to_path_buf(),
            scheduler: engine.scheduler.clone(),
            journal: engine.journal.clone(),
            generators: engine.generators.clone(),
            routes: message::Routes::default(),
            downloads,
            metrics,
            stopping: AtomicBool::new(false),
            tasks,
            cancel,
            discord_pause: message::GlobalPause::default(),
            decodes: Arc::new(tokio::sync::Semaphore::new(decodes)),
            nsfw_channels: Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The styles and wildcards loaded now.
    pub fn library(&self) -> Arc<generators::styles::Library> {
        self.library
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn inputs_dir(&self) -> PathBuf {
        self.config().data_dir.join("inputs")
    }

    /// With a test Discord, its own URLs serve attachments.
    pub fn test_attachment_base(&self) -> Option<String> {
        self.config()
            .discord
            .api_base
            .as_ref()
            .map(|b| b.trim_end_matches('/').to_string())
    }

    /// Whether a channel is age-restricted (a thread follows its parent). Unknown is "no".
    pub async fn channel_is_nsfw(&self, http: &Http, channel: ChannelId) -> bool {
        if let Some(v) = self
            .nsfw_channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&channel.get())
        {
            return *v;
        }
        let nsfw = match http.get_channel(channel).await {
            Ok(serenity::Channel::Guild(c)) => match (c.thread_metadata.is_some(), c.parent_id) {
                (true, Some(parent)) => matches!(
                    http.get_channel(parent).await,
                    Ok(serenity::Channel::Guild(p)) if p.nsfw
                ),
                _ => c.nsfw,
            },
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(channel = channel.get(), error = %e, "cannot read a channel's NSFW flag; treating it as not age-restricted");
                return false;
            }
        };
        self.nsfw_channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(channel.get(), nsfw);
        nsfw
    }

    /// Every job family this bot runs, with the workflows loaded now.
    pub fn kinds(&self) -> generators::Kinds {
        crate::engine::job_kinds(&self.config(), self.catalog())
    }

    /// Re-reads the config file (access rules, limits of the Discord layer) and the
    /// workflows folder. Backends and limits of the scheduler need a restart.
    pub fn reload(&self) -> Result<String, String> {
        let config = Config::load(&self.config_path).map_err(|e| e.to_string())?;
        let catalog = crate::engine::load_catalog(&config).map_err(|e| format!("{e:#}"))?;
        let library = crate::engine::load_library(&config);
        for g in &self.generators {
            g.set_catalog(catalog.clone());
        }
        let old = self.config();
        let mut notes = Vec::new();
        if old.backends.len() != config.backends.len()
            || old
                .backends
                .iter()
                .zip(&config.backends)
                .any(|(a, b)| a.url != b.url)
        {
            notes.push("backend changes take effect after a restart");
        }
        let summary = format!(
            "Reloaded: {} workflow(s) ({}), {} style(s), {} wildcard(s).{}",
            catalog.len(),
            catalog.names().collect::<Vec<_>>().join(", "),
            library.styles().count(),
            library.wildcard_names().count(),
            if notes.is_empty() {
                String::new()
            } else {
                format!(" Note: {}.", notes.join("; "))
            }
        );
        *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = catalog;
        *self.library.write().unwrap_or_else(|p| p.into_inner()) = library;
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        self.nsfw_channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        Ok(summary)
    }
}

/// On shutdown: every unfinished job's message says the bot is restarting and the job is kept.
/// One restart notice; whether it landed.
async fn tell_one(
    data: Arc<Data>,
    http: Arc<Http>,
    r: JobRecord,
    route: message::Route,
    fresh: std::time::Duration,
) -> bool {
    let text = match r.state {
        generators::JobState::Waiting => "The bot is restarting. Your job keeps its place in the queue and continues when it is back.",
        _ => "The bot is restarting. Your job keeps running; its result will be posted here.",
    };
    let prompt = r.spec.values.get("prompt").and_then(|v| v.as_str());
    let edit = message::MessageEdit {
        embeds: Some(vec![render::paused_embed(text, prompt)]),
        ..message::MessageEdit::default()
    };
    match message::edit_job_message(&http, &data.routes, &r.id, &route, fresh, edit).await {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(job = %r.id, error = %e, "could not tell about the restart");
            false
        }
    }
}

async fn tell_waiting_users(data: &Arc<Data>, http: &Arc<Http>) {
    let records = match data.journal.unfinished() {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list jobs to tell about the restart");
            return;
        }
    };
    let fresh = data.config().interaction_fresh();
    let notices: Vec<_> = records
        .into_iter()
        .filter(|r| r.state.is_active())
        .take(MAX_SHUTDOWN_NOTICES)
        .filter_map(|r| {
            let route = data
                .routes
                .get(&r.id)
                .or_else(|| message::route_from_record(&r))?;
            Some(tell_one(data.clone(), http.clone(), r, route, fresh))
        })
        .collect();
    let told: Vec<bool> = futures_util::stream::iter(notices)
        .buffer_unordered(NOTICES_AT_ONCE)
        .collect()
        .await;
    let told = told.into_iter().filter(|ok| *ok).count();
    if told > 0 {
        tracing::info!(jobs = told, "told waiting users about the restart");
    }
}

/// The bot token, or a clear error when it is missing. Remembered so logs never show it.
pub fn bot_token(config: &Config) -> anyhow::Result<&secrecy::SecretString> {
    let token = config
        .discord
        .token
        .as_ref()
        .context("DISCORD_TOKEN is not set: put the bot token from the Discord developer portal in DISCORD_TOKEN (or discord.token in the config)")?;
    crate::logging::remember_secret(token.expose_secret());
    Ok(token)
}

/// Builds serenity's HTTP client: the real API with serenity's rate limiter (which waits out
/// every 429 for its `Retry-After`, globally when Discord says so), or for tests a base URL
/// without the limiter (`api_base`) or `discord.com` at another address with it
/// (`tls_override`).
pub fn build_http(config: &Config) -> anyhow::Result<Http> {
    let token = bot_token(config)?;
    let mut client = reqwest::Client::builder().use_rustls_tls();
    if let Some(o) = &config.discord.tls_override {
        tracing::warn!(
            address = %o.address,
            ca_file = %o.ca_file.display(),
            "!!! discord.tls_override is set: discord.com is reached at this address, trusting this CA. Never set this in production. !!!"
        );
        let pem = std::fs::read(&o.ca_file).with_context(|| {
            format!(
                "reading discord.tls_override.ca_file {}",
                o.ca_file.display()
            )
        })?;
        let ca = reqwest::Certificate::from_pem(&pem).with_context(|| {
            format!(
                "parsing discord.tls_override.ca_file {}",
                o.ca_file.display()
            )
        })?;
        client = client
            .add_root_certificate(ca)
            .resolve("discord.com", o.address);
    }
    let client = client.build().context("building the Discord HTTP client")?;
    // Unlike HttpBuilder, the rate limiter sends its token as given: it needs the prefix.
    let secret = token.expose_secret().trim();
    let header = if secret.starts_with("Bot ") {
        secret.to_string()
    } else {
        format!("Bot {secret}")
    };
    // serenity's Client replaces the limiter's callback with `EventHandler::ratelimit`, which
    // `RateLimitCounter` counts.
    let limiter = serenity::Ratelimiter::new(client.clone(), header);
    let mut builder = serenity::HttpBuilder::new(token.expose_secret())
        .client(client)
        .ratelimiter(limiter)
        .default_allowed_mentions(CreateAllowedMentions::new());
    if let (Some(base), None) = (&config.discord.api_base, &config.discord.tls_override) {
        tracing::warn!(
            api_base = %base,
            "!!! discord.api_base is set: talking to a TEST Discord at this URL with serenity's rate limiter OFF. Never set this in production. !!!"
        );
        builder = builder
            .proxy(base.trim_end_matches('/'))
            .ratelimiter_disabled(true);
    }
    Ok(builder.build())
}

/// Hears of every 429 serenity waits out (for its Retry-After): counts it, and for a global
/// one holds the bot's other edits too (serenity makes only the refused request wait).
/// serenity reports these to event handlers only, not to the framework.
struct RateLimits(Arc<Data>);

#[serenity::async_trait]
impl serenity::EventHandler for RateLimits {
    async fn ratelimit(&self, info: serenity::RatelimitInfo) {
        self.0.metrics.rate_limited.inc();
        if info.global {
            self.0.discord_pause.hold_for(info.timeout);
        }
        tracing::debug!(path = %info.path, wait_ms = info.timeout.as_millis() as u64, global = info.global, "Discord rate limit");
    }
}

/// Sends an ephemeral explanation for a request the framework could not run; logs a failure.
async fn explain(ctx: poise::Context<'_, Arc<Data>, Error>, text: &str) {
    let reply = poise::CreateReply::default()
        .content(render::truncate_chars(text, render::MAX_CONTENT_CHARS))
        .ephemeral(true)
        .allowed_mentions(CreateAllowedMentions::new());
    if let Err(e) = ctx.send(reply).await {
        tracing::warn!(error = %e, "could not explain a refused request");
    }
}

/// Every request gets an answer: errors in commands, and requests Discord sent in a shape
/// that does not match the registered commands (an outdated client, a hand-made payload).
async fn on_error(error: poise::FrameworkError<'_, Arc<Data>, Error>) {
    match error {
        poise::FrameworkError::Command { error, ctx, .. } => {
            let text = reply::internal(&format!("/{}", ctx.command().qualified_name), &error);
            explain(ctx, &text).await;
        }
        poise::FrameworkError::ArgumentParse {
            error, input, ctx, ..
        } => {
            let what = match input {
                Some(i) => format!("`{}`", render::truncate_chars(&i, 100)),
                None => "an option".to_string(),
            };
            let text = format!(
                "/{}: {what} could not be read ({error}). Check the command's options and try again.",
                ctx.command().qualified_name
            );
            explain(ctx, &text).await;
        }
        poise::FrameworkError::CommandStructureMismatch {
            description, ctx, ..
        } => {
            tracing::warn!(command = %ctx.command().qualified_name, %description, "a command request does not match the registered command");
            let text = format!(
                "This /{} request does not match the command ({description}). Discord may be showing an outdated version of it: reload Discord (Ctrl+R) and try again.",
                ctx.command().qualified_name
            );
            explain(poise::Context::Application(ctx), &text).await;
        }
        poise::FrameworkError::CommandCheckFailed {
            error: None, ctx, ..
        } => {
            explain(ctx, access::UNKNOWN_CALLER).await;
        }
        poise::FrameworkError::UnknownInteraction {
            framework,
            interaction,
            ..
        } => {
            tracing::warn!(command = %interaction.data.name, "an interaction for a command this bot does not have");
            // Autocomplete requests carry a focused option; they cannot get a message.
            let response = if interaction.data.autocomplete().is_some() {
                serenity::CreateInteractionResponse::Autocomplete(
                    serenity::CreateAutocompleteResponse::new(),
                )
            } else {
                serenity::CreateInteractionResponse::Message(
                    serenity::CreateInteractionResponseMessage::new()
                        .content(format!(
                            "This bot has no /{} command (it may have been removed or renamed). Reload Discord (Ctrl+R) to refresh the command list.",
                            render::truncate_chars(&interaction.data.name, 100)
                        ))
                        .ephemeral(true)
                        .allowed_mentions(CreateAllowedMentions::new()),
                )
            };
            if let Err(e) = interaction
                .create_response(&framework.serenity_context.http, response)
                .await
            {
                tracing::warn!(error = %e, "could not answer an unknown command");
            }
        }
        other => {
            if let Err(e) = poise::builtins::on_error(other).await {
                tracing::warn!(error = %e, "could not handle a framework error");
            }
        }
    }
}

/// Runs before every command: a request that does not say who sent it is refused.
fn check_caller(
    ctx: poise::Context<'_, Arc<Data>, Error>,
) -> poise::BoxFuture<'_, Result<bool, Error>> {
    Box::pin(async move { Ok(access::caller_is_known(ctx.author().id.get())) })
}

/// Runs the Discord client until `cancel`; delivery of notices runs on `tracker`.
pub async fn run(
    config: Config,
    config_path: &Path,
    engine: Engine,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<()> {
    let http = build_http(&config)?;
    let register_in = config.discord.register_in_guild;
    let tasks = TaskTracker::new();
    let data = Arc::new(Data::new(
        config,
        config_path,
        &engine,
        tasks.clone(),
        metrics,
        cancel.child_token(),
    )?);

    let setup_data = data.clone();
    let framework = poise::Framework::builder()
        .options(poise::FrameworkOptions {
            commands: commands::all(),
            on_error: |e| Box::pin(on_error(e)),
            command_check: Some(check_caller),
            event_handler: |framework, event| Box::pin(components::on_event(framework, event)),
            allowed_mentions: Some(CreateAllowedMentions::new()),
            initialize_owners: false,
            ..Default::default()
        })
        .setup(move |ctx, ready, framework| {
            Box::pin(async move {
                let commands = &framework.options().commands;
                match register_in {
                    Some(guild) => {
                        poise::builtins::register_in_guild(ctx, commands, serenity::GuildId::new(guild)).await?;
                        tracing::info!(guild, count = commands.len(), "commands registered in the guild");
                    }
                    None => {
                        poise::builtins::register_globally(ctx, commands).await?;
                        tracing::info!(count = commands.len(), "commands registered globally (may take up to an hour to appear)");
                    }
                }
                tracing::info!(user = %ready.user.name, guilds = ready.guilds.len(), "connected to Discord");
                Ok(setup_data)
            })
        })
        .build();
    let mut client = serenity::ClientBuilder::new_with_http(http, GatewayIntents::GUILDS)
        .framework(framework)
        // Interactions serenity cannot parse still get an answer.
        .raw_event_handler(unreadable::UnreadableInteractions)
        .event_handler(RateLimits(data.clone()))
        .await
        .context("starting the Discord client")?;
    // One Http for everything: the application id arrives with READY.
    let http = client.http.clone();
    let delivery = tracker.spawn(delivery::run(
        data.clone(),
        http.clone(),
        engine.notices,
        cancel.clone(),
    ));
    let shards = client.shard_manager.clone();
    let result = tokio::select! {
        r = client.start() => r.context("the Discord connection ended"),
        _ = cancel.cancelled() => Ok(()),
    };
    // Stop taking commands, let the last edits land, then tell the people still waiting. The
    // whole stop fits one budget, so a slow Discord cannot hold the process past Docker's
    // stop timeout; what does not fit is left in the journal for the next start.
    let deadline = tokio::time::Instant::now() + DISCORD_STOP_BUDGET;
    data.stopping.store(true, Ordering::Relaxed);
    cancel.cancel();
    let edits_done = deadline.min(tokio::time::Instant::now() + LAST_EDITS_BUDGET);
    if tokio::time::timeout_at(edits_done, delivery).await.is_err() {
        tracing::warn!("progress edits still in flight at shutdown; left behind");
    }
    tasks.close();
    let (told, _, uploads) = tokio::join!(
        tokio::time::timeout_at(deadline, tell_waiting_users(&data, &http)),
        tokio::time::timeout_at(deadline, shards.shutdown_all()),
        tokio::time::timeout_at(deadline, tasks.wait()),
    );
    if told.is_err() {
        tracing::warn!("gave up telling waiting users about the restart");
    }
    if uploads.is_err() {
        tracing::warn!("results still uploading at shutdown; they are delivered at the next start");
    }
    result
}
