//! Placeholder: written by the journal helper.
use super::{Journal, JournalError};
use crate::job::{JobId, JobRecord, JobState, SavedOutput};

/// SQLite journal (being written).
#[derive(Debug)]
pub struct SqliteJournal;
