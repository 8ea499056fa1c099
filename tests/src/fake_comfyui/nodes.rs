//! What the simulated nodes do. Images are tracked as (width, height, batch, flat colour) and
//! turned into real files only by the output nodes; progress, previews and errors follow the
//! real nodes (KSampler steps, TestSleep's float seconds, SaveImageWebsocket's PNG frames, ...).

use super::exec::read_file;
use super::images;
use super::job::{Job, Preview};
use super::pyjson::{self, obj};
use super::state::{join_rel, normalize_rel, Dir, FileStore};
use bytes::Bytes;
use indexmap::IndexMap;
use rand::Rng;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Tracked image sides are clamped here (files are further capped at 4096 px a side).
const MAX_TRACKED_SIDE: u64 = 1 << 20;
/// Tracked batch sizes are clamped here (ComfyUI's own batch inputs stop at 4096).
const MAX_BATCH: u64 = 4096;
/// KSampler's `steps` maximum.
const MAX_STEPS: i64 = 10_000;
/// Animated WebP outputs encode at most this many frames of at most this side.
const WEBP_MAX_FRAMES: usize = 100;
const WEBP_MAX_SIDE: u32 = 1024;

/// A flat-coloured image (or latent, or mask) batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Img {
    pub w: u32,
    pub h: u32,
    pub batch: u32,
    pub rgb: [u8; 3],
}

impl Img {
    fn new(w: u64, h: u64, batch: u64, rgb: [u8; 3]) -> Img {
        Img {
            w: w.clamp(1, MAX_TRACKED_SIDE) as u32,
            h: h.clamp(1, MAX_TRACKED_SIDE) as u32,
            batch: batch.clamp(1, MAX_BATCH) as u32,
            rgb,
        }
    }
}

/// A value flowing along a link.
#[derive(Clone, Debug)]
pub enum Val {
    Image(Img),
    /// Dimensions in latent pixels (image size / 8).
    Latent(Img),
    Mask(Img),
    /// MODEL, CLIP, VAE, CONDITIONING, UPSCALE_MODEL, ...: a type name and a label.
    Opaque {
        kind: String,
        label: String,
    },
    Literal(Value),
    /// A link whose value is not available (ComfyUI passes `None`).
    Missing,
}

pub(crate) enum NodeError {
    Interrupted,
    Exception {
        ty: String,
        msg: String,
        /// The "source line" shown in the last traceback frame.
        frame: String,
    },
}

fn exc(ty: &str, msg: impl Into<String>) -> NodeError {
    let msg = msg.into();
    NodeError::Exception {
        ty: ty.to_string(),
        frame: format!(
            "raise {}({})",
            ty.rsplit('.').next().unwrap_or(ty),
            pyjson::str_repr(&msg)
        ),
        msg,
    }
}

pub(crate) struct NodeOut {
    pub outputs: Vec<Val>,
    pub ui: Option<Value>,
}

impl NodeOut {
    fn values(outputs: Vec<Val>) -> Result<NodeOut, NodeError> {
        Ok(NodeOut { outputs, ui: None })
    }
}

pub(crate) struct NodeCtx<'a> {
    pub job: &'a mut Job,
    pub id: &'a str,
    pub class: &'a str,
    pub inputs: &'a IndexMap<String, Val>,
    pub prompt: &'a Value,
    pub extra_data: &'a Value,
    pub temp_prefix: &'a str,
}

