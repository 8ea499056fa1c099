//! From a validated request to a delivered result: the [`Generator`] trait and its ComfyUI
//! implementation, the fair [`scheduler`], the [`journal`] that survives restarts, and
//! [`outputs`] (file names, sidecars, fitting images under a byte limit, retention).
//!
//! No Discord types: a job's origin is plain ids.

pub mod job;
pub mod journal;
pub mod outputs;

pub use job::{InputFile, JobId, JobRecord, JobSpec, JobState, Origin, OutputKind, SavedOutput};
pub use journal::{Journal, JournalError, MemoryJournal, SqliteJournal};
