//! What admins keep beside the workflows to shape prompts: named styles (`styles.json`: a
//! positive template with `{prompt}`, negative additions, default parameters) and wildcards
//! (`wildcards/NAME.txt`, one choice per line, used as `__NAME__`). Both are read at start and
//! on `/admin reload`; applying them is pure, and a wildcard's pick depends only on the job's
//! seed, so the same seed repeats it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

/// The styles file, in the workflows folder.
pub const STYLES_FILE: &str = "styles.json";
/// The wildcards folder, in the workflows folder.
pub const WILDCARDS_DIR: &str = "wildcards";
/// Largest styles or wildcard file read (a wildcard file is a list of short phrases).
pub const MAX_LIBRARY_FILE_BYTES: u64 = 1024 * 1024;
/// Wildcard files read, at most.
pub const MAX_WILDCARD_FILES: usize = 500;
/// How deep a picked line may itself hold wildcards.
pub const MAX_WILDCARD_DEPTH: usize = 3;
/// Wildcards one prompt may use, counting nested ones.
pub const MAX_WILDCARD_USES: usize = 50;
/// Longest style or wildcard name.
pub const MAX_NAME_CHARS: usize = 40;
/// Where a style template puts the member's prompt.
pub const PROMPT_SLOT: &str = "{prompt}";

/// One named style.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Style {
    /// Shown by `/styles` and in autocomplete.
    #[serde(default)]
    pub description: Option<String>,
    /// The prompt sent: `{prompt}` is the member's text; without it the text comes first.
    #[serde(default = "default_positive")]
    pub positive: String,
    /// Added to the negative prompt.
    #[serde(default)]
    pub negative: Option<String>,
    /// Parameter values the style prefers (an option or a flag still wins).
    #[serde(default)]
    pub params: Map<String, Value>,
}

fn default_positive() -> String {
    PROMPT_SLOT.to_string()
}

impl Style {
    /// The member's `prompt` dressed in this style.
    pub fn positive_for(&self, prompt: &str) -> String {
        if self.positive.contains(PROMPT_SLOT) {
            self.positive.replace(PROMPT_SLOT, prompt)
        } else if self.positive.trim().is_empty() {
            prompt.to_string()
        } else {
            format!("{prompt}, {}", self.positive.trim())
        }
    }
}

/// Why part of the library could not be read; the rest still loads.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: larger than {MAX_LIBRARY_FILE_BYTES} bytes")]
    TooBig { path: PathBuf },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "{path}: {name:?} is not a valid name (letters, digits, - and _, at most {MAX_NAME_CHARS})"
    )]
    BadName { path: PathBuf, name: String },
    #[error("{path}: no lines to pick from")]
    Empty { path: PathBuf },
}

/// Why a prompt's wildcards cannot be filled in; fit to show the member.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WildcardError {
    #[error(
        "__{name}__ is not a wildcard on this server{}",
        hint(suggestion, known)
    )]
    Unknown {
        name: String,
        suggestion: Option<String>,
        known: String,
    },
    #[error("that prompt uses more than {MAX_WILDCARD_USES} wildcards")]
    TooMany,
}

fn hint(suggestion: &Option<String>, known: &str) -> String {
    match (suggestion, known.is_empty()) {
        (Some(s), _) => format!("; did you mean __{s}__?"),
        (None, true) => " (none are set up)".into(),
        (None, false) => format!("; there are {known}"),
    }
}

/// Styles and wildcards, as loaded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Library {
    styles: BTreeMap<String, Style>,
    wildcards: BTreeMap<String, Vec<String>>,
}

fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_CHARS).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.starts_with('_')
        && !name.ends_with('_')
        && !name.contains("__")
}

fn read_capped(path: &Path) -> Result<Option<String>, LibraryError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(LibraryError::Read {
                path: path.into(),
                source,
            })
        }
    };
    if meta.len() > MAX_LIBRARY_FILE_BYTES {
        return Err(LibraryError::TooBig { path: path.into() });
    }
    std::fs::read_to_string(path)
        .map(Some)
        .map_err(|source| LibraryError::Read {
            path: path.into(),
            source,
        })
}

