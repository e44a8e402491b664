//! `[tcp.routers]` and `[tcp.services]`, and the entrypoints' `protocol`: TCP routing as the
//! file declares it. The checks that need every source's declarations (which entrypoints a
//! router may be on, one `HostSNI(`*`)` per entrypoint) are the table's.

use super::super::raw::{RawConfig, RawEntrypoint, RawTcpHealth, RawTcpService, Toggle, S};
use super::{positive_duration, size, Ctx};
use crate::decl::{
    BalanceAlgo, HashOn, HealthCheck, ProxyVersion, ServerAddr, ServerDecl, ServiceDecl,
    ServiceProtocol, TcpRouteDecl,
};
use crate::file_config::{AcceptProxy, Cidr, TcpSettings};
use crate::rule::Rule;
use crate::validate;

/// The names of the `protocol = "tcp"` entrypoints; an unknown protocol, or TLS on a TCP
/// entrypoint, is an error.
pub(super) fn entrypoints(cx: &mut Ctx<'_>, raw: &RawConfig) -> Vec<String> {
    let mut tcp = Vec::new();
    for (name, ep) in &raw.entrypoints {
        let RawEntrypoint::Table { protocol, tls, .. } = ep.get_ref() else {
            continue;
        };
        match protocol.as_deref() {
            None | Some("http") => {}
            Some("tcp") => {
                if tls.as_ref().is_some_and(|t| t.on().is_some()) {
                    cx.err(Some(ep.span()), format!("entrypoints.{name}.tls"), "TLS termination on a TCP entrypoint is not offered yet: a TCP entrypoint's routers pass TLS through (tls = { passthrough = true } on the router)");
                }
                tcp.push(name.clone());
            }
            Some(other) => cx.err(
                Some(ep.span()),
                format!("entrypoints.{name}.protocol"),
                format!("{other:?}: expected \"http\" or \"tcp\""),
            ),
        }
    }
    tcp
}

/// The entrypoints' `proxy_protocol`, by entrypoint name.
pub(super) fn accept_proxy(
    cx: &mut Ctx<'_>,
    raw: &RawConfig,
) -> std::collections::BTreeMap<String, AcceptProxy> {
    let mut out = std::collections::BTreeMap::new();
    for (name, ep) in &raw.entrypoints {
        let RawEntrypoint::Table {
            proxy_protocol: Some(p),
            ..
        } = ep.get_ref()
        else {
            continue;
        };
        let field = format!("entrypoints.{name}.proxy_protocol");
        let span = Some(ep.span());
        let before = cx.errors.len();
        let mut trusted = Vec::new();
        for (i, t) in p.trusted.iter().enumerate() {
            match Cidr::parse(t) {
                Ok(c) => trusted.push(c),
                Err(e) => cx.err(span.clone(), format!("{field}.trusted[{i}]"), e),
            }
        }
        if p.trusted.is_empty() {
            cx.err(span.clone(), format!("{field}.trusted"), "name the addresses of the load balancers that send the header (e.g. [\"10.0.0.0/8\"]): every other peer is closed");
        }
        let timeout = match &p.timeout {
            None => std::time::Duration::from_secs(5),
            Some(t) => match positive_duration(t) {
                Ok(d) => d,
                Err(e) => {
                    cx.err(span.clone(), format!("{field}.timeout"), e);
                    continue;
                }
            },
        };
        if cx.errors.len() == before {
            out.insert(
                name.clone(),
                AcceptProxy {
                    trusted,
                    optional: p.optional.unwrap_or(false),
                    timeout,
                },
            );
        }
    }
    out
}

/// `[tcp] buffer`.
pub(super) fn settings(cx: &mut Ctx<'_>, raw: &RawConfig) -> TcpSettings {
    let mut t = TcpSettings::default();
    if let Some(v) = &raw.tcp.buffer {
        if let Some(n) = size(cx, v, "tcp.buffer", 1024..=1 << 20) {
            t.buffer = n as usize;
        }
    }
    if let Some(v) = &raw.tcp.hello_timeout {
        if let Some(d) = cx.check(v, || "tcp.hello_timeout".into(), |s| positive_duration(s)) {
            t.hello_timeout = d;
        }
    }
    t
}

