//! Consistent hash ring with weighted virtual nodes. Removing one of n servers moves only that
//! server's keys (about 1/n of all keys); every replica builds the same ring from server names.

use crate::hash::{hash64, mix};

/// Virtual nodes of the heaviest server; lighter servers get proportionally fewer.
const POINTS_PER_SERVER: u64 = 160;

#[derive(Debug, Clone)]
pub struct Ring {
    /// (point, server index), sorted by point.
    points: Vec<(u64, u32)>,
}

impl Ring {
    /// Build from (name, weight) in index order. Weight 0 servers get no points.
    pub fn new<'a>(servers: impl Iterator<Item = (&'a str, u32)>) -> Ring {
        let servers: Vec<(&str, u32)> = servers.collect();
        let max = servers.iter().map(|s| s.1).max().unwrap_or(0).max(1);
        let mut points = Vec::new();
        for (idx, (name, weight)) in servers.iter().enumerate() {
            if *weight == 0 {
                continue;
            }
            let n = (POINTS_PER_SERVER * u64::from(*weight) / u64::from(max)).max(1);
            let base = hash64(name.as_bytes());
            for v in 0..n {
                points.push((mix(base ^ mix(v + 1)), idx as u32));
            }
        }
        points.sort_unstable();
        Ring { points }
    }

    /// The first server clockwise from `key` that `ok` accepts.
    pub fn pick(&self, key: u64, ok: impl Fn(usize) -> bool) -> Option<usize> {
        let n = self.points.len();
        if n == 0 {
            return None;
        }
        let start = self.points.partition_point(|p| p.0 < key);
        (0..n)
            .map(|i| self.points[(start + i) % n].1 as usize)
            .find(|&i| ok(i))
    }
}
