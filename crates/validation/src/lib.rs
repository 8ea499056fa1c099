//! Everything a request must pass before it costs anything: text and parameter checks against
//! the workflow's rules, attachment checks, and per-user limits.
//!
//! No IO and no async: every function here is a pure check (rate limiters read a clock), so it
//! can be tested to the edge and fuzzed. Every refusal is a [`Refusal`] whose message a Discord
//! user can act on.

pub mod attachment;
pub mod bounds;
pub mod inline;
pub mod params;
pub mod rate;
pub mod refusal;
pub mod request;
pub mod text;

pub use attachment::{AttachmentRules, CheckedMedia, DeclaredAttachment, MediaFormat};
pub use inline::{parse_prompt, Inline, MAX_JOBS_PER_PROMPT};
pub use params::{ParamKind, ParamRule};
pub use rate::{Limiter, LimitsConfig};
pub use refusal::Refusal;
pub use request::{effective_rule, validate, Checked, RawRequest, ASPECT_PRESETS};
