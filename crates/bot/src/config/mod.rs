//! Configuration, read once at startup: `config.json` under environment variables.
//!
//! - `COMFYCORD_<KEY>__<NESTED>` sets any key (`COMFYCORD_COMFYUI__REQUEST_TIMEOUT_SECS=60`).
//! - `DISCORD_TOKEN` sets `discord.token`.
//! - `COMFYUI_URL` replaces the backend list with one backend named `default`.
//!
//! Every value is checked here; an error names the key, the value and what is allowed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use core_comfyui::ClientConfig;
use figment::providers::{Format, Json, Serialized};
use figment::Figment;
use secrecy::SecretString;
use serde::Deserialize;

mod check;
mod env;

use check::describe_figment_error;
pub use env::Environment;
use env::{key_within, EnvProvider};

/// Environment prefix for nested keys; `__` separates levels.
pub const ENV_PREFIX: &str = "COMFYCORD_";
pub const DEFAULT_CONFIG_PATH: &str = "config.json";
const MAX_BACKEND_NAME_CHARS: usize = 32;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub discord: DiscordConfig,
    /// ComfyUI servers jobs can run on.
    #[serde(default)]
    pub backends: Vec<BackendConfig>,
    /// Folder of `NAME.json` + `NAME.manifest.json` pairs, relative to the working directory.
    #[serde(default = "default_workflows_dir")]
    pub workflows_dir: PathBuf,
    /// Where the job journal lives (`journal.sqlite3`).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Where results are saved, and how long they are kept.
    #[serde(default)]
    pub outputs: OutputsSection,
    /// Timeouts and limits for talking to ComfyUI.
    #[serde(default)]
    pub comfyui: ComfyTuning,
    /// Per-user and global request limits.
    #[serde(default)]
    pub limits: validation::LimitsConfig,
    /// Input images users may send.
    #[serde(default)]
    pub attachments: AttachmentsSection,
    /// How progress messages are updated.
    #[serde(default)]
    pub progress: ProgressSection,
    /// A remote Cosmos GPU host reached over SSH (optional).
    #[serde(default)]
    pub cosmos: Option<CosmosSection>,
    /// The operator's HTTP endpoint.
    #[serde(default)]
    pub health: HealthSection,
    /// Defaults for every member's jobs, under each member's own settings.
    #[serde(default)]
    pub defaults: generators::settings::Preferences,
    /// `text` (default) or `json` (one object per line). Env: `COMFYCORD_LOG_FORMAT`.
    #[serde(default)]
    pub log_format: LogFormat,
    /// `COMFYCORD_*` variables that name no config key: ignored, and logged at start.
    #[serde(skip)]
    pub ignored_env: Vec<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `health`: `/healthz` and `/metrics` (off unless `listen` is set).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSection {
    /// Address to serve on, e.g. `127.0.0.1:9100` (`0.0.0.0:9100` in a container).
    pub listen: Option<std::net::SocketAddr>,
}

/// `cosmos`: the remote NVIDIA Cosmos-Transfer1 host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosmosSection {
    /// Name shown in `/status` and logs.
    #[serde(default = "default_cosmos_name")]
    pub name: String,
    pub host: String,
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    pub user: String,
    /// Private key file (its contents are never logged).
    pub ssh_key: PathBuf,
    /// The host's public key as in known_hosts, e.g. `ssh-ed25519 AAAA…` (pinned; never
    /// accepted blindly).
    pub host_key: String,
    /// The cosmos-transfer1 checkout on the host.
    pub remote_dir: String,
    pub docker_image: String,
    #[serde(default = "default_docker_command")]
    pub docker_command: String,
    #[serde(default = "default_hf_cache_dir")]
    pub hf_cache_dir: String,
    #[serde(default = "default_num_gpu")]
    pub num_gpu: u32,
    #[serde(default = "default_cuda_devices")]
    pub cuda_devices: String,
    #[serde(default = "default_checkpoint_dir")]
    pub checkpoint_dir: String,
    #[serde(default = "default_ssh_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    #[serde(default = "default_job_timeout_secs")]
    pub job_timeout_secs: u64,
    #[serde(default = "default_transfer_timeout_secs")]
    pub transfer_timeout_secs: u64,
    #[serde(default = "default_keepalive_secs")]
    pub keepalive_secs: u64,
    #[serde(default = "default_busy_poll_secs")]
    pub busy_poll_secs: u64,
    #[serde(default = "default_cosmos_max_download_mib")]
    pub max_download_mib: u64,
}

