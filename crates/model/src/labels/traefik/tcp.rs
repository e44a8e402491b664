//! Traefik v2/v3's TCP labels:
//!
//! - `traefik.tcp.routers.<r>.rule` (``HostSNI(`a.example`)``, ``HostSNI(`*`)``,
//!   `ClientIP`), `.entrypoints`, `.service`, `.priority`, `.tls.passthrough`;
//! - `traefik.tcp.services.<s>.loadbalancer.server.port` and
//!   `.loadbalancer.proxyprotocol.version` (`1` or `2`).
//!
//! Refused by name, with the reason: TLS termination for a TCP router (`tls=true` without
//! passthrough, `tls.certresolver`, `tls.domains`, `tls.options`), TCP middlewares, a
//! service's `terminationdelay` and `server.tls`, and every `traefik.udp.*` label. A router
//! needs a rule (Traefik has no default TCP rule); without a service label the container's group
//! is the service.

use std::collections::BTreeMap;

use super::super::{port, scoped, server, Container, Context, LabelError};
use crate::decl::{BalanceAlgo, ProxyVersion, ServiceDecl, ServiceProtocol, TcpRouteDecl};
use crate::rule::Rule;

pub(crate) const ROUTERS: &str = "traefik.tcp.routers.";
pub(crate) const SERVICES: &str = "traefik.tcp.services.";

/// (original key, value) per lower-case field, per router or service name.
pub(crate) type Fields<'a> = BTreeMap<String, BTreeMap<String, (&'a str, &'a str)>>;

/// The TCP services and routers of these labels.
pub(crate) fn declare(
    c: &Container,
    cx: &Context<'_>,
    routers: &Fields<'_>,
    services: &Fields<'_>,
    ip: Option<std::net::IpAddr>,
    errors: &mut Vec<LabelError>,
) -> (Vec<ServiceDecl>, Vec<TcpRouteDecl>) {
    let mut services = services.clone();
    if services.is_empty() && !routers.is_empty() {
        services.insert(c.group.clone(), BTreeMap::new());
    }
    let mut decls = Vec::new();
    for (name, fields) in &services {
        if let Some(s) = one_service(c, name, fields, ip, errors) {
            decls.push(s);
        }
    }
    let mut routes = Vec::new();
    for (name, fields) in routers {
        if let Some(r) = one_router(c, cx, name, fields, &services, errors) {
            routes.push(r);
        }
    }
    (decls, routes)
}

fn one_service(
    c: &Container,
    name: &str,
    fields: &BTreeMap<String, (&str, &str)>,
    ip: Option<std::net::IpAddr>,
    errors: &mut Vec<LabelError>,
) -> Option<ServiceDecl> {
    let before = errors.len();
    let get = |f: &str| fields.get(f).copied();
    let port_label = get("loadbalancer.server.port");
    let port_key = port_label.map_or(format!("{SERVICES}{name}.loadbalancer.server.port"), |p| {
        p.0.to_string()
    });
    let port = port(c, &port_key, port_label.map(|p| p.1), |k, m| {
        c.label_error(k, m)
    })
    .map_err(|e| errors.push(e))
    .ok();
    let mut proxy_protocol = None;
    for (field, (key, value)) in fields {
        match field.as_str() {
            "loadbalancer.server.port" => {}
            "loadbalancer.proxyprotocol.version" => match ProxyVersion::parse(value) {
                Ok(v) => proxy_protocol = Some(v),
                Err(_) => errors.push(c.label_error(key, "expected 1 or 2")),
            },
            "loadbalancer.terminationdelay" => errors.push(c.label_error(
                key,
                "not supported: Tether passes a half-close on and keeps the other direction open until it ends or timeouts.tunnel passes",
            )),
            f if f.starts_with("loadbalancer.server.tls") || f == "loadbalancer.serverstransport" => {
                errors.push(c.label_error(key, "not supported: TLS to a TCP service's servers is not offered yet"))
            }
            _ => errors.push(c.label_error(
                key,
                "not supported: Tether reads a TCP service's loadbalancer.server.port and loadbalancer.proxyprotocol.version",
            )),
        }
    }
    let (ip, port) = (ip?, port?);
    if errors.len() > before {
        return None;
    }
    Some(ServiceDecl {
        name: scoped(name),
        servers: vec![server(c, ip, port)],
        balance: BalanceAlgo::RoundRobin,
        affinity: None,
        resolve: None,
        health: None,
        wait: Default::default(),
        protocol: ServiceProtocol::Tcp { proxy_protocol },
    })
}

