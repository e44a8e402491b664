//! `rate_limit`: a token bucket per source, kept as one number: the bucket's theoretical arrival
//! time (GCRA, the generic cell rate algorithm; the same decisions as a bucket of `burst` tokens
//! refilled one per `period / average`). A request passes when the bucket is at most `burst - 1`
//! intervals ahead of now; otherwise it is answered 429 with `Retry-After`, the whole seconds
//! until one token is back.
//!
//! The buckets live in [`SHARDS`] tables of bounded size that forget the least recently seen
//! source first ([`lru`]): a flood of addresses costs no more memory than the table's size, and
//! an address forgotten starts again with a full bucket. They are kept across tables while the
//! route names the same declaration ([`super::Kept`]), and are per process: each replica keeps
//! its own.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use http::header::{HeaderValue, RETRY_AFTER};
use http::StatusCode;
use lru::LruCache;
use tether_model::middleware::{RateLimit as Decl, Source};

use super::source::{self, BuildPrehashed, RandomState, SHARDS};
use super::{Flow, Request};

/// One route's buckets for one declaration.
#[derive(Debug)]
pub struct Buckets {
    pub(super) decl: Decl,
    keys: RandomState,
    /// Per shard: the source's key → its theoretical arrival time in ns (or, when
    /// the bucket never refills, the requests it let through).
    shards: Box<[Mutex<LruCache<u64, u64, BuildPrehashed>>]>,
    /// Nanoseconds between two tokens; 0: never refilled.
    interval: u64,
    /// How far ahead of now the arrival time may be for a request to pass.
    tolerance: u64,
}

impl Buckets {
    pub fn new(decl: &Decl) -> Buckets {
        let per_shard =
            NonZeroUsize::new(decl.table_size.div_ceil(SHARDS)).unwrap_or(NonZeroUsize::MIN);
        let interval = if decl.average == 0 {
            0
        } else {
            // At least 1 ns: a rate above a billion a second is no limit.
            (u128::from(decl.period_ms) * 1_000_000 / u128::from(decl.average)).max(1) as u64
        };
        Buckets {
            decl: decl.clone(),
            keys: RandomState::default(),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(LruCache::with_hasher(per_shard, BuildPrehashed::default())))
                .collect(),
            interval,
            tolerance: interval.saturating_mul(decl.burst.saturating_sub(1)),
        }
    }

    /// Take a token for `key` at `now` (ns on the process's coarse clock): `Ok`, or the nanoseconds until one
    /// is back (`None`: never).
    fn take(&self, key: u64, now: u64) -> Result<(), Option<u64>> {
        let mut table = self.shards[source::shard(key)]
            .lock()
            .expect("rate limit table poisoned");
        if self.interval == 0 {
            let used = table.get_or_insert_mut(key, || 0);
            if *used >= self.decl.burst {
                return Err(None);
            }
            *used += 1;
            return Ok(());
        }
        let tat = table.get_or_insert_mut(key, || now);
        let start = (*tat).max(now);
        let ahead = start - now;
        if ahead > self.tolerance {
            return Err(Some(ahead - self.tolerance));
        }
        *tat = start + self.interval;
        Ok(())
    }
}

#[derive(Debug)]
pub struct RateLimit {
    buckets: Arc<Buckets>,
}

impl RateLimit {
    pub fn new(buckets: Arc<Buckets>) -> RateLimit {
        RateLimit { buckets }
    }

    pub fn request(&self, r: &mut Request<'_, '_>) -> Flow {
        let b = &*self.buckets;
        let key = match &b.decl.by {
            Source::Route => 0,
            by => source::key(by, r, &b.keys),
        };
        // The coarse clock (1 to 4 ms a tick): a token's worth of time is at least that in
        // any limit that matters, and the bucket's tolerance absorbs the rest.
        let now = tether_balance::state::now_ms() * 1_000_000;
        match b.take(key, now) {
            Ok(()) => Flow::Next,
            Err(wait) => {
                let mut answer = crate::answer::error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many requests: try again later",
                );
                if let Some(ns) = wait {
                    let secs = ns.div_ceil(1_000_000_000).max(1);
                    answer
                        .headers_mut()
                        .insert(RETRY_AFTER, HeaderValue::from(secs));
                }
                Flow::answer(answer)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(average: u64, period_ms: u64, burst: u64, table_size: usize) -> Decl {
        Decl {
            average,
            period_ms,
            burst,
            by: Source::ClientIp { depth: 0 },
            table_size,
        }
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_burst_passes_then_one_request_per_interval() {
        // 2 a second, a burst of 3.
        let b = Buckets::new(&decl(2, 1000, 3, 1024));
        for _ in 0..3 {
            assert_eq!(b.take(7, 0), Ok(()));
        }
        // The fourth waits for one token: half a second.
        assert_eq!(b.take(7, 0), Err(Some(S / 2)));
        // Another source has its own bucket.
        assert_eq!(b.take(8, 0), Ok(()));
        assert_eq!(b.take(7, S / 2), Ok(()));
        assert_eq!(b.take(7, S / 2), Err(Some(S / 2)));
        // Idle for long: full again, never more than the burst.
        for _ in 0..3 {
            assert_eq!(b.take(7, 100 * S), Ok(()));
        }
        assert!(b.take(7, 100 * S).is_err());
    }

    #[test]
    fn a_rate_below_one_a_second_uses_the_period() {
        // 1 a minute.
        let b = Buckets::new(&decl(1, 60_000, 1, 1024));
        assert_eq!(b.take(1, 0), Ok(()));
        assert_eq!(b.take(1, S), Err(Some(59 * S)));
        assert_eq!(b.take(1, 60 * S), Ok(()));
    }

    #[test]
    fn without_average_the_burst_is_all_there_is() {
        let b = Buckets::new(&decl(0, 1000, 2, 1024));
        assert_eq!(b.take(1, 0), Ok(()));
        assert_eq!(b.take(1, 0), Ok(()));
        assert_eq!(b.take(1, 1000 * S), Err(None));
    }

    #[test]
    fn the_table_is_bounded_and_forgets_the_least_recently_seen() {
        let b = Buckets::new(&decl(1, 1000, 1, 16 * SHARDS));
        // A million sources: the tables never hold more than their size.
        for k in 0..1_000_000u64 {
            let _ = b.take(k.wrapping_mul(0x9E37_79B9_7F4A_7C15), 0);
        }
        let held: usize = b.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(held <= 16 * SHARDS, "{held}");
        // A source seen last is remembered (its bucket is empty); one seen long ago is not.
        let last = 999_999u64.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        assert!(b.take(last, 0).is_err());
        assert_eq!(b.take(0, 0), Ok(()), "the first source was forgotten");
    }
}
