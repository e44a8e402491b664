//! Smooth weighted round robin (NGINX's algorithm), precomputed: the whole cycle is laid out once
//! per table, and a pick is one atomic increment and an array read. Weights 3:1 give A A B A.
//! Each worker walks the cycle with a cursor of its own (from its own random start, as NGINX's
//! worker processes do), so workers never write the same cache line to pick; each worker's
//! share is the weights' proportions, and so is their sum.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Longest cycle laid out in memory; beyond it (huge weights over many servers) the cycle is
/// computed with the weights scaled down, which keeps proportions to within 1/MAX_CYCLE.
const MAX_CYCLE: u64 = 1 << 16;

#[derive(Debug)]
pub(crate) struct SmoothRoundRobin {
    cycle: Box<[u32]>,
    /// Each worker's cursor into `cycle`.
    next: tether_worker::PerWorker<AtomicUsize>,
}

impl SmoothRoundRobin {
    pub fn new(weights: &[u32]) -> SmoothRoundRobin {
        let g = weights.iter().copied().filter(|&w| w > 0).fold(0, gcd);
        let mut w: Vec<u64> = weights
            .iter()
            .map(|&w| u64::from(w.checked_div(g).unwrap_or(0)))
            .collect();
        let total: u64 = w.iter().sum();
        if total > MAX_CYCLE {
            for x in &mut w {
                if *x > 0 {
                    *x = (*x * MAX_CYCLE / total).max(1);
                }
            }
        }
        SmoothRoundRobin {
            cycle: layout(&w).into(),
            next: tether_worker::PerWorker::new(|| AtomicUsize::new(fastrand::usize(..1024))),
        }
    }

    /// First server of the cycle, from this worker's cursor on, that `ok` accepts.
    pub fn pick(&self, ok: impl Fn(usize) -> bool) -> Option<usize> {
        let n = self.cycle.len();
        if n == 0 {
            return None;
        }
        let start = self.next.here().fetch_add(1, Relaxed);
        (0..n)
            .map(|i| self.cycle[(start + i) % n] as usize)
            .find(|&i| ok(i))
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// One full smooth-weighted cycle: each step adds every weight to its server's current value, picks
/// the largest, and subtracts the total from it.
fn layout(weights: &[u64]) -> Vec<u32> {
    let total: i64 = weights.iter().sum::<u64>() as i64;
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, &w) in weights.iter().enumerate() {
            current[i] += w as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u32);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycle_is_smooth_and_proportional() {
        assert_eq!(layout(&[3, 1]), vec![0, 0, 1, 0]);
        assert_eq!(layout(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
        let rr = SmoothRoundRobin::new(&[300, 100]);
        assert_eq!(rr.cycle.len(), 4, "weights are reduced by their gcd");
    }

    #[test]
    fn huge_weights_stay_bounded() {
        let weights = [1000u32, 999, 997, 991].repeat(100);
        let rr = SmoothRoundRobin::new(&weights);
        assert!(rr.cycle.len() as u64 <= MAX_CYCLE + weights.len() as u64);
    }

    #[test]
    fn each_worker_walks_the_cycle_with_its_own_cursor() {
        tether_worker::set_count(2);
        let rr = std::sync::Arc::new(SmoothRoundRobin::new(&[3, 1]));
        let counts: Vec<[usize; 2]> = (0..2)
            .map(|w| {
                let rr = rr.clone();
                std::thread::spawn(move || {
                    tether_worker::enter(w);
                    let mut n = [0; 2];
                    for _ in 0..400 {
                        n[rr.pick(|_| true).unwrap()] += 1;
                    }
                    n
                })
                .join()
                .unwrap()
            })
            .collect();
        for n in &counts {
            assert_eq!(n, &[300, 100], "each worker's share is the weights'");
        }
        let cursors: Vec<usize> = rr.next.iter().map(|c| c.load(Relaxed)).collect();
        assert!(cursors.len() >= 3);
        assert!(
            cursors[1] >= 400 && cursors[2] >= 400,
            "workers 1 and 2 moved only their own cursors: {cursors:?}"
        );
        assert!(
            cursors[0] < 1024,
            "slot 0's cursor was not moved: {cursors:?}"
        );
    }

    #[test]
    fn zero_weights_are_never_in_the_cycle() {
        let rr = SmoothRoundRobin::new(&[0, 2]);
        assert!(rr.cycle.iter().all(|&i| i == 1));
        assert!(SmoothRoundRobin::new(&[0, 0]).pick(|_| true).is_none());
    }
}
