//! Traefik v2/v3 labels (keys are case-insensitive, as in Traefik):
//!
//! - `traefik.http.routers.<r>.rule`, `.service`, `.priority`;
//! - `traefik.http.services.<s>.loadbalancer.server.port` (and `.scheme`: `https` is TLS to the
//!   container, its certificate checked against the system's roots for the container's address,
//!   as Traefik's default servers transport does);
//! - `traefik.http.services.<s>.loadbalancer.sticky.cookie` (`true`) and its `.name`, `.secure`,
//!   `.httponly`, `.samesite`, `.maxage`, `.path`;
//! - `traefik.docker.network` (or `traefik.swarm.network`), `traefik.enable`.
//!
//! - a router's `entrypoints`, `tls` and `middlewares`, see [`https`];
//! - `traefik.http.middlewares.<m>.<type>.<option>`, see [`middlewares`].
//!
//! A router without `entrypoints` is served on every Tether entrypoint. Defaults as in Traefik: without a service label
//! the container's group is the service, without a router the rule is ``Host(`<service>`)``.
//! Tether's sticky cookie is `HttpOnly` and `SameSite=Lax` unless the labels say otherwise.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{
    address, lit, parse_bool, port, route, scoped, server, service, Container, Context, LabelError,
    Translation,
};
use crate::decl::{AffinityMode, AffinityPolicy, CookieAttrs, OnMissing, SameSite};

pub(crate) mod https;
mod middlewares;
mod tcp;

const ROUTERS: &str = "traefik.http.routers.";
const SERVICES: &str = "traefik.http.services.";
pub(crate) const NETWORK: &str = "traefik.docker.network";
/// Traefik v3's Swarm provider spells it so.
pub(crate) const SWARM_NETWORK: &str = "traefik.swarm.network";

/// The network a Traefik label names, in either provider's spelling.
pub(crate) fn network_label(c: &Container) -> Option<(&str, &str)> {
    label_ci(c, NETWORK).or_else(|| label_ci(c, SWARM_NETWORK))
}

#[derive(Default)]
struct Svc<'a> {
    /// (original key, value) per lower-case field.
    fields: BTreeMap<String, (&'a str, &'a str)>,
}

