//! Making an image small enough to upload (Discord's attachment limit), losing as little as
//! possible and spending time only where it can pay off.
//!
//! The order: the original if it fits; lossless WebP, then PNG at best compression, when a
//! lossless file can plausibly fit; a JPEG quality ladder at full size; then smaller sizes
//! at two JPEG qualities. Which JPEG rung to encode is chosen by encoding a mosaic of tiles
//! sampled across the image (a sixteenth of a 4096² image, ~40 ms a rung) and scaling the
//! size up, so a large image is usually encoded in full once. The file on disk is never
//! changed: only the upload is.
//!
//! Measured on a 4096² noisy render (release, one core): decoding 0.15 s, lossless WebP
//! 0.2 s, PNG at best compression 1.8–4 s for sizes within 7% of the WebP, a full JPEG
//! encode 0.35–0.7 s, a Triangle resize to 0.75 1 s. Hence WebP before PNG, and PNG only
//! when the WebP was close.

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::codecs::webp::WebPEncoder;
use image::error::{LimitError, LimitErrorKind};
use image::imageops::FilterType as ResizeFilter;
use image::{
    DynamicImage, ExtendedColorType, GrayImage, ImageError, ImageFormat, ImageReader, Limits,
    RgbImage,
};

use crate::job::OutputKind;

/// Largest width or height decoded: bigger is no ComfyUI output and could exhaust memory.
pub const MAX_SIDE: u32 = 16_384;
/// Most memory the decoder may allocate.
pub const MAX_ALLOC: u64 = 1 << 30;
/// Most expensive steps (encodes of a large image in full, and resizes) before giving up.
const MAX_STEPS: usize = 12;
/// Downscaling never goes below this many pixels on the shorter side.
const MIN_SIDE: u32 = 64;
/// Each downscale step multiplies both sides by this.
const SCALE_STEP: f64 = 0.75;
/// Lossless re-encoding is skipped when the original lossless file is this many times over
/// the limit: better deflate settings or WebP rarely save more than 15%.
const LOSSLESS_MAX_RATIO: u64 = 3;
/// PNG at best compression (slow) is tried only when the lossless WebP was at most this
/// much over the limit: the PNG measured 2–6% smaller than the WebP on renders.
const PNG_AFTER_WEBP_RATIO: f64 = 1.1;
/// JPEG qualities tried at full size, best first.
const FULL_SIZE_QUALITIES: [u8; 9] = [92, 90, 88, 85, 80, 75, 70, 65, 50];
/// JPEG qualities tried at each smaller size.
const SCALED_QUALITIES: [u8; 2] = [85, 70];
/// A rung is encoded in full when the sample predicts at most this share of the limit:
/// a miss costs a full encode, a needless lower quality costs some quality.
const PREDICTION_MARGIN: f64 = 0.97;
/// Images up to this many pixels are encoded whole instead of sampled.
const EXACT_MAX_PIXELS: u64 = 2 << 20;
/// The sample: `GRID` × `GRID` tiles of `TILE` px (a multiple of 16, JPEG's largest block).
const GRID: u32 = 4;
const TILE: u32 = 256;

/// How the uploaded bytes were made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FittedFormat {
    /// The input, unchanged.
    Original,
    /// Re-encoded losslessly as PNG (8 bits per channel, metadata dropped).
    Png,
    /// Re-encoded losslessly as WebP (8 bits per channel, metadata dropped).
    WebpLossless,
    /// Re-encoded as JPEG (alpha flattened onto white).
    Jpeg { quality: u8 },
}

impl FittedFormat {
    /// The file extension for the new format, or `None` for [`FittedFormat::Original`].
    pub fn extension(self) -> Option<&'static str> {
        match self {
            FittedFormat::Original => None,
            FittedFormat::Png => Some("png"),
            FittedFormat::WebpLossless => Some("webp"),
            FittedFormat::Jpeg { .. } => Some("jpg"),
        }
    }
}

/// An image that fits the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fitted {
    pub bytes: Vec<u8>,
    pub format: FittedFormat,
    /// The size in pixels of what `bytes` holds; 0 × 0 for an [`FittedFormat::Original`]
    /// whose header could not be read.
    pub width: u32,
    pub height: u32,
    /// Whether the image was made smaller than the original.
    pub scaled: bool,
}

