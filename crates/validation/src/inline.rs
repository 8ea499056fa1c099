//! Parameters typed inside a prompt, the way image servers are used to them:
//! `a castle --ar 16:9 --seed 7 --no people`, and `{red, blue} car` for one job per choice.
//!
//! Three pure steps: [`expand`] makes the permutations, [`split_flags`] takes the flags out of
//! one prompt (a flag-like word inside double quotes or in the middle of a word is text), and
//! [`interpret`] types each flag by the workflow's rules. Nothing here does IO.

use indexmap::IndexMap;
use serde_json::{Map, Number, Value};

use crate::params::{ParamKind, ParamRule};
use crate::refusal::Refusal;

/// Most jobs one prompt may start (`--repeat` times the permutations); each is also counted
/// against the member's own limits.
pub const MAX_JOBS_PER_PROMPT: usize = 8;
/// `--repeat` at most.
pub const MAX_REPEAT: usize = 4;
/// Flags one prompt may carry.
const MAX_FLAGS: usize = 24;
/// Choices one `{…}` group may offer.
const MAX_CHOICES: usize = 8;
/// How close a typo must be to a flag name to be suggested (Jaro-Winkler similarity).
const SUGGEST_SIMILARITY: f64 = 0.75;

/// Flags with a meaning of their own; any parameter of the workflow is a flag too.
pub const BUILTIN_FLAGS: &[(&str, &str)] = &[
    ("ar", "aspect ratio W:H, e.g. 16:9"),
    ("seed", "seed"),
    ("no", "words added to the negative prompt"),
    ("steps", "sampling steps"),
    ("cfg", "prompt strength"),
    ("style", "a named style"),
    ("repeat", "run it N times"),
];

/// One prompt with its flags taken out, in the order typed (names lowercased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub prompt: String,
    pub flags: Vec<(String, String)>,
}

/// What the flags of one prompt ask for, typed by the workflow's rules.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inline {
    /// The prompt without its flags.
    pub prompt: String,
    /// Values by parameter name (`seed`, `steps`, `cfg` and any `--NAME`).
    pub values: Map<String, Value>,
    /// `--ar`.
    pub aspect: Option<String>,
    /// `--no` texts, to add to the negative prompt.
    pub no: Vec<String>,
    pub style: Option<String>,
    /// `--repeat` (1 when absent).
    pub repeat: usize,
}

/// Whether `c` starts a flag: `--` or the em dash phones type for it.
fn flag_start(rest: &str) -> Option<usize> {
    if rest.starts_with("--") {
        Some(2)
    } else if rest.starts_with('—') {
        Some('—'.len_utf8())
    } else {
        None
    }
}

/// Byte ranges of `text` that are flags: `(start, name_start, name_end)`, each outside
/// double quotes, at the start of a word, and followed by a lowercase-ASCII letter.
fn flag_positions(text: &str) -> Vec<(usize, usize, usize)> {
    let mut found = Vec::new();
    let mut quoted = false;
    let mut prev: Option<char> = None;
    for (i, c) in text.char_indices() {
        if c == '"' {
            quoted = !quoted;
        }
        let at_word_start = prev.is_none_or(char::is_whitespace);
        if !quoted && at_word_start {
            if let Some(skip) = flag_start(&text[i..]) {
                let name_start = i + skip;
                let name_len = text[name_start..]
                    .char_indices()
                    .take_while(|(k, ch)| {
                        ch.is_ascii_alphabetic() || (*k > 0 && (ch.is_ascii_digit() || *ch == '_'))
                    })
                    .map(|(k, ch)| k + ch.len_utf8())
                    .last()
                    .unwrap_or(0);
                let after = text[name_start + name_len..].chars().next();
                if name_len > 0 && after.is_none_or(char::is_whitespace) {
                    found.push((i, name_start, name_start + name_len));
                }
            }
        }
        prev = Some(c);
    }
    found
}

/// Words joined by single spaces.
fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Takes the flags out of `text`: each flag's value is the text up to the next flag. Never
/// fails; what is not a flag stays in the prompt.
pub fn split_flags(text: &str) -> Split {
    let positions = flag_positions(text);
    let prompt_end = positions.first().map_or(text.len(), |p| p.0);
    let mut flags = Vec::new();
    for (k, &(_, name_start, name_end)) in positions.iter().enumerate() {
        let value_end = positions.get(k + 1).map_or(text.len(), |p| p.0);
        let name = text[name_start..name_end].to_ascii_lowercase();
        flags.push((name, squash(&text[name_end..value_end])));
    }
    Split {
        prompt: squash(&text[..prompt_end]),
        flags,
    }
}