pub(crate) fn declare(c: &Container, cx: &Context<'_>) -> Translation {
    let mut errors = Vec::new();
    let mut services: BTreeMap<String, Svc> = BTreeMap::new();
    let mut routers: BTreeMap<String, https::Fields> = BTreeMap::new();
    let mut middlewares: BTreeMap<String, https::Fields> = BTreeMap::new();
    let mut tcp_routers = tcp::Fields::new();
    let mut tcp_services = tcp::Fields::new();
    for (key, value) in &c.labels {
        let lower = key.to_ascii_lowercase();
        if lower.starts_with("traefik.udp.") {
            errors.push(c.label_error(key, "not supported: Tether routes HTTP and TCP, not UDP"));
            continue;
        }
        for (prefix, into) in [
            (tcp::ROUTERS, &mut tcp_routers),
            (tcp::SERVICES, &mut tcp_services),
        ] {
            if let Some(rest) = lower.strip_prefix(prefix) {
                match original_name(key, prefix, rest) {
                    Some((name, field)) => {
                        into.entry(name)
                            .or_default()
                            .insert(field, (key.as_str(), value.as_str()));
                    }
                    None => {
                        errors.push(c.label_error(key, format!("expected {prefix}<name>.<field>")))
                    }
                }
            }
        }
        if let Some(rest) = lower.strip_prefix(https::MIDDLEWARES) {
            if let Some((name, field)) = original_name(key, https::MIDDLEWARES, rest) {
                middlewares
                    .entry(name)
                    .or_default()
                    .insert(field, (key.as_str(), value.as_str()));
            }
        } else if let Some(rest) = lower.strip_prefix(ROUTERS) {
            if let Some((name, field)) = original_name(key, ROUTERS, rest) {
                routers
                    .entry(name)
                    .or_default()
                    .insert(field, (key.as_str(), value.as_str()));
            }
        } else if let Some(rest) = lower.strip_prefix(SERVICES) {
            if let Some((name, field)) = original_name(key, SERVICES, rest) {
                services
                    .entry(name)
                    .or_default()
                    .fields
                    .insert(field, (key.as_str(), value.as_str()));
            }
        }
    }
    // A container with TCP labels only gets no HTTP service or route of its own (as Traefik).
    let tcp_only = services.is_empty()
        && routers.is_empty()
        && !(tcp_routers.is_empty() && tcp_services.is_empty());
    if services.is_empty() && !tcp_only {
        services.insert(c.group.clone(), Svc::default());
    }
    let network = network_label(c);
    let ip = match address(c, cx, network) {
        Ok(ip) => Some(ip),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let mut decls = Vec::new();
    for (name, svc) in &services {
        match one_service(c, name, svc, ip) {
            Ok(Some(s)) => decls.push(s),
            Ok(None) => {}
            Err(e) => errors.extend(e),
        }
    }
    if routers.is_empty() && !tcp_only {
        routers.insert(c.group.clone(), BTreeMap::new());
    }
    let (tcp_decls, tcp_routes) = tcp::declare(c, cx, &tcp_routers, &tcp_services, ip, &mut errors);
    errors.extend(super::tcp_placement(
        c,
        cx,
        &tcp_decls,
        &tcp_routes,
        |r, f| {
            tcp_routers
                .get(r)
                .and_then(|fields| fields.get(f).or_else(|| fields.get("rule")))
                .map_or(format!("{}{r}.{f}", tcp::ROUTERS), |(k, _)| k.to_string())
        },
    ));
    decls.extend(tcp_decls);
    let mut routes = Vec::new();
    for (name, fields) in &routers {
        let service_name = match fields.get("service") {
            Some((_, v)) => v.to_string(),
            None if services.len() == 1 => services.keys().next().cloned().unwrap_or_default(),
            None => {
                errors.push(c.label_error(
                    &format!("{ROUTERS}{name}.service"),
                    "missing: the container declares several services, so name one",
                ));
                continue;
            }
        };
        let (rule_key, rule_text) = match fields.get("rule") {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (String::new(), format!("Host({})", lit(&service_name))),
        };
        let mut r = match route(name, rule_text, &service_name) {
            Ok(r) => r,
            Err(m) => {
                errors.push(c.label_error(&rule_key, m));
                continue;
            }
        };
        if !services.contains_key(&service_name) && !service_name.contains('@') {
            if let Some((k, _)) = fields.get("service") {
                errors.push(c.label_error(k, "no such service on this container"));
            }
        }
        if let Some((k, v)) = fields.get("priority") {
            match v.trim().parse::<i64>() {
                Ok(p) => r.priority = p,
                Err(_) => errors.push(c.label_error(k, "not an integer")),
            }
        }
        for (field, (key, _)) in fields {
            let known = matches!(
                field.as_str(),
                "rule" | "service" | "priority" | "entrypoints" | "middlewares" | "tls"
            ) || field.starts_with("tls.");
            if !known {
                errors.push(c.label_error(
                    key,
                    "not supported: Tether reads a router's rule, service, priority, entrypoints, middlewares and tls",
                ));
            }
        }
        errors.extend(https::apply(c, cx, fields, &mut r));
        routes.push(r);
    }
    let secrets = cx
        .secrets_dir
        .unwrap_or(std::path::Path::new(super::certs::SECRETS_DIR));
    let (defined, more) = middlewares::all(c, &middlewares, secrets);
    errors.extend(more);
    if errors.is_empty() {
        Ok((decls, routes, defined, tcp_routes))
    } else {
        Err(errors)
    }
}

/// Router or service name as written (names are case-sensitive, keys are not) and the lower-case
/// field after it.
fn original_name(key: &str, prefix: &str, lower_rest: &str) -> Option<(String, String)> {
    let (name_lower, field) = lower_rest.split_once('.')?;
    let name = key[prefix.len()..prefix.len() + name_lower.len()].to_string();
    Some((name, field.to_string()))
}

/// A label looked up case-insensitively, as `(key, value)`.
pub(crate) fn label_ci<'a>(c: &'a Container, key: &str) -> Option<(&'a str, &'a str)> {
    c.labels
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(k, v)| (k.as_str(), v.as_str()))
}

