//! Configuration sources. Each is one [`Source`]: it watches its input and reports its whole
//! desired state on every change; the control plane decides what to do with it. [`file`] (the
//! TOML file), [`docker`] (the engine's containers), [`swarm`] (a manager's services and tasks)
//! and [`api`] (the admin API's store: a local
//! state file, or etcd shared by every replica). [`dns`] fills in services whose servers are found
//! in DNS, for any source.

pub mod api;
pub mod dns;
pub mod docker;
pub mod file;
pub mod source;
pub mod swarm;

pub use source::{Applied, Event, FirstSync, Source};
