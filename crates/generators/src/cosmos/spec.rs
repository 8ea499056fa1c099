//! What a Cosmos job is: its kind, its parameters with their rules, the controlnet spec JSON
//! the container reads, and the readable prompt/run records kept in the sidecar. Pure.

use indexmap::IndexMap;
use serde_json::{json, Map, Value};
use validation::{ParamKind, ParamRule, Refusal};

/// The workflow names a Cosmos host offers.
pub const TRANSFER_WORKFLOW: &str = "cosmos_transfer";
pub const UPSCALE_WORKFLOW: &str = "cosmos_upscale";

/// The control modalities a transfer job may weight.
pub const CONTROLS: [&str; 4] = ["vis", "edge", "depth", "seg"];
/// cosmos-transfer1's preprocessing strengths.
pub const STRENGTHS: [&str; 5] = ["very_low", "low", "medium", "high", "very_high"];
/// The negative prompt when none is given (cosmos-transfer1's own fallback wording).
pub const DEFAULT_NEGATIVE: &str = "low quality, blurry, distorted";
/// The input video's name inside the job's run folder.
pub const INPUT_VIDEO: &str = "input.mp4";
/// The parameter that carries the input video.
pub const VIDEO_PARAM: &str = "video";

/// What a Cosmos job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CosmosKind {
    Transfer,
    Upscale,
}

impl CosmosKind {
    pub fn from_workflow(name: &str) -> Option<CosmosKind> {
        match name {
            TRANSFER_WORKFLOW => Some(CosmosKind::Transfer),
            UPSCALE_WORKFLOW => Some(CosmosKind::Upscale),
            _ => None,
        }
    }

    /// The word used in container names and by the wrapper script.
    pub fn word(self) -> &'static str {
        match self {
            CosmosKind::Transfer => "transfer",
            CosmosKind::Upscale => "upscale",
        }
    }

    pub fn workflow(self) -> &'static str {
        match self {
            CosmosKind::Transfer => TRANSFER_WORKFLOW,
            CosmosKind::Upscale => UPSCALE_WORKFLOW,
        }
    }
}

fn rule(kind: ParamKind, min: f64, max: f64, default: Value) -> ParamRule {
    ParamRule {
        min: Some(min),
        max: Some(max),
        default: Some(default),
        ..ParamRule::new(kind)
    }
}

fn choice(default: &str) -> ParamRule {
    ParamRule {
        choices: STRENGTHS.iter().map(|s| json!(s)).collect(),
        default: Some(json!(default)),
        ..ParamRule::new(ParamKind::Choice)
    }
}

/// The parameters of a kind with their rules (the Cosmos "manifest").
pub fn rules(kind: CosmosKind) -> IndexMap<String, ParamRule> {
    let mut r = IndexMap::new();
    let video = ParamRule {
        required: true,
        ..ParamRule::new(ParamKind::Image)
    };
    match kind {
        CosmosKind::Transfer => {
            r.insert(
                "prompt".into(),
                ParamRule {
                    required: true,
                    max_length: Some(2000),
                    ..ParamRule::new(ParamKind::String)
                },
            );
            r.insert(
                "negative".into(),
                ParamRule {
                    max_length: Some(2000),
                    default: Some(json!(DEFAULT_NEGATIVE)),
                    ..ParamRule::new(ParamKind::String)
                },
            );
            r.insert(VIDEO_PARAM.into(), video);
            for c in CONTROLS {
                r.insert(c.into(), rule(ParamKind::Float, 0.0, 1.0, json!(0.25)));
            }
            r.insert("steps".into(), rule(ParamKind::Int, 1.0, 100.0, json!(35)));
            r.insert(
                "guidance".into(),
                rule(ParamKind::Float, 1.0, 20.0, json!(5.0)),
            );
            r.insert(
                "seed".into(),
                ParamRule {
                    min: Some(1.0),
                    max: Some(f64::from(u32::MAX)),
                    ..ParamRule::new(ParamKind::Seed)
                },
            );
            r.insert(
                "sigma_max".into(),
                rule(ParamKind::Float, 0.0, 80.0, json!(70.0)),
            );
            r.insert("fps".into(), rule(ParamKind::Int, 1.0, 60.0, json!(24)));
            r.insert("blur_strength".into(), choice("medium"));
            r.insert("canny_threshold".into(), choice("medium"));
        }
        CosmosKind::Upscale => {
            r.insert(VIDEO_PARAM.into(), video);
            r.insert(
                "control_weight".into(),
                rule(ParamKind::Float, 0.0, 1.0, json!(0.5)),
            );
            r.insert(
                "prompt".into(),
                ParamRule {
                    max_length: Some(2000),
                    ..ParamRule::new(ParamKind::String)
                },
            );
        }
    }
    r
}

