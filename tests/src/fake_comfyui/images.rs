//! Real image bytes for the fake: PNG outputs (with ComfyUI's `prompt`/workflow text chunks),
//! JPEG previews, WebP (static and animated), `/view` conversions, and Python/torch-style
//! tensor strings for `execution_error.current_inputs`.

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::codecs::webp::WebPEncoder;
use image::{DynamicImage, ImageEncoder, Rgb, RgbImage, RgbaImage};

/// Largest side of any image the fake actually encodes.
pub const MAX_ENCODED_SIDE: u32 = 4096;

fn clamp_side(v: u32) -> u32 {
    v.clamp(1, MAX_ENCODED_SIDE)
}

/// A valid RGB PNG of the given size (a small gradient), for tests that upload images.
pub fn tiny_png(width: u32, height: u32) -> Vec<u8> {
    let (w, h) = (clamp_side(width), clamp_side(height));
    let img = RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (x * 255 / w.max(1)) as u8,
            (y * 255 / h.max(1)) as u8,
            ((x + y) % 256) as u8,
        ])
    });
    png_bytes(&DynamicImage::ImageRgb8(img), CompressionType::Default)
}

/// PNG of one flat colour (ComfyUI's outputs in the fake are flat-coloured).
pub fn uniform_png(width: u32, height: u32, rgb: [u8; 3], fast: bool) -> Vec<u8> {
    let img = RgbImage::from_pixel(clamp_side(width), clamp_side(height), Rgb(rgb));
    let c = if fast {
        CompressionType::Fast
    } else {
        CompressionType::Default
    };
    png_bytes(&DynamicImage::ImageRgb8(img), c)
}

fn png_bytes(img: &DynamicImage, compression: CompressionType) -> Vec<u8> {
    let mut out = Vec::new();
    let enc = PngEncoder::new_with_quality(&mut out, compression, FilterType::Adaptive);
    // Encoding an in-memory buffer of matching size cannot fail; fall back to empty on error.
    if img.write_with_encoder(enc).is_err() {
        out.clear();
    }
    out
}

/// JPEG at the given quality (RGB).
pub fn jpeg_bytes(img: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let enc = JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100));
    if enc
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .is_err()
    {
        out.clear();
    }
    out
}

/// Lossless WebP (the image crate only encodes lossless; the format is still `image/webp`).
pub fn webp_bytes(img: &DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    let res = match img {
        DynamicImage::ImageRgba8(rgba) => WebPEncoder::new_lossless(&mut out).write_image(
            rgba.as_raw(),
            rgba.width(),
            rgba.height(),
            image::ExtendedColorType::Rgba8,
        ),
        other => {
            let rgb = other.to_rgb8();
            WebPEncoder::new_lossless(&mut out).write_image(
                rgb.as_raw(),
                rgb.width(),
                rgb.height(),
                image::ExtendedColorType::Rgb8,
            )
        }
    };
    if res.is_err() {
        out.clear();
    }
    out
}

/// Inserts `tEXt` chunks right after IHDR, the way PIL's `PngInfo.add_text` ends up.
pub fn add_png_text(png: &[u8], texts: &[(String, String)]) -> Vec<u8> {
    const IHDR_END: usize = 8 + 8 + 13 + 4;
    if png.len() < IHDR_END || texts.is_empty() {
        return png.to_vec();
    }
    let mut out = Vec::with_capacity(png.len() + 64);
    out.extend_from_slice(&png[..IHDR_END]);
    for (key, text) in texts {
        // tEXt is Latin-1; json.dumps output is ASCII, other text is transliterated to '?'.
        let mut data: Vec<u8> = key.bytes().filter(|b| *b != 0).take(79).collect();
        data.push(0);
        data.extend(
            text.chars()
                .map(|c| if (c as u32) < 256 { c as u8 } else { b'?' }),
        );
        write_chunk(&mut out, b"tEXt", &data);
    }
    out.extend_from_slice(&png[IHDR_END..]);
    out
}