/// Why an image could not be fitted.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error("cannot decode the image: {0}")]
    Decode(#[source] ImageError),
    #[error("the image is too large to process (over {MAX_SIDE} px a side or 1 GiB decoded): {0}")]
    TooBig(#[source] ImageError),
    #[error("cannot encode the image: {0}")]
    Encode(#[source] ImageError),
    #[error(
        "cannot make the image fit in {limit} bytes (smallest reached: about {smallest} bytes)"
    )]
    CannotFit { limit: u64, smallest: u64 },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl FitError {
    fn decoding(e: ImageError) -> FitError {
        match e {
            ImageError::Limits(_) => FitError::TooBig(e),
            e => FitError::Decode(e),
        }
    }
}

/// What to upload for one output file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upload {
    /// Bytes under the limit, with the file name to give them (its extension changed when the
    /// format was).
    File {
        name: String,
        bytes: Vec<u8>,
        format: FittedFormat,
        scaled: bool,
    },
    /// A video, animation or other file over the limit: those are never re-encoded, so the
    /// user gets the file's location instead.
    TooLarge { size: u64, limit: u64 },
}

/// Makes `bytes` (PNG, JPEG or WebP) at most `limit` bytes long, losing as little as it can:
/// the original if it fits; lossless WebP, then PNG at best compression, when a lossless
/// file can plausibly fit; JPEG at qualities 92 down to 50; then JPEG 85 or 70 at sizes
/// shrinking by 0.75 a side (down to 64 px). Large images pick their JPEG quality from a
/// sample first, so they are usually encoded in full only once.
///
/// Truncated or unknown input is [`FitError::Decode`], never a panic.
pub fn fit_image(bytes: &[u8], limit: u64) -> Result<Fitted, FitError> {
    let original_len = bytes.len() as u64;
    if original_len <= limit {
        let (width, height) = dimensions(bytes).unwrap_or((0, 0));
        return Ok(Fitted {
            bytes: bytes.to_vec(),
            format: FittedFormat::Original,
            width,
            height,
            scaled: false,
        });
    }
    let source_format = image::guess_format(bytes).ok();
    let image = normalize(decode(bytes)?);
    let (width, height) = (image.width(), image.height());
    let mut search = Search::new(limit);

    // Lossless first, where it can plausibly fit: not for a JPEG (its decoded pixels
    // compress far worse losslessly than the JPEG did), nor for a lossless file far over.
    let lossless_hopeful = match source_format {
        Some(ImageFormat::Jpeg) => false,
        _ => original_len < limit.saturating_mul(LOSSLESS_MAX_RATIO),
    };
    if lossless_hopeful {
        let webp = encode_webp(&image)?;
        let webp_len = webp.len() as u64;
        if let Some(fitted) = search.check(webp, FittedFormat::WebpLossless, false) {
            return Ok(fitted);
        }
        if webp_len as f64 <= limit as f64 * PNG_AFTER_WEBP_RATIO {
            let png = encode_png(&image)?;
            if let Some(fitted) = search.check(png, FittedFormat::Png, false) {
                return Ok(fitted);
            }
        }
    }

    let flat = flatten(image);
    let sizes = match search.jpeg_ladder(&flat, &FULL_SIZE_QUALITIES, false)? {
        Ladder::Fitted(fitted) => return Ok(fitted),
        Ladder::Missed(sizes) => sizes,
    };

    // Smaller sizes, resampled from the full-size image each time (repeated resampling
    // blurs). The scale is the largest power of `SCALE_STEP` predicted to fit at the first
    // scaled quality, taking JPEG size to follow pixel count; a miss re-predicts from the
    // sizes found at that scale.
    let first = SCALED_QUALITIES[0];
    let mut per_area = size_at(&sizes, first);
    let min_scale = (f64::from(MIN_SIDE) / f64::from(width.min(height))).min(1.0);
    let mut scale = 1.0f64;
    while let Some(bytes_per_area) = per_area {
        let target = limit as f64 / bytes_per_area; // the largest scale², predicted
        let mut next = scale * SCALE_STEP;
        while next * next > target && next > min_scale {
            next *= SCALE_STEP;
        }
        let next = next.max(min_scale);
        if next >= scale || !search.step() {
            break;
        }
        scale = next;
        let (w, h) = scaled_size(width, height, scale);
        let small = resize(&flat, w, h);
        match search.jpeg_ladder(&small, &SCALED_QUALITIES, true)? {
            Ladder::Fitted(fitted) => return Ok(fitted),
            Ladder::Missed(sizes) => per_area = size_at(&sizes, first).map(|s| s / (scale * scale)),
        }
    }
    Err(search.cannot_fit())
}

