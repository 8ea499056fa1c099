//! Fake servers and shared helpers for the end-to-end suites.

pub mod bot_harness;
pub mod cosmos_host;
pub mod fake_comfyui;
pub mod fake_discord;
pub mod support;
