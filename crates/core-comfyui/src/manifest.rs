//! A manifest names a workflow's parameters and says where each one goes: (node id, input name),
//! with type, default and bounds. Applying values patches a copy of the workflow structurally.

use std::fmt;

use indexmap::IndexMap;
use rand::Rng;
use serde::Deserialize;
use serde_json::{Map, Number, Value};

use crate::object_info::{InputKind, ObjectInfo};
use crate::workflow::{as_link, Workflow, WorkflowError};

/// Discord option names are 1–32 characters; parameters become options.
pub const MAX_PARAM_NAME_CHARS: usize = 32;
/// Combo options shown in an error before "…".
const OPTIONS_SHOWN: usize = 5;

/// What a workflow is for; the bot picks commands and buttons from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkflowKind {
    Txt2img,
    Img2img,
    Edit,
    Upscale,
    /// Upscale, then re-diffuse at low denoise (a hires fix): Upscale (Creative).
    #[serde(rename = "upscale_creative")]
    UpscaleCreative,
    /// Pad the image and draw the border: Zoom Out, Make Square, Pan.
    Outpaint,
    Video,
    /// Image in, text out (a captioner feeding `PreviewAny`): prompts from a picture.
    Describe,
    /// Several images in, one out (`/blend`).
    Blend,
    #[default]
    Custom,
}

/// The denoise of Vary (Subtle) and Vary (Strong) when this workflow runs a variation.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaryStrengths {
    #[serde(default = "VaryStrengths::default_subtle")]
    pub subtle: f64,
    #[serde(default = "VaryStrengths::default_strong")]
    pub strong: f64,
}

impl VaryStrengths {
    /// Close to the source: the composition stays, details move.
    pub const SUBTLE: f64 = 0.35;
    /// Same subject and palette, a visibly different picture.
    pub const STRONG: f64 = 0.7;

    fn default_subtle() -> f64 {
        Self::SUBTLE
    }

    fn default_strong() -> f64 {
        Self::STRONG
    }
}

impl Default for VaryStrengths {
    fn default() -> Self {
        VaryStrengths {
            subtle: Self::SUBTLE,
            strong: Self::STRONG,
        }
    }
}

pub use validation::{ParamKind, ParamRule};

/// Where a value goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub node: String,
    pub input: String,
}

/// One named parameter: where it goes, and what it accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    pub targets: Vec<Target>,
    pub rule: ParamRule,
    pub description: Option<String>,
}

/// A loaded, structurally checked manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub description: Option<String>,
    pub kind: WorkflowKind,
    pub nsfw: bool,
    /// The workflow file, relative to the manifest, when not `<name>.json`.
    pub workflow_file: Option<String>,
    pub params: IndexMap<String, ParamSpec>,
    /// Denoise strengths of variations run with this workflow (`"vary": {"subtle", "strong"}`).
    pub vary: VaryStrengths,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NodeIdRepr {
    Text(String),
    Number(u64),
}

