//! Refusals: what a user did wrong and how to fix it, in a sentence fit for Discord.

/// Formats a number the way a person typed it: `50`, `7.5`.
pub fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e16 {
        format!("{}", x as i64)
    } else {
        let s = format!("{x:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// `12.3 MiB`, `800 KiB`, `512 bytes`.
pub fn fmt_bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let x = n as f64;
    if x >= KIB * KIB {
        format!("{:.1} MiB", x / (KIB * KIB))
    } else if x >= KIB {
        format!("{:.0} KiB", x / KIB)
    } else {
        format!("{n} bytes")
    }
}

/// Why a request was refused. `Display` is the message shown to the user.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("{field} is empty; write something first")]
    Empty { field: String },
    #[error("{field} is {got} characters long; the limit is {max}")]
    TooLong {
        field: String,
        max: usize,
        got: usize,
    },
    #[error("{field} contains a control character ({code}); remove it and try again")]
    ControlCharacter { field: String, code: String },
    #[error("{field} is required for this workflow")]
    Required { field: String },
    #[error("this workflow has no option {field}; it takes: {known}")]
    UnknownOption { field: String, known: String },
    #[error("{field} must be {expected}; you sent {got}")]
    WrongType {
        field: String,
        expected: &'static str,
        got: String,
    },
    #[error("{field} must be between {} and {} for this workflow; you sent {}", fmt_num(*.min), fmt_num(*.max), fmt_num(*.got))]
    OutOfRange {
        field: String,
        min: f64,
        max: f64,
        got: f64,
    },
    #[error("{field} must be a multiple of {}; you sent {} (try {})", fmt_num(*.step), fmt_num(*.got), fmt_num(*.nearest))]
    OffStep {
        field: String,
        step: f64,
        got: f64,
        nearest: f64,
    },
    #[error("{field} must be one of {choices}; you sent {got}")]
    NotAChoice {
        field: String,
        choices: String,
        got: String,
    },
    #[error("{flag} {problem}")]
    InlineFlag { flag: String, problem: String },
    #[error("unknown flag {flag}; {}", match .suggestion { Some(s) => format!("did you mean {s}?"), None => format!("flags: {}", .known) })]
    UnknownFlag {
        flag: String,
        suggestion: Option<String>,
        known: String,
    },
    #[error("that prompt asks for {asked} jobs; one prompt may start at most {max}")]
    TooManyJobs { asked: usize, max: usize },
    #[error("unknown aspect ratio {got}; choose one of {presets}")]
    UnknownPreset { got: String, presets: String },
    #[error("choose either an aspect ratio or a width and height, not both")]
    AspectAndSize,
    #[error("{name} is {}, which is not a supported file type; send {allowed}", .got)]
    UnsupportedType {
        name: String,
        got: String,
        allowed: String,
    },
    #[error(
        "{name} says it is {declared} but its content is {actual}; send a real {declared} file"
    )]
    TypeMismatch {
        name: String,
        declared: String,
        actual: String,
    },
    #[error("{name} is {}; the limit is {}", fmt_bytes(*.size), fmt_bytes(*.max))]
    FileTooLarge { name: String, size: u64, max: u64 },
    #[error("{name} is {width}×{height} pixels; the limit is {max_side} pixels a side")]
    ImageTooLarge {
        name: String,
        width: u32,
        height: u32,
        max_side: u32,
    },
    #[error("{name} could not be read as an image ({reason}); send a PNG, JPEG or WebP file")]
    Undecodable { name: String, reason: String },
    #[error("{name} could not be read as a video ({reason}); send an MP4 file")]
    UndecodableVideo { name: String, reason: String },
    #[error(
        "{name} would need {} of memory to open ({width}×{height}{}); the limit is {}; send a smaller image",
        fmt_bytes(*.bytes),
        if *.frames > 1 { format!(", {} frames", .frames) } else { String::new() },
        fmt_bytes(*.max)
    )]
    DecodeTooLarge {
        name: String,
        width: u32,
        height: u32,
        frames: u32,
        bytes: u64,
        max: u64,
    },
    #[error("{name} has {frames} frames; the limit is {max}")]
    TooManyFrames { name: String, frames: u32, max: u32 },
    #[error("{name} is {secs:.1} s long; the limit is {max_secs} s")]
    VideoTooLong {
        name: String,
        secs: f64,
        max_secs: u32,
    },
    #[error("attachments must come from Discord itself ({reason})")]
    ForeignUrl { reason: String },
    #[error("you are going too fast; try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("the bot is busy; try again in {retry_after_secs} s")]
    GloballyRateLimited { retry_after_secs: u64 },
    #[error("you already have {pending} jobs waiting (the limit is {max}); wait for one to finish or cancel one")]
    TooManyPending { pending: usize, max: usize },
    #[error("the queue is full ({depth} jobs); try again in a minute")]
    QueueFull { depth: usize },
}

impl Refusal {
    /// Seconds after which retrying may succeed, for refusals that depend on time.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Refusal::RateLimited { retry_after_secs }
            | Refusal::GloballyRateLimited { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        }
    }
}

/// Quotes a user value for a message: strings in quotes, cut to a readable length.
pub fn show(v: &serde_json::Value) -> String {
    const SHOWN_CHARS: usize = 40;
    match v {
        serde_json::Value::String(s) => {
            let mut cut: String = s.chars().take(SHOWN_CHARS).collect();
            if s.chars().count() > SHOWN_CHARS {
                cut.push('…');
            }
            format!("\"{cut}\"")
        }
        other => other.to_string(),
    }
}

/// "a, b, c, … (12 in all)".
pub fn list_preview(items: &[serde_json::Value]) -> String {
    const SHOWN: usize = 8;
    let mut parts: Vec<String> = items.iter().take(SHOWN).map(show).collect();
    if items.len() > SHOWN {
        parts.push(format!("… ({} in all)", items.len()));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_specific() {
        let r = Refusal::OutOfRange {
            field: "steps".into(),
            min: 1.0,
            max: 50.0,
            got: 80.0,
        };
        assert_eq!(
            r.to_string(),
            "steps must be between 1 and 50 for this workflow; you sent 80"
        );
        let r = Refusal::FileTooLarge {
            name: "cat.png".into(),
            size: 30 * 1024 * 1024,
            max: 25 * 1024 * 1024,
        };
        assert_eq!(r.to_string(), "cat.png is 30.0 MiB; the limit is 25.0 MiB");
        assert_eq!(fmt_num(7.5), "7.5");
        assert_eq!(fmt_num(0.1 + 0.2), "0.3");
        assert_eq!(
            Refusal::RateLimited {
                retry_after_secs: 3
            }
            .retry_after_secs(),
            Some(3)
        );
    }
}
