//! A latency histogram of relaxed atomics: one increment per observation, no lock; read
//! (cumulatively, as Prometheus wants it) only by a scrape or the stats page.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds of the buckets, in microseconds (`+Inf` follows): finer than Traefik's four
/// (0.1, 0.3, 1.2, 5 s), from half a millisecond to a minute.
pub const BOUNDS_US: [u64; 16] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

/// Observations by bucket, and their sum.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last is `+Inf`.
    counts: [AtomicU64; BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

/// A histogram read at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Cumulative counts per bound of [`BOUNDS_US`], then `+Inf` (= the count).
    pub cumulative: Vec<u64>,
    pub sum_us: u64,
}

impl Histogram {
    pub fn observe(&self, us: u64) {
        let i = BOUNDS_US.partition_point(|&b| b < us);
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut total = 0;
        let cumulative = self
            .counts
            .iter()
            .map(|c| {
                total += c.load(Relaxed);
                total
            })
            .collect();
        Snapshot {
            cumulative,
            sum_us: self.sum_us.load(Relaxed),
        }
    }
}

impl Snapshot {
    /// The histograms' observations together (one per worker, read as one).
    pub fn merged<'a>(hs: impl IntoIterator<Item = &'a Histogram>) -> Snapshot {
        let mut out = Snapshot {
            cumulative: vec![0; BOUNDS_US.len() + 1],
            sum_us: 0,
        };
        for h in hs {
            let s = h.snapshot();
            for (a, b) in out.cumulative.iter_mut().zip(&s.cumulative) {
                *a += b;
            }
            out.sum_us += s.sum_us;
        }
        out
    }

    pub fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// The observations between an earlier snapshot and this one.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        Snapshot {
            cumulative: self
                .cumulative
                .iter()
                .zip(earlier.cumulative.iter().chain(std::iter::repeat(&0)))
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
            sum_us: self.sum_us.saturating_sub(earlier.sum_us),
        }
    }

    /// The `q` quantile in microseconds, interpolated within its bucket (as Prometheus's
    /// `histogram_quantile` does); `None` without observations.
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = q * count as f64;
        let mut lower_count = 0u64;
        let mut lower_bound = 0u64;
        for (i, &c) in self.cumulative.iter().enumerate() {
            if c as f64 >= rank {
                let Some(&upper) = BOUNDS_US.get(i) else {
                    // In +Inf: the highest finite bound is all that can be said.
                    return Some(lower_bound as f64);
                };
                let in_bucket = (c - lower_count) as f64;
                let frac = if in_bucket == 0.0 {
                    0.0
                } else {
                    (rank - lower_count as f64) / in_bucket
                };
                return Some(lower_bound as f64 + frac * (upper - lower_bound) as f64);
            }
            lower_count = c;
            lower_bound = BOUNDS_US.get(i).copied().unwrap_or(lower_bound);
        }
        Some(lower_bound as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_quantiles_interpolate() {
        let h = Histogram::default();
        for us in [100, 400, 900, 2_000, 2_000, 7_000, 70_000_000] {
            h.observe(us);
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 7);
        assert_eq!(&s.cumulative[..5], &[2, 3, 5, 5, 6]);
        assert_eq!(s.cumulative[BOUNDS_US.len()], 7, "+Inf holds everything");
        assert_eq!(s.sum_us, 70_012_400);
        let p50 = s.quantile_us(0.5).unwrap();
        assert!((1_000.0..=2_500.0).contains(&p50), "{p50}");
        assert_eq!(s.quantile_us(1.0), Some(60_000_000.0));
        let later = {
            h.observe(300);
            h.snapshot()
        };
        assert_eq!(later.since(&s).count(), 1);
        assert_eq!(Snapshot::default().quantile_us(0.5), None);
    }

    #[test]
    fn histograms_merged_read_as_one_that_saw_every_observation() {
        let (one, a, b) = (
            Histogram::default(),
            Histogram::default(),
            Histogram::default(),
        );
        for (i, us) in [100, 400, 900, 2_000, 7_000, 70_000_000]
            .into_iter()
            .enumerate()
        {
            one.observe(us);
            if i % 2 == 0 { &a } else { &b }.observe(us);
        }
        assert_eq!(Snapshot::merged([&a, &b]), one.snapshot());
        assert_eq!(Snapshot::merged([]).count(), 0);
    }
}
