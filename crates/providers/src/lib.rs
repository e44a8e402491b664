//! Configuration providers. Each watches one source and reports its whole desired state on every
//! change; the control plane decides what to do with it. Today: [`file`] and [`docker`]. Swarm,
//! etcd and the HTTP API plug in the same way.

pub mod docker;
pub mod file;