// serde's `default = "…"` wants a function per field; each is named for what it sets.
fn default_cosmos_name() -> String {
    "cosmos".into()
}
fn default_ssh_port() -> u16 {
    22
}
fn default_docker_command() -> String {
    "sudo docker".into()
}
fn default_hf_cache_dir() -> String {
    "$HOME/.cache/huggingface".into()
}
fn default_num_gpu() -> u32 {
    1
}
fn default_cuda_devices() -> String {
    "0".into()
}
fn default_checkpoint_dir() -> String {
    "./checkpoints".into()
}
fn default_ssh_connect_timeout_secs() -> u64 {
    15
}
fn default_job_timeout_secs() -> u64 {
    3600
}
fn default_transfer_timeout_secs() -> u64 {
    300
}
fn default_keepalive_secs() -> u64 {
    20
}
fn default_busy_poll_secs() -> u64 {
    15
}
fn default_cosmos_max_download_mib() -> u64 {
    2048
}

/// `attachments`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttachmentsSection {
    pub max_mib: u64,
    pub max_side: u32,
    /// What one input may take once decoded: pixels × bytes per pixel × frames.
    pub max_decoded_mib: u64,
    /// Frames of an animated input (GIF, animated WebP).
    pub max_frames: u32,
    /// Length of a video input.
    pub max_video_secs: u32,
    /// Inputs checked (decoded) at once; more wait their turn.
    pub max_concurrent_decodes: usize,
}

/// Two decodes at once keep a 2-core host responsive under a burst of uploads.
pub const DEFAULT_CONCURRENT_DECODES: usize = 2;

impl Default for AttachmentsSection {
    fn default() -> Self {
        AttachmentsSection {
            max_mib: validation::bounds::DEFAULT_MAX_ATTACHMENT_BYTES / (1024 * 1024),
            max_side: validation::bounds::DEFAULT_MAX_IMAGE_SIDE,
            max_decoded_mib: validation::bounds::DEFAULT_MAX_DECODED_BYTES / (1024 * 1024),
            max_frames: validation::bounds::DEFAULT_MAX_FRAMES,
            max_video_secs: validation::bounds::DEFAULT_MAX_VIDEO_SECS,
            max_concurrent_decodes: DEFAULT_CONCURRENT_DECODES,
        }
    }
}

/// `progress`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProgressSection {
    /// Least time between two edits of one progress message.
    pub edit_interval_ms: u64,
}

impl Default for ProgressSection {
    fn default() -> Self {
        ProgressSection {
            edit_interval_ms: progress::DEFAULT_EDIT_INTERVAL.as_millis() as u64,
        }
    }
}

