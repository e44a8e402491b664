//! Route lookup for one entrypoint. Routes are indexed by the hosts their rules require, so a
//! lookup touches only the routes of that host, its wildcard parents and the host-less routes,
//! whatever the table's size. Each of those lists is a [`bucket::Bucket`], indexed in turn by the
//! path prefixes its rules require; the best (first by precedence) match wins.

mod bucket;

use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

use tether_model::rule::RequestView;
use tether_model::{HostPattern, Rule};

use bucket::Bucket;

/// A compiled route.
#[derive(Debug)]
pub struct RouteEntry {
    pub name: String,
    pub rule: Arc<Rule>,
    pub rule_text: String,
    pub priority: i64,
    /// Index into the table's services.
    pub service: usize,
    /// Entrypoints it is served on; empty means all.
    pub entrypoints: Box<[String]>,
    /// Largest request body accepted on it, over `limits.body`.
    pub max_body: Option<u64>,
    /// Its counters' slot in its service's ([`crate::stats::RouteCounts`]).
    pub stats_slot: u8,
    /// Its middlewares (with `redirect_https` and `hsts`), compiled; `None` when it has none.
    pub chain: Option<Box<crate::middleware::Chain>>,
}

/// Routes of one entrypoint, indexed by host.
#[derive(Debug, Default)]
pub struct Router {
    routes: Arc<[RouteEntry]>,
    /// Routes for an exact host.
    exact: HashMap<Box<str>, Bucket>,
    /// Routes for `*.suffix`, keyed by suffix.
    wildcard: HashMap<Box<str>, Bucket>,
    /// Routes whose rule does not pin a host.
    any: Bucket,
}

impl Router {
    /// `routes` must be sorted best first (priority descending, then name); `members` are the
    /// indices of the routes served on this entrypoint.
    pub fn new(routes: Arc<[RouteEntry]>, members: impl Iterator<Item = usize>) -> Router {
        let mut exact: HashMap<Box<str>, Vec<u32>> = HashMap::default();
        let mut wildcard: HashMap<Box<str>, Vec<u32>> = HashMap::default();
        let mut any = Vec::new();
        for i in members {
            match routes[i].rule.required_hosts() {
                None => any.push(i as u32),
                Some(pats) => {
                    for p in pats.iter() {
                        let (map, key) = match p {
                            HostPattern::Exact(h) => (&mut exact, h),
                            HostPattern::Wildcard(s) => (&mut wildcard, s),
                        };
                        // Most routes share their host with others: look up before allocating a key.
                        match map.get_mut(key.as_str()) {
                            Some(list) if list.last() == Some(&(i as u32)) => {}
                            Some(list) => list.push(i as u32),
                            None => {
                                map.insert(key.as_str().into(), vec![i as u32]);
                            }
                        }
                    }
                }
            }
        }
        let freeze = |m: HashMap<Box<str>, Vec<u32>>| {
            m.into_iter()
                .map(|(k, v)| (k, Bucket::new(&routes, v)))
                .collect()
        };
        Router {
            exact: freeze(exact),
            wildcard: freeze(wildcard),
            any: Bucket::new(&routes, any),
            routes,
        }
    }

    /// A router over bare rules with the given priorities, for tests and benchmarks: each route is
    /// named after its rule and served on every entrypoint by service 0.
    pub fn from_rules<'a>(
        rules: impl IntoIterator<Item = (&'a str, i64)>,
    ) -> Result<Router, tether_model::RuleError> {
        let mut routes = rules
            .into_iter()
            .map(|(r, priority)| {
                Ok(RouteEntry {
                    name: r.to_string(),
                    rule: Rule::parse(r)?.into(),
                    rule_text: r.to_string(),
                    priority,
                    service: 0,
                    entrypoints: Box::new([]),
                    max_body: None,
                    stats_slot: crate::stats::NO_ROUTE,
                    chain: None,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        routes.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.name.cmp(&b.name)));
        let n = routes.len();
        Ok(Router::new(routes.into(), 0..n))
    }

    pub fn routes(&self) -> &[RouteEntry] {
        &self.routes
    }

    /// The best route matching the request, if any.
    pub fn find(&self, req: &RequestView<'_>) -> Option<&RouteEntry> {
        let first = |b: &Bucket| b.first(&self.routes, req);
        let mut best = self.exact.get(req.host).and_then(first);
        if !self.wildcard.is_empty() {
            let mut rest = req.host;
            while let Some((_, parent)) = rest.split_once('.') {
                if let Some(i) = self.wildcard.get(parent).and_then(first) {
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
        Router::from_rules(rules.iter().copied()).unwrap()
    }

    /// Call `pick` with the view of a GET request to `host` and `path`.
    fn with_get<T>(host: &str, path: &str, pick: impl FnOnce(&RequestView<'_>) -> T) -> T {
        let h = http::HeaderMap::new();
        pick(&RequestView {
            host,
            path,
            method: &http::Method::GET,
            headers: &h,
            client: std::net::Ipv4Addr::LOCALHOST.into(),
        })
    }

    fn find<'a>(r: &'a Router, host: &str, path: &str) -> Option<&'a str> {
        with_get(host, path, |view| r.find(view).map(|e| e.name.as_str()))
    }

    /// The prefix index of long lists must answer exactly as a scan of every route would.
    #[test]
    fn indexed_lists_answer_as_a_full_scan() {
        let mut rules = vec![("PathPrefix(`/`)".to_string(), 0)];
        for i in 0..300 {
            rules.push((format!("PathPrefix(`/svc-{i}`)"), 0));
            rules.push((
                format!("Host(`h{}.com`) && PathPrefix(`/svc-{i}/api`)", i % 7),
                0,
            ));
            rules.push((format!("Path(`/exact-{i}`) || PathPrefix(`/both-{i}`)"), 0));
        }
        rules.push(("Method(`POST`)".to_string(), 0));
        rules.push((
            "PathPrefix(`/svc-1`) && Header(`x-v`, `2`)".to_string(),
            500,
        ));
        // Default precedence (the longer rule wins) unless a priority is given.
        let refs: Vec<(&str, i64)> = rules
            .iter()
            .map(|(r, p)| (r.as_str(), if *p == 0 { r.len() as i64 } else { *p }))
            .collect();
        let r = router(&refs);
        let scan = |host: &str, path: &str| {
            with_get(host, path, |view| {
                r.routes()
                    .iter()
                    .find(|e| e.rule.matches(view))
                    .map(|e| e.name.as_str())
            })
        };
        for host in ["h3.com", "x.org"] {
            for path in [
                "/",
                "/svc-1",
                "/svc-12",
                "/svc-123/api/x",
                "/svc-3/api",
                "/exact-9",
                "/exact-99x",
                "/both-4/z",
                "/none",
                "/svc-",
                "/é",
                "/svc-1é",
            ] {
                assert_eq!(find(&r, host, path), scan(host, path), "{host}{path}");
            }
        }
        assert_eq!(
            find(&r, "x.org", "/svc-123/a"),
            Some("PathPrefix(`/svc-123`)")
        );
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
