//! dockercloud/haproxy's `FAILOVER`: "this service runs as HAProxy backup for the other
//! service(s)". dockercloud writes its servers with HAProxy's `backup`; the services it backs up
//! are those that take the same requests: the same `VIRTUAL_HOST` entry, or, without
//! `VIRTUAL_HOST`, the default route that every such service shares.
//!
//! A provider reads one container or Swarm service at a time, so the services are merged after
//! the whole provider's update is known: [`fold`] moves each failover service's servers (already
//! marked `backup`) into the service of every other route with the same rule and entrypoints, and
//! drops the failover service's own route there. A failover service that shares its route with
//! no other service serves it alone: its servers are then the only ones, and backups take
//! requests while no other server can.

use std::collections::BTreeSet;

use crate::decl::{RouteDecl, ServiceDecl, TcpRouteDecl};

/// Fold the services named in `failover` into the services whose routes they share, as backup
/// servers. Returns, per folded route, `(failover route, the routes it now backs up)`.
pub fn fold(
    services: &mut Vec<ServiceDecl>,
    routes: &mut Vec<RouteDecl>,
    tcp_routes: &[TcpRouteDecl],
    failover: &BTreeSet<String>,
) -> Vec<(String, Vec<String>)> {
    if failover.is_empty() {
        return Vec::new();
    }
    let same =
        |a: &RouteDecl, b: &RouteDecl| a.rule_text == b.rule_text && a.entrypoints == b.entrypoints;
    let mut folded = Vec::new();
    let mut dropped = BTreeSet::new();
    for backup in routes.iter().filter(|r| failover.contains(&r.service)) {
        let primaries: Vec<&RouteDecl> = routes
            .iter()
            .filter(|p| !failover.contains(&p.service) && same(p, backup))
            .collect();
        if primaries.is_empty() {
            continue;
        }
        let Some(servers) = services
            .iter()
            .find(|s| s.name == backup.service)
            .map(|s| s.servers.clone())
        else {
            continue;
        };
        for p in &primaries {
            let Some(into) = services.iter_mut().find(|s| s.name == p.service) else {
                continue;
            };
            for srv in &servers {
                if !into.servers.iter().any(|have| have.name == srv.name) {
                    let mut srv = srv.clone();
                    srv.backup = true;
                    into.servers.push(srv);
                }
            }
        }
        folded.push((
            backup.name.clone(),
            primaries.iter().map(|p| p.name.clone()).collect(),
        ));
        dropped.insert(backup.name.clone());
    }
    routes.retain(|r| !dropped.contains(&r.name));
    // A failover service no route or TCP router names any more is gone with its route.
    services.retain(|s| {
        !failover.contains(&s.name)
            || routes.iter().any(|r| r.service == s.name)
            || tcp_routes.iter().any(|r| r.service == s.name)
    });
    folded
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decl::{ServerAddr, ServerDecl};
    use crate::labels::{route, scoped, service};

    fn server(name: &str) -> ServerDecl {
        ServerDecl {
            name: name.into(),
            addr: ServerAddr::Host(name.into(), 8080),
            weight: 1,
            draining: false,
            tls: None,
            backup: false,
        }
    }

    fn named(name: &str, rule: &str, servers: &[&str]) -> (ServiceDecl, RouteDecl) {
        let mut s = service(name, server(servers[0]));
        s.servers.extend(servers[1..].iter().map(|n| server(n)));
        (s, route(name, rule.into(), name).unwrap())
    }

    #[test]
    fn a_failover_service_becomes_the_backup_servers_of_the_route_it_shares() {
        let (web, web_r) = named("web", "Host(`a.test`)", &["web-1", "web-2"]);
        let (mut spare, spare_r) = named("spare", "Host(`a.test`)", &["spare-1"]);
        spare.servers[0].backup = true;
        let (other, other_r) = named("other", "Host(`b.test`)", &["other-1"]);
        let mut services = vec![web, spare, other];
        let mut routes = vec![web_r, spare_r, other_r];
        let failover = BTreeSet::from([scoped("spare")]);
        let folded = fold(&mut services, &mut routes, &[], &failover);
        assert_eq!(folded, [(scoped("spare"), vec![scoped("web")])]);
        let names: Vec<String> = routes.iter().map(|r| r.name.clone()).collect();
        assert_eq!(names, [scoped("web"), scoped("other")]);
        let web = services.iter().find(|s| s.name == scoped("web")).unwrap();
        let servers: Vec<(&str, bool)> = web
            .servers
            .iter()
            .map(|s| (s.name.as_str(), s.backup))
            .collect();
        assert_eq!(
            servers,
            [("web-1", false), ("web-2", false), ("spare-1", true)]
        );
        assert!(services.iter().all(|s| s.name != scoped("spare")));
        let other = services.iter().find(|s| s.name == scoped("other")).unwrap();
        assert_eq!(other.servers.len(), 1);
    }

    #[test]
    fn a_failover_service_alone_on_its_route_serves_it() {
        let (mut spare, spare_r) = named("spare", "PathPrefix(`/`)", &["spare-1"]);
        spare.servers[0].backup = true;
        let (web, mut web_r) = named("web", "PathPrefix(`/`)", &["web-1"]);
        web_r.entrypoints = vec!["websecure".into()];
        let mut services = vec![spare, web];
        let mut routes = vec![spare_r, web_r];
        let failover = BTreeSet::from([scoped("spare")]);
        // Another entrypoint is another route: nothing to back up.
        assert!(fold(&mut services, &mut routes, &[], &failover).is_empty());
        assert_eq!(routes.len(), 2);
        assert_eq!(services.len(), 2);
    }
}