/// The TCP routers. `services_here`: their services must be declared in the same text.
pub(super) fn routers(
    cx: &mut Ctx<'_>,
    raw: &RawConfig,
    entrypoints: &[(String, std::net::SocketAddr)],
    services_here: bool,
) -> Vec<TcpRouteDecl> {
    let mut out = Vec::new();
    for (name, r) in &raw.tcp.routers {
        let base = format!("tcp.routers.{name}");
        if !validate::is_name(name) {
            cx.err(
                Some(r.span()),
                &base,
                "a name may hold letters, digits, '-', '_', '.' and '@'",
            );
        }
        let r = r.get_ref();
        let rule = cx.check(
            &r.rule,
            || format!("{base}.rule"),
            |t| Rule::parse_tcp(t).map_err(|e| e.to_string()),
        );
        for ep in &r.entrypoints {
            if !entrypoints.iter().any(|(n, _)| n == ep.get_ref()) {
                cx.err(
                    Some(ep.span()),
                    format!("{base}.entrypoints"),
                    format!("no entrypoint named {:?}", ep.get_ref()),
                );
            }
        }
        let service = r.service.get_ref();
        if services_here && !raw.tcp.services.contains_key(service) {
            let also = if raw.services.contains_key(service) {
                ": that is an HTTP service ([services]); a TCP router needs a [tcp.services] one"
            } else {
                ""
            };
            cx.err(
                Some(r.service.span()),
                format!("{base}.service"),
                format!("no TCP service named {service:?}{also}"),
            );
        }
        let passthrough = match &r.tls {
            None => false,
            Some(t) => match t.get_ref() {
                Toggle::Off => false,
                Toggle::On(opts) if opts.passthrough == Some(true) => true,
                Toggle::On(_) => {
                    cx.err(Some(t.span()), format!("{base}.tls"), "TLS termination for TCP routers is not offered yet: tls = { passthrough = true } passes the TLS connection to the server undecrypted");
                    false
                }
            },
        };
        if let Some(rule) = rule {
            out.push(TcpRouteDecl {
                name: name.clone(),
                priority: r.priority.unwrap_or(r.rule.get_ref().len() as i64),
                rule: rule.into(),
                rule_text: r.rule.get_ref().clone(),
                service: service.clone(),
                entrypoints: r.entrypoints.iter().map(|e| e.get_ref().clone()).collect(),
                passthrough,
            });
        }
    }
    out
}

/// Where each router goes and what is refused there ([`validate::tcp`]), located at the
/// router's line. What [`routers`] said already (a service or entrypoint not declared) is not
/// said twice.
pub(super) fn placement(
    cx: &mut Ctx<'_>,
    raw: &RawConfig,
    settings: &crate::file_config::Settings,
    services: &[ServiceDecl],
    routes: &[TcpRouteDecl],
) {
    let names: Vec<String> = settings
        .entrypoints
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    let tls: Vec<String> = settings.tls.entrypoints.keys().cloned().collect();
    let eps = validate::tcp::Entrypoints {
        names: &names,
        tls: &tls,
        tcp: &settings.tcp_entrypoints,
    };
    for e in validate::tcp::routers(services, routes, &eps) {
        if e.field.ends_with(".service") || e.message.starts_with("no entrypoint named") {
            continue;
        }
        let router = e
            .field
            .strip_prefix("tcp.routers.")
            .and_then(|f| {
                routes
                    .iter()
                    .find(|r| f.starts_with(&format!("{}.", r.name)) || f == r.name)
            })
            .map(|r| r.name.as_str());
        let span = router
            .and_then(|r| raw.tcp.routers.get(r))
            .map(|r| r.span());
        cx.err(span, e.field, e.message);
    }
}

