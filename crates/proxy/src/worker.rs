//! Which serving worker a thread is, and state kept per worker: the `tether-worker` crate,
//! re-exported here, where the pools and the counters of the data plane use it (the balancer
//! uses it too, below this crate).

pub use tether_worker::{enter, set_count, PerWorker};
