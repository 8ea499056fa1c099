//! Attachments: only from Discord's CDN, within size, and what they claim to be; images are
//! measured from their header first, so a decompression bomb is refused before it is decoded.

use std::io::Cursor;

use url::Url;

use crate::bounds::*;
use crate::refusal::Refusal;

/// Formats comfycord accepts, identified by their magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaFormat {
    Png,
    Jpeg,
    Webp,
    Gif,
    Mp4,
}

impl MediaFormat {
    pub fn mime(self) -> &'static str {
        match self {
            MediaFormat::Png => "image/png",
            MediaFormat::Jpeg => "image/jpeg",
            MediaFormat::Webp => "image/webp",
            MediaFormat::Gif => "image/gif",
            MediaFormat::Mp4 => "video/mp4",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            MediaFormat::Png => "png",
            MediaFormat::Jpeg => "jpg",
            MediaFormat::Webp => "webp",
            MediaFormat::Gif => "gif",
            MediaFormat::Mp4 => "mp4",
        }
    }

    fn label(self) -> &'static str {
        match self {
            MediaFormat::Png => "PNG",
            MediaFormat::Jpeg => "JPEG",
            MediaFormat::Webp => "WebP",
            MediaFormat::Gif => "GIF",
            MediaFormat::Mp4 => "MP4",
        }
    }

    pub fn is_video(self) -> bool {
        matches!(self, MediaFormat::Gif | MediaFormat::Mp4)
    }

    /// From a declared content type (parameters such as `; charset` ignored).
    pub fn from_mime(mime: &str) -> Option<MediaFormat> {
        let base = mime
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        Some(match base.as_str() {
            "image/png" => MediaFormat::Png,
            "image/jpeg" | "image/jpg" => MediaFormat::Jpeg,
            "image/webp" => MediaFormat::Webp,
            "image/gif" => MediaFormat::Gif,
            "video/mp4" => MediaFormat::Mp4,
            _ => return None,
        })
    }

    /// From the first bytes of the file.
    pub fn sniff(bytes: &[u8]) -> Option<MediaFormat> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(MediaFormat::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(MediaFormat::Jpeg)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(MediaFormat::Webp)
        } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
            Some(MediaFormat::Gif)
        } else if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
            Some(MediaFormat::Mp4)
        } else {
            None
        }
    }
}

/// What a workflow accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct AttachmentRules {
    pub max_bytes: u64,
    pub max_side: u32,
    /// Pixels × bytes per pixel × frames, checked from the header before anything is decoded;
    /// also the decoder's allocation cap.
    pub max_decoded_bytes: u64,
    pub max_frames: u32,
    pub max_video_secs: u32,
    /// GIF and MP4 are accepted only where a workflow takes video.
    pub allow_video: bool,
}

impl Default for AttachmentRules {
    fn default() -> Self {
        AttachmentRules {
            max_bytes: DEFAULT_MAX_ATTACHMENT_BYTES,
            max_side: DEFAULT_MAX_IMAGE_SIDE,
            max_decoded_bytes: DEFAULT_MAX_DECODED_BYTES,
            max_frames: DEFAULT_MAX_FRAMES,
            max_video_secs: DEFAULT_MAX_VIDEO_SECS,
            allow_video: false,
        }
    }
}

impl AttachmentRules {
    fn allowed(&self) -> String {
        if self.allow_video {
            "a PNG, JPEG, WebP, GIF or MP4 file".into()
        } else {
            "a PNG, JPEG or WebP image".into()
        }
    }

    fn accepts(&self, f: MediaFormat) -> bool {
        self.allow_video || !f.is_video()
    }
}

/// What Discord says about an attachment, before downloading it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredAttachment {
    pub filename: String,
    pub content_type: Option<String>,
    pub size: u64,
    pub url: String,
}

/// An attachment that passed every check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckedMedia {
    pub format: MediaFormat,
    /// Pixels (a video's from its track header); `None` when the file does not say.
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Frames of an image (1 for a still one); `None` for video.
    pub frames: Option<u32>,
    /// Seconds of a video.
    pub duration_secs: Option<f64>,
}

