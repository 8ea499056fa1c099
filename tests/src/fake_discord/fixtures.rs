//! JSON payloads the fake sends: users, the test guild, READY, interactions, messages and the
//! small REST answers. Every builder here is checked against serenity 0.12.5's model types by
//! the unit tests at the bottom of this file, because serenity silently turns a gateway event it
//! cannot parse into `Event::Unknown`.

use serde_json::{json, Map, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// The bot's application id; the bot user has the same id, as on Discord.
pub const APPLICATION_ID: u64 = 1_100_000_000_000_000_001;
/// The bot user's id (equal to [`APPLICATION_ID`]).
pub const BOT_USER_ID: u64 = APPLICATION_ID;
/// The one test guild, sent in GUILD_CREATE.
pub const GUILD_ID: u64 = 1_100_000_000_000_000_100;
/// A plain text channel of the test guild.
pub const GENERAL_CHANNEL_ID: u64 = 1_100_000_000_000_000_101;
/// An age-restricted (NSFW) text channel of the test guild.
pub const NSFW_CHANNEL_ID: u64 = 1_100_000_000_000_000_102;
/// The guild's `@everyone` role (same id as the guild, as on Discord).
pub const EVERYONE_ROLE_ID: u64 = GUILD_ID;
/// A role named `artist`, held by [`USER_ID`].
pub const ARTIST_ROLE_ID: u64 = 1_100_000_000_000_000_103;
/// The default human user who invokes interactions; guild owner, holds [`ARTIST_ROLE_ID`].
pub const USER_ID: u64 = 1_100_000_000_000_000_200;
/// A second guild member with no roles.
pub const OTHER_USER_ID: u64 = 1_100_000_000_000_000_201;

/// Discord's default `attachment_size_limit` (10 MiB).
pub const DEFAULT_ATTACHMENT_SIZE_LIMIT: u64 = 10 * 1024 * 1024;

/// `YYYY-MM-DDTHH:MM:SS.ffffff+00:00` for the current time (UTC).
pub fn now_timestamp() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        year,
        month,
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// A user object. `bot` users get the bot flag.
pub fn user(id: u64) -> Value {
    let (name, bot) = match id {
        BOT_USER_ID => ("comfycord-fake-bot", true),
        USER_ID => ("tester", false),
        OTHER_USER_ID => ("other", false),
        _ => ("someone", false),
    };
    json!({
        "id": id.to_string(),
        "username": name,
        "discriminator": "0",
        "global_name": name,
        "avatar": null,
        "bot": bot,
        "system": false,
        "public_flags": 0,
        "flags": 0,
    })
}

/// `GET /users/@me` and READY's `user`: the bot's own user.
pub fn current_user() -> Value {
    let mut u = user(BOT_USER_ID);
    if let Value::Object(m) = &mut u {
        m.insert("verified".into(), true.into());
        m.insert("mfa_enabled".into(), false.into());
        m.insert("email".into(), Value::Null);
    }
    u
}

/// A guild member object for `user_id` in the test guild.
pub fn member(user_id: u64) -> Value {
    let roles: Vec<String> = if user_id == USER_ID {
        vec![ARTIST_ROLE_ID.to_string()]
    } else {
        Vec::new()
    };
    json!({
        "user": user(user_id),
        "nick": null,
        "avatar": null,
        "roles": roles,
        "joined_at": "2024-01-01T00:00:00.000000+00:00",
        "premium_since": null,
        "deaf": false,
        "mute": false,
        "flags": 0,
        "pending": false,
    })
}

fn role(id: u64, name: &str, permissions: u64, position: u64) -> Value {
    json!({
        "id": id.to_string(),
        "name": name,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": null, "tertiary_color": null},
        "hoist": false,
        "icon": null,
        "unicode_emoji": null,
        "position": position,
        "permissions": permissions.to_string(),
        "managed": false,
        "mentionable": false,
        "flags": 0,
    })
}

/// The test guild's roles: `@everyone` and `artist`.
pub fn roles() -> Value {
    // 0x400 VIEW_CHANNEL | 0x800 SEND_MESSAGES | 0x8000 ATTACH_FILES | 0x80000000 USE_APPLICATION_COMMANDS
    json!([
        role(EVERYONE_ROLE_ID, "@everyone", 0x8000_8C00, 0),
        role(ARTIST_ROLE_ID, "artist", 0x8000_8C00, 1),
    ])
}

/// Every user's DM channel with the bot is this far above the user's id.
const DM_CHANNEL_OFFSET: u64 = 100;

/// The DM channel between the bot and `user` (one of the test's human users).
pub fn dm_channel_id(user: u64) -> u64 {
    user + DM_CHANNEL_OFFSET
}

/// The user whose DM channel `channel` is, if it is one.
pub fn dm_recipient(channel: u64) -> Option<u64> {
    let user = channel.checked_sub(DM_CHANNEL_OFFSET)?;
    [USER_ID, OTHER_USER_ID].contains(&user).then_some(user)
}

/// A DM channel object (type 1).
pub fn dm_channel(user: u64) -> Value {
    json!({
        "id": dm_channel_id(user).to_string(),
        "type": 1,
        "recipients": [self::user(user)],
        "last_message_id": null,
        "flags": 0,
    })
}

/// A guild text channel or a DM channel; `None` for an unknown id.
pub fn channel(id: u64) -> Option<Value> {
    if let Some(user) = dm_recipient(id) {
        return Some(dm_channel(user));
    }
    let (name, nsfw, position) = match id {
        GENERAL_CHANNEL_ID => ("general", false, 0),
        NSFW_CHANNEL_ID => ("nsfw-art", true, 1),
        _ => return None,
    };
    Some(json!({
        "id": id.to_string(),
        "type": 0,
        "guild_id": GUILD_ID.to_string(),
        "name": name,
        "position": position,
        "permission_overwrites": [],
        "topic": null,
        "nsfw": nsfw,
        "last_message_id": null,
        "rate_limit_per_user": 0,
        "parent_id": null,
        "flags": 0,
    }))
}

/// The GUILD_CREATE payload for the test guild.
pub fn guild_create() -> Value {
    let channels: Vec<Value> = [GENERAL_CHANNEL_ID, NSFW_CHANNEL_ID]
        .iter()
        .filter_map(|c| channel(*c))
        .collect();
    let mut g = json!({
        "id": GUILD_ID.to_string(),
        "name": "Fake Guild",
        "icon": null,
        "icon_hash": null,
        "splash": null,
        "discovery_splash": null,
        "owner_id": USER_ID.to_string(),
        "afk_channel_id": null,
        "afk_timeout": 300,
        "widget_enabled": false,
        "widget_channel_id": null,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "roles": roles(),
        "emojis": [],
        "features": [],
        "mfa_level": 0,
        "application_id": null,
        "system_channel_id": GENERAL_CHANNEL_ID.to_string(),
        "system_channel_flags": 0,
        "rules_channel_id": null,
        "max_presences": null,
        "max_members": 500000,
        "vanity_url_code": null,
        "description": null,
        "banner": null,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "preferred_locale": "en-US",
        "public_updates_channel_id": null,
        "max_video_channel_users": 25,
        "nsfw_level": 0,
        "stickers": [],
        "premium_progress_bar_enabled": false,
        "safety_alerts_channel_id": null,
    });
    // Guild Create's extra fields (one `json!` for all would hit the macro recursion limit).
    let extra = json!({
        "joined_at": "2024-01-01T00:00:00.000000+00:00",
        "large": false,
        "unavailable": false,
        "member_count": 3,
        "voice_states": [],
        "members": [member(BOT_USER_ID), member(USER_ID), member(OTHER_USER_ID)],
        "channels": channels,
        "threads": [],
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
    });
    if let (Value::Object(g), Value::Object(extra)) = (&mut g, extra) {
        g.extend(extra);
    }
    g
}

/// READY's `d`.
pub fn ready(session_id: &str, resume_gateway_url: &str) -> Value {
    json!({
        "v": 10,
        "user": current_user(),
        "guilds": [{"id": GUILD_ID.to_string(), "unavailable": true}],
        "session_id": session_id,
        "resume_gateway_url": resume_gateway_url,
        "shard": [0, 1],
        "application": {"id": APPLICATION_ID.to_string(), "flags": 0},
        "private_channels": [],
    })
}

/// `GET /gateway/bot`.
pub fn gateway_bot(url: &str) -> Value {
    json!({
        "url": url,
        "shards": 1,
        "session_start_limit": {
            "total": 1000, "remaining": 999, "reset_after": 86_400_000, "max_concurrency": 1
        },
    })
}

/// `GET /oauth2/applications/@me` (and `/applications/@me`).
pub fn application_info() -> Value {
    json!({
        "id": APPLICATION_ID.to_string(),
        "name": "comfycord-fake",
        "icon": null,
        "description": "",
        "rpc_origins": [],
        "bot_public": true,
        "bot_require_code_grant": false,
        "owner": user(USER_ID),
        "verify_key": "0000000000000000000000000000000000000000000000000000000000000000",
        "team": null,
        "flags": 0,
        "bot": current_user(),
    })
}

/// A Discord-style error body.
pub fn error_body(code: u64, message: &str) -> Value {
    json!({"message": message, "code": code})
}

/// One registered command as Discord echoes it back (adds ids, version and defaults).
pub fn echo_command(cmd: &Value, id: u64, guild_id: Option<u64>) -> Value {
    let mut m = match cmd {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    m.insert("id".into(), id.to_string().into());
    m.insert("application_id".into(), APPLICATION_ID.to_string().into());
    m.insert("version".into(), id.to_string().into());
    m.entry("type").or_insert(1.into());
    m.entry("description").or_insert("".into());
    m.entry("default_member_permissions").or_insert(Value::Null);
    m.entry("nsfw").or_insert(false.into());
    if let Some(g) = guild_id {
        m.insert("guild_id".into(), g.to_string().into());
    }
    Value::Object(m)
}

/// A file as the fake stores it on a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFile {
    /// The attachment id the fake gave it.
    pub id: u64,
    pub filename: String,
    pub size: usize,
    pub content_type: Option<String>,
}

/// Where the fake serves an attachment's bytes: `{base_url}/attachments/{id}/{filename}`, with
/// `base_url` the fake's REST base (`http://127.0.0.1:PORT`, see
/// [`FakeDiscord::rest_url`](super::FakeDiscord::rest_url)) and the filename percent-encoded
/// (every byte but `A-Z a-z 0-9 - . _ ~`).
pub fn attachment_url(base_url: &str, id: u64, filename: &str) -> String {
    let mut name = String::with_capacity(filename.len());
    for b in filename.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            name.push(char::from(b));
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    format!(
        "{}/attachments/{}/{}",
        base_url.trim_end_matches('/'),
        id,
        name
    )
}

/// An attachment object; `url` and `proxy_url` point at the fake's own REST server
/// (`GET {base_url}/attachments/{id}/{filename}`).
pub fn attachment(f: &StoredFile, base_url: &str) -> Value {
    let url = attachment_url(base_url, f.id, &f.filename);
    json!({
        "id": f.id.to_string(),
        "filename": f.filename,
        "size": f.size,
        "url": url,
        "proxy_url": url,
        "content_type": f.content_type,
        "height": null,
        "width": null,
    })
}

/// Where a stored message came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageOrigin {
    /// `POST /channels/{c}/messages`.
    Channel,
    /// The initial response of an interaction (callback 4 or 5, edited via `@original`).
    Original,
    /// `POST /webhooks/{app}/{token}`.
    Followup,
    /// Made up by the fake as the message a component interaction sits on.
    Synthetic,
    /// Posted by a member (not the bot), e.g. an image someone shared.
    Member(u64),
}