impl NodeIdRepr {
    fn into_string(self) -> String {
        match self {
            NodeIdRepr::Text(s) => s,
            NodeIdRepr::Number(n) => n.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetFile {
    node: NodeIdRepr,
    input: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ParamFile {
    #[serde(rename = "type")]
    kind: String,
    node: Option<NodeIdRepr>,
    input: Option<String>,
    targets: Option<Vec<TargetFile>>,
    default: Option<Value>,
    min: Option<f64>,
    max: Option<f64>,
    step: Option<f64>,
    #[serde(default)]
    choices: Vec<Value>,
    max_length: Option<usize>,
    #[serde(default)]
    required: bool,
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    workflow: Option<String>,
    description: Option<String>,
    #[serde(default)]
    kind: WorkflowKind,
    #[serde(default)]
    nsfw: bool,
    #[serde(default)]
    params: IndexMap<String, ParamFile>,
    #[serde(default)]
    vary: VaryStrengths,
}

/// A manifest that cannot be used with its workflow. Checked without a server.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ManifestError {
    #[error("the manifest is not valid: {0}")]
    Json(String),
    #[error("parameter {param}: {reason}")]
    Param { param: String, reason: String },
}

/// Why values could not be applied.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PatchError {
    /// A value the user can fix; the message is meant for them.
    #[error(transparent)]
    Refused(#[from] validation::Refusal),
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
}

/// A patched workflow plus every parameter's final value (defaults and the random seed
/// included), so a result can say exactly how it was made.
#[derive(Debug, Clone, PartialEq)]
pub struct Patched {
    pub workflow: Workflow,
    pub values: IndexMap<String, Value>,
}

/// Something that makes a manifest unusable on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckProblem {
    pub node_id: Option<String>,
    pub param: Option<String>,
    pub message: String,
    /// The workflow cannot run at all (a node class or input is missing, a type is wrong).
    /// Other problems (a default model file or bound the server lacks) only matter to jobs
    /// that use that value, and ComfyUI names them when it refuses such a job.
    pub blocking: bool,
}

impl fmt::Display for CheckProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.param {
            write!(f, "parameter {p}: ")?;
        }
        f.write_str(&self.message)
    }
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e16 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{s}'"),
        other => other.to_string(),
    }
}