/// Only `https` URLs on Discord's CDN are fetched.
pub fn check_url(url: &str) -> Result<Url, Refusal> {
    let parsed = Url::parse(url).map_err(|e| Refusal::ForeignUrl {
        reason: format!("not a valid link: {e}"),
    })?;
    if parsed.scheme() != "https" {
        return Err(Refusal::ForeignUrl {
            reason: format!("{} links are not fetched", parsed.scheme()),
        });
    }
    let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
    if !DISCORD_CDN_HOSTS.contains(&host.as_str())
        || parsed.port().is_some()
        || !parsed.username().is_empty()
    {
        return Err(Refusal::ForeignUrl {
            reason: format!("{host} is not Discord's CDN"),
        });
    }
    Ok(parsed)
}

fn declared_format(
    att: &DeclaredAttachment,
    rules: &AttachmentRules,
) -> Result<MediaFormat, Refusal> {
    let declared = att.content_type.as_deref().unwrap_or("an unknown type");
    match MediaFormat::from_mime(declared) {
        Some(f) if rules.accepts(f) => Ok(f),
        _ => Err(Refusal::UnsupportedType {
            name: att.filename.clone(),
            got: declared.to_string(),
            allowed: rules.allowed(),
        }),
    }
}

/// Checks what Discord declares, before anything is downloaded.
pub fn precheck(att: &DeclaredAttachment, rules: &AttachmentRules) -> Result<MediaFormat, Refusal> {
    check_url(&att.url)?;
    if att.size > rules.max_bytes {
        return Err(Refusal::FileTooLarge {
            name: att.filename.clone(),
            size: att.size,
            max: rules.max_bytes,
        });
    }
    declared_format(att, rules)
}

/// Checks the downloaded bytes: size, magic bytes against the declared type, and for images
/// the dimensions (from the header) and a full decode under memory limits.
pub fn inspect(
    bytes: &[u8],
    att: &DeclaredAttachment,
    rules: &AttachmentRules,
) -> Result<CheckedMedia, Refusal> {
    let size = bytes.len() as u64;
    if size > rules.max_bytes {
        return Err(Refusal::FileTooLarge {
            name: att.filename.clone(),
            size,
            max: rules.max_bytes,
        });
    }
    let declared = declared_format(att, rules)?;
    let actual = MediaFormat::sniff(bytes);
    if actual != Some(declared) {
        return Err(Refusal::TypeMismatch {
            name: att.filename.clone(),
            declared: declared.label().to_string(),
            actual: actual
                .map_or("something else", MediaFormat::label)
                .to_string(),
        });
    }
    let name = &att.filename;
    match declared {
        MediaFormat::Gif => inspect_gif(bytes, name, rules),
        MediaFormat::Mp4 => inspect_mp4(bytes, name, rules),
        MediaFormat::Png => inspect_image(bytes, declared, image::ImageFormat::Png, name, rules),
        MediaFormat::Jpeg => inspect_image(bytes, declared, image::ImageFormat::Jpeg, name, rules),
        MediaFormat::Webp => inspect_image(bytes, declared, image::ImageFormat::WebP, name, rules),
    }
}

fn check_side(name: &str, width: u32, height: u32, rules: &AttachmentRules) -> Result<(), Refusal> {
    if width > rules.max_side || height > rules.max_side {
        return Err(Refusal::ImageTooLarge {
            name: name.to_string(),
            width,
            height,
            max_side: rules.max_side,
        });
    }
    Ok(())
}

/// Frames and decoded size against the rules, before a pixel is decoded.
fn check_budget(
    name: &str,
    (width, height): (u32, u32),
    bytes_per_pixel: u64,
    frames: u32,
    rules: &AttachmentRules,
) -> Result<(), Refusal> {
    if frames > rules.max_frames {
        return Err(Refusal::TooManyFrames {
            name: name.to_string(),
            frames,
            max: rules.max_frames,
        });
    }
    let decoded = u64::from(width)
        .saturating_mul(u64::from(height))
        .saturating_mul(bytes_per_pixel)
        .saturating_mul(u64::from(frames.max(1)));
    if decoded > rules.max_decoded_bytes {
        return Err(Refusal::DecodeTooLarge {
            name: name.to_string(),
            width,
            height,
            frames,
            bytes: decoded,
            max: rules.max_decoded_bytes,
        });
    }
    Ok(())
}

