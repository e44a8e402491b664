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
//!   TCP entrypoint on `srcPort` is piped to the container's `port`;
//! - `com.df.reqMode=sni` with `com.df.pathType` (`req_ssl_sni -i -m beg`) and
//!   `com.df.servicePath`: TLS connections to `srcPort` whose server name matches are passed
//!   through to `port` (see [`tcp`]);
//! - auth, path rewrites, header rules, method filters and `redirectFromDomain` as middlewares,
//!   see [`middlewares`].
//!
//! Docker Flow Proxy needed Consul to give every proxy replica the same routes; Tether replicas
//! each read the same labels from the engine (or Swarm) and agree without talking to each other.

pub mod dfsl;
pub mod middlewares;
pub mod tcp;

use super::{
    address, any_of, list, parse_bool, port, route, scoped, server, service, Container, Context,
    Translation,
};

use crate::decl::{AffinityMode, AffinityPolicy, CookieAttrs, HttpsRedirect, OnMissing};

const PATH: &str = "com.df.servicePath";
const DOMAIN: &str = "com.df.serviceDomain";
const PORT: &str = "com.df.port";
const SESSION: &str = "com.df.sessionType";
const REQ_MODE: &str = "com.df.reqMode";
const HTTPS_ONLY: &str = "com.df.httpsOnly";
const SRC_PORT: &str = "com.df.srcPort";

/// The options read in HTTP mode, as labels (`com.df.<option>`) and reconfigure parameters,
/// besides the request options ([`middlewares::PARAMS`]).
pub const HTTP_PARAMS: &[&str] = &[
    "serviceName",
    "servicePath",
    "port",
    "serviceDomain",
    "distribute",
    "sessionType",
    "reqMode",
    "httpsOnly",
    "srcPort",
    "serviceHeader",
    "servicePathExclude",
    "isDefaultBackend",
    "sslVerifyNone",
    "checkResolvers",
    "timeoutServer",
    "timeoutTunnel",
];

/// The options each of a service's destinations has of its own, indexed for the second and
/// later ones (`port.1`, `servicePath.1`, `srcPort.1`, ...); the others are the service's.
pub const PER_DESTINATION: &[&str] = &[
    "port",
    "servicePath",
    "serviceDomain",
    "srcPort",
    "reqMode",
    "pathType",
    "httpsOnly",
    "outboundHostname",
    "redirectFromDomain",
    "reqPathSearchReplace",
    "reqPathSearch",
    "reqPathReplace",
    "servicePathExclude",
    "serviceHeader",
    "sslVerifyNone",
    "allowedMethods",
    "deniedMethods",
    "isDefaultBackend",
];

/// The highest destination index read (`port.10`).
pub const MAX_DESTINATION: u32 = 10;

