//! Docker Flow Proxy labels, as Docker Flow Swarm Listener reads them:
//!
//! - `com.df.notify=true`: the container takes part;
//! - `com.df.serviceName`: the service (default: the container's group);
//! - `com.df.servicePath=/demo,/api`: path prefixes;
//! - `com.df.serviceDomain=a.com,*.b.com`: hosts;
//! - `com.df.port`: the container's port;
//! - `com.df.sessionType=sticky-server`: sticky sessions in a cookie Tether inserts;
//! - `com.df.httpsOnly=true`: plain HTTP is answered 308 with the `https://` URL;
//! - `com.df.srcPort`: the proxy's port: the route is served on Tether's entrypoint of that port;
//! - `com.df.reqMode=tcp` with `com.df.srcPort` and `com.df.port`: every connection to Tether's
//!   TCP entrypoint on `srcPort` is piped to the container's `port` (`reqMode=sni` is refused
//!   by name for now: its `req_ssl_sni` matches need a pattern `HostSNI` does not have);
//! - auth, path rewrites, header rules, method filters and `redirectFromDomain` as middlewares,
//!   see [`middlewares`].
//!
//! Docker Flow Proxy needed Consul to give every proxy replica the same routes; Tether replicas
//! each read the same labels from the engine (or Swarm) and agree without talking to each other.

pub mod middlewares;

use super::{
    address, any_of, list, parse_bool, port, route, scoped, server, service, Container, Context,
    Translation,
};
use serde::Deserialize;

use crate::decl::{AffinityMode, AffinityPolicy, CookieAttrs, HttpsRedirect, OnMissing};

const PATH: &str = "com.df.servicePath";
const DOMAIN: &str = "com.df.serviceDomain";
const PORT: &str = "com.df.port";
const SESSION: &str = "com.df.sessionType";
const REQ_MODE: &str = "com.df.reqMode";
const HTTPS_ONLY: &str = "com.df.httpsOnly";
const SRC_PORT: &str = "com.df.srcPort";

