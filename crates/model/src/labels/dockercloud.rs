//! dockercloud/haproxy's environment variables, as in the first seed:
//!
//! - `SERVICE_PORTS=8080`: the container's port (one; default: its only exposed port);
//! - `VIRTUAL_HOST=*/service1`: a comma list of `[http://]host[/path]`. The host is `*` (any),
//!   `*.example.com` or exact; a path without `*` matches exactly, `/path/*` matches the prefix.
//!   Without `VIRTUAL_HOST` the service takes every request no other route takes;
//! - `VIRTUAL_HOST_WEIGHT`: route priority (higher wins);
//! - `COOKIE=connect.sid prefix nocache` (HAProxy's `prefix` mode on the application's cookie) or
//!   `COOKIE=SRV insert indirect nocache [httponly] [secure]` (Tether's own cookie named SRV);
//! - `BALANCE`: `roundrobin`, `static-rr`, `leastconn`, `source` or `hdr(<name>)`;
//! - `VIRTUAL_HOST=https://a.com`: served on the TLS entrypoints only (`http://` on the plain
//!   ones, no scheme on every one); a list mixing schemes gives a route per scheme;
//! - `FORCE_SSL` (any value): plain HTTP is answered 308 with the `https://` URL;
//!   `HSTS_MAX_AGE=31536000`: HSTS on HTTPS responses;
//! - `SSL_CERT`: the service's certificate and key as PEM text ([`super::certs`]), picked by SNI.
//!   `DEFAULT_SSL_CERT` belongs on the proxy: Tether reads it from its own environment
//!   (`tether run --default-ssl-cert`), or a certificate marked `default = true` in
//!   `tether.toml`;
//! - `TCP_PORTS=6379,9000`: those container ports are routed in TCP mode, each from the proxy's
//!   port of the same number: Tether's TCP entrypoint on that port (declared in `tether.toml` or
//!   with `--entrypoint tcp6379=0.0.0.0:6379,tcp`), every connection to it piped to the
//!   container. A port with `/ssl` (TLS termination) is refused. `SERVICE_PORTS` may list them
//!   too; its other port is the HTTP one;
//! - `EXTRA_ROUTE_SETTINGS=send-proxy` (or `send-proxy-v2`): the TCP ports' servers get a PROXY
//!   protocol header; `check`, `inter`, `rise`, `fall` as `HEALTH_CHECK`'s, `weight N` the
//!   server's weight. Any other server option is refused by name;
//! - `HEALTH_CHECK=check inter 2000 rise 2 fall 3`: Tether's health check of each server, a
//!   connect (HAProxy's `check`), or with `HTTP_CHECK=GET /health` a `GET` of that path;
//! - `EXCLUDE_PORTS=22,5432`: those exposed ports are not the one routed;
//! - `GZIP_COMPRESSION_TYPE=text/html text/css`: gzip for this service's responses of those
//!   types (on Tether's own environment: every service's);
//! - the label `com.docker.dockercloud.haproxy.deactivate=true`: the service is left out;
//! - `FAILOVER=true`: the service's servers are backups (HAProxy's `backup`, as
//!   `EXTRA_ROUTE_SETTINGS=backup`) of every other service whose route has the same rule and
//!   entrypoints (the same `VIRTUAL_HOST` entry, or none): they take its requests only while
//!   none of its own servers can ([`super::failover`]). Alone on its route it serves it.
//!
//! Refused by name, each with its reason: `APPSESSION` (HAProxy 1.5's, removed in 1.6),
//! `OPTION` and `EXTRA_SETTINGS` (they configure HAProxy itself), `DEFAULT_SSL_CERT` on a service
//! (it belongs on the proxy).

use super::{
    address, group, port, route, scoped, server, service, Container, Context, LabelError,
    Translation,
};
use crate::decl::{
    AffinityMode, AffinityPolicy, BalanceAlgo, CookieAttrs, HashOn, Hsts, HttpsRedirect, OnMissing,
    ProxyVersion, ServiceDecl, ServiceProtocol, TcpRouteDecl,
};
use crate::validate::is_cookie_name;

