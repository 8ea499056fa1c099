//! HTTP routes, each also under `/api`, answering like ComfyUI's aiohttp server: JSON as
//! `application/json; charset=utf-8` rendered by `json.dumps`, action endpoints as 200 with an
//! empty body, aiohttp's 500 page when a body does not parse, empty 400/403/404 from `/view`.

use super::files::{internal_files, upload_image, upload_mask, view};
use super::pyjson::{self, obj, truthy};
use super::state::{Dir, FileStore, QueueItem, Shared};
use super::validate::{self, py_float, validate_prompt, ServerError};
use super::RecordedRequest;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{Map, Value};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

/// aiohttp's `client_max_size` (`--max-upload-size 100`).
pub const MAX_UPLOAD: usize = 100 * 1024 * 1024;

type St = State<Arc<Shared>>;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let api: Router<Arc<Shared>> = Router::new()
        .route("/ws", get(ws_route))
        .route("/", get(root))
        .route(
            "/embeddings",
            get(|| async { json_ok(&Value::Array(Vec::new())) }),
        )
        .route("/models", get(models))
        .route("/models/{folder}", get(models_folder))
        .route(
            "/extensions",
            get(|| async { json_ok(&Value::Array(Vec::new())) }),
        )
        .route("/upload/image", post(upload_image))
        .route("/upload/mask", post(upload_mask))
        .route("/view", get(view))
        .route(
            "/view_metadata/{folder}",
            get(|| async { empty(StatusCode::NOT_FOUND) }),
        )
        .route("/system_stats", get(|| async { json_ok(system_stats()) }))
        .route("/features", get(|| async { json_ok(&server_features()) }))
        .route("/prompt", get(get_prompt).post(post_prompt))
        .route("/object_info", get(object_info))
        .route("/object_info/{class}", get(object_info_class))
        .route("/history", get(get_history).post(post_history))
        .route("/history/{prompt_id}", get(get_history_id))
        .route("/queue", get(get_queue).post(post_queue))
        .route("/interrupt", post(post_interrupt))
        .route("/free", post(post_free))
        .route(
            "/settings",
            get(|| async { json_ok(&Value::Object(Map::new())) }),
        )
        .route(
            "/users",
            get(|| async {
                json_ok(&obj([
                    ("storage", "server".into()),
                    ("migrated", true.into()),
                ]))
            }),
        );
    Router::new()
        .merge(api.clone())
        .nest("/api", api)
        // the /internal sub-app is not aliased under /api
        .route("/internal/files/{dir}", get(internal_files))
        .fallback(|| async { text_response(StatusCode::NOT_FOUND, "404: Not Found") })
        .method_not_allowed_fallback(|| async {
            text_response(StatusCode::METHOD_NOT_ALLOWED, "405: Method Not Allowed")
        })
        .layer(DefaultBodyLimit::max(MAX_UPLOAD + 1024 * 1024))
        .layer(middleware::from_fn_with_state(shared.clone(), front))
        .with_state(shared)
}

// ---------- responses ----------

