//! REST routes under `/api/v10`, plus the CDN route `GET /attachments/{id}/{filename}`. A
//! middleware records every request (JSON body, or multipart `payload_json` plus file parts),
//! applies latency, scripted 429s, size limits and the bot token check (the CDN route gets only
//! the latency), then the handlers answer like Discord with Discord-style error bodies.

// Handlers pass ready-made error answers around as `Err(Response)`.
#![allow(clippy::result_large_err)]

use super::fixtures::{self, MessageOrigin, SpecKind, StoredFile, StoredMessage};
use super::{Blob, InteractionRecord, Parsed, RecordedFile, RecordedRequest, Shared};
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Extension, Router};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Instant;

/// Bodies larger than this are not even read.
const HARD_BODY_CAP: usize = 100 * 1024 * 1024;

type St = State<Arc<Shared>>;

/// The path prefix of the CDN route (outside `/api/v10`).
const CDN_PREFIX: &str = "/attachments/";

/// The error code of a 404 from the CDN route. Discord's CDN answers a bare 404; the fake
/// answers a Discord-style body with this code (not a real Discord code, and not 0, which
/// marks an unknown route).
pub(crate) const UNKNOWN_ATTACHMENT_CODE: u64 = 10_000;

/// The Discord error code of an error answer, for the request record.
#[derive(Clone, Copy, Debug)]
struct ErrorCode(u64);

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let api: Router<Arc<Shared>> = Router::new()
        .route("/gateway", get(gateway))
        .route("/gateway/bot", get(gateway_bot))
        .route("/users/@me", get(users_me))
        .route("/users/@me/channels", post(open_dm))
        .route("/oauth2/applications/@me", get(app_info))
        .route("/applications/@me", get(app_info))
        .route(
            "/applications/{app}/commands",
            put(put_global_commands).get(get_global_commands),
        )
        .route(
            "/applications/{app}/guilds/{guild}/commands",
            put(put_guild_commands).get(get_guild_commands),
        )
        .route("/interactions/{id}/{token}/callback", post(callback))
        .route("/webhooks/{app}/{token}", post(followup))
        .route(
            "/webhooks/{app}/{token}/messages/{mid}",
            get(webhook_get).patch(webhook_patch).delete(webhook_delete),
        )
        .route("/channels/{c}", get(get_channel))
        .route("/channels/{c}/messages", post(channel_post))
        .route(
            "/channels/{c}/messages/{m}",
            get(channel_get).patch(channel_patch).delete(channel_delete),
        )
        .route("/guilds/{g}/roles", get(guild_roles))
        .route("/guilds/{g}/channels", get(guild_channels))
        .route("/guilds/{g}/members/{u}", get(guild_member));
    Router::new()
        .nest("/api/v10", api)
        .route("/attachments/{id}/{filename}", get(cdn_attachment))
        .fallback(unknown_route)
        .layer(middleware::from_fn_with_state(shared.clone(), front))
        .with_state(shared)
}

// ---------- responses ----------