/// The label that leaves a service out (its owner's blue/green switch).
pub(crate) const DEACTIVATE: &str = "com.docker.dockercloud.haproxy.deactivate";

/// The service variables that cannot be honoured, and why.
const REFUSED: &[(&str, &str)] = &[
    ("APPSESSION", "HAProxy 1.5's appsession (removed in 1.6) is not offered: keep sessions with COOKIE (insert or prefix)"),
    ("OPTION", "it configures HAProxy itself (its `option` lines), which Tether is not"),
    ("EXTRA_SETTINGS", "it configures HAProxy itself (lines of its backend), which Tether is not: BALANCE, COOKIE, HEALTH_CHECK and the other variables say what Tether does"),
    ("DEFAULT_SSL_CERT", "the default certificate belongs on the proxy: give it to Tether (DEFAULT_SSL_CERT in Tether's own environment, --default-ssl-cert, or default = true in tether.toml)"),
];

pub(crate) fn declare(c: &Container, cx: &Context<'_>) -> Translation {
    let mut errors = Vec::new();
    let name = c.group.clone();
    for (var, why) in REFUSED {
        if c.env.contains_key(*var) {
            errors.push(c.env_error(var, format!("not supported: {why}")));
        }
    }
    let tcp_ports = tcp_ports(c).map_err(|e| errors.push(e)).unwrap_or_default();
    let settings = extra_route_settings(c, !tcp_ports.is_empty())
        .map_err(|e| errors.push(e))
        .unwrap_or_default();
    let proxy_protocol = settings.proxy;
    let health = health(c, &settings)
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    let excluded = exclude_ports(c)
        .map_err(|e| errors.push(e))
        .unwrap_or_default();
    // SERVICE_PORTS less the TCP ones: the HTTP port.
    let ports = c.env.get("SERVICE_PORTS").map(|p| {
        super::list(p)
            .into_iter()
            .filter(|p| !p.parse::<u16>().is_ok_and(|p| tcp_ports.contains(&p)))
            .collect::<Vec<_>>()
    });
    let tcp_only = !tcp_ports.is_empty()
        && ports.as_ref().is_none_or(|p| p.is_empty())
        && !c.env.contains_key("VIRTUAL_HOST");
    if tcp_only {
        let ip = address(c, cx, None).map_err(|e| errors.push(e)).ok();
        let (mut services, tcp_routes) =
            tcp(c, cx, &name, ip, &tcp_ports, proxy_protocol, &mut errors);
        for s in &mut services {
            s.health = health.clone();
        }
        return if errors.is_empty() {
            Ok((services, Vec::new(), Vec::new(), tcp_routes))
        } else {
            Err(errors)
        };
    }
    let port = match ports.as_deref() {
        Some([one]) => port(c, "SERVICE_PORTS", Some(one), |k, m| c.env_error(k, m)),
        Some([]) | None if !excluded.is_empty() => exposed_port(c, &excluded, &tcp_ports),
        Some([]) | None => port(c, "SERVICE_PORTS", None, |k, m| c.env_error(k, m)),
        Some(_) => Err(c.env_error(
            "SERVICE_PORTS",
            "several ports: Tether routes one port per container, list only the HTTP one",
        )),
    }
    .map_err(|e| errors.push(e))
    .ok();
    let ip = address(c, cx, None).map_err(|e| errors.push(e)).ok();
    let rules = match c.env.get("VIRTUAL_HOST") {
        Some(v) => virtual_host(v).map_err(|m| c.env_error("VIRTUAL_HOST", m)),
        None => Ok(vec![(Scheme::Any, "PathPrefix(`/`)".to_string())]),
    }
    .map_err(|e| errors.push(e))
    .unwrap_or_default();
    let balance = c
        .env
        .get("BALANCE")
        .map(|b| balance(b).map_err(|m| c.env_error("BALANCE", m)))
        .transpose()
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    let affinity = c
        .env
        .get("COOKIE")
        .map(|v| cookie(c, &name, v))
        .transpose()
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    let https = https(c).map_err(|e| errors.push(e)).unwrap_or_default();
    let mut routes = Vec::new();
    let several = rules.len() > 1;
    for (scheme, text) in rules {
        let route_name = match (several, scheme) {
            (false, _) | (true, Scheme::Any) => name.clone(),
            (true, Scheme::Plain) => format!("{name}-http"),
            (true, Scheme::Tls) => format!("{name}-https"),
        };
        let mut r = match route(&route_name, text, &name) {
            Ok(r) => r,
            Err(m) => {
                errors.push(c.env_error("VIRTUAL_HOST", m));
                continue;
            }
        };
        let entrypoints = match scheme {
            Scheme::Any => Ok(Vec::new()),
            Scheme::Plain => cx.plain_only(),
            Scheme::Tls => cx.tls_only(),
        };
        match entrypoints {
            Ok(e) => r.entrypoints = e,
            Err(m) => errors.push(c.env_error("VIRTUAL_HOST", m)),
        }
        (r.redirect_https, r.hsts) = https.clone();
        match c.env.get("VIRTUAL_HOST_WEIGHT") {
            Some(w) => match w.trim().parse::<i64>() {
                Ok(w) => r.priority = w,
                Err(_) => errors.push(c.env_error("VIRTUAL_HOST_WEIGHT", "not an integer")),
            },
            // The default route takes what nothing else takes.
            None if !c.env.contains_key("VIRTUAL_HOST") => r.priority = 1,
            None => {}
        }
        routes.push(r);
    }
    let (mut tcp_services, tcp_routes) =
        tcp(c, cx, &name, ip, &tcp_ports, proxy_protocol, &mut errors);
    for s in &mut tcp_services {
        s.health = health.clone();
    }
    match (ip, port, routes.is_empty(), errors.is_empty()) {
        (Some(ip), Some(port), false, true) => {
            let mut srv = server(c, ip, port);
            if let Some(w) = settings.weight {
                srv.weight = w;
            }
            // FAILOVER: dockercloud writes every server of the service `backup`; the provider
            // moves them into the services sharing its routes (`super::failover`).
            srv.backup = settings.backup || failover(c);
            let mut svc = service(&name, srv);
            svc.balance = balance.unwrap_or_default();
            svc.affinity = affinity;
            svc.health = health;
            // HTTP_BASIC_AUTH on the proxy guards every service but those that opt out.
            let mut middlewares = Vec::new();
            let wide = cx.dockercloud;
            if let (Some(auth), false) = (
                wide.and_then(|w| w.basic_auth.as_ref()),
                c.env.contains_key(EXCLUDE_BASIC_AUTH),
            ) {
                for r in &mut routes {
                    r.middlewares.push(auth.name.clone());
                }
                middlewares.push(auth.clone());
            }
            // GZIP_COMPRESSION_TYPE on the service, else on the proxy: its responses of those
            // types.
            let own = gzip_named(
                c.env.get("GZIP_COMPRESSION_TYPE").map(String::as_str),
                &format!("{name}-gzip"),
            );
            let gzip = match own {
                Ok(Some(g)) => Some(g),
                Ok(None) => wide.and_then(|w| w.compress.clone()),
                Err(m) => return Err(vec![c.env_error("GZIP_COMPRESSION_TYPE", m)]),
            };
            if let Some(gzip) = gzip {
                for r in &mut routes {
                    r.middlewares.push(gzip.name.clone());
                }
                middlewares.push(gzip);
            }
            let mut services = vec![svc];
            services.extend(tcp_services);
            Ok((services, routes, middlewares, tcp_routes))
        }
        _ => Err(errors),
    }
}

