//! Checks of values that types alone do not hold (ranges, names, URLs, keys); every
//! problem names its key, the value and what is allowed.

use core_comfyui::ClientConfig;

use super::{
    Config, ConfigError, INTERACTION_TOKEN_LIFETIME_SECS, MAX_BACKEND_NAME_CHARS,
    MAX_DELIVERY_RETRY_SECS,
};

impl Config {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.backends.is_empty() {
            problems.push(
                "config key `backends`: the list is empty; add at least one ComfyUI server \
                 ({\"name\": \"local\", \"url\": \"http://127.0.0.1:8188\"}) or set COMFYUI_URL"
                    .to_string(),
            );
        }
        for (i, b) in self.backends.iter().enumerate() {
            let name_ok = (1..=MAX_BACKEND_NAME_CHARS).contains(&b.name.chars().count())
                && b.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !name_ok {
                problems.push(format!(
                    "config key `backends[{i}].name`: {:?} is not allowed; use 1–{MAX_BACKEND_NAME_CHARS} letters, digits, - or _",
                    b.name
                ));
            }
            if self.backends[..i].iter().any(|o| o.name == b.name) {
                problems.push(format!(
                    "config key `backends[{i}].name`: {:?} is used twice; backend names must be unique",
                    b.name
                ));
            }
            if b.max_inflight == 0 || b.max_inflight > 64 {
                problems.push(format!(
                    "config key `backends[{i}].max_inflight`: {} is not allowed; use 1 to 64",
                    b.max_inflight
                ));
            }
            if let Err(e) = ClientConfig::new(&b.url) {
                problems.push(format!("config key `backends[{i}].url`: {e}"));
            }
        }
        let d = &self.defaults;
        if let Some(a) = d
            .aspect
            .as_deref()
            .filter(|a| validation::request::parse_ratio(a).is_none())
        {
            problems.push(format!(
                "config key `defaults.aspect`: {a:?} is not an aspect ratio; use W:H from 1:4 to 4:1, e.g. \"16:9\""
            ));
        }
        if d.steps == Some(0) {
            problems.push("config key `defaults.steps`: 0 is not allowed; use 1 or more".into());
        }
        for (key, text, max) in [
            ("suffix", &d.suffix, generators::settings::MAX_SUFFIX_CHARS),
            (
                "negative",
                &d.negative,
                generators::settings::MAX_NEGATIVE_CHARS,
            ),
        ] {
            let n = text.as_deref().map_or(0, |t| t.chars().count());
            if n > max {
                problems.push(format!(
                    "config key `defaults.{key}`: {n} characters; at most {max}"
                ));
            }
        }
        let t = &self.comfyui;
        for (key, value) in [
            ("request_timeout_secs", t.request_timeout_secs),
            ("connect_timeout_secs", t.connect_timeout_secs),
            ("max_download_mib", t.max_download_mib),
            ("max_ws_message_mib", t.max_ws_message_mib),
            ("reconnect_max_delay_secs", t.reconnect_max_delay_secs),
            ("give_up_after_secs", t.give_up_after_secs),
            ("probe_interval_secs", t.probe_interval_secs),
            ("probe_timeout_secs", t.probe_timeout_secs),
            ("down_probe_interval_secs", t.down_probe_interval_secs),
            ("down_after_failures", u64::from(t.down_after_failures)),
            ("lost_job_wait_secs", t.lost_job_wait_secs),
        ] {
            require_positive(&mut problems, &format!("comfyui.{key}"), value);
        }
        let l = &self.limits;
        for (key, value) in [
            ("user_per_minute", u64::from(l.user_per_minute)),
            ("user_burst", u64::from(l.user_burst)),
            ("global_per_minute", u64::from(l.global_per_minute)),
            ("global_burst", u64::from(l.global_burst)),
            ("max_pending_per_user", l.max_pending_per_user as u64),
            ("max_queue_depth", l.max_queue_depth as u64),
            ("attachments.max_mib", self.attachments.max_mib),
            ("attachments.max_side", u64::from(self.attachments.max_side)),
            (
                "attachments.max_decoded_mib",
                self.attachments.max_decoded_mib,
            ),
            (
                "attachments.max_frames",
                u64::from(self.attachments.max_frames),
            ),
            (
                "attachments.max_video_secs",
                u64::from(self.attachments.max_video_secs),
            ),
            (
                "attachments.max_concurrent_decodes",
                self.attachments.max_concurrent_decodes as u64,
            ),
            (
                "outputs.keep_count",
                self.outputs.keep_count.map_or(1, |n| n as u64),
            ),
            (
                "outputs.max_age_days",
                self.outputs.max_age_days.unwrap_or(1),
            ),
        ] {
            let key = if key.contains('.') {
                key.to_string()
            } else {
                format!("limits.{key}")
            };
            require_positive(&mut problems, &key, value);
        }
        if !(100..=60_000).contains(&self.progress.edit_interval_ms) {
            problems.push(format!(
                "config key `progress.edit_interval_ms`: {} is not allowed; use 100 to 60000 (Discord allows about 5 edits per 5 s per message)",
                self.progress.edit_interval_ms
            ));
        }
        if let Some(c) = &self.cosmos {
            if russh_key_ok(&c.host_key).is_err() {
                problems.push(format!(
                    "config key `cosmos.host_key`: {:?} is not an OpenSSH public key; copy the host's key line, e.g. from `ssh-keyscan -t ed25519 HOST` (without the host name)",
                    c.host_key.chars().take(40).collect::<String>()
                ));
            }
            if c.remote_dir.trim().is_empty() || !c.remote_dir.starts_with('/') {
                problems.push(format!(
                    "config key `cosmos.remote_dir`: {:?} is not allowed; use the absolute path of the cosmos-transfer1 checkout",
                    c.remote_dir
                ));
            }
            if c.cuda_devices.is_empty()
                || !c
                    .cuda_devices
                    .chars()
                    .all(|ch| ch.is_ascii_digit() || ch == ',')
            {
                problems.push(format!(
                    "config key `cosmos.cuda_devices`: {:?} is not allowed; use GPU numbers such as \"0\" or \"0,1\"",
                    c.cuda_devices
                ));
            }
            for (key, value) in [
                ("num_gpu", u64::from(c.num_gpu)),
                ("connect_timeout_secs", c.connect_timeout_secs),
                ("job_timeout_secs", c.job_timeout_secs),
                ("transfer_timeout_secs", c.transfer_timeout_secs),
                ("keepalive_secs", c.keepalive_secs),
                ("busy_poll_secs", c.busy_poll_secs),
                ("max_download_mib", c.max_download_mib),
            ] {
                require_positive(&mut problems, &format!("cosmos.{key}"), value);
            }
        }
        let d = &self.discord;
        if !(1..=INTERACTION_TOKEN_LIFETIME_SECS).contains(&d.interaction_fresh_secs) {
            problems.push(format!(
                "config key `discord.interaction_fresh_secs`: {} is not allowed; use 1 to {INTERACTION_TOKEN_LIFETIME_SECS} (Discord's tokens last 15 minutes)",
                d.interaction_fresh_secs
            ));
        }
        if !(1..=MAX_DELIVERY_RETRY_SECS).contains(&d.delivery_retry_secs) {
            problems.push(format!(
                "config key `discord.delivery_retry_secs`: {} is not allowed; use 1 to {MAX_DELIVERY_RETRY_SECS}",
                d.delivery_retry_secs
            ));
        }
        if let Some(base) = &d.api_base {
            if url::Url::parse(base)
                .map(|u| !matches!(u.scheme(), "http" | "https"))
                .unwrap_or(true)
            {
                problems.push(format!(
                    "config key `discord.api_base`: {base:?} is not allowed; use an http:// or https:// URL such as http://127.0.0.1:3000"
                ));
            }
        }
        if t.max_ws_message_mib > 1024 {
            problems.push(format!(
                "config key `comfyui.max_ws_message_mib`: {} is not allowed; the most is 1024",
                t.max_ws_message_mib
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}

/// Counts, sizes and timeouts: 0 would mean "never" or "nothing", which no setting wants.
fn require_positive(problems: &mut Vec<String>, key: &str, value: u64) {
    if value == 0 {
        problems.push(format!(
            "config key `{key}`: 0 is not allowed; use a positive number"
        ));
    }
}

/// Whether a pinned host key parses.
fn russh_key_ok(line: &str) -> Result<(), String> {
    generators::cosmos::ssh::parse_public_key(line).map(|_| ())
}

/// "config key `a.b` (from config.json): invalid type: found string \"x\", expected u64".
/// `variable`: the environment variable that set the key, when one did.
pub(super) fn describe_figment_error(e: &figment::Error, variable: Option<&str>) -> String {
    let key = e.path.join(".");
    let source = match variable {
        Some(v) => format!(" (from the environment variable {v})"),
        None => e
            .metadata
            .as_ref()
            .map(|m| format!(" (from {})", m.name))
            .unwrap_or_default(),
    };
    let what = match &e.kind {
        figment::error::Kind::UnknownField(field, expected) => format!(
            "unknown key `{field}`; known keys here: {}",
            expected.join(", ")
        ),
        other => other.to_string(),
    };
    if key.is_empty() {
        format!("config{source}: {what}")
    } else {
        format!("config key `{key}`{source}: {what}")
    }
}
