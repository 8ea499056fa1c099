//! Cosmos jobs as a job family: one input video, the kind's rules, and the follow-ups a
//! Cosmos result offers (run again, change the prompt, upscale the video).

use serde_json::Value;
use validation::{MediaFormat, RawRequest};

use super::spec::{self, CosmosKind};
use crate::job::{InputFile, JobRecord, JobSpec, OutputKind};
use crate::kinds::{
    recorded_input, reuse_file, Derivation, DeriveError, FollowUp, JobFamily, JobRequest, Lookup,
    Offers, PrepareError,
};

/// The workflows of a configured Cosmos host.
#[derive(Debug, Clone, Copy, Default)]
pub struct CosmosFamily;

impl JobFamily for CosmosFamily {
    fn workflows(&self) -> Vec<String> {
        vec![
            spec::TRANSFER_WORKFLOW.to_string(),
            spec::UPSCALE_WORKFLOW.to_string(),
        ]
    }

    fn runs(&self, workflow: &str) -> bool {
        CosmosKind::from_workflow(workflow).is_some()
    }

    fn takes_video(&self, workflow: &str) -> bool {
        self.runs(workflow)
    }

    fn nsfw(&self, _workflow: &str) -> bool {
        false
    }

    fn prepare(
        &self,
        req: JobRequest,
        rng: &mut dyn rand::RngCore,
    ) -> Result<JobSpec, PrepareError> {
        let Some(kind) = CosmosKind::from_workflow(&req.workflow) else {
            return Err(PrepareError::UnknownWorkflow {
                available: self.workflows().join(", "),
                name: req.workflow,
            });
        };
        let [video] = req.inputs.as_slice() else {
            return Err(PrepareError::ImageCount {
                workflow: req.workflow,
                count: req.inputs.len(),
                takes: 1,
            });
        };
        let mut raw = RawRequest {
            values: req.values,
            aspect: None,
        };
        raw.values.insert(
            spec::VIDEO_PARAM.into(),
            Value::String(format!("pending.{}", video.format.extension())),
        );
        let checked = validation::validate(&spec::rules(kind), &raw)?;
        let values = spec::complete_values(kind, &checked, &mut &mut *rng)?;
        Ok(JobSpec {
            workflow: kind.workflow().to_string(),
            values,
            inputs: vec![InputFile {
                param: spec::VIDEO_PARAM.into(),
                path: video.path.clone(),
                mime: video.format.mime().to_string(),
            }],
            parent: req.parent,
            sources: req.sources,
            templates: req.templates,
        })
    }

    fn offers(&self, record: &JobRecord) -> Offers {
        let transfer =
            CosmosKind::from_workflow(&record.spec.workflow) == Some(CosmosKind::Transfer);
        let video = record.outputs.iter().any(|o| o.kind == OutputKind::Video);
        Offers {
            upscale: video && transfer,
            edit: transfer,
            ..Offers::default()
        }
    }