/// `FAILOVER` (any value but empty, as dockercloud reads it): the service backs up the others
/// that take the same requests (the same `VIRTUAL_HOST` entry, or the default route).
pub(crate) fn failover(c: &Container) -> bool {
    c.env.get("FAILOVER").is_some_and(|v| !v.trim().is_empty())
}

/// `TCP_PORTS`: the container ports routed in TCP mode.
fn tcp_ports(c: &Container) -> Result<Vec<u16>, LabelError> {
    let Some(v) = c.env.get("TCP_PORTS") else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for p in super::list(v) {
        if p.ends_with("/ssl") {
            return Err(c.env_error(
                "TCP_PORTS",
                format!("{p}: TLS termination for a TCP port is not offered yet (a TCP port's TLS is passed through to the container)"),
            ));
        }
        match p.parse::<u16>() {
            Ok(n) if n > 0 => out.push(n),
            _ => {
                return Err(
                    c.env_error("TCP_PORTS", format!("{p:?}: not a port number (1..=65535)"))
                )
            }
        }
    }
    Ok(out)
}

/// HAProxy server options, as `EXTRA_ROUTE_SETTINGS` and `HEALTH_CHECK` give them.
#[derive(Debug, Clone, Default)]
struct ServerOptions {
    /// `check`: the server is health-checked.
    check: bool,
    /// `inter`, `rise`, `fall`.
    inter: Option<std::time::Duration>,
    rise: Option<u32>,
    fall: Option<u32>,
    /// `weight N`.
    weight: Option<u32>,
    /// `send-proxy`, `send-proxy-v2`.
    proxy: Option<ProxyVersion>,
    /// `backup`: the servers take requests only while no other server of their service does.
    backup: bool,
}