impl NodeCtx<'_> {
    fn lit(&self, name: &str) -> Option<&Value> {
        match self.inputs.get(name) {
            Some(Val::Literal(v)) => Some(v),
            _ => None,
        }
    }

    fn int(&self, name: &str, default: i64) -> i64 {
        match self.lit(name) {
            Some(v) => v
                .as_i64()
                .or_else(|| v.as_u64().map(|u| u.min(i64::MAX as u64) as i64))
                .or_else(|| v.as_f64().map(|f| f as i64))
                .unwrap_or(default),
            None => default,
        }
    }

    fn float(&self, name: &str, default: f64) -> f64 {
        self.lit(name).and_then(pyjson::as_num).unwrap_or(default)
    }

    fn string(&self, name: &str, default: &str) -> String {
        self.lit(name)
            .map(pyjson::py_str)
            .unwrap_or_else(|| default.to_string())
    }

    /// An IMAGE input; a missing one fails like torch code on `None` would.
    fn image(&self, name: &str) -> Result<Img, NodeError> {
        match self.inputs.get(name) {
            Some(Val::Image(i)) => Ok(*i),
            _ => Err(exc(
                "AttributeError",
                "'NoneType' object has no attribute 'shape'",
            )),
        }
    }

    fn latent(&self, name: &str) -> Result<Img, NodeError> {
        match self.inputs.get(name) {
            Some(Val::Latent(i)) => Ok(*i),
            _ => Err(exc("TypeError", "'NoneType' object is not subscriptable")),
        }
    }

    fn passthrough(&self, name: &str, kind: &str) -> Val {
        match self.inputs.get(name) {
            Some(v @ Val::Opaque { .. }) => v.clone(),
            _ => Val::Opaque {
                kind: kind.into(),
                label: String::new(),
            },
        }
    }

    async fn sleep(&self, d: Duration) {
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }

    /// `folder_paths.get_full_path_or_raise` against the loader's combo list.
    fn model_file(&self, input: &str, folder: &str) -> Result<String, NodeError> {
        let name = self.string(input, "");
        let options = self.job.shared().info.combo_strings(self.class, input);
        if options.contains(&name) {
            Ok(name)
        } else {
            Err(exc(
                "FileNotFoundError",
                format!(
                    "Model in folder '{}' with filename '{}' not found.",
                    folder, name
                ),
            ))
        }
    }
}

/// Classes ComfyUI schedules first because their function is a coroutine.
pub(crate) fn is_async_class(class: &str) -> bool {
    class == "TestSleep" || class.starts_with("TestAsync")
}

/// PreviewImage's per-object random file prefix (ComfyUI's alphabet, typo included).
pub(crate) fn temp_prefix() -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstupvxyz";
    let mut rng = rand::thread_rng();
    let s: String = (0..5)
        .map(|_| LETTERS[rng.gen_range(0..LETTERS.len())] as char)
        .collect();
    format!("_temp_{}", s)
}

fn opaque(kind: &str, label: &str) -> Val {
    Val::Opaque {
        kind: kind.into(),
        label: label.into(),
    }
}

fn colour_from_int(c: i64) -> [u8; 3] {
    [(c >> 16) as u8, (c >> 8) as u8, c as u8]
}

/// Python's `round()` (half to even).
fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - x.signum()
    } else {
        r
    }
}