/// A message as the fake stores it. `payload` is the message's current JSON fields as the bot
/// sent them (content, embeds, components, flags, ...), merged over edits.
#[derive(Clone, Debug)]
pub struct StoredMessage {
    pub id: u64,
    pub channel_id: u64,
    pub origin: MessageOrigin,
    /// The interaction this message answers, for `Original` and `Followup`.
    pub interaction_id: Option<u64>,
    pub payload: Map<String, Value>,
    pub files: Vec<StoredFile>,
    pub timestamp: String,
    pub edited_timestamp: Option<String>,
    /// How many times it was edited.
    pub edits: usize,
    pub deleted: bool,
    /// A deferred (callback 5) response not edited yet ("is thinking...").
    pub loading: bool,
}

impl StoredMessage {
    /// `content`, or "" when absent.
    pub fn content(&self) -> &str {
        self.payload
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// The message flags as sent (64 = ephemeral), plus 128 (loading) while deferred.
    pub fn flags(&self) -> u64 {
        let f = self
            .payload
            .get("flags")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if self.loading {
            f | 128
        } else {
            f
        }
    }

    pub fn ephemeral(&self) -> bool {
        self.flags() & 64 != 0
    }

    /// The message object Discord would return; `base_url` is the fake's REST base, which
    /// attachment URLs point at.
    pub fn to_json(&self, base_url: &str) -> Value {
        let p = &self.payload;
        let embeds: Vec<Value> = p
            .get("embeds")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(normalize_embed).collect())
            .unwrap_or_default();
        let components = p
            .get("components")
            .filter(|c| c.is_array())
            .cloned()
            .unwrap_or_else(|| json!([]));
        let kind = match self.origin {
            MessageOrigin::Channel | MessageOrigin::Synthetic | MessageOrigin::Member(_) => 0,
            MessageOrigin::Original => 20,
            MessageOrigin::Followup => 20,
        };
        let author = match self.origin {
            MessageOrigin::Member(id) => id,
            _ => BOT_USER_ID,
        };
        let mut m = json!({
            "id": self.id.to_string(),
            "channel_id": self.channel_id.to_string(),
            "author": user(author),
            "content": self.content(),
            "timestamp": self.timestamp,
            "edited_timestamp": self.edited_timestamp,
            "tts": p.get("tts").and_then(Value::as_bool).unwrap_or(false),
            "mention_everyone": false,
            "mentions": [],
            "mention_roles": [],
            "attachments": self
                .files
                .iter()
                .map(|f| attachment(f, base_url))
                .collect::<Vec<_>>(),
            "embeds": embeds,
            "reactions": [],
            "pinned": false,
            "type": kind,
            "flags": self.flags(),
            "components": components,
        });
        if let Value::Object(o) = &mut m {
            if matches!(
                self.origin,
                MessageOrigin::Original | MessageOrigin::Followup
            ) {
                o.insert("webhook_id".into(), APPLICATION_ID.to_string().into());
                o.insert("application_id".into(), APPLICATION_ID.to_string().into());
            }
        }
        m
    }
}

