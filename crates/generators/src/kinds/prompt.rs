//! A typed prompt with inline flags (`a castle --ar 16:9 --seed 7 --no people`, `{red, blue}`
//! permutations, `--repeat`) turned into the jobs it asks for, on the workflow its options and
//! flags need. Precedence: a command's own option > an inline flag > the style's parameters >
//! the member's settings > the server's defaults > the manifest's default; each value's source
//! is kept for Info. Styles dress the prompt, then the member's suffix is added, then
//! wildcards are filled from the job's seed.

use std::collections::BTreeMap;

use core_comfyui::{Catalog, WorkflowDef, WorkflowKind};
use serde_json::{Map, Value};
use validation::inline::{expand, interpret, split_flags, MAX_JOBS_PER_PROMPT};

use super::catalog::choose_workflow;
use crate::job::ValueSource;
use crate::settings::Preferences;
use crate::styles::{has_wildcards, Library, Style};

/// One job of a prompt: its values, aspect preset, and where each value came from.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedJob {
    pub values: Map<String, Value>,
    pub aspect: Option<String>,
    pub sources: BTreeMap<String, ValueSource>,
    /// Texts with wildcards as typed (before the picks), by value name.
    pub templates: BTreeMap<String, String>,
}

/// The jobs a prompt asks for, all on one workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptPlan {
    pub workflow: String,
    pub jobs: Vec<PlannedJob>,
}

/// What a command gives the planner.
#[derive(Debug, Clone, Copy)]
pub struct PromptInput<'a> {
    pub catalog: &'a Catalog,
    pub library: &'a Library,
    pub kind: WorkflowKind,
    /// The workflow the command names.
    pub named: Option<&'a str>,
    /// The command's options, the prompt among them.
    pub slash: &'a Map<String, Value>,
    pub slash_aspect: Option<&'a str>,
    pub slash_style: Option<&'a str>,
    pub has_inputs: bool,
    pub member: &'a Preferences,
    pub server: &'a Preferences,
}

/// The parameter a flag name sets, for choosing a workflow that takes it.
fn param_of(flag: &str) -> Option<&str> {
    match flag {
        "ar" | "aspect" | "style" | "repeat" => None,
        "no" => Some("negative"),
        other => Some(other),
    }
}

/// The member's setting, else the server's, with its source.
fn layered<T: Clone>(member: &Option<T>, server: &Option<T>) -> Option<(T, ValueSource)> {
    member
        .clone()
        .map(|v| (v, ValueSource::Member))
        .or_else(|| server.clone().map(|v| (v, ValueSource::Server)))
}

/// Whether `def` takes `name` and `v` fits its rule (a default never refuses a job).
fn fits(def: &WorkflowDef, name: &str, v: &Value) -> bool {
    def.manifest.params.get(name).is_some_and(|p| {
        validation::effective_rule(name, &p.rule)
            .check(name, v)
            .is_ok()
    })
}

/// Sets `name` to `v` (from `source`) unless it is set, where the workflow takes it and `v`
/// fits its rule.
fn fill_unset(
    def: &WorkflowDef,
    values: &mut Map<String, Value>,
    sources: &mut BTreeMap<String, ValueSource>,
    name: &str,
    v: Value,
    source: ValueSource,
) {
    if !values.contains_key(name) && fits(def, name, &v) {
        values.insert(name.to_string(), v);
        sources.insert(name.to_string(), source);
    }
}

/// The settings' negative prompt and steps, where nothing set them.
fn fill_settings(
    def: &WorkflowDef,
    values: &mut Map<String, Value>,
    sources: &mut BTreeMap<String, ValueSource>,
    member: &Preferences,
    server: &Preferences,
) {
    if let Some((neg, src)) = layered(&member.negative, &server.negative) {
        fill_unset(def, values, sources, "negative", Value::String(neg), src);
    }
    if let Some((steps, src)) = layered(&member.steps, &server.steps) {
        fill_unset(def, values, sources, "steps", Value::from(steps), src);
    }
}