/// The TCP services; a name that is an HTTP service's too is an error.
pub(super) fn services(cx: &mut Ctx<'_>, raw: &RawConfig) -> Vec<ServiceDecl> {
    let mut out = Vec::new();
    for (name, svc) in &raw.tcp.services {
        let base = format!("tcp.services.{name}");
        if raw.services.contains_key(name) {
            cx.err(
                Some(svc.span()),
                &base,
                format!(
                    "services.{name} is an HTTP service of the same name: a name is one service's"
                ),
            );
            continue;
        }
        if let Some(s) = service(cx, &base, name, svc) {
            out.push(s);
        }
    }
    out
}

fn service(
    cx: &mut Ctx<'_>,
    base: &str,
    name: &str,
    raw: &S<RawTcpService>,
) -> Option<ServiceDecl> {
    let svc = raw.get_ref();
    let before = cx.errors.len();
    let mut servers = Vec::new();
    for (i, s) in svc.servers.iter().enumerate() {
        let s = s.get_ref();
        let field = |leaf: &str| format!("{base}.servers[{i}].{leaf}");
        let addr = cx.check(&s.address, || field("address"), |a| address(a));
        let weight = match &s.weight {
            Some(w) => cx.check(
                w,
                || field("weight"),
                |&w| {
                    u32::try_from(w)
                        .map_err(|_| format!("{w} is not a weight (0..={})", validate::MAX_WEIGHT))
                },
            ),
            None => Some(1),
        };
        if let (Some(addr), Some(weight)) = (addr, weight) {
            servers.push(ServerDecl {
                name: s.name.clone().unwrap_or_else(|| addr.to_string()),
                addr,
                weight,
                draining: s.draining,
                tls: None,
                backup: s.backup,
            });
        }
    }
    let balance = balance(cx, base, svc);
    let health = svc
        .health
        .as_ref()
        .and_then(|h| health(cx, base, h.get_ref()));
    let proxy_protocol = svc.proxy_protocol.as_ref().and_then(|p| {
        cx.check(
            p,
            || format!("{base}.proxy_protocol"),
            |s| ProxyVersion::parse(s),
        )
    });
    let wait = super::server_wait(
        cx,
        base,
        svc.wait_for_server.as_ref(),
        svc.wait_queue.as_ref(),
    );
    if cx.errors.len() > before {
        return None;
    }
    Some(ServiceDecl {
        name: name.to_string(),
        servers,
        balance: balance?,
        affinity: None,
        resolve: None,
        health,
        wait,
        protocol: ServiceProtocol::Tcp { proxy_protocol },
    })
}

/// `host:port` or `ip:port`, without a scheme.
pub fn address(a: &str) -> Result<ServerAddr, String> {
    if a.contains("://") {
        return Err(format!(
            "{a:?}: a TCP server's address is host:port, without a scheme"
        ));
    }
    if !a.contains(':') || a.ends_with(']') {
        return Err(format!("{a:?}: expected host:port, e.g. 10.0.0.5:5432"));
    }
    ServerAddr::parse(a)
}

fn balance(cx: &mut Ctx<'_>, base: &str, svc: &RawTcpService) -> Option<BalanceAlgo> {
    let kinds = super::Balances {
        least: "least_connections",
        hash_on: "\"client_ip\"",
        parse_hash_on: |h| match h {
            "client_ip" => Ok(HashOn::ClientIp),
            other => Err(format!(
                "{other:?}: a TCP service hashes on \"client_ip\" (there are no headers or cookies)"
            )),
        },
    };
    super::balance_of(cx, base, svc.balance.as_ref(), svc.hash_on.as_ref(), &kinds)
}

/// A connect check: defaults every 5 s, 2 s to connect, 2 to rise, 3 to fall.
fn health(cx: &mut Ctx<'_>, base: &str, h: &RawTcpHealth) -> Option<HealthCheck> {
    let base = format!("{base}.health");
    let check = HealthCheck::of(String::new());
    super::health_timing(
        cx,
        &base,
        [&h.interval, &h.timeout],
        [&h.rise, &h.fall],
        check,
    )
}
