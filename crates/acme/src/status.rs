//! What is known of each certificate ACME keeps, for `GET /api/certificates`, the stats page and
//! `/metrics`: its state, validity, next renewal, and the last error with the CA's own problem
//! document; and the orders placed, by resolver and result (`tether_acme_orders_total`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

/// Where a certificate stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Not looked at yet.
    #[default]
    Pending,
    /// Issued and serving; renewed at `next_renewal`.
    Valid,
    /// An order is under way in this process.
    Ordering,
    /// Another process holds the order's lock (another replica, or the other process of an
    /// upgrade); its certificate serves here once stored.
    OrderingElsewhere,
    /// The last order failed; the next one is at `next_attempt`.
    Failed,
    /// Waiting for the backoff or the resolver's `max_orders_per_hour`.
    Waiting,
    /// A certificate of `tether.toml` or the admin API serves every name: nothing is ordered.
    Covered,
}

/// The last error of a certificate's orders.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastError {
    pub message: String,
    /// The CA's problem document (RFC 8555 section 6.7), when it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<serde_json::Value>,
    #[serde(serialize_with = "rfc3339")]
    pub at: SystemTime,
}

impl LastError {
    pub fn new(message: String, problem: Option<serde_json::Value>) -> LastError {
        LastError {
            message,
            problem,
            at: SystemTime::now(),
        }
    }
}

/// One certificate that routes ask a resolver for.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CertState {
    pub id: String,
    pub resolver: String,
    pub names: Vec<String>,
    pub state: State,
    #[serde(serialize_with = "rfc3339_opt")]
    pub not_after: Option<SystemTime>,
    pub serial: Option<String>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub next_renewal: Option<SystemTime>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub next_attempt: Option<SystemTime>,
    /// Failed orders in a row.
    pub failures: u32,
    /// Orders this process placed for it.
    pub orders: u64,
    pub last_error: Option<LastError>,
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_seconds(*t))
}

fn rfc3339_opt<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

/// Orders placed, by (resolver, result): `success` or `error`.
#[derive(Debug, Default)]
pub struct Orders(Mutex<BTreeMap<(String, String), u64>>);

impl Orders {
    pub fn add(&self, resolver: &str, result: &str) {
        *self
            .0
            .lock()
            .expect("ACME orders poisoned")
            .entry((resolver.to_string(), result.to_string()))
            .or_default() += 1;
    }

    /// Every count, by (resolver, result).
    pub fn totals(&self) -> BTreeMap<(String, String), u64> {
        self.0.lock().expect("ACME orders poisoned").clone()
    }
}