/// Discord adds `type: "rich"` to embeds sent without a type.
fn normalize_embed(e: &Value) -> Value {
    let mut e = e.clone();
    if let Value::Object(m) = &mut e {
        m.entry("type").or_insert("rich".into());
    }
    e
}

/// What kind of interaction [`InteractionSpec`] describes.
#[derive(Clone, Debug)]
pub enum SpecKind {
    /// Slash command (interaction type 2).
    Command { name: String },
    /// Autocomplete (type 4): the focused option is marked `focused: true`.
    Autocomplete { name: String, focused: String },
    /// Message component (type 3); `component_type` 2 = button, 3 = string select.
    Component {
        custom_id: String,
        component_type: u8,
        values: Vec<String>,
        /// The message the component is on; the fake makes one up if `None` or unknown.
        message_id: Option<u64>,
    },
    /// Modal submit (type 5): text inputs as `(custom_id, value)`.
    ModalSubmit {
        custom_id: String,
        fields: Vec<(String, String)>,
    },
    /// A message command (type 2, command type 3: right-click a message → Apps → `name`) on
    /// the stored message `target`.
    MessageCommand { name: String, target: u64 },
}

/// An attachment option of a slash command (`resolved.attachments`).
#[derive(Clone, Debug)]
pub struct SpecAttachment {
    pub option: String,
    pub filename: String,
    pub size: usize,
    pub content_type: String,
    /// The bytes the fake serves at the attachment's URL; `None`: `size` zero bytes.
    pub bytes: Option<bytes::Bytes>,
}

