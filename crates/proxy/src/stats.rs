//! What the data plane counts, for the stats page, `/metrics` and the access log: relaxed
//! atomics beside each server's state ([`ServerStats`], in its [`Backend`]) and each service's
//! ([`ServiceStats`], kept by the registry so that a reload keeps the counts), bumped once at the
//! end of each request by its meter ([`crate::upstream::meter`]). Each worker counts in cells of
//! its own ([`PerWorker`]: no two workers write the same cache line per request), and a read
//! sums the cells. This module imports nothing else of the crate but the worker slots: the
//! counters are plain types the rest holds. No lock is taken on the request path; a scrape reads
//! the atomics of the servers and services of the table it is served from, so the series of a
//! removed service or server disappear with it.
//!
//! [`Backend`]: crate::upstream::registry::Backend

pub mod histogram;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use http::Method;

use crate::worker::PerWorker;
pub use histogram::{Histogram, Snapshot, BOUNDS_US};

/// What affinity made of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Affinity {
    /// The service has no affinity.
    #[default]
    None,
    /// The cookie's server took it.
    Pinned,
    /// No cookie: a server was chosen and pinned.
    New,
    /// The cookie's server is gone or refused it: pinned to another, consistently chosen.
    Rebalanced,
    /// A value Tether did not issue (forged, truncated, another service's): treated as absent.
    Forged,
}

impl Affinity {
    pub fn as_str(self) -> &'static str {
        match self {
            Affinity::None => "-",
            Affinity::Pinned => "pinned",
            Affinity::New => "new",
            Affinity::Rebalanced => "rebalanced",
            Affinity::Forged => "forged",
        }
    }
}

/// Bytes each way and TCP connections, counted alike for a server and a service.
#[derive(Debug, Default)]
pub struct TrafficStats {
    cells: PerWorker<TrafficCell>,
}

/// One worker's [`TrafficStats`].
#[derive(Debug, Default)]
struct TrafficCell {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// TCP: connections piped, and connects that failed.
    connections: AtomicU64,
    connect_errors: AtomicU64,
}

impl TrafficStats {
    /// Bytes from the client to the server, and back.
    pub fn add_bytes(&self, bytes_in: u64, bytes_out: u64) {
        let c = self.cells.here();
        c.bytes_in.fetch_add(bytes_in, Relaxed);
        c.bytes_out.fetch_add(bytes_out, Relaxed);
    }

    /// TCP: a connection piped.
    pub fn count_connection(&self) {
        self.cells.here().connections.fetch_add(1, Relaxed);
    }

    /// TCP: a connect that failed.
    pub fn count_connect_error(&self) {
        self.cells.here().connect_errors.fetch_add(1, Relaxed);
    }

    pub fn bytes_in(&self) -> u64 {
        self.cells.sum(|c| c.bytes_in.load(Relaxed))
    }

    pub fn bytes_out(&self) -> u64 {
        self.cells.sum(|c| c.bytes_out.load(Relaxed))
    }

    pub fn connections(&self) -> u64 {
        self.cells.sum(|c| c.connections.load(Relaxed))
    }

    pub fn connect_errors(&self) -> u64 {
        self.cells.sum(|c| c.connect_errors.load(Relaxed))
    }
}

/// One server's counters, a cell per worker.
#[derive(Debug, Default)]
pub struct ServerStats {
    cells: PerWorker<ServerCell>,
    /// Bytes each way, and TCP connections.
    pub traffic: TrafficStats,
}

/// One worker's counts of one server.
#[derive(Debug, Default)]
struct ServerCell {
    /// Responses by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    by_class: [AtomicU64; 5],
    /// Requests that went on to another server after this one failed them.
    retries: AtomicU64,
    /// Sessions pinned to it afresh, and moved to it from a server that was gone.
    new_pins: AtomicU64,
    rebalanced: AtomicU64,
    latency: Histogram,
}