/// The `{a, b, c}` groups of `text` (outside double quotes, holding a comma) expanded into
/// every combination, in order. A group without a comma or without its closing brace is text.
pub fn expand(text: &str) -> Result<Vec<String>, Refusal> {
    let mut parts: Vec<Vec<String>> = Vec::new();
    let mut literal = String::new();
    let mut quoted = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '"' {
            quoted = !quoted;
        }
        if c == '{' && !quoted {
            if let Some(close) = rest.find('}') {
                let inner = &rest[1..close];
                if inner.contains(',') && !inner.contains('{') {
                    let choices: Vec<String> =
                        inner.split(',').map(|s| s.trim().to_string()).collect();
                    if choices.len() > MAX_CHOICES {
                        return Err(Refusal::InlineFlag {
                            flag: "{…}".into(),
                            problem: format!("a group offers at most {MAX_CHOICES} choices"),
                        });
                    }
                    parts.push(vec![std::mem::take(&mut literal)]);
                    parts.push(choices);
                    rest = &rest[close + 1..];
                    continue;
                }
            }
        }
        literal.push(c);
        rest = &rest[c.len_utf8()..];
    }
    parts.push(vec![literal]);
    let mut out = vec![String::new()];
    for part in parts {
        let count = out.len() * part.len();
        if count > MAX_JOBS_PER_PROMPT {
            return Err(Refusal::TooManyJobs {
                asked: count,
                max: MAX_JOBS_PER_PROMPT,
            });
        }
        out = out
            .iter()
            .flat_map(|head| part.iter().map(move |p| format!("{head}{p}")))
            .collect();
    }
    Ok(out)
}

/// The known flag closest to `name`, if one is close enough to be a typo of it.
pub fn suggest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<String> {
    known
        .map(|k| (strsim::jaro_winkler(name, k), k))
        .filter(|(score, _)| *score >= SUGGEST_SIMILARITY)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.to_string())
}

/// `value` typed for `rule`; the problem, in words, when it does not parse.
fn typed(rule: &ParamRule, value: &str) -> Result<Value, String> {
    let v = value.trim();
    match rule.kind {
        ParamKind::Int | ParamKind::Seed => v
            .parse::<i64>()
            .map(|n| Value::Number(n.into()))
            .or_else(|_| v.parse::<u64>().map(|n| Value::Number(n.into())))
            .map_err(|_| format!("needs a whole number, not {v:?}")),
        ParamKind::Float => v
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("needs a number, not {v:?}")),
        ParamKind::Bool => match v.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(Value::Bool(true)),
            "false" | "no" | "off" | "0" => Ok(Value::Bool(false)),
            _ => Err(format!("needs true or false, not {v:?}")),
        },
        ParamKind::Choice => Ok(v
            .parse::<f64>()
            .ok()
            .filter(|_| rule.choices.iter().any(Value::is_number))
            .and_then(Number::from_f64)
            .map_or_else(|| Value::String(v.to_string()), Value::Number)),
        ParamKind::String => Ok(Value::String(v.to_string())),
        ParamKind::Image => Err("takes an image; attach it to the command instead".into()),
    }
}

