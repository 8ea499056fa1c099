//! File routes: `GET /view` (with its annotations, path checks and re-encodings),
//! `POST /upload/image` and `/upload/mask` (multipart, name de-duplication), and
//! `GET /internal/files/{type}`. Files live in the in-memory store of the shared state.

use super::exec;
use super::images::{self, ViewConversion};
use super::pyjson::obj;
use super::routes::{empty, error_500, first, json_ok, json_response, parse_query, Raised};
use super::state::{join_rel, normalize_rel, Dir, Shared};
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::Value;
use std::sync::Arc;

type St = State<Arc<Shared>>;

pub(crate) async fn internal_files(State(s): St, Path(dir): Path<String>) -> Response {
    let Some(d) = Dir::parse(&dir) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &obj([("error", "Invalid directory type".into())]),
        );
    };
    let mut files = s.lock().files.list(d, "");
    files.sort_by_key(|f| std::cmp::Reverse(f.1));
    json_ok(&Value::Array(
        files.into_iter().map(|(n, _)| Value::String(n)).collect(),
    ))
}

fn guess_content_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" | "jpe" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "bmp" => "image/bmp",
        "tif" | "tiff" => "image/tiff",
        "svg" => "image/svg+xml",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "mp3" => "audio/mpeg",
        "wav" => "audio/x-wav",
        "flac" => "audio/flac",
        "ogg" => "audio/ogg",
        "json" => "application/json",
        "txt" => "text/plain",
        // html/js/css are forced to a download by the server; everything else is unknown
        _ => "application/octet-stream",
    }
}

fn file_response(content_type: &str, filename: &str, bytes: Bytes) -> Response {
    let mut r = Response::new(Body::from(bytes));
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_bytes(format!("filename=\"{}\"", filename).as_bytes()) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// `folder_paths.annotated_filepath` without normalisation: (name, annotated directory).
fn split_annotation(name: &str) -> (String, Option<Dir>) {
    for (suffix, dir) in [
        ("[output]", Dir::Output),
        ("[input]", Dir::Input),
        ("[temp]", Dir::Temp),
    ] {
        if let Some(base) = name.strip_suffix(suffix) {
            let mut base = base.to_string();
            base.pop(); // the space before the bracket
            return (base, Some(dir));
        }
    }
    (name.to_string(), None)
}

pub(crate) async fn view(State(s): St, RawQuery(q): RawQuery) -> Response {
    let q = parse_query(q.as_deref().unwrap_or(""));
    let Some(raw_name) = first(&q, "filename") else {
        return empty(StatusCode::NOT_FOUND);
    };
    let (name, annotated) = split_annotation(raw_name);
    if name.is_empty() || name.starts_with('/') || name.contains("..") {
        return empty(StatusCode::BAD_REQUEST);
    }
    let dir = match annotated {
        Some(d) => d,
        None => match Dir::parse(first(&q, "type").unwrap_or("output")) {
            Some(d) => d,
            None => return empty(StatusCode::BAD_REQUEST),
        },
    };
    let mut rel_dir = String::new();
    if let Some(sub) = first(&q, "subfolder") {
        match normalize_rel(sub) {
            Some(r) => rel_dir = r,
            None => return empty(StatusCode::FORBIDDEN),
        }
    }
    let base = name.rsplit('/').next().unwrap_or(&name).to_string();
    let Some(file) = s.lock().files.get(dir, &join_rel(&rel_dir, &base)).cloned() else {
        return empty(StatusCode::NOT_FOUND);
    };
    let channel = first(&q, "channel");
    if let Some(preview) = first(&q, "preview") {
        let parts: Vec<&str> = preview.split(';').collect();
        let mut format = parts.first().copied().unwrap_or("");
        if !["webp", "jpeg"].contains(&format) || channel.unwrap_or("").contains('a') {
            format = "webp";
        }
        let last = parts.last().copied().unwrap_or("");
        let quality = if !last.is_empty() && last.bytes().all(|c| c.is_ascii_digit()) {
            last.parse::<u64>().unwrap_or(100).clamp(1, 100) as u8
        } else {
            90
        };
        let conv = ViewConversion::Preview {
            jpeg: format == "jpeg",
            quality,
            rgb: channel == Some("rgb"),
        };
        return match images::convert_for_view(&file.bytes, &conv) {
            Some((ct, b)) => file_response(ct, &base, Bytes::from(b)),
            None => error_500(),
        };
    }
    let conv = match channel.unwrap_or("rgba") {
        "rgb" => Some(ViewConversion::Rgb),
        "a" => Some(ViewConversion::Alpha),
        _ => None,
    };
    match conv {
        Some(c) => match images::convert_for_view(&file.bytes, &c) {
            Some((ct, b)) => file_response(ct, &base, Bytes::from(b)),
            None => error_500(),
        },
        None => file_response(guess_content_type(&base), &base, file.bytes),
    }
}

struct Part {
    name: String,
    filename: Option<String>,
    data: Bytes,
}

/// `await request.post()`: form parts in order; a non-multipart body is an empty form.
async fn read_form(req: Request) -> Result<Vec<Part>, Raised> {
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"))
        .unwrap_or(false);
    if !is_multipart {
        return Ok(Vec::new());
    }
    let mut mp = Multipart::from_request(req, &())
        .await
        .map_err(|_| Raised)?;
    let mut parts = Vec::new();
    loop {
        match mp.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or_default().to_string();
                let filename = field.file_name().map(str::to_string);
                let data = field.bytes().await.map_err(|_| Raised)?;
                parts.push(Part {
                    name,
                    filename,
                    data,
                });
            }
            Ok(None) => break,
            Err(_) => return Err(Raised),
        }
    }
    Ok(parts)
}

