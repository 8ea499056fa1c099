//! Events per second through tracker + throttled sink on one core (aim: ≥ 1 M/s).
//! `cargo bench -p progress --bench progress`.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use progress::{spawn_throttled, JobPlan, ProgressSink, SinkError, Snapshot, Tracker, Update};

struct Discard;

impl ProgressSink for Discard {
    async fn deliver(&self, snapshot: &Snapshot) -> Result<(), SinkError> {
        black_box(snapshot);
        Ok(())
    }
}

const EVENTS: u64 = 10_000;

/// A realistic mix: node starts, many sampler steps, a preview every 10 steps.
fn updates() -> Vec<Update> {
    let preview = Bytes::from(vec![0u8; 32 * 1024]);
    let mut out = Vec::with_capacity(EVENTS as usize);
    let mut step = 0u32;
    while out.len() < EVENTS as usize {
        if step.is_multiple_of(100) {
            out.push(Update::NodeStarted { node: "3".into() });
        }
        step += 1;
        out.push(Update::Step {
            node: Some("3".into()),
            value: f64::from(step % 100 + 1),
            max: 100.0,
        });
        if step.is_multiple_of(10) {
            out.push(Update::Preview {
                image: preview.clone(),
                mime: "image/jpeg",
            });
        }
    }
    out.truncate(EVENTS as usize);
    out
}

fn tracker_and_throttle(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let mut plan = JobPlan::default();
    plan.add("4", "CheckpointLoaderSimple", Some("Load Checkpoint"), None);
    plan.add("3", "KSampler", Some("KSampler"), Some(100));
    plan.add("8", "VAEDecode", None, None);
    let input = updates();
    let mut g = c.benchmark_group("progress");
    g.throughput(Throughput::Elements(EVENTS));
    g.bench_function("tracker_plus_throttle_10k_events", |b| {
        b.iter(|| {
            rt.block_on(async {
                let handle = spawn_throttled(Discard, Duration::from_millis(1500));
                let now = tokio::time::Instant::now();
                let mut tracker = Tracker::new(plan.clone(), now);
                for u in &input {
                    let snapshot = tracker.apply(u.clone(), now).clone();
                    handle.update(snapshot);
                }
                black_box(handle);
            })
        })
    });
    g.finish();
}

criterion_group!(benches, tracker_and_throttle);
criterion_main!(benches);
