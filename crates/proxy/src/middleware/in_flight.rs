//! `in_flight`: at most `amount` requests at once from one source; a request beyond is answered
//! 429. A request holds its place ([`Held`]) from its middleware's turn until its response's
//! body has gone out or the client went away (the place rides in the request's meter). The
//! counts are kept across tables while the route names the same declaration ([`super::Kept`]);
//! a source's entry goes when its count is back to 0, so the tables hold only sources with a
//! request in flight.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use http::StatusCode;
use tether_model::middleware::{InFlight as Decl, Source};

use super::source::{self, BuildPrehashed, RandomState, SHARDS};
use super::{Flow, Request};

/// One route's counts for one declaration.
#[derive(Debug)]
pub struct Counts {
    pub(super) decl: Decl,
    keys: RandomState,
    /// `by = "route"`.
    route: AtomicU32,
    shards: Box<[Mutex<HashMap<u64, u32, BuildPrehashed>>]>,
}

impl Counts {
    pub fn new(decl: &Decl) -> Counts {
        Counts {
            decl: decl.clone(),
            keys: RandomState::default(),
            route: AtomicU32::new(0),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// Take a place for `key` (`None`: the route's), if one is free.
    fn take(self: &Arc<Self>, key: Option<u64>) -> Option<Held> {
        let amount = self.decl.amount;
        match key {
            None => {
                let passed = self
                    .route
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < amount).then_some(n + 1)
                    })
                    .is_ok();
                passed.then(|| Held {
                    counts: self.clone(),
                    key: None,
                })
            }
            Some(k) => {
                let mut table = self.shards[source::shard(k)]
                    .lock()
                    .expect("in-flight table poisoned");
                let n = table.entry(k).or_insert(0);
                if *n >= amount {
                    return None;
                }
                *n += 1;
                Some(Held {
                    counts: self.clone(),
                    key: Some(k),
                })
            }
        }
    }

    /// Requests in flight for `key` (`None`: the route's).
    #[cfg(test)]
    fn in_flight(&self, key: Option<u64>) -> u32 {
        match key {
            None => self.route.load(Ordering::Acquire),
            Some(k) => self.shards[source::shard(k)]
                .lock()
                .unwrap()
                .get(&k)
                .copied()
                .unwrap_or(0),
        }
    }
}

/// A request's place, given back when dropped.
#[derive(Debug)]
pub struct Held {
    counts: Arc<Counts>,
    key: Option<u64>,
}

impl Drop for Held {
    fn drop(&mut self) {
        match self.key {
            None => {
                self.counts.route.fetch_sub(1, Ordering::AcqRel);
            }
            Some(k) => {
                let mut table = self.counts.shards[source::shard(k)]
                    .lock()
                    .expect("in-flight table poisoned");
                if let Some(n) = table.get_mut(&k) {
                    *n -= 1;
                    if *n == 0 {
                        table.remove(&k);
                    }
                }
            }
        }
    }
}

#[derive(Debug)]
pub struct InFlight {
    counts: Arc<Counts>,
}

impl InFlight {
    pub fn new(counts: Arc<Counts>) -> InFlight {
        InFlight { counts }
    }

    pub fn request(&self, r: &mut Request<'_, '_>) -> Flow {
        let c = &self.counts;
        let key = match &c.decl.by {
            Source::Route => None,
            by => Some(source::key(by, r, &c.keys)),
        };
        match c.take(key) {
            Some(held) => {
                r.held.push(held);
                Flow::Next
            }
            None => Flow::answer(crate::answer::error(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests in flight: try again later",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_taken_up_to_the_amount_and_given_back_when_dropped() {
        let c = Arc::new(Counts::new(&Decl {
            amount: 2,
            by: Source::ClientIp { depth: 0 },
        }));
        let a = c.take(Some(1)).unwrap();
        let b = c.take(Some(1)).unwrap();
        assert!(c.take(Some(1)).is_none());
        let other = c.take(Some(2)).expect("another source has its own count");
        drop(a);
        assert_eq!(c.in_flight(Some(1)), 1);
        let again = c.take(Some(1)).unwrap();
        drop((b, again, other));
        assert_eq!(c.in_flight(Some(1)), 0);
        let held: usize = c.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert_eq!(held, 0, "a source with nothing in flight has no entry");
        // The route's own count.
        let r1 = c.take(None).unwrap();
        let _r2 = c.take(None).unwrap();
        assert!(c.take(None).is_none());
        drop(r1);
        assert!(c.take(None).is_some());
    }
}