pub(crate) fn json_response(status: StatusCode, v: &Value) -> Response {
    let mut r = Response::new(Body::from(pyjson::dumps(v)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

pub(crate) fn json_ok(v: &Value) -> Response {
    json_response(StatusCode::OK, v)
}

/// `web.Response(status=…)`: empty body, no content type.
pub(crate) fn empty(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

pub(crate) fn text_response(status: StatusCode, text: &str) -> Response {
    let mut r = Response::new(Body::from(text.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// What aiohttp sends when a handler raises.
pub(crate) fn error_500() -> Response {
    text_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "500 Internal Server Error\n\nServer got itself in trouble",
    )
}

pub(crate) fn server_features() -> Value {
    obj([
        ("supports_preview_metadata", true.into()),
        ("max_upload_size", (MAX_UPLOAD as u64).into()),
    ])
}

fn fixture(name: &str) -> Option<Value> {
    let path = format!("{}/fixtures/{}", env!("CARGO_MANIFEST_DIR"), name);
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn system_stats() -> &'static Value {
    static STATS: OnceLock<Value> = OnceLock::new();
    STATS.get_or_init(|| {
        fixture("system_stats.json").unwrap_or_else(|| {
            serde_json::json!({
                "system": {"os": "posix", "ram_total": 25276514304u64, "ram_free": 23359590400u64,
                    "comfyui_version": "0.3.64", "required_frontend_version": "1.27.10",
                    "installed_templates_version": "0.1.95", "required_templates_version": "0.1.95",
                    "python_version": "3.11.7", "pytorch_version": "2.8.0+cu128",
                    "embedded_python": false, "argv": ["main.py", "--cpu"]},
                "devices": [{"name": "cpu", "type": "cpu", "index": null,
                    "vram_total": 25276514304u64, "vram_free": 23359590400u64,
                    "torch_vram_total": 25276514304u64, "torch_vram_free": 23359590400u64}]
            })
        })
    })
}

// ---------- request helpers ----------

/// The Python handler raised: aiohttp answers with its 500 page (see `try500!`).
pub(crate) struct Raised;

/// `application/x-www-form-urlencoded`-style query parsing (`+` is a space), in order.
pub(crate) fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn first<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// `await request.json()`: UTF-8 then JSON, any failure is a 500.
fn parse_body(body: &[u8]) -> Result<Value, Raised> {
    let text = std::str::from_utf8(body).map_err(|_| Raised)?;
    serde_json::from_str(text).map_err(|_| Raised)
}

/// `key in json_data` followed by `json_data[key]`, with Python's behaviour on non-dicts
/// (a list or str that "contains" the key raises, i.e. 500).
fn py_lookup<'a>(v: &'a Value, key: &str) -> Result<Option<&'a Value>, Raised> {
    match v {
        Value::Object(m) => Ok(m.get(key)),
        Value::Array(a) if !a.iter().any(|x| x.as_str() == Some(key)) => Ok(None),
        Value::String(s) if !s.contains(key) => Ok(None),
        _ => Err(Raised),
    }
}

/// Iterating a JSON value the Python way (list items, str characters, dict keys).
fn py_iter(v: &Value) -> Result<Vec<Value>, Raised> {
    match v {
        Value::Array(a) => Ok(a.clone()),
        Value::String(s) => Ok(s.chars().map(|c| Value::String(c.to_string())).collect()),
        Value::Object(m) => Ok(m.keys().cloned().map(Value::String).collect()),
        _ => Err(Raised),
    }
}

fn is_ws_upgrade(h: &HeaderMap) -> bool {
    h.get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.eq_ignore_ascii_case("websocket"))
        .unwrap_or(false)
}

// ---------- middleware ----------

/// (netloc, hostname, port) of a URL, as `urllib.parse` splits it.
fn split_netloc(netloc: &str) -> (Option<String>, Option<u16>) {
    let hostport = netloc.rsplit_once('@').map(|(_, h)| h).unwrap_or(netloc);
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']').unwrap_or((rest, ""));
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return (Some(host.to_ascii_lowercase()), port);
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) => (Some(h.to_ascii_lowercase()), p.parse().ok()),
        None => (
            (!hostport.is_empty()).then(|| hostport.to_ascii_lowercase()),
            None,
        ),
    }
}

fn is_loopback(host: &str) -> bool {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host == "localhost" || host.ends_with(".localhost"),
    }
}

/// ComfyUI's origin-only middleware: Host and Origin both present, a loopback Host, and the
/// two differ (ports compared only when both have one) -> 403.
fn origin_mismatch(h: &HeaderMap) -> bool {
    let (Some(host), Some(origin)) = (
        h.get(header::HOST).and_then(|v| v.to_str().ok()),
        h.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
    ) else {
        return false;
    };
    let host_l = host.to_ascii_lowercase();
    let origin_netloc = match origin.split_once("://") {
        Some((_, rest)) => rest.split(['/', '?', '#']).next().unwrap_or(""),
        None => origin
            .strip_prefix("//")
            .map(|r| r.split(['/', '?', '#']).next().unwrap_or(""))
            .unwrap_or(""),
    }
    .to_ascii_lowercase();
    let (origin_host, origin_port) = split_netloc(&origin_netloc);
    let (host_host, host_port) = split_netloc(&host_l);
    let loopback = host_host.as_deref().map(is_loopback).unwrap_or(false);
    let mut host_domain = Some(host_l.clone());
    let mut origin_domain = Some(origin_netloc);
    if origin_port.is_none() {
        host_domain = host_host;
    }
    if host_port.is_none() {
        origin_domain = origin_host;
    }
    match (host_domain, origin_domain) {
        (Some(a), Some(b)) if loopback && !a.is_empty() && !b.is_empty() => a != b,
        _ => false,
    }
}