impl ServerStats {
    /// A request that ended with a response of `class` (0: 1xx ... 4: 5xx) after `us`.
    pub fn count_request(&self, class: usize, bytes: (u64, u64), us: u64, affinity: Affinity) {
        self.traffic.add_bytes(bytes.0, bytes.1);
        let c = self.cells.here();
        c.by_class[class.min(4)].fetch_add(1, Relaxed);
        c.latency.observe(us);
        match affinity {
            Affinity::New | Affinity::Forged => {
                c.new_pins.fetch_add(1, Relaxed);
            }
            Affinity::Rebalanced => {
                c.rebalanced.fetch_add(1, Relaxed);
            }
            _ => {}
        }
    }

    /// A request that went on to another server after this one failed it.
    pub fn count_retry(&self) {
        self.cells.here().retries.fetch_add(1, Relaxed);
    }

    /// Responses by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    pub fn by_class(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.cells.sum(|c| c.by_class[i].load(Relaxed)))
    }

    pub fn requests(&self) -> u64 {
        self.by_class().iter().sum()
    }

    pub fn retries(&self) -> u64 {
        self.cells.sum(|c| c.retries.load(Relaxed))
    }

    pub fn new_pins(&self) -> u64 {
        self.cells.sum(|c| c.new_pins.load(Relaxed))
    }

    pub fn rebalanced(&self) -> u64 {
        self.cells.sum(|c| c.rebalanced.load(Relaxed))
    }

    pub fn latency(&self) -> Snapshot {
        Snapshot::merged(self.cells.iter().map(|c| &c.latency))
    }
}

/// The methods counted by name; any other is `OTHER`.
pub const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "OTHER",
];

/// The status codes counted one by one; any other is counted under its class (`2xx`, ...).
pub const CODES: [u16; 22] = [
    200, 201, 204, 206, 301, 302, 304, 307, 308, 400, 401, 403, 404, 405, 408, 413, 429, 500, 502,
    503, 504, 101,
];
const CODE_SLOTS: usize = CODES.len() + 5;

/// One service's counters (a cell per worker) and the gauges its workers must agree on.
#[derive(Debug, Default)]
pub struct ServiceStats {
    /// The service's name (for the access log).
    pub name: std::sync::Arc<str>,
    cells: PerWorker<ServiceCell>,
    /// Bytes each way, and TCP connections to its servers.
    pub traffic: TrafficStats,
    /// Responses by route of this service and status class.
    pub routes: RouteCounts,
    /// Requests waiting now for a server to come ([`crate::handler`]'s wait): shared, as it
    /// bounds the service's queue for every worker.
    pub waiting: std::sync::atomic::AtomicU32,
    /// Woken when a table gives the service a server or one of its servers turns healthy.
    pub ready: tokio::sync::Notify,
    /// TCP: connections open now to its servers (one gauge, changed per connection).
    pub active: std::sync::atomic::AtomicU32,
}

/// One worker's counts of one service.
#[derive(Debug, Default)]
struct ServiceCell {
    /// Responses by method and code ([`CODES`], then one per class for the others).
    by_code: [[AtomicU64; CODE_SLOTS]; METHODS.len()],
    latency: Histogram,
    /// Affinity outcomes: requests whose cookie's server took them, sessions pinned afresh,
    /// sessions moved, and values Tether did not issue.
    sticky: [AtomicU64; 4],
    /// Requests that waited for a server, and those of them that got none in time.
    waited: AtomicU64,
    wait_expired: AtomicU64,
}

/// Affinity outcomes as [`ServiceStats::sticky`] gives them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StickyCounts {
    /// Requests whose cookie's server took them.
    pub hits: u64,
    /// Sessions pinned afresh.
    pub misses: u64,
    /// Sessions moved from a server that was gone.
    pub rebalanced: u64,
    /// Values Tether did not issue.
    pub forged: u64,
}