/// The size found (or predicted) for `quality`, if that rung was reached.
fn size_at(sizes: &[(u8, f64)], quality: u8) -> Option<f64> {
    sizes.iter().find(|(q, _)| *q == quality).map(|(_, s)| *s)
}

/// Reads `path` and returns what to upload under `limit`: the file itself when it fits, a
/// fitted image for an image over the limit, and [`Upload::TooLarge`] for anything else over
/// it (videos and animations are never re-encoded; the file stays on disk).
pub fn fit_file_for_upload(path: &Path, kind: OutputKind, limit: u64) -> Result<Upload, FitError> {
    let io_err = |source| FitError::Io {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(io_err)?.len();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".to_owned());
    if size > limit && kind != OutputKind::Image {
        return Ok(Upload::TooLarge { size, limit });
    }
    if size > limit && size > MAX_ALLOC {
        let too_big = LimitError::from_kind(LimitErrorKind::InsufficientMemory);
        return Err(FitError::TooBig(ImageError::Limits(too_big)));
    }
    let bytes = std::fs::read(path).map_err(io_err)?;
    if bytes.len() as u64 <= limit {
        return Ok(Upload::File {
            name,
            bytes,
            format: FittedFormat::Original,
            scaled: false,
        });
    }
    if kind != OutputKind::Image {
        // It grew since we looked.
        let size = bytes.len() as u64;
        return Ok(Upload::TooLarge { size, limit });
    }
    let fitted = fit_image(&bytes, limit)?;
    let name = match fitted.format.extension() {
        Some(ext) => Path::new(&name)
            .with_extension(ext)
            .to_string_lossy()
            .into_owned(),
        None => name,
    };
    tracing::debug!(
        %name, original = bytes.len(), fitted = fitted.bytes.len(), format = ?fitted.format,
        scaled = fitted.scaled, "image fitted for upload"
    );
    Ok(Upload::File {
        name,
        bytes: fitted.bytes,
        format: fitted.format,
        scaled: fitted.scaled,
    })
}

/// How a JPEG ladder ended.
enum Ladder {
    Fitted(Fitted),
    /// None fitted: the size found (or predicted) at each rung tried, as (quality, bytes).
    Missed(Vec<(u8, f64)>),
}

/// The state of one fit: the limit, the expensive steps taken, the smallest size seen.
struct Search {
    limit: u64,
    steps: usize,
    smallest: u64,
}

impl Search {
    fn new(limit: u64) -> Search {
        Search {
            limit,
            steps: 0,
            smallest: u64::MAX,
        }
    }

    /// Counts an expensive step; false when the budget is spent.
    fn step(&mut self) -> bool {
        self.steps += 1;
        self.steps <= MAX_STEPS
    }

    fn note(&mut self, len: f64) {
        self.smallest = self.smallest.min(len.ceil() as u64);
    }

    /// `bytes` as the result if they fit.
    fn check(&mut self, bytes: Vec<u8>, format: FittedFormat, scaled: bool) -> Option<Fitted> {
        let len = bytes.len() as u64;
        self.note(len as f64);
        tracing::trace!(?format, len, limit = self.limit, "fit attempt");
        if len > self.limit {
            return None;
        }
        // Read the size back from what was encoded, so it is right for every format.
        let (width, height) = dimensions(&bytes).unwrap_or((0, 0));
        Some(Fitted {
            bytes,
            format,
            width,
            height,
            scaled,
        })
    }

    /// Walks `qualities` down: each rung is predicted from a sample and encoded in full only
    /// when predicted to fit (small images are encoded whole, so the prediction is the
    /// result).
    fn jpeg_ladder(
        &mut self,
        image: &Flat,
        qualities: &[u8],
        scaled: bool,
    ) -> Result<Ladder, FitError> {
        let mut probe = Probe::new(image);
        let mut sizes = Vec::with_capacity(qualities.len());
        for &quality in qualities {
            let format = FittedFormat::Jpeg { quality };
            let sample = encode_jpeg(probe.sample.as_ref().unwrap_or(image), quality)?;
            if probe.sample.is_none() {
                sizes.push((quality, sample.len() as f64));
                if let Some(fitted) = self.check(sample, format, scaled) {
                    return Ok(Ladder::Fitted(fitted));
                }
                continue;
            }
            let predicted = sample.len() as f64 * probe.factor;
            self.note(predicted);
            sizes.push((quality, predicted));
            if predicted > self.limit as f64 * PREDICTION_MARGIN {
                continue;
            }
            if !self.step() {
                break;
            }
            let full = encode_jpeg(image, quality)?;
            let len = full.len() as f64;
            if let Some(fitted) = self.check(full, format, scaled) {
                return Ok(Ladder::Fitted(fitted));
            }
            // Missed: this image compresses unlike its sample; correct the next predictions.
            probe.factor *= len / predicted;
            if let Some(last) = sizes.last_mut() {
                last.1 = len;
            }
        }
        Ok(Ladder::Missed(sizes))
    }

    fn cannot_fit(&self) -> FitError {
        FitError::CannotFit {
            limit: self.limit,
            smallest: self.smallest,
        }
    }
}

/// Predicts an image's JPEG size from a mosaic of tiles spread over it: JPEG codes 8×8
/// blocks independently (but for a small DC delta), so the size of a fair sample of blocks,
/// times how many more the image has, is close to the whole.
struct Probe {
    /// `None` when the image is small enough to encode whole.
    sample: Option<Flat>,
    /// The image's pixels over the sample's.
    factor: f64,
}

impl Probe {
    fn new(image: &Flat) -> Probe {
        let (width, height) = image.dimensions();
        let pixels = u64::from(width) * u64::from(height);
        let tile = TILE.min(width).min(height) / 16 * 16;
        if pixels <= EXACT_MAX_PIXELS || tile == 0 {
            return Probe {
                sample: None,
                factor: 1.0,
            };
        }
        let sample = image.mosaic(tile);
        let (sw, sh) = sample.dimensions();
        Probe {
            factor: pixels as f64 / (f64::from(sw) * f64::from(sh)),
            sample: Some(sample),
        }
    }
}

fn dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .ok()?
        .into_dimensions()
        .ok()
}

