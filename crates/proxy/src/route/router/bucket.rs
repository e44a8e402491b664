//! One list of candidate routes (those of one host, one wildcard suffix, or the host-less ones),
//! best first. A short list is scanned; a long one is indexed by the path prefixes its rules
//! require, so a lookup costs one hash probe per distinct prefix length instead of a scan of every
//! route: the same for 10 or 10,000 `PathPrefix` routes.
//!
//! The index is keyed by the prefix's hash, not the prefix: every candidate is checked with its
//! whole rule anyway (which compares the prefix), so two prefixes whose hashes collide only share a
//! list. This keeps the index to three allocations per bucket however many prefixes it holds,
//! which is most of what compiling a large table costs.

use std::hash::BuildHasher;

use rustc_hash::{FxBuildHasher, FxHashMap as HashMap};
use tether_model::rule::RequestView;

use super::RouteEntry;

/// Lists up to this long are scanned.
const SCAN_MAX: usize = 8;

#[derive(Debug, Default)]
pub struct Bucket {
    /// Routes whose rules require no path prefix (all routes when not indexed), best first.
    scan: Box<[u32]>,
    /// Hash of a required prefix → the range of `indexed` holding its routes.
    by_prefix: HashMap<u64, (u32, u32)>,
    /// Route indices grouped by prefix hash, each group best first.
    indexed: Box<[u32]>,
    /// The distinct lengths of the required prefixes, ascending.
    lengths: Box<[usize]>,
}

fn key(prefix: &str) -> u64 {
    FxBuildHasher.hash_one(prefix)
}

impl Bucket {
    /// `members` are route indices, best first.
    pub fn new(routes: &[RouteEntry], members: Vec<u32>) -> Bucket {
        Bucket::keyed_by(routes, members, key)
    }

    /// The best (lowest) index of a route in this bucket that matches.
    pub fn first(&self, routes: &[RouteEntry], req: &RequestView<'_>) -> Option<u32> {
        self.first_keyed_by(routes, req, key)
    }

    /// [`Bucket::new`] with the prefix hash `key` (tests make every prefix collide).
    fn keyed_by(routes: &[RouteEntry], members: Vec<u32>, key: impl Fn(&str) -> u64) -> Bucket {
        if members.len() <= SCAN_MAX {
            return Bucket {
                scan: members.into(),
                ..Bucket::default()
            };
        }
        let mut scan = Vec::new();
        let mut keyed: Vec<(u64, u32)> = Vec::with_capacity(members.len());
        let mut lengths = Vec::new();
        for i in members {
            match routes[i as usize].rule.required_path_prefixes() {
                None => scan.push(i),
                Some(prefixes) => {
                    for p in prefixes.iter() {
                        keyed.push((key(p.as_str()), i));
                        lengths.push(p.len());
                    }
                }
            }
        }
        // Grouped by key, each group in route order (best first); a rule naming one prefix twice,
        // or two colliding prefixes in one rule, lists its route once.
        keyed.sort_unstable();
        keyed.dedup();
        let mut by_prefix = HashMap::default();
        by_prefix.reserve(keyed.len());
        let mut start = 0;
        for (n, &(k, _)) in keyed.iter().enumerate() {
            if keyed.get(n + 1).map(|&(next, _)| next) != Some(k) {
                by_prefix.insert(k, (start as u32, (n + 1) as u32));
                start = n + 1;
            }
        }
        lengths.sort_unstable();
        lengths.dedup();
        Bucket {
            scan: scan.into(),
            by_prefix,
            indexed: keyed.into_iter().map(|(_, i)| i).collect(),
            lengths: lengths.into(),
        }
    }

    fn first_keyed_by(
        &self,
        routes: &[RouteEntry],
        req: &RequestView<'_>,
        key: impl Fn(&str) -> u64,
    ) -> Option<u32> {
        let first = |list: &[u32]| {
            list.iter()
                .copied()
                .find(|&i| routes[i as usize].rule.matches(req))
        };
        let mut best = first(&self.scan);
        for &len in self.lengths.iter() {
            let Some(prefix) = req.path.get(..len) else {
                // Longer than the path, or not on a character boundary (no key can match there).
                if len > req.path.len() {
                    break;
                }
                continue;
            };
            if let Some(&(from, to)) = self.by_prefix.get(&key(prefix)) {
                if let Some(i) = first(&self.indexed[from as usize..to as usize]) {
                    best = Some(best.map_or(i, |b| b.min(i)));
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::router::Router;

    /// Prefixes whose hashes collide share a list and still answer exactly.
    #[test]
    fn colliding_prefixes_share_a_list_and_answer_exactly() {
        let mut rules: Vec<String> = (0..40)
            .map(|i| format!("PathPrefix(`/p{i}`) || PathPrefix(`/q{i}`)"))
            .collect();
        rules.push("Path(`/p1`)".into());
        rules.push("PathPrefix(`/p1`) && Method(`POST`)".into());
        let r = Router::from_rules(rules.iter().map(|r| (r.as_str(), r.len() as i64))).unwrap();
        let routes = r.routes();
        let all: Vec<u32> = (0..routes.len() as u32).collect();
        let collide = |_: &str| 7;
        let hashed = Bucket::new(routes, all.clone());
        let collided = Bucket::keyed_by(routes, all, collide);
        assert_eq!(collided.by_prefix.len(), 1, "every prefix in one list");
        assert!(hashed.by_prefix.len() > 40);
        let h = http::HeaderMap::new();
        for path in ["/p1", "/p1/x", "/q1", "/p12", "/q39z", "/p40", "/", "/r"] {
            for method in [http::Method::GET, http::Method::POST] {
                let view = RequestView {
                    host: "x",
                    path,
                    method: &method,
                    headers: &h,
                    client: std::net::Ipv4Addr::LOCALHOST.into(),
                };
                let scan =
                    (0..routes.len() as u32).find(|&i| routes[i as usize].rule.matches(&view));
                assert_eq!(hashed.first(routes, &view), scan, "{method} {path}");
                assert_eq!(
                    collided.first_keyed_by(routes, &view, collide),
                    scan,
                    "{method} {path}"
                );
            }
        }
    }
}
