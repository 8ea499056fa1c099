//! A whole request against a workflow's parameter rules. Well-known names get the global
//! limits on top of what the manifest says (a manifest may narrow them, never widen them).

use indexmap::IndexMap;
use serde_json::{Map, Number, Value};

use crate::bounds::*;
use crate::params::{ParamKind, ParamRule};
use crate::refusal::Refusal;
use crate::text::check_text;

/// Aspect-ratio presets: name, width part, height part.
pub const ASPECT_PRESETS: &[(&str, u32, u32)] = &[
    ("1:1", 1, 1),
    ("4:3", 4, 3),
    ("3:4", 3, 4),
    ("3:2", 3, 2),
    ("2:3", 2, 3),
    ("16:9", 16, 9),
    ("9:16", 9, 16),
    ("21:9", 21, 9),
];

/// What a user asked for, before checking.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawRequest {
    pub values: Map<String, Value>,
    /// An aspect preset (`"16:9"`) instead of width and height.
    pub aspect: Option<String>,
}

fn intersect(rule: &ParamRule, lo: f64, hi: f64) -> ParamRule {
    ParamRule {
        min: Some(rule.min.map_or(lo, |m| m.max(lo))),
        max: Some(rule.max.map_or(hi, |m| m.min(hi))),
        ..rule.clone()
    }
}

fn with_defaults(rule: &ParamRule, lo: f64, hi: f64) -> ParamRule {
    ParamRule {
        min: rule.min.or(Some(lo)),
        max: rule.max.or(Some(hi)),
        ..rule.clone()
    }
}

fn is_strength(name: &str) -> bool {
    name == "strength" || name.ends_with("_strength")
}

/// The rule a parameter is checked with: the manifest's, plus global limits for known names.
pub fn effective_rule(name: &str, rule: &ParamRule) -> ParamRule {
    match name {
        "prompt" => ParamRule {
            max_length: Some(
                rule.max_length
                    .map_or(MAX_PROMPT_CHARS, |m| m.min(MAX_PROMPT_CHARS)),
            ),
            ..rule.clone()
        },
        "negative" => ParamRule {
            max_length: Some(
                rule.max_length
                    .map_or(MAX_NEGATIVE_CHARS, |m| m.min(MAX_NEGATIVE_CHARS)),
            ),
            ..rule.clone()
        },
        "width" | "height" => ParamRule {
            step: Some(rule.step.unwrap_or(f64::from(DIMENSION_MULTIPLE))),
            ..with_defaults(
                rule,
                f64::from(DEFAULT_MIN_DIMENSION),
                f64::from(DEFAULT_MAX_DIMENSION),
            )
        },
        "steps" => with_defaults(rule, DEFAULT_MIN_STEPS, DEFAULT_MAX_STEPS),
        "cfg" => with_defaults(rule, DEFAULT_MIN_CFG, DEFAULT_MAX_CFG),
        "batch" => with_defaults(rule, 1.0, DEFAULT_MAX_BATCH),
        "denoise" => intersect(rule, MIN_DENOISE, MAX_DENOISE),
        n if is_strength(n) => intersect(rule, MIN_LORA_STRENGTH, MAX_LORA_STRENGTH),
        _ => rule.clone(),
    }
}

/// Values that passed [`validate`]: only this module makes one, so whoever takes a `Checked`
/// (a manifest filling defaults) trusts it without checking again.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checked(Map<String, Value>);

impl Checked {
    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }
}

impl std::ops::Deref for Checked {
    type Target = Map<String, Value>;
    fn deref(&self) -> &Map<String, Value> {
        &self.0
    }
}