fn json_response(status: StatusCode, v: &Value) -> Response {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn ok(v: Value) -> Response {
    json_response(StatusCode::OK, &v)
}

fn no_content() -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

/// A Discord-style error: `{"message", "code"}`.
fn error(status: u16, code: u64, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = json_response(status, &fixtures::error_body(code, message));
    r.extensions_mut().insert(ErrorCode(code));
    r
}

fn unknown_message() -> Response {
    error(404, 10008, "Unknown Message")
}

fn unknown_channel() -> Response {
    error(404, 10003, "Unknown Channel")
}

fn invalid_form(what: &str) -> Response {
    error(400, 50035, &format!("Invalid Form Body ({})", what))
}

fn rate_limited(rl: super::faults::RateLimit) -> Response {
    let body = serde_json::json!({
        "message": "You are being rate limited.",
        "retry_after": rl.retry_after,
        "global": rl.global,
    });
    let mut r = json_response(StatusCode::TOO_MANY_REQUESTS, &body);
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        + rl.retry_after;
    let h = r.headers_mut();
    let mut set = |k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    set("retry-after", format!("{}", rl.retry_after.ceil() as u64));
    set("x-ratelimit-limit", "5".into());
    set("x-ratelimit-remaining", "0".into());
    set("x-ratelimit-reset", format!("{:.3}", reset));
    set("x-ratelimit-reset-after", format!("{:.3}", rl.retry_after));
    set("x-ratelimit-bucket", "fake0000bucket".into());
    set(
        "x-ratelimit-scope",
        if rl.global { "global" } else { "user" }.into(),
    );
    if rl.global {
        set("x-ratelimit-global", "true".into());
    }
    r
}

// ---------- the front middleware ----------

fn header_string(h: &HeaderMap, name: header::HeaderName) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Parses a JSON or multipart body.
async fn parse_body(content_type: Option<&str>, bytes: &Bytes) -> Parsed {
    let mut parsed = Parsed::default();
    let ct = content_type.unwrap_or("");
    if ct.starts_with("multipart/form-data") {
        let req = Request::builder()
            .header(header::CONTENT_TYPE, ct)
            .body(Body::from(bytes.clone()));
        let Ok(req) = req else { return parsed };
        let Ok(mut mp) = axum::extract::Multipart::from_request(req, &()).await else {
            return parsed;
        };
        while let Ok(Some(field)) = mp.next_field().await {
            let name = field.name().unwrap_or("").to_string();
            let filename = field.file_name().map(str::to_string);
            let content_type = field.content_type().map(str::to_string);
            let Ok(data) = field.bytes().await else { break };
            if name == "payload_json" {
                parsed.json = serde_json::from_slice(&data).ok();
            } else {
                parsed.files.push(RecordedFile {
                    field: name,
                    filename,
                    content_type,
                    data,
                });
            }
        }
    } else if !bytes.is_empty() {
        parsed.json = serde_json::from_slice(bytes).ok();
    }
    parsed
}

/// Records every request and applies latency, scripted 429s, size limits and the token check.
async fn front(State(s): St, req: Request, next: Next) -> Response {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, HARD_BODY_CAP)
        .await
        .unwrap_or_default();
    let content_type = header_string(&parts.headers, header::CONTENT_TYPE);
    let parsed = parse_body(content_type.as_deref(), &bytes).await;
    let mut record = RecordedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        authorization: header_string(&parts.headers, header::AUTHORIZATION),
        content_type,
        user_agent: header_string(&parts.headers, header::USER_AGENT),
        body_len: bytes.len(),
        json: parsed.json.clone(),
        files: parsed.files.clone(),
        status: 0,
        error_code: None,
        at,
    };

    let latency = s.faults.latency();
    if !latency.is_zero() {
        tokio::select! {
            _ = s.cancel.cancelled() => {}
            _ = tokio::time::sleep(latency) => {}
        }
    }

    let route = record.route().to_string();
    // The CDN is not the API: no token, no rate limits, no upload limits.
    let cdn = record.path.starts_with(CDN_PREFIX);
    let token_exempt = route.starts_with("/interactions/") || route.starts_with("/webhooks/");
    let expected_auth = format!("Bot {}", s.opts.token);
    let max_file = s.faults.max_file();
    let rejected = if cdn {
        None
    } else if let Some(rl) = s.faults.take_rate_limit() {
        Some(rate_limited(rl))
    } else if let Some(status) = s.faults.take_server_error(
        !parsed.files.is_empty(),
        record.method == "PATCH",
        record.method == "POST" && !route.ends_with("/callback"),
    ) {
        Some(error(status, 0, "Internal Server Error"))
    } else if bytes.len() as u64 > s.faults.max_body()
        || parsed.files.iter().any(|f| f.data.len() as u64 > max_file)
    {
        Some(error(413, 40005, "Request entity too large"))
    } else if parsed.files.len() > 10 {
        Some(error(
            400,
            30015,
            "Maximum number of attachments in a message reached (10)",
        ))
    } else if !token_exempt && record.authorization.as_deref() != Some(expected_auth.as_str()) {
        Some(error(401, 0, "401: Unauthorized"))
    } else {
        None
    };
    let resp = match rejected {
        Some(r) => r,
        None => {
            let mut req = Request::from_parts(parts, Body::from(bytes));
            req.extensions_mut().insert(parsed);
            next.run(req).await
        }
    };
    record.status = resp.status().as_u16();
    record.error_code = resp.extensions().get::<ErrorCode>().map(|c| c.0);
    if record.status == 404 && record.error_code == Some(0) {
        tracing::warn!(method = %record.method, path = %record.path, "fake Discord: unknown route");
    }
    s.lock().requests.push(record);
    s.bump();
    resp
}