/// Discord settings. The token is a secret: it never appears in `Debug` output or logs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscordConfig {
    pub token: Option<SecretString>,
    /// A Discord-compatible base URL (tests only): REST and the gateway URL come from there,
    /// and serenity's rate limiter is off; with `tls_override` also set, only test attachments
    /// are fetched from there. Logged loudly when set. Env: `DISCORD_API_BASE`.
    pub api_base: Option<String>,
    /// Tests only: reach `https://discord.com` at another address, trusting another CA, with
    /// serenity's rate limiter on as in production (its limiter ignores `api_base`). Logged
    /// loudly when set.
    pub tls_override: Option<TlsOverride>,
    /// Register the commands in this guild only: updates show at once (for development).
    /// Without it they are registered globally.
    pub register_in_guild: Option<u64>,
    /// Guilds the bot answers in; empty means every guild it is in.
    pub allowed_guilds: Vec<u64>,
    /// Channels the bot answers in; empty means every channel.
    pub allowed_channels: Vec<u64>,
    /// Roles whose members may generate; empty means everyone.
    pub allowed_roles: Vec<u64>,
    /// Roles whose members may use the admin commands and bypass limits.
    pub admin_roles: Vec<u64>,
    /// Users with admin rights whatever their roles.
    pub admin_users: Vec<u64>,
    /// Whether direct messages may generate (they have no channel rules or roles).
    pub allow_dms: bool,
    /// How long an interaction token is used; after that, progress and results go through
    /// channel messages with the bot token. Discord's tokens last 15 minutes.
    pub interaction_fresh_secs: u64,
    /// How long a result (or an end state) is retried through Discord's 5xx answers and
    /// network errors, with backoff, before it is posted as a new message instead.
    pub delivery_retry_secs: u64,
}

/// `discord.tls_override` (tests only).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsOverride {
    /// Where `discord.com` is reached instead, e.g. `127.0.0.1:4443`.
    pub address: std::net::SocketAddr,
    /// A PEM certificate authority trusted besides the usual roots.
    pub ca_file: PathBuf,
}

/// Retrying a result for a minute rides out Discord's usual short outages.
pub const DEFAULT_DELIVERY_RETRY_SECS: u64 = 60;
/// Longer than this and a waiting member is better served by the fallback message.
const MAX_DELIVERY_RETRY_SECS: u64 = 600;

/// Margin under Discord's 15-minute interaction token lifetime.
pub const DEFAULT_INTERACTION_FRESH_SECS: u64 = 14 * 60;
/// Discord invalidates interaction tokens after 15 minutes.
const INTERACTION_TOKEN_LIFETIME_SECS: u64 = 15 * 60;

impl Default for DiscordConfig {
    fn default() -> Self {
        DiscordConfig {
            token: None,
            api_base: None,
            tls_override: None,
            register_in_guild: None,
            allowed_guilds: Vec::new(),
            allowed_channels: Vec::new(),
            allowed_roles: Vec::new(),
            admin_roles: Vec::new(),
            admin_users: Vec::new(),
            allow_dms: false,
            interaction_fresh_secs: DEFAULT_INTERACTION_FRESH_SECS,
            delivery_retry_secs: DEFAULT_DELIVERY_RETRY_SECS,
        }
    }
}

/// One ComfyUI server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Short name shown in `/status` and logs.
    pub name: String,
    /// Base URL, e.g. `http://127.0.0.1:8188` (a reverse-proxy path prefix is kept).
    pub url: String,
    /// Jobs given to this backend at once (1 keeps queue positions and cancels exact).
    #[serde(default = "default_max_inflight")]
    pub max_inflight: usize,
}

fn default_max_inflight() -> usize {
    1
}

/// Client tuning shared by every backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComfyTuning {
    pub request_timeout_secs: u64,
    pub connect_timeout_secs: u64,
    /// Largest output file downloaded from ComfyUI.
    pub max_download_mib: u64,
    /// Largest WebSocket message accepted (previews of SaveImageWebsocket can be big).
    pub max_ws_message_mib: u64,
    /// Longest wait between WebSocket reconnect attempts (a returning server is noticed at
    /// the next one, or at the next probe, whichever comes first).
    pub reconnect_max_delay_secs: u64,
    /// Jobs waiting on a server unreachable this long end as lost.
    pub give_up_after_secs: u64,
    /// Probe period (`/system_stats`, `/queue`) of a backend that answers.
    pub probe_interval_secs: u64,
    /// A probe without an answer in this long has failed.
    pub probe_timeout_secs: u64,
    /// Probe period of a backend whose last probe failed.
    pub down_probe_interval_secs: u64,
    /// Failed probes in a row before a backend is out of rotation; a dropped WebSocket plus
    /// one failed probe is enough.
    pub down_after_failures: u32,
    /// A job whose backend was lost, when no other backend can run it, waits this long for
    /// that backend to come back before it fails.
    pub lost_job_wait_secs: u64,
}

