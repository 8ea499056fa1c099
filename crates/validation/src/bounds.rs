//! Global limits. A workflow's manifest can narrow these; the defaults apply where it says nothing.

/// Discord counts characters, and so do we.
pub const MAX_PROMPT_CHARS: usize = 2000;
pub const MAX_NEGATIVE_CHARS: usize = 2000;

/// Latent space is 1/8 of the image, so sizes are multiples of 8.
pub const DIMENSION_MULTIPLE: u32 = 8;
pub const DEFAULT_MIN_DIMENSION: u32 = 64;
pub const DEFAULT_MAX_DIMENSION: u32 = 2048;
/// Aspect presets keep this pixel area unless the workflow's default size says otherwise.
pub const DEFAULT_PRESET_AREA: u32 = 512 * 512;
/// Presets round to this, so sizes stay friendly to every model.
pub const PRESET_ROUNDING: u32 = 64;

pub const DEFAULT_MIN_STEPS: f64 = 1.0;
pub const DEFAULT_MAX_STEPS: f64 = 150.0;
pub const DEFAULT_MIN_CFG: f64 = 0.0;
pub const DEFAULT_MAX_CFG: f64 = 30.0;
pub const DEFAULT_MAX_BATCH: f64 = 4.0;
pub const MIN_DENOISE: f64 = 0.0;
pub const MAX_DENOISE: f64 = 1.0;
pub const MIN_LORA_STRENGTH: f64 = 0.0;
pub const MAX_LORA_STRENGTH: f64 = 2.0;

/// Discord's default upload limit; servers with boosts allow more, configured per bot.
pub const DEFAULT_MAX_ATTACHMENT_BYTES: u64 = 25 * 1024 * 1024;
pub const DEFAULT_MAX_IMAGE_SIDE: u32 = 8192;
/// Decoded size one input may have: pixels × bytes per pixel × frames. A 4096² RGBA image
/// is 64 MiB; a 510 KB PNG of 8192² RGBA16 would be 512 MiB.
pub const DEFAULT_MAX_DECODED_BYTES: u64 = 128 * 1024 * 1024;
/// Frames in one animated input (GIF, animated WebP).
pub const DEFAULT_MAX_FRAMES: u32 = 600;
/// Length of one video input.
pub const DEFAULT_MAX_VIDEO_SECS: u32 = 120;
/// Bytes per pixel of a decoded GIF frame (RGBA).
pub const GIF_BYTES_PER_PIXEL: u64 = 4;

/// The only hosts attachments are fetched from.
pub const DISCORD_CDN_HOSTS: &[&str] = &["cdn.discordapp.com", "media.discordapp.net"];
