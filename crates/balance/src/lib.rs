//! Choosing a backend. No HTTP here: the proxy asks "which server?" and gets an index.
//!
//! - [`state`]: per-server live state (in-flight count, draining, health, passive failures) that
//!   survives reconfiguration, read with atomics on every pick.
//! - [`Balancer`]: the per-service algorithm, built once per routing table.
//! - [`affinity`]: sealed server keys for sticky sessions.
//! - [`hash`]: the stable hash every proxy replica computes identically.

pub mod affinity;
#[doc(hidden)]
pub mod fuzz;
pub mod hash;
mod least_requests;
mod ring;
mod round_robin;
pub mod state;

use std::sync::Arc;

use tether_model::BalanceAlgo;

pub use affinity::{AffinityKey, Pin, StickyIndex};
pub use ring::Ring;
pub use state::ServerState;

/// A server as the balancer sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: Arc<str>,
    pub weight: u32,
    pub state: Arc<ServerState>,
    /// Picked only while no other server can be (HAProxy's `backup`).
    pub backup: bool,
}

/// What a pick may depend on besides the servers' state.
#[derive(Debug, Clone, Copy, Default)]
pub struct PickInput<'a> {
    /// The hash key for consistent hashing (client IP, header or cookie value), if any.
    pub hash_key: Option<&'a [u8]>,
    /// Indices already tried for this request (after a failed connect).
    pub exclude: &'a [usize],
}

/// One service's algorithm over its servers, indexed as given.
#[derive(Debug)]
pub struct Balancer {
    servers: Vec<Candidate>,
    /// Over the servers that are not backups (all of them when none is).
    algo: Algo,
    /// Over the backup servers, when there are any: picked from only when no other server can
    /// be. A tier of its own, so its round-robin cursor and hash ring are its own.
    backup: Option<Algo>,
}

#[derive(Debug)]
enum Algo {
    RoundRobin(round_robin::SmoothRoundRobin),
    LeastRequests,
    Hash(Ring),
}

impl Algo {
    /// `algo` over the servers `member` accepts (the others weigh 0: never in the cycle or the
    /// ring).
    fn new(algo: &BalanceAlgo, servers: &[Candidate], member: impl Fn(&Candidate) -> bool) -> Algo {
        let weight = |s: &Candidate| if member(s) { s.weight } else { 0 };
        match algo {
            BalanceAlgo::RoundRobin => {
                let weights: Vec<u32> = servers.iter().map(weight).collect();
                Algo::RoundRobin(round_robin::SmoothRoundRobin::new(&weights))
            }
            BalanceAlgo::LeastRequests => Algo::LeastRequests,
            BalanceAlgo::ConsistentHash(_) => {
                Algo::Hash(Ring::new(servers.iter().map(|s| (&*s.name, weight(s)))))
            }
        }
    }
}

impl Balancer {
    pub fn new(algo: &BalanceAlgo, servers: Vec<Candidate>) -> Balancer {
        let backup = servers
            .iter()
            .any(|s| s.backup)
            .then(|| Algo::new(algo, &servers, |s| s.backup));
        let algo = Algo::new(algo, &servers, |s| !s.backup);
        Balancer {
            servers,
            algo,
            backup,
        }
    }

    pub fn servers(&self) -> &[Candidate] {
        &self.servers
    }

    /// Pick a server that takes new requests. If every server is passively marked down, retries
    /// ignoring those marks (a marked server may have recovered; better than failing outright).
    /// Backup servers are picked only when no other server can be, at either step.
    pub fn pick(&self, input: PickInput<'_>) -> Option<usize> {
        let Some(backup) = &self.backup else {
            return self
                .pick_with(&self.algo, input, true, false)
                .or_else(|| self.pick_with(&self.algo, input, false, false));
        };
        self.pick_with(&self.algo, input, true, false)
            .or_else(|| self.pick_with(backup, input, true, true))
            .or_else(|| self.pick_with(&self.algo, input, false, false))
            .or_else(|| self.pick_with(backup, input, false, true))
    }

    /// A pick by `algo` among the servers whose `backup` is `backups`.
    fn pick_with(
        &self,
        algo: &Algo,
        input: PickInput<'_>,
        strict: bool,
        backups: bool,
    ) -> Option<usize> {
        let ok = |i: usize| {
            let s = &self.servers[i];
            s.weight > 0
                && s.backup == backups
                && !input.exclude.contains(&i)
                && s.state.takes_new(strict)
        };
        match algo {
            Algo::RoundRobin(rr) => rr.pick(ok),
            Algo::LeastRequests => least_requests::pick(&self.servers, ok),
            Algo::Hash(ring) => match input.hash_key {
                Some(k) => ring.pick(hash::hash64(k), ok),
                // No key on this request (header absent): spread randomly among usable servers.
                None => least_requests::pick(&self.servers, ok),
            },
        }
    }
}

#[cfg(test)]
mod tests;