    fn derive(
        &self,
        source: &JobRecord,
        follow: &FollowUp,
        _lookup: Lookup<'_>,
    ) -> Result<JobRequest, DeriveError> {
        let mut req = JobRequest {
            parent: Some(source.id.clone()),
            ..JobRequest::default()
        };
        match follow.how {
            Derivation::Reroll | Derivation::Retry | Derivation::Edit => {
                if follow.how == Derivation::Edit && follow.prompt.is_none() {
                    return Err(DeriveError::new("An edit needs the new prompt."));
                }
                req.workflow = source.spec.workflow.clone();
                let new_seed = follow.how == Derivation::Reroll;
                req.values = source
                    .spec
                    .values
                    .iter()
                    .filter(|(k, _)| {
                        k.as_str() != spec::VIDEO_PARAM && !(new_seed && k.as_str() == "seed")
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if let Some(prompt) = &follow.prompt {
                    req.values
                        .insert("prompt".into(), Value::String(prompt.clone()));
                }
                let input = source
                    .spec
                    .inputs
                    .first()
                    .filter(|i| i.path.exists())
                    .ok_or_else(|| {
                        DeriveError::new(
                            "The video this job started from is no longer on the server.",
                        )
                    })?;
                req.inputs.push(recorded_input(input, MediaFormat::Mp4));
            }
            Derivation::Upscale => {
                let video = source
                    .outputs
                    .iter()
                    .filter(|o| o.kind == OutputKind::Video)
                    .find_map(|o| reuse_file(&o.path, MediaFormat::Mp4))
                    .ok_or_else(|| {
                        DeriveError::new("This result's video is no longer on the server.")
                    })?;
                req.workflow = spec::UPSCALE_WORKFLOW.to_string();
                req.inputs.push(video);
            }
            Derivation::UpscaleCreative
            | Derivation::Vary(_)
            | Derivation::Reframe(_)
            | Derivation::Animate
            | Derivation::Described => {
                return Err(DeriveError::new(
                    "That button does not work on Cosmos results.",
                ))
            }
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::{Kinds, LocalInput};
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn cosmos_jobs_take_one_video_and_fill_every_value() {
        let kinds = Kinds::new(vec![Arc::new(CosmosFamily)]);
        let video = LocalInput {
            path: "/tmp/in.mp4".into(),
            format: MediaFormat::Mp4,
        };
        let req = |values: serde_json::Value, inputs: Vec<LocalInput>| JobRequest {
            workflow: spec::TRANSFER_WORKFLOW.into(),
            values: values.as_object().cloned().unwrap(),
            inputs,
            ..JobRequest::default()
        };
        let mut rng = rand::thread_rng();
        let s = kinds
            .prepare(
                req(
                    json!({"prompt": "a rainy street", "edge": 0.8}),
                    vec![video.clone()],
                ),
                &mut rng,
            )
            .unwrap();
        assert_eq!(s.values["edge"], 0.8);
        assert_eq!(s.values["steps"], 35);
        assert!(s.values["seed"].as_u64().is_some_and(|x| x >= 1));
        assert_eq!(s.inputs[0].mime, "video/mp4");
        let e = kinds
            .prepare(
                req(json!({"prompt": "x", "steps": 500}), vec![video.clone()]),
                &mut rng,
            )
            .unwrap_err();
        assert!(
            e.to_string().contains("steps must be between 1 and 100"),
            "{e}"
        );
        let e = kinds
            .prepare(req(json!({"prompt": "x"}), Vec::new()), &mut rng)
            .unwrap_err();
        assert!(e.to_string().contains("takes 1"), "{e}");
        assert!(kinds.takes_video(spec::UPSCALE_WORKFLOW));
        assert!(!kinds.knows("txt2img"));
    }

    #[test]
    fn a_transfer_result_offers_upscale_and_edit() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.mp4");
        std::fs::write(&out, b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom").unwrap();
        let input = dir.path().join("in.mp4");
        std::fs::write(&input, b"x").unwrap();
        let record = JobRecord {
            id: crate::job::JobId::new(),
            seq: 0,
            spec: JobSpec {
                workflow: spec::TRANSFER_WORKFLOW.into(),
                values: json!({"prompt": "a", "seed": 5, "video": "pending.mp4"})
                    .as_object()
                    .cloned()
                    .unwrap(),
                inputs: vec![InputFile {
                    param: spec::VIDEO_PARAM.into(),
                    path: input,
                    mime: "video/mp4".into(),
                }],
                parent: None,
                sources: Default::default(),
                templates: Default::default(),
            },
            origin: crate::job::Origin::default(),
            state: crate::job::JobState::Finished,
            remote_id: None,
            outputs: vec![crate::job::SavedOutput {
                kind: OutputKind::Video,
                path: out.clone(),
                bytes: 1,
                sidecar: None,
            }],
            attempts: 1,
            created_ms: 0,
            started_ms: None,
            finished_ms: None,
        };
        let f = CosmosFamily;
        assert_eq!(
            f.offers(&record),
            Offers {
                upscale: true,
                edit: true,
                ..Offers::default()
            }
        );
        let none = |_: &crate::job::JobId| None;
        let derive = |how| f.derive(&record, &FollowUp::new(how), &none);
        let up = derive(Derivation::Upscale).unwrap();
        assert_eq!(up.workflow, spec::UPSCALE_WORKFLOW);
        assert_eq!(up.inputs[0].path, out);
        assert_eq!(up.inputs[0].format, MediaFormat::Mp4);
        let reroll = derive(Derivation::Reroll).unwrap();
        assert!(!reroll.values.contains_key("seed") && !reroll.values.contains_key("video"));
        let retry = derive(Derivation::Retry).unwrap();
        assert_eq!(retry.values["seed"], 5);
        assert!(derive(Derivation::Vary(crate::kinds::Strength::Subtle)).is_err());
        assert!(
            derive(Derivation::Edit).is_err(),
            "an edit without a prompt"
        );
    }
}
