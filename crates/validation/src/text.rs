//! Prompt text: trimmed, counted in characters, free of control characters, not blank, and
//! without bidi controls or invisible format characters.
//!
//! Those are stripped, not refused: they mean nothing to a text encoder, pasted prompts often
//! carry zero-width spaces, and bidi overrides in text the bot echoes (captions, the Info
//! card) would let a member make it display something other than what ran ("Trojan Source").
//! ZWJ and ZWNJ stay: emoji sequences and several scripts need them.

use crate::refusal::Refusal;

/// Characters that render as nothing; a prompt made only of these (and spaces) is empty.
const INVISIBLE: &[char] = &[
    '\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}', '\u{180E}', '\u{00AD}', '\u{034F}',
];

fn is_blank(c: char) -> bool {
    c.is_whitespace() || INVISIBLE.contains(&c)
}

/// Bidi controls: marks, embeddings, overrides and isolates.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Format characters removed from prompts: bidi controls, and invisible ones other than
/// ZWJ/ZWNJ (zero-width space, word joiner, BOM, soft hyphen, invisible operators,
/// interlinear annotation marks).
pub fn is_stripped_format(c: char) -> bool {
    is_bidi_control(c)
        || matches!(
            c,
            '\u{200B}'
                | '\u{2060}'..='\u{2064}'
                | '\u{FEFF}'
                | '\u{180E}'
                | '\u{00AD}'
                | '\u{034F}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// Checks prompt-like text and returns it trimmed, with `\r\n` turned into `\n`.
/// `allow_empty` is for the negative prompt, which may be left blank.
pub fn check_text(
    field: &str,
    text: &str,
    max_chars: usize,
    allow_empty: bool,
) -> Result<String, Refusal> {
    let normalized: String = text
        .replace("\r\n", "\n")
        .chars()
        .filter(|c| !is_stripped_format(*c))
        .collect();
    let trimmed = normalized.trim_matches(is_blank);
    if let Some(c) = trimmed
        .chars()
        .find(|c| c.is_control() && *c != '\n' && *c != '\t')
    {
        return Err(Refusal::ControlCharacter {
            field: field.to_string(),
            code: format!("U+{:04X}", c as u32),
        });
    }
    if trimmed.is_empty() {
        return if allow_empty {
            Ok(String::new())
        } else {
            Err(Refusal::Empty {
                field: field.to_string(),
            })
        };
    }
    let got = trimmed.chars().count();
    if got > max_chars {
        return Err(Refusal::TooLong {
            field: field.to_string(),
            max: max_chars,
            got,
        });
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounds::MAX_PROMPT_CHARS;
    use proptest::prelude::*;

    #[test]
    fn edges() {
        assert_eq!(
            check_text("prompt", "  a cat \n", 2000, false),
            Ok("a cat".into())
        );
        assert!(matches!(
            check_text("prompt", "   ", 2000, false),
            Err(Refusal::Empty { .. })
        ));
        assert!(matches!(
            check_text("prompt", "\u{200B}\u{FEFF} \u{200D}", 2000, false),
            Err(Refusal::Empty { .. })
        ));
        assert_eq!(check_text("negative", " ", 2000, true), Ok(String::new()));
        assert_eq!(
            check_text("prompt", "a\u{7}b", 2000, false)
                .unwrap_err()
                .to_string(),
            "prompt contains a control character (U+0007); remove it and try again"
        );
        assert_eq!(
            check_text("prompt", "line1\r\nline2\tx", 2000, false),
            Ok("line1\nline2\tx".into())
        );
        // Characters, not bytes: 2000 two-byte characters fit, 2001 do not.
        let exact = "é".repeat(MAX_PROMPT_CHARS);
        assert!(check_text("prompt", &exact, MAX_PROMPT_CHARS, false).is_ok());
        let over = "é".repeat(MAX_PROMPT_CHARS + 1);
        assert_eq!(
            check_text("prompt", &over, MAX_PROMPT_CHARS, false)
                .unwrap_err()
                .to_string(),
            "prompt is 2001 characters long; the limit is 2000"
        );
        // Bidi overrides and invisible format characters are removed; ZWJ emoji stay whole.
        assert_eq!(
            check_text(
                "prompt",
                "a \u{202E}tac\u{202C} on a\u{200B} mat\u{2067}",
                2000,
                false
            ),
            Ok("a tac on a mat".into())
        );
        let family = "a family 👨\u{200D}👩\u{200D}👧 at the beach";
        assert_eq!(check_text("prompt", family, 2000, false), Ok(family.into()));
        assert!(matches!(
            check_text("prompt", "\u{202E}\u{2066}\u{200F}", 2000, false),
            Err(Refusal::Empty { .. })
        ));
        // Trimming happens before counting.
        let padded = format!("   {exact}   ");
        assert!(check_text("prompt", &padded, MAX_PROMPT_CHARS, false).is_ok());
    }

    proptest! {
        #[test]
        fn accepted_text_obeys_every_rule(s in "\\PC{0,40}|[\\x00-\\x1f a-z\u{200B}\u{202A}-\u{202E}\u{2066}-\u{2069}\u{200D}]{0,40}", max in 1usize..50) {
            match check_text("prompt", &s, max, false) {
                Ok(t) => {
                    prop_assert!(!t.is_empty());
                    prop_assert!(t.chars().count() <= max);
                    prop_assert!(!t.chars().any(|c| c.is_control() && c != '\n' && c != '\t'));
                    prop_assert!(!t.starts_with(is_blank) && !t.ends_with(is_blank));
                    prop_assert!(!t.chars().all(is_blank));
                    prop_assert!(!t.chars().any(is_stripped_format));
                }
                Err(Refusal::Empty { .. }) => prop_assert!(s.chars().all(|c| is_blank(c) || is_stripped_format(c))),
                Err(Refusal::TooLong { got, max: m, .. }) => prop_assert!(got > m),
                Err(Refusal::ControlCharacter { .. }) => prop_assert!(s.chars().any(|c| c.is_control())),
                Err(other) => prop_assert!(false, "unexpected refusal {other}"),
            }
        }
    }
}