/// DFP's destinations of one service, each `(index, options)`: index 0 is the unindexed
/// options; index N (1..=10) the service's own options with `<option>.N`'s as its own. Without an
/// indexed option, the one destination is the options as given. An error names the option.
#[allow(clippy::type_complexity)]
pub fn destinations(
    params: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<(u32, std::collections::BTreeMap<String, String>)>, (String, String)> {
    use std::collections::BTreeMap;
    let mut indexed: BTreeMap<u32, BTreeMap<String, String>> = BTreeMap::new();
    for (k, v) in params {
        if dfsl::ignored(k).is_some() {
            continue;
        }
        let Some((base, n)) = k.rsplit_once('.') else {
            continue;
        };
        let Ok(n) = n.parse::<u32>() else { continue };
        if !PER_DESTINATION.contains(&base) {
            return Err((
                k.clone(),
                format!(
                    "{base} is the service's, not a destination's: give it once, without an index"
                ),
            ));
        }
        if !(1..=MAX_DESTINATION).contains(&n) {
            return Err((
                k.clone(),
                format!("destinations are indexed 1 to {MAX_DESTINATION}"),
            ));
        }
        indexed
            .entry(n)
            .or_default()
            .insert(base.to_string(), v.clone());
    }
    if indexed.is_empty() {
        return Ok(vec![(0, params.clone())]);
    }
    let unindexed = |k: &String| {
        k.rsplit_once('.')
            .is_none_or(|(_, n)| n.parse::<u32>().is_err())
    };
    let service: BTreeMap<String, String> = params
        .iter()
        .filter(|(k, _)| unindexed(k) && !PER_DESTINATION.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut out = Vec::new();
    if params.keys().any(|k| PER_DESTINATION.contains(&k.as_str())) {
        out.push((
            0,
            params
                .iter()
                .filter(|(k, _)| unindexed(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ));
    }
    for (n, own) in indexed {
        let mut d = service.clone();
        d.extend(own);
        out.push((n, d));
    }
    // The service's HTTP options (users, headers, sessions) are its HTTP destinations': a TCP
    // destination does not take them.
    for (_, d) in &mut out {
        if let Some(mode) = d.get("reqMode").and_then(|m| tcp::Mode::of(m)) {
            d.retain(|k, _| {
                mode.reads(k) || PER_DESTINATION.contains(&k.as_str()) || !service.contains_key(k)
            });
        }
    }
    Ok(out)
}

/// The name of destination `index` of service `name`: `name` for the first, `name-N` after.
pub fn destination_name(name: &str, index: u32) -> String {
    if index == 0 {
        name.to_string()
    } else {
        format!("{name}-{index}")
    }
}

/// An error about option `field` of destination `index`, named as written (`port.1`).
pub fn indexed_field(field: &str, index: u32) -> String {
    if index > 0 && PER_DESTINATION.contains(&field) {
        format!("{field}.{index}")
    } else {
        field.to_string()
    }
}

/// What DFP's routing options add, for labels and reconfigure alike.
#[derive(Debug, Default)]
pub struct Routing {
    /// More parts of the rule, each to be joined with `&&`: `serviceHeader`'s
    /// ``Header(`name`, `value`)``, `servicePathExclude`'s ``!PathPrefix(`/x`)``.
    pub parts: Vec<String>,
    /// `isDefaultBackend=true`: the service takes every request no other route takes.
    pub default_backend: bool,
    /// `sslVerifyNone=true`: TLS to the servers, their certificates not checked.
    pub tls_skip_verify: bool,
}

/// Read DFP's routing options through `get` (a parameter, or `com.df.<option>`); each error
/// names its option.
pub fn routing(
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Routing, Vec<(&'static str, String)>> {
    let mut r = Routing::default();
    let mut errors = Vec::new();
    let boolean = |p: &'static str, errors: &mut Vec<(&'static str, String)>| match get(p) {
        None => false,
        Some(v) => parse_bool(&v).unwrap_or_else(|| {
            errors.push((p, format!("{v:?}: expected true or false")));
            false
        }),
    };
    if let Some(v) = get("serviceHeader") {
        for h in list(&v) {
            match h.split_once(':') {
                Some((n, val))
                    if http::HeaderName::from_bytes(n.trim().as_bytes()).is_ok()
                        && !val.contains('`')
                        && !val.trim().is_empty() =>
                {
                    r.parts
                        .push(format!("Header(`{}`, `{}`)", n.trim(), val.trim()))
                }
                _ => errors.push((
                    "serviceHeader",
                    format!("{h:?}: expected Name:value (e.g. X-Version:3)"),
                )),
            }
        }
    }
    if let Some(v) = get("servicePathExclude") {
        for p in list(&v) {
            if p.starts_with('/') && !p.contains('`') {
                r.parts.push(format!("!PathPrefix(`{p}`)"));
            } else {
                errors.push(("servicePathExclude", format!("{p:?}: a path starts with /")));
            }
        }
    }
    r.default_backend = boolean("isDefaultBackend", &mut errors);
    r.tls_skip_verify = boolean("sslVerifyNone", &mut errors);
    // Tether resolves a server's name when it connects (and `resolve` every few seconds):
    // nothing waits on a name at start.
    boolean("checkResolvers", &mut errors);
    for (p, table) in [("timeoutServer", "server"), ("timeoutTunnel", "tunnel")] {
        if get(p).is_some() {
            errors.push((
                p,
                format!("not offered per service: Tether's timeouts are set for every route ([timeouts] {table} in tether.toml)"),
            ));
        }
    }
    if errors.is_empty() {
        Ok(r)
    } else {
        Err(errors)
    }
}

/// Options of Docker Flow Proxy's that Tether accepts with nothing to do, and why.
const ACCEPTED: &[(&str, &str)] = &[
    ("skipCheck", "Tether adds no active check to a Docker Flow Proxy service (its passive health takes a failing server out)"),
    ("xForwardedProto", "Tether always sets X-Forwarded-Proto"),
];

/// Docker Flow Proxy's documented options that Tether does not honour, each with why.
const REFUSED: &[(&str, &str)] = &[
    ("aclName", "Tether orders routes by priority and by how specific their rules are, not by ACL name"),
    ("backendExtra", "it configures HAProxy itself (lines of its backend), which Tether is not"),
    ("connectionMode", "it configures HAProxy itself: Tether keeps client and server connections alive on its own"),
    ("templateFePath", "HAProxy templates configure HAProxy itself, which Tether is not"),
    ("templateBePath", "HAProxy templates configure HAProxy itself, which Tether is not"),
    ("consulTemplateFePath", "HAProxy templates configure HAProxy itself, which Tether is not"),
    ("consulTemplateBePath", "HAProxy templates configure HAProxy itself, which Tether is not"),
    ("denyHttp", "not offered: httpsOnly=true answers plain HTTP with a redirect to HTTPS"),
    ("httpsPort", "a second, TLS port of the service is not offered: declare it as a destination of its own (port.1 with sslVerifyNone)"),
    ("httpsRedirectCode", "Tether answers plain HTTP with 308 (httpsOnly=true), which keeps the method"),
    ("ignoreAuthorization", "not offered: users guards every request of the route"),
    ("redirectWhenHttpProto", "not offered: with [forwarded] trusted_proxies, a route's redirect_https reads X-Forwarded-Proto"),
    ("serviceCert", "give certificates with PUT /v1/docker-flow-proxy/cert (or the admin API), served by every replica"),
    ("serviceDomainAlgo", "serviceDomain matches whole hosts; write *.example.com for a domain's subdomains"),
    ("serviceDomainMatchAll", "serviceDomain matches whole hosts; write *.example.com for a domain's subdomains"),
    ("srcHttpsPort", "a second, TLS entry port is not offered: give srcPort of an indexed destination"),
    ("timeoutClient", "not offered per service: Tether's timeouts are set for every route ([timeouts] in tether.toml)"),
    ("userAgent", "Tether matches whole header values (serviceHeader), not a part of User-Agent"),
    ("verifyClientSsl", "client certificates are not offered"),
    ("addHeader", "the old name of addReqHeader: use addReqHeader"),
    ("setHeader", "the old name of setReqHeader: use setReqHeader"),
];

/// Why Docker Flow Proxy's option `p` is refused, when it is one of its documented options that
/// Tether does not honour.
pub fn refusal(p: &str) -> Option<&'static str> {
    let base = p
        .rsplit_once('.')
        .map_or(p, |(b, n)| if n.parse::<u32>().is_ok() { b } else { p });
    REFUSED
        .iter()
        .find(|(k, _)| *k == base)
        .map(|(_, why)| *why)
}

/// Is option `p` read in HTTP mode, accepted with nothing to do, or one of Docker Flow Swarm
/// Listener's that is ignored on purpose ([`dfsl`])?
pub fn reads_http(p: &str) -> bool {
    HTTP_PARAMS.contains(&p)
        || middlewares::PARAMS.contains(&p)
        || ACCEPTED.iter().any(|(k, _)| *k == p)
        || dfsl::ignored(p).is_some()
}

/// Why option `p` is not read in HTTP mode: its own reason, or the list of what is.
pub fn not_read(p: &str) -> String {
    match refusal(p) {
        Some(why) => format!("not supported: {why}"),
        None => format!(
            "unknown parameter; Tether reads {}, {} (docs/labels.md)",
            HTTP_PARAMS.join(", "),
            middlewares::PARAMS.join(", ")
        ),
    }
}

pub(crate) fn declare(c: &Container, cx: &Context<'_>) -> Translation {
    let params: std::collections::BTreeMap<String, String> = c
        .labels
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("com.df.")?.to_string(), v.clone())))
        .collect();
    let dests =
        destinations(&params).map_err(|(k, m)| vec![c.label_error(&format!("com.df.{k}"), m)])?;
    if let [(0, _)] = dests.as_slice() {
        return declare_one(c, cx);
    }
    // Several destinations: each the container as that destination sees it.
    let name = c
        .label("com.df.serviceName")
        .map_or(c.group.clone(), str::to_string);
    super::merged(dests.into_iter().map(|(index, options)| {
        let mut one = c.clone();
        one.labels.retain(|k, _| !k.starts_with("com.df."));
        for (k, v) in options {
            one.labels.insert(format!("com.df.{k}"), v);
        }
        one.labels
            .insert("com.df.serviceName".into(), destination_name(&name, index));
        // An error names the option as written (`com.df.port.1`).
        declare_one(&one, cx).map_err(|es| {
            es.into_iter()
                .map(|mut e| {
                    if let Some(f) = e.key.strip_prefix("com.df.") {
                        e.key = format!("com.df.{}", indexed_field(f, index));
                        e.value = c.labels.get(&e.key).cloned();
                    }
                    e
                })
                .collect()
        })
    }))
}

