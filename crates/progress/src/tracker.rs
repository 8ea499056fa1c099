//! The tracker: job updates in, a [`Snapshot`] out.

use std::time::Duration;

use bytes::Bytes;
use indexmap::IndexMap;
use tokio::time::Instant;

/// Weight of a node without a progress bar, in sampler-step units, for the overall percentage.
const PLAIN_NODE_UNITS: f64 = 1.0;
/// Smoothing of the seconds-per-step estimate (higher follows changes faster).
const RATE_SMOOTHING: f64 = 0.3;
/// The percentage stays below this until the job is really done.
const MAX_UNFINISHED_PERCENT: f64 = 99.0;

/// What a node does, for the phase shown to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    Loader,
    Encoder,
    Sampler,
    Decoder,
    Saver,
    Other,
}

impl NodeRole {
    /// Guesses the role from a ComfyUI class name.
    pub fn classify(class_type: &str) -> NodeRole {
        let c = class_type.to_ascii_lowercase();
        if c.contains("sampler") || c.contains("upscalewithmodel") {
            NodeRole::Sampler
        } else if c.contains("loader") || c.starts_with("load") {
            NodeRole::Loader
        } else if c.contains("decode") {
            NodeRole::Decoder
        } else if c.contains("encode") {
            NodeRole::Encoder
        } else if c.starts_with("save") || c.starts_with("preview") || c.contains("videocombine") {
            NodeRole::Saver
        } else {
            NodeRole::Other
        }
    }
}

/// One node of the job as planned before it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedNode {
    /// What to call it: the workflow's title, else the class's display name.
    pub title: String,
    pub role: NodeRole,
    /// Sampler steps, when the workflow says.
    pub steps: Option<u32>,
}

/// The nodes of a job, by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobPlan {
    pub nodes: IndexMap<String, PlannedNode>,
}

impl JobPlan {
    pub fn add(
        &mut self,
        id: impl Into<String>,
        class_type: &str,
        title: Option<&str>,
        steps: Option<u32>,
    ) {
        self.nodes.insert(
            id.into(),
            PlannedNode {
                title: title.unwrap_or(class_type).to_string(),
                role: NodeRole::classify(class_type),
                steps,
            },
        );
    }
}

/// The stage a job is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Queued,
    Loading,
    Preparing,
    Sampling,
    Decoding,
    Saving,
    /// Our own work after the backend finished: fetching and posting results.
    Uploading,
    Done,
    Failed,
    Cancelled,
}

impl Phase {
    pub fn label(self) -> &'static str {
        match self {
            Phase::Queued => "Queued",
            Phase::Loading => "Loading models",
            Phase::Preparing => "Preparing",
            Phase::Sampling => "Sampling",
            Phase::Decoding => "Decoding",
            Phase::Saving => "Saving",
            Phase::Uploading => "Uploading",
            Phase::Done => "Done",
            Phase::Failed => "Failed",
            Phase::Cancelled => "Cancelled",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Phase::Done | Phase::Failed | Phase::Cancelled)
    }

    fn of(role: NodeRole) -> Phase {
        match role {
            NodeRole::Loader => Phase::Loading,
            NodeRole::Encoder | NodeRole::Other => Phase::Preparing,
            NodeRole::Sampler => Phase::Sampling,
            NodeRole::Decoder => Phase::Decoding,
            NodeRole::Saver => Phase::Saving,
        }
    }
}

/// A preview image; `seq` grows with each new one, so a renderer knows when to re-upload.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    pub image: Bytes,
    pub mime: &'static str,
    pub seq: u64,
}

/// What happened to the job.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// Waiting; `position` 0 is next.
    Queued {
        position: Option<usize>,
    },
    Started,
    /// Nodes reused from the backend's cache: they count as done.
    Cached {
        nodes: Vec<String>,
    },
    NodeStarted {
        node: String,
    },
    Step {
        node: Option<String>,
        value: f64,
        max: f64,
    },
    Preview {
        image: Bytes,
        mime: &'static str,
    },
    Uploading,
    Finished,
    Failed {
        reason: String,
    },
    /// Back in the queue after its backend was lost; `reason` says what happens next.
    Retrying {
        reason: String,
    },
    Cancelled,
}