fn list_preview(options: &[Value]) -> String {
    let mut parts: Vec<String> = options.iter().take(OPTIONS_SHOWN).map(show).collect();
    if options.len() > OPTIONS_SHOWN {
        parts.push(format!("… ({} in all)", options.len()));
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

fn is_valid_param_name(name: &str) -> bool {
    let n = name.chars().count();
    (1..=MAX_PARAM_NAME_CHARS).contains(&n)
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A random seed inside the rule's bounds.
pub fn random_seed(rule: &ParamRule, rng: &mut impl Rng) -> u64 {
    let lo = rule.min.unwrap_or(0.0).max(0.0) as u64;
    // f64 cannot hold u64::MAX exactly; anything at or past 2^64 means "no upper bound".
    let hi = match rule.max {
        Some(m) if m < 18_446_744_073_709_551_615.0 => m as u64,
        _ => u64::MAX,
    };
    rng.gen_range(lo..=hi.max(lo))
}

use validation::params::same_value as values_equal;

impl Manifest {
    /// Parses a manifest and checks it against its workflow: every target exists and is a
    /// widget, bounds are ordered, defaults fit.
    pub fn from_json(text: &str, workflow: &Workflow) -> Result<Manifest, ManifestError> {
        let file: ManifestFile =
            serde_json::from_str(text).map_err(|e| ManifestError::Json(e.to_string()))?;
        for (name, strength) in [("subtle", file.vary.subtle), ("strong", file.vary.strong)] {
            if !(strength > 0.0 && strength <= 1.0) {
                return Err(ManifestError::Json(format!(
                    "vary.{name} is a denoise strength: more than 0 and at most 1, not {strength}"
                )));
            }
        }
        let mut params = IndexMap::new();
        let mut seen_targets: Vec<(Target, String)> = Vec::new();
        for (name, p) in file.params {
            let bad = |reason: String| ManifestError::Param {
                param: name.clone(),
                reason,
            };
            if !is_valid_param_name(&name) {
                return Err(bad(format!(
                    "names must be 1–{MAX_PARAM_NAME_CHARS} characters of a-z, 0-9 and _ (they become Discord options)"
                )));
            }
            let targets: Vec<Target> = match (p.node, p.input, p.targets) {
                (Some(node), Some(input), None) => vec![Target {
                    node: node.into_string(),
                    input,
                }],
                (None, None, Some(list)) if !list.is_empty() => list
                    .into_iter()
                    .map(|t| Target {
                        node: t.node.into_string(),
                        input: t.input,
                    })
                    .collect(),
                _ => {
                    return Err(bad(
                        "give either \"node\" and \"input\", or a non-empty \"targets\" list of {node, input}".into(),
                    ))
                }
            };
            for t in &targets {
                if !workflow.contains(&t.node) {
                    return Err(bad(format!(
                        "node {} does not exist in the workflow",
                        t.node
                    )));
                }
                if let Some((src, _)) = workflow.input(&t.node, &t.input).and_then(as_link) {
                    return Err(bad(format!(
                        "node {} input {} is connected to node {src}; point the parameter at a widget input",
                        t.node, t.input
                    )));
                }
                if let Some((_, other)) = seen_targets.iter().find(|(s, _)| s == t) {
                    return Err(bad(format!(
                        "node {} input {} is already set by parameter {other}",
                        t.node, t.input
                    )));
                }
                seen_targets.push((t.clone(), name.clone()));
            }
            if let (Some(lo), Some(hi)) = (p.min, p.max) {
                if lo > hi {
                    return Err(bad(format!(
                        "min {} is above max {}",
                        fmt_num(lo),
                        fmt_num(hi)
                    )));
                }
            }
            let kind = ParamKind::parse(&p.kind).ok_or_else(|| {
                bad(format!(
                    "unknown type {:?}; use string, int, float, bool, seed, image or choice",
                    p.kind
                ))
            })?;
            let mut spec = ParamSpec {
                targets,
                rule: ParamRule {
                    kind,
                    default: p.default,
                    min: p.min,
                    max: p.max,
                    step: p.step,
                    choices: p.choices,
                    max_length: p.max_length,
                    required: p.required,
                },
                description: p.description,
            };
            // Stored as the rule normalises it (a float's `1` becomes `1.0`), so a job built
            // from its default and one built from its recorded values are the same graph.
            if let Some(d) = &spec.rule.default {
                let normal = spec
                    .rule
                    .check(&name, d)
                    .map_err(|e| bad(format!("the default does not fit: {e}")))?;
                spec.rule.default = Some(normal);
            }
            params.insert(name, spec);
        }
        Ok(Manifest {
            description: file.description,
            kind: file.kind,
            nsfw: file.nsfw,
            workflow_file: file.workflow,
            params,
            vary: file.vary,
        })
    }

    /// The parameters' rules by name, for [`validation::validate`].
    pub fn rules(&self) -> IndexMap<String, validation::ParamRule> {
        self.params
            .iter()
            .map(|(n, p)| (n.clone(), p.rule.clone()))
            .collect()
    }

    /// Every parameter's final value: the checked ones as given, the rest their default, a
    /// random seed, or what the workflow has (recorded, so the job can be made again).
    pub fn complete(
        &self,
        workflow: &Workflow,
        given: validation::Checked,
        rng: &mut impl Rng,
    ) -> Result<IndexMap<String, Value>, validation::Refusal> {
        let mut given = given.into_map();
        let mut out = IndexMap::new();
        for (name, spec) in &self.params {
            let rule = &spec.rule;
            let value = match (given.remove(name), &rule.default) {
                (Some(v), _) => v,
                (None, Some(d)) => d.clone(),
                (None, None) if rule.kind == ParamKind::Seed => {
                    Value::Number(Number::from(random_seed(rule, rng)))
                }
                (None, None) if rule.required => {
                    return Err(validation::Refusal::Required {
                        field: name.clone(),
                    })
                }
                (None, None) => {
                    let first = &spec.targets[0];
                    match workflow.input(&first.node, &first.input) {
                        Some(v) => v.clone(),
                        None => continue,
                    }
                }
            };
            out.insert(name.clone(), value);
        }
        Ok(out)
    }

    /// A copy of the workflow with each named value set at its targets. The values are
    /// trusted (they were checked and completed when the job was made); names the manifest
    /// does not know are ignored.
    pub fn patch(
        &self,
        workflow: &Workflow,
        values: &Map<String, Value>,
    ) -> Result<Workflow, WorkflowError> {
        let mut patched = workflow.clone();
        for (name, spec) in &self.params {
            let Some(value) = values.get(name) else {
                continue;
            };
            for t in &spec.targets {
                patched.set_input(&t.node, &t.input, value.clone())?;
            }
        }
        Ok(patched)
    }

    /// Checks, completes and patches in one go: [`validation::validate`] against the
    /// manifest's rules, then [`Manifest::complete`] and [`Manifest::patch`].
    pub fn apply(
        &self,
        workflow: &Workflow,
        values: &Map<String, Value>,
        rng: &mut impl Rng,
    ) -> Result<Patched, PatchError> {
        let raw = validation::RawRequest {
            values: values.clone(),
            aspect: None,
        };
        let checked = validation::validate(&self.rules(), &raw)?;
        let values = self.complete(workflow, checked, rng)?;
        let map: Map<String, Value> = values.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        Ok(Patched {
            workflow: self.patch(workflow, &map)?,
            values,
        })
    }

    /// Checks the manifest and its workflow against one server's `/object_info`: node classes
    /// exist, inputs exist and take a value of the parameter's type, bounds fit the node's,
    /// and every listed file (checkpoints, LoRAs, upscale models) is on the server.
    pub fn check(&self, workflow: &Workflow, info: &ObjectInfo) -> Vec<CheckProblem> {
        let mut problems = Vec::new();
        let mut has_output = false;
        for node_id in workflow.node_ids() {
            let class = workflow.class_type(node_id).unwrap_or_default();
            match info.get(class) {
                None => problems.push(CheckProblem {
                    node_id: Some(node_id.to_string()),
                    param: None,
                    message: format!(
                        "node {node_id}: class {class} is not installed on this server (a custom node pack may be missing)"
                    ),
                    blocking: true,
                }),
                Some(n) => has_output |= n.output_node,
            }
        }
        if !has_output && problems.is_empty() {
            problems.push(CheckProblem {
                node_id: None,
                param: None,
                message: "the workflow has no output node (SaveImage, PreviewImage, …), so ComfyUI would run nothing".into(),
                blocking: true,
            });
        }
        // Literal values the manifest does not override must fit the server as they are.
        let overridden = |node: &str, input: &str| {
            self.params.values().any(|p| {
                p.targets.iter().any(|t| t.node == node && t.input == input)
                    && (p.rule.default.is_some()
                        || p.rule.kind == ParamKind::Seed
                        || p.rule.required)
            })
        };
        for (node_id, input, value) in workflow.literals() {
            if overridden(node_id, input) {
                continue;
            }
            let class = workflow.class_type(node_id).unwrap_or_default();
            let Some(kind) = info.get(class).and_then(|n| n.input(input)) else {
                continue;
            };
            if let Some(msg) = literal_problem(&kind, value) {
                problems.push(CheckProblem {
                    node_id: Some(node_id.to_string()),
                    param: None,
                    message: format!("node {node_id} ({class}) input {input}: {msg}"),
                    blocking: false,
                });
            }
        }
        for (name, spec) in &self.params {
            for t in &spec.targets {
                let class = workflow.class_type(&t.node).unwrap_or_default();
                let Some(node) = info.get(class) else {
                    continue; // reported above
                };
                let problem = |(message, blocking): (String, bool)| CheckProblem {
                    node_id: Some(t.node.clone()),
                    param: Some(name.clone()),
                    message: format!("node {} ({class}) input {}: {message}", t.node, t.input),
                    blocking,
                };
                let Some(kind) = node.input(&t.input) else {
                    let known: Vec<&str> = node.input_names().collect();
                    problems.push(problem((
                        format!("no such input; {class} has {}", known.join(", ")),
                        true,
                    )));
                    continue;
                };
                problems.extend(param_problems(&spec.rule, &kind).into_iter().map(problem));
            }
        }
        problems
    }
}

fn num_f64(n: &Option<Number>) -> Option<f64> {
    n.as_ref().and_then(Number::as_f64)
}

/// A literal value that the server would refuse.
fn literal_problem(kind: &InputKind, value: &Value) -> Option<String> {
    match kind {
        InputKind::Combo { options, .. } if !options.is_empty() || value.is_string() => {
            if options.iter().any(|o| values_equal(o, value)) {
                None
            } else {
                Some(format!(
                    "{} is not available on this server (it has {})",
                    show(value),
                    list_preview(options)
                ))
            }
        }
        InputKind::Int { min, max, .. } | InputKind::Float { min, max, .. } => {
            let x = value.as_f64()?;
            let (lo, hi) = (num_f64(min), num_f64(max));
            if lo.is_some_and(|m| x < m) || hi.is_some_and(|m| x > m) {
                Some(format!(
                    "{} is outside the server's range {}..{}",
                    show(value),
                    lo.map(fmt_num).unwrap_or_default(),
                    hi.map(fmt_num).unwrap_or_default()
                ))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Whether a parameter's type and bounds fit the input it targets.
fn param_problems(spec: &ParamRule, kind: &InputKind) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = Vec::new();
    let type_ok = match (spec.kind, kind) {
        (_, InputKind::Link(t)) => {
            out.push((format!("takes a {t} link, not a value"), true));
            return out;
        }
        (ParamKind::Int | ParamKind::Seed, InputKind::Int { .. }) => true,
        (ParamKind::Int | ParamKind::Float, InputKind::Float { .. }) => true,
        (ParamKind::String, InputKind::String { .. }) => true,
        (ParamKind::Bool, InputKind::Boolean) => true,
        (ParamKind::Image, InputKind::Combo { .. } | InputKind::String { .. }) => true,
        (ParamKind::Choice, InputKind::Combo { .. } | InputKind::String { .. }) => true,
        (ParamKind::Choice, InputKind::Int { .. } | InputKind::Float { .. }) => true,
        _ => false,
    };
    if !type_ok {
        out.push((
            format!(
                "a {} parameter cannot feed a {} input",
                spec.kind.name(),
                kind.type_name()
            ),
            true,
        ));
        return out;
    }
    if let InputKind::Int { min, max, .. } | InputKind::Float { min, max, .. } = kind {
        let (lo, hi) = (num_f64(min), num_f64(max));
        if let (Some(node_lo), pmin) = (lo, spec.min) {
            if pmin.is_none_or(|p| p < node_lo) && spec.kind != ParamKind::Seed {
                out.push((
                    format!(
                        "the manifest allows values below the node's minimum {} (set \"min\")",
                        fmt_num(node_lo)
                    ),
                    false,
                ));
            }
        }
        if let (Some(node_hi), pmax) = (hi, spec.max) {
            if pmax.is_none_or(|p| p > node_hi) && spec.kind != ParamKind::Seed {
                out.push((
                    format!(
                        "the manifest allows values above the node's maximum {} (set \"max\")",
                        fmt_num(node_hi)
                    ),
                    false,
                ));
            }
        }
        let fits = |v: &Value| {
            v.as_f64()
                .is_some_and(|x| lo.is_none_or(|m| x >= m) && hi.is_none_or(|m| x <= m))
        };
        for c in spec.choices.iter().chain(&spec.default) {
            if !fits(c) {
                out.push((format!("{} is outside the node's range", show(c)), false));
            }
        }
    }
    if let InputKind::Combo { options, .. } = kind {
        // Image names are uploads made at run time; everything else must exist now.
        if spec.kind != ParamKind::Image {
            for c in spec.choices.iter().chain(&spec.default) {
                if !options.iter().any(|o| values_equal(o, c)) {
                    out.push((
                        format!(
                            "{} is not available on this server (it has {})",
                            show(c),
                            list_preview(options)
                        ),
                        false,
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use serde_json::json;

    fn workflow() -> Workflow {
        Workflow::from_value(json!({
            "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20, "cfg": 7.0, "model": ["4", 0], "sampler_name": "euler"}},
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "old", "clip": ["4", 1]}},
            "9": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x"}}
        }))
        .unwrap()
    }

    fn manifest() -> Manifest {
        Manifest::from_json(
            r#"{"kind": "txt2img", "params": {
                "prompt": {"type": "string", "node": 6, "input": "text", "required": true, "max_length": 10},
                "seed": {"type": "seed", "node": "3", "input": "seed"},
                "steps": {"type": "int", "node": "3", "input": "steps", "default": 20, "min": 1, "max": 50},
                "cfg": {"type": "float", "node": "3", "input": "cfg", "min": 1, "max": 20},
                "sampler": {"type": "choice", "node": "3", "input": "sampler_name", "choices": ["euler", "ddim"]}
            }}"#,
            &workflow(),
        )
        .unwrap()
    }

    fn values(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn applies_values_defaults_and_random_seed() {
        let m = manifest();
        assert_eq!(m.kind, WorkflowKind::Txt2img);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let p = m
            .apply(
                &workflow(),
                &values(json!({"prompt": "a cat", "steps": 30})),
                &mut rng,
            )
            .unwrap();
        assert_eq!(p.workflow.input("6", "text"), Some(&json!("a cat")));
        assert_eq!(p.workflow.input("3", "steps"), Some(&json!(30)));
        let seed = p.values["seed"].as_u64().unwrap();
        assert_eq!(p.workflow.input("3", "seed"), Some(&json!(seed)));
        // cfg has no default: the workflow's value is kept and recorded.
        assert_eq!(p.values["cfg"], json!(7.0));
        let p2 = m
            .apply(
                &workflow(),
                &values(json!({"prompt": "a cat", "seed": 5})),
                &mut rng,
            )
            .unwrap();
        assert_eq!(p2.workflow.input("3", "seed"), Some(&json!(5)));
        assert_eq!(p2.values["steps"], json!(20));
    }

    /// Found by the `manifest` fuzz target: a float default written as `1` went into the
    /// graph as an integer, while the same value recorded and applied again went in as `1.0`.
    #[test]
    fn defaults_are_normalised_so_recorded_values_rebuild_the_same_graph() {
        let m = Manifest::from_json(
            r#"{"params": {"cfg": {"type": "float", "node": "3", "input": "cfg", "default": 1}}}"#,
            &workflow(),
        )
        .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let first = m.apply(&workflow(), &Map::new(), &mut rng).unwrap();
        assert_eq!(first.workflow.input("3", "cfg"), Some(&json!(1.0)));
        let recorded: Map<String, Value> = first.values.clone().into_iter().collect();
        let again = m.apply(&workflow(), &recorded, &mut rng).unwrap();
        assert_eq!(again.workflow, first.workflow);
    }

    #[test]
    fn refuses_bad_values_with_specific_messages() {
        let m = manifest();
        let w = workflow();
        let mut rng = rand::thread_rng();
        let mut err = |v: Value| m.apply(&w, &values(v), &mut rng).unwrap_err().to_string();
        assert_eq!(
            err(json!({"prompt": "x", "steps": 80})),
            "steps must be between 1 and 50 for this workflow; you sent 80"
        );
        assert_eq!(
            err(json!({"steps": 8})),
            "prompt is required for this workflow"
        );
        assert_eq!(
            err(json!({"prompt": "x", "steps": "ten"})),
            "steps must be a whole number; you sent \"ten\""
        );
        assert_eq!(
            err(json!({"prompt": "x", "sampler": "dpm"})),
            "sampler must be one of \"euler\", \"ddim\"; you sent \"dpm\""
        );
        assert_eq!(
            err(json!({"prompt": "ééééééééééé"})),
            "prompt is 11 characters long; the limit is 10"
        );
        assert!(err(json!({"prompt": "x", "bogus": 1}))
            .starts_with("this workflow has no option bogus"));
        assert_eq!(
            err(json!({"prompt": "x", "seed": -1})),
            "seed must be a whole number from 0; you sent -1"
        );
    }

    #[test]
    fn one_parameter_sets_every_target() {
        let w = Workflow::from_value(json!({
            "10": {"class_type": "LoraLoader", "inputs": {"strength_model": 1.0, "strength_clip": 1.0}},
            "9": {"class_type": "SaveImage", "inputs": {}}
        }))
        .unwrap();
        let m = Manifest::from_json(
            r#"{"params": {"lora_strength": {"type": "float", "min": 0, "max": 2,
                "targets": [{"node": "10", "input": "strength_model"}, {"node": 10, "input": "strength_clip"}]}}}"#,
            &w,
        )
        .unwrap();
        let p = m
            .apply(
                &w,
                &values(json!({"lora_strength": 0.8})),
                &mut rand::thread_rng(),
            )
            .unwrap();
        assert_eq!(p.workflow.input("10", "strength_model"), Some(&json!(0.8)));
        assert_eq!(p.workflow.input("10", "strength_clip"), Some(&json!(0.8)));
    }

    #[test]
    fn manifest_errors_name_the_parameter() {
        let w = workflow();
        let e = |s: &str| Manifest::from_json(s, &w).unwrap_err().to_string();
        assert!(
            e(r#"{"params": {"x": {"type": "int", "node": "77", "input": "a"}}}"#)
                .contains("node 77 does not exist")
        );
        assert!(
            e(r#"{"params": {"x": {"type": "int", "node": "3", "input": "model"}}}"#)
                .contains("connected to node 4")
        );
        assert!(
            e(r#"{"params": {"Bad Name": {"type": "int", "node": "3", "input": "steps"}}}"#)
                .contains("a-z")
        );
        assert!(e(r#"{"params": {"x": {"type": "int", "node": "3", "input": "steps", "default": 99, "max": 50}}}"#)
            .contains("default does not fit"));
        assert!(e(r#"{"params": {"x": {"type": "int"}}}"#).contains("targets"));
        assert!(
            e(r#"{"params": {"x": {"type": "vector", "node": "3", "input": "steps"}}}"#)
                .contains("unknown type \"vector\"")
        );
        assert!(e(r#"{"params": {"a": {"type": "int", "node": "3", "input": "steps"}, "b": {"type": "int", "node": "3", "input": "steps"}}}"#)
            .contains("already set by parameter a"));
    }

    #[test]
    fn check_against_object_info() {
        let info: ObjectInfo = serde_json::from_value(json!({
            "KSampler": {"input": {"required": {
                "model": ["MODEL"], "seed": ["INT", {"min": 0, "max": 18446744073709551615u64}],
                "steps": ["INT", {"default": 20, "min": 1, "max": 10000}],
                "cfg": ["FLOAT", {"min": 0.0, "max": 100.0}],
                "sampler_name": [["euler", "dpmpp_2m"], {}]}}, "output_node": false},
            "CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": [["b.safetensors"], {}]}}},
            "SaveImage": {"input": {"required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {}]}}, "output_node": true}
        }))
        .unwrap();
        let problems: Vec<String> = manifest()
            .check(&workflow(), &info)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            problems,
            vec![
                "node 6: class CLIPTextEncode is not installed on this server (a custom node pack may be missing)",
                "node 4 (CheckpointLoaderSimple) input ckpt_name: 'a.safetensors' is not available on this server (it has 'b.safetensors')",
                "parameter sampler: node 3 (KSampler) input sampler_name: 'ddim' is not available on this server (it has 'euler', 'dpmpp_2m')",
            ]
        );
    }
}
