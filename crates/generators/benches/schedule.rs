//! Scheduling decisions with 1,000 waiting jobs from 100 users across 4 backends: the time of
//! one decision (round-robin pick, least-loaded backend, every position recomputed) as p50/p99,
//! and the memory the waiting jobs take. `cargo bench -p generators --bench schedule`.

// A counting allocator needs `unsafe impl GlobalAlloc`; nothing else here is unsafe.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use generators::fair_queue::FairQueue;
use generators::{JobId, JobRecord, JobSpec, JobState, Origin};
use serde_json::{json, Map};

/// Counts live heap bytes, to report what the queue costs.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const USERS: u64 = 100;
const JOBS_PER_USER: usize = 10;
const BACKENDS: usize = 4;
const WORKFLOWS: [&str; 3] = ["txt2img", "img2img", "upscale"];

fn record(user: u64, i: usize) -> JobRecord {
    let mut values = Map::new();
    values.insert(
        "prompt".into(),
        json!(format!(
            "a lighthouse on a cliff at sunset, user {user} job {i}"
        )),
    );
    values.insert("seed".into(), json!(user * 1000 + i as u64));
    values.insert("steps".into(), json!(20));
    JobRecord {
        id: JobId::new(),
        seq: (user as i64) * 100 + i as i64,
        spec: JobSpec {
            workflow: WORKFLOWS[(user as usize + i) % WORKFLOWS.len()].into(),
            values,
            inputs: Vec::new(),
            parent: None,
            sources: Default::default(),
            templates: Default::default(),
        },
        origin: Origin {
            owner: user,
            guild: Some(1),
            channel: Some(2),
            message: Some(3),
            private: false,
        },
        state: JobState::Waiting,
        remote_id: None,
        outputs: Vec::new(),
        attempts: 0,
        created_ms: 0,
        started_ms: None,
        finished_ms: None,
    }
}

struct Backend {
    inflight: usize,
    fits: [bool; 3],
}

fn percentile(sorted: &[u128], p: f64) -> u128 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let before = LIVE.load(Ordering::Relaxed);
    let mut queue = FairQueue::new();
    let mut waiting: HashMap<JobId, JobRecord> = HashMap::new();
    // Interleaved submission, as 100 users would send them.
    for i in 0..JOBS_PER_USER {
        for user in 0..USERS {
            let r = record(user, i);
            queue.push(user, r.id.clone());
            waiting.insert(r.id.clone(), r);
        }
    }
    let memory = LIVE.load(Ordering::Relaxed) - before;
    // Backend 3 cannot run upscale, so some picks must skip.
    let mut backends: Vec<Backend> = (0..BACKENDS)
        .map(|b| Backend {
            inflight: 0,
            fits: [true, true, b != 3],
        })
        .collect();
    let mut samples = Vec::with_capacity(queue.len());
    while !queue.is_empty() {
        let start = Instant::now();
        let can = |id: &JobId| -> Option<usize> {
            let w = WORKFLOWS
                .iter()
                .position(|w| *w == waiting[id].spec.workflow)?;
            backends
                .iter()
                .enumerate()
                .filter(|(_, b)| b.inflight < 1 && b.fits[w])
                .min_by_key(|(_, b)| b.inflight)
                .map(|(i, _)| i)
        };
        let picked = queue.pop_next(|id| can(id).is_some());
        let positions = queue.positions();
        let elapsed = start.elapsed().as_nanos();
        black_box(&positions);
        match picked {
            Some((_, id)) => {
                let b = can(&id).unwrap_or(0);
                backends[b].inflight += 1;
                waiting.remove(&id);
                samples.push(elapsed);
            }
            None => {
                // Every backend is busy: one finishes.
                for b in &mut backends {
                    b.inflight = 0;
                }
            }
        }
    }
    samples.sort_unstable();
    println!(
        "schedule: {} decisions over {} users x {} jobs, {} backends",
        samples.len(),
        USERS,
        JOBS_PER_USER,
        BACKENDS
    );
    println!(
        "decision time: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        percentile(&samples, 0.50) as f64 / 1000.0,
        percentile(&samples, 0.99) as f64 / 1000.0,
        *samples.last().unwrap_or(&0) as f64 / 1000.0
    );
    println!(
        "memory of 1000 waiting jobs (queue + records): {:.1} KiB",
        memory as f64 / 1024.0
    );
}