impl Default for ComfyTuning {
    fn default() -> Self {
        ComfyTuning {
            request_timeout_secs: 30,
            connect_timeout_secs: 5,
            max_download_mib: 512,
            max_ws_message_mib: 64,
            reconnect_max_delay_secs: 5,
            give_up_after_secs: 600,
            probe_interval_secs: 10,
            probe_timeout_secs: 3,
            down_probe_interval_secs: 2,
            down_after_failures: 2,
            lost_job_wait_secs: 300,
        }
    }
}

fn default_workflows_dir() -> PathBuf {
    PathBuf::from("workflows")
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

/// `outputs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputsSection {
    pub dir: PathBuf,
    /// Keep at most this many output files (oldest removed first); `null` keeps all.
    pub keep_count: Option<usize>,
    /// Remove outputs older than this; `null` keeps them.
    pub max_age_days: Option<u64>,
}

impl Default for OutputsSection {
    fn default() -> Self {
        OutputsSection {
            dir: PathBuf::from("outputs"),
            keep_count: None,
            max_age_days: None,
        }
    }
}

/// A configuration that cannot be used. Each line names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("invalid configuration:\n{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

/// A secret-free summary for logs.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backends: Vec<String> = self
            .backends
            .iter()
            .map(|b| format!("{}={}", b.name, b.url))
            .collect();
        write!(
            f,
            "backends [{}], workflows {}, discord token {}",
            backends.join(", "),
            self.workflows_dir.display(),
            if self.discord.token.is_some() {
                "set"
            } else {
                "not set"
            }
        )
    }
}