fn write_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                0xedb8_8320 ^ (crc >> 1)
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// An animated WebP (VP8X + ANIM + one ANMF per frame around a lossless VP8L bitstream), as
/// `SaveAnimatedWEBP` writes; a single frame gives a plain WebP. The fake's frames are all the
/// same flat image, so it is encoded once and repeated.
pub fn animated_webp(frame: &RgbImage, count: usize, duration_ms: u32) -> Vec<u8> {
    let single = webp_bytes(&DynamicImage::ImageRgb8(frame.clone()));
    if count <= 1 {
        return single;
    }
    let Some(vp8l) = find_riff_chunk(&single, b"VP8L") else {
        return single;
    };
    let (w, h) = (frame.width(), frame.height());
    let mut body = Vec::new();
    body.extend_from_slice(b"WEBP");
    let mut vp8x = vec![0x02u8, 0, 0, 0]; // animation flag
    vp8x.extend_from_slice(&u24(w - 1));
    vp8x.extend_from_slice(&u24(h - 1));
    riff_chunk(&mut body, b"VP8X", &vp8x);
    let mut anim = vec![255u8, 255, 255, 255];
    anim.extend_from_slice(&0u16.to_le_bytes()); // loop forever
    riff_chunk(&mut body, b"ANIM", &anim);
    let mut anmf = Vec::new();
    anmf.extend_from_slice(&u24(0));
    anmf.extend_from_slice(&u24(0));
    anmf.extend_from_slice(&u24(w - 1));
    anmf.extend_from_slice(&u24(h - 1));
    anmf.extend_from_slice(&u24(duration_ms.min(0xff_ffff)));
    anmf.push(0x02); // do not blend
    anmf.extend_from_slice(vp8l);
    for _ in 0..count {
        riff_chunk(&mut body, b"ANMF", &anmf);
    }
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

fn u24(v: u32) -> [u8; 3] {
    let b = v.to_le_bytes();
    [b[0], b[1], b[2]]
}

fn riff_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(kind);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    if data.len() % 2 == 1 {
        out.push(0);
    }
}

/// The whole chunk (header, data, padding) with the given FourCC inside a RIFF/WEBP file.
fn find_riff_chunk<'a>(file: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    let mut pos = 12;
    while pos + 8 <= file.len() {
        let size = u32::from_le_bytes(file[pos + 4..pos + 8].try_into().ok()?) as usize;
        let end = (pos + 8).checked_add(size + size % 2)?.min(file.len());
        if &file[pos..pos + 4] == kind {
            return Some(&file[pos..end]);
        }
        pos = end;
    }
    None
}

/// `ImageOps.contain(img, (box, box))`: the size that fits the box keeping the aspect ratio.
pub fn contain(w: u32, h: u32, boxed: u32) -> (u32, u32) {
    let (w, h) = (w.max(1) as f64, h.max(1) as f64);
    let r = (boxed as f64 / w).min(boxed as f64 / h);
    (
        ((w * r).round() as u32).clamp(1, boxed),
        ((h * r).round() as u32).clamp(1, boxed),
    )
}

/// A latent2rgb-like preview: the latent's picture contained in 512x512, colour drifting with
/// the step so consecutive frames differ.
pub fn preview_jpeg(width: u32, height: u32, rgb: [u8; 3], step: u64, total: u64) -> Vec<u8> {
    let (w, h) = contain(width, height, 512);
    let t = if total == 0 {
        1.0
    } else {
        step as f64 / total as f64
    };
    let img = RgbImage::from_fn(w, h, |x, y| {
        let n = ((x * 31 + y * 17 + step as u32 * 13) % 64) as f64 * (1.0 - t);
        Rgb([
            (rgb[0] as f64 * t + n) as u8,
            (rgb[1] as f64 * t + n) as u8,
            (rgb[2] as f64 * t + n) as u8,
        ])
    });
    jpeg_bytes(&img, 95)
}

/// Width and height of an encoded image, if it decodes.
pub fn dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .ok()?
        .into_dimensions()
        .ok()
}

/// The colour at the centre of an encoded image (LoadImage's flat-colour stand-in).
pub fn centre_colour(bytes: &[u8]) -> Option<[u8; 3]> {
    let (w, h) = dimensions(bytes)?;
    if (w as u64) * (h as u64) > 16_000_000 {
        return Some([128, 128, 128]);
    }
    let img = image::load_from_memory(bytes).ok()?.to_rgb8();
    Some(img.get_pixel(w / 2, h / 2).0)
}

/// Whether the encoded image has an alpha channel.
pub fn has_alpha(bytes: &[u8]) -> bool {
    image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .ok()
        .and_then(|r| r.decode().ok())
        .map(|i| i.color().has_alpha())
        .unwrap_or(false)
}

