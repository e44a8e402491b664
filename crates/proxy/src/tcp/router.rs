//! The TCP routers of one entrypoint, best first: the routers of a `protocol = "tcp"`
//! entrypoint, or the passthrough routers of a TLS entrypoint that also serves HTTP.

use std::sync::Arc;

use tether_model::{ConnView, Rule};

/// A TCP router as the data plane reads it.
#[derive(Debug)]
pub struct TcpRoute {
    pub name: String,
    pub rule: Arc<Rule>,
    pub rule_text: String,
    pub priority: i64,
    /// Index of its service in the table's services.
    pub service: usize,
    pub passthrough: bool,
}

/// One entrypoint's TCP routers.
#[derive(Debug, Default)]
pub struct TcpRouter {
    /// Priority descending, then name.
    routes: Box<[Arc<TcpRoute>]>,
    /// Some rule names hosts: a connection's ClientHello is read before choosing.
    reads_hello: bool,
}

impl TcpRouter {
    /// `routes` in any order; they are sorted best first.
    pub fn new(mut routes: Vec<Arc<TcpRoute>>) -> TcpRouter {
        routes.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then_with(|| a.name.cmp(&b.name))
        });
        let reads_hello = routes.iter().any(|r| r.rule.needs_sni());
        TcpRouter {
            routes: routes.into(),
            reads_hello,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Must a connection's ClientHello be read to choose its router?
    pub fn reads_hello(&self) -> bool {
        self.reads_hello
    }

    /// The best router this connection matches.
    pub fn pick(&self, conn: &ConnView<'_>) -> Option<&Arc<TcpRoute>> {
        self.routes.iter().find(|r| r.rule.matches_conn(conn))
    }

    pub fn routes(&self) -> &[Arc<TcpRoute>] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, rule: &str, priority: i64) -> Arc<TcpRoute> {
        Arc::new(TcpRoute {
            name: name.into(),
            rule: Arc::new(Rule::parse_tcp(rule).unwrap()),
            rule_text: rule.into(),
            priority,
            service: 0,
            passthrough: true,
        })
    }

    #[test]
    fn the_highest_priority_that_matches_wins() {
        let r = TcpRouter::new(vec![
            route("any", "HostSNI(`*`)", 1),
            route("wild", "HostSNI(`*.example`)", 5),
            route("exact", "HostSNI(`db.example`)", 9),
        ]);
        assert!(r.reads_hello());
        let at = |sni: Option<&str>| {
            r.pick(&ConnView {
                sni,
                client: "10.0.0.1".parse().unwrap(),
            })
            .map(|r| r.name.as_str())
        };
        assert_eq!(at(Some("db.example")), Some("exact"));
        assert_eq!(at(Some("mq.example")), Some("wild"));
        assert_eq!(at(Some("other.test")), Some("any"));
        assert_eq!(at(None), Some("any"));
        let plain = TcpRouter::new(vec![route("any", "HostSNI(`*`)", 1)]);
        assert!(
            !plain.reads_hello(),
            "HostSNI(`*`) alone reads nothing first"
        );
    }
}