/// A description of an interaction to inject with
/// [`FakeDiscord::send_interaction`](super::FakeDiscord::send_interaction).
#[derive(Clone, Debug)]
pub struct InteractionSpec {
    pub kind: SpecKind,
    /// Option values in order: `(name, value)`; the option type follows the JSON value
    /// (string 3, integer 4, boolean 5, number 10).
    pub options: Vec<(String, Value)>,
    pub attachments: Vec<SpecAttachment>,
    pub channel_id: u64,
    pub user_id: u64,
    /// `true`: sent in a DM (`user`, no `guild_id`); `false`: in the test guild (`member`).
    pub dm: bool,
    pub locale: String,
}

impl InteractionSpec {
    fn base(kind: SpecKind) -> Self {
        InteractionSpec {
            kind,
            options: Vec::new(),
            attachments: Vec::new(),
            channel_id: GENERAL_CHANNEL_ID,
            user_id: USER_ID,
            dm: false,
            locale: "en-US".into(),
        }
    }

    /// `/name` slash command in the general channel by [`USER_ID`].
    pub fn command(name: &str) -> Self {
        Self::base(SpecKind::Command { name: name.into() })
    }

    /// Autocomplete for `/name`, with `focused` as the option being typed.
    pub fn autocomplete(name: &str, focused: &str, typed: &str) -> Self {
        Self::base(SpecKind::Autocomplete {
            name: name.into(),
            focused: focused.into(),
        })
        .option(focused, typed)
    }

    /// A button press.
    pub fn button(custom_id: &str, message_id: Option<u64>) -> Self {
        Self::base(SpecKind::Component {
            custom_id: custom_id.into(),
            component_type: 2,
            values: Vec::new(),
            message_id,
        })
    }

