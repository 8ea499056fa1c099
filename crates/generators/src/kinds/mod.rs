//! What a job is before it runs: the seam every backend kind implements. A [`JobFamily`]
//! (the workflows of the catalog, the Cosmos host) knows its workflows' rules, completes a
//! request into a reproducible [`JobSpec`], says which follow-ups a result offers and builds
//! those follow-ups from the journal. [`Kinds`] routes each workflow name to its family, so a
//! front-end never names a backend kind.

pub mod catalog;
pub mod describe;
pub mod prompt;
pub mod reframe;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value};
use validation::{MediaFormat, Refusal};

use crate::job::{JobId, JobRecord, JobSpec, ValueSource};

pub use catalog::{choose_workflow, kind_name, vary_image, CatalogFamily};
pub use prompt::{
    fill_follow_up, plan_prompt, refill_wildcards, PlannedJob, PromptInput, PromptPlan,
};
pub use reframe::{Direction, Padding, Reframe};

/// An input file already on disk and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalInput {
    pub path: PathBuf,
    pub format: MediaFormat,
}

/// What someone asked for, in their terms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobRequest {
    pub workflow: String,
    /// Values by parameter name, typed as given (strings, numbers, booleans). An upscale
    /// `factor` becomes a target size when the workflow takes one instead.
    pub values: Map<String, Value>,
    /// An aspect preset instead of width and height.
    pub aspect: Option<String>,
    /// Files for the workflow's image (or video) parameters, in order.
    pub inputs: Vec<LocalInput>,
    /// The job this one derives from (a button on its result).
    pub parent: Option<JobId>,
    /// Where the values came from (a command's planner knows; a button does not say).
    pub sources: BTreeMap<String, ValueSource>,
    /// Texts with wildcards as typed, for a reroll to pick again.
    pub templates: BTreeMap<String, String>,
}

/// Why a request cannot become a job; every message is fit to show the person who asked,
/// except [`PrepareError::Internal`].
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
    #[error("a blend takes {min} to {max} images; {count} given")]
    BlendImages {
        count: usize,
        min: usize,
        max: usize,
    },
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// The workflow itself is broken (an admin's problem, not the user's).
    #[error("the workflow cannot be prepared: {0}")]
    Internal(String),
}

/// A follow-up on a finished (or failed) job, in neutral terms: buttons and the CLI say
/// which one they mean, the job's family says what it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Derivation {
    /// The same job with a new seed.
    Reroll,
    /// The same job again, seed and all (after a failure).
    Retry,
    /// The same job, seed and all, with another prompt ([`FollowUp::prompt`]).
    Edit,
    /// A model upscale of one image.
    Upscale,
    /// Upscale, then re-diffuse at low denoise: new detail, same picture.
    UpscaleCreative,
    Vary(Strength),
    /// The image extended by outpainting.
    Reframe(Reframe),
    Animate,
    /// A generation from prompt [`FollowUp::image`] of a describe result.
    Described,
}

/// How far a variation departs from its source (the denoise comes from the workflow's
/// manifest, `vary.subtle` / `vary.strong`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strength {
    Subtle,
    Strong,
}

/// One follow-up: what, on which image of the source (0-based; a batch has several), and
/// the prompt to use instead of the source's (the Edit form, remix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUp {
    pub how: Derivation,
    pub image: usize,
    pub prompt: Option<String>,
}

impl FollowUp {
    /// `how` on the first image, with the source's prompt.
    pub fn new(how: Derivation) -> FollowUp {
        FollowUp {
            how,
            image: 0,
            prompt: None,
        }
    }
}

/// Which follow-ups a result offers (Reroll, Info and Delete always apply).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offers {
    /// Images in the result: 2–4 make a grid with a pick and a variation per image.
    pub images: usize,
    pub upscale: bool,
    pub upscale_creative: bool,
    pub vary: bool,
    pub edit: bool,
    pub animate: bool,
    /// Zoom Out and Pan.
    pub reframe: bool,
    /// Make Square (a reframe of an image that is not square).
    pub square: bool,
    /// Prompts a describe result offers (buttons 1–4).
    pub prompts: usize,
}

/// Finds a job in the journal (the source's ancestors, for a prompt a follow-up inherits).
pub type Lookup<'a> = &'a dyn Fn(&JobId) -> Option<JobRecord>;

/// Parents followed at most when looking for an inherited prompt.
const MAX_LINEAGE: usize = 32;

/// The prompt a follow-up on `source` inherits: its own, else the nearest ancestor's (an
/// upscale has none of its own, but a variation of it should keep drawing the same thing).
pub fn lineage_prompt(source: &JobRecord, lookup: Lookup<'_>) -> Option<String> {
    let mut record = std::borrow::Cow::Borrowed(source);
    for _ in 0..MAX_LINEAGE {
        if let Some(p) = record.spec.prompt() {
            return Some(p.to_string());
        }
        let parent = record.spec.parent.clone()?;
        record = std::borrow::Cow::Owned(lookup(&parent)?);
    }
    None
}