/// Checks every value against its rule and resolves an aspect preset into width and height.
/// Values not given are left out; the job kind fills defaults afterwards.
pub fn validate(rules: &IndexMap<String, ParamRule>, raw: &RawRequest) -> Result<Checked, Refusal> {
    let known = || rules.keys().cloned().collect::<Vec<_>>().join(", ");
    let mut out = Map::new();
    for (name, value) in &raw.values {
        let rule = rules.get(name).ok_or_else(|| Refusal::UnknownOption {
            field: name.clone(),
            known: known(),
        })?;
        let rule = effective_rule(name, rule);
        let value = match (name.as_str(), rule.kind, value) {
            ("prompt" | "negative", ParamKind::String, Value::String(s)) => {
                let max = rule.max_length.unwrap_or(MAX_PROMPT_CHARS);
                Value::String(check_text(name, s, max, name == "negative")?)
            }
            _ => rule.check(name, value)?,
        };
        out.insert(name.clone(), value);
    }
    if let Some(preset) = &raw.aspect {
        if raw.values.contains_key("width") || raw.values.contains_key("height") {
            return Err(Refusal::AspectAndSize);
        }
        let (Some(w_rule), Some(h_rule)) = (rules.get("width"), rules.get("height")) else {
            return Err(Refusal::UnknownOption {
                field: "aspect".into(),
                known: known(),
            });
        };
        let (w, h) = preset_size(preset, w_rule, h_rule)?;
        out.insert("width".into(), Value::Number(Number::from(w)));
        out.insert("height".into(), Value::Number(Number::from(h)));
    }
    for (name, rule) in rules {
        if rule.required && rule.default.is_none() && !out.contains_key(name) {
            return Err(Refusal::Required {
                field: name.clone(),
            });
        }
    }
    Ok(Checked(out))
}

/// The widest (and tallest) aspect ratio accepted, as `MAX_RATIO`:1.
pub const MAX_RATIO: u32 = 4;

/// `W:H` (a preset or any ratio of whole numbers up to 100, no wider or taller than
/// [`MAX_RATIO`]:1).
pub fn parse_ratio(text: &str) -> Option<(u32, u32)> {
    let (w, h) = text.trim().split_once(':')?;
    let (w, h) = (w.trim().parse::<u32>().ok()?, h.trim().parse::<u32>().ok()?);
    let ok = (1..=100).contains(&w)
        && (1..=100).contains(&h)
        && w <= h * MAX_RATIO
        && h <= w * MAX_RATIO;
    ok.then_some((w, h))
}