/// Every value of a job with defaults filled and a seed drawn (1..=u32::MAX, as
/// cosmos-transfer1 takes it), after `validation::validate` checked what the user gave.
pub fn complete_values(
    kind: CosmosKind,
    given: &Map<String, Value>,
    rng: &mut impl rand::RngCore,
) -> Result<Map<String, Value>, Refusal> {
    let rules = rules(kind);
    let mut out = Map::new();
    for (name, rule) in &rules {
        let v = match given.get(name) {
            Some(v) => v.clone(),
            None => match (&rule.default, rule.kind) {
                (Some(d), _) => d.clone(),
                (None, ParamKind::Seed) => json!(1 + rng.next_u32() % (u32::MAX - 1)),
                (None, _) if rule.required => {
                    return Err(Refusal::Required {
                        field: name.clone(),
                    })
                }
                (None, _) => continue,
            },
        };
        out.insert(name.clone(), v);
    }
    if kind == CosmosKind::Transfer
        && CONTROLS
            .iter()
            .all(|c| out.get(*c).and_then(Value::as_f64).unwrap_or(0.0) <= 0.0)
    {
        return Err(Refusal::OutOfRange {
            field: "at least one of vis, edge, depth, seg".into(),
            min: 0.01,
            max: 1.0,
            got: 0.0,
        });
    }
    Ok(out)
}

/// The controlnet spec the container reads, with paths relative to the checkout. User text
/// lives only here, never on a command line.
pub fn spec_json(kind: CosmosKind, job: &str, values: &Map<String, Value>) -> Value {
    let input = format!("runs/{job}/inputs/videos/{INPUT_VIDEO}");
    let mut spec = Map::new();
    match kind {
        CosmosKind::Transfer => {
            let get = |k: &str| values.get(k).cloned().unwrap_or(Value::Null);
            spec.insert("prompt".into(), get("prompt"));
            spec.insert(
                "negative_prompt".into(),
                values
                    .get("negative")
                    .filter(|v| v.as_str().is_some_and(|s| !s.trim().is_empty()))
                    .cloned()
                    .unwrap_or_else(|| json!(DEFAULT_NEGATIVE)),
            );
            spec.insert("input_video_path".into(), json!(input));
            spec.insert("num_steps".into(), get("steps"));
            spec.insert("guidance".into(), get("guidance"));
            spec.insert("seed".into(), get("seed"));
            spec.insert("sigma_max".into(), get("sigma_max"));
            spec.insert("fps".into(), get("fps"));
            spec.insert("blur_strength".into(), get("blur_strength"));
            spec.insert("canny_threshold".into(), get("canny_threshold"));
            for c in CONTROLS {
                let w = values.get(c).and_then(Value::as_f64).unwrap_or(0.0);
                if w > 0.0 {
                    spec.insert(c.into(), json!({ "control_weight": w }));
                }
            }
        }
        CosmosKind::Upscale => {
            spec.insert("input_video_path".into(), json!(input));
            let w = values
                .get("control_weight")
                .and_then(Value::as_f64)
                .unwrap_or(0.5);
            spec.insert("upscale".into(), json!({ "control_weight": w }));
            if let Some(p) = values
                .get("prompt")
                .and_then(Value::as_str)
                .filter(|p| !p.trim().is_empty())
            {
                spec.insert("prompt".into(), json!(p));
            }
        }
    }
    Value::Object(spec)
}

