//! A typed async client for ComfyUI plus the workflow model.
//!
//! # Layout
//! - [`client`]: [`ComfyClient`], every endpoint the bot uses; [`request`]: its config and
//!   request types; `http`: timeouts, retries of idempotent calls, capped bodies.
//! - `ws`: the one persistent WebSocket per backend, reconnecting with backoff and reconciling
//!   jobs from `/history` afterwards; `router`: its messages to the job each belongs to;
//!   `shared`: what the client, its jobs and that task share.
//! - [`job`]: what a prompt goes through ([`JobEvent`]) and ends with ([`Outcome`]); [`Job`]
//!   (in `prompt`): a submitted prompt, followed.
//!
//! Dependencies run one way: request → http → router → shared → ws / prompt → client.
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
mod http;
pub mod job;
pub mod manifest;
pub mod object_info;
mod prompt;
pub mod request;
mod router;
mod shared;
pub mod types;
pub mod workflow;
mod ws;

pub use catalog::{Catalog, CatalogError, WorkflowDef};
pub use client::ComfyClient;
pub use error::{ComfyError, NodeProblem, PromptRejection};
pub use events::{BinaryFrame, PreviewFormat, PreviewMeta, ServerMessage};
pub use job::{JobEvent, MediaKind, Outcome, OutputFile, Outputs};
pub use manifest::{
    CheckProblem, Manifest, ParamKind, ParamSpec, PatchError, Patched, VaryStrengths, WorkflowKind,
};
pub use object_info::{InputKind, NodeInfo, ObjectInfo};
pub use prompt::Job;
pub use request::{ClientConfig, PromptOptions, UploadRequest};
pub use shared::ConnectionState;
pub use types::{FileRef, FolderType, HistoryEntry, QueueItem, QueueSnapshot, SystemStats};
pub use workflow::{Workflow, WorkflowError};