/// A text field's value (a file part where text is expected makes the server raise).
fn text_field(parts: &[Part], name: &str) -> Result<Option<String>, Raised> {
    match parts.iter().find(|p| p.name == name) {
        None => Ok(None),
        Some(p) if p.filename.as_deref().unwrap_or("").is_empty() => {
            Ok(Some(String::from_utf8_lossy(&p.data).into_owned()))
        }
        Some(_) => Err(Raised),
    }
}

/// `os.path.splitext`.
fn splitext(p: &str) -> (String, String) {
    let sep = p.rfind('/').map(|i| i as isize).unwrap_or(-1);
    if let Some(dot) = p.rfind('.') {
        if dot as isize > sep {
            let start = (sep + 1) as usize;
            if p[start..dot].bytes().any(|c| c != b'.') {
                return (p[..dot].to_string(), p[dot..].to_string());
            }
        }
    }
    (p.to_string(), String::new())
}

pub(crate) async fn upload_image(State(s): St, req: Request) -> Response {
    upload(s, req, false).await
}

pub(crate) async fn upload_mask(State(s): St, req: Request) -> Response {
    upload(s, req, true).await
}

async fn upload(s: Arc<Shared>, req: Request, mask: bool) -> Response {
    let parts = try500!(read_form(req).await);
    let Some(image) = parts.iter().find(|p| p.name == "image") else {
        return empty(StatusCode::BAD_REQUEST);
    };
    // A plain text field named "image" has no `.file`: the handler raises.
    let Some(filename) = image.filename.clone().filter(|f| !f.is_empty()) else {
        return error_500();
    };
    let (overwrite, ty, subfolder) = match (
        text_field(&parts, "overwrite"),
        text_field(&parts, "type"),
        text_field(&parts, "subfolder"),
    ) {
        (Ok(o), Ok(t), Ok(sf)) => (o, t, sf.unwrap_or_default()),
        _ => return error_500(),
    };
    let dir = match ty.as_deref() {
        None => Dir::Input,
        Some(t) => match Dir::parse(t) {
            Some(d) => d,
            None => return error_500(), // get_dir_by_type leaves its variable unbound
        },
    };
    if filename.starts_with('/') {
        return empty(StatusCode::BAD_REQUEST);
    }
    let Some(sub_rel) = normalize_rel(&subfolder) else {
        return empty(StatusCode::BAD_REQUEST);
    };
    let rel_of = |name: &str| normalize_rel(&join_rel(&sub_rel, name));
    let Some(first_rel) = rel_of(&filename) else {
        return empty(StatusCode::BAD_REQUEST);
    };
    if first_rel.is_empty() || first_rel == sub_rel {
        return error_500(); // the "file" is a directory
    }
    let overwrite = matches!(overwrite.as_deref(), Some("true") | Some("1"));
    let mut name = filename.clone();
    let mut rel = first_rel;
    let mut duplicate = false;
    {
        let g = s.lock();
        if !overwrite {
            let (stem, ext) = splitext(&filename);
            let mut i = 1u32;
            while g.files.exists(dir, &rel) {
                match g.files.get(dir, &rel) {
                    Some(f) if f.bytes == image.data => {
                        duplicate = true;
                        break;
                    }
                    Some(_) => {}
                    None => return error_500(), // a directory: open() fails
                }
                if i > 100_000 {
                    return error_500();
                }
                name = format!("{} ({}){}", stem, i, ext);
                rel = match rel_of(&name) {
                    Some(r) => r,
                    None => return empty(StatusCode::BAD_REQUEST),
                };
                i += 1;
            }
        }
    }
    if !duplicate {
        let data = if mask {
            // None: nothing written, still a 200 (the 400 inside is ignored)
            try500!(mask_composite(&s, &parts, &image.data)).map(Bytes::from)
        } else {
            Some(image.data.clone())
        };
        if let Some(data) = data {
            s.lock().files.put(dir, &rel, data);
        }
    }
    json_ok(&obj([
        ("name", name.into()),
        ("subfolder", subfolder.into()),
        ("type", dir.name().into()),
    ]))
}

/// `/upload/mask`'s save function: the original (from `original_ref`) with the mask's alpha.
fn mask_composite(s: &Shared, parts: &[Part], mask: &[u8]) -> Result<Option<Vec<u8>>, Raised> {
    let raw = text_field(parts, "original_ref")?.ok_or(Raised)?;
    let Ok(Value::Object(original_ref)) = serde_json::from_str::<Value>(&raw) else {
        return Err(Raised);
    };
    let filename = match original_ref.get("filename") {
        Some(Value::String(f)) => f.clone(),
        _ => return Err(Raised),
    };
    let (name, annotated) = split_annotation(&filename);
    if name.is_empty() || name.starts_with('/') || name.contains("..") {
        return Ok(None);
    }
    let dir = match annotated {
        Some(d) => d,
        None => {
            let t = original_ref
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("output");
            match Dir::parse(t) {
                Some(d) => d,
                None => return Ok(None),
            }
        }
    };
    let sub = original_ref
        .get("subfolder")
        .and_then(Value::as_str)
        .unwrap_or("");
    let Some(sub_rel) = normalize_rel(sub) else {
        return Ok(None);
    };
    let Some(rel) = normalize_rel(&join_rel(&sub_rel, &name)) else {
        return Ok(None);
    };
    let original = exec::read_file(s, dir, &rel);
    Ok(original.and_then(|o| images::apply_mask(&o, mask)))
}
