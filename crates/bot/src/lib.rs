//! comfycord's binary crate: configuration, the CLI and the Discord front-end.
//! Only this crate reads config and env, touches Discord, and owns shutdown.

pub mod check;
pub mod config;
pub mod data_lock;
pub mod discord;
pub mod engine;
pub mod health;
pub mod logging;
pub mod run;
pub mod serve;