impl Config {
    /// Reads `path` (optional when absent and `path` is the default) and the environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_from(path, &Environment::process())
    }

    /// Like [`Config::load`] with a given environment (tests). The file is read from exactly
    /// `path`; no parent folder is searched.
    ///
    /// `COMFYCORD_*` variables that name no config key are ignored (a Kubernetes service
    /// called `comfycord` injects `COMFYCORD_PORT`, …) and listed in `ignored_env`; one whose
    /// value parses as a number or boolean where the key wants text is taken as text.
    pub fn load_from(path: &Path, env: &Environment) -> Result<Config, ConfigError> {
        let explicit = path != Path::new(DEFAULT_CONFIG_PATH);
        let file = match (path.is_file(), path.exists(), explicit) {
            (true, _, _) => Some(path),
            (false, true, _) => {
                return Err(ConfigError::File {
                    path: path.to_path_buf(),
                    reason: "not a file".into(),
                })
            }
            (false, false, true) => {
                return Err(ConfigError::File {
                    path: path.to_path_buf(),
                    reason: "no such file".into(),
                })
            }
            (false, false, false) => None,
        };
        let mut vars = env.config_vars();
        let mut ignored = Vec::new();
        // Each round settles at least one variable (dropped or made raw), so this ends.
        for _ in 0..=2 * vars.len() {
            let mut figment = Figment::new();
            if let Some(file) = &file {
                figment = figment.merge(Json::file_exact(file));
            }
            figment = figment.merge(EnvProvider(vars.clone()));
            if let Some(token) = env.get("DISCORD_TOKEN") {
                figment = figment.merge(Serialized::default("discord.token", token));
            }
            if let Some(base) = env.get("DISCORD_API_BASE") {
                figment = figment.merge(Serialized::default("discord.api_base", base));
            }
            if let Some(url) = env.get("COMFYUI_URL") {
                figment = figment.merge(Serialized::default(
                    "backends",
                    vec![serde_json::json!({"name": "default", "url": url, "max_inflight": 1})],
                ));
            }
            let errors = match figment.extract::<Config>() {
                Ok(mut config) => {
                    config.validate()?;
                    ignored.sort();
                    config.ignored_env = ignored;
                    return Ok(config);
                }
                Err(e) => e,
            };
            let mut settled = false;
            for e in errors.clone() {
                match &e.kind {
                    figment::error::Kind::UnknownField(field, _) => {
                        // figment's path usually ends with the field already.
                        let mut key = e.path.clone();
                        if key.last() != Some(field) {
                            key.push(field.clone());
                        }
                        let key = key.join(".");
                        let before = vars.len();
                        vars.retain(|v| {
                            let unknown = key_within(&v.key, &key);
                            if unknown {
                                ignored.push(v.name.clone());
                            }
                            !unknown
                        });
                        settled |= vars.len() != before;
                    }
                    figment::error::Kind::InvalidType(actual, _)
                        if !matches!(actual, figment::error::Actual::Str(_)) =>
                    {
                        let key = e.path.join(".");
                        for v in vars.iter_mut().filter(|v| v.key == key && !v.raw) {
                            v.raw = true;
                            settled = true;
                        }
                    }
                    _ => {}
                }
            }
            if !settled {
                return Err(ConfigError::Invalid(
                    errors
                        .into_iter()
                        .map(|e| {
                            let key = e.path.join(".");
                            let var = vars.iter().find(|v| v.key == key).map(|v| v.name.as_str());
                            describe_figment_error(&e, var)
                        })
                        .collect(),
                ));
            }
        }
        unreachable!("every round settles a variable or returns")
    }

    pub fn attachment_rules(&self) -> validation::AttachmentRules {
        validation::AttachmentRules {
            max_bytes: self.attachments.max_mib * 1024 * 1024,
            max_side: self.attachments.max_side,
            max_decoded_bytes: self.attachments.max_decoded_mib * 1024 * 1024,
            max_frames: self.attachments.max_frames,
            max_video_secs: self.attachments.max_video_secs,
            ..validation::AttachmentRules::default()
        }
    }

    /// The scheduler's settings from this config.
    pub fn scheduler(&self) -> generators::SchedulerConfig {
        generators::SchedulerConfig {
            max_inflight: self
                .backends
                .iter()
                .map(|b| (b.name.clone(), b.max_inflight))
                .collect(),
            limits: self.limits.clone(),
            health_interval: Duration::from_secs(self.comfyui.probe_interval_secs),
            probe_timeout: Duration::from_secs(self.comfyui.probe_timeout_secs),
            down_probe_interval: Duration::from_secs(self.comfyui.down_probe_interval_secs),
            down_after_failures: self.comfyui.down_after_failures,
            lost_job_wait: Duration::from_secs(self.comfyui.lost_job_wait_secs),
            ..generators::SchedulerConfig::default()
        }
    }

    pub fn journal_path(&self) -> PathBuf {
        self.data_dir.join("journal.sqlite3")
    }

    pub fn delivery_retry(&self) -> Duration {
        Duration::from_secs(self.discord.delivery_retry_secs)
    }

    pub fn interaction_fresh(&self) -> Duration {
        Duration::from_secs(self.discord.interaction_fresh_secs)
    }

    pub fn edit_interval(&self) -> Duration {
        Duration::from_millis(self.progress.edit_interval_ms)
    }

    /// The Cosmos backend's settings, if one is configured.
    pub fn cosmos_settings(&self) -> Option<generators::cosmos::CosmosSettings> {
        let c = self.cosmos.as_ref()?;
        Some(generators::cosmos::CosmosSettings {
            name: c.name.clone(),
            ssh: generators::cosmos::ssh::SshConfig {
                host: c.host.clone(),
                port: c.port,
                user: c.user.clone(),
                key_path: c.ssh_key.clone(),
                host_key: c.host_key.clone(),
                connect_timeout: Duration::from_secs(c.connect_timeout_secs),
                keepalive: Duration::from_secs(c.keepalive_secs),
                transfer_timeout: Duration::from_secs(c.transfer_timeout_secs),
            },
            layout: generators::cosmos::remote::HostLayout {
                remote_dir: c.remote_dir.clone(),
                image: c.docker_image.clone(),
                docker: c.docker_command.clone(),
                hf_cache: c.hf_cache_dir.clone(),
                num_gpu: c.num_gpu,
                cuda_devices: c.cuda_devices.clone(),
                checkpoint_dir: c.checkpoint_dir.clone(),
            },
            job_timeout: Duration::from_secs(c.job_timeout_secs),
            busy_poll: Duration::from_secs(c.busy_poll_secs),
            outputs_dir: self.outputs.dir.clone(),
            max_download: c.max_download_mib * 1024 * 1024,
        })
    }

    /// The client settings for one backend.
    pub fn client_config(&self, backend: &BackendConfig) -> ClientConfig {
        // Validated in `load`, so the URL parses.
        let mut c = ClientConfig::new(&backend.url).unwrap_or_else(|_| unreachable!("validated"));
        let t = &self.comfyui;
        c.request_timeout = Duration::from_secs(t.request_timeout_secs);
        c.connect_timeout = Duration::from_secs(t.connect_timeout_secs);
        c.max_download_bytes = t.max_download_mib * 1024 * 1024;
        c.max_ws_message_bytes = (t.max_ws_message_mib * 1024 * 1024) as usize;
        c.reconnect_max_delay = Duration::from_secs(t.reconnect_max_delay_secs);
        c.give_up_after = Duration::from_secs(t.give_up_after_secs);
        c
    }
}