fn one_router(
    c: &Container,
    cx: &Context<'_>,
    name: &str,
    fields: &BTreeMap<String, (&str, &str)>,
    services: &Fields<'_>,
    errors: &mut Vec<LabelError>,
) -> Option<TcpRouteDecl> {
    let before = errors.len();
    let whole = |field: &str| format!("{ROUTERS}{name}.{field}");
    let Some((rule_key, rule_text)) = fields.get("rule").copied() else {
        errors.push(c.label_error(
            &whole("rule"),
            "missing: a TCP router needs a rule, e.g. HostSNI(`*`)",
        ));
        return None;
    };
    let rule = Rule::parse_tcp(rule_text)
        .map_err(|e| errors.push(c.label_error(rule_key, e.to_string())))
        .ok();
    let service = match fields.get("service") {
        Some((k, v)) => {
            if !services.contains_key(*v) && !v.contains('@') {
                errors.push(c.label_error(k, "no such TCP service on this container"));
            }
            v.to_string()
        }
        None if services.len() == 1 => services.keys().next().cloned().unwrap_or_default(),
        None => {
            errors.push(c.label_error(
                &whole("service"),
                "missing: the container declares several TCP services, so name one",
            ));
            String::new()
        }
    };
    let mut r = TcpRouteDecl {
        name: scoped(name),
        rule: std::sync::Arc::new(rule.clone().unwrap_or(Rule::HostSni(crate::SniMatch::Any))),
        rule_text: rule_text.to_string(),
        priority: rule_text.len() as i64,
        service: scoped(&service),
        entrypoints: Vec::new(),
        passthrough: false,
    };
    let mut tls = false;
    for (field, (key, value)) in fields {
        match field.as_str() {
            "rule" | "service" => {}
            "priority" => match value.trim().parse::<i64>() {
                Ok(p) => r.priority = p,
                Err(_) => errors.push(c.label_error(key, "not an integer")),
            },
            "entrypoints" => {
                for ep in super::super::list(value) {
                    match cx.entrypoint(&ep) {
                        Ok(e) => r.entrypoints.push(e),
                        Err(m) => errors.push(c.label_error(key, m)),
                    }
                }
            }
            "tls" => match super::super::parse_bool(value) {
                Some(on) => tls = on,
                None => errors.push(c.label_error(key, "expected true or false")),
            },
            "tls.passthrough" => match super::super::parse_bool(value) {
                Some(on) => r.passthrough = on,
                None => errors.push(c.label_error(key, "expected true or false")),
            },
            f if f.starts_with("tls.") => errors.push(c.label_error(
                key,
                "not supported: TLS termination for TCP routers is not offered yet (tls.passthrough=true passes TLS through)",
            )),
            "middlewares" => errors.push(c.label_error(
                key,
                "not supported: TCP middlewares are not offered; an HTTP route's middlewares are",
            )),
            _ => errors.push(c.label_error(
                key,
                "not supported: Tether reads a TCP router's rule, service, priority, entrypoints and tls.passthrough",
            )),
        }
    }
    if tls && !r.passthrough {
        let key = fields
            .get("tls")
            .map_or(whole("tls"), |(k, _)| k.to_string());
        errors.push(c.label_error(
            &key,
            "not supported: TLS termination for TCP routers is not offered yet (tls.passthrough=true passes TLS through)",
        ));
    }
    (errors.len() == before && rule.is_some()).then_some(r)
}