/// Routes of one service counted one by one; a service's further routes share one more slot.
pub const ROUTE_SLOTS: usize = 8;
/// The slot that the routes beyond [`ROUTE_SLOTS`] share.
pub const SHARED_ROUTE_SLOT: u8 = ROUTE_SLOTS as u8;
/// No route (a request that matched none is counted on no service either).
pub const NO_ROUTE: u8 = u8::MAX;

/// Responses per route of a service, by status class. Which route a slot counts is decided when
/// a table is compiled ([`RouteCounts::plan`]) and takes effect when it is committed
/// ([`RouteCounts::commit`]): a route keeps its slot while it exists, and a freed slot starts
/// from zero for the route that takes it next.
#[derive(Debug, Default)]
pub struct RouteCounts {
    names: Mutex<[Option<String>; ROUTE_SLOTS]>,
    /// Per worker: per slot, per class.
    by_class: PerWorker<[[AtomicU64; 5]; ROUTE_SLOTS + 1]>,
}

/// Slot names as a compiled table wants them.
pub type RoutePlan = [Option<String>; ROUTE_SLOTS];

impl RouteCounts {
    /// The slots for `routes` (this service's, in the new table): each route that has one keeps
    /// it, the others take free ones, and beyond [`ROUTE_SLOTS`] they share
    /// [`SHARED_ROUTE_SLOT`]. Nothing changes until [`RouteCounts::commit`].
    pub fn plan(&self, routes: &[&str]) -> (RoutePlan, Vec<u8>) {
        let now = self.names.lock().expect("route counts poisoned").clone();
        let mut next: RoutePlan = Default::default();
        for (i, n) in now.iter().enumerate() {
            if n.as_deref().is_some_and(|n| routes.contains(&n)) {
                next[i] = n.clone();
            }
        }
        let slots = routes
            .iter()
            .map(|r| {
                if let Some(i) = next.iter().position(|n| n.as_deref() == Some(*r)) {
                    return i as u8;
                }
                match next.iter().position(Option::is_none) {
                    Some(i) => {
                        next[i] = Some((*r).to_string());
                        i as u8
                    }
                    None => SHARED_ROUTE_SLOT,
                }
            })
            .collect();
        (next, slots)
    }

    /// Make `plan` the slots' names; a slot whose route changed starts from zero.
    pub fn commit(&self, plan: RoutePlan) {
        let mut names = self.names.lock().expect("route counts poisoned");
        for (i, (old, new)) in names.iter().zip(&plan).enumerate() {
            if old != new {
                for cell in self.by_class.iter() {
                    for c in &cell[i] {
                        c.store(0, Relaxed);
                    }
                }
            }
        }
        *names = plan;
    }

    pub fn count(&self, slot: u8, class: usize) {
        if let Some(row) = self.by_class.here().get(usize::from(slot)) {
            row[class].fetch_add(1, Relaxed);
        }
    }

    /// The counts by class of the slot `route` has, or of the shared slot when it has none.
    pub fn of(&self, route: &str) -> ([u64; 5], bool) {
        let names = self.names.lock().expect("route counts poisoned");
        let (slot, shared) = match names.iter().position(|n| n.as_deref() == Some(route)) {
            Some(i) => (i, false),
            None => (ROUTE_SLOTS, true),
        };
        (
            std::array::from_fn(|c| self.by_class.sum(|cell| cell[slot][c].load(Relaxed))),
            shared,
        )
    }
}

