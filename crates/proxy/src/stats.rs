//! What the data plane counts, for the stats page, `/metrics` and the access log: relaxed
//! atomics beside each server's state ([`ServerStats`], in its [`Backend`]) and each service's
//! ([`ServiceStats`], kept by the registry so that a reload keeps the counts), bumped once at the
//! end of each request by its meter ([`crate::upstream::meter`]). This module imports nothing
//! else of the crate: the counters are plain types the rest holds. No lock is taken on the request path; a scrape reads the
//! atomics of the servers and services of the table it is served from, so the series of a
//! removed service or server disappear with it.
//!
//! [`Backend`]: crate::upstream::registry::Backend

pub mod histogram;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use http::Method;

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

/// One server's counters.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Responses by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    pub by_class: [AtomicU64; 5],
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Requests that went on to another server after this one failed them.
    pub retries: AtomicU64,
    /// Sessions pinned to it afresh, and moved to it from a server that was gone.
    pub new_pins: AtomicU64,
    pub rebalanced: AtomicU64,
    pub latency: Histogram,
}

impl ServerStats {
    pub fn requests(&self) -> u64 {
        self.by_class.iter().map(|c| c.load(Relaxed)).sum()
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

/// One service's counters.
#[derive(Debug, Default)]
pub struct ServiceStats {
    /// The service's name (for the access log).
    pub name: std::sync::Arc<str>,
    /// Responses by method and code ([`CODES`], then one per class for the others).
    by_code: [[AtomicU64; CODE_SLOTS]; METHODS.len()],
    pub latency: Histogram,
    /// Affinity outcomes: requests whose cookie's server took them, sessions pinned afresh,
    /// sessions moved, and values Tether did not issue.
    pub sticky_hits: AtomicU64,
    pub sticky_misses: AtomicU64,
    pub sticky_rebalanced: AtomicU64,
    pub sticky_forged: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
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

    pub fn count(&self, method: u8, code: u16) {
        self.by_code[usize::from(method).min(METHODS.len() - 1)][code_slot(code)]
            .fetch_add(1, Relaxed);
    }

    /// Every non-zero `(method, code label, count)`.
    pub fn requests(&self) -> Vec<(&'static str, String, u64)> {
        let mut out = Vec::new();
        for (m, row) in self.by_code.iter().enumerate() {
            for (slot, c) in row.iter().enumerate() {
                let n = c.load(Relaxed);
                if n > 0 {
                    out.push((METHODS[m], code_label(slot), n));
                }
            }
        }
        out
    }

    /// Responses by status class, all methods together.
    pub fn by_class(&self) -> [u64; 5] {
        let mut classes = [0u64; 5];
        for row in &self.by_code {
            for (slot, c) in row.iter().enumerate() {
                let class = match CODES.get(slot) {
                    Some(code) => usize::from(code / 100 - 1),
                    None => slot - CODES.len(),
                };
                classes[class.min(4)] += c.load(Relaxed);
            }
        }
        classes
    }

    pub fn note_affinity(&self, a: Affinity) {
        let c = match a {
            Affinity::None => return,
            Affinity::Pinned => &self.sticky_hits,
            Affinity::New => &self.sticky_misses,
            Affinity::Rebalanced => &self.sticky_rebalanced,
            Affinity::Forged => &self.sticky_forged,
        };
        c.fetch_add(1, Relaxed);
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

/// Open client connections per entrypoint.
#[derive(Debug, Default)]
pub struct EntrypointStats {
    pub open: AtomicI64,
    pub accepted: AtomicU64,
}

impl EntrypointStats {
    /// A connection opened; it is counted open until the guard drops.
    pub fn opened(&self) -> Open<'_> {
        self.accepted.fetch_add(1, Relaxed);
        self.open.fetch_add(1, Relaxed);
        Open(self)
    }
}

/// An open connection, counted.
#[derive(Debug)]
pub struct Open<'a>(&'a EntrypointStats);

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
        s.count(method_index(&Method::GET), 200);
        s.count(method_index(&Method::GET), 200);
        s.count(method_index(&Method::POST), 418);
        s.count(method_index(&Method::from_bytes(b"PURGE").unwrap()), 503);
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