/// Read HAProxy server options from `var`; `weight` and the PROXY protocol only where `server`
/// says (`EXTRA_ROUTE_SETTINGS`, not `HEALTH_CHECK`). Every other option is refused by name.
fn server_options(var: &str, v: &str, server: bool) -> Result<ServerOptions, String> {
    let mut o = ServerOptions::default();
    let mut words = v.split_whitespace();
    let count = |w: Option<&str>, what: &str| -> Result<u32, String> {
        w.and_then(|n| n.parse::<u32>().ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("{what} needs a count of 1 or more"))
    };
    while let Some(w) = words.next() {
        match w {
            "check" => o.check = true,
            "inter" => {
                let d = words.next().ok_or("inter needs a delay (2000, 2s)")?;
                o.inter = Some(haproxy_time(d).ok_or_else(|| {
                    format!("inter {d:?}: not a delay (milliseconds, or with a unit: 2s, 500ms)")
                })?);
            }
            "rise" => o.rise = Some(count(words.next(), "rise")?),
            "fall" => o.fall = Some(count(words.next(), "fall")?),
            "weight" if server => {
                let n = words.next().and_then(|n| n.parse::<u32>().ok());
                o.weight = Some(
                    n.filter(|&n| n <= 256)
                        .ok_or("weight needs a number 0..=256")?,
                );
            }
            "send-proxy" if server => o.proxy = Some(ProxyVersion::V1),
            "send-proxy-v2" if server => o.proxy = Some(ProxyVersion::V2),
            "backup" if server => o.backup = true,
            other => {
                let reads = if server {
                    "check, inter, rise, fall, weight, backup, send-proxy and send-proxy-v2"
                } else {
                    "check, inter, rise and fall"
                };
                return Err(format!(
                    "{other:?}: not supported in {var}: Tether reads {reads}"
                ));
            }
        }
    }
    Ok(o)
}

