//! The catalog's workflows as a job family: a manifest's rules, defaults and seed; the
//! workflow picked by kind when none is named; follow-ups on other workflows of the catalog.

use std::path::Path;
use std::sync::Arc;

use core_comfyui::{Catalog, WorkflowDef, WorkflowKind};
use serde_json::{Map, Value};
use validation::{MediaFormat, ParamKind, RawRequest};

use super::{
    lineage_prompt, recorded_input, reuse_file, Derivation, DeriveError, FollowUp, JobFamily,
    JobRequest, LocalInput, Lookup, Offers, PrepareError, Reframe, Strength,
};
use crate::job::{upscale_target, InputFile, JobRecord, JobSpec, OutputKind, ValueSource};

/// The request value that asks for an upscale by a factor. A workflow that takes a target
/// size instead gets one computed from the input image.
pub const FACTOR_PARAM: &str = "factor";
/// The fewest images a blend takes.
pub const MIN_BLEND_IMAGES: usize = 2;
/// A blend workflow's weights: `mix2` … `mixN` (see `prepare`).
pub const BLEND_MIX_PREFIX: &str = "mix";
/// The Upscale follow-up's factor.
pub const FOLLOW_UP_UPSCALE_FACTOR: f64 = 2.0;
/// Values a variation never copies from its source: the source image fixes the size.
const NOT_VARIED: [&str; 3] = ["width", "height", "batch"];

/// The conventional workflow name for a kind (`txt2img`, `upscale`, ...).
pub fn kind_name(kind: WorkflowKind) -> &'static str {
    match kind {
        WorkflowKind::Txt2img => "txt2img",
        WorkflowKind::Img2img => "img2img",
        WorkflowKind::Edit => "edit",
        WorkflowKind::Upscale => "upscale",
        WorkflowKind::UpscaleCreative => "upscale_creative",
        WorkflowKind::Outpaint => "outpaint",
        WorkflowKind::Video => "animate",
        WorkflowKind::Describe => "describe",
        WorkflowKind::Blend => "blend",
        WorkflowKind::Custom => "custom",
    }
}

/// The workflow to use for `kind` when none is named: one called like the kind if it takes
/// every parameter in `needs`, else the first of that kind that does.
pub fn pick_workflow(catalog: &Catalog, kind: WorkflowKind, needs: &[&str]) -> Option<String> {
    let fits = |d: &&WorkflowDef| {
        d.manifest.kind == kind && needs.iter().all(|n| d.manifest.params.contains_key(*n))
    };
    let preferred = kind_name(kind);
    catalog
        .iter()
        .filter(fits)
        .find(|d| d.name == preferred)
        .or_else(|| catalog.iter().find(fits))
        .map(|d| d.name.clone())
}

/// The workflow a command runs: the one named, else one of `kind` that takes every value
/// given (an image asked of txt2img falls back to img2img). The error is for the user.
pub fn choose_workflow(
    catalog: &Catalog,
    kind: WorkflowKind,
    named: Option<String>,
    values: &Map<String, Value>,
    has_inputs: bool,
) -> Result<String, String> {
    if let Some(name) = named {
        return Ok(name);
    }
    let mut needs: Vec<&str> = values
        .keys()
        .map(String::as_str)
        .filter(|k| *k != FACTOR_PARAM)
        .collect();
    if has_inputs {
        needs.push("image");
    }
    pick_workflow(catalog, kind, &needs)
        .or_else(|| {
            (kind == WorkflowKind::Txt2img && has_inputs)
                .then(|| pick_workflow(catalog, WorkflowKind::Img2img, &needs))
                .flatten()
        })
        .ok_or_else(|| {
            format!(
                "No {} workflow takes {}; see /workflows.",
                kind_name(kind),
                if needs.is_empty() {
                    "these options".to_string()
                } else {
                    needs.join(", ")
                }
            )
        })
}

/// The workflow's image parameters, in manifest order.
pub fn image_params(def: &WorkflowDef) -> Vec<String> {
    def.manifest
        .params
        .iter()
        .filter(|(_, p)| p.rule.kind == ParamKind::Image)
        .map(|(n, _)| n.clone())
        .collect()
}

/// The pixel size of an image file, from its header.
pub fn image_size(path: &Path) -> Option<(u32, u32)> {
    image::ImageReader::open(path)
        .ok()?
        .with_guessed_format()
        .ok()?
        .into_dimensions()
        .ok()
}

