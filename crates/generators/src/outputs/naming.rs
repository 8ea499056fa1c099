//! Readable, collision-free output file names.
//!
//! A name like `red-fox-snowy-forest-20240229-120000.png` lets a person find a picture in
//! the output folder without opening the sidecar; the UTC timestamp keeps names sortable
//! and mostly unique, and [`unique_path`] settles the rest.

use std::path::{Path, PathBuf};

use time::{OffsetDateTime, PrimitiveDateTime};

/// Most keywords taken from a prompt: more makes names hard to read.
const MAX_WORDS: usize = 6;
/// Most characters of the keyword part, for reading.
const MAX_CHARS: usize = 48;
/// Most bytes of the keyword part: with the timestamp, numbering, extension, `.json` and a
/// temporary suffix, names stay under the usual 255-byte limit even in 4-byte scripts.
const MAX_BYTES: usize = 120;
/// Most `-N` suffixes tried for a free name.
pub(crate) const MAX_COLLISIONS: usize = 10_000;
/// The stem's keyword part when neither the prompt nor the workflow name gives one.
const FALLBACK: &str = "output";

/// Words that say nothing about the picture: English stop words and the boilerplate that
/// starts many Stable Diffusion prompts ("masterpiece, best quality, highly detailed").
const STOP_WORDS: &[&str] = &[
    "a",
    "an",
    "the",
    "of",
    "with",
    "and",
    "or",
    "in",
    "on",
    "at",
    "to",
    "for",
    "by",
    "from",
    "into",
    "is",
    "are",
    "its",
    "it",
    "as",
    "very",
    "masterpiece",
    "best",
    "quality",
    "highly",
    "detailed",
    "highres",
    "hq",
];

/// The stem (name without extension) for a job's outputs: up to six keywords of the prompt
/// (or the workflow name when there is no usable prompt) and the UTC time `YYYYMMDD-HHMMSS`.
///
/// Only lowercase letters and digits of any script and `-` appear, so the stem is safe on
/// every file system and in a Discord attachment name.
pub fn output_stem(prompt: Option<&str>, workflow: &str, when_ms: i64) -> String {
    let mut words = prompt.map(|p| keywords(p, true)).unwrap_or_default();
    if words.is_empty() {
        words = keywords(workflow, false);
    }
    if words.is_empty() {
        words = FALLBACK.to_owned();
    }
    format!("{words}-{}", utc_timestamp(when_ms))
}

/// Lowercase alphanumeric words of `text` joined by `-`, within [`MAX_WORDS`] and
/// [`MAX_CHARS`]. `<lora:...>`-style tags are skipped, and so are bare numbers (prompt
/// weights like `(fox:1.2)` would otherwise leave `1-2` in the name) and repeated words.
fn keywords(text: &str, drop_stop_words: bool) -> String {
    let mut out = String::new();
    let mut out_chars = 0usize;
    let mut taken: Vec<String> = Vec::new();
    for word in words_outside_tags(text) {
        if taken.len() == MAX_WORDS {
            break;
        }
        // Lowercasing can add a combining mark (`İ` → `i̇`): keep letters and digits only.
        let word: String = word
            .chars()
            .flat_map(char::to_lowercase)
            .filter(|c| c.is_alphanumeric())
            .collect();
        if word.chars().all(|c| c.is_ascii_digit())
            || (drop_stop_words && STOP_WORDS.contains(&word.as_str()))
            || taken.contains(&word)
        {
            continue;
        }
        let len = word.chars().count();
        if out.is_empty() {
            // A single over-long word (a long unspaced CJK prompt, say) is cut, not dropped.
            for c in word.chars() {
                if out_chars == MAX_CHARS || out.len() + c.len_utf8() > MAX_BYTES {
                    break;
                }
                out.push(c);
                out_chars += 1;
            }
        } else if out_chars + 1 + len <= MAX_CHARS && out.len() + 1 + word.len() <= MAX_BYTES {
            out.push('-');
            out.push_str(&word);
            out_chars += 1 + len;
        } else {
            break;
        }
        taken.push(word);
    }
    out
}