fn one_service(
    c: &Container,
    name: &str,
    svc: &Svc,
    ip: Option<std::net::IpAddr>,
) -> Result<Option<crate::decl::ServiceDecl>, Vec<LabelError>> {
    let mut errors = Vec::new();
    let get = |f: &str| svc.fields.get(f).copied();
    let port_label = get("loadbalancer.server.port");
    let port_key = port_label.map_or(format!("{SERVICES}{name}.loadbalancer.server.port"), |p| {
        p.0.to_string()
    });
    let port = port(c, &port_key, port_label.map(|p| p.1), |k, m| {
        c.label_error(k, m)
    })
    .map_err(|e| errors.push(e))
    .ok();
    // What Tether cannot do as asked is refused, never left out quietly.
    for (field, (key, _)) in &svc.fields {
        let known = matches!(
            field.as_str(),
            "loadbalancer.server.port"
                | "loadbalancer.server.scheme"
                | "loadbalancer.passhostheader"
                | "loadbalancer.serverstransport"
                | "loadbalancer.healthcheck.path"
                | "loadbalancer.healthcheck.interval"
                | "loadbalancer.healthcheck.timeout"
        ) || field.starts_with("loadbalancer.sticky");
        if !known {
            let message = if field.starts_with("loadbalancer.healthcheck.") {
                "not supported: Tether's health checks GET the path on the server's own port and address, and take 2xx and 3xx (it reads healthcheck.path, .interval and .timeout)"
            } else {
                "not supported: Tether reads loadbalancer.server.port, .server.scheme, .passhostheader, .sticky.cookie.* and .healthcheck.path, .interval, .timeout"
            };
            errors.push(c.label_error(key, message));
        }
    }
    let health = health_check(c, &svc.fields)
        .map_err(|e| errors.extend(e))
        .ok()
        .flatten();
    // How the servers are reached: what Tether cannot do as asked is refused.
    if let Some((key, value)) = get("loadbalancer.passhostheader") {
        if super::parse_bool(value) != Some(true) {
            errors.push(c.label_error(
                key,
                "Tether always passes the client's Host header to the server (true only)",
            ));
        }
    }
    if let Some((key, _)) = get("loadbalancer.serverstransport") {
        errors.push(c.label_error(
            key,
            "not supported: a servers transport lives in Traefik's own configuration; for TLS to a container with its own certificate use Tether's labels (tether.http.services.<s>.scheme=https and .tls.ca_file, .tls.server_name or .tls.insecure_skip_verify)",
        ));
    }
    let mut tls = None;
    if let Some((k, v)) = get("loadbalancer.server.scheme") {
        if v.eq_ignore_ascii_case("https") {
            // As Traefik's default servers transport: the certificate checked against the
            // system's roots, for the address dialled.
            tls = ip.map(|ip| crate::decl::ServerTls {
                server_name: ip.to_string(),
                ca_file: None,
                insecure_skip_verify: false,
            });
        } else if !v.eq_ignore_ascii_case("http") {
            errors.push(c.label_error(k, "expected http or https"));
        }
    }
    let affinity = sticky(c, name, &svc.fields)
        .map_err(|e| errors.extend(e))
        .ok();
    if !errors.is_empty() {
        return Err(errors);
    }
    let (Some(ip), Some(port), Some(affinity)) = (ip, port, affinity) else {
        return Ok(None);
    };
    let mut srv = server(c, ip, port);
    srv.tls = tls;
    let mut s = service(name, srv);
    s.affinity = affinity;
    s.health = health;
    Ok(Some(s))
}

/// `loadbalancer.healthcheck.path` (and `.interval`, `.timeout`): Tether's active health check.
fn health_check(
    c: &Container,
    fields: &BTreeMap<String, (&str, &str)>,
) -> Result<Option<crate::decl::HealthCheck>, Vec<LabelError>> {
    let get = |f: &str| {
        fields
            .get(&format!("loadbalancer.healthcheck.{f}"))
            .copied()
    };
    health_labels(
        c,
        "loadbalancer.healthcheck.path",
        get("path"),
        get("interval"),
        get("timeout"),
    )
}

