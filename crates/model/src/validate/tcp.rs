//! TCP routers' checks, whatever their source: which entrypoints each one is on, and what is
//! refused there, each error naming the router and the field.
//!
//! - On a `protocol = "tcp"` entrypoint any router may be; one that names hosts with `HostSNI`
//!   must be a TLS passthrough (only a ClientHello carries a name, and Tether does not
//!   terminate TLS for TCP routers yet).
//! - On an entrypoint that serves HTTP, only passthrough routers whose rule names hosts, on a
//!   TLS entrypoint: every other connection there is Tether's to terminate and serve as HTTP.
//! - One ``HostSNI(`*`)`` router per entrypoint.
//! - A router without `entrypoints` is on every TCP entrypoint and, when it is a passthrough,
//!   on every TLS one.

use rustc_hash::FxHashMap as HashMap;

use crate::decl::{ServiceDecl, TcpRouteDecl};
use crate::validate::ValidationError;

/// The entrypoints, by kind.
#[derive(Debug, Clone, Copy)]
pub struct Entrypoints<'a> {
    /// Every entrypoint, in the table's order.
    pub names: &'a [String],
    /// Those that terminate TLS.
    pub tls: &'a [String],
    /// Those that take TCP routers only (`protocol = "tcp"`).
    pub tcp: &'a [String],
}

/// The entrypoints router `r` is on, by index into `input.entrypoints`.
pub fn placed(r: &TcpRouteDecl, eps: &Entrypoints<'_>) -> Vec<usize> {
    eps.names
        .iter()
        .enumerate()
        .filter(|(_, ep)| {
            if r.entrypoints.is_empty() {
                eps.tcp.contains(ep) || (r.passthrough && eps.tls.contains(ep))
            } else {
                r.entrypoints.contains(ep)
            }
        })
        .map(|(i, _)| i)
        .collect()
}

/// Every reason `routers` cannot be served on these entrypoints with these services.
pub fn routers(
    services: &[ServiceDecl],
    routers: &[TcpRouteDecl],
    eps: &Entrypoints<'_>,
) -> Vec<ValidationError> {
    let mut errors = Vec::new();
    let mut err = |field: String, message: String| {
        errors.push(ValidationError::new(field, message));
    };
    let mut names = std::collections::HashSet::new();
    // The HostSNI(`*`) router of each entrypoint, by index.
    let mut catch_all: HashMap<usize, &str> = HashMap::default();
    for r in routers {
        let base = format!("tcp.routers.{}", r.name);
        if !names.insert(r.name.as_str()) {
            err(base.clone(), "declared twice".into());
        }
        match services.iter().find(|s| s.name == r.service) {
            None => err(
                format!("{base}.service"),
                format!("no service named {:?}", r.service),
            ),
            Some(s) if !s.protocol.is_tcp() => err(
                format!("{base}.service"),
                format!(
                    "{:?} is an HTTP service: a TCP router needs a TCP service ([tcp.services])",
                    r.service
                ),
            ),
            Some(_) => {}
        }
        for ep in &r.entrypoints {
            if !eps.names.contains(ep) {
                err(
                    format!("{base}.entrypoints"),
                    format!("no entrypoint named {ep:?}"),
                );
            }
        }
        let on = placed(r, eps);
        if on.is_empty() && r.entrypoints.is_empty() {
            err(
                format!("{base}.entrypoints"),
                if r.passthrough {
                    "no TCP or TLS entrypoint to serve it: declare one, e.g. db = { address = \"0.0.0.0:5432\", protocol = \"tcp\" }".into()
                } else {
                    "no TCP entrypoint to serve it: declare one, e.g. db = { address = \"0.0.0.0:5432\", protocol = \"tcp\" }".into()
                },
            );
        }
        let names_hosts = r.rule.needs_sni();
        for i in on {
            let ep = &eps.names[i];
            let tcp = eps.tcp.contains(ep);
            let tls = eps.tls.contains(ep);
            if tcp {
                if names_hosts && !r.passthrough {
                    err(format!("{base}.tls"), format!("the rule names hosts with HostSNI, which only a TLS ClientHello carries: set tls = {{ passthrough = true }} (TLS termination for TCP routers is not offered yet) or match HostSNI(`*`) on entrypoint {ep:?}"));
                }
            } else if !r.passthrough {
                err(format!("{base}.entrypoints"), format!("entrypoint {ep:?} serves HTTP: a TCP router there must be a TLS passthrough (tls = {{ passthrough = true }}), or go on a protocol = \"tcp\" entrypoint"));
            } else if !tls {
                err(format!("{base}.entrypoints"), format!("entrypoint {ep:?} does not terminate TLS: a passthrough router goes on a TLS entrypoint (tls = true) or a protocol = \"tcp\" one"));
            } else if !names_hosts {
                err(format!("{base}.rule"), format!("entrypoint {ep:?} serves HTTP: a passthrough router there must name its hosts with HostSNI(`name`), since every other connection is Tether's to serve"));
            }
            if r.rule.is_catch_all() {
                if let Some(other) = catch_all.insert(i, &r.name) {
                    err(format!("{base}.rule"), format!("entrypoint {ep:?} has a HostSNI(`*`) router already ({other:?}): it takes every connection, so only one may"));
                }
            }
        }
    }
    errors
}

/// Do two routers of different names both take every connection of some entrypoint (each a
/// ``HostSNI(`*`)``, on entrypoints that meet)? The entrypoint they share, as a message names
/// it. A source that merges declarations of several containers leaves the second one out on
/// this, rather than have the merged table refused.
pub fn catch_all_clash(a: &TcpRouteDecl, b: &TcpRouteDecl) -> Option<String> {
    if a.name == b.name || !a.rule.is_catch_all() || !b.rule.is_catch_all() {
        return None;
    }
    match (a.entrypoints.as_slice(), b.entrypoints.as_slice()) {
        ([], []) => Some("every TCP entrypoint".into()),
        ([], some) | (some, []) => some.first().map(|e| format!("entrypoint {e:?}")),
        (x, y) => x
            .iter()
            .find(|e| y.contains(e))
            .map(|e| format!("entrypoint {e:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(name: &str, rule: &str, entrypoints: &[&str]) -> TcpRouteDecl {
        TcpRouteDecl {
            name: name.into(),
            rule: crate::rule::Rule::parse_tcp(rule).unwrap().into(),
            rule_text: rule.into(),
            priority: 1,
            service: "s".into(),
            entrypoints: entrypoints.iter().map(|e| e.to_string()).collect(),
            passthrough: false,
        }
    }

    #[test]
    fn two_catch_alls_clash_where_their_entrypoints_meet() {
        let any = "HostSNI(`*`)";
        let a = router("a", any, &["db"]);
        assert_eq!(
            catch_all_clash(&a, &router("b", any, &["db", "mq"])).as_deref(),
            Some("entrypoint \"db\"")
        );
        assert_eq!(
            catch_all_clash(&a, &router("b", any, &[])).as_deref(),
            Some("entrypoint \"db\"")
        );
        assert_eq!(catch_all_clash(&a, &router("b", any, &["mq"])), None);
        assert_eq!(
            catch_all_clash(&a, &router("a", any, &["db"])),
            None,
            "the same router"
        );
        assert_eq!(
            catch_all_clash(&a, &router("b", "ClientIP(`10.0.0.0/8`)", &["db"])),
            None
        );
    }
}