/// A readable record of what was asked (the prompt spec) and how it was run (the run spec),
/// kept in the sidecar beside the output.
pub fn journal_record(kind: CosmosKind, job: &str, values: &Map<String, Value>) -> Value {
    let prompt = values.get("prompt").and_then(Value::as_str).unwrap_or("");
    let words: Vec<&str> = prompt.split_whitespace().take(5).collect();
    let name = if words.is_empty() {
        format!("{}-{job}", kind.word())
    } else {
        words.join("_").to_lowercase()
    };
    let weights: Map<String, Value> = CONTROLS
        .iter()
        .filter_map(|c| values.get(*c).map(|w| (c.to_string(), w.clone())))
        .collect();
    let params: Map<String, Value> = values
        .iter()
        .filter(|(k, _)| {
            !CONTROLS.contains(&k.as_str())
                && !["prompt", "negative", VIDEO_PARAM].contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    json!({
        "prompt_spec": {
            "id": format!("ps_{job}"),
            "name": name,
            "prompt": prompt,
            "negative_prompt": values.get("negative").cloned().unwrap_or(Value::Null),
            "input_video_path": format!("runs/{job}/inputs/videos/{INPUT_VIDEO}"),
        },
        "run_spec": {
            "id": format!("rs_{job}"),
            "prompt_id": format!("ps_{job}"),
            "name": format!("{name}-{}", kind.word()),
            "kind": kind.word(),
            "control_weights": weights,
            "parameters": params,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn given(pairs: &[(&str, Value)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn transfer_defaults_seed_and_spec() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let v = complete_values(
            CosmosKind::Transfer,
            &given(&[
                ("prompt", json!("a \"quoted\" $(rm -rf) prompt")),
                ("depth", json!(0.0)),
                ("video", json!("pending.mp4")),
            ]),
            &mut rng,
        )
        .unwrap();
        assert_eq!(v["steps"], 35);
        let seed = v["seed"].as_u64().unwrap();
        assert!((1..=u64::from(u32::MAX)).contains(&seed));
        let spec = spec_json(CosmosKind::Transfer, "abc", &v);
        assert_eq!(spec["prompt"], "a \"quoted\" $(rm -rf) prompt");
        assert_eq!(spec["input_video_path"], "runs/abc/inputs/videos/input.mp4");
        assert_eq!(spec["vis"]["control_weight"], 0.25);
        assert!(
            spec.get("depth").is_none(),
            "a zero weight omits the control"
        );
        assert_eq!(spec["negative_prompt"], DEFAULT_NEGATIVE);
        assert_eq!(spec["num_steps"], 35);
    }

    #[test]
    fn all_zero_weights_are_refused() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let zeros: Vec<(&str, Value)> = CONTROLS
            .iter()
            .map(|c| (*c, json!(0.0)))
            .chain([("prompt", json!("x")), ("video", json!("pending.mp4"))])
            .collect();
        let e = complete_values(CosmosKind::Transfer, &given(&zeros), &mut rng).unwrap_err();
        assert!(
            e.to_string()
                .contains("at least one of vis, edge, depth, seg"),
            "{e}"
        );
        let e = complete_values(CosmosKind::Transfer, &Map::new(), &mut rng).unwrap_err();
        assert!(e.to_string().contains("prompt is required"), "{e}");
    }

    #[test]
    fn upscale_spec_and_records() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let v = complete_values(
            CosmosKind::Upscale,
            &given(&[("video", json!("pending.mp4"))]),
            &mut rng,
        )
        .unwrap();
        let spec = spec_json(CosmosKind::Upscale, "j1", &v);
        assert_eq!(
            spec,
            json!({"input_video_path": "runs/j1/inputs/videos/input.mp4", "upscale": {"control_weight": 0.5}})
        );
        let t = complete_values(
            CosmosKind::Transfer,
            &given(&[
                ("prompt", json!("A Red Car at night")),
                ("video", json!("pending.mp4")),
            ]),
            &mut rng,
        )
        .unwrap();
        let r = journal_record(CosmosKind::Transfer, "j2", &t);
        assert_eq!(r["prompt_spec"]["name"], "a_red_car_at_night");
        assert_eq!(r["run_spec"]["control_weights"]["edge"], 0.25);
        assert_eq!(r["run_spec"]["parameters"]["steps"], 35);
    }
}