/// Runs of alphanumeric characters outside `<...>` tags (a `<` without a closing `>` is
/// just a separator).
fn words_outside_tags(text: &str) -> Vec<String> {
    let mut current = String::new();
    let mut words = Vec::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        if c.is_alphanumeric() {
            current.push(c);
            continue;
        }
        if !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        if c == '<' {
            if let Some(end) = rest
                .find(['<', '>'])
                .filter(|&i| rest[i..].starts_with('>'))
            {
                rest = &rest[end + 1..];
            }
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// `YYYYMMDD-HHMMSS` in UTC for Unix milliseconds (negative ones are before 1970).
pub fn utc_timestamp(when_ms: i64) -> String {
    let secs = when_ms.div_euclid(1000);
    // Beyond the calendar's ±9999 years: the nearest moment it has.
    let t = OffsetDateTime::from_unix_timestamp(secs).unwrap_or_else(|_| {
        if secs < 0 {
            PrimitiveDateTime::MIN.assume_utc()
        } else {
            PrimitiveDateTime::MAX.assume_utc()
        }
    });
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A path in `dir` for output number `index` of a job (counting from 1; 0 counts as 1) that
/// does not name an existing file: `stem.ext` for the first output, `stem_2.ext`,
/// `stem_3.ext` ... for the others, and a `-2`, `-3` ... suffix when that is taken.
///
/// Checking first is racy between processes; [`super::save_output`] therefore claims the
/// name with a hard link that fails rather than replacing a file.
pub fn unique_path(dir: &Path, stem: &str, index: usize, ext: &str) -> PathBuf {
    (1..=MAX_COLLISIONS)
        .map(|n| dir.join(file_name(stem, index, ext, n)))
        .find(|p| std::fs::symlink_metadata(p).is_err())
        .unwrap_or_else(|| {
            // Thousands of namesakes: a random suffix instead of counting on.
            let stem = format!("{stem}-{:08x}", rand::random::<u32>());
            dir.join(file_name(&stem, index, ext, 1))
        })
}

/// The file name for output `index` of `stem` with collision number `n` (1 = none).
pub(crate) fn file_name(stem: &str, index: usize, ext: &str, n: usize) -> String {
    let mut name = stem.to_owned();
    if index > 1 {
        name.push_str(&format!("_{index}"));
    }
    if n > 1 {
        name.push_str(&format!("-{n}"));
    }
    let ext = ext.trim_start_matches('.');
    if !ext.is_empty() {
        name.push('.');
        name.push_str(&ext.to_lowercase());
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_match_known_dates() {
        assert_eq!(utc_timestamp(0), "19700101-000000");
        assert_eq!(utc_timestamp(951_782_400_000), "20000229-000000");
        assert_eq!(utc_timestamp(1_795_295_401_795), "20261121-211001");
        assert_eq!(utc_timestamp(1_709_164_800_000), "20240229-000000");
        // 2100 is not a leap year: the day before 1 March is 28 February.
        assert_eq!(utc_timestamp(4_107_542_399_000), "21000228-235959");
        assert_eq!(utc_timestamp(253_402_300_799_000), "99991231-235959");
        // Before the epoch, rounding towards minus infinity.
        assert_eq!(utc_timestamp(-1), "19691231-235959");
        assert_eq!(utc_timestamp(-2_208_988_800_000), "19000101-000000");
        // Absurd times still make a name rather than overflow.
        assert!(!utc_timestamp(i64::MIN).is_empty());
        assert!(!utc_timestamp(i64::MAX).is_empty());
    }

    #[test]
    fn stem_takes_prompt_keywords() {
        let stem = output_stem(
            Some("A photo of the Red Fox, in a snowy forest at dawn"),
            "txt2img",
            0,
        );
        assert_eq!(stem, "photo-red-fox-snowy-forest-dawn-19700101-000000");
    }

    #[test]
    fn stem_limits_words_and_length() {
        let stem = output_stem(Some("one two three four five six seven eight"), "w", 0);
        assert_eq!(stem, "one-two-three-four-five-six-19700101-000000");

        let long = "extraordinarily magnificent incomprehensibly overcomplicated architecture";
        let words = keywords(long, true);
        assert!(words.chars().count() <= MAX_CHARS, "{words}");
        assert_eq!(words, "extraordinarily-magnificent-incomprehensibly");

        let one_word = "x".repeat(100);
        assert_eq!(keywords(&one_word, true).len(), MAX_CHARS);
        // 4-byte letters are cut by bytes first: 30 of them make 120 bytes.
        let wide = "\u{20000}".repeat(100);
        assert_eq!(keywords(&wide, true).chars().count(), 30);
        assert_eq!(keywords(&wide, true).len(), MAX_BYTES);
    }

    #[test]
    fn stem_drops_boilerplate_weights_tags_and_repeats() {
        let stem = output_stem(
            Some("masterpiece, best quality, (cat:1.3), <lora:foo_v2:0.8> cat, 4k"),
            "w",
            0,
        );
        assert_eq!(stem, "cat-4k-19700101-000000");
        // An unclosed `<` hides nothing.
        let stem = output_stem(Some("fox <3 hen <lora:x> owl"), "w", 0);
        assert_eq!(stem, "fox-hen-owl-19700101-000000");
        assert_eq!(keywords("İstanbul", true), "istanbul");
    }

    #[test]
    fn stem_keeps_unicode_letters() {
        let stem = output_stem(Some("Ein Großer Bär — 赤い狐"), "w", 0);
        assert_eq!(stem, "ein-großer-bär-赤い狐-19700101-000000");
    }

    #[test]
    fn stem_falls_back_to_workflow_then_output() {
        assert_eq!(
            output_stem(None, "SDXL Turbo", 0),
            "sdxl-turbo-19700101-000000"
        );
        assert_eq!(
            output_stem(Some("  , the of !! "), "upscale_4x", 0),
            "upscale-4x-19700101-000000"
        );
        assert_eq!(output_stem(Some(""), "***", 0), "output-19700101-000000");
    }

    #[test]
    fn file_names_number_outputs_and_collisions() {
        assert_eq!(file_name("s", 0, "png", 1), "s.png");
        assert_eq!(file_name("s", 1, "png", 1), "s.png");
        assert_eq!(file_name("s", 2, ".PNG", 1), "s_2.png");
        assert_eq!(file_name("s", 1, "png", 3), "s-3.png");
        assert_eq!(file_name("s", 3, "", 2), "s_3-2");
    }

    #[test]
    fn unique_path_never_names_an_existing_file() {
        let dir = crate::outputs::test_dir("unique");
        let first = unique_path(&dir, "fox", 1, "png");
        assert_eq!(first, dir.join("fox.png"));
        std::fs::write(&first, b"1").unwrap();
        let second = unique_path(&dir, "fox", 1, "png");
        assert_eq!(second, dir.join("fox-2.png"));
        std::fs::write(&second, b"2").unwrap();
        assert_eq!(unique_path(&dir, "fox", 1, "png"), dir.join("fox-3.png"));
        assert_eq!(unique_path(&dir, "fox", 2, "png"), dir.join("fox_2.png"));
        assert_eq!(std::fs::read(&first).unwrap(), b"1");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