pub(crate) async fn run(ctx: &mut NodeCtx<'_>) -> Result<NodeOut, NodeError> {
    let (step_delay, node_delay) = {
        let o = &ctx.job.shared().opts;
        (o.step_delay, o.node_delay)
    };
    match ctx.class {
        "KSampler" | "KSamplerAdvanced" => return ksampler(ctx, step_delay).await,
        "TestSleep" => return test_sleep(ctx).await,
        _ => ctx.sleep(node_delay).await,
    }
    match ctx.class {
        "EmptyImage" => {
            let img = Img::new(
                ctx.int("width", 512).max(1) as u64,
                ctx.int("height", 512).max(1) as u64,
                ctx.int("batch_size", 1).max(1) as u64,
                colour_from_int(ctx.int("color", 0)),
            );
            NodeOut::values(vec![Val::Image(img)])
        }
        "EmptyLatentImage" => {
            let img = Img::new(
                (ctx.int("width", 512).max(0) / 8) as u64,
                (ctx.int("height", 512).max(0) / 8) as u64,
                ctx.int("batch_size", 1).max(1) as u64,
                [0, 0, 0],
            );
            NodeOut::values(vec![Val::Latent(img)])
        }
        "CheckpointLoaderSimple" => {
            let name = ctx.model_file("ckpt_name", "checkpoints")?;
            NodeOut::values(vec![
                opaque("MODEL", &name),
                opaque("CLIP", &name),
                opaque("VAE", &name),
            ])
        }
        "LoraLoader" => {
            let (model, clip) = (ctx.passthrough("model", "MODEL"), ctx.passthrough("clip", "CLIP"));
            if ctx.float("strength_model", 1.0) != 0.0 || ctx.float("strength_clip", 1.0) != 0.0 {
                ctx.model_file("lora_name", "loras")?;
            }
            NodeOut::values(vec![model, clip])
        }
        "UpscaleModelLoader" => {
            let name = ctx.model_file("model_name", "upscale_models")?;
            NodeOut::values(vec![opaque("UPSCALE_MODEL", &name)])
        }
        "CLIPTextEncode" => match ctx.inputs.get("clip") {
            Some(Val::Opaque { .. }) => NodeOut::values(vec![opaque("CONDITIONING", "")]),
            _ => Err(exc(
                "RuntimeError",
                "ERROR: clip input is invalid: None\n\nIf the clip is from a checkpoint loader node your checkpoint does not contain a valid clip or text encoder model.",
            )),
        },
        "VAEDecode" => {
            let l = ctx.latent("samples")?;
            let img = Img::new(l.w as u64 * 8, l.h as u64 * 8, l.batch as u64, l.rgb);
            NodeOut::values(vec![Val::Image(img)])
        }
        "VAEEncode" => {
            let i = ctx.image("pixels")?;
            let l = Img::new(i.w as u64 / 8, i.h as u64 / 8, i.batch as u64, i.rgb);
            NodeOut::values(vec![Val::Latent(l)])
        }
        "ImagePadForOutpaint" => {
            // The padded image and a mask of the same size (1 where new pixels go).
            let i = ctx.image("image")?;
            let pad = |n: &str| ctx.int(n, 0).max(0) as u64;
            let w = i.w as u64 + pad("left") + pad("right");
            let h = i.h as u64 + pad("top") + pad("bottom");
            let out = Img::new(w, h, i.batch as u64, i.rgb);
            let mask = Img::new(w, h, 1, [255, 255, 255]);
            NodeOut::values(vec![Val::Image(out), Val::Mask(mask)])
        }
        "VAEEncodeForInpaint" => {
            // ComfyUI crops the pixels to a multiple of 8 before encoding.
            let i = ctx.image("pixels")?;
            let l = Img::new(i.w as u64 / 8, i.h as u64 / 8, i.batch as u64, i.rgb);
            NodeOut::values(vec![Val::Latent(l)])
        }
        "ImageInvert" => {
            let mut i = ctx.image("image")?;
            i.rgb = i.rgb.map(|c| 255 - c);
            NodeOut::values(vec![Val::Image(i)])
        }
        "ImageScaleBy" => {
            let i = ctx.image("image")?;
            let s = ctx.float("scale_by", 1.0);
            let w = round_half_even(i.w as f64 * s);
            let h = round_half_even(i.h as f64 * s);
            if w < 1.0 || h < 1.0 {
                return Err(exc(
                    "RuntimeError",
                    format!(
                        "Input and output sizes should be greater than 0, but got input (H: {}, W: {}) output (H: {}, W: {})",
                        i.h, i.w, h, w
                    ),
                ));
            }
            NodeOut::values(vec![Val::Image(Img::new(w as u64, h as u64, i.batch as u64, i.rgb))])
        }
        "ImageScale" => {
            let i = ctx.image("image")?;
            let (mut w, mut h) = (ctx.int("width", 512).max(0), ctx.int("height", 512).max(0));
            if w == 0 && h == 0 {
                return NodeOut::values(vec![Val::Image(i)]);
            }
            if w == 0 {
                w = (round_half_even(i.w as f64 * h as f64 / i.h as f64) as i64).max(1);
            } else if h == 0 {
                h = (round_half_even(i.h as f64 * w as f64 / i.w as f64) as i64).max(1);
            }
            NodeOut::values(vec![Val::Image(Img::new(w as u64, h as u64, i.batch as u64, i.rgb))])
        }
        "ImageUpscaleWithModel" => upscale_with_model(ctx),
        "LoadImage" | "LoadImageOutput" => load_image(ctx),
        "RepeatImageBatch" => {
            let i = ctx.image("image")?;
            let amount = ctx.int("amount", 1).max(1) as u64;
            let out = Img::new(i.w as u64, i.h as u64, i.batch as u64 * amount, i.rgb);
            NodeOut::values(vec![Val::Image(out)])
        }
        "ImageBatch" => {
            let (a, b) = (ctx.image("image1")?, ctx.image("image2")?);
            let out = Img::new(a.w as u64, a.h as u64, a.batch as u64 + b.batch as u64, a.rgb);
            NodeOut::values(vec![Val::Image(out)])
        }
        "PrimitiveString" | "PrimitiveStringMultiline" => NodeOut::values(vec![Val::Literal(
            Value::String(ctx.string("value", "")),
        )]),
        "PreviewAny" => {
            // As ComfyUI's: a string as is, numbers and flags as text, anything else as JSON.
            let text = match ctx.inputs.get("source") {
                Some(Val::Literal(Value::String(s))) => s.clone(),
                Some(Val::Literal(v)) => v.to_string(),
                Some(Val::Missing) | None => "None".to_string(),
                Some(_) => "source exists, but could not be serialized.".to_string(),
            };
            Ok(NodeOut {
                outputs: Vec::new(),
                ui: Some(obj([("text", Value::Array(vec![Value::String(text)]))])),
            })
        }
        "LatentBlend" => {
            // samples1 × factor + samples2 × (1 − factor), at samples1's size.
            let (a, b) = (ctx.latent("samples1")?, ctx.latent("samples2")?);
            let f = ctx.float("blend_factor", 0.5).clamp(0.0, 1.0);
            let mut out = a;
            for (o, (x, y)) in out.rgb.iter_mut().zip(a.rgb.iter().zip(b.rgb.iter())) {
                *o = (*x as f64 * f + *y as f64 * (1.0 - f)).round() as u8;
            }
            NodeOut::values(vec![Val::Latent(out)])
        }
        "SaveImage" => save_images(ctx, Dir::Output, "").await,
        "PreviewImage" => {
            let prefix = ctx.temp_prefix.to_string();
            save_images(ctx, Dir::Temp, &prefix).await
        }
        "SaveAnimatedWEBP" => save_animated_webp(ctx).await,
        "SaveImageWebsocket" => save_image_websocket(ctx).await,
        "TestSyncError" => Err(NodeError::Exception {
            ty: "RuntimeError".into(),
            msg: "Intentional sync execution error for testing".into(),
            frame: "raise RuntimeError(\"Intentional sync execution error for testing\")".into(),
        }),
        _ => Ok(passthrough_outputs(ctx)),
    }
}

