//! A service's retry budget: a request that failed without being sent (a refused connect) may go
//! to another server only while the service has retries banked. Each request banks a fifth of a
//! retry, up to [`CAP`]; a service starts with [`START`]. So retries stay within about 20% of a
//! service's recent requests, and a dead service costs each request one attempt, not three:
//! no retry storm. The steady state (full bank, nothing failing) costs each request one relaxed
//! load.

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

/// Thousandths of a retry banked per request.
const DEPOSIT: i64 = 200;
/// One retry, in thousandths.
const COST: i64 = 1000;
/// At most 100 retries banked.
pub const CAP: i64 = 100 * COST;
/// Banked when the service is declared: 10 retries.
pub const START: i64 = 10 * COST;

#[derive(Debug)]
pub struct RetryBudget {
    milli: AtomicI64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            milli: AtomicI64::new(START),
        }
    }
}

impl RetryBudget {
    /// A request arrived.
    pub fn deposit(&self) {
        if self.milli.load(Relaxed) < CAP {
            self.milli.fetch_add(DEPOSIT, Relaxed);
        }
    }

    /// May one more retry be made? Takes it from the bank if so.
    pub fn withdraw(&self) -> bool {
        self.milli
            .fetch_update(Relaxed, Relaxed, |m| (m >= COST).then_some(m - COST))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_stay_within_a_fifth_of_requests_after_the_start_reserve() {
        let b = RetryBudget::default();
        let mut retries = 0;
        for _ in 0..1000 {
            b.deposit();
            while b.withdraw() {
                retries += 1;
            }
        }
        // 10 banked at the start, then one per five requests.
        assert_eq!(retries, 10 + 200);
        // A full bank stops growing.
        let full = RetryBudget::default();
        for _ in 0..10_000 {
            full.deposit();
        }
        let mut n = 0;
        while full.withdraw() {
            n += 1;
        }
        assert_eq!(n, 100);
    }
}