/// A preset's size: the workflow's default pixel area in the preset's shape, rounded, and
/// kept inside the width and height rules.
pub fn preset_size(
    preset: &str,
    width: &ParamRule,
    height: &ParamRule,
) -> Result<(u32, u32), Refusal> {
    let (rw, rh) = parse_ratio(preset).ok_or_else(|| Refusal::UnknownPreset {
        got: preset.to_string(),
        presets: format!(
            "{}, or any W:H from 1:{MAX_RATIO} to {MAX_RATIO}:1",
            ASPECT_PRESETS
                .iter()
                .map(|p| p.0)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })?;
    let (rw, rh) = (&rw, &rh);
    let default_of = |r: &ParamRule| r.default.as_ref().and_then(Value::as_f64);
    let area = match (default_of(width), default_of(height)) {
        (Some(w), Some(h)) if w > 0.0 && h > 0.0 => w * h,
        _ => f64::from(DEFAULT_PRESET_AREA),
    };
    let ratio = f64::from(*rw) / f64::from(*rh);
    let fit = |x: f64, rule: &ParamRule| -> u32 {
        let rule = effective_rule("width", rule);
        let step = rule.step.unwrap_or(f64::from(DIMENSION_MULTIPLE)).max(1.0);
        let rounded = (x / f64::from(PRESET_ROUNDING)).round() * f64::from(PRESET_ROUNDING);
        let lo = rule.min.unwrap_or(0.0);
        let hi = rule.max.unwrap_or(f64::MAX);
        let clamped = rounded.clamp(lo, hi);
        // Back onto the step grid, staying inside the bounds.
        let on_grid = lo + ((clamped - lo) / step).floor() * step;
        on_grid as u32
    };
    Ok((
        fit((area * ratio).sqrt(), width),
        fit((area / ratio).sqrt(), height),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn rules() -> IndexMap<String, ParamRule> {
        let mut r = IndexMap::new();
        r.insert(
            "prompt".into(),
            ParamRule {
                required: true,
                ..ParamRule::new(ParamKind::String)
            },
        );
        r.insert("negative".into(), ParamRule::new(ParamKind::String));
        r.insert("seed".into(), ParamRule::new(ParamKind::Seed));
        r.insert(
            "steps".into(),
            ParamRule {
                min: Some(1.0),
                max: Some(50.0),
                ..ParamRule::new(ParamKind::Int)
            },
        );
        r.insert("cfg".into(), ParamRule::new(ParamKind::Float));
        for side in ["width", "height"] {
            r.insert(
                side.into(),
                ParamRule {
                    min: Some(64.0),
                    max: Some(1024.0),
                    default: Some(json!(512)),
                    ..ParamRule::new(ParamKind::Int)
                },
            );
        }
        r.insert("batch".into(), ParamRule::new(ParamKind::Int));
        r.insert(
            "denoise".into(),
            ParamRule {
                max: Some(5.0),
                ..ParamRule::new(ParamKind::Float)
            },
        );
        r.insert("lora_strength".into(), ParamRule::new(ParamKind::Float));
        r.insert(
            "frames".into(),
            ParamRule {
                choices: vec![json!(16), json!(24)],
                ..ParamRule::new(ParamKind::Int)
            },
        );
        r
    }

    fn req(v: Value) -> RawRequest {
        RawRequest {
            values: v.as_object().cloned().unwrap(),
            aspect: None,
        }
    }

    fn refuse(v: Value) -> String {
        validate(&rules(), &req(v)).unwrap_err().to_string()
    }

    #[test]
    fn good_request_is_normalised() {
        let out = validate(
            &rules(),
            &req(json!({"prompt": "  a cat ", "steps": 30, "cfg": 7, "seed": 5})),
        )
        .unwrap();
        assert_eq!(out["prompt"], json!("a cat"));
        assert_eq!(out["cfg"], json!(7.0));
        assert!(!out.contains_key("width"));
    }

    #[test]
    fn each_limit_refuses_with_its_own_message() {
        assert_eq!(
            refuse(json!({"prompt": "x", "steps": 80})),
            "steps must be between 1 and 50 for this workflow; you sent 80"
        );
        assert_eq!(
            refuse(json!({"steps": 8})),
            "prompt is required for this workflow"
        );
        assert_eq!(
            refuse(json!({"prompt": "x", "width": 500})),
            "width must be a multiple of 8; you sent 500 (try 496)"
        );
        assert_eq!(
            refuse(json!({"prompt": "x", "height": 2048})),
            "height must be between 64 and 1024 for this workflow; you sent 2048"
        );
        assert_eq!(
            refuse(json!({"prompt": "x", "cfg": 31})),
            "cfg must be between 0 and 30 for this workflow; you sent 31"
        );
        assert_eq!(
            refuse(json!({"prompt": "x", "batch": 5})),
            "batch must be between 1 and 4 for this workflow; you sent 5"
        );
        assert_eq!(
            refuse(json!({"prompt": "x", "denoise": 1.5})),
            "denoise must be between 0 and 1 for this workflow; you sent 1.5"
        );
        assert_eq!(
            refuse(json!({"prompt": "x", "lora_strength": 2.5})),
            "lora_strength must be between 0 and 2 for this workflow; you sent 2.5"
        );
        assert_eq!(
            refuse(json!({"prompt": "x", "frames": 20})),
            "frames must be one of 16, 24; you sent 20"
        );
        assert_eq!(
            refuse(json!({"prompt": "x", "steps": 0})),
            "steps must be between 1 and 50 for this workflow; you sent 0"
        );
        assert!(refuse(json!({"prompt": "x", "bogus": 1}))
            .starts_with("this workflow has no option bogus; it takes: prompt, negative"));
        assert_eq!(
            refuse(json!({"prompt": "\u{200B} "})),
            "prompt is empty; write something first"
        );
        let long = "x".repeat(MAX_NEGATIVE_CHARS + 1);
        assert_eq!(
            refuse(json!({"prompt": "x", "negative": long})),
            "negative is 2001 characters long; the limit is 2000"
        );
        // Both sides of each bound are accepted.
        for ok in [
            json!({"prompt": "x", "steps": 1}),
            json!({"prompt": "x", "steps": 50}),
            json!({"prompt": "x", "width": 64, "height": 1024}),
            json!({"prompt": "x", "denoise": 0.0, "lora_strength": 2.0, "batch": 4, "seed": u64::MAX}),
        ] {
            assert!(validate(&rules(), &req(ok.clone())).is_ok(), "{ok}");
        }
    }

    #[test]
    fn aspect_presets() {
        let mut r = req(json!({"prompt": "x"}));
        r.aspect = Some("16:9".into());
        let out = validate(&rules(), &r).unwrap();
        assert_eq!(
            (out["width"].as_u64(), out["height"].as_u64()),
            (Some(704), Some(384))
        );
        r.aspect = Some("1:1".into());
        let out = validate(&rules(), &r).unwrap();
        assert_eq!(
            (out["width"].as_u64(), out["height"].as_u64()),
            (Some(512), Some(512))
        );
        // Any ratio of whole numbers works, within 4:1 either way.
        r.aspect = Some("5:4".into());
        let out = validate(&rules(), &r).unwrap();
        assert_eq!(
            (out["width"].as_u64(), out["height"].as_u64()),
            (Some(576), Some(448))
        );
        for bad in ["5:1", "1:5", "wide", "0:1", "16:9:1"] {
            r.aspect = Some(bad.into());
            let e = validate(&rules(), &r).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!(
                    "unknown aspect ratio {bad}; choose one of 1:1, 4:3"
                )),
                "{e}"
            );
            assert!(e.ends_with("or any W:H from 1:4 to 4:1"), "{e}");
        }
        let mut both = req(json!({"prompt": "x", "width": 512}));
        both.aspect = Some("1:1".into());
        assert_eq!(validate(&rules(), &both), Err(Refusal::AspectAndSize));
    }

    proptest! {
        #[test]
        fn every_preset_fits_every_rule(min in 1u32..40, span in 1u32..40, step_pow in 0u32..4, default in 64u32..2048) {
            let step = 8u32 << step_pow;
            let lo = (min * 8) as f64;
            let hi = lo + (span * step) as f64;
            let rule = ParamRule { min: Some(lo), max: Some(hi), step: Some(step as f64), default: Some(json!(default)), ..ParamRule::new(ParamKind::Int) };
            for (name, _, _) in ASPECT_PRESETS {
                let (w, h) = preset_size(name, &rule, &rule).unwrap();
                prop_assert!(rule.check("width", &json!(w)).is_ok(), "{} -> {}", name, w);
                prop_assert!(rule.check("height", &json!(h)).is_ok(), "{} -> {}", name, h);
            }
        }

        #[test]
        fn validated_values_always_satisfy_their_rules(steps in -10i64..100, w in 0i64..3000, cfg in -5.0f64..40.0) {
            let r = req(json!({"prompt": "p", "steps": steps, "width": w, "cfg": cfg}));
            if let Ok(out) = validate(&rules(), &r) {
                prop_assert!((1..=50).contains(&out["steps"].as_i64().unwrap()));
                let w = out["width"].as_i64().unwrap();
                prop_assert!((64..=1024).contains(&w) && w % 8 == 0);
                let c = out["cfg"].as_f64().unwrap();
                prop_assert!((0.0..=30.0).contains(&c));
            }
        }
    }
}
