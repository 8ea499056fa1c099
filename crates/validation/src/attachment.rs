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

    fn image_format(self) -> Option<image::ImageFormat> {
        match self {
            MediaFormat::Png => Some(image::ImageFormat::Png),
            MediaFormat::Jpeg => Some(image::ImageFormat::Jpeg),
            MediaFormat::Webp => Some(image::ImageFormat::WebP),
            MediaFormat::Gif | MediaFormat::Mp4 => None,
        }
    }
}

/// What a workflow accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct AttachmentRules {
    pub max_bytes: u64,
    pub max_side: u32,
    pub max_decode_alloc: u64,
    /// GIF and MP4 are accepted only where a workflow takes video.
    pub allow_video: bool,
}

impl Default for AttachmentRules {
    fn default() -> Self {
        AttachmentRules {
            max_bytes: DEFAULT_MAX_ATTACHMENT_BYTES,
            max_side: DEFAULT_MAX_IMAGE_SIDE,
            max_decode_alloc: DEFAULT_MAX_DECODE_ALLOC,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedMedia {
    pub format: MediaFormat,
    /// For images; `None` for video.
    pub width: Option<u32>,
    pub height: Option<u32>,
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
    let Some(format) = declared.image_format() else {
        return Ok(CheckedMedia {
            format: declared,
            width: None,
            height: None,
        });
    };
    let undecodable = |e: image::ImageError| Refusal::Undecodable {
        name: att.filename.clone(),
        reason: e.to_string(),
    };
    let reader = || {
        let mut r = image::ImageReader::with_format(Cursor::new(bytes), format);
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(rules.max_side);
        limits.max_image_height = Some(rules.max_side);
        limits.max_alloc = Some(rules.max_decode_alloc);
        r.limits(limits);
        r
    };
    // The header alone gives the size; a bomb stops here without a single pixel decoded.
    let (width, height) = image::ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(undecodable)?;
    if width > rules.max_side || height > rules.max_side {
        return Err(Refusal::ImageTooLarge {
            name: att.filename.clone(),
            width,
            height,
            max_side: rules.max_side,
        });
    }
    reader().decode().map_err(|e| match e {
        image::ImageError::Limits(_) => Refusal::ImageTooLarge {
            name: att.filename.clone(),
            width,
            height,
            max_side: rules.max_side,
        },
        other => undecodable(other),
    })?;
    Ok(CheckedMedia {
        format: declared,
        width: Some(width),
        height: Some(height),
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
            max_decode_alloc: 1024,
            ..AttachmentRules::default()
        };
        assert!(inspect(&png(64, 64), &att("image/png", 0), &tight).is_err());
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