/// Classes the fake does not model: each output takes the first input of the same type.
fn passthrough_outputs(ctx: &NodeCtx<'_>) -> NodeOut {
    let types = ctx.job.shared().info.output_types(ctx.class);
    let outputs = types
        .iter()
        .map(|t| {
            let t = t.as_str().unwrap_or("*");
            let found = ctx.inputs.values().find(|v| match (t, v) {
                ("IMAGE", Val::Image(_)) | ("LATENT", Val::Latent(_)) | ("MASK", Val::Mask(_)) => {
                    true
                }
                (_, Val::Opaque { kind, .. }) => kind == t,
                ("*", Val::Image(_) | Val::Latent(_)) => true,
                _ => false,
            });
            found.cloned().unwrap_or_else(|| opaque(t, ""))
        })
        .collect();
    NodeOut { outputs, ui: None }
}

async fn ksampler(ctx: &mut NodeCtx<'_>, step_delay: Duration) -> Result<NodeOut, NodeError> {
    let latent = ctx.latent("latent_image")?;
    let seed_name = if ctx.class == "KSampler" {
        "seed"
    } else {
        "noise_seed"
    };
    let seed = ctx
        .lit(seed_name)
        .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)))
        .unwrap_or(0);
    let steps = ctx.int("steps", 20).clamp(0, MAX_STEPS);
    // The sampler's callback reports `step + 1` of `len(sigmas) - 1`.
    let total = if ctx.class == "KSampler" {
        if ctx.float("denoise", 1.0) <= 0.0 {
            0
        } else {
            steps
        }
    } else {
        let start = ctx.int("start_at_step", 0).max(0);
        let last = ctx.int("end_at_step", 10_000).clamp(0, steps);
        (last - start).max(0)
    };
    let rgb = [
        (seed.wrapping_mul(97) % 256) as u8,
        (seed.wrapping_mul(57).wrapping_add(80) % 256) as u8,
        (seed.wrapping_mul(31).wrapping_add(160) % 256) as u8,
    ];
    let previews = ctx.job.shared().opts.previews;
    for step in 1..=total {
        ctx.sleep(step_delay).await;
        let preview = if previews {
            let (w, h) = (latent.w, latent.h);
            let (s, t) = (step as u64, total as u64);
            let jpeg = tokio::task::spawn_blocking(move || images::preview_jpeg(w, h, rgb, s, t))
                .await
                .unwrap_or_default();
            Some(Preview::Jpeg(jpeg))
        } else {
            None
        };
        ctx.job
            .progress(ctx.id, step.into(), total.into(), preview)?;
    }
    NodeOut::values(vec![Val::Latent(Img { rgb, ..latent })])
}

