//! Route lookup for one entrypoint. Routes are indexed by the hosts their rules require, so a
//! lookup touches only the routes of that host, its wildcard parents and the host-less routes,
//! whatever the table's size. Each list is sorted by precedence and the best first match wins.

use std::collections::HashMap;
use std::sync::Arc;

use tether_model::rule::RequestView;
use tether_model::{HostPattern, Rule};

/// A compiled route.
#[derive(Debug)]
pub struct RouteEntry {
    pub name: String,
    pub rule: Rule,
    pub rule_text: String,
    pub priority: i64,
    /// Index into the table's services.
    pub service: usize,
    /// Entrypoints it is served on; empty means all.
    pub entrypoints: Box<[String]>,
}

/// Routes of one entrypoint, indexed by host.
#[derive(Debug, Default)]
pub struct Router {
    routes: Arc<[RouteEntry]>,
    /// Route indices for an exact host, best first.
    exact: HashMap<Box<str>, Box<[u32]>>,
    /// Route indices for `*.suffix`, keyed by suffix, best first.
    wildcard: HashMap<Box<str>, Box<[u32]>>,
    /// Routes whose rule does not pin a host, best first.
    any: Box<[u32]>,
}

impl Router {
    /// `routes` must be sorted best first (priority descending, then name); `members` are the
    /// indices of the routes served on this entrypoint.
    pub fn new(routes: Arc<[RouteEntry]>, members: impl Iterator<Item = usize>) -> Router {
        let mut exact: HashMap<Box<str>, Vec<u32>> = HashMap::new();
        let mut wildcard: HashMap<Box<str>, Vec<u32>> = HashMap::new();
        let mut any = Vec::new();
        for i in members {
            match routes[i].rule.required_hosts() {
                None => any.push(i as u32),
                Some(pats) => {
                    for p in pats {
                        let (map, key) = match p {
                            HostPattern::Exact(h) => (&mut exact, h),
                            HostPattern::Wildcard(s) => (&mut wildcard, s),
                        };
                        let list = map.entry(key.into()).or_default();
                        if list.last() != Some(&(i as u32)) {
                            list.push(i as u32);
                        }
                    }
                }
            }
        }
        let freeze = |m: HashMap<Box<str>, Vec<u32>>| {
            m.into_iter()
                .map(|(k, v)| (k, v.into_boxed_slice()))
                .collect()
        };
        Router {
            routes,
            exact: freeze(exact),
            wildcard: freeze(wildcard),
            any: any.into(),
        }
    }

    pub fn routes(&self) -> &[RouteEntry] {
        &self.routes
    }

    /// The best route matching the request, if any.
    pub fn find(&self, req: &RequestView<'_>) -> Option<&RouteEntry> {
        let first = |list: &[u32]| {
            list.iter()
                .copied()
                .find(|&i| self.routes[i as usize].rule.matches(req))
        };
        let mut best = self.exact.get(req.host).and_then(|l| first(l));
        if !self.wildcard.is_empty() {
            let mut rest = req.host;
            while let Some((_, parent)) = rest.split_once('.') {
                if let Some(i) = self.wildcard.get(parent).and_then(|l| first(l)) {
                    best = Some(best.map_or(i, |b| b.min(i)));
                }
                rest = parent;
            }
        }
        if let Some(i) = first(&self.any) {
            best = Some(best.map_or(i, |b| b.min(i)));
        }
        best.map(|i| &self.routes[i as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(rules: &[(&str, i64)]) -> Router {
        let mut routes: Vec<RouteEntry> = rules
            .iter()
            .map(|(r, p)| RouteEntry {
                name: r.to_string(),
                rule: Rule::parse(r).unwrap(),
                rule_text: r.to_string(),
                priority: *p,
                service: 0,
                entrypoints: Box::new([]),
            })
            .collect();
        routes.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.name.cmp(&b.name)));
        let n = routes.len();
        Router::new(routes.into(), 0..n)
    }

    fn find<'a>(r: &'a Router, host: &str, path: &str) -> Option<&'a str> {
        let h = http::HeaderMap::new();
        let view = RequestView {
            host,
            path,
            method: &http::Method::GET,
            headers: &h,
        };
        r.find(&view).map(|e| e.name.as_str())
    }

    #[test]
    fn longest_rule_wins_by_default_and_priority_overrides() {
        let r = router(&[("PathPrefix(`/`)", 15), ("PathPrefix(`/api`)", 18)]);
        assert_eq!(find(&r, "x", "/api/1"), Some("PathPrefix(`/api`)"));
        assert_eq!(find(&r, "x", "/other"), Some("PathPrefix(`/`)"));
        let r = router(&[("PathPrefix(`/`)", 100), ("PathPrefix(`/api`)", 18)]);
        assert_eq!(find(&r, "x", "/api/1"), Some("PathPrefix(`/`)"));
    }

    #[test]
    fn hosts_wildcards_and_hostless_routes_compete_by_precedence() {
        let r = router(&[
            ("Host(`a.example.com`)", 21),
            ("Host(`*.example.com`)", 21),
            ("Host(`*.b.example.com`) && PathPrefix(`/x`)", 44),
            ("PathPrefix(`/static`)", 100),
        ]);
        assert_eq!(
            find(&r, "a.example.com", "/"),
            Some("Host(`*.example.com`)"),
            "equal priority: name order"
        );
        assert_eq!(
            find(&r, "c.example.com", "/"),
            Some("Host(`*.example.com`)")
        );
        assert_eq!(
            find(&r, "c.b.example.com", "/x"),
            Some("Host(`*.b.example.com`) && PathPrefix(`/x`)")
        );
        assert_eq!(
            find(&r, "c.b.example.com", "/y"),
            Some("Host(`*.example.com`)")
        );
        assert_eq!(
            find(&r, "a.example.com", "/static/a.css"),
            Some("PathPrefix(`/static`)")
        );
        assert_eq!(find(&r, "example.com", "/"), None);
        assert_eq!(find(&r, "other.org", "/"), None);
    }
}