    /// The message command `name` on message `target`.
    pub fn message_command(name: &str, target: u64) -> Self {
        Self::base(SpecKind::MessageCommand {
            name: name.into(),
            target,
        })
    }

    /// A string-select choice.
    pub fn select(custom_id: &str, values: &[&str], message_id: Option<u64>) -> Self {
        Self::base(SpecKind::Component {
            custom_id: custom_id.into(),
            component_type: 3,
            values: values.iter().map(|s| s.to_string()).collect(),
            message_id,
        })
    }

    /// A modal submit with text inputs `(custom_id, value)`.
    pub fn modal_submit(custom_id: &str, fields: &[(&str, &str)]) -> Self {
        Self::base(SpecKind::ModalSubmit {
            custom_id: custom_id.into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }

    /// Adds a command option.
    /// Adds a command option, or replaces one of the same name.
    pub fn option(mut self, name: &str, value: impl Into<Value>) -> Self {
        let value = value.into();
        match self.options.iter_mut().find(|(n, _)| n == name) {
            Some(o) => o.1 = value,
            None => self.options.push((name.into(), value)),
        }
        self
    }

    /// Adds an attachment option (type 11) with a resolved attachment of `size` bytes. The
    /// content type follows the file extension; its URL serves `size` zero bytes (use
    /// [`attachment_bytes`](Self::attachment_bytes) for real content).
    pub fn attachment(mut self, option: &str, filename: &str, size: usize) -> Self {
        let content_type = match filename.rsplit('.').next() {
            Some("png") => "image/png",
            Some("jpg") | Some("jpeg") => "image/jpeg",
            Some("webp") => "image/webp",
            _ => "application/octet-stream",
        };
        self.attachments.push(SpecAttachment {
            option: option.into(),
            filename: filename.into(),
            size,
            content_type: content_type.into(),
            bytes: None,
        });
        self
    }

    /// Adds an attachment option (type 11) whose URL serves `bytes` with `content_type`
    /// (`size` = `bytes.len()`).
    pub fn attachment_bytes(
        mut self,
        option: &str,
        filename: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Self {
        self.attachments.push(SpecAttachment {
            option: option.into(),
            filename: filename.into(),
            size: bytes.len(),
            content_type: content_type.into(),
            bytes: Some(bytes.into()),
        });
        self
    }

    pub fn in_channel(mut self, channel_id: u64) -> Self {
        self.channel_id = channel_id;
        self
    }

    pub fn by_user(mut self, user_id: u64) -> Self {
        self.user_id = user_id;
        self
    }

    /// Sent in a DM: `user` instead of `member`, no `guild_id`.
    pub fn in_dm(mut self) -> Self {
        self.dm = true;
        self
    }
}

fn option_json(name: &str, value: &Value) -> Value {
    // An object is the option itself (a subcommand: `{"type": 1, "options": []}`).
    if let Value::Object(o) = value {
        let mut o = o.clone();
        o.insert("name".into(), name.into());
        return Value::Object(o);
    }
    let ty = match value {
        Value::Bool(_) => 5,
        Value::Number(n) if n.is_i64() || n.is_u64() => 4,
        Value::Number(_) => 10,
        _ => 3,
    };
    json!({"name": name, "type": ty, "value": value})
}

/// INTERACTION_CREATE's `d` for `spec`. `message` is the message object a component
/// interaction sits on; `attachment_ids` gives one id per `spec.attachments` entry;
/// `base_url` is the fake's REST base, which attachment URLs point at.
#[allow(clippy::too_many_arguments)]
pub fn interaction(
    spec: &InteractionSpec,
    id: u64,
    token: &str,
    command_id: u64,
    message: Option<Value>,
    attachment_ids: &[u64],
    attachment_size_limit: u64,
    base_url: &str,
) -> Value {
    let (ty, data) = match &spec.kind {
        SpecKind::Command { name } | SpecKind::Autocomplete { name, .. } => {
            let focused = match &spec.kind {
                SpecKind::Autocomplete { focused, .. } => Some(focused.as_str()),
                _ => None,
            };
            let mut options: Vec<Value> = spec
                .options
                .iter()
                .map(|(n, v)| {
                    let mut o = option_json(n, v);
                    if focused == Some(n.as_str()) {
                        o["focused"] = true.into();
                        o["type"] = 3.into();
                    }
                    o
                })
                .collect();
            let mut resolved = Map::new();
            for (a, aid) in spec.attachments.iter().zip(attachment_ids) {
                options.push(json!({"name": a.option, "type": 11, "value": aid.to_string()}));
                let stored = StoredFile {
                    id: *aid,
                    filename: a.filename.clone(),
                    size: a.size,
                    content_type: Some(a.content_type.clone()),
                };
                resolved.insert(aid.to_string(), attachment(&stored, base_url));
            }
            let mut data = json!({
                "id": command_id.to_string(),
                "name": name,
                "type": 1,
                "options": options,
            });
            if !resolved.is_empty() {
                data["resolved"] = json!({"attachments": resolved});
            }
            if !spec.dm {
                data["guild_id"] = GUILD_ID.to_string().into();
            }
            let ty = if focused.is_some() { 4 } else { 2 };
            (ty, data)
        }
        SpecKind::Component {
            custom_id,
            component_type,
            values,
            ..
        } => {
            let mut data = json!({"custom_id": custom_id, "component_type": component_type});
            if *component_type != 2 {
                data["values"] = json!(values);
            }
            (3, data)
        }
        SpecKind::MessageCommand { name, target } => {
            // The target message comes resolved, as the `message` argument carries it.
            let mut messages = Map::new();
            if let Some(m) = &message {
                messages.insert(target.to_string(), m.clone());
            }
            let mut data = json!({
                "id": command_id.to_string(),
                "name": name,
                "type": 3,
                "target_id": target.to_string(),
                "resolved": {"messages": messages},
            });
            if !spec.dm {
                data["guild_id"] = GUILD_ID.to_string().into();
            }
            (2, data)
        }
        SpecKind::ModalSubmit { custom_id, fields } => {
            let rows: Vec<Value> = fields
                .iter()
                .map(|(k, v)| {
                    json!({"type": 1, "components": [{"type": 4, "custom_id": k, "value": v}]})
                })
                .collect();
            (5, json!({"custom_id": custom_id, "components": rows}))
        }
    };
    let mut d = json!({
        "id": id.to_string(),
        "application_id": APPLICATION_ID.to_string(),
        "type": ty,
        "data": data,
        "channel_id": spec.channel_id.to_string(),
        "token": token,
        "version": 1,
        "app_permissions": "2147534848",
        "locale": spec.locale,
        "entitlements": [],
        "authorizing_integration_owners": {"0": GUILD_ID.to_string()},
        "context": if spec.dm { 1 } else { 0 },
        "attachment_size_limit": attachment_size_limit,
    });
    let channel_json = channel(spec.channel_id).unwrap_or_else(
        || json!({"id": spec.channel_id.to_string(), "type": if spec.dm { 1 } else { 0 }}),
    );
    d["channel"] = channel_json;
    if spec.dm {
        d["user"] = user(spec.user_id);
        d["authorizing_integration_owners"] = json!({"1": spec.user_id.to_string()});
    } else {
        d["guild_id"] = GUILD_ID.to_string().into();
        d["guild_locale"] = "en-US".into();
        let mut m = member(spec.user_id);
        m["permissions"] = "2147534848".into();
        d["member"] = m;
    }
    if let Some(msg) = message {
        if !matches!(spec.kind, SpecKind::MessageCommand { .. }) {
            d["message"] = msg;
        }
    }
    d
}

#[cfg(test)]
mod tests {
    //! Every payload the fake emits must deserialize with serenity's own model types.

    use super::*;
    use serenity::model::application::{Command, Interaction};
    use serenity::model::channel::{Channel, Message};
    use serenity::model::event::{Event, GatewayEvent};
    use serenity::model::gateway::{BotGateway, Ready};
    use serenity::model::guild::{Guild, Member, Role};
    use serenity::model::user::{CurrentUser, User};

    /// A REST base like the one [`FakeDiscord::rest_url`](super::super::FakeDiscord::rest_url)
    /// returns.
    const BASE: &str = "http://127.0.0.1:1";

    fn dispatch(t: &str, d: Value) -> Event {
        let frame = json!({"op": 0, "s": 1, "t": t, "d": d});
        match serde_json::from_value::<GatewayEvent>(frame) {
            Ok(GatewayEvent::Dispatch(1, ev)) => ev,
            other => panic!("{t}: not a dispatch: {other:?}"),
        }
    }

    fn sample_messages() -> Vec<StoredMessage> {
        let mut payload = Map::new();
        payload.insert("content".into(), "hello".into());
        payload.insert(
            "embeds".into(),
            json!([{
                "title": "Result", "description": "a cat", "color": 3447003,
                "fields": [{"name": "seed", "value": "42", "inline": true}],
                "image": {"url": "attachment://out.png"},
                "footer": {"text": "comfycord"}
            }]),
        );
        payload.insert(
            "components".into(),
            json!([{"type": 1, "components": [
                {"type": 2, "style": 1, "label": "Reroll", "custom_id": "reroll:1"},
                {"type": 2, "style": 5, "label": "Docs", "url": "https://example.invalid"},
            ]}, {"type": 1, "components": [
                {"type": 3, "custom_id": "pick", "options": [
                    {"label": "A", "value": "a", "default": false}
                ], "min_values": 1, "max_values": 1}
            ]}]),
        );
        payload.insert("flags".into(), 64.into());
        let file = StoredFile {
            id: 5,
            filename: "out.png".into(),
            size: 1234,
            content_type: Some("image/png".into()),
        };
        let base = StoredMessage {
            id: 77,
            channel_id: GENERAL_CHANNEL_ID,
            origin: MessageOrigin::Channel,
            interaction_id: None,
            payload,
            files: vec![file],
            timestamp: now_timestamp(),
            edited_timestamp: Some(now_timestamp()),
            edits: 1,
            deleted: false,
            loading: false,
        };
        let mut out = vec![base.clone()];
        for origin in [
            MessageOrigin::Original,
            MessageOrigin::Followup,
            MessageOrigin::Synthetic,
        ] {
            let mut m = base.clone();
            m.origin = origin;
            out.push(m);
        }
        let mut deferred = base.clone();
        deferred.origin = MessageOrigin::Original;
        deferred.payload = Map::new();
        deferred.files.clear();
        deferred.loading = true;
        deferred.edited_timestamp = None;
        out.push(deferred);
        out
    }

    #[test]
    fn timestamps_parse() {
        let ts = now_timestamp();
        serde_json::from_value::<serenity::model::Timestamp>(json!(ts)).expect("timestamp");
    }

    #[test]
    fn ready_and_guild_create_deserialize() {
        let d = ready("sess", "ws://127.0.0.1:1");
        serde_json::from_value::<Ready>(d.clone()).expect("Ready");
        assert!(matches!(dispatch("READY", d), Event::Ready(_)));
        let g = guild_create();
        let guild = serde_json::from_value::<Guild>(g.clone()).expect("Guild");
        assert_eq!(guild.channels.len(), 2);
        assert_eq!(guild.roles.len(), 2);
        let nsfw = &guild.channels[&NSFW_CHANNEL_ID.into()];
        assert!(nsfw.nsfw);
        match dispatch("GUILD_CREATE", g) {
            Event::GuildCreate(e) => assert_eq!(e.guild.id.get(), GUILD_ID),
            other => panic!("GUILD_CREATE parsed as {other:?}"),
        }
        let resumed = dispatch("RESUMED", json!({}));
        assert!(matches!(resumed, Event::Resumed(_)), "{resumed:?}");
    }

    #[test]
    fn interactions_deserialize() {
        let msg = sample_messages()[3].to_json(BASE);
        let mut posted = sample_messages()[3].clone();
        posted.origin = MessageOrigin::Member(OTHER_USER_ID);
        posted.files = vec![StoredFile {
            id: 903,
            filename: "mine.png".into(),
            size: 10,
            content_type: Some("image/png".into()),
        }];
        let member_msg = posted.to_json(BASE);
        let cases = vec![
            (
                InteractionSpec::command("imagine")
                    .option("prompt", "a cat")
                    .option("steps", 20)
                    .option("cfg", 7.5)
                    .option("hires", true)
                    .attachment("init", "cat.png", 1234),
                None,
                "command",
            ),
            (
                InteractionSpec::command("imagine").in_dm(),
                None,
                "command-dm",
            ),
            (
                InteractionSpec::autocomplete("imagine", "model", "sd"),
                None,
                "autocomplete",
            ),
            (
                InteractionSpec::button("reroll:1", None),
                Some(msg.clone()),
                "component",
            ),
            (
                InteractionSpec::select("pick", &["a"], None),
                Some(msg.clone()),
                "select",
            ),
            (
                InteractionSpec::modal_submit("edit", &[("prompt", "a dog")]),
                None,
                "modal",
            ),
            (
                InteractionSpec::modal_submit("edit", &[("prompt", "a dog")]),
                Some(msg.clone()),
                "modal-with-message",
            ),
            (
                InteractionSpec::message_command("Upscale", 77),
                Some(member_msg),
                "message-command",
            ),
        ];
        for (spec, message, what) in cases {
            let d = interaction(
                &spec,
                900,
                "tok",
                901,
                message,
                &[902],
                DEFAULT_ATTACHMENT_SIZE_LIMIT,
                BASE,
            );
            let i = serde_json::from_value::<Interaction>(d.clone())
                .unwrap_or_else(|e| panic!("{what}: {e}\n{d:#}"));
            match (&spec.kind, &i) {
                (SpecKind::Command { .. }, Interaction::Command(c)) => {
                    if !spec.attachments.is_empty() {
                        assert_eq!(c.data.resolved.attachments.len(), 1);
                        let a = &c.data.resolved.attachments[&902.into()];
                        assert_eq!(a.url, format!("{BASE}/attachments/902/cat.png"));
                        assert_eq!(a.size, 1234);
                        assert_eq!(c.data.options().len(), 5, "{what}");
                    }
                    if spec.dm {
                        assert!(c.member.is_none() && c.user.id.get() == USER_ID);
                    } else {
                        assert_eq!(c.member.as_ref().map(|m| m.user.id.get()), Some(USER_ID));
                    }
                }
                (SpecKind::MessageCommand { .. }, Interaction::Command(c)) => {
                    use serenity::model::application::{CommandType, ResolvedTarget};
                    assert_eq!(c.data.kind, CommandType::Message);
                    let Some(ResolvedTarget::Message(m)) = c.data.target() else {
                        panic!("{what}: no target message in {d:#}");
                    };
                    assert_eq!(m.author.id.get(), OTHER_USER_ID);
                    assert_eq!(m.attachments[0].filename, "mine.png");
                }
                (SpecKind::Autocomplete { .. }, Interaction::Autocomplete(a)) => {
                    assert_eq!(a.data.autocomplete().map(|o| o.value), Some("sd"));
                }
                (SpecKind::Component { .. }, Interaction::Component(c)) => {
                    assert_eq!(c.message.id.get(), 77);
                }
                (SpecKind::ModalSubmit { .. }, Interaction::Modal(m)) => {
                    assert_eq!(m.data.components.len(), 1);
                }
                _ => panic!("{what}: wrong variant {i:?}"),
            }
            match dispatch("INTERACTION_CREATE", d) {
                Event::InteractionCreate(_) => {}
                other => panic!("{what}: INTERACTION_CREATE parsed as {other:?}"),
            }
        }
    }

    #[test]
    fn messages_deserialize() {
        for m in sample_messages() {
            let j = m.to_json(BASE);
            let parsed = serde_json::from_value::<Message>(j.clone())
                .unwrap_or_else(|e| panic!("{e}\n{j:#}"));
            assert_eq!(parsed.id.get(), m.id);
            assert_eq!(parsed.attachments.len(), m.files.len());
            if !m.files.is_empty() {
                assert_eq!(parsed.components.len(), 2);
                assert_eq!(parsed.embeds.len(), 1);
            }
        }
    }

    #[test]
    fn rest_answers_deserialize() {
        serde_json::from_value::<CurrentUser>(current_user()).expect("CurrentUser");
        serde_json::from_value::<User>(user(USER_ID)).expect("User");
        serde_json::from_value::<BotGateway>(gateway_bot("ws://127.0.0.1:1")).expect("gw");
        serde_json::from_value::<serenity::model::application::CurrentApplicationInfo>(
            application_info(),
        )
        .expect("CurrentApplicationInfo");
        serde_json::from_value::<Vec<Role>>(roles()).expect("roles");
        serde_json::from_value::<Member>(member(USER_ID)).expect("member");
        for c in [GENERAL_CHANNEL_ID, NSFW_CHANNEL_ID] {
            let ch = serde_json::from_value::<Channel>(channel(c).expect("known")).expect("ch");
            assert!(ch.guild().is_some());
        }
        let dm = serde_json::from_value::<Channel>(dm_channel(USER_ID)).expect("dm channel");
        assert_eq!(
            dm.private().map(|p| p.recipient.id.get()),
            Some(USER_ID),
            "a DM channel"
        );
        let cmd = json!({
            "name": "imagine", "description": "Generate",
            "options": [{"type": 3, "name": "prompt", "description": "p", "required": true}],
        });
        let echoed = vec![
            echo_command(&cmd, 5, None),
            echo_command(&cmd, 6, Some(GUILD_ID)),
        ];
        let cmds = serde_json::from_value::<Vec<Command>>(Value::Array(echoed)).expect("cmds");
        assert_eq!(cmds[1].guild_id.map(|g| g.get()), Some(GUILD_ID));
        serde_json::from_value::<serenity::http::DiscordJsonError>(error_body(
            10062,
            "Unknown interaction",
        ))
        .expect("error body");
    }
}