/// PNG, JPEG, WebP: dimensions, colour type and (WebP) frames come from the header; a bomb
/// stops there. Then one full decode under an allocation cap proves the data is whole.
fn inspect_image(
    bytes: &[u8],
    declared: MediaFormat,
    format: image::ImageFormat,
    name: &str,
    rules: &AttachmentRules,
) -> Result<CheckedMedia, Refusal> {
    use image::ImageDecoder as _;
    let undecodable = |e: &dyn std::fmt::Display| Refusal::Undecodable {
        name: name.to_string(),
        reason: e.to_string(),
    };
    let header = image::ImageReader::with_format(Cursor::new(bytes), format)
        .into_decoder()
        .map_err(|e| undecodable(&e))?;
    let (width, height) = header.dimensions();
    let bytes_per_pixel = u64::from(header.color_type().bytes_per_pixel());
    drop(header);
    check_side(name, width, height, rules)?;
    let frames = if declared == MediaFormat::Webp {
        image_webp::WebPDecoder::new(Cursor::new(bytes))
            .map_err(|e| undecodable(&e))?
            .num_frames()
            .max(1)
    } else {
        1
    };
    check_budget(name, (width, height), bytes_per_pixel, frames, rules)?;
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(rules.max_side);
    limits.max_image_height = Some(rules.max_side);
    limits.max_alloc = Some(rules.max_decoded_bytes);
    reader.limits(limits);
    reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => Refusal::DecodeTooLarge {
            name: name.to_string(),
            width,
            height,
            frames,
            bytes: u64::from(width) * u64::from(height) * bytes_per_pixel,
            max: rules.max_decoded_bytes,
        },
        other => undecodable(&other),
    })?;
    Ok(CheckedMedia {
        format: declared,
        width: Some(width),
        height: Some(height),
        frames: Some(frames),
        duration_secs: None,
    })
}

/// GIF: the screen size and the frames are counted from the block structure, without LZW
/// decoding; the count stops one past the limit.
fn inspect_gif(bytes: &[u8], name: &str, rules: &AttachmentRules) -> Result<CheckedMedia, Refusal> {
    let undecodable = |e: gif::DecodingError| Refusal::Undecodable {
        name: name.to_string(),
        reason: e.to_string(),
    };
    let mut options = gif::DecodeOptions::new();
    options.skip_frame_decoding(true);
    options.set_memory_limit(gif::MemoryLimit::Bytes(
        std::num::NonZeroU64::new(rules.max_decoded_bytes.max(1))
            .unwrap_or(std::num::NonZeroU64::MIN),
    ));
    let mut decoder = options.read_info(Cursor::new(bytes)).map_err(undecodable)?;
    let (width, height) = (u32::from(decoder.width()), u32::from(decoder.height()));
    check_side(name, width, height, rules)?;
    let mut frames: u32 = 0;
    while frames <= rules.max_frames {
        match decoder.next_frame_info().map_err(undecodable)? {
            Some(_) => frames += 1,
            None => break,
        }
    }
    if frames == 0 {
        return Err(Refusal::Undecodable {
            name: name.to_string(),
            reason: "it has no frames".into(),
        });
    }
    check_budget(name, (width, height), GIF_BYTES_PER_PIXEL, frames, rules)?;
    Ok(CheckedMedia {
        format: MediaFormat::Gif,
        width: Some(width),
        height: Some(height),
        frames: Some(frames),
        duration_secs: None,
    })
}