/// One destination's service and route.
fn declare_one(c: &Container, cx: &Context<'_>) -> Translation {
    let mut errors = Vec::new();
    let name = c
        .label("com.df.serviceName")
        .map_or(c.group.clone(), str::to_string);
    match c.label(REQ_MODE) {
        None => {}
        Some(m) if m.eq_ignore_ascii_case("http") => {}
        Some(m) => match tcp::Mode::of(m) {
            Some(mode) => return tcp(c, cx, &name, mode),
            None => return Err(vec![c.label_error(REQ_MODE, "expected http, tcp or sni")]),
        },
    }
    for key in c.labels.keys().filter(|k| k.starts_with("com.df.")) {
        let option = &key["com.df.".len()..];
        if !reads_http(option) {
            errors.push(c.label_error(key, not_read(option)));
        }
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
    let routing = match routing(&get) {
        Ok(r) => r,
        Err(es) => {
            for (p, m) in es {
                errors.push(c.label_error(&format!("com.df.{p}"), m));
            }
            Routing::default()
        }
    };
    if routing.default_backend {
        // Every request no other route takes, whatever its paths and domains.
        parts = vec!["PathPrefix(`/`)".to_string()];
    } else if parts.is_empty() {
        errors.push(c.label_error(
            PATH,
            "missing: give com.df.servicePath, com.df.serviceDomain or both",
        ));
    }
    parts.extend(routing.parts.iter().cloned());
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
    if routing.default_backend {
        rule.priority = 1;
    }
    if let Some(p) = src_port {
        match cx.http_entrypoint_on(p) {
            Ok(n) => rule.entrypoints = vec![n],
            Err(m) => errors.push(c.label_error(SRC_PORT, m)),
        }
    }
    let mut defined = Vec::new();
    for t in translated.tables {
        let mw_name = format!("{name}-{}", t.suffix);
        let key = format!("com.df.{}", t.param);
        match super::dialect_middleware(&mw_name, t.table) {
            Ok(d) => {
                rule.middlewares.push(d.name.clone());
                defined.push(d);
            }
            Err(ms) => errors.extend(ms.into_iter().map(|m| c.label_error(&key, m))),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let (Some(ip), Some(port)) = (ip, port) else {
        return Err(errors);
    };
    let mut srv = server(c, ip, port);
    if routing.tls_skip_verify {
        srv.tls = Some(crate::decl::ServerTls {
            server_name: ip.to_string(),
            ca_file: None,
            insecure_skip_verify: true,
        });
    }
    let mut svc = service(&name, srv);
    svc.affinity = affinity;
    Ok((vec![svc], vec![rule], defined, Vec::new()))
}

/// `com.df.srcPort`, when given.
fn src_port(c: &Container) -> Result<Option<u16>, super::LabelError> {
    c.label(SRC_PORT)
        .map(|v| parse_src_port(v).map_err(|m| c.label_error(SRC_PORT, m)))
        .transpose()
}

/// A `srcPort` value, as labels and reconfigure parameters give it.
pub fn parse_src_port(v: &str) -> Result<u16, String> {
    v.trim()
        .parse::<u16>()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| format!("{v:?}: not a port number (1..=65535)"))
}

/// `reqMode=tcp` or `sni`: the container's `port` behind Tether's entrypoint on `srcPort`
/// ([`tcp`]). What only HTTP has is refused by name.
fn tcp(c: &Container, cx: &Context<'_>, name: &str, mode: tcp::Mode) -> Translation {
    let mut errors = Vec::new();
    for key in c.labels.keys().filter(|k| k.starts_with("com.df.")) {
        if !mode.reads(&key["com.df.".len()..]) {
            errors.push(c.label_error(key, mode.refusal()));
        }
    }
    let paths = c.label(PATH).map(list).unwrap_or_default();
    let rule = mode
        .rule(c.label("com.df.pathType"), &paths)
        .map_err(|(p, m)| errors.push(c.label_error(&format!("com.df.{p}"), m)))
        .ok();
    let port = port(c, PORT, c.label(PORT), |k, m| c.label_error(k, m))
        .map_err(|e| errors.push(e))
        .ok();
    let entrypoint = match src_port(c) {
        Ok(Some(p)) => mode
            .entrypoint(cx, p)
            .map_err(|m| errors.push(c.label_error(SRC_PORT, m)))
            .ok(),
        Ok(None) => {
            errors.push(c.label_error(SRC_PORT, mode.src_port_missing()));
            None
        }
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let ip = address(c, cx, None).map_err(|e| errors.push(e)).ok();
    let (Some(ip), Some(port), Some(entrypoint), Some(rule_text), true) =
        (ip, port, entrypoint, rule, errors.is_empty())
    else {
        return Err(errors);
    };
    let mut svc = service(name, server(c, ip, port));
    svc.protocol = crate::decl::ServiceProtocol::Tcp {
        proxy_protocol: None,
    };
    let rule = match crate::rule::Rule::parse_tcp(&rule_text) {
        Ok(r) => r,
        Err(e) => return Err(vec![c.label_error(PATH, e.to_string())]),
    };
    let router = crate::decl::TcpRouteDecl {
        name: scoped(name),
        priority: rule_text.len() as i64,
        rule_text,
        rule: rule.into(),
        service: svc.name.clone(),
        entrypoints: vec![entrypoint],
        passthrough: mode == tcp::Mode::Sni,
    };
    Ok((vec![svc], Vec::new(), Vec::new(), vec![router]))
}