/// Types the flags of `split` by the workflow's `rules`. Unknown flags are refused with the
/// nearest valid one; a flag given twice, or without the value it needs, is refused by name.
pub fn interpret(split: Split, rules: &IndexMap<String, ParamRule>) -> Result<Inline, Refusal> {
    if split.flags.len() > MAX_FLAGS {
        return Err(Refusal::InlineFlag {
            flag: "--…".into(),
            problem: format!("a prompt may carry at most {MAX_FLAGS} flags"),
        });
    }
    let mut out = Inline {
        prompt: split.prompt,
        repeat: 1,
        ..Inline::default()
    };
    let mut seen: Vec<&str> = Vec::new();
    let bad = |flag: &str, problem: String| Refusal::InlineFlag {
        flag: format!("--{flag}"),
        problem,
    };
    for (name, value) in &split.flags {
        if seen.contains(&name.as_str()) && name != "no" {
            return Err(bad(name, "is given twice".into()));
        }
        seen.push(name);
        if value.is_empty() {
            return Err(bad(name, "needs a value".into()));
        }
        match name.as_str() {
            "ar" | "aspect" => out.aspect = Some(value.replace(' ', "")),
            "no" => out.no.push(value.clone()),
            "style" => out.style = Some(value.clone()),
            "repeat" => {
                let n = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_REPEAT).contains(n))
                    .ok_or_else(|| {
                        bad(name, format!("needs a whole number from 1 to {MAX_REPEAT}"))
                    })?;
                out.repeat = n;
            }
            "prompt" => {
                return Err(bad(
                    name,
                    "is not needed: the prompt is the text itself".into(),
                ))
            }
            "negative" if rules.contains_key("negative") => {
                return Err(bad(name, "is written --no TEXT here".into()))
            }
            _ => match rules.get(name) {
                Some(rule) => {
                    let v = typed(rule, value).map_err(|p| bad(name, p))?;
                    out.values.insert(name.clone(), v);
                }
                None => {
                    let builtin = BUILTIN_FLAGS.iter().map(|(n, _)| *n);
                    let params = rules
                        .iter()
                        .filter(|(n, r)| r.kind != ParamKind::Image && n.as_str() != "prompt")
                        .map(|(n, _)| n.as_str());
                    let known: Vec<&str> = builtin.chain(params).collect();
                    return Err(Refusal::UnknownFlag {
                        flag: format!("--{name}"),
                        suggestion: suggest(name, known.iter().copied()).map(|s| format!("--{s}")),
                        known: known
                            .iter()
                            .map(|k| format!("--{k}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
            },
        }
    }
    Ok(out)
}

/// Every job a prompt asks for: its permutations, each `--repeat` times, each interpreted.
pub fn parse_prompt(
    text: &str,
    rules: &IndexMap<String, ParamRule>,
) -> Result<Vec<Inline>, Refusal> {
    let mut jobs = Vec::new();
    for one in expand(text)? {
        let inline = interpret(split_flags(&one), rules)?;
        let total = jobs.len() + inline.repeat;
        if total > MAX_JOBS_PER_PROMPT {
            let asked = expand(text).map_or(total, |v| v.len()) * inline.repeat;
            return Err(Refusal::TooManyJobs {
                asked,
                max: MAX_JOBS_PER_PROMPT,
            });
        }
        for _ in 0..inline.repeat {
            jobs.push(Inline {
                repeat: 1,
                ..inline.clone()
            });
        }
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn rules() -> IndexMap<String, ParamRule> {
        let mut r = IndexMap::new();
        r.insert("prompt".into(), ParamRule::new(ParamKind::String));
        r.insert("negative".into(), ParamRule::new(ParamKind::String));
        r.insert("seed".into(), ParamRule::new(ParamKind::Seed));
        r.insert("steps".into(), ParamRule::new(ParamKind::Int));
        r.insert("cfg".into(), ParamRule::new(ParamKind::Float));
        r.insert("sampler".into(), ParamRule::new(ParamKind::Choice));
        r.insert("hires".into(), ParamRule::new(ParamKind::Bool));
        r.insert("image".into(), ParamRule::new(ParamKind::Image));
        r
    }

    fn one(text: &str) -> Result<Inline, Refusal> {
        interpret(split_flags(text), &rules())
    }

    #[test]
    fn flags_come_out_of_the_prompt_typed() {
        let i = one("a castle on a hill --ar 16:9 --seed 7 --no people, cars --steps 30 --cfg 6.5")
            .unwrap();
        assert_eq!(i.prompt, "a castle on a hill");
        assert_eq!(i.aspect.as_deref(), Some("16:9"));
        assert_eq!(i.values["seed"], json!(7));
        assert_eq!(i.values["steps"], json!(30));
        assert_eq!(i.values["cfg"], json!(6.5));
        assert_eq!(i.no, ["people, cars"]);
        let i = one("x --sampler dpmpp_2m --hires yes --no a --no b").unwrap();
        assert_eq!(i.values["sampler"], json!("dpmpp_2m"));
        assert_eq!(i.values["hires"], json!(true));
        assert_eq!(i.no, ["a", "b"], "--no may repeat");
        // A phone's em dash works like two hyphens; flag names are not case-sensitive.
        let i = one("a boat —AR 3:2 —seed 9").unwrap();
        assert_eq!(
            (i.aspect.as_deref(), &i.values["seed"]),
            (Some("3:2"), &json!(9))
        );
    }

    #[test]
    fn flag_like_words_in_quotes_or_mid_word_are_text() {
        let s = split_flags(r#"a sign saying "--no entry" and well--known x-- --seed 3"#);
        assert_eq!(
            s.prompt,
            r#"a sign saying "--no entry" and well--known x--"#
        );
        assert_eq!(s.flags, [("seed".to_string(), "3".to_string())]);
        let s = split_flags("-- --5 --- --ar");
        assert_eq!(s.prompt, "-- --5 ---");
        assert_eq!(s.flags, [("ar".to_string(), String::new())]);
        assert!(one("-- --5 --- --ar")
            .unwrap_err()
            .to_string()
            .contains("--ar needs a value"));
    }

    #[test]
    fn refusals_name_the_flag_and_suggest_the_nearest() {
        let e = one("x --sed 5").unwrap_err().to_string();
        assert_eq!(e, "unknown flag --sed; did you mean --seed?");
        let e = one("x --stpes 5").unwrap_err().to_string();
        assert!(e.contains("did you mean --steps?"), "{e}");
        let e = one("x --sampelr euler").unwrap_err().to_string();
        assert!(e.contains("did you mean --sampler?"), "{e}");
        let e = one("x --zzzz 1").unwrap_err().to_string();
        assert!(e.starts_with("unknown flag --zzzz; flags:"), "{e}");
        assert_eq!(
            one("x --steps many").unwrap_err().to_string(),
            "--steps needs a whole number, not \"many\""
        );
        assert!(one("x --seed 1 --seed 2")
            .unwrap_err()
            .to_string()
            .contains("given twice"));
        assert!(one("x --image a.png")
            .unwrap_err()
            .to_string()
            .contains("attach it"));
        assert!(one("x --negative y")
            .unwrap_err()
            .to_string()
            .contains("--no TEXT"));
        assert!(one("x --repeat 9")
            .unwrap_err()
            .to_string()
            .contains("from 1 to 4"));
    }

    #[test]
    fn permutations_and_repeat_make_several_jobs_within_the_cap() {
        let jobs = parse_prompt("a {red, blue} car --repeat 2", &rules()).unwrap();
        let prompts: Vec<&str> = jobs.iter().map(|j| j.prompt.as_str()).collect();
        assert_eq!(
            prompts,
            ["a red car", "a red car", "a blue car", "a blue car"]
        );
        let jobs = parse_prompt("{a, b} {c, d}", &rules()).unwrap();
        assert_eq!(jobs.len(), 4);
        assert_eq!(jobs[1].prompt, "a d");
        // Flags can vary too; a group without a comma is text (some prompts use braces).
        let jobs = parse_prompt("x --ar {1:1, 16:9}", &rules()).unwrap();
        assert_eq!(jobs[1].aspect.as_deref(), Some("16:9"));
        assert_eq!(
            expand("{emphasis} and \"{a, b}\"").unwrap(),
            ["{emphasis} and \"{a, b}\""]
        );
        let e = parse_prompt("{a, b, c} {d, e, f}", &rules()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "that prompt asks for 9 jobs; one prompt may start at most 8"
        );
        let e = parse_prompt("{a, b, c} --repeat 3", &rules()).unwrap_err();
        assert!(e.to_string().contains("9 jobs"), "{e}");
    }

    proptest! {
        /// Text without flag or group characters is the prompt, whitespace squashed.
        #[test]
        fn plain_text_is_the_prompt(text in "[a-z ,.()!?:0-9'-]{0,80}") {
            prop_assume!(!text.contains("--"));
            let jobs = parse_prompt(&text, &rules()).unwrap();
            prop_assert_eq!(jobs.len(), 1);
            prop_assert_eq!(&jobs[0].prompt, &squash(&text));
            prop_assert!(jobs[0].values.is_empty());
        }

        /// Flags written after a prompt come back as written, in order, and the prompt loses
        /// nothing else.
        #[test]
        fn written_flags_come_back(
            words in proptest::collection::vec("[a-z]{1,8}", 1..6),
            flags in proptest::collection::vec(("[a-z][a-z0-9_]{0,8}", "[a-z0-9:.]{1,8}( [a-z]{1,5})?"), 0..5),
        ) {
            let prompt = words.join(" ");
            let mut text = prompt.clone();
            for (n, v) in &flags {
                text.push_str(&format!(" --{n} {v}"));
            }
            let s = split_flags(&text);
            prop_assert_eq!(s.prompt, prompt);
            let expected: Vec<(String, String)> = flags.clone();
            prop_assert_eq!(s.flags, expected);
        }

        /// Anything at all: no panic, and never more jobs than the cap.
        #[test]
        fn never_panics_and_keeps_the_cap(text in "\\PC{0,200}") {
            if let Ok(jobs) = parse_prompt(&text, &rules()) {
                prop_assert!((1..=MAX_JOBS_PER_PROMPT).contains(&jobs.len()));
            }
        }
    }
}