/// A health check from a dialect's path, interval and timeout labels (`(key, value)`), with
/// Traefik's defaults (30 s, 5 s); `path_name` names the path label in the error for its absence.
pub(crate) fn health_labels(
    c: &Container,
    path_name: &str,
    path: Option<(&str, &str)>,
    interval: Option<(&str, &str)>,
    timeout: Option<(&str, &str)>,
) -> Result<Option<crate::decl::HealthCheck>, Vec<LabelError>> {
    let Some((path_key, path)) = path else {
        return match interval.or(timeout) {
            Some((k, _)) => Err(vec![c.label_error(
                k,
                format!("{path_name} is missing: the path to GET on each server"),
            )]),
            None => Ok(None),
        };
    };
    let mut errors = Vec::new();
    if !path.starts_with('/') || path.contains(char::is_whitespace) {
        errors.push(c.label_error(path_key, "a path starts with / and holds no spaces"));
    }
    let mut check = crate::decl::HealthCheck::of(path.to_string());
    check.interval = std::time::Duration::from_secs(30);
    check.timeout = std::time::Duration::from_secs(5);
    for (label, slot) in [
        (interval, &mut check.interval),
        (timeout, &mut check.timeout),
    ] {
        if let Some((k, v)) = label {
            match crate::duration::parse(v.trim()) {
                Ok(d) if !d.is_zero() => *slot = d,
                Ok(_) => errors.push(c.label_error(k, "must be more than zero")),
                Err(m) => errors.push(c.label_error(k, m)),
            }
        }
    }
    if errors.is_empty() {
        Ok(Some(check))
    } else {
        Err(errors)
    }
}

fn sticky(
    c: &Container,
    name: &str,
    fields: &BTreeMap<String, (&str, &str)>,
) -> Result<Option<AffinityPolicy>, Vec<LabelError>> {
    let mut errors = Vec::new();
    let prefix = "loadbalancer.sticky.cookie";
    let mut enabled = false;
    let mut attrs = CookieAttrs::for_service(&scoped(name));
    for (field, (key, value)) in fields {
        let Some(rest) = field
            .strip_prefix("loadbalancer.sticky")
            .map(|r| r.trim_start_matches(".cookie"))
        else {
            continue;
        };
        let bad = |m: &str| c.label_error(key, m);
        match rest {
            "" => match parse_bool(value) {
                Some(on) => enabled |= on,
                None => errors.push(bad("expected true or false")),
            },
            ".name" => {
                enabled = true;
                if crate::validate::is_cookie_name(value) {
                    attrs.name = value.to_string();
                } else {
                    errors.push(bad("not a cookie name"));
                }
            }
            ".secure" | ".httponly" => {
                enabled = true;
                match parse_bool(value) {
                    Some(b) if rest == ".secure" => attrs.secure = b,
                    Some(b) => attrs.http_only = b,
                    None => errors.push(bad("expected true or false")),
                }
            }
            ".samesite" => {
                enabled = true;
                match value.trim() {
                    "" => attrs.same_site = None,
                    v => match SameSite::parse(v) {
                        Ok(s) => attrs.same_site = Some(s),
                        Err(m) => errors.push(bad(&m)),
                    },
                }
            }
            ".maxage" => {
                enabled = true;
                match value.trim().parse::<i64>() {
                    Ok(s) if s > 0 => attrs.max_age = Some(Duration::from_secs(s as u64)),
                    Ok(_) => attrs.max_age = None,
                    Err(_) => errors.push(bad("expected a number of seconds")),
                }
            }
            ".path" => {
                enabled = true;
                if value.starts_with('/') {
                    attrs.path = value.to_string();
                } else {
                    errors.push(bad("a cookie path starts with /"));
                }
            }
            other => errors.push(bad(&format!(
                "unknown sticky option {prefix}{other}: expected name, secure, httponly, samesite, maxage or path"
            ))),
        }
    }
    if attrs.same_site == Some(SameSite::None) && !attrs.secure {
        if let Some((key, _)) = fields.get("loadbalancer.sticky.cookie.samesite") {
            errors.push(c.label_error(key, "SameSite=None requires secure=true"));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(enabled.then_some(AffinityPolicy {
        mode: AffinityMode::Cookie(attrs),
        nocache: false,
        on_missing: OnMissing::Rebalance,
    }))
}
