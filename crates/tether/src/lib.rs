//! The `tether` binary's library half: wiring the crates into a running instance ([`app`]) and the
//! self-contained [`demo`]. The CLI in `main.rs` only parses arguments and calls these.

pub mod app;
pub mod demo;
pub mod probe;
pub mod shared_key;
pub mod state_dir;
pub mod store;
pub mod upgrade;
mod workers;