pub(crate) fn declare(c: &Container, cx: &Context<'_>) -> Translation {
    let mut errors = Vec::new();
    let name = c
        .label("com.df.serviceName")
        .map_or(c.group.clone(), str::to_string);
    match c.label(REQ_MODE).map(str::to_ascii_lowercase).as_deref() {
        None | Some("http") => {}
        Some("tcp") => return tcp(c, cx, &name),
        Some("sni") => {
            return Err(vec![c.label_error(
                REQ_MODE,
                "not supported yet: DFP's SNI routing matches with req_ssl_sni patterns that HostSNI cannot express; route by name with tether.tcp.routers.* (HostSNI, tls.passthrough) instead",
            )])
        }
        Some(_) => return Err(vec![c.label_error(REQ_MODE, "expected http or tcp")]),
    }
    let src_port = src_port(c).map_err(|e| errors.push(e)).ok().flatten();
    let ip = address(c, cx, None).map_err(|e| errors.push(e)).ok();
    let port = port(c, PORT, c.label(PORT), |k, m| c.label_error(k, m))
        .map_err(|e| errors.push(e))
        .ok();
    let paths = c.label(PATH).map(list).unwrap_or_default();
    for p in &paths {
        if !p.starts_with('/') {
            errors.push(c.label_error(PATH, format!("{p:?}: a path starts with /")));
        }
    }
    let domains = c.label(DOMAIN).map(list).unwrap_or_default();
    let get = |p: &str| c.label(&format!("com.df.{p}")).map(str::to_string);
    let translated = match middlewares::translate(&get, &domains) {
        Ok(t) => t,
        Err(es) => {
            for (p, m) in es {
                errors.push(c.label_error(&format!("com.df.{p}"), m));
            }
            middlewares::Translated::default()
        }
    };
    let mut hosts = domains.clone();
    hosts.extend(translated.redirect_from.iter().cloned());
    let mut parts = Vec::new();
    if !hosts.is_empty() {
        parts.push(any_of("Host", &hosts));
    }
    if !paths.is_empty() {
        parts.push(any_of("PathPrefix", &paths));
    }
    if parts.is_empty() {
        errors.push(c.label_error(
            PATH,
            "missing: give com.df.servicePath, com.df.serviceDomain or both",
        ));
    }
    let affinity = match c.label(SESSION) {
        None => None,
        Some("sticky-server") => Some(AffinityPolicy {
            mode: AffinityMode::Cookie(CookieAttrs::for_service(&scoped(&name))),
            nocache: false,
            on_missing: OnMissing::Rebalance,
        }),
        Some(_) => {
            errors.push(c.label_error(SESSION, "expected sticky-server"));
            None
        }
    };
    let https_only = match c.label(HTTPS_ONLY).map(parse_bool) {
        None | Some(Some(false)) => false,
        Some(Some(true)) => true,
        Some(None) => {
            errors.push(c.label_error(HTTPS_ONLY, "expected true or false"));
            false
        }
    };
    let rule = route(&name, parts.join(" && "), &name);
    let mut rule = match rule {
        Ok(r) if errors.is_empty() => r,
        Ok(_) => return Err(errors),
        Err(m) => {
            errors.push(c.label_error(if domains.is_empty() { PATH } else { DOMAIN }, m));
            return Err(errors);
        }
    };
    if https_only {
        rule.redirect_https = Some(HttpsRedirect::default());
    }
    if let Some(p) = src_port {
        let http = cx
            .entrypoint_ports
            .iter()
            .find(|(n, port)| *port == p && !cx.tcp_entrypoints.contains(n));
        match http {
            Some((n, _)) => rule.entrypoints = vec![n.clone()],
            None => errors.push(c.label_error(
                SRC_PORT,
                format!("Tether has no HTTP entrypoint on port {p}: declare one, e.g. --entrypoint web{p}=0.0.0.0:{p}"),
            )),
        }
    }
    let mut defined = Vec::new();
    for t in translated.tables {
        let mw_name = format!("{name}-{}", t.suffix);
        let key = format!("com.df.{}", t.param);
        let raw = match crate::middleware::RawMiddleware::deserialize(toml::Value::Table(t.table)) {
            Ok(r) => r,
            Err(e) => {
                errors.push(c.label_error(&key, e.to_string()));
                continue;
            }
        };
        match raw.convert(&mw_name, "docker", crate::middleware::Origin::Untrusted) {
            Ok(d) => {
                rule.middlewares.push(d.name.clone());
                defined.push(d);
            }
            Err(es) => errors.extend(es.into_iter().map(|e| c.label_error(&key, e.message))),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let (Some(ip), Some(port)) = (ip, port) else {
        return Err(errors);
    };
    let mut svc = service(&name, server(c, ip, port));
    svc.affinity = affinity;
    Ok((vec![svc], vec![rule], defined, Vec::new()))
}

/// `com.df.srcPort`, when given.
fn src_port(c: &Container) -> Result<Option<u16>, super::LabelError> {
    match c.label(SRC_PORT) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .map(Some)
            .ok_or_else(|| c.label_error(SRC_PORT, "not a port number (1..=65535)")),
    }
}

/// `reqMode=tcp`: the container's `port` behind Tether's TCP entrypoint on `srcPort`. What only
/// HTTP has (paths, domains, sessions, HTTPS, the request options) is refused by name.
fn tcp(c: &Container, cx: &Context<'_>, name: &str) -> Translation {
    let mut errors = Vec::new();
    for key in c.labels.keys().filter(|k| k.starts_with("com.df.")) {
        let field = &key["com.df.".len()..];
        let known = matches!(
            field,
            "notify" | "serviceName" | "port" | "srcPort" | "reqMode" | "distribute"
        );
        if !known {
            errors.push(c.label_error(
                key,
                "not used with reqMode=tcp: every connection to srcPort goes to the service whole",
            ));
        }
    }
    let port = port(c, PORT, c.label(PORT), |k, m| c.label_error(k, m))
        .map_err(|e| errors.push(e))
        .ok();
    let entrypoint = match src_port(c) {
        Ok(Some(p)) => cx
            .tcp_entrypoint_on(p)
            .map_err(|m| errors.push(c.label_error(SRC_PORT, m)))
            .ok(),
        Ok(None) => {
            errors.push(c.label_error(
                SRC_PORT,
                "missing: reqMode=tcp needs the proxy's port (com.df.srcPort)",
            ));
            None
        }
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let ip = address(c, cx, None).map_err(|e| errors.push(e)).ok();
    let (Some(ip), Some(port), Some(entrypoint), true) = (ip, port, entrypoint, errors.is_empty())
    else {
        return Err(errors);
    };
    let mut svc = service(name, server(c, ip, port));
    svc.protocol = crate::decl::ServiceProtocol::Tcp {
        proxy_protocol: None,
    };
    let rule = crate::rule::Rule::HostSni(crate::rule::SniMatch::Any);
    let router = crate::decl::TcpRouteDecl {
        name: scoped(name),
        rule_text: rule.to_string(),
        priority: 1,
        rule: rule.into(),
        service: svc.name.clone(),
        entrypoints: vec![entrypoint],
        passthrough: false,
    };
    Ok((vec![svc], Vec::new(), Vec::new(), vec![router]))
}