/// Records every request and applies the HTTP faults, the origin check and OPTIONS.
async fn front(State(s): St, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_UPLOAD).await {
        Ok(b) => b,
        Err(_) => {
            return text_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("Maximum request body size {} exceeded", MAX_UPLOAD),
            )
        }
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    s.requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(RecordedRequest {
            method: parts.method.to_string(),
            path,
            body: bytes.clone(),
        });
    let upgrade = is_ws_upgrade(&parts.headers);
    if !upgrade && s.faults.take_fail() {
        return error_500();
    }
    if origin_mismatch(&parts.headers) {
        return empty(StatusCode::FORBIDDEN);
    }
    if parts.method == Method::OPTIONS {
        return empty(StatusCode::OK);
    }
    let uri_path = parts.uri.path().to_string();
    let mut resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;

    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.starts_with("application/json"))
        .unwrap_or(false);
    if is_json && s.faults.take_malformed(&uri_path) {
        let (mut rparts, body) = resp.into_parts();
        let full = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        let cut = full.slice(..full.len() / 2);
        rparts.status = StatusCode::OK;
        rparts.headers.remove(header::CONTENT_LENGTH);
        resp = Response::from_parts(rparts, Body::from(cut));
    }
    let delay = s.faults.http_delay_for(&uri_path);
    if !upgrade && !delay.is_zero() {
        tokio::select! {
            _ = s.cancel.cancelled() => {}
            _ = tokio::time::sleep(delay) => {}
        }
    }
    resp
}

// ---------- handlers ----------

async fn ws_route(State(s): St, req: Request) -> Response {
    super::ws::handler(s, req).await
}

async fn root() -> Response {
    let mut r = Response::new(Body::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"UTF-8\"><title>ComfyUI</title></head><body></body></html>",
    ));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r
}

const MODEL_FOLDERS: [&str; 20] = [
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "custom_nodes",
    "hypernetworks",
    "photomaker",
    "classifiers",
    "model_patches",
    "audio_encoders",
];

async fn models() -> Response {
    json_ok(&Value::Array(
        MODEL_FOLDERS
            .iter()
            .map(|f| Value::String(f.to_string()))
            .collect(),
    ))
}

/// Folder contents, taken from the combo lists of the loaders in object_info.
async fn models_folder(State(s): St, Path(folder): Path<String>) -> Response {
    if !MODEL_FOLDERS.contains(&folder.as_str()) {
        return empty(StatusCode::NOT_FOUND);
    }
    let sources: &[(&str, &str)] = match folder.as_str() {
        "checkpoints" => &[
            ("CheckpointLoaderSimple", "ckpt_name"),
            ("CheckpointLoader", "ckpt_name"),
        ],
        "configs" => &[("CheckpointLoader", "config_name")],
        "loras" => &[
            ("LoraLoader", "lora_name"),
            ("LoraLoaderModelOnly", "lora_name"),
        ],
        "vae" => &[("VAELoader", "vae_name")],
        "text_encoders" => &[("CLIPLoader", "clip_name")],
        "diffusion_models" => &[("UNETLoader", "unet_name")],
        "clip_vision" => &[("CLIPVisionLoader", "clip_name")],
        "style_models" => &[("StyleModelLoader", "style_model_name")],
        "controlnet" => &[("ControlNetLoader", "control_net_name")],
        "gligen" => &[("GLIGENLoader", "gligen_name")],
        "upscale_models" => &[("UpscaleModelLoader", "model_name")],
        "hypernetworks" => &[("HypernetworkLoader", "hypernetwork_name")],
        "photomaker" => &[("PhotoMakerLoader", "photomaker_model_name")],
        _ => &[],
    };
    // VAELoader lists virtual entries that are not files.
    const VIRTUAL: [&str; 6] = [
        "pixel_space",
        "taesd",
        "taesdxl",
        "taesd3",
        "taef1",
        "taesdv",
    ];
    let mut out: Vec<Value> = Vec::new();
    for (class, input) in sources {
        for name in s.info.combo_strings(class, input) {
            let v = Value::String(name.clone());
            if !VIRTUAL.contains(&name.as_str()) && !out.contains(&v) {
                out.push(v);
            }
        }
    }
    json_ok(&Value::Array(out))
}

async fn get_prompt(State(s): St) -> Response {
    let data = s.lock().status_data();
    json_ok(data.get("status").unwrap_or(&Value::Null))
}

/// Image files directly in input/, sorted (LoadImage's live combo list).
fn input_images(s: &Shared) -> Vec<Value> {
    const EXT: [&str; 8] = ["png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff"];
    let mut names: Vec<String> = s
        .lock()
        .files
        .list(Dir::Input, "")
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| {
            n.rsplit_once('.')
                .map(|(_, e)| EXT.contains(&e.to_ascii_lowercase().as_str()))
                .unwrap_or(false)
        })
        .collect();
    names.sort();
    names.into_iter().map(Value::String).collect()
}