/// Why a follow-up cannot start; the message is for the person who asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DeriveError(pub String);

impl DeriveError {
    pub fn new(message: impl Into<String>) -> DeriveError {
        DeriveError(message.into())
    }
}

/// One kind of backend's notion of a job.
pub trait JobFamily: Send + Sync + std::fmt::Debug {
    /// The workflow names this family runs.
    fn workflows(&self) -> Vec<String>;
    /// Whether this family runs `workflow`.
    fn runs(&self, workflow: &str) -> bool;
    /// Whether `workflow` takes a video as input.
    fn takes_video(&self, workflow: &str) -> bool;
    /// Whether `workflow` may only run in age-restricted channels.
    fn nsfw(&self, workflow: &str) -> bool;
    /// Checks `req` against the workflow's rules and fixes every value (defaults, the seed).
    fn prepare(
        &self,
        req: JobRequest,
        rng: &mut dyn rand::RngCore,
    ) -> Result<JobSpec, PrepareError>;
    /// The follow-ups `record`'s result offers.
    fn offers(&self, record: &JobRecord) -> Offers;
    /// The request a follow-up on `source` runs; `lookup` finds its ancestors.
    fn derive(
        &self,
        source: &JobRecord,
        follow: &FollowUp,
        lookup: Lookup<'_>,
    ) -> Result<JobRequest, DeriveError>;
}

/// Every job family the engine runs, routed by workflow name.
#[derive(Debug, Clone, Default)]
pub struct Kinds {
    families: Vec<Arc<dyn JobFamily>>,
}

impl Kinds {
    pub fn new(families: Vec<Arc<dyn JobFamily>>) -> Kinds {
        Kinds { families }
    }

    fn family(&self, workflow: &str) -> Option<&dyn JobFamily> {
        self.families
            .iter()
            .find(|f| f.runs(workflow))
            .map(|f| f.as_ref())
    }

    /// Every workflow name, family by family.
    pub fn workflows(&self) -> Vec<String> {
        self.families.iter().flat_map(|f| f.workflows()).collect()
    }

    pub fn knows(&self, workflow: &str) -> bool {
        self.family(workflow).is_some()
    }

    pub fn takes_video(&self, workflow: &str) -> bool {
        self.family(workflow)
            .is_some_and(|f| f.takes_video(workflow))
    }

    pub fn nsfw(&self, workflow: &str) -> bool {
        self.family(workflow).is_some_and(|f| f.nsfw(workflow))
    }

    /// The job `req` asks for, every value fixed; the one place a request becomes a job.
    pub fn prepare(
        &self,
        req: JobRequest,
        rng: &mut dyn rand::RngCore,
    ) -> Result<JobSpec, PrepareError> {
        match self.family(&req.workflow) {
            Some(f) => f.prepare(req, rng),
            None => Err(PrepareError::UnknownWorkflow {
                available: self.workflows().join(", "),
                name: req.workflow,
            }),
        }
    }

    /// No follow-ups for a job whose workflow is no longer loaded.
    pub fn offers(&self, record: &JobRecord) -> Offers {
        self.family(&record.spec.workflow)
            .map(|f| f.offers(record))
            .unwrap_or_default()
    }

    pub fn derive(
        &self,
        source: &JobRecord,
        follow: &FollowUp,
        lookup: Lookup<'_>,
    ) -> Result<JobRequest, DeriveError> {
        let family = self.family(&source.spec.workflow).ok_or_else(|| {
            DeriveError(format!(
                "Workflow {} is no longer loaded.",
                source.spec.workflow
            ))
        })?;
        family.derive(source, follow, lookup)
    }
}

/// Bytes read to tell a file's format by its magic bytes.
const SNIFF_BYTES: u64 = 64;

/// A file of a finished job as an input of the next one, when it is still on disk; its
/// format is read from its first bytes.
pub(crate) fn reuse_file(path: &std::path::Path, fallback: MediaFormat) -> Option<LocalInput> {
    use std::io::Read as _;
    let mut head = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(SNIFF_BYTES)
        .read_to_end(&mut head)
        .ok()?;
    Some(LocalInput {
        path: path.to_path_buf(),
        format: MediaFormat::sniff(&head).unwrap_or(fallback),
    })
}

/// A job's recorded input, in the format it was recorded with.
pub(crate) fn recorded_input(input: &crate::job::InputFile, fallback: MediaFormat) -> LocalInput {
    LocalInput {
        path: input.path.clone(),
        format: MediaFormat::from_mime(&input.mime).unwrap_or(fallback),
    }
}