/// Everything shown about a job at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub phase: Phase,
    pub queue_position: Option<usize>,
    /// The running node's title.
    pub node: Option<String>,
    /// Step x of y in the running node.
    pub step: Option<(u32, u32)>,
    /// 0–100 across the whole job.
    pub percent: f64,
    pub eta: Option<Duration>,
    pub elapsed: Duration,
    pub preview: Option<Preview>,
    pub error: Option<String>,
    /// Why the job is waiting again (its backend was lost), until it starts again.
    pub note: Option<String>,
}

/// Follows one job.
#[derive(Debug)]
pub struct Tracker {
    plan: JobPlan,
    started_at: Instant,
    snapshot: Snapshot,
    /// Node id → units done (sampler steps, or 1 for a finished plain node).
    done_units: IndexMap<String, f64>,
    total_units: f64,
    current: Option<String>,
    last_step: Option<(Instant, f64)>,
    secs_per_step: Option<f64>,
    preview_seq: u64,
}

fn node_units(n: &PlannedNode) -> f64 {
    match (n.role, n.steps) {
        (NodeRole::Sampler, Some(s)) if s > 0 => f64::from(s),
        _ => PLAIN_NODE_UNITS,
    }
}

impl Tracker {
    pub fn new(plan: JobPlan, now: Instant) -> Tracker {
        let total_units = plan.nodes.values().map(node_units).sum::<f64>().max(1.0);
        Tracker {
            plan,
            started_at: now,
            snapshot: Snapshot {
                phase: Phase::Queued,
                queue_position: None,
                node: None,
                step: None,
                percent: 0.0,
                eta: None,
                elapsed: Duration::ZERO,
                preview: None,
                error: None,
                note: None,
            },
            done_units: IndexMap::new(),
            total_units,
            current: None,
            last_step: None,
            secs_per_step: None,
            preview_seq: 0,
        }
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The run's plan arrived (it may come after the job started, or again after a retry):
    /// the percentage starts over against it; the phase and the clock stay.
    pub fn set_plan(&mut self, plan: JobPlan) {
        self.total_units = plan.nodes.values().map(node_units).sum::<f64>().max(1.0);
        self.plan = plan;
        self.done_units.clear();
        self.current = None;
        self.last_step = None;
        self.snapshot.percent = 0.0;
    }

    fn units_of(&self, node: &str) -> f64 {
        self.plan
            .nodes
            .get(node)
            .map_or(PLAIN_NODE_UNITS, node_units)
    }

    fn finish_current(&mut self) {
        if let Some(prev) = self.current.take() {
            let units = self.units_of(&prev);
            self.done_units.insert(prev, units);
        }
    }

    /// Remaining sampler steps, for the ETA.
    fn remaining_steps(&self) -> f64 {
        self.plan
            .nodes
            .iter()
            .filter(|(_, n)| n.role == NodeRole::Sampler)
            .map(|(id, n)| node_units(n) - self.done_units.get(id).copied().unwrap_or(0.0))
            .sum::<f64>()
            .max(0.0)
    }

    /// Applies one update and returns the new snapshot.
    pub fn apply(&mut self, update: Update, now: Instant) -> &Snapshot {
        let s = &mut self.snapshot;
        s.elapsed = now.saturating_duration_since(self.started_at);
        match update {
            Update::Queued { position } => {
                s.phase = Phase::Queued;
                s.queue_position = position;
            }
            Update::Retrying { reason } => {
                // Nothing of the lost run counts any more.
                s.phase = Phase::Queued;
                s.queue_position = None;
                s.node = None;
                s.step = None;
                s.percent = 0.0;
                s.eta = None;
                s.preview = None;
                s.note = Some(reason);
                return &self.snapshot;
            }
            Update::Started => {
                s.queue_position = None;
                if s.phase == Phase::Queued {
                    s.phase = Phase::Loading;
                }
            }
            Update::Cached { nodes } => {
                for n in nodes {
                    let units = self.units_of(&n);
                    self.done_units.insert(n, units);
                }
            }
            Update::NodeStarted { node } => {
                self.finish_current();
                let s = &mut self.snapshot;
                s.queue_position = None;
                s.step = None;
                let planned = self.plan.nodes.get(&node);
                s.node = Some(planned.map_or_else(|| format!("node {node}"), |p| p.title.clone()));
                s.phase = Phase::of(planned.map_or(NodeRole::Other, |p| p.role));
                self.last_step = None;
                self.current = Some(node);
            }
            Update::Step { node, value, max } => {
                let node = node.or_else(|| self.current.clone());
                if let Some(id) = &node {
                    if self.current.as_deref() != Some(id.as_str()) {
                        self.finish_current();
                        self.current = Some(id.clone());
                    }
                    // A step count the plan did not know (or got wrong) comes from the server.
                    let planned = self.units_of(id);
                    if max > 0.0
                        && planned != max
                        && self
                            .plan
                            .nodes
                            .get(id)
                            .is_some_and(|n| n.role == NodeRole::Sampler)
                    {
                        self.total_units += max - planned;
                        if let Some(n) = self.plan.nodes.get_mut(id) {
                            n.steps = Some(max as u32);
                        }
                    }
                    let fraction_units = if max > 0.0 {
                        (value / max).clamp(0.0, 1.0) * self.units_of(id)
                    } else {
                        0.0
                    };
                    self.done_units.insert(id.clone(), fraction_units);
                }
                if let Some((t, v)) = self.last_step {
                    let dv = value - v;
                    let dt = now.saturating_duration_since(t).as_secs_f64();
                    if dv > 0.0 && dt > 0.0 {
                        let rate = dt / dv;
                        self.secs_per_step = Some(match self.secs_per_step {
                            Some(old) => old + RATE_SMOOTHING * (rate - old),
                            None => rate,
                        });
                    }
                }
                self.last_step = Some((now, value));
                let s = &mut self.snapshot;
                s.phase = Phase::Sampling;
                s.step = Some((value.max(0.0) as u32, max.max(0.0) as u32));
            }
            Update::Preview { image, mime } => {
                self.preview_seq += 1;
                self.snapshot.preview = Some(Preview {
                    image,
                    mime,
                    seq: self.preview_seq,
                });
            }
            Update::Uploading => {
                self.finish_current();
                let s = &mut self.snapshot;
                s.phase = Phase::Uploading;
                s.node = None;
                s.step = None;
            }
            Update::Finished => {
                self.finish_current();
                let s = &mut self.snapshot;
                s.phase = Phase::Done;
                s.percent = 100.0;
                s.eta = None;
                s.node = None;
                s.step = None;
                return &self.snapshot;
            }
            Update::Failed { reason } => {
                s.phase = Phase::Failed;
                s.error = Some(reason);
                s.eta = None;
                return &self.snapshot;
            }
            Update::Cancelled => {
                s.phase = Phase::Cancelled;
                s.eta = None;
                return &self.snapshot;
            }
        }
        // An empty f64 sum is -0.0, which would print as "-0%".
        let done = self.done_units.values().fold(0.0, |a, b| a + b);
        let remaining = self.remaining_steps();
        let s = &mut self.snapshot;
        s.percent = (100.0 * done / self.total_units).clamp(0.0, MAX_UNFINISHED_PERCENT);
        s.eta = self
            .secs_per_step
            .map(|r| Duration::from_secs_f64(r * remaining));
        &self.snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> JobPlan {
        let mut p = JobPlan::default();
        p.add("4", "CheckpointLoaderSimple", Some("Load Checkpoint"), None);
        p.add("6", "CLIPTextEncode", None, None);
        p.add("3", "KSampler", Some("Base"), Some(10));
        p.add("13", "KSamplerAdvanced", Some("Refiner"), Some(10));
        p.add("8", "VAEDecode", None, None);
        p.add("9", "SaveImage", None, None);
        p
    }

    #[tokio::test(start_paused = true)]
    async fn phases_percent_and_eta_across_two_samplers() {
        let t0 = Instant::now();
        let mut t = Tracker::new(plan(), t0);
        assert_eq!(
            t.apply(Update::Queued { position: Some(2) }, t0)
                .queue_position,
            Some(2)
        );
        let s = t.apply(
            Update::Retrying {
                reason: "backend gpu1 stopped answering".into(),
            },
            t0,
        );
        assert_eq!(
            (s.phase, s.note.as_deref(), s.percent),
            (Phase::Queued, Some("backend gpu1 stopped answering"), 0.0)
        );
        t.apply(Update::Started, t0);
        let s = t.apply(Update::NodeStarted { node: "4".into() }, t0);
        assert_eq!(
            (s.phase, s.node.as_deref()),
            (Phase::Loading, Some("Load Checkpoint"))
        );
        t.apply(Update::NodeStarted { node: "6".into() }, t0);
        t.apply(Update::NodeStarted { node: "3".into() }, t0);
        let mut now = t0;
        for step in 1..=10 {
            now += Duration::from_millis(500);
            t.apply(
                Update::Step {
                    node: Some("3".into()),
                    value: f64::from(step),
                    max: 10.0,
                },
                now,
            );
        }
        let s = t.snapshot().clone();
        assert_eq!((s.phase, s.step), (Phase::Sampling, Some((10, 10))));
        // 2 plain nodes + 10 steps done of 2+10+10+2 = 24 units.
        assert!(
            (s.percent - 100.0 * 12.0 / 24.0).abs() < 1e-9,
            "{}",
            s.percent
        );
        // 10 steps left at 0.5 s each.
        assert_eq!(s.eta, Some(Duration::from_secs(5)));
        t.apply(Update::NodeStarted { node: "13".into() }, now);
        now += Duration::from_millis(500);
        let s = t.apply(
            Update::Step {
                node: Some("13".into()),
                value: 5.0,
                max: 10.0,
            },
            now,
        );
        assert_eq!(s.node.as_deref(), Some("Refiner"));
        assert!((s.percent - 100.0 * 17.0 / 24.0).abs() < 1e-9);
        t.apply(
            Update::Step {
                node: Some("13".into()),
                value: 10.0,
                max: 10.0,
            },
            now,
        );
        let s = t.apply(Update::NodeStarted { node: "8".into() }, now);
        assert_eq!(s.phase, Phase::Decoding);
        assert!(s.percent < 99.5);
        let s = t.apply(Update::Uploading, now);
        assert_eq!(s.phase, Phase::Uploading);
        let s = t.apply(Update::Finished, now + Duration::from_secs(1));
        assert_eq!((s.phase, s.percent), (Phase::Done, 100.0));
        assert_eq!(s.elapsed, Duration::from_millis(6500));
    }

    #[tokio::test(start_paused = true)]
    async fn cached_nodes_count_and_unknown_steps_are_learned() {
        let now = Instant::now();
        let mut p = JobPlan::default();
        p.add("1", "LoadImage", None, None);
        p.add("2", "KSampler", None, None);
        let mut t = Tracker::new(p, now);
        t.apply(
            Update::Cached {
                nodes: vec!["1".into()],
            },
            now,
        );
        let s = t.apply(
            Update::Step {
                node: Some("2".into()),
                value: 10.0,
                max: 20.0,
            },
            now,
        );
        // 1 (cached) + 10 of 20 steps, out of 1 + 20.
        assert!(
            (s.percent - 100.0 * 11.0 / 21.0).abs() < 1e-9,
            "{}",
            s.percent
        );
        let s = t.apply(
            Update::Preview {
                image: Bytes::from_static(b"x"),
                mime: "image/jpeg",
            },
            now,
        );
        assert_eq!(s.preview.as_ref().map(|p| p.seq), Some(1));
        let s = t.apply(
            Update::Failed {
                reason: "out of memory".into(),
            },
            now,
        );
        assert_eq!(
            (s.phase, s.error.as_deref()),
            (Phase::Failed, Some("out of memory"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_done_is_zero_not_negative_zero() {
        let now = Instant::now();
        let mut t = Tracker::new(JobPlan::default(), now);
        let s = t.apply(Update::Queued { position: None }, now);
        assert!(s.percent.is_sign_positive() && s.percent == 0.0);
        assert!(crate::render::terminal_line(s).contains("  0%"));
    }

    #[test]
    fn roles() {
        assert_eq!(NodeRole::classify("KSamplerAdvanced"), NodeRole::Sampler);
        assert_eq!(
            NodeRole::classify("SamplerCustomAdvanced"),
            NodeRole::Sampler
        );
        assert_eq!(NodeRole::classify("UpscaleModelLoader"), NodeRole::Loader);
        assert_eq!(
            NodeRole::classify("ImageUpscaleWithModel"),
            NodeRole::Sampler
        );
        assert_eq!(NodeRole::classify("VAEDecodeTiled"), NodeRole::Decoder);
        assert_eq!(NodeRole::classify("SaveAnimatedWEBP"), NodeRole::Saver);
        assert_eq!(NodeRole::classify("ImageScaleBy"), NodeRole::Other);
    }
}