/// The fixture entry, with LoadImage's file list reflecting the uploads (INPUT_TYPES is
/// evaluated per request on the real server).
fn class_info(s: &Shared, class: &str) -> Option<Value> {
    let mut info = Value::Object(s.info.class(class)?.clone());
    if class == "LoadImage" {
        if let Some(Value::Array(spec)) = info.pointer_mut("/input/required/image") {
            if let Some(first) = spec.first_mut() {
                *first = Value::Array(input_images(s));
            }
        }
    }
    Some(info)
}

async fn object_info(State(s): St) -> Response {
    let mut out = Map::new();
    if let Some(root) = s.info.root().as_object() {
        for name in root.keys() {
            if let Some(i) = class_info(&s, name) {
                out.insert(name.clone(), i);
            }
        }
    }
    json_ok(&Value::Object(out))
}

async fn object_info_class(State(s): St, Path(class): Path<String>) -> Response {
    let mut out = Map::new();
    if let Some(i) = class_info(&s, &class) {
        out.insert(class, i);
    }
    json_ok(&Value::Object(out))
}

fn py_int_param(v: &str) -> Result<i64, Raised> {
    match validate::py_int(&Value::String(v.to_string())) {
        Ok(Value::Number(n)) => Ok(n.as_i64().unwrap_or(i64::MAX)),
        _ => Err(Raised),
    }
}

async fn get_history(State(s): St, RawQuery(q): RawQuery) -> Response {
    let q = parse_query(q.as_deref().unwrap_or(""));
    let max_items = try500!(first(&q, "max_items").map(py_int_param).transpose());
    let mut offset = try500!(first(&q, "offset").map(py_int_param).transpose()).unwrap_or(-1);
    let g = s.lock();
    if let (true, Some(m)) = (offset < 0, max_items) {
        offset = g.history.len() as i64 - m;
    }
    let mut out = Map::new();
    for (i, (k, v)) in g.history.iter().enumerate() {
        if i as i64 >= offset {
            out.insert(k.clone(), v.clone());
            if max_items.is_some_and(|m| out.len() as i64 >= m) {
                break;
            }
        }
    }
    json_ok(&Value::Object(out))
}

async fn get_history_id(State(s): St, Path(id): Path<String>) -> Response {
    let mut out = Map::new();
    if let Some(entry) = s.lock().history.get(&id) {
        out.insert(id, entry.clone());
    }
    json_ok(&Value::Object(out))
}

async fn get_queue(State(s): St) -> Response {
    let g = s.lock();
    let running: Vec<Value> = g.running.iter().map(QueueItem::to_json).collect();
    let pending: Vec<Value> = g.queue.iter().map(QueueItem::to_json).collect();
    json_ok(&obj([
        ("queue_running", Value::Array(running)),
        ("queue_pending", Value::Array(pending)),
    ]))
}

/// Runs validation on a thread with a big stack: the recursion mirrors Python's (up to its
/// recursion limit), which is deeper than a tokio worker stack comfortably allows.
async fn run_validation(
    s: Arc<Shared>,
    prompt: Map<String, Value>,
    partial: Option<Value>,
) -> Result<(validate::Outcome, Map<String, Value>), ServerError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("fake-comfyui-validate".into())
        .stack_size(64 * 1024 * 1024)
        .spawn(move || {
            let mut prompt = prompt;
            let exists = |name: &str| {
                FileStore::resolve_annotated(name)
                    .map(|(d, rel)| s.lock().files.exists(d, &rel))
                    .unwrap_or(false)
            };
            let out = validate_prompt(&mut prompt, partial.as_ref(), &s.info, &exists);
            let _ = tx.send(out.map(|o| (o, prompt)));
        });
    if spawned.is_err() {
        return Err(ServerError);
    }
    rx.await.unwrap_or(Err(ServerError))
}

fn no_prompt() -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &obj([
            (
                "error",
                obj([
                    ("type", "no_prompt".into()),
                    ("message", "No prompt provided".into()),
                    ("details", "No prompt provided".into()),
                    ("extra_info", Value::Object(Map::new())),
                ]),
            ),
            ("node_errors", Value::Object(Map::new())),
        ]),
    )
}

