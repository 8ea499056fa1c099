//! `/describe`: the prompts a describe job's text outputs hold, and the aspect ratio of the
//! image it described, for the generation a button 1–4 starts.

use crate::job::{JobRecord, OutputKind};

/// Prompts a describe result offers, at most (buttons 1–4).
pub const MAX_DESCRIBED_PROMPTS: usize = 4;
/// Longest prompt kept from a caption (a runaway captioner must not fill a message).
pub const MAX_DESCRIBED_CHARS: usize = 600;
/// Largest denominator tried when turning a size into a ratio like 3:2.
const MAX_RATIO_TERM: u32 = 21;
/// Widest and tallest ratio a generation takes (as `--ar` does).
const MAX_RATIO: f64 = 4.0;

/// Up to [`MAX_DESCRIBED_PROMPTS`] prompts from caption text: each non-empty line (list marks
/// like `1.`, `2)`, `-` and surrounding quotes removed), in order, without repeats.
pub fn split_prompts<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in texts.into_iter().flat_map(str::lines) {
        let p = strip_marks(line);
        if p.is_empty() || out.iter().any(|o| o.eq_ignore_ascii_case(&p)) {
            continue;
        }
        out.push(p.chars().take(MAX_DESCRIBED_CHARS).collect());
        if out.len() == MAX_DESCRIBED_PROMPTS {
            break;
        }
    }
    out
}

fn strip_marks(line: &str) -> String {
    let mut s = line.trim();
    // "1.", "2)", "3:" at the start.
    let digits = s.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 && digits <= 2 {
        if let Some(rest) = s[digits..].strip_prefix(['.', ')', ':']) {
            s = rest.trim_start();
        }
    }
    for mark in ["- ", "* ", "• "] {
        if let Some(rest) = s.strip_prefix(mark) {
            s = rest.trim_start();
        }
    }
    s.trim_matches(|c| c == '"' || c == '“' || c == '”')
        .trim()
        .to_string()
}

/// The prompts a finished describe job produced (its text outputs, read from disk).
pub fn described_prompts(record: &JobRecord) -> Vec<String> {
    let texts: Vec<String> = record
        .outputs
        .iter()
        .filter(|o| o.kind == OutputKind::Text)
        .filter_map(|o| std::fs::read_to_string(&o.path).ok())
        .collect();
    split_prompts(texts.iter().map(String::as_str))
}

/// A `W:H` ratio close to `width`×`height` with small terms (1000×667 → `3:2`), or `None`
/// past 4:1 either way.
pub fn aspect_of(width: u32, height: u32) -> Option<String> {
    if width == 0 || height == 0 {
        return None;
    }
    let ratio = f64::from(width) / f64::from(height);
    if !(1.0 / MAX_RATIO..=MAX_RATIO).contains(&ratio) {
        return None;
    }
    let mut best = (f64::MAX, 1, 1);
    for h in 1..=MAX_RATIO_TERM {
        let w = (ratio * f64::from(h)).round().max(1.0) as u32;
        let err = (f64::from(w) / f64::from(h) - ratio).abs();
        // Strictly better only: the smallest terms win a tie.
        if err + 1e-9 < best.0 {
            best = (err, w, h);
        }
    }
    Some(format!("{}:{}", best.1, best.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captions_become_up_to_four_clean_prompts() {
        let texts = [
            "1. a red fox in snow\n2) \"a fox, watercolor\"\n\n- a fox at dusk",
            "A red fox in snow\n• fox portrait, 85mm\nfifth one",
        ];
        assert_eq!(
            split_prompts(texts),
            [
                "a red fox in snow",
                "a fox, watercolor",
                "a fox at dusk",
                "fox portrait, 85mm"
            ]
        );
        assert!(split_prompts(["", "  \n "]).is_empty());
        let long = "x".repeat(5000);
        assert_eq!(
            split_prompts([long.as_str()])[0].chars().count(),
            MAX_DESCRIBED_CHARS
        );
        // A number that is the prompt's own start stays.
        assert_eq!(split_prompts(["1984 cars"]), ["1984 cars"]);
    }

    #[test]
    fn sizes_become_small_ratios_within_bounds() {
        assert_eq!(aspect_of(1920, 1080).as_deref(), Some("16:9"));
        assert_eq!(aspect_of(1000, 667).as_deref(), Some("3:2"));
        assert_eq!(aspect_of(64, 64).as_deref(), Some("1:1"));
        assert_eq!(aspect_of(480, 640).as_deref(), Some("3:4"));
        assert_eq!(aspect_of(5000, 1000), None, "past 4:1");
        assert_eq!(aspect_of(0, 10), None);
        for (w, h) in [(777, 333), (123, 456), (2048, 512)] {
            let a = aspect_of(w, h).unwrap();
            assert!(
                validation::request::parse_ratio(&a).is_some(),
                "{a} is a ratio --ar takes"
            );
        }
    }
}