/// HAProxy's time format: milliseconds by default, or `us`, `ms`, `s`, `m`, `h`, `d`.
fn haproxy_time(t: &str) -> Option<std::time::Duration> {
    use std::time::Duration;
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().ok()?;
    let d = match unit {
        "" | "ms" => Duration::from_millis(n),
        "us" => Duration::from_micros(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        "d" => Duration::from_secs(n.checked_mul(86_400)?),
        _ => return None,
    };
    (d >= Duration::from_millis(100)).then_some(d)
}

/// `EXTRA_ROUTE_SETTINGS`: HAProxy server options on every server of the service.
fn extra_route_settings(c: &Container, tcp: bool) -> Result<ServerOptions, LabelError> {
    const KEY: &str = "EXTRA_ROUTE_SETTINGS";
    let Some(v) = c.env.get(KEY) else {
        return Ok(ServerOptions::default());
    };
    let o = server_options(KEY, v, true).map_err(|m| c.env_error(KEY, m))?;
    if o.proxy.is_some() && !tcp {
        return Err(c.env_error(
            KEY,
            "the PROXY protocol to HTTP servers is not offered yet (a pooled connection carries many clients' requests): it applies to TCP_PORTS",
        ));
    }
    Ok(o)
}

/// `HEALTH_CHECK` (and `EXTRA_ROUTE_SETTINGS`' check options) with `HTTP_CHECK`: Tether's
/// health check. HAProxy's defaults: every 2 s, 2 to rise, 3 to fall.
fn health(
    c: &Container,
    route: &ServerOptions,
) -> Result<Option<crate::decl::HealthCheck>, LabelError> {
    let hc = match c.env.get("HEALTH_CHECK") {
        Some(v) => {
            server_options("HEALTH_CHECK", v, false).map_err(|m| c.env_error("HEALTH_CHECK", m))?
        }
        None => ServerOptions::default(),
    };
    let path = match c.env.get("HTTP_CHECK") {
        None => None,
        Some(v) => Some(http_check(v).map_err(|m| c.env_error("HTTP_CHECK", m))?),
    };
    // HTTP_CHECK alone: dockercloud/haproxy's HEALTH_CHECK defaults to `check`.
    if !(hc.check || route.check || path.is_some()) {
        return Ok(None);
    }
    let mut check = crate::decl::HealthCheck::of(path.unwrap_or_default());
    check.interval = route
        .inter
        .or(hc.inter)
        .unwrap_or(std::time::Duration::from_secs(2));
    check.timeout = check.timeout.min(check.interval);
    check.rise = route.rise.or(hc.rise).unwrap_or(2);
    check.fall = route.fall.or(hc.fall).unwrap_or(3);
    Ok(Some(check))
}

/// `HTTP_CHECK=GET /health` (HAProxy's `option httpchk`): the path Tether's check GETs. `HEAD`
/// is read as `GET` of the same path; another method, or no path, is refused.
fn http_check(v: &str) -> Result<String, String> {
    let mut words = v.split_whitespace();
    let method = words.next().unwrap_or_default();
    let path = words.next();
    match (method.to_ascii_uppercase().as_str(), path) {
        ("GET" | "HEAD", Some(p)) if p.starts_with('/') && !p.bytes().any(|b| b.is_ascii_control()) => {
            Ok(p.to_string())
        }
        ("GET" | "HEAD", _) => Err(format!("{v:?}: expected a path after the method, e.g. GET /health")),
        _ => Err(format!(
            "{v:?}: Tether's health check GETs a path and takes 2xx and 3xx: write GET /path (HEAD is read as GET)"
        )),
    }
}

/// `EXCLUDE_PORTS`: exposed ports that are not routed.
fn exclude_ports(c: &Container) -> Result<Vec<u16>, LabelError> {
    let Some(v) = c.env.get("EXCLUDE_PORTS") else {
        return Ok(Vec::new());
    };
    super::list(v)
        .iter()
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| c.env_error("EXCLUDE_PORTS", format!("{p:?}: not a port number")))
        })
        .collect()
}

/// The one exposed port neither excluded nor a TCP port, when `SERVICE_PORTS` names none.
fn exposed_port(c: &Container, excluded: &[u16], tcp: &[u16]) -> Result<u16, LabelError> {
    let left: Vec<u16> = c
        .exposed_ports
        .iter()
        .copied()
        .filter(|p| !excluded.contains(p) && !tcp.contains(p))
        .collect();
    match left.as_slice() {
        [one] => Ok(*one),
        [] => Err(c.env_error(
            "EXCLUDE_PORTS",
            "every exposed port is excluded: name the HTTP port in SERVICE_PORTS",
        )),
        _ => Err(c.env_error(
            "EXCLUDE_PORTS",
            format!(
                "exposed ports {left:?} are left: Tether routes one port per container, name it in SERVICE_PORTS"
            ),
        )),
    }
}