/// ComfyUI's TestSleep: progress in float seconds every 10 ms until `seconds` passed (here
/// `seconds * time_scale` of real time), interruptible at each update.
async fn test_sleep(ctx: &mut NodeCtx<'_>) -> Result<NodeOut, NodeError> {
    let value = ctx.inputs.get("value").cloned().unwrap_or(Val::Missing);
    let seconds = ctx.float("seconds", 1.0).max(0.0);
    let scale = ctx.job.shared().opts.time_scale.max(0.0);
    let real = Duration::from_secs_f64((seconds * scale).min(1.0e6));
    let start = Instant::now();
    let mut now = Duration::ZERO;
    let mut guard = 0u64;
    while now < real && guard < 100_000_000 {
        guard += 1;
        now = start.elapsed();
        let simulated = if scale > 0.0 {
            now.as_secs_f64() / scale
        } else {
            seconds
        };
        let v = simulated.min(seconds);
        ctx.job.progress(
            ctx.id,
            pyjson::float_value(v),
            pyjson::float_value(seconds),
            None,
        )?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    NodeOut::values(vec![value])
}

fn upscale_with_model(ctx: &mut NodeCtx<'_>) -> Result<NodeOut, NodeError> {
    let i = ctx.image("image")?;
    let name = match ctx.inputs.get("upscale_model") {
        Some(Val::Opaque { label, .. }) => label.to_ascii_lowercase(),
        _ => {
            return Err(exc(
                "AttributeError",
                "'NoneType' object has no attribute 'model'",
            ))
        }
    };
    let scale: u64 = if name.contains("x2") || name.contains("2x") {
        2
    } else {
        4
    };
    // One progress update per 512px tile (32px overlap) per image, as tiled_scale does.
    let tiles = (i.h as u64).div_ceil(480) * (i.w as u64).div_ceil(480);
    let steps = (tiles * i.batch as u64).min(10_000);
    for s in 1..=steps {
        ctx.job.progress(ctx.id, s.into(), steps.into(), None)?;
    }
    let out = Img::new(
        i.w as u64 * scale,
        i.h as u64 * scale,
        i.batch as u64,
        i.rgb,
    );
    NodeOut::values(vec![Val::Image(out)])
}

fn load_image(ctx: &mut NodeCtx<'_>) -> Result<NodeOut, NodeError> {
    let name = ctx.string("image", "");
    let shown = format!("<run-dir>/input/{}", name);
    let bytes = FileStore::resolve_annotated(&name)
        .and_then(|(dir, rel)| read_file(ctx.job.shared(), dir, &rel));
    let Some(bytes) = bytes else {
        return Err(exc(
            "FileNotFoundError",
            format!(
                "[Errno 2] No such file or directory: {}",
                pyjson::str_repr(&shown)
            ),
        ));
    };
    let Some((w, h)) = images::dimensions(&bytes) else {
        return Err(exc(
            "PIL.UnidentifiedImageError",
            format!("cannot identify image file {}", pyjson::str_repr(&shown)),
        ));
    };
    let rgb = images::centre_colour(&bytes).unwrap_or([128, 128, 128]);
    let mask = if images::has_alpha(&bytes) {
        Img::new(w as u64, h as u64, 1, [0, 0, 0])
    } else {
        Img::new(64, 64, 1, [0, 0, 0])
    };
    NodeOut::values(vec![
        Val::Image(Img::new(w as u64, h as u64, 1, rgb)),
        Val::Mask(mask),
    ])
}

/// (width, height, colour, fast compression) of an encoded flat PNG.
type PngKey = (u32, u32, [u8; 3], bool);

/// Encoded flat PNGs are reused across saves (tests write the same few images many times).
async fn flat_png(w: u32, h: u32, rgb: [u8; 3], fast: bool) -> Bytes {
    static CACHE: OnceLock<Mutex<HashMap<PngKey, Bytes>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (
        w.min(images::MAX_ENCODED_SIDE),
        h.min(images::MAX_ENCODED_SIDE),
        rgb,
        fast,
    );
    if let Some(b) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return b.clone();
    }
    let png = tokio::task::spawn_blocking(move || images::uniform_png(key.0, key.1, rgb, fast))
        .await
        .unwrap_or_default();
    let png = Bytes::from(png);
    let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
    if c.len() >= 64 {
        c.clear();
    }
    c.insert(key, png.clone());
    png
}

