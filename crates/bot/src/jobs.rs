//! From a request (a slash command, a button, the terminal) to a checked, reproducible job
//! spec: pick the workflow, check every value against its manifest, fix defaults and the seed.
//! Pure apart from the random seed; both front-ends share it.

use std::path::PathBuf;

use core_comfyui::{Catalog, PatchError, WorkflowDef, WorkflowKind};
use generators::cosmos::spec::{self as cosmos_spec, CosmosKind};
use generators::{InputFile, JobId, JobSpec};
use indexmap::IndexMap;
use serde_json::{Map, Value};
use validation::attachment::MediaFormat;
use validation::{ParamKind, ParamRule, RawRequest, Refusal};

/// An input image already on disk and checked.
#[derive(Debug, Clone)]
pub struct LocalImage {
    pub path: PathBuf,
    pub format: MediaFormat,
}

/// What a user asked for, in their terms.
#[derive(Debug, Clone, Default)]
pub struct JobRequest {
    pub workflow: String,
    /// Values by manifest parameter name, typed as given (strings, numbers, booleans).
    pub values: Map<String, Value>,
    /// An aspect preset instead of width and height.
    pub aspect: Option<String>,
    /// Images for the workflow's image parameters, in manifest order.
    pub images: Vec<LocalImage>,
    /// The job this one derives from (a button on its result).
    pub parent: Option<JobId>,
}