/// `/view` re-encodings.
pub enum ViewConversion {
    /// `preview=webp|jpeg;Q` (format already resolved the way the server does).
    Preview { jpeg: bool, quality: u8, rgb: bool },
    /// `channel=rgb`: PNG without alpha.
    Rgb,
    /// `channel=a`: the alpha channel as an RGBA PNG.
    Alpha,
}

/// Returns (content type, bytes), or None when the file is not a decodable image (the real
/// server raises, i.e. answers 500).
pub fn convert_for_view(bytes: &[u8], conv: &ViewConversion) -> Option<(&'static str, Vec<u8>)> {
    let img = image::load_from_memory(bytes).ok()?;
    let out = match conv {
        ViewConversion::Preview {
            jpeg: true,
            quality,
            ..
        } => ("image/jpeg", jpeg_bytes(&img.to_rgb8(), *quality)),
        ViewConversion::Preview {
            jpeg: false, rgb, ..
        } => {
            let img = if *rgb {
                DynamicImage::ImageRgb8(img.to_rgb8())
            } else if img.color().has_alpha() {
                DynamicImage::ImageRgba8(img.to_rgba8())
            } else {
                DynamicImage::ImageRgb8(img.to_rgb8())
            };
            ("image/webp", webp_bytes(&img))
        }
        ViewConversion::Rgb => (
            "image/png",
            png_bytes(
                &DynamicImage::ImageRgb8(img.to_rgb8()),
                CompressionType::Default,
            ),
        ),
        ViewConversion::Alpha => {
            let src = img.to_rgba8();
            let keep_alpha = img.color().has_alpha();
            let out = RgbaImage::from_fn(src.width(), src.height(), |x, y| {
                let a = if keep_alpha {
                    src.get_pixel(x, y).0[3]
                } else {
                    255
                };
                image::Rgba([0, 0, 0, a])
            });
            (
                "image/png",
                png_bytes(&DynamicImage::ImageRgba8(out), CompressionType::Default),
            )
        }
    };
    Some(out)
}

/// Alpha-composites a mask upload onto an original image (`/upload/mask`): the original's RGB
/// with the mask's alpha, as PNG.
pub fn apply_mask(original: &[u8], mask: &[u8]) -> Option<Vec<u8>> {
    let mut base = image::load_from_memory(original).ok()?.to_rgba8();
    let m = image::load_from_memory(mask).ok()?.to_rgba8();
    for (x, y, px) in base.enumerate_pixels_mut() {
        px.0[3] = if x < m.width() && y < m.height() {
            m.get_pixel(x, y).0[3]
        } else {
            255
        };
    }
    Some(png_bytes(
        &DynamicImage::ImageRgba8(base),
        CompressionType::Default,
    ))
}

/// torch's `str(tensor)` for a tensor whose element at an index is given by `value_at`
/// (summarised with `...` above 1000 elements, like `torch.set_printoptions` defaults).
pub fn tensor_repr(shape: &[usize], value_at: &dyn Fn(&[usize]) -> f32) -> String {
    // Collect the values torch would look at to pick its formatter (bounded sample).
    let numel: usize = shape.iter().product();
    let summarize = numel > 1000;
    let mut seen: Vec<f32> = Vec::new();
    let mut idx = vec![0usize; shape.len()];
    sample_values(shape, &mut idx, 0, summarize, value_at, &mut seen);
    let fmt = Formatter::new(&seen);
    let mut prefix = Vec::with_capacity(shape.len());
    let body = if shape.is_empty() {
        fmt.format(value_at(&[]))
    } else {
        tensor_str(shape, &mut prefix, 7, summarize, &fmt, value_at)
    };
    format!("tensor({})", body)
}

fn edge_indices(size: usize, summarize: bool) -> Vec<Option<usize>> {
    if summarize && size > 6 {
        let mut v: Vec<Option<usize>> = (0..3).map(Some).collect();
        v.push(None);
        v.extend((size - 3..size).map(Some));
        v
    } else {
        (0..size).map(Some).collect()
    }
}

fn sample_values(
    shape: &[usize],
    idx: &mut Vec<usize>,
    d: usize,
    summarize: bool,
    value_at: &dyn Fn(&[usize]) -> f32,
    seen: &mut Vec<f32>,
) {
    if seen.len() > 4096 {
        return;
    }
    if d == shape.len() {
        let v = value_at(idx);
        if !seen.contains(&v) {
            seen.push(v);
        }
        return;
    }
    for i in edge_indices(shape[d], summarize).into_iter().flatten() {
        idx[d] = i;
        sample_values(shape, idx, d + 1, summarize, value_at, seen);
    }
}