/// Turns a requested upscale `factor` into what the workflow takes: the factor itself, or a
/// target size from the input's size (left to the workflow's default when unknown).
fn resolve_factor(def: &WorkflowDef, values: &mut Map<String, Value>, inputs: &[LocalInput]) {
    if def.manifest.params.contains_key(FACTOR_PARAM) {
        return;
    }
    let Some(factor) = values.remove(FACTOR_PARAM) else {
        return;
    };
    let target = factor
        .as_f64()
        .zip(inputs.first().and_then(|i| image_size(&i.path)));
    if let Some((w, h)) = target.and_then(|(f, (w, h))| upscale_target(w, h, f)) {
        values.insert("target_width".into(), w.into());
        values.insert("target_height".into(), h.into());
    }
}

/// The values of a finished job to reuse in a derived one: its own values minus images and,
/// when `new_seed`, minus the seed (so a fresh one is drawn).
pub fn reusable_values(spec: &JobSpec, def: &WorkflowDef, new_seed: bool) -> Map<String, Value> {
    spec.values
        .iter()
        .filter(|(name, _)| {
            let kind = def.manifest.params.get(*name).map(|p| p.rule.kind);
            kind != Some(ParamKind::Image) && !(new_seed && kind == Some(ParamKind::Seed))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The `index`-th image of a job's outputs (0-based).
fn nth_image(record: &JobRecord, index: usize) -> Option<&crate::job::SavedOutput> {
    record
        .outputs
        .iter()
        .filter(|o| o.kind == OutputKind::Image)
        .nth(index)
}

/// The pad parameters of an outpaint workflow, in the order of [`super::Padding`]'s fields.
const PAD_PARAMS: [&str; 4] = ["pad_left", "pad_top", "pad_right", "pad_bottom"];

/// A variation of an image from outside the journal (the "Vary" message command on any
/// image): the img2img workflow, `prompt`, and that workflow's `strength`.
pub fn vary_image(
    catalog: &Catalog,
    input: LocalInput,
    prompt: String,
    strength: Strength,
) -> Result<JobRequest, DeriveError> {
    let def = pick_workflow(catalog, WorkflowKind::Img2img, &["image"])
        .and_then(|n| catalog.get(&n))
        .ok_or_else(|| DeriveError::new("No img2img workflow is loaded."))?;
    let mut values = Map::new();
    if def.manifest.params.contains_key("prompt") {
        values.insert("prompt".into(), Value::String(prompt));
    }
    if def.manifest.params.contains_key("denoise") {
        let denoise = match strength {
            Strength::Subtle => def.manifest.vary.subtle,
            Strength::Strong => def.manifest.vary.strong,
        };
        values.insert("denoise".into(), denoise.into());
    }
    Ok(JobRequest {
        workflow: def.name.clone(),
        values,
        inputs: vec![input],
        ..JobRequest::default()
    })
}

/// The workflows of the `workflows/` folder.
#[derive(Debug, Clone)]
pub struct CatalogFamily {
    catalog: Arc<Catalog>,
}

impl CatalogFamily {
    pub fn new(catalog: Arc<Catalog>) -> CatalogFamily {
        CatalogFamily { catalog }
    }

    fn def(&self, name: &str) -> Option<&WorkflowDef> {
        self.catalog.get(name)
    }

    fn has(&self, kind: WorkflowKind) -> bool {
        self.catalog.iter().any(|d| d.manifest.kind == kind)
    }

    fn pick(&self, kind: WorkflowKind, needs: &[&str]) -> Result<&WorkflowDef, DeriveError> {
        pick_workflow(&self.catalog, kind, needs)
            .and_then(|n| self.def(&n))
            .ok_or_else(|| DeriveError(format!("No {} workflow is loaded.", kind_name(kind))))
    }
}

impl JobFamily for CatalogFamily {
    fn workflows(&self) -> Vec<String> {
        self.catalog.names().map(str::to_string).collect()
    }

    fn runs(&self, workflow: &str) -> bool {
        self.def(workflow).is_some()
    }

    fn takes_video(&self, workflow: &str) -> bool {
        self.def(workflow)
            .is_some_and(|d| d.manifest.kind == WorkflowKind::Video)
    }

    fn nsfw(&self, workflow: &str) -> bool {
        self.def(workflow).is_some_and(|d| d.manifest.nsfw)
    }

    fn prepare(
        &self,
        req: JobRequest,
        rng: &mut dyn rand::RngCore,
    ) -> Result<JobSpec, PrepareError> {
        let def = self
            .def(&req.workflow)
            .ok_or_else(|| PrepareError::UnknownWorkflow {
                name: req.workflow.clone(),
                available: self.workflows().join(", "),
            })?;
        let images = image_params(def);
        let mut req = req;
        if def.manifest.kind == WorkflowKind::Blend {
            if !(MIN_BLEND_IMAGES..=images.len().max(MIN_BLEND_IMAGES)).contains(&req.inputs.len())
            {
                return Err(PrepareError::BlendImages {
                    count: req.inputs.len(),
                    min: MIN_BLEND_IMAGES,
                    max: images.len(),
                });
            }
            // Fewer images than the workflow has slots: they repeat in order (3 images in 5
            // slots: 1 2 3 1 2), so every slot is filled.
            let given = req.inputs.clone();
            req.inputs = given.iter().cycle().take(images.len()).cloned().collect();
            // `mixK`, where the workflow has it, is the share slot K keeps from the slots
            // before it: (K−1)/K makes a running mean, and 1 past the images given ignores the
            // repeats, so every image given counts the same.
            for k in 2..=images.len() {
                let name = format!("{BLEND_MIX_PREFIX}{k}");
                if def.manifest.params.contains_key(&name) && !req.values.contains_key(&name) {
                    let keep = if k <= given.len() {
                        (k as f64 - 1.0) / k as f64
                    } else {
                        1.0
                    };
                    let keep = (keep * 10_000.0).round() / 10_000.0;
                    req.values.insert(name, Value::from(keep));
                }
            }
        }
        if req.inputs.len() > images.len() {
            return Err(PrepareError::ImageCount {
                workflow: req.workflow,
                count: req.inputs.len(),
                takes: images.len(),
            });
        }
        let mut raw = RawRequest {
            values: req.values,
            aspect: req.aspect,
        };
        resolve_factor(def, &mut raw.values, &req.inputs);
        let mut inputs = Vec::new();
        for (param, input) in images.iter().zip(&req.inputs) {
            // A placeholder that passes the checks; the generator puts the uploaded name there.
            raw.values.insert(
                param.clone(),
                Value::String(format!("pending.{}", input.format.extension())),
            );
            inputs.push(InputFile {
                param: param.clone(),
                path: input.path.clone(),
                mime: input.format.mime().to_string(),
            });
        }
        let checked = validation::validate(&def.manifest.rules(), &raw)?;
        let given: Vec<String> = checked.keys().cloned().collect();
        let values = def
            .manifest
            .complete(&def.workflow, checked, &mut &mut *rng)?;
        // What nobody gave came from the workflow, or is the seed drawn just now.
        let mut sources = req.sources;
        if let Some(src) = sources.get("aspect").copied() {
            for k in ["width", "height"] {
                sources.entry(k.into()).or_insert(src);
            }
        }
        for (name, _) in values.iter().filter(|(n, _)| !given.contains(n)) {
            let drawn = def.manifest.params[name].rule.kind == validation::ParamKind::Seed
                && def.manifest.params[name].rule.default.is_none();
            sources.entry(name.clone()).or_insert(if drawn {
                ValueSource::Random
            } else {
                ValueSource::Workflow
            });
        }
        Ok(JobSpec {
            workflow: req.workflow,
            values: values.into_iter().collect(),
            inputs,
            parent: req.parent,
            sources,
            templates: req.templates,
        })
    }

    fn offers(&self, record: &JobRecord) -> Offers {
        let images = record
            .outputs
            .iter()
            .filter(|o| o.kind == OutputKind::Image)
            .count();
        let image = images > 0;
        let reframe = image && self.has(WorkflowKind::Outpaint);
        let square = reframe
            && nth_image(record, 0)
                .and_then(|o| image_size(&o.path))
                .is_some_and(|(w, h)| Reframe::Square.padding(w, h).is_ok());
        Offers {
            images,
            upscale: image && self.has(WorkflowKind::Upscale),
            upscale_creative: image && self.has(WorkflowKind::UpscaleCreative),
            vary: image && self.has(WorkflowKind::Img2img),
            edit: record.spec.prompt().is_some(),
            animate: image && self.has(WorkflowKind::Video),
            reframe,
            square,
            prompts: if self
                .def(&record.spec.workflow)
                .is_some_and(|d| d.manifest.kind == WorkflowKind::Describe)
            {
                super::describe::described_prompts(record).len()
            } else {
                0
            },
        }
    }

    fn derive(
        &self,
        source: &JobRecord,
        follow: &FollowUp,
        lookup: Lookup<'_>,
    ) -> Result<JobRequest, DeriveError> {
        let source_def = self.def(&source.spec.workflow).ok_or_else(|| {
            DeriveError(format!(
                "Workflow {} is no longer loaded.",
                source.spec.workflow
            ))
        })?;
        let output_image = || {
            let Some(o) = nth_image(source, follow.image) else {
                return Err(DeriveError(format!(
                    "This result has no image {}.",
                    follow.image + 1
                )));
            };
            reuse_file(&o.path, MediaFormat::Png)
                .ok_or_else(|| DeriveError::new("This result's image is no longer on the server."))
        };
        // The prompt a follow-up draws with: the one the member typed for it (remix, Edit),
        // else the source's or its nearest ancestor's.
        let prompt = || {
            follow
                .prompt
                .clone()
                .or_else(|| lineage_prompt(source, lookup))
        };
        let mut req = JobRequest {
            parent: Some(source.id.clone()),
            ..JobRequest::default()
        };
        // Settings the source and the follow-up's workflow share (steps, cfg, sampler, ...),
        // with a fresh seed; never the size, which the source image now fixes.
        let shared = |def: &WorkflowDef, req: &mut JobRequest| {
            for (k, v) in reusable_values(&source.spec, source_def, true) {
                if def.manifest.params.contains_key(&k)
                    && !NOT_VARIED.contains(&k.as_str())
                    && !k.starts_with("pad_")
                {
                    req.values.insert(k, v);
                }
            }
            if def.manifest.params.contains_key("prompt") {
                if let Some(p) = prompt() {
                    req.values.insert("prompt".into(), Value::String(p));
                }
            }
        };
        match follow.how {
            Derivation::Reroll | Derivation::Retry | Derivation::Edit => {
                if follow.how == Derivation::Edit && follow.prompt.is_none() {
                    return Err(DeriveError::new("An edit needs the new prompt."));
                }
                req.workflow = source.spec.workflow.clone();
                let new_seed = follow.how == Derivation::Reroll;
                req.values = reusable_values(&source.spec, source_def, new_seed);
                if let Some(p) = &follow.prompt {
                    req.values.insert("prompt".into(), Value::String(p.clone()));
                }
                for input in &source.spec.inputs {
                    if !input.path.exists() {
                        return Err(DeriveError::new(
                            "The image this job started from is no longer on the server.",
                        ));
                    }
                    req.inputs.push(recorded_input(input, MediaFormat::Png));
                }
            }
            Derivation::Upscale => {
                let def = self.pick(WorkflowKind::Upscale, &["image"])?;
                req.workflow = def.name.clone();
                req.inputs.push(output_image()?);
                req.values
                    .insert(FACTOR_PARAM.into(), FOLLOW_UP_UPSCALE_FACTOR.into());
            }
            Derivation::UpscaleCreative => {
                let def = self.pick(WorkflowKind::UpscaleCreative, &["image"])?;
                req.workflow = def.name.clone();
                req.inputs.push(output_image()?);
                shared(def, &mut req);
                // The workflow's own denoise is the creative strength, not the source's.
                req.values.remove("denoise");
                req.values
                    .insert(FACTOR_PARAM.into(), FOLLOW_UP_UPSCALE_FACTOR.into());
            }
            Derivation::Vary(strength) => {
                let def = self.pick(WorkflowKind::Img2img, &["image"])?;
                req.workflow = def.name.clone();
                req.inputs.push(output_image()?);
                shared(def, &mut req);
                if def.manifest.params.contains_key("denoise") {
                    let denoise = match strength {
                        Strength::Subtle => def.manifest.vary.subtle,
                        Strength::Strong => def.manifest.vary.strong,
                    };
                    req.values.insert("denoise".into(), denoise.into());
                }
            }
            Derivation::Reframe(reframe) => {
                let def = self.pick(WorkflowKind::Outpaint, &["image"])?;
                req.workflow = def.name.clone();
                let input = output_image()?;
                let (w, h) = image_size(&input.path)
                    .ok_or_else(|| DeriveError::new("This result's image cannot be read."))?;
                let pad = reframe.padding(w, h).map_err(DeriveError)?;
                req.inputs.push(input);
                shared(def, &mut req);
                req.values.remove("denoise");
                for (name, px) in PAD_PARAMS
                    .into_iter()
                    .zip([pad.left, pad.top, pad.right, pad.bottom])
                {
                    if !def.manifest.params.contains_key(name) {
                        return Err(DeriveError(format!(
                            "Workflow {} does not take {name}; an outpaint workflow needs pad_left, pad_top, pad_right and pad_bottom.",
                            def.name
                        )));
                    }
                    req.values.insert(name.into(), px.into());
                }
            }
            Derivation::Animate => {
                let def = self.pick(WorkflowKind::Video, &["image"])?;
                req.workflow = def.name.clone();
                req.inputs.push(output_image()?);
                if let Some(p) = prompt() {
                    req.values.insert("prompt".into(), p.into());
                }
            }
            Derivation::Described => {
                // Prompt n of a describe result, drawn at the described image's aspect.
                let prompts = super::describe::described_prompts(source);
                let chosen = follow
                    .prompt
                    .clone()
                    .or_else(|| prompts.get(follow.image).cloned())
                    .ok_or_else(|| {
                        DeriveError(format!("This result has no prompt {}.", follow.image + 1))
                    })?;
                let def = self.pick(WorkflowKind::Txt2img, &["prompt"])?;
                req.workflow = def.name.clone();
                req.values.insert("prompt".into(), Value::String(chosen));
                let sized = ["width", "height"]
                    .iter()
                    .all(|k| def.manifest.params.contains_key(*k));
                req.aspect = source
                    .spec
                    .inputs
                    .first()
                    .and_then(|i| image_size(&i.path))
                    .filter(|_| sized)
                    .and_then(|(w, h)| super::describe::aspect_of(w, h));
            }
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobId, JobState, Origin, SavedOutput};
    use crate::kinds::Kinds;
    use serde_json::json;

    fn catalog() -> Arc<Catalog> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workflows");
        Arc::new(Catalog::load_dir(&dir).unwrap().0)
    }

    fn kinds() -> Kinds {
        Kinds::new(vec![Arc::new(CatalogFamily::new(catalog()))])
    }

    fn request(workflow: &str, values: serde_json::Value) -> JobRequest {
        JobRequest {
            workflow: workflow.into(),
            values: values.as_object().cloned().unwrap_or_default(),
            ..JobRequest::default()
        }
    }

    /// A finished txt2img job whose output is a real 64×48 PNG in `dir`.
    fn finished(dir: &Path) -> JobRecord {
        let png = dir.join("out.png");
        image::RgbImage::new(64, 48).save(&png).unwrap();
        let spec = kinds()
            .prepare(
                request("txt2img", json!({"prompt": "a cat", "steps": 12})),
                &mut rand::thread_rng(),
            )
            .unwrap();
        JobRecord {
            id: JobId::new(),
            spec,
            origin: Origin::default(),
            state: JobState::Finished,
            outputs: vec![SavedOutput {
                kind: OutputKind::Image,
                path: png,
                bytes: 1,
                sidecar: None,
            }],
            seq: 0,
            remote_id: None,
            attempts: 0,
            created_ms: 0,
            started_ms: None,
            finished_ms: None,
        }
    }

    #[test]
    fn picks_by_kind_and_needs() {
        let c = catalog();
        assert_eq!(
            pick_workflow(&c, WorkflowKind::Txt2img, &[]).as_deref(),
            Some("txt2img")
        );
        assert_eq!(
            pick_workflow(&c, WorkflowKind::Txt2img, &["lora"]).as_deref(),
            Some("txt2img_lora")
        );
        assert_eq!(pick_workflow(&c, WorkflowKind::Txt2img, &["nope"]), None);
        let with_image = choose_workflow(&c, WorkflowKind::Txt2img, None, &Map::new(), true);
        assert_eq!(with_image.as_deref(), Ok("img2img"));
        let values = json!({"prompt": "x", "nope": 1})
            .as_object()
            .cloned()
            .unwrap();
        let e = choose_workflow(&c, WorkflowKind::Txt2img, None, &values, false).unwrap_err();
        assert!(e.contains("No txt2img workflow takes prompt, nope"), "{e}");
        let named = choose_workflow(&c, WorkflowKind::Upscale, Some("x".into()), &values, true);
        assert_eq!(named.as_deref(), Ok("x"));
    }

    #[test]
    fn prepare_fixes_seed_and_refuses_clearly() {
        let k = kinds();
        let mut rng = rand::thread_rng();
        let spec = k
            .prepare(
                request("txt2img", json!({"prompt": "a cat", "steps": 12})),
                &mut rng,
            )
            .unwrap();
        assert_eq!(spec.values["steps"], 12);
        assert!(
            spec.values["seed"].is_u64(),
            "seed fixed: {:?}",
            spec.values
        );
        assert_eq!(spec.prompt(), Some("a cat"));
        let e = k
            .prepare(
                request("txt2img", json!({"prompt": "a cat", "steps": 500})),
                &mut rng,
            )
            .unwrap_err();
        assert!(
            e.to_string().contains("steps must be between 1 and 50"),
            "{e}"
        );
        let e = k.prepare(request("nope", json!({})), &mut rng).unwrap_err();
        assert!(e.to_string().contains("txt2img"), "{e}");
    }

    #[test]
    fn a_factor_becomes_the_target_size_the_workflow_takes() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("in.png");
        image::RgbImage::new(40, 24).save(&png).unwrap();
        let mut req = request("upscale", json!({"factor": 2.0}));
        req.inputs.push(LocalInput {
            path: png,
            format: MediaFormat::Png,
        });
        let spec = kinds().prepare(req, &mut rand::thread_rng()).unwrap();
        assert_eq!(spec.values["target_width"], 80, "{:?}", spec.values);
        assert_eq!(spec.values["target_height"], 48);
        assert!(!spec.values.contains_key(FACTOR_PARAM));
    }

    fn none(_: &JobId) -> Option<JobRecord> {
        None
    }

    fn follow(how: Derivation) -> FollowUp {
        FollowUp::new(how)
    }

    fn png_input(dir: &Path, name: &str, w: u32, h: u32) -> LocalInput {
        let path = dir.join(name);
        image::RgbImage::new(w, h).save(&path).unwrap();
        LocalInput {
            path,
            format: MediaFormat::Png,
        }
    }

    #[test]
    fn a_blend_fills_every_slot_and_weighs_each_image_given_equally() {
        let dir = tempfile::tempdir().unwrap();
        let k = kinds();
        let three: Vec<LocalInput> = ["a", "b", "c"]
            .iter()
            .map(|n| png_input(dir.path(), &format!("{n}.png"), 64, 64))
            .collect();
        let mut req = request("blend", json!({}));
        req.inputs = three.clone();
        let spec = k.prepare(req, &mut rand::thread_rng()).unwrap();
        let order: Vec<_> = spec.inputs.iter().map(|i| i.path.clone()).collect();
        let expect: Vec<_> = [0, 1, 2, 0, 1]
            .iter()
            .map(|&i| three[i].path.clone())
            .collect();
        assert_eq!(order, expect, "3 images in 5 slots repeat in order");
        let mix: Vec<f64> = (2..=5)
            .map(|i| spec.values[&format!("mix{i}")].as_f64().unwrap())
            .collect();
        assert_eq!(mix, [0.5, 0.6667, 1.0, 1.0]);
        // Shares of the mean: image k keeps Π later mixes × (1 − its own mix).
        let share = |k: usize| {
            let own = if k == 1 { 1.0 } else { 1.0 - mix[k - 2] };
            own * mix[k - 1..].iter().product::<f64>()
        };
        for k in 1..=3 {
            assert!(
                (share(k) - 1.0 / 3.0).abs() < 1e-3,
                "image {k}: {}",
                share(k)
            );
        }
        let mut one = request("blend", json!({}));
        one.inputs = three[..1].to_vec();
        let e = k.prepare(one, &mut rand::thread_rng()).unwrap_err();
        assert_eq!(e.to_string(), "a blend takes 2 to 5 images; 1 given");
    }

    #[test]
    fn a_described_prompt_draws_at_the_described_images_aspect() {
        let dir = tempfile::tempdir().unwrap();
        let k = kinds();
        let mut req = request("describe", json!({}));
        req.inputs.push(png_input(dir.path(), "wide.png", 96, 64));
        let spec = k.prepare(req, &mut rand::thread_rng()).unwrap();
        let text = dir.path().join("caption.txt");
        std::fs::write(&text, "1. a red fox\n2. a fox, watercolor").unwrap();
        let source = JobRecord {
            id: JobId::new(),
            spec,
            origin: Origin::default(),
            state: JobState::Finished,
            remote_id: None,
            outputs: vec![SavedOutput {
                path: text,
                kind: OutputKind::Text,
                bytes: 10,
                sidecar: None,
            }],
            attempts: 1,
            seq: 0,
            created_ms: 0,
            started_ms: None,
            finished_ms: None,
        };
        assert_eq!(k.offers(&source).prompts, 2);
        let mut f = follow(Derivation::Described);
        f.image = 1;
        let req = k.derive(&source, &f, &none).unwrap();
        assert_eq!(req.workflow, "txt2img");
        assert_eq!(req.values["prompt"], "a fox, watercolor");
        assert_eq!(req.aspect.as_deref(), Some("3:2"));
        f.image = 3;
        let e = k.derive(&source, &f, &none).unwrap_err();
        assert!(e.to_string().contains("no prompt 4"), "{e}");
    }

    #[test]
    fn follow_ups_build_the_next_job_from_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let source = finished(dir.path());
        let k = kinds();
        assert_eq!(
            k.offers(&source),
            Offers {
                images: 1,
                upscale: true,
                upscale_creative: true,
                vary: true,
                edit: true,
                animate: true,
                reframe: true,
                square: true,
                prompts: 0,
            }
        );
        let reroll = k
            .derive(&source, &follow(Derivation::Reroll), &none)
            .unwrap();
        assert_eq!(reroll.workflow, "txt2img");
        assert_eq!(reroll.values["steps"], 12);
        assert!(!reroll.values.contains_key("seed"), "a new seed is drawn");
        assert_eq!(reroll.parent.as_ref(), Some(&source.id));
        let retry = k
            .derive(&source, &follow(Derivation::Retry), &none)
            .unwrap();
        assert_eq!(retry.values["seed"], source.spec.values["seed"]);
        let edit = FollowUp {
            prompt: Some("a dog".into()),
            ..follow(Derivation::Edit)
        };
        let edited = k.derive(&source, &edit, &none).unwrap();
        assert_eq!(edited.values["prompt"], "a dog");
        assert_eq!(edited.values["seed"], source.spec.values["seed"]);
        assert!(k.derive(&source, &follow(Derivation::Edit), &none).is_err());

        let subtle = k
            .derive(&source, &follow(Derivation::Vary(Strength::Subtle)), &none)
            .unwrap();
        assert_eq!(subtle.workflow, "img2img");
        assert_eq!(subtle.values["denoise"], 0.35, "the manifest's vary.subtle");
        assert_eq!(subtle.values["prompt"], "a cat");
        assert!(!subtle.values.contains_key("width"));
        assert!(!subtle.values.contains_key("seed"));
        assert_eq!(subtle.inputs[0].format, MediaFormat::Png);
        let strong = k
            .derive(&source, &follow(Derivation::Vary(Strength::Strong)), &none)
            .unwrap();
        assert_eq!(strong.values["denoise"], 0.7, "the manifest's vary.strong");
        let up = k
            .derive(&source, &follow(Derivation::Upscale), &none)
            .unwrap();
        let spec = k.prepare(up, &mut rand::thread_rng()).unwrap();
        assert_eq!(spec.workflow, "upscale");
        assert_eq!(
            (&spec.values["target_width"], &spec.values["target_height"]),
            (&json!(128), &json!(96))
        );
        let creative = k
            .derive(&source, &follow(Derivation::UpscaleCreative), &none)
            .unwrap();
        let spec = k.prepare(creative, &mut rand::thread_rng()).unwrap();
        assert_eq!(spec.workflow, "upscale_creative");
        assert_eq!(spec.values["factor"], 2.0);
        assert_eq!(spec.values["denoise"], 0.35, "the workflow's own default");
        assert_eq!(spec.values["prompt"], "a cat");
        let animate = k
            .derive(&source, &follow(Derivation::Animate), &none)
            .unwrap();
        assert_eq!(animate.values["prompt"], "a cat");

        std::fs::remove_file(&source.outputs[0].path).unwrap();
        let gone = k
            .derive(&source, &follow(Derivation::Vary(Strength::Subtle)), &none)
            .unwrap_err();
        assert!(gone.0.contains("no longer on the server"), "{gone}");
        let no_images = JobRecord {
            outputs: Vec::new(),
            ..source.clone()
        };
        assert_eq!(
            k.offers(&no_images),
            Offers {
                edit: true,
                ..Offers::default()
            }
        );
        let unknown = JobRecord {
            spec: JobSpec {
                workflow: "gone".into(),
                ..source.spec.clone()
            },
            ..source
        };
        assert_eq!(k.offers(&unknown), Offers::default());
        assert!(k
            .derive(&unknown, &follow(Derivation::Reroll), &none)
            .is_err());
    }

    /// A finished job with `n` real `w`×`h` PNGs.
    fn batch(dir: &Path, n: usize, w: u32, h: u32) -> JobRecord {
        let mut record = finished(dir);
        record.outputs = (0..n)
            .map(|i| {
                let path = dir.join(format!("b{i}.png"));
                image::RgbImage::from_pixel(w, h, image::Rgb([i as u8 * 60, 0, 0]))
                    .save(&path)
                    .unwrap();
                SavedOutput {
                    kind: OutputKind::Image,
                    path,
                    bytes: 1,
                    sidecar: None,
                }
            })
            .collect();
        record
    }

    #[test]
    fn any_image_can_be_varied() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("theirs.png");
        image::RgbImage::new(64, 64).save(&png).unwrap();
        let input = LocalInput {
            path: png,
            format: MediaFormat::Png,
        };
        let req = vary_image(&catalog(), input, "a boat".into(), Strength::Strong).unwrap();
        assert_eq!(req.workflow, "img2img");
        assert_eq!(req.values["denoise"], 0.7);
        let spec = kinds().prepare(req, &mut rand::thread_rng()).unwrap();
        assert_eq!(spec.prompt(), Some("a boat"));
        assert_eq!(spec.inputs.len(), 1);
    }

    #[test]
    fn reframes_send_the_padding_the_outpaint_workflow_takes() {
        let dir = tempfile::tempdir().unwrap();
        let source = batch(dir.path(), 1, 64, 48);
        let k = kinds();
        let pads = |r: Reframe| {
            let req = k
                .derive(&source, &follow(Derivation::Reframe(r)), &none)
                .unwrap();
            assert_eq!(req.workflow, "outpaint");
            let spec = k.prepare(req, &mut rand::thread_rng()).unwrap();
            assert_eq!(spec.values["prompt"], "a cat");
            PAD_PARAMS.map(|p| spec.values[p].as_u64().unwrap())
        };
        use crate::kinds::Direction::*;
        assert_eq!(pads(Reframe::ZoomOut2), [32, 24, 32, 24]);
        assert_eq!(pads(Reframe::ZoomOut15), [16, 8, 16, 16]);
        assert_eq!(pads(Reframe::Square), [0, 8, 0, 8]);
        assert_eq!(pads(Reframe::Pan(Left)), [32, 0, 0, 0]);
        assert_eq!(pads(Reframe::Pan(Right)), [0, 0, 32, 0]);
        assert_eq!(pads(Reframe::Pan(Up)), [0, 24, 0, 0]);
        assert_eq!(pads(Reframe::Pan(Down)), [0, 0, 0, 24]);
        let square = batch(dir.path(), 1, 64, 64);
        assert!(
            !k.offers(&square).square,
            "a square image offers no Make Square"
        );
        let e = k
            .derive(
                &square,
                &follow(Derivation::Reframe(Reframe::Square)),
                &none,
            )
            .unwrap_err();
        assert!(e.0.contains("already square"), "{e}");
    }

    #[test]
    fn a_follow_up_acts_on_the_image_it_names_and_inherits_the_prompt() {
        let dir = tempfile::tempdir().unwrap();
        let grid = batch(dir.path(), 4, 64, 48);
        let k = kinds();
        assert_eq!(k.offers(&grid).images, 4);
        let third = FollowUp {
            image: 2,
            ..follow(Derivation::Vary(Strength::Strong))
        };
        let req = k.derive(&grid, &third, &none).unwrap();
        assert_eq!(req.inputs[0].path, grid.outputs[2].path);
        let fifth = FollowUp {
            image: 4,
            ..third.clone()
        };
        let e = k.derive(&grid, &fifth, &none).unwrap_err();
        assert!(e.0.contains("no image 5"), "{e}");

        // An upscale of the grid's image has no prompt; a variation of it draws the grid's.
        let mut upscaled = batch(dir.path(), 1, 128, 96);
        upscaled.spec = JobSpec {
            workflow: "upscale".into(),
            values: Map::new(),
            inputs: Vec::new(),
            parent: Some(grid.id.clone()),
            sources: Default::default(),
            templates: Default::default(),
        };
        let lookup = |id: &JobId| (id == &grid.id).then(|| grid.clone());
        let vary = follow(Derivation::Vary(Strength::Subtle));
        let req = k.derive(&upscaled, &vary, &lookup).unwrap();
        assert_eq!(req.values["prompt"], "a cat");
        let remix = FollowUp {
            prompt: Some("a fox".into()),
            ..vary
        };
        assert_eq!(
            k.derive(&upscaled, &remix, &lookup).unwrap().values["prompt"],
            "a fox"
        );
        let reroll = FollowUp {
            prompt: Some("a fox".into()),
            ..follow(Derivation::Reroll)
        };
        let req = k.derive(&grid, &reroll, &none).unwrap();
        assert_eq!(req.values["prompt"], "a fox");
        assert!(!req.values.contains_key("seed"));
    }
}