/// A method's slot in [`METHODS`].
pub fn method_index(m: &Method) -> u8 {
    match *m {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

/// Each status code's slot (one load per request instead of a search of [`CODES`]).
const SLOTS: [u8; 600] = {
    let mut t = [0u8; 600];
    let mut code = 0;
    while code < 600 {
        let class = if code < 100 { 1 } else { code / 100 };
        t[code] = (CODES.len() + class - 1) as u8;
        code += 1;
    }
    let mut i = 0;
    while i < CODES.len() {
        t[CODES[i] as usize] = i as u8;
        i += 1;
    }
    t
};

fn code_slot(code: u16) -> usize {
    match SLOTS.get(usize::from(code)) {
        Some(&s) => usize::from(s),
        None => CODES.len() + 4, // over 599: counted as 5xx
    }
}

/// The label a code slot is shown with (`404`, or `4xx` for the others of its class).
pub fn code_label(slot: usize) -> String {
    match CODES.get(slot) {
        Some(c) => c.to_string(),
        None => format!("{}xx", slot - CODES.len() + 1),
    }
}

impl ServiceStats {
    pub fn new(name: &str) -> ServiceStats {
        ServiceStats {
            name: name.into(),
            ..Default::default()
        }
    }

    /// A request of `method` ([`method_index`]) that ended with `code` after `us`, its bytes
    /// in and out, and what affinity made of it.
    pub fn count_request(
        &self,
        method: u8,
        code: u16,
        bytes: (u64, u64),
        us: u64,
        affinity: Affinity,
    ) {
        self.traffic.add_bytes(bytes.0, bytes.1);
        let c = self.cells.here();
        c.by_code[usize::from(method).min(METHODS.len() - 1)][code_slot(code)]
            .fetch_add(1, Relaxed);
        c.latency.observe(us);
        let i = match affinity {
            Affinity::None => return,
            Affinity::Pinned => 0,
            Affinity::New => 1,
            Affinity::Rebalanced => 2,
            Affinity::Forged => 3,
        };
        c.sticky[i].fetch_add(1, Relaxed);
    }

    /// A request that began to wait for a server.
    pub fn count_waited(&self) {
        self.cells.here().waited.fetch_add(1, Relaxed);
    }

    /// A request that waited for a server and got none in time (counted as waited too).
    pub fn count_wait_expired(&self) {
        self.cells.here().wait_expired.fetch_add(1, Relaxed);
    }

    /// Every non-zero `(method, code label, count)`.
    pub fn requests(&self) -> Vec<(&'static str, String, u64)> {
        let mut out = Vec::new();
        for (m, method) in METHODS.iter().enumerate() {
            for slot in 0..CODE_SLOTS {
                let n = self.cells.sum(|c| c.by_code[m][slot].load(Relaxed));
                if n > 0 {
                    out.push((*method, code_label(slot), n));
                }
            }
        }
        out
    }

    /// Responses by status class, all methods together.
    pub fn by_class(&self) -> [u64; 5] {
        let mut classes = [0u64; 5];
        for cell in self.cells.iter() {
            for row in &cell.by_code {
                for (slot, c) in row.iter().enumerate() {
                    let class = match CODES.get(slot) {
                        Some(code) => usize::from(code / 100 - 1),
                        None => slot - CODES.len(),
                    };
                    classes[class.min(4)] += c.load(Relaxed);
                }
            }
        }
        classes
    }

    pub fn latency(&self) -> Snapshot {
        Snapshot::merged(self.cells.iter().map(|c| &c.latency))
    }

    pub fn sticky(&self) -> StickyCounts {
        let n = |i: usize| self.cells.sum(|c| c.sticky[i].load(Relaxed));
        StickyCounts {
            hits: n(0),
            misses: n(1),
            rebalanced: n(2),
            forged: n(3),
        }
    }

    /// Requests that waited for a server, and those of them that got none in time.
    pub fn waited(&self) -> u64 {
        self.cells.sum(|c| c.waited.load(Relaxed))
    }

    pub fn wait_expired(&self) -> u64 {
        self.cells.sum(|c| c.wait_expired.load(Relaxed))
    }
}

/// The stats page, answered on a traffic entrypoint (`[stats] path`); its renderer is the admin
/// crate's, which the data plane does not depend on.
pub trait StatsPage: Send + Sync + std::fmt::Debug {
    /// Answer a `GET` of the page with this query and `Authorization` value (the page checks
    /// the token itself).
    fn answer(
        &self,
        query: Option<&str>,
        authorization: Option<&[u8]>,
    ) -> http::Response<bytes::Bytes>;
}

/// Where the stats page is mounted on the traffic entrypoints.
#[derive(Debug, Clone)]
pub struct StatsMount {
    /// The path (any query, or none, matches).
    pub path: String,
    /// Entrypoint indexes it is served on; empty: all.
    pub entrypoints: Vec<usize>,
    pub page: std::sync::Arc<dyn StatsPage>,
}

/// Client connections per entrypoint, a cell per worker.
#[derive(Debug, Default)]
pub struct EntrypointStats {
    cells: PerWorker<EntrypointCell>,
}

#[derive(Debug, Default)]
struct EntrypointCell {
    /// Opened less closed on this worker (a connection closes on the worker that opened it;
    /// the sum is what is open).
    open: AtomicI64,
    accepted: AtomicU64,
}

impl EntrypointStats {
    /// A connection opened; it is counted open until the guard drops.
    pub fn opened(&self) -> Open<'_> {
        let c = self.cells.here();
        c.accepted.fetch_add(1, Relaxed);
        c.open.fetch_add(1, Relaxed);
        Open(c)
    }

    /// Connections open now.
    pub fn open(&self) -> i64 {
        self.cells.iter().map(|c| c.open.load(Relaxed)).sum()
    }

    /// Connections accepted since the start.
    pub fn accepted(&self) -> u64 {
        self.cells.sum(|c| c.accepted.load(Relaxed))
    }
}

/// An open connection, counted.
#[derive(Debug)]
pub struct Open<'a>(&'a EntrypointCell);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_counted_by_method_and_the_rare_ones_by_class() {
        let s = ServiceStats::default();
        let count =
            |m: &Method, code| s.count_request(method_index(m), code, (0, 0), 1, Affinity::None);
        count(&Method::GET, 200);
        count(&Method::GET, 200);
        count(&Method::POST, 418);
        count(&Method::from_bytes(b"PURGE").unwrap(), 503);
        let mut r = s.requests();
        r.sort();
        assert_eq!(
            r,
            [
                ("GET", "200".to_string(), 2),
                ("OTHER", "503".to_string(), 1),
                ("POST", "4xx".to_string(), 1)
            ]
        );
        assert_eq!(s.by_class(), [0, 2, 0, 1, 1]);
    }

    #[test]
    fn a_route_keeps_its_slot_and_a_freed_slot_starts_from_zero() {
        let r = RouteCounts::default();
        let (plan, slots) = r.plan(&["a", "b"]);
        assert_eq!(slots, [0, 1]);
        r.commit(plan);
        r.count(1, 1);
        r.count(1, 1);
        // "a" goes, "c" comes: "b" keeps slot 1 and its count; "c" takes slot 0 from zero.
        r.count(0, 4);
        let (plan, slots) = r.plan(&["b", "c"]);
        assert_eq!(slots, [1, 0]);
        r.commit(plan);
        assert_eq!(r.of("b"), ([0, 2, 0, 0, 0], false));
        assert_eq!(r.of("c"), ([0; 5], false));
        // Beyond the slots, routes share one.
        let many: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
        let names: Vec<&str> = many.iter().map(String::as_str).collect();
        let (plan, slots) = r.plan(&names);
        assert_eq!(slots.iter().filter(|&&s| s == SHARED_ROUTE_SLOT).count(), 2);
        r.commit(plan);
        r.count(SHARED_ROUTE_SLOT, 1);
        assert_eq!(r.of("r9"), ([0, 1, 0, 0, 0], true));
    }

    #[test]
    fn the_slot_table_agrees_with_the_list_of_codes() {
        for code in 0..1000u16 {
            let searched = match CODES.iter().position(|&c| c == code) {
                Some(i) => i,
                None => CODES.len() + usize::from((code / 100).clamp(1, 5) - 1),
            };
            assert_eq!(code_slot(code), searched, "code {code}");
        }
    }
}
