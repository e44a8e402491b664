//! Live state of one server, shared between routing tables: a reconfiguration that keeps a server
//! keeps its state (in-flight requests, drain, health), so the counters stay true across swaps.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a server that refused a connection is skipped for new requests.
pub const PASSIVE_DOWN: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct ServerState {
    in_flight: AtomicU32,
    draining: AtomicBool,
    healthy: AtomicBool,
    /// Milliseconds since process start until which the server is skipped; 0 means not marked.
    down_until_ms: AtomicU64,
    /// Requests that arrived pinned to this server by their affinity cookie: a count per
    /// worker, as it is read only for display.
    pinned: tether_worker::PerWorker<AtomicU64>,
}

impl Default for ServerState {
    fn default() -> Self {
        ServerState {
            in_flight: AtomicU32::new(0),
            draining: AtomicBool::new(false),
            healthy: AtomicBool::new(true),
            down_until_ms: AtomicU64::new(0),
            pinned: Default::default(),
        }
    }
}

/// Milliseconds on a monotonic clock that starts with the process, never 0 (so 0 can mean
/// "unset"). Cheap enough for the hot path; shared with the proxy's connection timeouts and its
/// pool of idle server connections. On Linux it is the kernel's coarse monotonic clock, which
/// advances once per timer tick (1 to 4 ms) and is read without the time-stamp counter: several
/// times cheaper than `Instant::now`, and precise enough for limits counted in seconds.
pub fn now_ms() -> u64 {
    static START: OnceLock<u64> = OnceLock::new();
    let now = clock_ms();
    now.saturating_sub(*START.get_or_init(|| now)) + 1
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn clock_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable `timespec` owned by this frame, the only memory
    // `clock_gettime` writes; CLOCK_MONOTONIC_COARSE exists on every Linux since 2.6.32, and an
    // error (return value not 0) is handled below without reading anything else.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if rc != 0 {
        return instant_ms();
    }
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

#[cfg(not(target_os = "linux"))]
fn clock_ms() -> u64 {
    instant_ms()
}

/// Milliseconds since the first call, from the precise clock (the fallback).
fn instant_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

impl ServerState {
    /// May this server take a request that is not pinned to it?
    /// `strict` also honours passive failure marks.
    pub fn takes_new(&self, strict: bool) -> bool {
        !self.draining.load(Relaxed)
            && self.healthy.load(Relaxed)
            && (!strict || !self.passively_down())
    }

    /// May this server keep serving sessions pinned to it? Draining servers do; failed ones do not.
    pub fn takes_pinned(&self) -> bool {
        self.healthy.load(Relaxed) && !self.passively_down()
    }

    fn passively_down(&self) -> bool {
        let d = self.down_until_ms.load(Relaxed);
        d != 0 && d > now_ms()
    }

    /// Record a refused or timed-out connection: skip this server for [`PASSIVE_DOWN`].
    pub fn mark_failed(&self) {
        self.down_until_ms
            .store(now_ms() + PASSIVE_DOWN.as_millis() as u64, Relaxed);
    }

    /// Record a successful connection.
    pub fn mark_ok(&self) {
        if self.down_until_ms.load(Relaxed) != 0 {
            self.down_until_ms.store(0, Relaxed);
        }
    }

    pub fn set_draining(&self, on: bool) {
        self.draining.store(on, Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Relaxed)
    }

    pub fn set_healthy(&self, on: bool) {
        self.healthy.store(on, Relaxed);
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Relaxed)
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Relaxed)
    }

    /// Count a request that its session's pin brought to this server.
    pub fn count_pinned(&self) {
        self.pinned.here().fetch_add(1, Relaxed);
    }

    /// Requests that arrived pinned to this server since it was first declared.
    pub fn pinned(&self) -> u64 {
        self.pinned.sum(|c| c.load(Relaxed))
    }

    /// One word for the server's state: `failed` (refused a connection lately, skipped for a
    /// few seconds), `unhealthy` (its health check fails), `draining` (takes no new sessions)
    /// or `serving`.
    pub fn describe(&self) -> &'static str {
        if self.passively_down() {
            "failed"
        } else if !self.healthy.load(Relaxed) {
            "unhealthy"
        } else if self.draining.load(Relaxed) {
            "draining"
        } else {
            "serving"
        }
    }

    /// Count a request until the guard drops.
    pub fn start_request(self: &std::sync::Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self.clone())
    }
}

/// Holds one in-flight request on a server.
#[derive(Debug)]
pub struct InFlight(std::sync::Arc<ServerState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}
