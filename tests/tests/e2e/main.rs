//! Every end-to-end suite in one test binary: each links serenity, russh and the fakes, so one
//! link instead of twelve. A suite is a module; run one with `cargo test -p tests --test e2e
//! discord_bot::`.

mod bot_check;
mod cli_run;
mod comfyui_client;
mod comfyui_faults;
mod config_docs;
mod cosmos_backend;
mod cosmos_host_selftest;
mod describe_blend;
mod discord_bot;
mod fake_comfyui_selftest;
mod fake_discord_selftest;
mod fault_drills;
mod inline_prompts;
mod member_settings;
mod result_surface;
mod scheduler;
mod styles_private;
mod toolchain;