/// The jobs `input` asks for. The workflow is the named one, or one of `kind` that takes
/// every option and flag given. Every message is for the person who typed it.
pub fn plan_prompt(input: PromptInput<'_>) -> Result<PromptPlan, String> {
    let PromptInput {
        catalog,
        kind,
        slash,
        has_inputs,
        ..
    } = input;
    let named = input.named.map(str::to_string);
    let given_sources = || {
        slash
            .keys()
            .map(|k| (k.clone(), ValueSource::Option))
            .collect::<BTreeMap<_, _>>()
    };
    let text = slash
        .get("prompt")
        .and_then(Value::as_str)
        .map(str::to_string);
    let Some(text) = text else {
        let workflow = choose_workflow(catalog, kind, named, slash, has_inputs)?;
        return Ok(PromptPlan {
            workflow,
            jobs: vec![PlannedJob {
                values: slash.clone(),
                aspect: input.slash_aspect.map(str::to_string),
                sources: given_sources(),
                templates: BTreeMap::new(),
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
    // The preferred workflow, when it is of this kind and takes everything asked for.
    let preferred = layered(&input.member.workflow, &input.server.workflow)
        .map(|(w, _)| w)
        .filter(|w| {
            catalog.get(w).is_some_and(|d| {
                d.manifest.kind == kind
                    && (!has_inputs || d.manifest.params.contains_key("image"))
                    && needs
                        .keys()
                        .all(|k| k == "factor" || d.manifest.params.contains_key(k))
            })
        });
    let named = named.or(preferred);
    // A typo in a flag fits no workflow; then the default one says which flag it does not take.
    let workflow = choose_workflow(catalog, kind, named.clone(), &needs, has_inputs)
        .or_else(|e| choose_workflow(catalog, kind, named, slash, has_inputs).map_err(|_| e))?;
    let Some(def) = catalog.get(&workflow) else {
        // Not in the catalog (a Cosmos kind): its own rules check the flags later.
        return Ok(PromptPlan {
            workflow,
            jobs: vec![PlannedJob {
                values: slash.clone(),
                aspect: input.slash_aspect.map(str::to_string),
                sources: given_sources(),
                templates: BTreeMap::new(),
            }],
        });
    };
    let rules = def.manifest.rules();
    let mut jobs = Vec::new();
    for split in splits {
        let inline = interpret(split, &rules).map_err(|e| e.to_string())?;
        let style = pick_style(&input, inline.style.as_deref())?;
        let mut sources = BTreeMap::new();
        // Inline values first, then the command's own options over them.
        let mut values = inline.values;
        for k in values.keys() {
            sources.insert(k.clone(), ValueSource::Flag);
        }
        for (k, v) in slash {
            values.insert(k.clone(), v.clone());
            sources.insert(k.clone(), ValueSource::Option);
        }
        let mut prompt = match style {
            Some(s) => s.positive_for(&inline.prompt),
            None => inline.prompt.clone(),
        };
        if let Some((suffix, _)) = layered(&input.member.suffix, &input.server.suffix) {
            if !suffix.trim().is_empty() {
                prompt = format!("{prompt}, {}", suffix.trim());
            }
        }
        values.insert("prompt".into(), Value::String(prompt));
        // The style's parameters, then settings, fill what neither the command nor a flag
        // set, where the workflow takes them and they fit its rule.
        if let Some(s) = style {
            for (k, v) in &s.params {
                fill_unset(
                    def,
                    &mut values,
                    &mut sources,
                    k,
                    v.clone(),
                    ValueSource::Style,
                );
            }
        }
        fill_settings(def, &mut values, &mut sources, input.member, input.server);
        let takes_negative = def.manifest.params.get("negative");
        if takes_negative.is_none() && !inline.no.is_empty() {
            return Err(format!(
                "--no cannot apply: workflow {workflow} has no negative prompt"
            ));
        }
        let mut extra_negative: Vec<String> = inline.no;
        // A style's negative goes where the workflow has one.
        extra_negative.extend(style.and_then(|s| s.negative.clone()));
        if let Some(rule) = takes_negative.filter(|_| !extra_negative.is_empty()) {
            let base = values
                .get("negative")
                .or(rule.rule.default.as_ref())
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string);
            let joined = base
                .into_iter()
                .chain(extra_negative)
                .collect::<Vec<_>>()
                .join(", ");
            values.insert("negative".into(), Value::String(joined));
            sources
                .entry("negative".into())
                .or_insert(ValueSource::Flag);
        }
        let sized = slash.contains_key("width") || slash.contains_key("height");
        let sized_inline = values.contains_key("width") || values.contains_key("height");
        let takes_size =
            def.manifest.params.contains_key("width") && def.manifest.params.contains_key("height");
        let aspect = match (input.slash_aspect, inline.aspect) {
            (Some(a), _) => Some((a.to_string(), ValueSource::Option)),
            (None, Some(a)) if !sized => Some((a, ValueSource::Flag)),
            _ => layered(&input.member.aspect, &input.server.aspect)
                .filter(|_| takes_size && !sized && !sized_inline),
        };
        if let Some((_, src)) = &aspect {
            sources.insert("aspect".into(), *src);
        }
        let job = PlannedJob {
            values,
            aspect: aspect.map(|(a, _)| a),
            sources,
            templates: BTreeMap::new(),
        };
        for _ in 0..inline.repeat {
            jobs.push(fill_wildcards(input.library, def, job.clone())?);
        }
        if jobs.len() > MAX_JOBS_PER_PROMPT {
            return Err(format!(
                "that prompt asks for more than {MAX_JOBS_PER_PROMPT} jobs; one prompt may start at most {MAX_JOBS_PER_PROMPT}"
            ));
        }
    }
    Ok(PromptPlan { workflow, jobs })
}

/// A follow-up's request (a button, a form) with the settings filled in where it sets
/// nothing of its own: the negative prompt, steps, and the aspect when it has no size. Most
/// follow-ups inherit their source's values, so this mostly serves jobs that start afresh
/// (a described prompt drawn).
pub fn fill_follow_up(
    catalog: &Catalog,
    req: &mut crate::JobRequest,
    member: &Preferences,
    server: &Preferences,
) {
    let Some(def) = catalog.get(&req.workflow) else {
        return;
    };
    fill_settings(def, &mut req.values, &mut req.sources, member, server);
    let takes_size = ["width", "height"]
        .iter()
        .all(|k| def.manifest.params.contains_key(*k));
    let sized = req.values.contains_key("width") || req.values.contains_key("height");
    if takes_size && !sized && req.aspect.is_none() && req.inputs.is_empty() {
        if let Some((aspect, src)) = layered(&member.aspect, &server.aspect) {
            req.aspect = Some(aspect);
            req.sources.insert("aspect".into(), src);
        }
    }
}

/// The style asked for: the command's option, else `--style`, else the settings'. One the
/// server does not have is refused when asked for, and skipped when it is only a setting
/// (an admin may have removed it).
fn pick_style<'a>(
    input: &PromptInput<'a>,
    flag: Option<&str>,
) -> Result<Option<&'a Style>, String> {
    if let Some(name) = input.slash_style.or(flag) {
        return input
            .library
            .style(name)
            .map(Some)
            .ok_or_else(|| input.library.unknown_style(name));
    }
    Ok(layered(&input.member.style, &input.server.style)
        .and_then(|(name, _)| input.library.style(&name)))
}

/// `job` with the wildcards of its prompt and negative filled in (see [`fill_wildcards_in`]).
fn fill_wildcards(
    library: &Library,
    def: &WorkflowDef,
    mut job: PlannedJob,
) -> Result<PlannedJob, String> {
    fill_wildcards_in(
        library,
        def,
        &mut job.values,
        &mut job.sources,
        &mut job.templates,
    )?;
    Ok(job)
}

/// The values that may hold wildcards.
const WILDCARD_FIELDS: [&str; 2] = ["prompt", "negative"];

/// Fills the wildcards of `values`' prompt and negative from its seed. A job with wildcards
/// and no seed gets a random one first (recorded, so it can be made again); each text as
/// typed goes to `templates`, so a reroll can pick again with its new seed.
pub fn fill_wildcards_in(
    library: &Library,
    def: &WorkflowDef,
    values: &mut Map<String, Value>,
    sources: &mut BTreeMap<String, ValueSource>,
    templates: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    let wild: Vec<(&str, String)> = WILDCARD_FIELDS
        .iter()
        .filter_map(|k| {
            let text = values.get(*k).and_then(Value::as_str)?;
            has_wildcards(text).then(|| (*k, text.to_string()))
        })
        .collect();
    if wild.is_empty() {
        return Ok(());
    }
    let seed = match values.get("seed").and_then(Value::as_u64) {
        Some(s) => s,
        None => {
            let mut rng = rand::thread_rng();
            match def.manifest.params.get("seed") {
                Some(p) => {
                    let s = core_comfyui::manifest::random_seed(&p.rule, &mut rng);
                    values.insert("seed".into(), Value::from(s));
                    sources.insert("seed".into(), ValueSource::Random);
                    s
                }
                None => rand::Rng::gen(&mut rng),
            }
        }
    };
    for (k, text) in wild {
        let filled = library
            .fill_wildcards(&text, seed)
            .map_err(|e| e.to_string())?;
        values.insert(k.into(), Value::String(filled));
        templates.insert(k.into(), text);
    }
    Ok(())
}

/// A reroll of a job whose prompt had wildcards: the texts as typed are filled again with the
/// reroll's new seed, so it picks anew (the same seed would pick the same). Nothing changes
/// for a job without wildcards, or a workflow no longer loaded.
pub fn refill_wildcards(
    catalog: &Catalog,
    library: &Library,
    req: &mut crate::JobRequest,
    templates: &BTreeMap<String, String>,
) -> Result<(), String> {
    let Some(def) = catalog.get(&req.workflow) else {
        return Ok(());
    };
    if templates.is_empty() {
        return Ok(());
    }
    // On a copy: a wildcard file removed since leaves the request as it was.
    let mut values = req.values.clone();
    let (mut sources, mut kept) = (req.sources.clone(), req.templates.clone());
    for (k, text) in templates {
        if WILDCARD_FIELDS.contains(&k.as_str()) && def.manifest.params.contains_key(k) {
            values.insert(k.clone(), Value::String(text.clone()));
        }
    }
    fill_wildcards_in(library, def, &mut values, &mut sources, &mut kept)?;
    (req.values, req.sources, req.templates) = (values, sources, kept);
    Ok(())
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

    const NONE: Preferences = Preferences {
        workflow: None,
        aspect: None,
        negative: None,
        steps: None,
        style: None,
        suffix: None,
    };

    fn input<'a>(
        catalog: &'a Catalog,
        library: &'a Library,
        slash: &'a Map<String, Value>,
    ) -> PromptInput<'a> {
        PromptInput {
            catalog,
            library,
            kind: WorkflowKind::Txt2img,
            named: None,
            slash,
            slash_aspect: None,
            slash_style: None,
            has_inputs: false,
            member: &NONE,
            server: &NONE,
        }
    }

    fn plan(v: Value) -> Result<PromptPlan, String> {
        let (c, l, v) = (catalog(), Library::default(), slash(v));
        plan_prompt(input(&c, &l, &v))
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
        let (c, l, v) = (
            catalog(),
            Library::default(),
            slash(json!({"prompt": "a fox --sed 4"})),
        );
        let e = plan_prompt(PromptInput {
            named: Some("txt2img"),
            ..input(&c, &l, &v)
        })
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
        let (c, l, v) = (catalog(), Library::default(), slash(json!({"factor": 2.0})));
        let p = plan_prompt(PromptInput {
            kind: WorkflowKind::Upscale,
            has_inputs: true,
            ..input(&c, &l, &v)
        })
        .unwrap();
        assert_eq!(p.workflow, "upscale");
        assert_eq!(p.jobs.len(), 1);
    }

    fn plan_with(v: Value, prefs: &Preferences) -> PromptPlan {
        let (c, l, v) = (catalog(), Library::default(), slash(v));
        plan_prompt(PromptInput {
            member: prefs,
            ..input(&c, &l, &v)
        })
        .unwrap()
    }

    #[test]
    fn settings_fill_only_what_nothing_else_set() {
        let prefs = Preferences {
            workflow: Some("txt2img_lora".into()),
            aspect: Some("3:2".into()),
            negative: Some("ugly".into()),
            steps: Some(12),
            style: None,
            suffix: Some("film grain".into()),
        };
        let p = plan_with(json!({"prompt": "a cat"}), &prefs);
        assert_eq!(p.workflow, "txt2img_lora", "the preferred workflow");
        let job = &p.jobs[0];
        assert_eq!(job.values["prompt"], "a cat, film grain");
        assert_eq!(job.values["negative"], "ugly");
        assert_eq!(job.values["steps"], 12);
        assert_eq!(job.aspect.as_deref(), Some("3:2"));
        assert_eq!(job.sources["steps"], ValueSource::Member);
        assert_eq!(job.sources["prompt"], ValueSource::Option);
        // A flag or an option wins; --no adds to the preferred negative.
        let p = plan_with(
            json!({"prompt": "a cat --steps 30 --ar 1:1 --no dogs", "negative": "blurry"}),
            &prefs,
        );
        let job = &p.jobs[0];
        assert_eq!(
            (job.values["steps"].clone(), job.aspect.as_deref()),
            (json!(30), Some("1:1"))
        );
        assert_eq!(job.values["negative"], "blurry, dogs");
        let p = plan_with(json!({"prompt": "a cat", "width": 512}), &prefs);
        assert_eq!(
            p.jobs[0].aspect, None,
            "a size given beats the preferred aspect"
        );
        // A setting the workflow cannot take is left out, never refused.
        let steep = Preferences {
            steps: Some(500),
            workflow: Some("upscale".into()),
            ..Preferences::default()
        };
        let p = plan_with(json!({"prompt": "a cat"}), &steep);
        assert_eq!(
            p.workflow, "txt2img",
            "a workflow of another kind is not used"
        );
        assert!(!p.jobs[0].values.contains_key("steps"));
    }

    #[test]
    fn a_follow_up_gets_the_settings_it_does_not_set_itself() {
        let c = catalog();
        let member = Preferences {
            steps: Some(6),
            aspect: Some("16:9".into()),
            ..NONE
        };
        let server = Preferences {
            negative: Some("ugly".into()),
            steps: Some(3),
            ..NONE
        };
        let mut req = crate::JobRequest {
            workflow: "txt2img".into(),
            values: slash(json!({"prompt": "a fox", "negative": "blurry"})),
            ..crate::JobRequest::default()
        };
        fill_follow_up(&c, &mut req, &member, &server);
        assert_eq!(req.values["steps"], 6);
        assert_eq!(req.sources["steps"], ValueSource::Member);
        assert_eq!(req.values["negative"], "blurry", "its own value stays");
        assert_eq!(req.aspect.as_deref(), Some("16:9"));
        let mut sized = crate::JobRequest {
            workflow: "txt2img".into(),
            values: slash(json!({"prompt": "a fox", "width": 64, "height": 64})),
            aspect: None,
            ..crate::JobRequest::default()
        };
        fill_follow_up(&c, &mut sized, &NONE, &server);
        assert_eq!(sized.aspect, None, "a sized job keeps its size");
        assert_eq!(sized.sources["negative"], ValueSource::Server);
    }

    fn library() -> Library {
        Library::from_parts(
            [(
                "noir".to_string(),
                Style {
                    description: None,
                    positive: "film noir photo of {prompt}".into(),
                    negative: Some("colour".into()),
                    params: serde_json::from_value(json!({"steps": 14, "cfg": 4.5})).unwrap(),
                },
            )],
            [(
                "animal".to_string(),
                vec!["cat".into(), "fox".into(), "owl".into()],
            )],
        )
    }

    #[test]
    fn a_style_dresses_the_prompt_and_yields_to_flags_and_options() {
        let (c, l) = (catalog(), library());
        let v = slash(json!({"prompt": "a street --style noir --cfg 7", "negative": "blurry"}));
        let server = Preferences {
            steps: Some(20),
            ..NONE
        };
        let p = plan_prompt(PromptInput {
            server: &server,
            ..input(&c, &l, &v)
        })
        .unwrap();
        let job = &p.jobs[0];
        assert_eq!(job.values["prompt"], "film noir photo of a street");
        assert_eq!(job.values["negative"], "blurry, colour");
        assert_eq!(
            (job.values["steps"].clone(), job.sources["steps"]),
            (json!(14), ValueSource::Style),
            "the style's steps beat the server's"
        );
        assert_eq!(
            (job.values["cfg"].clone(), job.sources["cfg"]),
            (json!(7.0), ValueSource::Flag)
        );
        // The option names the style too; a misspelt one is refused with the nearest.
        let v = slash(json!({"prompt": "a street"}));
        let e = plan_prompt(PromptInput {
            slash_style: Some("nior"),
            ..input(&c, &l, &v)
        })
        .unwrap_err();
        assert!(e.contains("did you mean \"noir\""), "{e}");
        // A style kept in settings that the server no longer has is skipped.
        let member = Preferences {
            style: Some("gone".into()),
            ..NONE
        };
        let p = plan_prompt(PromptInput {
            member: &member,
            ..input(&c, &l, &v)
        })
        .unwrap();
        assert_eq!(p.jobs[0].values["prompt"], "a street");
    }

    #[test]
    fn a_reroll_picks_its_wildcards_again_with_its_new_seed() {
        let (c, l) = (catalog(), library());
        let v = slash(json!({"prompt": "a __animal__ --seed 11"}));
        let job = plan_prompt(input(&c, &l, &v)).unwrap().jobs.remove(0);
        assert_eq!(job.templates["prompt"], "a __animal__");
        // Rerolls: the filled prompt and no seed (the reroll draws one), the templates kept.
        let picks: std::collections::BTreeSet<String> = (0..40)
            .map(|_| {
                let mut req = crate::JobRequest {
                    workflow: "txt2img".into(),
                    values: slash(json!({"prompt": job.values["prompt"].clone()})),
                    ..crate::JobRequest::default()
                };
                refill_wildcards(&c, &l, &mut req, &job.templates).unwrap();
                assert!(req.values["seed"].is_u64(), "the new seed is recorded");
                req.values["prompt"].as_str().unwrap().to_string()
            })
            .collect();
        assert!(picks.len() >= 2, "new seeds pick anew: {picks:?}");
        // A wildcard file gone since: the reroll keeps its prompt.
        let mut req = crate::JobRequest {
            workflow: "txt2img".into(),
            values: slash(json!({"prompt": "a fox"})),
            ..crate::JobRequest::default()
        };
        let gone = [("prompt".to_string(), "a __gone__".to_string())].into();
        assert!(refill_wildcards(&c, &l, &mut req, &gone).is_err());
        assert_eq!(req.values["prompt"], "a fox");
    }

    #[test]
    fn wildcards_follow_the_seed_and_each_repeat_gets_its_own() {
        let (c, l) = (catalog(), library());
        let run = |text: &str| {
            let v = slash(json!({"prompt": text}));
            plan_prompt(input(&c, &l, &v)).unwrap()
        };
        let a = run("a __animal__ --seed 11");
        let b = run("a __animal__ --seed 11");
        assert_eq!(a.jobs[0].values["prompt"], b.jobs[0].values["prompt"]);
        let picked = a.jobs[0].values["prompt"].as_str().unwrap().to_string();
        assert!(
            ["a cat", "a fox", "an owl", "a owl"].contains(&picked.as_str()),
            "{picked}"
        );
        let r = run("a __animal__ --repeat 4");
        let seeds: std::collections::BTreeSet<u64> = r
            .jobs
            .iter()
            .map(|j| j.values["seed"].as_u64().unwrap())
            .collect();
        assert_eq!(seeds.len(), 4, "each repeat has its own recorded seed");
        assert!(r
            .jobs
            .iter()
            .all(|j| j.sources["seed"] == ValueSource::Random));
        let v = slash(json!({"prompt": "a __animl__"}));
        let e = plan_prompt(input(&c, &l, &v)).unwrap_err();
        assert!(e.contains("did you mean __animal__"), "{e}");
    }
}
