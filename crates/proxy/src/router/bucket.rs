//! One list of candidate routes (those of one host, one wildcard suffix, or the host-less ones),
//! best first. A short list is scanned; a long one is indexed by the path prefixes its rules
//! require, so a lookup costs one hash probe per distinct prefix length instead of a scan of every
//! route: the same for 10 or 10,000 `PathPrefix` routes.

use rustc_hash::FxHashMap as HashMap;
use tether_model::rule::RequestView;

use super::RouteEntry;

/// Lists up to this long are scanned.
const SCAN_MAX: usize = 8;

#[derive(Debug, Default)]
pub struct Bucket {
    /// Routes whose rules require no path prefix (all routes when not indexed), best first.
    scan: Box<[u32]>,
    /// Routes by required prefix, each list best first (kept as built: no second map).
    by_prefix: HashMap<Box<str>, Vec<u32>>,
    /// The distinct lengths of the keys of `by_prefix`, ascending.
    lengths: Box<[usize]>,
}

impl Bucket {
    /// `members` are route indices, best first.
    pub fn new(routes: &[RouteEntry], members: Vec<u32>) -> Bucket {
        if members.len() <= SCAN_MAX {
            return Bucket {
                scan: members.into(),
                ..Bucket::default()
            };
        }
        let mut scan = Vec::new();
        let mut by_prefix: HashMap<Box<str>, Vec<u32>> = HashMap::default();
        for i in members {
            match routes[i as usize].rule.required_path_prefixes() {
                None => scan.push(i),
                Some(prefixes) => {
                    for p in prefixes {
                        match by_prefix.get_mut(p) {
                            Some(list) if list.last() == Some(&i) => {}
                            Some(list) => list.push(i),
                            None => {
                                by_prefix.insert(p.into(), vec![i]);
                            }
                        }
                    }
                }
            }
        }
        let mut lengths: Vec<usize> = by_prefix.keys().map(|k| k.len()).collect();
        lengths.sort_unstable();
        lengths.dedup();
        Bucket {
            scan: scan.into(),
            by_prefix,
            lengths: lengths.into(),
        }
    }

    /// The best (lowest) index of a route in this bucket that matches.
    pub fn first(&self, routes: &[RouteEntry], req: &RequestView<'_>) -> Option<u32> {
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
            if let Some(i) = self.by_prefix.get(prefix).and_then(|l| first(l)) {
                best = Some(best.map_or(i, |b| b.min(i)));
            }
        }
        best
    }
}