async fn unknown_route() -> Response {
    error(404, 0, "404: Not Found (fake Discord: unknown route)")
}

// ---------- the CDN ----------

/// `GET /attachments/{id}/{filename}`: the bytes of an interaction attachment or of a file the
/// bot uploaded, with its content type; 404 when the id is unknown or the filename differs.
async fn cdn_attachment(State(s): St, Path((id, filename)): Path<(String, String)>) -> Response {
    let blob = id
        .parse::<u64>()
        .ok()
        .and_then(|id| s.lock().blobs.get(&id).cloned())
        .filter(|b| b.filename == filename);
    let Some(blob) = blob else {
        return error(404, UNKNOWN_ATTACHMENT_CODE, "404: Unknown Attachment");
    };
    let data = blob
        .data
        .unwrap_or_else(|| Bytes::from(vec![0u8; blob.size]));
    let content_type = blob
        .content_type
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let mut r = Response::new(Body::from(data));
    r.headers_mut().insert(header::CONTENT_TYPE, content_type);
    r
}

// ---------- gateway, users, application ----------

async fn gateway(State(s): St) -> Response {
    ok(serde_json::json!({"url": s.gateway_url}))
}

async fn gateway_bot(State(s): St) -> Response {
    ok(fixtures::gateway_bot(&s.gateway_url))
}

async fn users_me() -> Response {
    ok(fixtures::current_user())
}

/// `POST /users/@me/channels {"recipient_id"}`: the DM channel with one of the test's users.
async fn open_dm(Extension(body): Extension<Parsed>) -> Response {
    let recipient = body
        .json
        .as_ref()
        .and_then(|j| j.get("recipient_id"))
        .and_then(|v| match v {
            Value::String(s) => s.parse::<u64>().ok(),
            other => other.as_u64(),
        });
    match recipient.filter(|u| fixtures::dm_recipient(fixtures::dm_channel_id(*u)).is_some()) {
        Some(user) => ok(fixtures::dm_channel(user)),
        None => invalid_form("recipient_id is not a known user"),
    }
}

async fn app_info() -> Response {
    ok(fixtures::application_info())
}

// ---------- commands ----------

fn register(s: &Shared, body: &Parsed, guild: Option<u64>) -> Response {
    let Some(Value::Array(cmds)) = &body.json else {
        return invalid_form("expected an array of commands");
    };
    let mut g = s.lock();
    let echoed: Vec<Value> = cmds
        .iter()
        .map(|c| {
            let id = g.next_id();
            fixtures::echo_command(c, id, guild)
        })
        .collect();
    match guild {
        None => g.global_commands = echoed.clone(),
        Some(id) => {
            g.guild_commands.insert(id, echoed.clone());
        }
    }
    ok(Value::Array(echoed))
}

fn check_app(app: &str) -> Result<(), Response> {
    if app == fixtures::APPLICATION_ID.to_string() {
        Ok(())
    } else {
        Err(error(404, 10002, "Unknown Application"))
    }
}

async fn put_global_commands(
    State(s): St,
    Path(app): Path<String>,
    Extension(body): Extension<Parsed>,
) -> Response {
    if let Err(r) = check_app(&app) {
        return r;
    }
    register(&s, &body, None)
}

async fn get_global_commands(State(s): St, Path(app): Path<String>) -> Response {
    if let Err(r) = check_app(&app) {
        return r;
    }
    ok(Value::Array(s.lock().global_commands.clone()))
}

async fn put_guild_commands(
    State(s): St,
    Path((app, guild)): Path<(String, String)>,
    Extension(body): Extension<Parsed>,
) -> Response {
    if let Err(r) = check_app(&app) {
        return r;
    }
    match guild.parse::<u64>() {
        Ok(g) if g == fixtures::GUILD_ID => register(&s, &body, Some(g)),
        _ => error(404, 10004, "Unknown Guild"),
    }
}