fn decode(bytes: &[u8]) -> Result<DynamicImage, FitError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| FitError::Decode(ImageError::IoError(e)))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    reader.decode().map_err(FitError::decoding)
}

/// 8 bits per channel in one of L8, La8, Rgb8, Rgba8, without an alpha channel that is
/// opaque everywhere (it only costs bytes, and decides nothing).
fn normalize(image: DynamicImage) -> DynamicImage {
    let image = match image {
        DynamicImage::ImageLuma8(_)
        | DynamicImage::ImageLumaA8(_)
        | DynamicImage::ImageRgb8(_)
        | DynamicImage::ImageRgba8(_) => image,
        DynamicImage::ImageLuma16(_) => DynamicImage::ImageLuma8(image.to_luma8()),
        DynamicImage::ImageLumaA16(_) => DynamicImage::ImageLumaA8(image.to_luma_alpha8()),
        DynamicImage::ImageRgb16(_) | DynamicImage::ImageRgb32F(_) => {
            DynamicImage::ImageRgb8(image.to_rgb8())
        }
        _ => DynamicImage::ImageRgba8(image.to_rgba8()),
    };
    match image {
        DynamicImage::ImageLumaA8(la) if all_opaque(la.as_raw(), 2) => {
            DynamicImage::ImageLuma8(DynamicImage::ImageLumaA8(la).to_luma8())
        }
        DynamicImage::ImageRgba8(rgba) if all_opaque(rgba.as_raw(), 4) => {
            DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(rgba).to_rgb8())
        }
        image => image,
    }
}

fn all_opaque(samples: &[u8], channels: usize) -> bool {
    samples
        .chunks_exact(channels)
        .all(|px| px[channels - 1] == u8::MAX)
}

/// For JPEG: gray stays gray, transparency is composited onto white (Discord's dark theme
/// would show black behind transparent pixels of a JPEG-less upload anyway).
enum Flat {
    Gray(GrayImage),
    Rgb(RgbImage),
}