/// A job ready to queue, with every value it will run with.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub spec: JobSpec,
    pub values: IndexMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PrepareError {
    #[error("unknown workflow {name:?}; available: {available}")]
    UnknownWorkflow { name: String, available: String },
    #[error("{count} image(s) given but workflow {workflow} takes {takes}")]
    ImageCount {
        workflow: String,
        count: usize,
        takes: usize,
    },
    #[error("{0}")]
    Refused(#[from] Refusal),
    #[error("the workflow cannot be prepared: {0}")]
    Patch(String),
}

/// The manifest's parameter rules by name.
pub fn rules_of(def: &WorkflowDef) -> IndexMap<String, ParamRule> {
    def.manifest
        .params
        .iter()
        .map(|(n, p)| (n.clone(), p.rule.clone()))
        .collect()
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

/// The workflow to use for `kind` when the user named none: one called like the kind if it
/// takes every parameter in `needs`, else the first of that kind that does.
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

/// The conventional workflow name for a kind (`txt2img`, `upscale`, ...).
pub fn kind_name(kind: WorkflowKind) -> &'static str {
    match kind {
        WorkflowKind::Txt2img => "txt2img",
        WorkflowKind::Img2img => "img2img",
        WorkflowKind::Edit => "edit",
        WorkflowKind::Upscale => "upscale",
        WorkflowKind::Video => "animate",
        WorkflowKind::Custom => "custom",
    }
}

/// Checks `req` against its workflow's manifest (or the Cosmos rules) and fixes every value
/// (defaults, the seed).
pub fn prepare(
    catalog: &Catalog,
    req: JobRequest,
    rng: &mut impl rand::RngCore,
) -> Result<Prepared, PrepareError> {
    if let Some(kind) = CosmosKind::from_workflow(&req.workflow) {
        return prepare_cosmos(kind, req, rng);
    }
    let def = catalog
        .get(&req.workflow)
        .ok_or_else(|| PrepareError::UnknownWorkflow {
            name: req.workflow.clone(),
            available: catalog.names().collect::<Vec<_>>().join(", "),
        })?;
    let rules = rules_of(def);
    let images = image_params(def);
    if req.images.len() > images.len() {
        return Err(PrepareError::ImageCount {
            workflow: req.workflow.clone(),
            count: req.images.len(),
            takes: images.len(),
        });
    }
    let mut raw = RawRequest {
        values: req.values,
        aspect: req.aspect,
    };
    let mut inputs = Vec::new();
    for (param, image) in images.iter().zip(&req.images) {
        // A placeholder that passes validation; the generator puts the uploaded name there.
        raw.values.insert(
            param.clone(),
            Value::String(format!("pending.{}", image.format.extension())),
        );
        inputs.push(InputFile {
            param: param.clone(),
            path: image.path.clone(),
            mime: image.format.mime().to_string(),
        });
    }
    let values = validation::validate(&rules, &raw)?;
    let patched = def
        .manifest
        .apply(&def.workflow, &values, rng)
        .map_err(|e| match e {
            PatchError::Refused(r) => PrepareError::Refused(r),
            other => PrepareError::Patch(other.to_string()),
        })?;
    let spec = JobSpec {
        workflow: req.workflow,
        values: patched
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        inputs,
        parent: req.parent,
    };
    Ok(Prepared {
        spec,
        values: patched.values,
    })
}

/// A Cosmos job: its one input video, values checked against the kind's rules, defaults and
/// a seed fixed.
fn prepare_cosmos(
    kind: CosmosKind,
    req: JobRequest,
    rng: &mut impl rand::RngCore,
) -> Result<Prepared, PrepareError> {
    if req.images.len() != 1 {
        return Err(PrepareError::ImageCount {
            workflow: req.workflow,
            count: req.images.len(),
            takes: 1,
        });
    }
    let rules = cosmos_spec::rules(kind);
    let mut raw = RawRequest {
        values: req.values,
        aspect: None,
    };
    let video = &req.images[0];
    raw.values.insert(
        cosmos_spec::VIDEO_PARAM.into(),
        Value::String(format!("pending.{}", video.format.extension())),
    );
    let checked = validation::validate(&rules, &raw)?;
    let values = cosmos_spec::complete_values(kind, &checked, rng)?;
    let spec = JobSpec {
        workflow: kind.workflow().to_string(),
        values: values.clone(),
        inputs: vec![InputFile {
            param: cosmos_spec::VIDEO_PARAM.into(),
            path: video.path.clone(),
            mime: video.format.mime().to_string(),
        }],
        parent: req.parent,
    };
    Ok(Prepared {
        spec,
        values: values.into_iter().collect(),
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn catalog() -> Catalog {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workflows");
        Catalog::load_dir(&dir).unwrap().0
    }

    #[test]
    fn cosmos_jobs_take_one_video_and_fill_every_value() {
        let c = catalog();
        let mut values = Map::new();
        values.insert("prompt".into(), "a rainy street".into());
        values.insert("edge".into(), serde_json::json!(0.8));
        let video = LocalImage {
            path: "/tmp/in.mp4".into(),
            format: MediaFormat::Mp4,
        };
        let p = prepare(
            &c,
            JobRequest {
                workflow: "cosmos_transfer".into(),
                values: values.clone(),
                images: vec![video.clone()],
                ..JobRequest::default()
            },
            &mut rand::thread_rng(),
        )
        .unwrap();
        assert_eq!(p.spec.values["edge"], 0.8);
        assert_eq!(p.spec.values["steps"], 35);
        assert_eq!(p.spec.inputs[0].mime, "video/mp4");
        values.insert("steps".into(), 500.into());
        let e = prepare(
            &c,
            JobRequest {
                workflow: "cosmos_transfer".into(),
                values,
                images: vec![video],
                ..JobRequest::default()
            },
            &mut rand::thread_rng(),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("steps must be between 1 and 100"),
            "{e}"
        );
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
    }

    #[test]
    fn prepare_fixes_seed_and_refuses_clearly() {
        let c = catalog();
        let mut rng = rand::thread_rng();
        let mut values = Map::new();
        values.insert("prompt".into(), "a cat".into());
        values.insert("steps".into(), 12.into());
        let p = prepare(
            &c,
            JobRequest {
                workflow: "txt2img".into(),
                values: values.clone(),
                ..JobRequest::default()
            },
            &mut rng,
        )
        .unwrap();
        assert_eq!(p.spec.values["steps"], 12);
        assert!(
            p.spec.values["seed"].is_u64(),
            "seed fixed: {:?}",
            p.spec.values
        );
        values.insert("steps".into(), 500.into());
        let e = prepare(
            &c,
            JobRequest {
                workflow: "txt2img".into(),
                values,
                ..JobRequest::default()
            },
            &mut rng,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("steps must be between 1 and 50"),
            "{e}"
        );
        let e = prepare(
            &c,
            JobRequest {
                workflow: "nope".into(),
                ..JobRequest::default()
            },
            &mut rng,
        )
        .unwrap_err();
        assert!(e.to_string().contains("txt2img"), "{e}");
    }
}