async fn get_guild_commands(State(s): St, Path((app, guild)): Path<(String, String)>) -> Response {
    if let Err(r) = check_app(&app) {
        return r;
    }
    let g = guild.parse::<u64>().unwrap_or(0);
    let cmds = s.lock().guild_commands.get(&g).cloned().unwrap_or_default();
    ok(Value::Array(cmds))
}

// ---------- messages ----------

/// Discord's component limits: action rows per message, components per row, and the
/// characters of a custom id and of a button label.
const MAX_ROWS: usize = 5;
const MAX_ROW_COMPONENTS: usize = 5;
const MAX_CUSTOM_ID_CHARS: usize = 100;
const MAX_LABEL_CHARS: usize = 80;

/// Checks the message fields the fake enforces: content length, and components within
/// Discord's limits with unique custom ids (Discord answers 50035 otherwise).
fn validate_payload(p: &Value) -> Result<(), Response> {
    if let Some(c) = p.get("content").and_then(Value::as_str) {
        if c.chars().count() > 2000 {
            return Err(invalid_form("content: Must be 2000 or fewer in length."));
        }
    }
    let Some(rows) = p.get("components").and_then(Value::as_array) else {
        return Ok(());
    };
    if rows.len() > MAX_ROWS {
        return Err(invalid_form("components: Must be 5 or fewer in length."));
    }
    let mut ids = std::collections::HashSet::new();
    for (r, row) in rows.iter().enumerate() {
        let items = row.get("components").and_then(Value::as_array);
        let n = items.map_or(0, Vec::len);
        if !(1..=MAX_ROW_COMPONENTS).contains(&n) {
            return Err(invalid_form(&format!(
                "components.{r}.components: Must be between 1 and 5 in length."
            )));
        }
        for (i, c) in items.into_iter().flatten().enumerate() {
            let at = format!("components.{r}.components.{i}");
            if let Some(id) = c.get("custom_id").and_then(Value::as_str) {
                if id.chars().count() > MAX_CUSTOM_ID_CHARS {
                    return Err(invalid_form(&format!(
                        "{at}.custom_id: Must be 100 or fewer in length."
                    )));
                }
                if !ids.insert(id.to_string()) {
                    return Err(invalid_form(&format!(
                        "{at}.custom_id: Component custom id cannot be duplicated"
                    )));
                }
            }
            if let Some(label) = c.get("label").and_then(Value::as_str) {
                if label.chars().count() > MAX_LABEL_CHARS {
                    return Err(invalid_form(&format!(
                        "{at}.label: Must be 80 or fewer in length."
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Gives each uploaded file an attachment id and serves its bytes on the CDN route.
fn stored_files(g: &mut super::Inner, files: &[RecordedFile]) -> Vec<StoredFile> {
    files
        .iter()
        .map(|f| {
            let stored = StoredFile {
                id: g.next_id(),
                filename: f.filename.clone().unwrap_or_else(|| f.field.clone()),
                size: f.data.len(),
                content_type: f.content_type.clone(),
            };
            g.blobs.insert(
                stored.id,
                Blob {
                    filename: stored.filename.clone(),
                    content_type: stored.content_type.clone(),
                    data: Some(f.data.clone()),
                    size: stored.size,
                },
            );
            stored
        })
        .collect()
}

/// Merges `payload` into the message; v10 `attachments` lists the existing attachments to keep
/// (by id); uploaded files are always added.
fn apply_edit(g: &mut super::Inner, mid: u64, payload: &Value, files: &[RecordedFile]) {
    let new_files = stored_files(g, files);
    let Some(m) = g.messages.get_mut(&mid) else {
        return;
    };
    if let Value::Object(p) = payload {
        for (k, v) in p {
            if k != "attachments" {
                m.payload.insert(k.clone(), v.clone());
            }
        }
        if let Some(Value::Array(keep)) = p.get("attachments") {
            let keep: Vec<String> = keep
                .iter()
                .filter_map(|a| match a.get("id") {
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                })
                .collect();
            m.files.retain(|f| keep.contains(&f.id.to_string()));
        }
    }
    m.files.extend(new_files);
    if m.loading {
        m.loading = false;
        m.payload.remove("flags");
        // A deferred message keeps its ephemeral flag.
    } else {
        m.edits += 1;
        m.edited_timestamp = Some(fixtures::now_timestamp());
    }
}

fn create_message(
    g: &mut super::Inner,
    channel_id: u64,
    origin: MessageOrigin,
    interaction_id: Option<u64>,
    payload: &Value,
    files: &[RecordedFile],
    loading: bool,
) -> u64 {
    let id = g.next_id();
    let files = stored_files(g, files);
    let mut map = Map::new();
    if let Value::Object(p) = payload {
        for (k, v) in p {
            if k != "attachments" {
                map.insert(k.clone(), v.clone());
            }
        }
    }
    g.messages.insert(
        id,
        StoredMessage {
            id,
            channel_id,
            origin,
            interaction_id,
            payload: map,
            files,
            timestamp: fixtures::now_timestamp(),
            edited_timestamp: None,
            edits: 0,
            deleted: false,
            loading,
        },
    );
    id
}

fn message_json(g: &super::Inner, id: u64, base_url: &str) -> Response {
    match g.messages.get(&id) {
        Some(m) if !m.deleted => ok(m.to_json(base_url)),
        _ => unknown_message(),
    }
}

// ---------- interactions ----------

fn callback_allowed(kind: &SpecKind, ty: u64) -> bool {
    match kind {
        SpecKind::Command { .. } | SpecKind::MessageCommand { .. } => matches!(ty, 4 | 5 | 9),
        SpecKind::Autocomplete { .. } => ty == 8,
        SpecKind::Component { .. } => matches!(ty, 4..=7 | 9),
        SpecKind::ModalSubmit { .. } => matches!(ty, 4..=7),
    }
}

async fn callback(
    State(s): St,
    Path((id, token)): Path<(String, String)>,
    Extension(body): Extension<Parsed>,
) -> Response {
    let unknown = || error(404, 10062, "Unknown interaction");
    let Ok(id) = id.parse::<u64>() else {
        return unknown();
    };
    let reject_double = s.faults.reject_double_ack();
    let deadline = s.faults.ack_deadline();
    let mut g = s.lock();
    let Some(rec) = g.interactions.get(&id).cloned() else {
        return unknown();
    };
    if rec.token != token {
        return unknown();
    }
    if rec.acks.is_empty() && deadline.is_some_and(|d| rec.sent_at.elapsed() > d) {
        return unknown();
    }
    if !rec.acks.is_empty() && reject_double {
        return error(400, 40060, "Interaction has already been acknowledged.");
    }
    let payload = body.json.clone().unwrap_or(Value::Null);
    let Some(ty) = payload.get("type").and_then(Value::as_u64) else {
        return invalid_form("type: This field is required");
    };
    if !callback_allowed(&rec.spec.kind, ty) {
        return error(400, 50035, "Invalid Form Body (interaction response type)");
    }
    let data = payload.get("data").cloned().unwrap_or(Value::Null);
    if let Err(r) = validate_payload(&data) {
        return r;
    }
    let channel_id = rec.spec.channel_id;
    let mut original = rec.original;
    match ty {
        4 => {
            original = Some(create_message(
                &mut g,
                channel_id,
                MessageOrigin::Original,
                Some(id),
                &data,
                &body.files,
                false,
            ));
        }
        5 => {
            // Only `flags` (ephemeral) counts for a defer.
            let flags = data.get("flags").cloned().unwrap_or(Value::from(0));
            let p = serde_json::json!({ "flags": flags });
            original = Some(create_message(
                &mut g,
                channel_id,
                MessageOrigin::Original,
                Some(id),
                &p,
                &[],
                true,
            ));
        }
        7 => {
            if let Some(mid) = rec.component_message {
                apply_edit(&mut g, mid, &data, &body.files);
            }
        }
        _ => {}
    }
    if let Some(r) = g.interactions.get_mut(&id) {
        r.acks.push(ty);
        r.original = original;
    }
    no_content()
}

/// The interaction behind a webhook `app`/`token`, or the error Discord gives.
fn interaction_for(s: &Shared, app: &str, token: &str) -> Result<InteractionRecord, Response> {
    if app != fixtures::APPLICATION_ID.to_string() {
        return Err(error(404, 10015, "Unknown Webhook"));
    }
    let (ttl, status) = s.faults.token_ttl();
    let g = s.lock();
    let rec = g
        .interactions
        .values()
        .find(|r| r.token == token)
        .cloned()
        .ok_or_else(|| error(401, 50027, "Invalid Webhook Token"))?;
    if rec.sent_at.elapsed() >= ttl {
        return Err(error(status, 50027, "Invalid Webhook Token"));
    }
    Ok(rec)
}

/// `@original` or a follow-up id of this interaction.
fn resolve_webhook_message(g: &super::Inner, rec: &InteractionRecord, mid: &str) -> Option<u64> {
    if mid == "@original" {
        let component_update = rec.acks.iter().any(|t| matches!(t, 6 | 7));
        return rec
            .original
            .or(rec.component_message.filter(|_| component_update));
    }
    let id = mid.parse::<u64>().ok()?;
    g.messages
        .get(&id)
        .filter(|m| m.interaction_id == Some(rec.id) && !m.deleted)
        .map(|m| m.id)
}

async fn followup(
    State(s): St,
    Path((app, token)): Path<(String, String)>,
    Extension(body): Extension<Parsed>,
) -> Response {
    let rec = match interaction_for(&s, &app, &token) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let payload = body.json.clone().unwrap_or(Value::Null);
    if let Err(r) = validate_payload(&payload) {
        return r;
    }
    let mut g = s.lock();
    if rec.acks.is_empty() {
        return error(404, 10015, "Unknown Webhook");
    }
    // The first follow-up after a defer edits the loading message (unless it was deleted:
    // then the follow-up is a message of its own).
    if let Some(orig) = rec.original {
        if g.messages
            .get(&orig)
            .is_some_and(|m| m.loading && !m.deleted)
        {
            apply_edit(&mut g, orig, &payload, &body.files);
            return message_json(&g, orig, &s.rest_url);
        }
    }
    let id = create_message(
        &mut g,
        rec.spec.channel_id,
        MessageOrigin::Followup,
        Some(rec.id),
        &payload,
        &body.files,
        false,
    );
    message_json(&g, id, &s.rest_url)
}

async fn webhook_get(
    State(s): St,
    Path((app, token, mid)): Path<(String, String, String)>,
) -> Response {
    let rec = match interaction_for(&s, &app, &token) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let g = s.lock();
    match resolve_webhook_message(&g, &rec, &mid) {
        Some(id) => message_json(&g, id, &s.rest_url),
        None => unknown_message(),
    }
}

async fn webhook_patch(
    State(s): St,
    Path((app, token, mid)): Path<(String, String, String)>,
    Extension(body): Extension<Parsed>,
) -> Response {
    let rec = match interaction_for(&s, &app, &token) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let payload = body.json.clone().unwrap_or(Value::Null);
    if let Err(r) = validate_payload(&payload) {
        return r;
    }
    let mut g = s.lock();
    let Some(id) = resolve_webhook_message(&g, &rec, &mid) else {
        return unknown_message();
    };
    if g.messages.get(&id).is_none_or(|m| m.deleted) {
        return unknown_message();
    }
    apply_edit(&mut g, id, &payload, &body.files);
    message_json(&g, id, &s.rest_url)
}

async fn webhook_delete(
    State(s): St,
    Path((app, token, mid)): Path<(String, String, String)>,
) -> Response {
    let rec = match interaction_for(&s, &app, &token) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let mut g = s.lock();
    let Some(id) = resolve_webhook_message(&g, &rec, &mid) else {
        return unknown_message();
    };
    match g.messages.get_mut(&id) {
        Some(m) if !m.deleted => {
            m.deleted = true;
            no_content()
        }
        _ => unknown_message(),
    }
}

// ---------- channels and guilds ----------

fn known_channel(c: &str) -> Option<u64> {
    let id = c.parse::<u64>().ok()?;
    fixtures::channel(id).map(|_| id)
}

async fn get_channel(Path(c): Path<String>) -> Response {
    match known_channel(&c).and_then(fixtures::channel) {
        Some(ch) => ok(ch),
        None => unknown_channel(),
    }
}

async fn channel_post(
    State(s): St,
    Path(c): Path<String>,
    Extension(body): Extension<Parsed>,
) -> Response {
    let Some(cid) = known_channel(&c) else {
        return unknown_channel();
    };
    if fixtures::dm_recipient(cid).is_some_and(|u| s.faults.dms_closed(u)) {
        return error(403, 50007, "Cannot send messages to this user");
    }
    let payload = body.json.clone().unwrap_or(Value::Null);
    if let Err(r) = validate_payload(&payload) {
        return r;
    }
    let empty = payload
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
        && payload
            .get("embeds")
            .and_then(Value::as_array)
            .is_none_or(|e| e.is_empty())
        && payload
            .get("components")
            .and_then(Value::as_array)
            .is_none_or(|e| e.is_empty())
        && body.files.is_empty();
    if empty {
        return error(400, 50006, "Cannot send an empty message");
    }
    let mut g = s.lock();
    let id = create_message(
        &mut g,
        cid,
        MessageOrigin::Channel,
        None,
        &payload,
        &body.files,
        false,
    );
    message_json(&g, id, &s.rest_url)
}

/// A live, non-ephemeral message in channel `c` (bot tokens cannot see ephemeral ones).
fn channel_message(g: &super::Inner, c: &str, m: &str) -> Result<u64, Response> {
    let cid = known_channel(c).ok_or_else(unknown_channel)?;
    let mid = m.parse::<u64>().map_err(|_| unknown_message())?;
    match g.messages.get(&mid) {
        Some(msg) if msg.channel_id == cid && !msg.deleted && !msg.ephemeral() => Ok(mid),
        _ => Err(unknown_message()),
    }
}

async fn channel_get(State(s): St, Path((c, m)): Path<(String, String)>) -> Response {
    let g = s.lock();
    match channel_message(&g, &c, &m) {
        Ok(id) => message_json(&g, id, &s.rest_url),
        Err(r) => r,
    }
}

async fn channel_patch(
    State(s): St,
    Path((c, m)): Path<(String, String)>,
    Extension(body): Extension<Parsed>,
) -> Response {
    let payload = body.json.clone().unwrap_or(Value::Null);
    if let Err(r) = validate_payload(&payload) {
        return r;
    }
    let mut g = s.lock();
    match channel_message(&g, &c, &m) {
        Ok(id) => {
            apply_edit(&mut g, id, &payload, &body.files);
            message_json(&g, id, &s.rest_url)
        }
        Err(r) => r,
    }
}

async fn channel_delete(State(s): St, Path((c, m)): Path<(String, String)>) -> Response {
    let mut g = s.lock();
    match channel_message(&g, &c, &m) {
        Ok(id) => {
            if let Some(msg) = g.messages.get_mut(&id) {
                msg.deleted = true;
            }
            no_content()
        }
        Err(r) => r,
    }
}

fn check_guild(g: &str) -> Result<(), Response> {
    if g == fixtures::GUILD_ID.to_string() {
        Ok(())
    } else {
        Err(error(404, 10004, "Unknown Guild"))
    }
}

async fn guild_roles(Path(g): Path<String>) -> Response {
    match check_guild(&g) {
        Ok(()) => ok(fixtures::roles()),
        Err(r) => r,
    }
}

async fn guild_channels(Path(g): Path<String>) -> Response {
    match check_guild(&g) {
        Ok(()) => ok(fixtures::guild_create()["channels"].clone()),
        Err(r) => r,
    }
}

async fn guild_member(Path((g, u)): Path<(String, String)>) -> Response {
    if let Err(r) = check_guild(&g) {
        return r;
    }
    match u.parse::<u64>() {
        Ok(id @ (fixtures::BOT_USER_ID | fixtures::USER_ID | fixtures::OTHER_USER_ID)) => {
            ok(fixtures::member(id))
        }
        _ => error(404, 10007, "Unknown Member"),
    }
}
