//! Round-robin between users: each turn takes the oldest job of the next user in line, so one
//! user's ten jobs do not hold back another user's one. Pure data, no IO.

use std::collections::VecDeque;

use indexmap::IndexMap;

use crate::job::JobId;

/// Waiting jobs, per user, in submission order.
#[derive(Debug, Default, Clone)]
pub struct FairQueue {
    users: IndexMap<u64, VecDeque<JobId>>,
    /// Index of the user whose turn is next.
    cursor: usize,
    len: usize,
    generation: u64,
}

impl FairQueue {
    pub fn new() -> FairQueue {
        FairQueue::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Jobs this user has waiting.
    pub fn count_for(&self, user: u64) -> usize {
        self.users.get(&user).map_or(0, VecDeque::len)
    }

    /// Adds a job at the end of its user's line.
    pub fn push(&mut self, user: u64, id: JobId) {
        self.users.entry(user).or_default().push_back(id);
        self.len += 1;
        self.generation += 1;
    }

    /// Adds a job at the front of its user's line (a retry keeps its place).
    pub fn push_front(&mut self, user: u64, id: JobId) {
        self.users.entry(user).or_default().push_front(id);
        self.len += 1;
        self.generation += 1;
    }

    fn drop_user(&mut self, idx: usize) {
        self.users.shift_remove_index(idx);
        // The user after the removed one slid into its index.
        if idx < self.cursor {
            self.cursor -= 1;
        }
        if self.cursor >= self.users.len() {
            self.cursor = 0;
        }
    }

    /// Removes a waiting job; false if it is not here.
    pub fn remove(&mut self, id: &JobId) -> bool {
        let found = self
            .users
            .iter()
            .enumerate()
            .find_map(|(i, (_, q))| q.iter().position(|j| j == id).map(|p| (i, p)));
        let Some((idx, pos)) = found else {
            return false;
        };
        let queue = &mut self.users[idx];
        queue.remove(pos);
        self.len -= 1;
        self.generation += 1;
        if queue.is_empty() {
            self.drop_user(idx);
        }
        true
    }

    /// Takes the next job in round-robin order among those `can_run` accepts (only each user's
    /// oldest job is considered, so a user's jobs never overtake each other).
    pub fn pop_next(&mut self, mut can_run: impl FnMut(&JobId) -> bool) -> Option<(u64, JobId)> {
        let n = self.users.len();
        for step in 0..n {
            let idx = (self.cursor + step) % n;
            let (&user, queue) = self.users.get_index_mut(idx)?;
            let Some(head) = queue.front() else { continue };
            if !can_run(head) {
                continue;
            }
            let id = queue.pop_front()?;
            self.len -= 1;
            self.generation += 1;
            if queue.is_empty() {
                self.cursor = idx;
                self.drop_user(idx);
            } else {
                self.cursor = (idx + 1) % n;
            }
            return Some((user, id));
        }
        None
    }

    /// Every waiting job's place in line (0 = next), assuming every job can run: round by
    /// round, each user still holding a job gives one, in turn order. O(jobs + users).
    pub fn positions(&self) -> Vec<(JobId, usize)> {
        let n = self.users.len();
        let mut in_round: Vec<&VecDeque<JobId>> =
            (0..n).map(|r| &self.users[(self.cursor + r) % n]).collect();
        let mut out = Vec::with_capacity(self.len);
        for round in 0.. {
            in_round.retain(|q| q.len() > round);
            if in_round.is_empty() {
                break;
            }
            for q in &in_round {
                out.push((q[round].clone(), out.len()));
            }
        }
        out
    }

    /// Changes whenever a job is added or taken out, so a caller can skip recomputing
    /// places when nothing moved.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, &JobId)> {
        self.users
            .iter()
            .flat_map(|(u, q)| q.iter().map(move |id| (*u, id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> JobId {
        JobId(s.to_string())
    }

    fn drain(q: &mut FairQueue) -> Vec<String> {
        std::iter::from_fn(|| q.pop_next(|_| true).map(|(_, j)| j.0)).collect()
    }

    /// The places `positions` predicts are the order a copy of the queue drains in.
    fn assert_places_are_the_drain_order(q: &FairQueue) {
        let mut predicted = q.positions();
        predicted.sort_by_key(|(_, p)| *p);
        let predicted: Vec<String> = predicted.into_iter().map(|(j, _)| j.0).collect();
        assert_eq!(predicted, drain(&mut q.clone()));
    }

    #[test]
    fn one_users_ten_jobs_do_not_hold_back_another() {
        let mut q = FairQueue::new();
        for i in 0..10 {
            q.push(1, id(&format!("a{i}")));
        }
        q.push(2, id("b0"));
        let order = drain(&mut q);
        assert_eq!(&order[..3], &["a0", "b0", "a1"]);
        assert_eq!(order.len(), 11);
        assert!(q.is_empty());
    }

    #[test]
    fn positions_match_the_order_jobs_come_out() {
        let mut q = FairQueue::new();
        for (u, n) in [(1u64, 3usize), (2, 1), (3, 4), (4, 2)] {
            for i in 0..n {
                q.push(u, id(&format!("{u}-{i}")));
            }
        }
        q.pop_next(|_| true);
        q.push(2, id("2-late"));
        assert_places_are_the_drain_order(&q);
    }

    #[test]
    fn positions_match_the_order_for_uneven_users() {
        let mut q = FairQueue::new();
        for u in 0..40u64 {
            for i in 0..(u * 7 % 5) {
                q.push(u, id(&format!("{u}-{i}")));
            }
        }
        for _ in 0..13 {
            q.pop_next(|_| true);
        }
        let places: Vec<usize> = q.positions().iter().map(|(_, p)| *p).collect();
        assert_eq!(places, (0..q.len()).collect::<Vec<_>>());
        assert_places_are_the_drain_order(&q);
    }

    #[test]
    fn generation_moves_with_every_change() {
        let mut q = FairQueue::new();
        let g0 = q.generation();
        q.push(1, id("a"));
        let g1 = q.generation();
        assert_ne!(g0, g1);
        assert!(!q.remove(&id("zz")));
        assert_eq!(q.generation(), g1, "nothing moved");
        q.pop_next(|_| false);
        assert_eq!(q.generation(), g1, "nothing taken");
        q.pop_next(|_| true);
        assert_ne!(q.generation(), g1);
    }

    #[test]
    fn blocked_jobs_are_skipped_and_removal_works() {
        let mut q = FairQueue::new();
        q.push(1, id("a0"));
        q.push(1, id("a1"));
        q.push(2, id("b0"));
        // a0 cannot run now (say no backend has its workflow): b0 goes first; a1 waits behind a0.
        assert_eq!(
            q.pop_next(|j| j.0 != "a0").map(|(_, j)| j.0),
            Some("b0".into())
        );
        assert_eq!(q.pop_next(|j| j.0 != "a0"), None);
        assert!(q.remove(&id("a0")));
        assert!(!q.remove(&id("zz")));
        assert_eq!(q.count_for(1), 1);
        assert_eq!(drain(&mut q), vec!["a1"]);
    }
}
