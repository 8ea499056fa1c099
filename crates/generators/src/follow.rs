//! Following jobs from the scheduler's notices: the one road from a [`Notice`] to what a
//! front-end shows. Discord and the terminal both feed their notices here and render what
//! comes out, so they agree on every phase (started, retrying, ended).

use std::collections::HashMap;

use progress::{JobPlan, Snapshot, Tracker, Update};
use tokio::time::Instant;

use crate::job::{JobId, SavedOutput};
use crate::scheduler::Notice;

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEnd {
    Finished(Vec<SavedOutput>),
    Failed(String),
    Cancelled,
}

/// What a notice means for the front-end.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The job's progress changed: show this snapshot (latest wins).
    Show(Snapshot),
    /// The plan arrived: nothing new to show yet.
    Planned,
    /// The job is over; `last` is its final snapshot, and the follower forgot it.
    End { end: JobEnd, last: Snapshot },
}

/// The trackers of the jobs being followed.
#[derive(Debug, Default)]
pub struct Follower {
    jobs: HashMap<JobId, Tracker>,
}

impl Follower {
    pub fn new() -> Follower {
        Follower::default()
    }

    /// Whether a notice for this job has been seen (and the job has not ended).
    pub fn follows(&self, id: &JobId) -> bool {
        self.jobs.contains_key(id)
    }

    /// Jobs followed now.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Feeds one notice, seen at `now`. A job is followed from its first notice on, whatever
    /// it is (after a restart the first one may be progress).
    pub fn follow(&mut self, notice: Notice, now: Instant) -> (JobId, Step) {
        let (id, update) = match notice {
            Notice::Queued { id, position } => (
                id,
                Update::Queued {
                    position: Some(position),
                },
            ),
            Notice::Started { id, .. } => (id, Update::Started),
            Notice::Plan { id, plan } => {
                self.tracker(&id, now).set_plan(plan);
                return (id, Step::Planned);
            }
            Notice::Progress { id, update } => (id, update),
            Notice::Retrying { id, reason } => (id, Update::Retrying { reason }),
            Notice::Finished { id, outputs } => {
                return self.end(id, JobEnd::Finished(outputs), Update::Finished, now)
            }
            Notice::Failed { id, reason } => {
                let update = Update::Failed {
                    reason: reason.clone(),
                };
                return self.end(id, JobEnd::Failed(reason), update, now);
            }
            Notice::Cancelled { id } => {
                return self.end(id, JobEnd::Cancelled, Update::Cancelled, now)
            }
        };
        let snapshot = self.tracker(&id, now).apply(update, now).clone();
        (id, Step::Show(snapshot))
    }

    fn tracker(&mut self, id: &JobId, now: Instant) -> &mut Tracker {
        self.jobs
            .entry(id.clone())
            .or_insert_with(|| Tracker::new(JobPlan::default(), now))
    }

    fn end(&mut self, id: JobId, end: JobEnd, update: Update, now: Instant) -> (JobId, Step) {
        let mut tracker = self
            .jobs
            .remove(&id)
            .unwrap_or_else(|| Tracker::new(JobPlan::default(), now));
        let last = tracker.apply(update, now).clone();
        (id, Step::End { end, last })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use progress::{NodeRole, Phase, PlannedNode};
    use std::time::Duration;

    fn plan() -> JobPlan {
        let mut plan = JobPlan::default();
        plan.nodes.insert(
            "3".into(),
            PlannedNode {
                title: "KSampler".into(),
                role: NodeRole::Sampler,
                steps: Some(4),
            },
        );
        plan
    }

    fn shown(step: Step) -> Snapshot {
        match step {
            Step::Show(s) => s,
            other => panic!("expected a snapshot, got {other:?}"),
        }
    }

    #[test]
    fn a_job_goes_from_queued_through_its_plan_to_its_end() {
        let mut f = Follower::new();
        let id = JobId::new();
        let t0 = Instant::now();
        let (_, s) = f.follow(
            Notice::Queued {
                id: id.clone(),
                position: 2,
            },
            t0,
        );
        assert_eq!(shown(s).queue_position, Some(2));
        let (_, s) = f.follow(
            Notice::Started {
                id: id.clone(),
                backend: "local".into(),
            },
            t0,
        );
        assert_eq!(shown(s).phase, Phase::Loading);
        // The plan keeps the phase (a late plan does not send the job back to the queue).
        let (_, s) = f.follow(
            Notice::Plan {
                id: id.clone(),
                plan: plan(),
            },
            t0,
        );
        assert_eq!(s, Step::Planned);
        let (_, s) = f.follow(
            Notice::Progress {
                id: id.clone(),
                update: Update::Step {
                    node: Some("3".into()),
                    value: 2.0,
                    max: 4.0,
                },
            },
            t0 + Duration::from_secs(2),
        );
        let s = shown(s);
        assert_eq!(s.step, Some((2, 4)));
        assert_eq!(s.elapsed, Duration::from_secs(2));
        assert!(f.follows(&id));
        let (got, s) = f.follow(
            Notice::Finished {
                id: id.clone(),
                outputs: Vec::new(),
            },
            t0 + Duration::from_secs(3),
        );
        assert_eq!(got, id);
        match s {
            Step::End { end, last } => {
                assert_eq!(end, JobEnd::Finished(Vec::new()));
                assert_eq!(last.phase, Phase::Done);
                assert_eq!(last.elapsed, Duration::from_secs(3));
            }
            other => panic!("expected the end, got {other:?}"),
        }
        assert!(f.is_empty(), "an ended job is forgotten");
    }

    #[test]
    fn an_end_without_earlier_notices_still_has_a_final_snapshot() {
        let mut f = Follower::new();
        let id = JobId::new();
        let (_, s) = f.follow(
            Notice::Failed {
                id,
                reason: "out of memory".into(),
            },
            Instant::now(),
        );
        match s {
            Step::End { end, last } => {
                assert_eq!(end, JobEnd::Failed("out of memory".into()));
                assert_eq!(last.phase, Phase::Failed);
                assert_eq!(last.error.as_deref(), Some("out of memory"));
            }
            other => panic!("expected the end, got {other:?}"),
        }
        assert_eq!(f.len(), 0);
    }
}