impl Flat {
    fn dimensions(&self) -> (u32, u32) {
        match self {
            Flat::Gray(g) => g.dimensions(),
            Flat::Rgb(rgb) => rgb.dimensions(),
        }
    }

    /// `GRID` × `GRID` tiles of `tile` px, evenly spread from corner to corner.
    fn mosaic(&self, tile: u32) -> Flat {
        fn pick<P: image::Pixel>(
            image: &image::ImageBuffer<P, Vec<P::Subpixel>>,
            tile: u32,
        ) -> image::ImageBuffer<P, Vec<P::Subpixel>> {
            let (width, height) = image.dimensions();
            let origin = |extent: u32, i: u32| (extent - tile) * i / (GRID - 1);
            image::ImageBuffer::from_fn(GRID * tile, GRID * tile, |x, y| {
                let sx = origin(width, x / tile) + x % tile;
                let sy = origin(height, y / tile) + y % tile;
                *image.get_pixel(sx, sy)
            })
        }
        match self {
            Flat::Gray(g) => Flat::Gray(pick(g, tile)),
            Flat::Rgb(rgb) => Flat::Rgb(pick(rgb, tile)),
        }
    }
}

fn flatten(image: DynamicImage) -> Flat {
    fn over_white(c: u8, a: u8) -> u8 {
        let (c, a) = (u32::from(c), u32::from(a));
        ((c * a + 255 * (255 - a) + 127) / 255) as u8
    }
    match image {
        DynamicImage::ImageLuma8(g) => Flat::Gray(g),
        DynamicImage::ImageLumaA8(la) => {
            Flat::Gray(GrayImage::from_fn(la.width(), la.height(), |x, y| {
                let [l, a] = la.get_pixel(x, y).0;
                image::Luma([over_white(l, a)])
            }))
        }
        DynamicImage::ImageRgba8(rgba) => {
            Flat::Rgb(RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
                let [r, g, b, a] = rgba.get_pixel(x, y).0;
                image::Rgb([over_white(r, a), over_white(g, a), over_white(b, a)])
            }))
        }
        DynamicImage::ImageRgb8(rgb) => Flat::Rgb(rgb),
        image => Flat::Rgb(image.to_rgb8()),
    }
}

fn resize(image: &Flat, width: u32, height: u32) -> Flat {
    // Triangle: with the support widened to the scale (as `image` does), it averages every
    // source pixel like Lanczos3 but in about a third of the time.
    match image {
        Flat::Gray(g) => Flat::Gray(image::imageops::resize(
            g,
            width,
            height,
            ResizeFilter::Triangle,
        )),
        Flat::Rgb(rgb) => Flat::Rgb(image::imageops::resize(
            rgb,
            width,
            height,
            ResizeFilter::Triangle,
        )),
    }
}

fn scaled_size(width: u32, height: u32, scale: f64) -> (u32, u32) {
    let side = |s: u32| ((f64::from(s) * scale).round() as u32).max(1);
    (side(width), side(height))
}

fn encode_png(image: &DynamicImage) -> Result<Vec<u8>, FitError> {
    let mut out = Vec::new();
    let encoder =
        PngEncoder::new_with_quality(&mut out, CompressionType::Best, FilterType::Adaptive);
    image
        .write_with_encoder(encoder)
        .map_err(FitError::Encode)?;
    Ok(out)
}

fn encode_webp(image: &DynamicImage) -> Result<Vec<u8>, FitError> {
    let mut out = Vec::new();
    let encoder = WebPEncoder::new_lossless(&mut out);
    image
        .write_with_encoder(encoder)
        .map_err(FitError::Encode)?;
    Ok(out)
}