/// The TCP service and router of each of `ports`, on the TCP entrypoint of the same port.
fn tcp(
    c: &Container,
    cx: &Context<'_>,
    name: &str,
    ip: Option<std::net::IpAddr>,
    ports: &[u16],
    proxy_protocol: Option<ProxyVersion>,
    errors: &mut Vec<LabelError>,
) -> (Vec<ServiceDecl>, Vec<TcpRouteDecl>) {
    let (mut services, mut routes) = (Vec::new(), Vec::new());
    for &p in ports {
        let entrypoint = match cx.tcp_entrypoint_on(p) {
            Ok(e) => e,
            Err(m) => {
                errors.push(c.env_error("TCP_PORTS", format!("{p}: {m}")));
                continue;
            }
        };
        let Some(ip) = ip else { continue };
        let each = format!("{name}-tcp-{p}");
        let mut svc = service(&each, server(c, ip, p));
        svc.protocol = ServiceProtocol::Tcp { proxy_protocol };
        let rule = crate::rule::Rule::HostSni(crate::rule::SniMatch::Any);
        routes.push(TcpRouteDecl {
            name: scoped(&each),
            rule_text: rule.to_string(),
            priority: 1,
            rule: rule.into(),
            service: svc.name.clone(),
            entrypoints: vec![entrypoint],
            passthrough: false,
        });
        services.push(svc);
    }
    (services, routes)
}

/// `FORCE_SSL` (any value, as in dockercloud/haproxy): plain HTTP redirected to https;
/// `HSTS_MAX_AGE=<seconds>`: HSTS on HTTPS responses.
fn https(c: &Container) -> Result<(Option<HttpsRedirect>, Option<Hsts>), LabelError> {
    let redirect = c.env.contains_key("FORCE_SSL").then(HttpsRedirect::default);
    let hsts = match c.env.get("HSTS_MAX_AGE") {
        None => None,
        Some(v) => match v.trim().parse::<u64>() {
            Ok(0) => None,
            Ok(max_age) => Some(Hsts {
                max_age,
                include_subdomains: false,
                preload: false,
            }),
            Err(_) => return Err(c.env_error("HSTS_MAX_AGE", "expected a number of seconds")),
        },
    };
    Ok((redirect, hsts))
}

/// Which entrypoints a `VIRTUAL_HOST` item is served on: its scheme's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scheme {
    /// No scheme: every entrypoint.
    Any,
    /// `http://`, `ws://`: the plain entrypoints.
    Plain,
    /// `https://`, `wss://`: the TLS entrypoints.
    Tls,
}

/// `*/service1, https://example.com/api/*` → Tether rule text per scheme, in scheme order.
pub fn virtual_host(v: &str) -> Result<Vec<(Scheme, String)>, String> {
    let mut by_scheme: std::collections::BTreeMap<Scheme, Vec<String>> = Default::default();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (scheme, rest) = match item.split_once("://") {
            Some((s, rest)) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("ws") => {
                (Scheme::Plain, rest)
            }
            Some((s, rest)) if s.eq_ignore_ascii_case("https") || s.eq_ignore_ascii_case("wss") => {
                (Scheme::Tls, rest)
            }
            Some((s, _)) => {
                return Err(format!(
                    "{item:?}: scheme {s} is not one of http, https, ws, wss"
                ))
            }
            None => (Scheme::Any, item),
        };
        by_scheme
            .entry(scheme)
            .or_default()
            .push(item_rule(item, rest)?);
    }
    if by_scheme.is_empty() {
        return Err("empty".into());
    }
    Ok(by_scheme
        .into_iter()
        .map(|(scheme, mut alternatives)| {
            if alternatives.len() > 1 {
                alternatives = alternatives
                    .into_iter()
                    .map(|a| {
                        if a.contains("&&") {
                            format!("({a})")
                        } else {
                            a
                        }
                    })
                    .collect();
            }
            (scheme, group(alternatives))
        })
        .collect())
}