/// `os.path.normpath` (POSIX).
fn py_normpath(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let initial = if p.starts_with("//") && !p.starts_with("///") {
        "//"
    } else if p.starts_with('/') {
        "/"
    } else {
        ""
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if initial.is_empty() {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let out = format!("{}{}", initial, parts.join("/"));
    if out.is_empty() {
        ".".into()
    } else {
        out
    }
}

fn split_dir(p: &str) -> (String, String) {
    match p.rsplit_once('/') {
        Some((d, b)) => (
            if d.is_empty() && p.starts_with('/') {
                "/".into()
            } else {
                d.to_string()
            },
            b.to_string(),
        ),
        None => (String::new(), p.to_string()),
    }
}

/// (year, month, day, hour, minute, second) in UTC.
fn utc_now() -> (i64, u32, u32, u32, u32, u32) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil-from-days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + (m <= 2) as i64;
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem / 60 % 60) as u32,
        (rem % 60) as u32,
    )
}

struct SavePath {
    subfolder: String,
    rel_dir: String,
    filename: String,
    counter: u64,
}

/// `folder_paths.get_save_image_path`.
fn save_path(job: &Job, dir: Dir, prefix: &str, w: u32, h: u32) -> Result<SavePath, NodeError> {
    let mut prefix = prefix.to_string();
    if prefix.contains('%') {
        let (y, mo, d, hh, mi, s) = utc_now();
        prefix = prefix
            .replace("%width%", &w.to_string())
            .replace("%height%", &h.to_string())
            .replace("%year%", &y.to_string())
            .replace("%month%", &format!("{:02}", mo))
            .replace("%day%", &format!("{:02}", d))
            .replace("%hour%", &format!("{:02}", hh))
            .replace("%minute%", &format!("{:02}", mi))
            .replace("%second%", &format!("{:02}", s));
    }
    let (subfolder, filename) = split_dir(&py_normpath(&prefix));
    let Some(rel_dir) = normalize_rel(&subfolder) else {
        let full = py_normpath(&format!("<run-dir>/{}/{}", dir.name(), subfolder));
        return Err(exc(
            "Exception",
            format!(
                "**** ERROR: Saving image outside the output folder is not allowed.\n full_output_folder: {}\n         output_dir: <run-dir>/{}\n         commonpath: <run-dir>",
                full,
                dir.name()
            ),
        ));
    };
    let prefix_len = split_dir(&prefix).1.chars().count();
    let existing = job.shared().lock().files.list(dir, &rel_dir);
    let counter = existing
        .iter()
        .filter_map(|(name, _)| {
            let chars: Vec<char> = name.chars().collect();
            let head: String = chars.iter().take(prefix_len + 1).collect();
            let tail: String = chars.iter().skip(prefix_len + 1).collect();
            let mut hc = head.chars();
            let last = hc.next_back()?;
            (hc.as_str() == filename && last == '_').then(|| {
                tail.split('_')
                    .next()
                    .and_then(|d| d.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            })
        })
        .max()
        .map(|m| m + 1)
        .unwrap_or(1);
    Ok(SavePath {
        subfolder,
        rel_dir,
        filename,
        counter,
    })
}

/// PNG text chunks SaveImage writes: the prompt, then each `extra_pnginfo` key.
fn png_texts(ctx: &NodeCtx<'_>) -> Vec<(String, String)> {
    let mut texts = vec![("prompt".to_string(), pyjson::dumps(ctx.prompt))];
    if let Some(Value::Object(extra)) = ctx.extra_data.get("extra_pnginfo") {
        for (k, v) in extra {
            texts.push((k.clone(), pyjson::dumps(v)));
        }
    }
    texts
}

async fn save_images(ctx: &mut NodeCtx<'_>, dir: Dir, append: &str) -> Result<NodeOut, NodeError> {
    let img = ctx.image("images")?;
    let prefix = format!("{}{}", ctx.string("filename_prefix", "ComfyUI"), append);
    let mut sp = save_path(ctx.job, dir, &prefix, img.w, img.h)?;
    let base = flat_png(img.w, img.h, img.rgb, dir == Dir::Temp).await;
    let bytes = Bytes::from(images::add_png_text(&base, &png_texts(ctx)));
    let mut results = Vec::new();
    let mut g = ctx.job.shared().lock();
    for b in 0..img.batch {
        let name = sp.filename.replace("%batch_num%", &b.to_string());
        let file = format!("{}_{:05}_.png", name, sp.counter);
        g.files
            .put(dir, &join_rel(&sp.rel_dir, &file), bytes.clone());
        results.push(obj([
            ("filename", file.into()),
            ("subfolder", sp.subfolder.clone().into()),
            ("type", dir.name().into()),
        ]));
        sp.counter += 1;
    }
    Ok(NodeOut {
        outputs: Vec::new(),
        ui: Some(obj([("images", Value::Array(results))])),
    })
}

async fn save_animated_webp(ctx: &mut NodeCtx<'_>) -> Result<NodeOut, NodeError> {
    let img = ctx.image("images")?;
    let prefix = ctx.string("filename_prefix", "ComfyUI");
    let sp = save_path(ctx.job, Dir::Output, &prefix, img.w, img.h)?;
    let fps = ctx.float("fps", 6.0).max(0.01);
    let duration = (1000.0 / fps) as u32;
    let (w, h) = (img.w.min(WEBP_MAX_SIDE), img.h.min(WEBP_MAX_SIDE));
    let frames = (img.batch as usize).min(WEBP_MAX_FRAMES);
    let rgb = img.rgb;
    let webp = tokio::task::spawn_blocking(move || {
        let frame = image::RgbImage::from_pixel(w, h, image::Rgb(rgb));
        images::animated_webp(&frame, frames, duration)
    })
    .await
    .unwrap_or_default();
    let file = format!("{}_{:05}_.webp", sp.filename, sp.counter);
    ctx.job.shared().lock().files.put(
        Dir::Output,
        &join_rel(&sp.rel_dir, &file),
        Bytes::from(webp),
    );
    let entry = obj([
        ("filename", file.into()),
        ("subfolder", sp.subfolder.into()),
        ("type", "output".into()),
    ]);
    Ok(NodeOut {
        outputs: Vec::new(),
        ui: Some(obj([
            ("images", Value::Array(vec![entry])),
            ("animated", Value::Array(vec![Value::Bool(img.batch != 1)])),
        ])),
    })
}

/// Every image of the batch goes out as a PNG frame through the progress hook; no UI output.
async fn save_image_websocket(ctx: &mut NodeCtx<'_>) -> Result<NodeOut, NodeError> {
    let img = ctx.image("images")?;
    let png = flat_png(img.w, img.h, img.rgb, true).await;
    for step in 0..img.batch as u64 {
        ctx.job.progress(
            ctx.id,
            step.into(),
            (img.batch as u64).into(),
            Some(Preview::Png(png.to_vec())),
        )?;
    }
    NodeOut::values(Vec::new())
}

/// `format_value` for `execution_error.current_inputs`: primitives as they are, everything
/// else as Python's `str()` (torch tensors, model objects, dicts).
pub(crate) fn format_value(v: &Val) -> Value {
    let tensor = |shape: &[usize], rgb: Option<[u8; 3]>| {
        images::tensor_repr(shape, &|idx: &[usize]| match rgb {
            Some(c) => c[idx[idx.len() - 1] % 3] as f32 / 255.0,
            None => 0.0,
        })
    };
    match v {
        Val::Missing => Value::Null,
        Val::Literal(x @ (Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_))) => {
            x.clone()
        }
        Val::Literal(other) => Value::String(pyjson::py_repr(other)),
        Val::Image(i) => Value::String(tensor(
            &[i.batch as usize, i.h as usize, i.w as usize, 3],
            Some(i.rgb),
        )),
        Val::Latent(l) => Value::String(format!(
            "{{'samples': {}}}",
            tensor(&[l.batch as usize, 4, l.h as usize, l.w as usize], None)
        )),
        Val::Mask(m) => Value::String(tensor(
            &[m.batch as usize, m.h as usize, m.w as usize],
            None,
        )),
        Val::Opaque { kind, .. } => {
            let class = match kind.as_str() {
                "MODEL" => "comfy.model_patcher.ModelPatcher",
                "CLIP" => "comfy.sd.CLIP",
                "VAE" => "comfy.sd.VAE",
                "UPSCALE_MODEL" => "spandrel.__helpers.model_descriptor.ImageModelDescriptor",
                _ => "object",
            };
            Value::String(format!("<{} object at 0x7f3a2c1d2e50>", class))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_helpers() {
        assert_eq!(py_normpath("a//b/./c/.."), "a/b");
        assert_eq!(py_normpath("../x"), "../x");
        assert_eq!(py_normpath(""), ".");
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(3.5), 4.0);
        assert_eq!(split_dir("a/b/c"), ("a/b".into(), "c".into()));
    }
}