/// MP4: length and picture size from the container (no frame is decoded).
fn inspect_mp4(bytes: &[u8], name: &str, rules: &AttachmentRules) -> Result<CheckedMedia, Refusal> {
    let undecodable = |reason: String| Refusal::UndecodableVideo {
        name: name.to_string(),
        reason,
    };
    let context =
        mp4parse::read_mp4(&mut Cursor::new(bytes)).map_err(|e| undecodable(format!("{e:?}")))?;
    let video = context
        .tracks
        .iter()
        .find(|t| t.track_type == mp4parse::TrackType::Video)
        .ok_or_else(|| undecodable("it has no video track".into()))?;
    // Track header sizes are 16.16 fixed point.
    let (width, height) = video
        .tkhd
        .as_ref()
        .map_or((0, 0), |t| (t.width >> 16, t.height >> 16));
    check_side(name, width, height, rules)?;
    let secs = match (video.duration, video.timescale) {
        (Some(d), Some(t)) if t.0 > 0 => d.0 as f64 / t.0 as f64,
        _ => return Err(undecodable("its length is not stated".into())),
    };
    if secs > f64::from(rules.max_video_secs) {
        return Err(Refusal::VideoTooLong {
            name: name.to_string(),
            secs,
            max_secs: rules.max_video_secs,
        });
    }
    Ok(CheckedMedia {
        format: MediaFormat::Mp4,
        width: (width > 0).then_some(width),
        height: (height > 0).then_some(height),
        frames: None,
        duration_secs: Some(secs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([10, 20, 30]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn att(ct: &str, size: u64) -> DeclaredAttachment {
        DeclaredAttachment {
            filename: "cat.png".into(),
            content_type: Some(ct.into()),
            size,
            url: "https://cdn.discordapp.com/attachments/1/2/cat.png?ex=1".into(),
        }
    }

    #[test]
    fn urls_must_be_discord_cdn() {
        assert!(check_url("https://cdn.discordapp.com/attachments/1/2/a.png").is_ok());
        assert!(check_url("https://media.discordapp.net/attachments/1/2/a.png?width=10").is_ok());
        for bad in [
            "http://cdn.discordapp.com/a.png",
            "https://cdn.discordapp.com.evil.example/a.png",
            "https://evil.example/cdn.discordapp.com/a.png",
            "https://user@cdn.discordapp.com/a.png",
            "https://cdn.discordapp.com:8443/a.png",
            "file:///etc/passwd",
            "https://127.0.0.1/a.png",
            "not a url",
        ] {
            assert!(
                matches!(check_url(bad), Err(Refusal::ForeignUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn precheck_size_and_type() {
        let rules = AttachmentRules::default();
        assert_eq!(
            precheck(&att("image/png", 100), &rules),
            Ok(MediaFormat::Png)
        );
        assert_eq!(
            precheck(&att("image/png", 30 * 1024 * 1024), &rules)
                .unwrap_err()
                .to_string(),
            "cat.png is 30.0 MiB; the limit is 25.0 MiB"
        );
        assert_eq!(
            precheck(&att("video/mp4", 10), &rules).unwrap_err().to_string(),
            "cat.png is video/mp4, which is not a supported file type; send a PNG, JPEG or WebP image"
        );
        let video = AttachmentRules {
            allow_video: true,
            ..AttachmentRules::default()
        };
        assert_eq!(
            precheck(&att("video/mp4", 10), &video),
            Ok(MediaFormat::Mp4)
        );
    }

    #[test]
    fn inspect_checks_magic_and_dimensions() {
        let rules = AttachmentRules::default();
        let bytes = png(40, 30);
        let ok = inspect(&bytes, &att("image/png", 0), &rules).unwrap();
        assert_eq!((ok.width, ok.height), (Some(40), Some(30)));
        assert_eq!(
            inspect(&bytes, &att("image/jpeg", 0), &rules)
                .unwrap_err()
                .to_string(),
            "cat.png says it is JPEG but its content is PNG; send a real JPEG file"
        );
        assert!(matches!(
            inspect(b"hello", &att("image/png", 0), &rules),
            Err(Refusal::TypeMismatch { .. })
        ));
        let small = AttachmentRules {
            max_side: 32,
            ..AttachmentRules::default()
        };
        assert_eq!(
            inspect(&bytes, &att("image/png", 0), &small)
                .unwrap_err()
                .to_string(),
            "cat.png is 40×30 pixels; the limit is 32 pixels a side"
        );
        // A truncated PNG is refused, not half-decoded.
        assert!(matches!(
            inspect(&bytes[..bytes.len() / 2], &att("image/png", 0), &rules),
            Err(Refusal::Undecodable { .. })
        ));
    }

    #[test]
    fn decompression_bomb_is_refused_from_its_header() {
        // A 60000×60000 PNG header with almost no data: refused before decoding.
        let mut bomb = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&60000u32.to_be_bytes());
        ihdr.extend_from_slice(&60000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        let mut push_chunk = |kind: &[u8], data: &[u8]| {
            bomb.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let mut chunk = kind.to_vec();
            chunk.extend_from_slice(data);
            let crc = crc32(&chunk);
            bomb.extend_from_slice(&chunk);
            bomb.extend_from_slice(&crc.to_be_bytes());
        };
        push_chunk(b"IHDR", &ihdr);
        // A tiny zlib stream: the decoder stops at the first IDAT to report the size.
        push_chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
        push_chunk(b"IEND", &[]);
        let r = inspect(&bomb, &att("image/png", 0), &AttachmentRules::default());
        assert!(
            matches!(r, Err(Refusal::ImageTooLarge { width: 60000, .. })),
            "{r:?}"
        );
        // Within the side limit but over the allocation cap: refused by the decoder's limits.
        let tight = AttachmentRules {
            max_decoded_bytes: 1024,
            ..AttachmentRules::default()
        };
        assert!(matches!(
            inspect(&png(64, 64), &att("image/png", 0), &tight),
            Err(Refusal::DecodeTooLarge { bytes: 12288, .. })
        ));
    }

    /// A PNG whose header says `side`×`side`, `bit_depth`-bit `color_type`, with one tiny
    /// IDAT: a few hundred bytes that claim a huge picture.
    fn png_header_only(side: u32, bit_depth: u8, color_type: u8) -> Vec<u8> {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut chunk = |kind: &[u8], data: &[u8]| {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let mut c = kind.to_vec();
            c.extend_from_slice(data);
            let crc = crc32(&c);
            out.extend_from_slice(&c);
            out.extend_from_slice(&crc.to_be_bytes());
        };
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&side.to_be_bytes());
        ihdr.extend_from_slice(&side.to_be_bytes());
        ihdr.extend_from_slice(&[bit_depth, color_type, 0, 0, 0]);
        chunk(b"IHDR", &ihdr);
        chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
        chunk(b"IEND", &[]);
        out
    }

    #[test]
    fn a_16_bit_rgba_bomb_is_refused_by_its_decoded_size() {
        // 8192² passes the side limit; 8192² × 8 bytes is 512 MiB.
        let bomb = png_header_only(8192, 16, 6);
        let e = inspect(&bomb, &att("image/png", 0), &AttachmentRules::default()).unwrap_err();
        assert!(
            matches!(e, Refusal::DecodeTooLarge { bytes, .. } if bytes == 8192 * 8192 * 8),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "cat.png would need 512.0 MiB of memory to open (8192×8192); the limit is 128.0 MiB; send a smaller image"
        );
        // The same picture in 8-bit grey is 64 MiB: within the budget, so it goes on to the
        // full decode (which finds the data missing).
        let grey = png_header_only(8192, 8, 0);
        let e = inspect(&grey, &att("image/png", 0), &AttachmentRules::default()).unwrap_err();
        assert!(matches!(e, Refusal::Undecodable { .. }), "{e:?}");
    }

    fn gif(side: u16, frames: usize) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut enc =
                gif::Encoder::new(&mut out, side, side, &[0, 0, 0, 255, 255, 255]).unwrap();
            for i in 0..frames {
                let pixels = vec![(i % 2) as u8; usize::from(side) * usize::from(side)];
                let frame = gif::Frame {
                    width: side,
                    height: side,
                    buffer: std::borrow::Cow::Owned(pixels),
                    ..gif::Frame::default()
                };
                enc.write_frame(&frame).unwrap();
            }
        }
        out
    }

    fn video_rules() -> AttachmentRules {
        AttachmentRules {
            allow_video: true,
            ..AttachmentRules::default()
        }
    }

    #[test]
    fn gif_frames_are_counted_and_budgeted() {
        let ok = inspect(&gif(16, 3), &att("image/gif", 0), &video_rules()).unwrap();
        assert_eq!((ok.width, ok.frames), (Some(16), Some(3)));
        let few = AttachmentRules {
            max_frames: 2,
            ..video_rules()
        };
        assert_eq!(
            inspect(&gif(16, 5), &att("image/gif", 0), &few)
                .unwrap_err()
                .to_string(),
            "cat.png has 3 frames; the limit is 2"
        );
        // 64² × 4 bytes × 10 frames = 160 KiB over a 100 KiB budget.
        let small = AttachmentRules {
            max_decoded_bytes: 100 * 1024,
            ..video_rules()
        };
        let e = inspect(&gif(64, 10), &att("image/gif", 0), &small).unwrap_err();
        assert!(
            matches!(
                e,
                Refusal::DecodeTooLarge {
                    frames: 10,
                    bytes: 163_840,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("(64×64, 10 frames)"), "{e}");
    }

    /// An animated WebP of `frames` copies of a lossless `side`² frame.
    fn animated_webp(side: u32, frames: usize) -> Vec<u8> {
        let img = image::RgbaImage::from_pixel(side, side, image::Rgba([1, 2, 3, 255]));
        let mut still = Cursor::new(Vec::new());
        img.write_to(&mut still, image::ImageFormat::WebP).unwrap();
        let still = still.into_inner();
        // The still file is RIFF....WEBP then one VP8L chunk.
        let vp8l = &still[12..];
        let u24 = |v: u32| v.to_le_bytes()[..3].to_vec();
        let chunk = |kind: &[u8], data: &[u8]| {
            let mut c = kind.to_vec();
            c.extend_from_slice(&(data.len() as u32).to_le_bytes());
            c.extend_from_slice(data);
            if data.len() % 2 == 1 {
                c.push(0);
            }
            c
        };
        let mut vp8x = vec![0x02, 0, 0, 0]; // animation flag
        vp8x.extend(u24(side - 1));
        vp8x.extend(u24(side - 1));
        let mut body = b"WEBP".to_vec();
        body.extend(chunk(b"VP8X", &vp8x));
        body.extend(chunk(b"ANIM", &[0, 0, 0, 0, 0, 0]));
        for _ in 0..frames {
            let mut anmf = Vec::new();
            anmf.extend(u24(0));
            anmf.extend(u24(0));
            anmf.extend(u24(side - 1));
            anmf.extend(u24(side - 1));
            anmf.extend(u24(100));
            anmf.push(0);
            anmf.extend_from_slice(vp8l);
            body.extend(chunk(b"ANMF", &anmf));
        }
        let mut out = b"RIFF".to_vec();
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend(body);
        out
    }

    #[test]
    fn animated_webp_frames_are_counted_and_budgeted() {
        let ok = inspect(
            &animated_webp(8, 4),
            &att("image/webp", 0),
            &AttachmentRules::default(),
        )
        .unwrap();
        assert_eq!(ok.frames, Some(4));
        let few = AttachmentRules {
            max_frames: 3,
            ..AttachmentRules::default()
        };
        assert!(matches!(
            inspect(&animated_webp(8, 4), &att("image/webp", 0), &few),
            Err(Refusal::TooManyFrames {
                frames: 4,
                max: 3,
                ..
            })
        ));
        let small = AttachmentRules {
            // No alpha flag in the container: 3 bytes a pixel.
            max_decoded_bytes: 8 * 8 * 3 * 3,
            ..AttachmentRules::default()
        };
        assert!(matches!(
            inspect(&animated_webp(8, 4), &att("image/webp", 0), &small),
            Err(Refusal::DecodeTooLarge { frames: 4, .. })
        ));
    }

    fn fixture_mp4(name: &str) -> Vec<u8> {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/fixtures/cosmos/media")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    fn videos_are_measured_from_their_container() {
        let clip = fixture_mp4("input.mp4");
        let ok = inspect(&clip, &att("video/mp4", 0), &video_rules()).unwrap();
        let secs = ok.duration_secs.unwrap();
        assert!(secs > 0.0 && secs < 60.0, "{secs}");
        assert!(ok.width.is_some() && ok.height.is_some());
        let short = AttachmentRules {
            max_video_secs: 0,
            ..video_rules()
        };
        assert!(matches!(
            inspect(&clip, &att("video/mp4", 0), &short),
            Err(Refusal::VideoTooLong { .. })
        ));
        let narrow = AttachmentRules {
            max_side: 8,
            ..video_rules()
        };
        assert!(matches!(
            inspect(&clip, &att("video/mp4", 0), &narrow),
            Err(Refusal::ImageTooLarge { .. })
        ));
        // An ftyp box and nothing else: refused as unreadable, not accepted blind.
        let mut stub = 16u32.to_be_bytes().to_vec();
        stub.extend_from_slice(b"ftypisom\0\0\0\0");
        let e = inspect(&stub, &att("video/mp4", 0), &video_rules()).unwrap_err();
        assert!(matches!(e, Refusal::UndecodableVideo { .. }), "{e:?}");
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