/// One `host[/path]` item (its scheme taken off) as a rule.
fn item_rule(item: &str, rest: &str) -> Result<String, String> {
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    if host.contains(':') {
        return Err(format!("{item:?}: a port selects an HAProxy frontend; Tether routes on its entrypoints, so leave the port out"));
    }
    let mut parts = Vec::new();
    match host {
        "*" | "" => {}
        h if h.starts_with("*.") && !h[2..].contains('*') => parts.push(format!("Host(`{h}`)")),
        h if !h.contains('*') => parts.push(format!("Host(`{h}`)")),
        h => {
            return Err(format!(
                "{item:?}: host pattern {h:?} is not supported: use *, *.domain or an exact host"
            ))
        }
    }
    match path {
        None => {}
        Some(p) if !p.contains('*') => parts.push(format!("Path(`{p}`)")),
        Some(p) if p.ends_with("/*") && !p[..p.len() - 1].contains('*') => {
            parts.push(format!("PathPrefix(`{}`)", &p[..p.len() - 1]))
        }
        Some(p) => return Err(format!("{item:?}: path pattern {p:?} is not supported: use an exact path or a prefix ending in /*")),
    }
    Ok(match parts.len() {
        0 => "PathPrefix(`/`)".to_string(),
        1 => parts.remove(0),
        _ => parts.join(" && "),
    })
}

pub(crate) fn balance(v: &str) -> Result<BalanceAlgo, String> {
    let v = v.trim();
    match v.to_ascii_lowercase().as_str() {
        "roundrobin" | "static-rr" => Ok(BalanceAlgo::RoundRobin),
        "leastconn" => Ok(BalanceAlgo::LeastRequests),
        "source" => Ok(BalanceAlgo::ConsistentHash(HashOn::ClientIp)),
        lower => match lower.strip_prefix("hdr(").and_then(|h| h.strip_suffix(')')) {
            Some(h) if http::HeaderName::from_bytes(h.as_bytes()).is_ok() => {
                Ok(BalanceAlgo::ConsistentHash(HashOn::Header(h.to_string())))
            }
            _ => Err("expected roundrobin, static-rr, leastconn, source or hdr(<name>)".into()),
        },
    }
}

/// `connect.sid prefix nocache` or `SRV insert indirect nocache`.
fn cookie(c: &Container, service: &str, v: &str) -> Result<AffinityPolicy, LabelError> {
    let err = |m: String| c.env_error("COOKIE", m);
    let mut words = v.split_whitespace();
    let name = words
        .next()
        .ok_or_else(|| err("expected <name> prefix|insert [nocache]".into()))?;
    if !is_cookie_name(name) {
        return Err(err(format!("{name:?} is not a cookie name")));
    }
    let mode = words.next().unwrap_or("insert");
    let mut nocache = false;
    let mut attrs = CookieAttrs::for_service(&super::scoped(service));
    attrs.name = name.to_string();
    for w in words {
        match w.to_ascii_lowercase().as_str() {
            "nocache" => nocache = true,
            // Tether never passes its own cookie on, so `indirect` and `preserve` need nothing.
            "indirect" | "preserve" => {}
            "httponly" => attrs.http_only = true,
            "secure" => attrs.secure = true,
            other => {
                return Err(err(format!(
                    "option {other:?} is not supported: use nocache, indirect, preserve, httponly or secure"
                )))
            }
        }
    }
    let mode = match mode.to_ascii_lowercase().as_str() {
        "prefix" => AffinityMode::Prefix {
            cookie: name.to_string(),
        },
        "insert" => AffinityMode::Cookie(attrs),
        other => {
            return Err(err(format!(
                "mode {other:?} is not supported: use prefix or insert"
            )))
        }
    };
    Ok(AffinityPolicy {
        mode,
        nocache,
        on_missing: OnMissing::Rebalance,
    })
}

