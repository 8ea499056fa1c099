//! What a person wants to see while a job runs.
//!
//! - [`tracker`]: turns job updates into a [`Snapshot`]: phase, current node by name, step x/y,
//!   one percentage across every sampler pass, ETA from the observed step rate, latest preview.
//! - [`render`]: a 20-cell text bar, embed fields, a terminal line.
//! - [`sink`]: [`ProgressSink`] and [`spawn_throttled`], which coalesces snapshots so a message
//!   is edited at most once per interval, never twice at once, and always gets the final state.

pub mod render;
pub mod sink;
pub mod tracker;

pub use render::{bar, EmbedView, BAR_CELLS};
pub use sink::{
    spawn_throttled, spawn_throttled_after, ProgressHandle, ProgressSink, SinkError,
    DEFAULT_EDIT_INTERVAL,
};
pub use tracker::{JobPlan, NodeRole, Phase, PlannedNode, Preview, Snapshot, Tracker, Update};