struct Formatter {
    int_mode: bool,
    sci: bool,
    width: usize,
}

impl Formatter {
    fn new(values: &[f32]) -> Self {
        let nonzero: Vec<f64> = values
            .iter()
            .map(|v| (*v as f64).abs())
            .filter(|v| *v != 0.0 && v.is_finite())
            .collect();
        let int_mode = values.iter().all(|v| v.fract() == 0.0);
        let (mut sci, mut width) = (false, 1);
        if !nonzero.is_empty() {
            let max = nonzero.iter().cloned().fold(f64::MIN, f64::max);
            let min = nonzero.iter().cloned().fold(f64::MAX, f64::min);
            sci = max / min > 1000.0 || max > 1e8 || (!int_mode && min < 1e-4);
        }
        let mut f = Formatter {
            int_mode,
            sci,
            width: 0,
        };
        for v in values {
            width = width.max(f.raw(*v).len());
        }
        f.width = width;
        f
    }

    fn raw(&self, v: f32) -> String {
        if self.sci {
            let s = format!("{:.4e}", v);
            // Python prints exponents as e+00 / e-05.
            match s.split_once('e') {
                Some((m, e)) => {
                    let n: i32 = e.parse().unwrap_or(0);
                    format!("{}e{}{:02}", m, if n < 0 { '-' } else { '+' }, n.abs())
                }
                None => s,
            }
        } else if self.int_mode {
            format!("{:.0}.", v)
        } else {
            format!("{:.4}", v)
        }
    }

    fn format(&self, v: f32) -> String {
        let s = self.raw(v);
        format!("{}{}", " ".repeat(self.width.saturating_sub(s.len())), s)
    }
}

fn tensor_str(
    shape: &[usize],
    prefix: &mut Vec<usize>,
    indent: usize,
    summarize: bool,
    fmt: &Formatter,
    value_at: &dyn Fn(&[usize]) -> f32,
) -> String {
    let d = prefix.len();
    let dim = shape.len() - d;
    let picks = edge_indices(shape[d], summarize);
    if dim == 1 {
        let elems: Vec<String> = picks
            .iter()
            .map(|p| match p {
                Some(i) => {
                    prefix.push(*i);
                    let s = fmt.format(value_at(prefix));
                    prefix.pop();
                    s
                }
                None => " ...".to_string(),
            })
            .collect();
        let per_line = ((80usize.saturating_sub(indent)) / (fmt.width + 2)).max(1);
        let lines: Vec<String> = elems.chunks(per_line).map(|c| c.join(", ")).collect();
        return format!(
            "[{}]",
            lines.join(&format!(",\n{}", " ".repeat(indent + 1)))
        );
    }
    let slices: Vec<String> = picks
        .iter()
        .map(|p| match p {
            Some(i) => {
                prefix.push(*i);
                let s = tensor_str(shape, prefix, indent + 1, summarize, fmt, value_at);
                prefix.pop();
                s
            }
            None => "...".to_string(),
        })
        .collect();
    let sep = format!(",{}{}", "\n".repeat(dim - 1), " ".repeat(indent + 1));
    format!("[{}]", slices.join(&sep))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_repr_matches_torch_layout() {
        let s = tensor_repr(&[1, 2, 2, 3], &|_| 0.0);
        assert_eq!(
            s,
            "tensor([[[[0., 0., 0.],\n          [0., 0., 0.]],\n\n         [[0., 0., 0.],\n          [0., 0., 0.]]]])"
        );
        let big = tensor_repr(&[1, 64, 64, 3], &|i| if i[3] == 0 { 1.0 } else { 0.5 });
        assert!(big.contains("...") && big.contains("1.0000, 0.5000, 0.5000"));
    }

    #[test]
    fn pngs_decode() {
        let p = add_png_text(
            &uniform_png(8, 4, [1, 2, 3], true),
            &[("prompt".into(), "{}".into())],
        );
        assert_eq!(dimensions(&p), Some((8, 4)));
        assert_eq!(centre_colour(&p), Some([1, 2, 3]));
        let webp = animated_webp(&RgbImage::from_pixel(4, 4, Rgb([9, 9, 9])), 3, 100);
        assert_eq!(&webp[..4], b"RIFF");
        assert_eq!(&webp[8..12], b"WEBP");
    }
}