/// What dockercloud/haproxy reads from the proxy's own environment and applies to every
/// service of its dialect; Tether reads the same variables from its own environment.
#[derive(Debug, Clone, Default)]
pub struct ProxyWide {
    /// `HTTP_BASIC_AUTH`, `HTTP_BASIC_AUTH_SECURE` ([`basic_auth`]).
    pub basic_auth: Option<crate::middleware::MiddlewareDecl>,
    /// `GZIP_COMPRESSION_TYPE` ([`gzip`]).
    pub compress: Option<crate::middleware::MiddlewareDecl>,
}

/// The middleware of dockercloud/haproxy's `GZIP_COMPRESSION_TYPE` (media types, space- or
/// comma-separated): gzip, for those types only. `gzip-compression@docker`.
pub fn gzip(types: Option<&str>) -> Result<Option<crate::middleware::MiddlewareDecl>, String> {
    gzip_named(types, "gzip-compression")
}

/// [`gzip`], the middleware named `name@docker`.
fn gzip_named(
    types: Option<&str>,
    name: &str,
) -> Result<Option<crate::middleware::MiddlewareDecl>, String> {
    let Some(types) = types.filter(|t| !t.trim().is_empty()) else {
        return Ok(None);
    };
    let list: Vec<toml::Value> = types
        .split([' ', ','])
        .filter(|t| !t.is_empty())
        .map(|t| toml::Value::String(t.to_string()))
        .collect();
    let mut fields = toml::Table::new();
    fields.insert(
        "encodings".into(),
        toml::Value::Array(vec![toml::Value::String("gzip".into())]),
    );
    fields.insert("include_types".into(), toml::Value::Array(list));
    let mut table = toml::Table::new();
    table.insert("compress".into(), toml::Value::Table(fields));
    super::dialect_middleware(name, table)
        .map(Some)
        .map_err(|why| format!("GZIP_COMPRESSION_TYPE: {}", why.join("; ")))
}

/// A service that opts out of the proxy's `HTTP_BASIC_AUTH` (any value, as dockercloud/haproxy).
const EXCLUDE_BASIC_AUTH: &str = "EXCLUDE_BASIC_AUTH";

/// The middleware of dockercloud/haproxy's `HTTP_BASIC_AUTH` (`user:pass,...`, a comma escaped
/// `\,`; the passwords hashed at once, never kept) and `HTTP_BASIC_AUTH_SECURE`
/// (`user:hash,...`, as `mkpasswd -m sha-512` writes), set on Tether's own environment.
/// `http-basic-auth@docker`, in the realm `haproxy` as the seed's proxy asked.
pub fn basic_auth(
    plain: Option<&str>,
    secure: Option<&str>,
) -> Result<Option<crate::middleware::MiddlewareDecl>, String> {
    use crate::middleware::{htpasswd, BasicAuth, Middleware, MiddlewareDecl};
    let mut users = Vec::new();
    for (var, value, hashed) in [
        ("HTTP_BASIC_AUTH", plain, false),
        ("HTTP_BASIC_AUTH_SECURE", secure, true),
    ] {
        let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        // Split on commas not escaped as `\,`.
        let mut items = vec![String::new()];
        let mut chars = value.chars().peekable();
        while let Some(ch) = chars.next() {
            match (ch, chars.peek()) {
                ('\\', Some(',')) => {
                    items.last_mut().expect("one").push(',');
                    chars.next();
                }
                (',', _) => items.push(String::new()),
                _ => items.last_mut().expect("one").push(ch),
            }
        }
        for item in items.iter().map(|i| i.trim()).filter(|i| !i.is_empty()) {
            let Some((name, pass)) = item.split_once(':') else {
                return Err(format!("{var}: expected user:password,user:password"));
            };
            let user = if hashed {
                htpasswd::parse_line(item).map_err(|e| format!("{var}: {e}"))?
            } else {
                htpasswd::hash_plain(name, pass)
            };
            users.push(user);
        }
    }
    if users.is_empty() {
        return Ok(None);
    }
    Ok(Some(MiddlewareDecl {
        name: "http-basic-auth@docker".into(),
        kind: Middleware::BasicAuth(BasicAuth {
            users,
            users_file: None,
            realm: "haproxy".into(),
            remove_header: true,
        }),
    }))
}
