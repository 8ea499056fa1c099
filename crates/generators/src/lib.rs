//! From a validated request to a delivered result: the [`Generator`] trait and its ComfyUI
//! implementation, the fair [`scheduler`], the [`journal`] that survives restarts, and
//! [`outputs`] (file names, sidecars, fitting images under a byte limit, retention).
//!
//! No Discord types: a job's origin is plain ids.

pub mod comfy;
pub mod cosmos;
pub mod fair_queue;
pub mod follow;
pub mod generator;
pub mod job;
pub mod journal;
pub mod kinds;
pub mod outputs;
pub mod scheduler;
pub mod settings;
pub mod styles;

pub use comfy::{plan_for, progress_update, ComfyGenerator};
pub use follow::{Follower, JobEnd, Step};
pub use generator::{GenEvent, GenJob, GenOutcome, Generator, Probe, RunControl};
pub use job::{
    now_ms, upscale_target, InputFile, JobId, JobRecord, JobSpec, JobState, Origin, OutputKind,
    SavedOutput, ValueSource,
};
pub use journal::{stable_client_id, Journal, JournalError, MemoryJournal, SqliteJournal};
pub use kinds::{
    Derivation, DeriveError, Direction, FollowUp, JobRequest, Kinds, LocalInput, Offers,
    PrepareError, Reframe, Strength,
};
pub use scheduler::{
    BackendStatus, CancelError, JobPlace, Notice, Scheduler, SchedulerConfig, SchedulerStatus,
    SubmitError,
};