async fn post_prompt(State(s): St, body: Bytes) -> Response {
    let json = try500!(parse_body(&body));
    let m = match &json {
        Value::Object(m) => m,
        _ => {
            // `"number" in data`, `"front" in data`, `"prompt" in data` on a list or str
            for key in ["number", "front", "prompt"] {
                try500!(py_lookup(&json, key));
            }
            s.lock().number += 1;
            return no_prompt();
        }
    };
    let number = match m.get("number") {
        Some(n) => match py_float(n) {
            Ok(f) => f,
            Err(_) => return error_500(),
        },
        None => {
            let mut g = s.lock();
            let mut n = g.number;
            if m.get("front").map(truthy).unwrap_or(false) {
                n = -n;
            }
            g.number += 1;
            Value::from(n)
        }
    };
    let Some(prompt) = m.get("prompt") else {
        return no_prompt();
    };
    let prompt = match prompt {
        Value::Object(p) => p.clone(),
        // iterating an empty list/str finds no outputs; anything else raises
        Value::Array(a) if a.is_empty() => Map::new(),
        Value::String(t) if t.is_empty() => Map::new(),
        _ => return error_500(),
    };
    let prompt_id = match m.get("prompt_id") {
        Some(v) => pyjson::py_str(v),
        None => uuid::Uuid::new_v4().to_string(),
    };
    let partial = m.get("partial_execution_targets").cloned();
    let (outcome, prompt) = match run_validation(s.clone(), prompt, partial).await {
        Ok(v) => v,
        Err(ServerError) => return error_500(),
    };
    let mut extra_data = m
        .get("extra_data")
        .cloned()
        .unwrap_or(Value::Object(Map::new()));
    if let Some(cid) = m.get("client_id") {
        match &mut extra_data {
            Value::Object(e) => {
                e.insert("client_id".into(), cid.clone());
            }
            _ => return error_500(),
        }
    }
    if !outcome.ok {
        return json_response(
            StatusCode::BAD_REQUEST,
            &obj([
                ("error", outcome.error),
                ("node_errors", outcome.node_errors),
            ]),
        );
    }
    {
        let mut g = s.lock();
        g.heap_push(QueueItem {
            number: number.clone(),
            prompt_id: prompt_id.clone(),
            prompt: Value::Object(prompt),
            extra_data,
            outputs: outcome.good_outputs,
        });
        g.broadcast_status();
    }
    s.worker_wake.notify_one();
    json_ok(&obj([
        ("prompt_id", prompt_id.into()),
        ("number", number),
        ("node_errors", outcome.node_errors),
    ]))
}

async fn post_queue(State(s): St, body: Bytes) -> Response {
    let json = try500!(parse_body(&body));
    if let Some(v) = try500!(py_lookup(&json, "clear")) {
        if truthy(v) {
            let mut g = s.lock();
            g.queue.clear();
            g.broadcast_status();
        }
    }
    if let Some(list) = try500!(py_lookup(&json, "delete")) {
        let ids = try500!(py_iter(list));
        let mut g = s.lock();
        for id in ids {
            if let Value::String(id) = id {
                g.delete_pending(&id);
            }
        }
    }
    empty(StatusCode::OK)
}

async fn post_interrupt(State(s): St, body: Bytes) -> Response {
    // A body that is not JSON counts as {}; invalid UTF-8 still raises.
    let Ok(text) = std::str::from_utf8(&body) else {
        return error_500();
    };
    let json = serde_json::from_str::<Value>(text).unwrap_or(Value::Object(Map::new()));
    let Value::Object(m) = json else {
        return error_500();
    };
    match m.get("prompt_id") {
        Some(pid) if truthy(pid) => {
            let running = s.lock().running.as_ref().map(|r| r.prompt_id.clone());
            if running.is_some() && running.as_deref() == pid.as_str() {
                s.interrupt.store(true, Ordering::SeqCst);
            }
        }
        _ => s.interrupt.store(true, Ordering::SeqCst),
    }
    empty(StatusCode::OK)
}

async fn post_free(State(s): St, body: Bytes) -> Response {
    let json = try500!(parse_body(&body));
    let Value::Object(m) = json else {
        return error_500();
    };
    {
        let mut g = s.lock();
        if let Some(v) = m.get("unload_models").filter(|v| truthy(v)) {
            g.flags.unload_models = Some(v.clone());
        }
        if let Some(v) = m.get("free_memory").filter(|v| truthy(v)) {
            g.flags.free_memory = Some(v.clone());
        }
    }
    s.worker_wake.notify_one();
    empty(StatusCode::OK)
}

async fn post_history(State(s): St, body: Bytes) -> Response {
    let json = try500!(parse_body(&body));
    if let Some(v) = try500!(py_lookup(&json, "clear")) {
        if truthy(v) {
            s.lock().history.clear();
        }
    }
    if let Some(list) = try500!(py_lookup(&json, "delete")) {
        let ids = try500!(py_iter(list));
        let mut g = s.lock();
        for id in ids {
            match id {
                Value::String(id) => {
                    g.history.shift_remove(&id);
                }
                Value::Array(_) | Value::Object(_) => return error_500(), // unhashable
                _ => {}
            }
        }
    }
    empty(StatusCode::OK)
}
