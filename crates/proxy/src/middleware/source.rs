//! Which source a request counts for, in `rate_limit` and `in_flight`: a 64-bit key, hashed
//! with a seed drawn at random for each table (foldhash), so that no client can choose a value
//! that shares another's bucket. The client address is the one the admit phase computed, so forwarded
//! fields from a peer that is not a trusted proxy cannot pick another bucket.

use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::net::IpAddr;

pub use foldhash::fast::RandomState;

use tether_model::middleware::Source;

use super::Request;
use crate::headers::ReadFields as _;

/// The source of `r` by `by`, as a key of `keys`.
pub fn key(by: &Source, r: &Request<'_, '_>, keys: &RandomState) -> u64 {
    match by {
        Source::ClientIp { depth: 0 } | Source::Route => address(r.client, keys),
        Source::ClientIp { depth } => address(at_depth(r, *depth).unwrap_or(r.client), keys),
        Source::Header(name) => match r.head.first_value(name) {
            Some(v) => keys.hash_one((1u8, v)),
            None => address(r.client, keys),
        },
    }
}

/// An address's key: one 128-bit word (an IPv4 address mapped into IPv6's space).
fn address(ip: IpAddr, keys: &RandomState) -> u64 {
    let word = match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().to_bits(),
        IpAddr::V6(a) => a.to_bits(),
    };
    keys.hash_one(word)
}

/// The client's address at `depth` (Traefik's `ipStrategy.depth`): with 0, or when the peer is
/// not a trusted proxy (its forwarded fields are not believed), the admitted address; else the
/// `depth`th `X-Forwarded-For` entry from the right, `None` when there is no such entry or it
/// is not an address.
pub(super) fn at_depth(r: &Request<'_, '_>, depth: u32) -> Option<IpAddr> {
    if depth == 0 || !r.peer.trusted {
        return Some(r.client);
    }
    nth_forwarded(r, depth as usize)
}

/// The `depth`th `X-Forwarded-For` entry from the right (1: the rightmost), when it is an
/// address.
fn nth_forwarded(r: &Request<'_, '_>, depth: usize) -> Option<std::net::IpAddr> {
    let values: Vec<&[u8]> = r.head.values("x-forwarded-for").collect();
    let entry = values
        .iter()
        .rev()
        .flat_map(|v| std::str::from_utf8(v).unwrap_or("").rsplit(','))
        .nth(depth.checked_sub(1)?)?;
    entry.trim().parse().ok()
}

/// A hasher for keys that are hashes already (the tables of [`key`]s): the key itself.
#[derive(Default)]
pub struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed with it; anything else is folded in, never dropped.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub type BuildPrehashed = BuildHasherDefault<Prehashed>;

/// Shards of a table of sources: a lock each, so that workers rarely wait on one another.
pub const SHARDS: usize = 16;

/// The shard of `key`: four bits from its middle (a shard's own table takes its index from the
/// low bits and its tags from the top ones).
pub fn shard(key: u64) -> usize {
    (key >> 28) as usize % SHARDS
}
