//! Any bytes under any declared type: sniffing and inspection never panic, never allocate
//! past the limit, and an accepted image really is what it was declared as.
#![no_main]

use libfuzzer_sys::fuzz_target;
use validation::attachment::{inspect, AttachmentRules, DeclaredAttachment, MediaFormat};

const TYPES: [&str; 6] = ["image/png", "image/jpeg", "image/webp", "image/gif", "video/mp4", "text/plain"];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else { return };
    let declared = DeclaredAttachment {
        filename: "f".into(),
        content_type: Some(TYPES[usize::from(selector) % TYPES.len()].into()),
        size: bytes.len() as u64,
        url: "https://cdn.discordapp.com/attachments/1/2/f".into(),
    };
    let rules = AttachmentRules {
        max_side: 2048,
        max_decoded_bytes: 64 * 1024 * 1024,
        allow_video: selector & 0x80 != 0,
        ..AttachmentRules::default()
    };
    let sniffed = MediaFormat::sniff(bytes);
    if let Ok(media) = inspect(bytes, &declared, &rules) {
        assert_eq!(Some(media.format), sniffed);
        assert_eq!(MediaFormat::from_mime(declared.content_type.as_deref().unwrap_or("")), Some(media.format));
        if let (Some(w), Some(h)) = (media.width, media.height) {
            assert!(w <= 2048 && h <= 2048);
        }
    }
});
