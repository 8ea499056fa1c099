//! A typed async client for ComfyUI plus the workflow model.
//!
//! # Layout
//! - [`client`]: [`ComfyClient`], every HTTP endpoint, with timeouts and retries for idempotent calls.
//! - [`ws`]: the one persistent WebSocket per backend, routing events to jobs by `prompt_id`,
//!   reconnecting with backoff and reconciling jobs from `/history` afterwards.
//! - [`job`]: [`Job`] (a submitted prompt), its [`JobEvent`] stream and final [`Outcome`].
//! - [`events`]: the typed server messages and binary preview frames.
//! - [`types`], [`object_info`]: the JSON shapes ComfyUI answers with.
//! - [`workflow`], [`manifest`], [`catalog`]: API-format graphs, named parameters patched
//!   structurally, checks against `/object_info`, and the `workflows/` folder.
//!
//! Nothing here knows about Discord.

pub mod catalog;
pub mod client;
pub mod error;
pub mod events;
pub mod job;
pub mod manifest;
pub mod object_info;
pub mod types;
pub mod workflow;
mod ws;

pub use catalog::{Catalog, CatalogError, WorkflowDef};
pub use client::{ClientConfig, ComfyClient, PromptOptions, UploadRequest};
pub use error::{ComfyError, NodeProblem, PromptRejection};
pub use events::{BinaryFrame, PreviewFormat, PreviewMeta, ServerMessage};
pub use job::{Job, JobEvent, MediaKind, Outcome, OutputFile, Outputs};
pub use manifest::{
    CheckProblem, Manifest, ParamKind, ParamSpec, PatchError, Patched, WorkflowKind,
};
pub use object_info::{InputKind, NodeInfo, ObjectInfo};
pub use types::{FileRef, FolderType, HistoryEntry, QueueItem, QueueSnapshot, SystemStats};
pub use workflow::{Workflow, WorkflowError};
pub use ws::ConnectionState;