impl Library {
    /// Reads `styles.json` and `wildcards/*.txt` in the workflows folder `dir`. Neither needs
    /// to exist; each file that cannot be used is reported and the rest loads.
    pub fn load(dir: &Path) -> (Library, Vec<LibraryError>) {
        let mut lib = Library::default();
        let mut errors = Vec::new();
        let path = dir.join(STYLES_FILE);
        match read_capped(&path) {
            Ok(None) => {}
            Ok(Some(text)) => match Library::parse_styles(&text) {
                Ok(styles) => {
                    for name in styles.keys().filter(|n| !valid_name(n)) {
                        errors.push(LibraryError::BadName {
                            path: path.clone(),
                            name: name.clone(),
                        });
                    }
                    lib.styles = styles
                        .into_iter()
                        .filter(|(n, _)| valid_name(n))
                        .map(|(n, s)| (n.to_lowercase(), s))
                        .collect();
                }
                Err(message) => errors.push(LibraryError::Parse { path, message }),
            },
            Err(e) => errors.push(e),
        }
        let wild = dir.join(WILDCARDS_DIR);
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&wild) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "txt"))
                .collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        files.truncate(MAX_WILDCARD_FILES);
        for path in files {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            if !valid_name(&name) {
                errors.push(LibraryError::BadName { path, name });
                continue;
            }
            match read_capped(&path) {
                Ok(Some(text)) => {
                    let lines = wildcard_lines(&text);
                    if lines.is_empty() {
                        errors.push(LibraryError::Empty { path });
                    } else {
                        lib.wildcards.insert(name.to_lowercase(), lines);
                    }
                }
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        (lib, errors)
    }

    /// Styles from the text of a styles file: an object of name → style.
    pub fn parse_styles(text: &str) -> Result<BTreeMap<String, Style>, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    /// A library with these parts (tests and tools).
    pub fn from_parts(
        styles: impl IntoIterator<Item = (String, Style)>,
        wildcards: impl IntoIterator<Item = (String, Vec<String>)>,
    ) -> Library {
        Library {
            styles: styles.into_iter().collect(),
            wildcards: wildcards.into_iter().collect(),
        }
    }

    /// The style called `name` (any case).
    pub fn style(&self, name: &str) -> Option<&Style> {
        self.styles.get(&name.trim().to_lowercase())
    }

    pub fn styles(&self) -> impl Iterator<Item = (&str, &Style)> {
        self.styles.iter().map(|(n, s)| (n.as_str(), s))
    }

    pub fn wildcard_names(&self) -> impl Iterator<Item = (&str, usize)> {
        self.wildcards.iter().map(|(n, l)| (n.as_str(), l.len()))
    }

    /// The refusal for a style nobody set up, naming the nearest one.
    pub fn unknown_style(&self, name: &str) -> String {
        if self.styles.is_empty() {
            return format!("--style {name}: no styles are set up on this server");
        }
        let names = self.styles.keys().map(String::as_str);
        match validation::inline::suggest(&name.to_lowercase(), names) {
            Some(s) => format!("unknown style {name:?}; did you mean {s:?}? (/styles lists them)"),
            None => format!(
                "unknown style {name:?}; styles: {}",
                self.styles.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// `text` with every `__name__` replaced by a line of `wildcards/name.txt`, picked by
    /// `seed` (and the place it is used, so two uses may differ). Picked lines may hold
    /// wildcards themselves, [`MAX_WILDCARD_DEPTH`] deep.
    pub fn fill_wildcards(&self, text: &str, seed: u64) -> Result<String, WildcardError> {
        let mut uses = 0;
        self.fill(text, seed, 0, &mut uses)
    }

    fn fill(
        &self,
        text: &str,
        seed: u64,
        depth: usize,
        uses: &mut usize,
    ) -> Result<String, WildcardError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some((before, name, after)) = next_wildcard(rest) {
            out.push_str(before);
            rest = after;
            let key = name.to_lowercase();
            let Some(lines) = self.wildcards.get(&key) else {
                let names = self.wildcards.keys().map(String::as_str);
                return Err(WildcardError::Unknown {
                    name: name.to_string(),
                    suggestion: validation::inline::suggest(&key, names),
                    known: self
                        .wildcards
                        .keys()
                        .map(|k| format!("__{k}__"))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            };
            *uses += 1;
            if *uses > MAX_WILDCARD_USES {
                return Err(WildcardError::TooMany);
            }
            let pick = &lines[pick_index(seed, &key, *uses, lines.len())];
            if depth + 1 < MAX_WILDCARD_DEPTH {
                out.push_str(&self.fill(pick, seed, depth + 1, uses)?);
            } else {
                out.push_str(pick);
            }
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// Whether `text` names a wildcard.
pub fn has_wildcards(text: &str) -> bool {
    next_wildcard(text).is_some()
}

/// The first `__name__` in `text`: what comes before it, the name, what comes after.
fn next_wildcard(text: &str) -> Option<(&str, &str, &str)> {
    let mut from = 0;
    while let Some(start) = text[from..].find("__").map(|i| i + from) {
        let body = &text[start + 2..];
        let end = body.find("__")?;
        let name = &body[..end];
        if valid_name(name) {
            return Some((&text[..start], name, &body[end + 2..]));
        }
        from = start + 1;
    }
    None
}

/// The lines of a wildcard file: trimmed, without blanks and `#` comments.
fn wildcard_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// A stable pick in `0..len` from the seed, the wildcard and which use of a wildcard this is.
/// FNV-1a and splitmix64: fixed arithmetic, so picks never change between builds.
fn pick_index(seed: u64, name: &str, use_no: usize, len: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = seed ^ h ^ (use_no as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z % len as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lib() -> Library {
        Library::from_parts(
            [(
                "cinematic".to_string(),
                Style {
                    description: None,
                    positive: "cinematic still of {prompt}, film grain".into(),
                    negative: Some("cartoon".into()),
                    params: Map::new(),
                },
            )],
            [
                (
                    "animal".to_string(),
                    vec![
                        "cat".into(),
                        "fox".into(),
                        "owl".into(),
                        "__colour__ bee".into(),
                    ],
                ),
                ("colour".to_string(), vec!["red".into(), "blue".into()]),
            ],
        )
    }

    #[test]
    fn a_style_wraps_the_prompt_or_follows_it() {
        let l = lib();
        let s = l.style("Cinematic").unwrap();
        assert_eq!(
            s.positive_for("a castle"),
            "cinematic still of a castle, film grain"
        );
        let plain = Style {
            positive: "oil painting".into(),
            ..s.clone()
        };
        assert_eq!(plain.positive_for("a castle"), "a castle, oil painting");
        assert!(l
            .unknown_style("cinematc")
            .contains("did you mean \"cinematic\""));
        assert!(Library::default()
            .unknown_style("x")
            .contains("no styles are set up"));
    }

    #[test]
    fn wildcards_are_picked_by_seed_and_repeat_with_it() {
        let l = lib();
        let a = l
            .fill_wildcards("a __animal__ and a __animal__", 7)
            .unwrap();
        assert_eq!(
            a,
            l.fill_wildcards("a __animal__ and a __animal__", 7)
                .unwrap()
        );
        assert!(!a.contains("__"), "nested wildcards are filled too: {a}");
        let picks: std::collections::BTreeSet<String> = (0..64)
            .map(|seed| l.fill_wildcards("__animal__", seed).unwrap())
            .collect();
        assert!(picks.len() >= 4, "seeds spread over the lines: {picks:?}");
        assert_eq!(
            l.fill_wildcards("snake_case __ words", 1).unwrap(),
            "snake_case __ words"
        );
        let err = l.fill_wildcards("a __animl__", 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "__animl__ is not a wildcard on this server; did you mean __animal__?"
        );
    }

    #[test]
    fn self_reference_stops_at_the_depth_limit() {
        let l = Library::from_parts([], [("loop".to_string(), vec!["x __loop__".into()])]);
        let out = l.fill_wildcards("__loop__", 3).unwrap();
        assert_eq!(out.matches('x').count(), MAX_WILDCARD_DEPTH);
    }

    #[test]
    fn loads_styles_and_wildcards_and_reports_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(STYLES_FILE),
            r#"{"Anime": {"positive": "anime art of {prompt}", "params": {"steps": 12}}, "bad name!": {}}"#,
        )
        .unwrap();
        let wild = dir.path().join(WILDCARDS_DIR);
        std::fs::create_dir(&wild).unwrap();
        std::fs::write(wild.join("animal.txt"), "# animals\ncat\n\n fox \n").unwrap();
        std::fs::write(wild.join("empty.txt"), "# nothing\n").unwrap();
        let (l, errors) = Library::load(dir.path());
        assert_eq!(l.style("anime").unwrap().params["steps"], 12);
        assert_eq!(l.wildcard_names().collect::<Vec<_>>(), [("animal", 2)]);
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 2, "{text:?}");
        assert!(text.iter().any(|t| t.contains("\"bad name!\"")));
        assert!(text.iter().any(|t| t.contains("no lines to pick from")));
        let (none, errors) = Library::load(&dir.path().join("missing"));
        assert!(none == Library::default() && errors.is_empty());
    }
}
