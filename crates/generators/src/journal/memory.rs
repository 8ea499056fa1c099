//! An in-memory journal for tests and `comfycord run`.

use std::collections::HashMap;
use std::sync::Mutex;

use indexmap::IndexMap;

use super::{Journal, JournalError};
use crate::job::{JobId, JobRecord, JobState, SavedOutput};

#[derive(Debug, Default)]
struct Inner {
    jobs: IndexMap<JobId, JobRecord>,
    next_seq: i64,
    meta: HashMap<String, String>,
}

/// Keeps jobs in memory; everything is lost with the process.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    inner: Mutex<Inner>,
}

impl MemoryJournal {
    pub fn new() -> MemoryJournal {
        MemoryJournal::default()
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Inner) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

fn job<'a>(inner: &'a mut Inner, id: &JobId) -> Result<&'a mut JobRecord, JournalError> {
    inner
        .jobs
        .get_mut(id)
        .ok_or_else(|| JournalError::UnknownJob(id.clone()))
}

impl Journal for MemoryJournal {
    fn insert(&self, record: &JobRecord) -> Result<i64, JournalError> {
        self.with(|i| {
            i.next_seq += 1;
            let mut r = record.clone();
            r.seq = i.next_seq;
            i.jobs.insert(r.id.clone(), r);
            Ok(i.next_seq)
        })
    }

    fn set_state(&self, id: &JobId, state: &JobState, at_ms: i64) -> Result<(), JournalError> {
        self.with(|i| {
            let r = job(i, id)?;
            match state {
                JobState::Running { .. } if r.started_ms.is_none() => r.started_ms = Some(at_ms),
                JobState::Finished | JobState::Failed { .. } | JobState::Cancelled => {
                    r.finished_ms = Some(at_ms)
                }
                _ => {}
            }
            r.state = state.clone();
            Ok(())
        })
    }

    fn set_remote(
        &self,
        id: &JobId,
        remote_id: Option<&str>,
        attempts: u32,
    ) -> Result<(), JournalError> {
        self.with(|i| {
            let r = job(i, id)?;
            r.remote_id = remote_id.map(str::to_string);
            r.attempts = attempts;
            Ok(())
        })
    }

    fn finish(&self, id: &JobId, outputs: &[SavedOutput], at_ms: i64) -> Result<(), JournalError> {
        self.with(|i| {
            let r = job(i, id)?;
            r.outputs = outputs.to_vec();
            r.state = JobState::Finished;
            r.finished_ms = Some(at_ms);
            Ok(())
        })
    }

    fn mark_delivered(&self, id: &JobId) -> Result<bool, JournalError> {
        self.with(|i| {
            let r = job(i, id)?;
            if r.state == JobState::Finished {
                r.state = JobState::Delivered;
                Ok(true)
            } else {
                Ok(false)
            }
        })
    }

    fn get(&self, id: &JobId) -> Result<Option<JobRecord>, JournalError> {
        self.with(|i| Ok(i.jobs.get(id).cloned()))
    }

    fn unfinished(&self) -> Result<Vec<JobRecord>, JournalError> {
        self.with(|i| {
            let mut v: Vec<JobRecord> = i
                .jobs
                .values()
                .filter(|r| r.state.is_active() || r.state == JobState::Finished)
                .cloned()
                .collect();
            v.sort_by_key(|r| r.seq);
            Ok(v)
        })
    }

    fn recent_for_owner(
        &self,
        owner: u64,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<JobRecord>, JournalError> {
        self.with(|i| {
            let mut v: Vec<JobRecord> = i
                .jobs
                .values()
                .filter(|r| r.origin.owner == owner)
                .cloned()
                .collect();
            v.sort_by_key(|r| std::cmp::Reverse(r.seq));
            Ok(v.into_iter().skip(offset).take(limit).collect())
        })
    }

    fn meta_get(&self, key: &str) -> Result<Option<String>, JournalError> {
        self.with(|i| Ok(i.meta.get(key).cloned()))
    }

    fn meta_set(&self, key: &str, value: &str) -> Result<(), JournalError> {
        self.with(|i| {
            i.meta.insert(key.to_string(), value.to_string());
            Ok(())
        })
    }

    fn meta_delete(&self, key: &str) -> Result<(), JournalError> {
        self.with(|i| {
            i.meta.remove(key);
            Ok(())
        })
    }
}