fn encode_jpeg(image: &Flat, quality: u8) -> Result<Vec<u8>, FitError> {
    let mut out = Vec::new();
    let mut encoder = JpegEncoder::new_with_quality(&mut out, quality);
    match image {
        Flat::Gray(g) => encoder.encode(g.as_raw(), g.width(), g.height(), ExtendedColorType::L8),
        Flat::Rgb(rgb) => encoder.encode(
            rgb.as_raw(),
            rgb.width(),
            rgb.height(),
            ExtendedColorType::Rgb8,
        ),
    }
    .map_err(FitError::Encode)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Rgba, RgbaImage};
    use rand::{Rng, SeedableRng};

    /// A smooth gradient with deterministic noise, like a render: compresses, but not to
    /// nothing.
    fn noisy(width: u32, height: u32, noise: u8) -> RgbImage {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        RgbImage::from_fn(width, height, |x, y| {
            let base = [
                x * 255 / width,
                y * 255 / height,
                (x + y) * 127 / (width + height),
            ];
            image::Rgb(base.map(|c| {
                let n = rng.gen_range(0..=u32::from(noise));
                (c + n).min(255) as u8
            }))
        })
    }

    fn png_of(image: &DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    fn decoded(fitted: &Fitted) -> DynamicImage {
        image::load_from_memory(&fitted.bytes).unwrap()
    }

    #[test]
    fn a_small_image_stays_original() {
        let png = png_of(&DynamicImage::ImageRgb8(noisy(32, 16, 10)));
        let fitted = fit_image(&png, png.len() as u64).unwrap();
        assert_eq!(fitted.format, FittedFormat::Original);
        assert_eq!(fitted.bytes, png);
        assert_eq!(
            (fitted.width, fitted.height, fitted.scaled),
            (32, 16, false)
        );
    }

    #[test]
    fn a_noisy_image_over_a_small_limit_becomes_a_jpeg_that_fits() {
        let png = png_of(&DynamicImage::ImageRgb8(noisy(1024, 1024, 60)));
        let limit = 600_000;
        assert!(png.len() as u64 > 3 * limit, "{}", png.len());
        let fitted = fit_image(&png, limit).unwrap();
        assert!(
            matches!(fitted.format, FittedFormat::Jpeg { quality } if quality >= 50),
            "{:?}",
            fitted.format
        );
        assert!(fitted.bytes.len() as u64 <= limit);
        assert!(!fitted.scaled);
        let image = decoded(&fitted);
        assert_eq!((image.width(), image.height()), (1024, 1024));
        assert_eq!(
            image::guess_format(&fitted.bytes).unwrap(),
            ImageFormat::Jpeg
        );
    }

    #[test]
    fn a_png_slightly_over_gets_a_lossless_png() {
        // Saved with fast compression, as many tools do; best compression then fits.
        let image = DynamicImage::ImageRgb8(noisy(256, 256, 4));
        let mut fast = Vec::new();
        image
            .write_with_encoder(PngEncoder::new_with_quality(
                &mut fast,
                CompressionType::Fast,
                FilterType::NoFilter,
            ))
            .unwrap();
        let best = encode_png(&image).unwrap();
        assert!(best.len() < fast.len(), "{} {}", best.len(), fast.len());
        let fitted = fit_image(&fast, best.len() as u64).unwrap();
        assert_eq!(fitted.format, FittedFormat::Png);
        assert_eq!(decoded(&fitted).to_rgb8(), image.to_rgb8());
    }

    #[test]
    fn a_lossless_webp_wins_when_it_fits() {
        let image = DynamicImage::ImageRgb8(noisy(256, 256, 4));
        let mut raw = Vec::new();
        image
            .write_with_encoder(PngEncoder::new_with_quality(
                &mut raw,
                CompressionType::Uncompressed,
                FilterType::NoFilter,
            ))
            .unwrap();
        let fitted = fit_image(&raw, raw.len() as u64 / 2).unwrap();
        assert_eq!(fitted.format, FittedFormat::WebpLossless);
        assert_eq!(
            (fitted.width, fitted.height, fitted.scaled),
            (256, 256, false)
        );
        assert_eq!(
            image::guess_format(&fitted.bytes).unwrap(),
            ImageFormat::WebP
        );
        assert_eq!(decoded(&fitted).to_rgb8(), image.to_rgb8());
    }

    #[test]
    fn large_images_are_predicted_from_a_sample_and_encoded_in_full_once() {
        let flat = Flat::Rgb(noisy(2048, 1536, 30));
        let probe = Probe::new(&flat);
        let sample = probe.sample.as_ref().expect("3 MP is sampled");
        assert_eq!(sample.dimensions(), (GRID * TILE, GRID * TILE));
        assert_eq!(probe.factor, 3.0);

        let q85 = encode_jpeg(&flat, 85).unwrap().len() as f64;
        let predicted = encode_jpeg(sample, 85).unwrap().len() as f64 * probe.factor;
        assert!((predicted / q85 - 1.0).abs() < 0.05, "{predicted} vs {q85}");

        // A limit that q85 meets with room and q88 does not: one full encode, at q85.
        let limit = (q85 * 1.1) as u64;
        let mut search = Search::new(limit);
        let fitted = match search.jpeg_ladder(&flat, &FULL_SIZE_QUALITIES, false) {
            Ok(Ladder::Fitted(fitted)) => fitted,
            Ok(Ladder::Missed(sizes)) => panic!("{sizes:?}"),
            Err(e) => panic!("{e}"),
        };
        assert_eq!(fitted.format, FittedFormat::Jpeg { quality: 85 });
        assert_eq!((fitted.width, fitted.height), (2048, 1536));
        assert_eq!(search.steps, 1);
    }

    #[test]
    fn a_very_small_limit_downscales_keeping_the_aspect_ratio() {
        let png = png_of(&DynamicImage::ImageRgb8(noisy(1024, 512, 60)));
        let limit = 40_000;
        let fitted = fit_image(&png, limit).unwrap();
        assert!(fitted.scaled);
        assert!(fitted.bytes.len() as u64 <= limit);
        assert!(matches!(fitted.format, FittedFormat::Jpeg { .. }));
        let image = decoded(&fitted);
        assert_eq!(
            (image.width(), image.height()),
            (fitted.width, fitted.height)
        );
        assert!(fitted.width < 1024 && fitted.width >= 2 * MIN_SIDE);
        assert!(fitted.width.abs_diff(2 * fitted.height) <= 1, "{fitted:?}");
    }

    #[test]
    fn an_absurd_limit_cannot_fit() {
        let png = png_of(&DynamicImage::ImageRgb8(noisy(512, 512, 60)));
        match fit_image(&png, 100) {
            Err(FitError::CannotFit { limit, smallest }) => {
                assert_eq!(limit, 100);
                // The smallest try was at the 64 px floor, not at full size.
                assert!(smallest < 10_000, "{smallest}");
            }
            other => panic!("{:?}", other.map(|f| f.format)),
        }
    }

    #[test]
    fn truncated_or_unknown_bytes_are_decode_errors() {
        let png = png_of(&DynamicImage::ImageRgb8(noisy(64, 64, 60)));
        let truncated = &png[..png.len() / 2];
        assert!(matches!(fit_image(truncated, 10), Err(FitError::Decode(_))));
        assert!(matches!(
            fit_image(b"not an image", 3),
            Err(FitError::Decode(_))
        ));
        assert!(matches!(fit_image(&[], 0), Ok(f) if f.format == FittedFormat::Original));
    }

    #[test]
    fn an_oversized_header_is_refused_before_allocating() {
        // A valid PNG header claiming 20000 × 20000 px, and nothing else.
        fn crc32(bytes: &[u8]) -> u32 {
            let mut crc = !0u32;
            for &b in bytes {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 == 1 {
                        (crc >> 1) ^ 0xEDB8_8320
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        }
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend(20_000u32.to_be_bytes());
        ihdr.extend(20_000u32.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(13u32.to_be_bytes());
        png.extend(&ihdr);
        png.extend(crc32(&ihdr).to_be_bytes());
        for chunk in [&b"IDAT"[..], b"IEND"] {
            png.extend(0u32.to_be_bytes());
            png.extend(chunk);
            png.extend(crc32(chunk).to_be_bytes());
        }
        assert_eq!(dimensions(&png), Some((20_000, 20_000)));
        let err = fit_image(&png, 10).unwrap_err();
        assert!(matches!(err, FitError::TooBig(_)), "{err:?}");
    }

    #[test]
    fn opaque_alpha_is_dropped_and_real_alpha_kept_losslessly() {
        let opaque: RgbaImage =
            ImageBuffer::from_fn(64, 64, |x, y| Rgba([x as u8, y as u8, 9, 255]));
        let normal = normalize(DynamicImage::ImageRgba8(opaque.clone()));
        assert!(matches!(normal, DynamicImage::ImageRgb8(_)));

        let mut translucent = opaque.clone();
        translucent.put_pixel(3, 3, Rgba([1, 2, 3, 128]));
        let normal = normalize(DynamicImage::ImageRgba8(translucent.clone()));
        assert!(matches!(normal, DynamicImage::ImageRgba8(_)));

        // A PNG just over the limit comes back as a PNG that still has its transparency.
        let mut fast = Vec::new();
        DynamicImage::ImageRgba8(translucent.clone())
            .write_with_encoder(PngEncoder::new_with_quality(
                &mut fast,
                CompressionType::Uncompressed,
                FilterType::NoFilter,
            ))
            .unwrap();
        let fitted = fit_image(&fast, fast.len() as u64 - 1).unwrap();
        assert!(
            matches!(
                fitted.format,
                FittedFormat::Png | FittedFormat::WebpLossless
            ),
            "{:?}",
            fitted.format
        );
        assert_eq!(decoded(&fitted).to_rgba8(), translucent);
    }

    #[test]
    fn alpha_is_flattened_onto_white_for_jpeg() {
        // Fully transparent noise: as a JPEG it must come out white, not the hidden noise.
        let noise = noisy(256, 256, 255);
        let rgba = RgbaImage::from_fn(256, 256, |x, y| {
            let [r, g, b] = noise.get_pixel(x, y).0;
            Rgba([r, g, b, if x < 128 { 0 } else { 255 }])
        });
        let png = png_of(&DynamicImage::ImageRgba8(rgba));
        let fitted = fit_image(&png, png.len() as u64 / 4).unwrap();
        assert!(matches!(fitted.format, FittedFormat::Jpeg { .. }));
        let rgb = decoded(&fitted).to_rgb8();
        let px = rgb.get_pixel(10, 100).0;
        assert!(px.iter().all(|&c| c >= 250), "{px:?}");
    }

    #[test]
    fn gray_images_stay_gray() {
        let gray = DynamicImage::ImageRgb8(noisy(512, 512, 60)).to_luma8();
        let png = png_of(&DynamicImage::ImageLuma8(gray));
        let fitted = fit_image(&png, png.len() as u64 / 10).unwrap();
        assert!(
            matches!(fitted.format, FittedFormat::Jpeg { .. }),
            "{:?}",
            fitted.format
        );
        assert!(matches!(decoded(&fitted), DynamicImage::ImageLuma8(_)));
    }

    #[test]
    fn files_under_the_limit_upload_as_they_are() {
        let dir = crate::outputs::test_dir("fit-file");
        let path = dir.join("clip.mp4");
        std::fs::write(&path, vec![0u8; 1000]).unwrap();
        let upload = fit_file_for_upload(&path, OutputKind::Video, 1000).unwrap();
        assert_eq!(
            upload,
            Upload::File {
                name: "clip.mp4".into(),
                bytes: vec![0u8; 1000],
                format: FittedFormat::Original,
                scaled: false
            }
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn videos_and_animations_over_the_limit_are_too_large() {
        let dir = crate::outputs::test_dir("fit-video");
        let path = dir.join("clip.mp4");
        std::fs::write(&path, vec![0u8; 5000]).unwrap();
        for kind in [OutputKind::Video, OutputKind::Animation, OutputKind::Audio] {
            let upload = fit_file_for_upload(&path, kind, 4999).unwrap();
            assert_eq!(
                upload,
                Upload::TooLarge {
                    size: 5000,
                    limit: 4999
                }
            );
        }
        // Untouched on disk.
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 5000);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn images_over_the_limit_are_fitted_and_renamed() {
        let dir = crate::outputs::test_dir("fit-image");
        let path = dir.join("fox.v1.png");
        let png = png_of(&DynamicImage::ImageRgb8(noisy(512, 512, 60)));
        std::fs::write(&path, &png).unwrap();
        let limit = png.len() as u64 / 4;
        match fit_file_for_upload(&path, OutputKind::Image, limit).unwrap() {
            Upload::File {
                name,
                bytes,
                format,
                ..
            } => {
                assert_eq!(name, "fox.v1.jpg");
                assert!(matches!(format, FittedFormat::Jpeg { .. }));
                assert!(bytes.len() as u64 <= limit);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read(&path).unwrap(), png);
        let missing = fit_file_for_upload(&dir.join("gone.png"), OutputKind::Image, 1);
        assert!(matches!(missing, Err(FitError::Io { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
