//! The job journal: every job persisted, so a restart loses nothing. Behind a trait so a
//! server database can follow; [`SqliteJournal`] (one file under the data directory) is the
//! default and [`MemoryJournal`] serves tests.

mod memory;
mod sqlite;

use std::path::PathBuf;

pub use memory::MemoryJournal;
pub use sqlite::SqliteJournal;

use crate::job::{JobId, JobRecord, JobState, SavedOutput};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("the job journal {path} cannot be opened: {reason}")]
    Open { path: PathBuf, reason: String },
    /// The file exists but is not a journal, or is damaged. It is never overwritten.
    #[error("the job journal {path} is damaged or not a comfycord journal ({reason}); move it aside to start with an empty one")]
    Corrupt { path: PathBuf, reason: String },
    #[error("job journal: {0}")]
    Storage(String),
    #[error("job {0} is not in the journal")]
    UnknownJob(JobId),
}

/// Where jobs are kept. Calls are short and synchronous (SQLite in WAL mode).
pub trait Journal: Send + Sync + 'static {
    /// Adds a new job; its `seq` is assigned by the journal and returned.
    fn insert(&self, record: &JobRecord) -> Result<i64, JournalError>;
    /// Moves a job to a new state, stamping `started_ms` on Running and `finished_ms` on
    /// Finished/Failed/Cancelled.
    fn set_state(&self, id: &JobId, state: &JobState, at_ms: i64) -> Result<(), JournalError>;
    /// The backend's id for the job, once submitted there (and the attempt count).
    fn set_remote(
        &self,
        id: &JobId,
        remote_id: Option<&str>,
        attempts: u32,
    ) -> Result<(), JournalError>;
    /// Saved outputs and the move to Finished, in one step.
    fn finish(&self, id: &JobId, outputs: &[SavedOutput], at_ms: i64) -> Result<(), JournalError>;
    /// Marks a finished job delivered. Returns false if it already was: the caller must not
    /// deliver it again (this is what makes delivery exactly-once).
    fn mark_delivered(&self, id: &JobId) -> Result<bool, JournalError>;
    fn get(&self, id: &JobId) -> Result<Option<JobRecord>, JournalError>;
    /// Jobs that are waiting, running, or finished but not delivered, in submission order.
    fn unfinished(&self) -> Result<Vec<JobRecord>, JournalError>;
    /// One user's jobs, newest first.
    fn recent_for_owner(
        &self,
        owner: u64,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<JobRecord>, JournalError>;
    /// A small key-value store for process-wide values (e.g. each backend's stable client id).
    fn meta_get(&self, key: &str) -> Result<Option<String>, JournalError>;
    fn meta_set(&self, key: &str, value: &str) -> Result<(), JournalError>;
    /// Removes a value; removing one that is not there is not an error.
    fn meta_delete(&self, key: &str) -> Result<(), JournalError>;
}

/// The WebSocket client id to use for a backend, the same across restarts: ComfyUI sends a
/// prompt's events to the client id that queued it, so a restarted process must reuse it to
/// keep following its jobs.
pub fn stable_client_id(journal: &dyn Journal, backend: &str) -> Result<String, JournalError> {
    let key = format!("client_id:{backend}");
    if let Some(id) = journal.meta_get(&key)? {
        return Ok(id);
    }
    let id = format!("comfycord-{:016x}", rand::random::<u64>());
    journal.meta_set(&key, &id)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_stable_per_backend() {
        let j = MemoryJournal::new();
        let a = stable_client_id(&j, "a").unwrap();
        assert_eq!(stable_client_id(&j, "a").unwrap(), a);
        assert_ne!(stable_client_id(&j, "b").unwrap(), a);
    }
}
