//! A typed prompt with inline flags (`a castle --ar 16:9 --seed 7 --no people`, `{red, blue}`
//! permutations, `--repeat`) turned into the jobs it asks for, on the workflow its options and
//! flags need. Precedence: a command's own option > an inline flag > the manifest's default.

use core_comfyui::{Catalog, WorkflowKind};
use serde_json::{Map, Value};
use validation::inline::{expand, interpret, split_flags, MAX_JOBS_PER_PROMPT};

use super::catalog::choose_workflow;

/// One job of a prompt: its values and aspect preset.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedJob {
    pub values: Map<String, Value>,
    pub aspect: Option<String>,
}

/// The jobs a prompt asks for, all on one workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptPlan {
    pub workflow: String,
    pub jobs: Vec<PlannedJob>,
}

/// The parameter a flag name sets, for choosing a workflow that takes it.
fn param_of(flag: &str) -> Option<&str> {
    match flag {
        "ar" | "aspect" | "style" | "repeat" => None,
        "no" => Some("negative"),
        other => Some(other),
    }
}

/// The jobs `slash` (a command's options, the prompt among them) asks for. The workflow is
/// `named`, or one of `kind` that takes every option and flag given. Every message is for the
/// person who typed it.
pub fn plan_prompt(
    catalog: &Catalog,
    kind: WorkflowKind,
    named: Option<String>,
    slash: Map<String, Value>,
    slash_aspect: Option<String>,
    has_inputs: bool,
) -> Result<PromptPlan, String> {
    let text = slash
        .get("prompt")
        .and_then(Value::as_str)
        .map(str::to_string);
    let Some(text) = text else {
        let workflow = choose_workflow(catalog, kind, named, &slash, has_inputs)?;
        return Ok(PromptPlan {
            workflow,
            jobs: vec![PlannedJob {
                values: slash,
                aspect: slash_aspect,
            }],
        });
    };
    let splits: Vec<_> = expand(&text)
        .map_err(|e| e.to_string())?
        .iter()
        .map(|t| split_flags(t))
        .collect();
    // The workflow must take what the flags set, as it must take the command's options.
    let mut needs = slash.clone();
    for (flag, _) in splits.iter().flat_map(|s| s.flags.iter()) {
        if let Some(p) = param_of(flag) {
            needs.entry(p.to_string()).or_insert(Value::Null);
        }
    }
    // A typo in a flag fits no workflow; then the default one says which flag it does not take.
    let workflow = choose_workflow(catalog, kind, named.clone(), &needs, has_inputs)
        .or_else(|e| choose_workflow(catalog, kind, named, &slash, has_inputs).map_err(|_| e))?;
    let Some(def) = catalog.get(&workflow) else {
        // Not in the catalog (a Cosmos kind): its own rules check the flags later.
        return Ok(PromptPlan {
            workflow,
            jobs: vec![PlannedJob {
                values: slash,
                aspect: slash_aspect,
            }],
        });
    };
    let rules = def.manifest.rules();
    let mut jobs = Vec::new();
    for split in splits {
        let inline = interpret(split, &rules).map_err(|e| e.to_string())?;
        if let Some(style) = &inline.style {
            return Err(format!(
                "--style {style}: no styles are set up on this server"
            ));
        }
        // Inline values first, then the command's own options over them.
        let mut values = inline.values;
        values.insert("prompt".into(), Value::String(inline.prompt.clone()));
        for (k, v) in &slash {
            if k != "prompt" {
                values.insert(k.clone(), v.clone());
            }
        }
        if !inline.no.is_empty() {
            let Some(rule) = def.manifest.params.get("negative") else {
                return Err(format!(
                    "--no cannot apply: workflow {workflow} has no negative prompt"
                ));
            };
            let base = values
                .get("negative")
                .or(rule.rule.default.as_ref())
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string);
            let joined = base
                .into_iter()
                .chain(inline.no)
                .collect::<Vec<_>>()
                .join(", ");
            values.insert("negative".into(), Value::String(joined));
        }
        let sized = slash.contains_key("width") || slash.contains_key("height");
        let aspect = slash_aspect
            .clone()
            .or(if sized { None } else { inline.aspect });
        let job = PlannedJob { values, aspect };
        for _ in 0..inline.repeat {
            jobs.push(job.clone());
        }
        if jobs.len() > MAX_JOBS_PER_PROMPT {
            return Err(format!(
                "that prompt asks for more than {MAX_JOBS_PER_PROMPT} jobs; one prompt may start at most {MAX_JOBS_PER_PROMPT}"
            ));
        }
    }
    Ok(PromptPlan { workflow, jobs })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    fn catalog() -> Catalog {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workflows");
        Catalog::load_dir(&dir).unwrap().0
    }

    fn slash(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn plan(v: Value) -> Result<PromptPlan, String> {
        plan_prompt(
            &catalog(),
            WorkflowKind::Txt2img,
            None,
            slash(v),
            None,
            false,
        )
    }

    #[test]
    fn flags_become_values_and_leave_the_prompt() {
        let p = plan(json!({"prompt": "a castle --ar 16:9 --seed 7 --steps 12 --cfg 5"})).unwrap();
        assert_eq!(p.workflow, "txt2img");
        assert_eq!(p.jobs.len(), 1);
        let job = &p.jobs[0];
        assert_eq!(job.values["prompt"], "a castle");
        assert_eq!(job.values["seed"], 7);
        assert_eq!(job.values["steps"], 12);
        assert_eq!(job.values["cfg"], 5.0);
        assert_eq!(job.aspect.as_deref(), Some("16:9"));
    }

    #[test]
    fn a_command_option_beats_a_flag_and_no_adds_to_the_negative() {
        let p = plan(json!({"prompt": "a castle --steps 12 --ar 16:9 --no people", "steps": 30, "width": 512})).unwrap();
        let job = &p.jobs[0];
        assert_eq!(job.values["steps"], 30, "the slash option wins");
        assert_eq!(job.aspect, None, "a width given as an option beats --ar");
        // Added to the manifest's default negative.
        let default = catalog().get("txt2img").unwrap().manifest.params["negative"]
            .rule
            .default
            .clone();
        let expected = match default
            .as_ref()
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            Some(d) => format!("{d}, people"),
            None => "people".to_string(),
        };
        assert_eq!(job.values["negative"], json!(expected));
        let p = plan(json!({"prompt": "x --no cars", "negative": "blurry"})).unwrap();
        assert_eq!(p.jobs[0].values["negative"], "blurry, cars");
    }

    #[test]
    fn a_flag_picks_the_workflow_that_takes_it() {
        let p = plan(json!({"prompt": "a fox --lora x.safetensors"})).unwrap();
        assert_eq!(p.workflow, "txt2img_lora");
        let e = plan(json!({"prompt": "a fox --denoize 0.5"})).unwrap_err();
        assert!(e.starts_with("unknown flag --denoize;"), "{e}");
        let e = plan(json!({"prompt": "a fox --lora x", "nope": 1})).unwrap_err();
        assert!(e.contains("No txt2img workflow takes"), "{e}");
        let e = plan_prompt(
            &catalog(),
            WorkflowKind::Txt2img,
            Some("txt2img".into()),
            slash(json!({"prompt": "a fox --sed 4"})),
            None,
            false,
        )
        .unwrap_err();
        assert_eq!(e, "unknown flag --sed; did you mean --seed?");
        let e = plan(json!({"prompt": "a fox --style noir"})).unwrap_err();
        assert!(e.contains("no styles"), "{e}");
    }

    #[test]
    fn permutations_and_repeats_are_separate_jobs() {
        let p = plan(json!({"prompt": "a {red, blue} car --repeat 2 --seed 3"})).unwrap();
        let prompts: Vec<_> = p.jobs.iter().map(|j| j.values["prompt"].clone()).collect();
        assert_eq!(
            prompts,
            [
                json!("a red car"),
                json!("a red car"),
                json!("a blue car"),
                json!("a blue car")
            ]
        );
        assert!(p.jobs.iter().all(|j| j.values["seed"] == 3));
        let e = plan(json!({"prompt": "{a, b, c} --repeat 3"})).unwrap_err();
        assert!(e.contains("at most 8"), "{e}");
        // Without a prompt (an upscale), options pass through as they are.
        let p = plan_prompt(
            &catalog(),
            WorkflowKind::Upscale,
            None,
            slash(json!({"factor": 2.0})),
            None,
            true,
        )
        .unwrap();
        assert_eq!(p.workflow, "upscale");
        assert_eq!(p.jobs.len(), 1);
    }
}