#[cfg(test)]
// figment::Jail's closures must return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    /// Runs inside a figment Jail: a temp working directory and a lock shared by every test
    /// that touches the process environment, so parallel tests cannot see each other's vars.
    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        let mut out = Err(String::new());
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.json", text)?;
            out = Config::load_from(Path::new("c.json"), &Environment::from_pairs(env.to_vec()))
                .map_err(|e| e.to_string());
            Ok(())
        });
        out
    }

    #[test]
    fn reads_file_and_defaults() {
        let c = load(
            r#"{"backends": [{"name": "gpu1", "url": "http://10.0.0.5:8188"}]}"#,
            &[],
        )
        .unwrap();
        assert_eq!(c.backends[0].name, "gpu1");
        assert_eq!(c.workflows_dir, PathBuf::from("workflows"));
        assert_eq!(c.comfyui.request_timeout_secs, 30);
        assert!(c.discord.token.is_none());
        assert_eq!(
            c.client_config(&c.backends[0]).request_timeout,
            Duration::from_secs(30)
        );
    }

    #[test]
    fn plain_env_overrides_and_secret_stays_hidden() {
        let c = load(
            r#"{"backends": [{"name": "a", "url": "http://a:1"}, {"name": "b", "url": "http://b:1"}]}"#,
            &[("COMFYUI_URL", "http://127.0.0.1:9999"), ("DISCORD_TOKEN", "tok.en.secret")],
        )
        .unwrap();
        assert_eq!(c.backends.len(), 1);
        assert_eq!(c.backends[0].url, "http://127.0.0.1:9999");
        assert_eq!(
            c.discord.token.as_ref().unwrap().expose_secret(),
            "tok.en.secret"
        );
        let debug = format!("{c:?}");
        assert!(!debug.contains("tok.en.secret"), "{debug}");
        assert!(!c.to_string().contains("tok.en.secret"));
    }

    #[test]
    fn discord_section() {
        let c = load(
            r#"{"backends": [{"name": "a", "url": "http://a:1"}], "discord": {"admin_roles": [7], "allowed_channels": [1, 2]}}"#,
            &[("DISCORD_API_BASE", "http://127.0.0.1:3000")],
        )
        .unwrap();
        assert_eq!(c.discord.admin_roles, vec![7]);
        assert_eq!(c.discord.allowed_channels, vec![1, 2]);
        assert_eq!(c.discord.api_base.as_deref(), Some("http://127.0.0.1:3000"));
        assert_eq!(c.interaction_fresh(), Duration::from_secs(14 * 60));
        let e = load(
            r#"{"backends": [{"name": "a", "url": "http://a:1"}], "discord": {"interaction_fresh_secs": 3600, "api_base": "discord.com"}}"#,
            &[],
        )
        .unwrap_err();
        assert!(
            e.contains("`discord.interaction_fresh_secs`: 3600")
                && e.contains("`discord.api_base`"),
            "{e}"
        );
    }

    #[test]
    fn nested_env_keys() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "config.json",
                r#"{"backends": [{"name": "a", "url": "http://a:1"}]}"#,
            )?;
            let env = Environment::from_pairs([
                ("COMFYCORD_COMFYUI__REQUEST_TIMEOUT_SECS", "90"),
                ("COMFYCORD_WORKFLOWS_DIR", "/srv/flows"),
            ]);
            let c = Config::load_from(Path::new(DEFAULT_CONFIG_PATH), &env)
                .map_err(|e| e.to_string())?;
            assert_eq!(c.comfyui.request_timeout_secs, 90);
            assert_eq!(c.workflows_dir, PathBuf::from("/srv/flows"));
            assert!(c.ignored_env.is_empty());
            Ok(())
        });
    }

    #[test]
    fn unknown_env_vars_are_ignored_and_listed() {
        // What Kubernetes injects for a service named `comfycord`, plus a typo'd nested key.
        let c = load(
            r#"{"backends": [{"name": "a", "url": "http://a:1"}]}"#,
            &[
                ("COMFYCORD_PORT", "tcp://10.0.0.7:9100"),
                ("COMFYCORD_PORT_9100_TCP_ADDR", "10.0.0.7"),
                ("COMFYCORD_SERVICE_HOST", "10.0.0.7"),
                ("COMFYCORD_DISCORD__COLOUR", "blue"),
                ("COMFYCORD_LIMITS__USER_BURST", "9"),
            ],
        )
        .unwrap();
        assert_eq!(c.limits.user_burst, 9);
        assert_eq!(
            c.ignored_env,
            vec![
                "COMFYCORD_DISCORD__COLOUR",
                "COMFYCORD_PORT",
                "COMFYCORD_PORT_9100_TCP_ADDR",
                "COMFYCORD_SERVICE_HOST"
            ]
        );
        // An unknown key in the file is still an error: a typo there is the admin's.
        let e = load(
            r#"{"backends": [{"name": "a", "url": "http://a:1"}], "colour": 1}"#,
            &[("COMFYCORD_PORT", "tcp://10.0.0.7:9100")],
        )
        .unwrap_err();
        assert!(e.contains("unknown key `colour`"), "{e}");
        // A known key with a wrong value from the environment is still an error.
        let e = load(
            r#"{"backends": [{"name": "a", "url": "http://a:1"}]}"#,
            &[("COMFYCORD_LIMITS__USER_BURST", "lots")],
        )
        .unwrap_err();
        assert!(
            e.contains(
                "`limits.user_burst` (from the environment variable COMFYCORD_LIMITS__USER_BURST)"
            ) && e.contains("lots"),
            "{e}"
        );
    }

    #[test]
    fn text_keys_keep_numeric_looking_values_as_text() {
        let c = load(
            r#"{"backends": [{"name": "a", "url": "http://a:1"}]}"#,
            &[
                ("COMFYCORD_DISCORD__TOKEN", "12345"),
                ("COMFYCORD_DATA_DIR", "2024"),
                ("COMFYCORD_DISCORD__REGISTER_IN_GUILD", "77"),
            ],
        )
        .unwrap();
        assert_eq!(c.discord.token.as_ref().unwrap().expose_secret(), "12345");
        assert_eq!(c.data_dir, PathBuf::from("2024"));
        assert_eq!(c.discord.register_in_guild, Some(77));
    }

    #[test]
    fn the_config_path_is_exact() {
        figment::Jail::expect_with(|jail| {
            // A config.json in the parent folder must not be picked up.
            jail.create_file(
                "config.json",
                r#"{"backends": [{"name": "parent", "url": "http://a:1"}]}"#,
            )?;
            jail.change_dir(jail.create_dir("sub")?)?;
            let e = Config::load_from(Path::new("./config.json"), &Environment::empty())
                .unwrap_err()
                .to_string();
            assert!(e.contains("no such file"), "{e}");
            // The default path is optional, but only here: no parent's file, so no backend.
            let e = Config::load_from(Path::new(DEFAULT_CONFIG_PATH), &Environment::empty())
                .unwrap_err()
                .to_string();
            assert!(e.contains("`backends`"), "{e}");
            // Env alone is enough (a container with no config file).
            let c = Config::load_from(
                Path::new(DEFAULT_CONFIG_PATH),
                &Environment::from_pairs([
                    ("COMFYUI_URL", "http://10.0.0.5:8188"),
                    ("DISCORD_TOKEN", "t"),
                ]),
            )
            .map_err(|e| e.to_string())?;
            assert_eq!(c.backends[0].url, "http://10.0.0.5:8188");
            let c = Config::load_from(
                Path::new(DEFAULT_CONFIG_PATH),
                &Environment::from_pairs([(
                    "COMFYCORD_BACKENDS",
                    r#"[{name="gpu",url="http://10.0.0.6:8188"}]"#,
                )]),
            )
            .map_err(|e| e.to_string())?;
            assert_eq!(c.backends[0].name, "gpu");
            Ok(())
        });
    }

    #[test]
    fn environment_debug_shows_names_only() {
        let env = Environment::from_pairs([("DISCORD_TOKEN", "sekrit-token")]);
        let debug = format!("{env:?}");
        assert!(
            debug.contains("DISCORD_TOKEN") && !debug.contains("sekrit"),
            "{debug}"
        );
    }

    #[test]
    fn errors_name_key_value_and_rule() {
        let e = load(r#"{"backends": [{"name": "a", "url": "ftp://x"}]}"#, &[]).unwrap_err();
        assert!(
            e.contains("`backends[0].url`") && e.contains("ftp://x") && e.contains("http://"),
            "{e}"
        );
        let e = load(r#"{"backends": []}"#, &[]).unwrap_err();
        assert!(e.contains("`backends`") && e.contains("COMFYUI_URL"), "{e}");
        let e = load(
            r#"{"backends": [{"name": "a", "url": "http://a"}], "comfyui": {"request_timeout_secs": "soon"}}"#,
            &[],
        )
        .unwrap_err();
        assert!(
            e.contains("`comfyui.request_timeout_secs`") && e.contains("soon"),
            "{e}"
        );
        let e = load(
            r#"{"backends": [{"name": "a", "url": "http://a"}], "colour": 1}"#,
            &[],
        )
        .unwrap_err();
        assert!(e.contains("unknown key `colour`"), "{e}");
        let e = load(
            r#"{"backends": [{"name": "a", "url": "http://a"}, {"name": "a", "url": "http://b"}], "comfyui": {"connect_timeout_secs": 0}}"#,
            &[],
        )
        .unwrap_err();
        assert!(
            e.contains("used twice") && e.contains("`comfyui.connect_timeout_secs`: 0"),
            "{e}"
        );
        let e = load(
            r#"{"backends": [{"name": "a", "url": "http://a"}], "limits": {"user_burst": 0}, "progress": {"edit_interval_ms": 5}}"#,
            &[],
        )
        .unwrap_err();
        assert!(
            e.contains("`limits.user_burst`: 0") && e.contains("`progress.edit_interval_ms`: 5"),
            "{e}"
        );
        let c = load(
            r#"{"backends": [{"name": "a", "url": "http://a"}], "limits": {"max_pending_per_user": 7}, "attachments": {"max_mib": 8}}"#,
            &[],
        )
        .unwrap();
        assert_eq!(c.limits.max_pending_per_user, 7);
        assert_eq!(c.attachment_rules().max_bytes, 8 * 1024 * 1024);
        let missing =
            Config::load_from(Path::new("/nonexistent/c.json"), &Environment::empty()).unwrap_err();
        assert!(missing.to_string().contains("no such file"));
    }
}
