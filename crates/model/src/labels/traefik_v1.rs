//! Traefik v1 labels, as in the Swarm stickiness seed:
//!
//! - `traefik.port`: the container's port;
//! - `traefik.frontend.rule`: `Host:a.com,b.com`, `PathPrefix:/api`, `Path:/x`, `Method:GET`,
//!   joined with `;` (all must match; a comma lists alternatives);
//! - `traefik.frontend.priority`, `traefik.backend` (the service name), `traefik.weight`;
//! - `traefik.backend.loadbalancer.stickiness=true` and `...stickiness.cookieName` (also the older
//!   `traefik.backend.loadbalancer.sticky=true`); `traefik.backend.loadbalancer.method` `wrr` or
//!   `drr` (read as least requests);
//! - `traefik.docker.network` (or `traefik.swarm.network`), `traefik.enable`;
//! - `traefik.protocol=https` (TLS to the container), `traefik.backend.healthcheck.path`,
//!   `.interval`, `.timeout` (Tether's health check), `traefik.frontend.passHostHeader=true`;
//!   any other `traefik.*` label is refused, naming it;
//! - `traefik.frontend.entryPoints=http,https`: Tether's entrypoints of those names, or its plain
//!   and its TLS entrypoint for `http` and `https` ([`Context::entrypoint`]);
//! - `traefik.frontend.redirect.entryPoint=https`: plain HTTP is redirected to that (TLS)
//!   entrypoint, 307 or, with `traefik.frontend.redirect.permanent=true`, 308 (Traefik v1 sent
//!   302 and 301, which let clients turn a POST into a GET);
//!   `traefik.frontend.headers.SSLRedirect` / `SSLTemporaryRedirect` likewise;
//! - `traefik.frontend.headers.STSSeconds`, `STSIncludeSubdomains`, `STSPreload`: HSTS;
//! - basic auth, the allow list, redirects by regex, header rules and the rule's path modifiers
//!   (`PathPrefixStrip:/api`, `AddPrefix:`, `ReplacePath:`, `ReplacePathRegex:`) as middlewares,
//!   see [`middlewares`].
//!
//! Segments (`traefik.<segment>.port`, `.protocol`, `.weight`, `.backend`, `.frontend.*`): each
//! segment is a route and a service of its own, `<group>-<segment>` (or its `backend`), reading
//! the container's other labels as defaults; an error names the segment's label.
//!
//! Unlike Traefik v1, whose cookie holds `http://10.0.0.5:8000`, the sticky cookie is sealed: it
//! names the server without revealing its address and cannot be forged to reach another one.

mod middlewares;

use middlewares::Modifier;

use super::traefik::https::{middleware, Fields};
use super::traefik::{health_labels, label_ci, network_label};
use super::{
    address, any_of, list, lit, parse_bool, port, route, scoped, server, service, Container,
    Context, LabelError, Translation,
};
use crate::decl::{
    AffinityMode, AffinityPolicy, BalanceAlgo, CookieAttrs, HttpsRedirect, OnMissing, RouteDecl,
};
use crate::validate::{is_cookie_name, MAX_WEIGHT};

const RULE: &str = "traefik.frontend.rule";

/// Does the container use v1 labels (rather than v2 defaults)?
pub(crate) fn applies(c: &Container) -> bool {
    c.labels.keys().any(|k| {
        let k = k.to_ascii_lowercase();
        k == "traefik.port"
            || k == "traefik.weight"
            || k == "traefik.backend"
            || k.starts_with("traefik.frontend.")
            || k.starts_with("traefik.backend.")
            || segment_of(&k).is_some()
    })
}

/// The second parts of `traefik.*` keys that are not a segment's name.
const NOT_SEGMENTS: &[&str] = &[
    "frontend", "backend", "docker", "swarm", "enable", "tags", "port", "weight", "protocol",
    "http", "tcp", "udp", "tls",
];

/// `traefik.<segment>.<field>` (lower case): the segment and the field, when `key` is a
/// segment's label (`port`, `protocol`, `weight`, `backend` or `frontend.*`).
fn segment_of(key: &str) -> Option<(&str, &str)> {
    let (segment, field) = key.strip_prefix("traefik.")?.split_once('.')?;
    let field_ok = matches!(field, "port" | "protocol" | "weight" | "backend")
        || field.starts_with("frontend.");
    (field_ok && !segment.is_empty() && !NOT_SEGMENTS.contains(&segment))
        .then_some((segment, field))
}

pub(crate) fn declare(c: &Container, cx: &Context<'_>) -> Translation {
    // Each segment's labels, by segment (as written): (original key, field).
    let mut segments: std::collections::BTreeMap<String, Vec<(String, String)>> =
        Default::default();
    for key in c.labels.keys() {
        let lower = key.to_ascii_lowercase();
        if let Some((_, field)) = segment_of(&lower) {
            let written = &key["traefik.".len()..key.len() - field.len() - 1];
            segments
                .entry(written.to_string())
                .or_default()
                .push((key.clone(), key[key.len() - field.len()..].to_string()));
        }
    }
    if segments.is_empty() {
        return declare_one(c, cx);
    }
    super::merged(segments.into_iter().map(|(segment, labels)| {
        // The container as this segment sees it: its labels as the container's own.
        let mut one = c.clone();
        one.labels
            .retain(|k, _| segment_of(&k.to_ascii_lowercase()).is_none());
        let mut written = std::collections::HashMap::new();
        for (key, field) in labels {
            let plain = format!("traefik.{field}");
            // The container-wide label of the same name gives way to the segment's.
            one.labels.retain(|k, _| !k.eq_ignore_ascii_case(&plain));
            one.labels.insert(plain.clone(), c.labels[&key].clone());
            written.insert(plain, key);
        }
        one.group = format!("{}-{segment}", c.group);
        // An error names the segment's own label.
        declare_one(&one, cx).map_err(|es| {
            es.into_iter()
                .map(|mut e| {
                    if let Some(k) = written.get(&e.key) {
                        e.key = k.clone();
                    }
                    e
                })
                .collect()
        })
    }))
}

/// The labels Tether reads (lower case); the `traefik.*` others are refused.
const KNOWN: &[&str] = &[
    "traefik.enable",
    "traefik.port",
    "traefik.weight",
    "traefik.protocol",
    "traefik.backend",
    "traefik.docker.network",
    "traefik.swarm.network",
    "traefik.backend.loadbalancer.method",
    "traefik.backend.loadbalancer.stickiness",
    "traefik.backend.loadbalancer.sticky",
    "traefik.backend.loadbalancer.stickiness.cookiename",
    "traefik.backend.healthcheck.path",
    "traefik.backend.healthcheck.interval",
    "traefik.backend.healthcheck.timeout",
    "traefik.frontend.rule",
    "traefik.frontend.priority",
    "traefik.frontend.passhostheader",
    "traefik.frontend.entrypoints",
    "traefik.frontend.redirect.entrypoint",
    "traefik.frontend.redirect.permanent",
    "traefik.frontend.redirect.regex",
    "traefik.frontend.redirect.replacement",
    "traefik.frontend.headers.stsseconds",
    "traefik.frontend.headers.stsincludesubdomains",
    "traefik.frontend.headers.stspreload",
    "traefik.frontend.headers.forcestsheader",
    "traefik.frontend.headers.sslredirect",
    "traefik.frontend.headers.ssltemporaryredirect",
    "traefik.frontend.headers.customrequestheaders",
    "traefik.frontend.headers.customresponseheaders",
    "traefik.frontend.headers.framedeny",
    "traefik.frontend.headers.contenttypenosniff",
    "traefik.frontend.headers.browserxssfilter",
    "traefik.frontend.headers.referrerpolicy",
    "traefik.frontend.headers.contentsecuritypolicy",
    "traefik.frontend.headers.customframeoptionsvalue",
    "traefik.frontend.auth.basic",
    "traefik.frontend.auth.basic.users",
    "traefik.frontend.auth.basic.usersfile",
    "traefik.frontend.auth.basic.removeheader",
    "traefik.frontend.whitelist.sourcerange",
    "traefik.frontend.whitelistsourcerange",
    "traefik.frontend.whitelist.usexforwardedfor",
];

/// Labels Tether cannot honour, each refused with why.
fn unsupported(c: &Container) -> Vec<LabelError> {
    let mut errors = Vec::new();
    for key in c.labels.keys() {
        let lower = key.to_ascii_lowercase();
        if !lower.starts_with("traefik.")
            || KNOWN.contains(&lower.as_str())
            // Read (and its unknown options refused) with the middlewares.
            || lower.starts_with("traefik.frontend.ratelimit.")
        {
            continue;
        }
        let message = if lower == "traefik.tags" {
            "not supported: Tether picks containers with --docker-constraint LABEL=VALUE"
                .to_string()
        } else if lower.starts_with("traefik.backend.healthcheck.") {
            "not supported: Tether's health checks GET the path on the server's own port and address (it reads healthcheck.path, .interval and .timeout)".to_string()
        } else {
            "not supported: Tether reads traefik.port, .weight, .protocol, .backend, .frontend.rule, .priority, .entryPoints, .redirect.*, .auth.basic.*, .whiteList.*, .rateLimit.*, .headers (customRequestHeaders, customResponseHeaders, frameDeny, contentTypeNosniff, browserXSSFilter, referrerPolicy, contentSecurityPolicy, customFrameOptionsValue, SSLRedirect, STS*), .backend.loadbalancer.* and .backend.healthcheck.*".to_string()
        };
        errors.push(c.label_error(key, message));
    }
    if let Some((k, v)) = label_ci(c, "traefik.frontend.passHostHeader") {
        if parse_bool(v) != Some(true) {
            errors.push(c.label_error(
                k,
                "Tether always passes the client's Host header to the server (true only)",
            ));
        }
    }
    errors
}

/// `traefik.backend.healthcheck.path` (and `.interval`, `.timeout`): Tether's health check.
fn health_check(c: &Container) -> Result<Option<crate::decl::HealthCheck>, Vec<LabelError>> {
    let get = |f: &str| label_ci(c, &format!("traefik.backend.healthcheck.{f}"));
    health_labels(
        c,
        "traefik.backend.healthcheck.path",
        get("path"),
        get("interval"),
        get("timeout"),
    )
}

/// One container's (or one segment's) route and service.
fn declare_one(c: &Container, cx: &Context<'_>) -> Translation {
    let mut errors = unsupported(c);
    let health = health_check(c).map_err(|e| errors.extend(e)).ok().flatten();
    let tls = match label_ci(c, "traefik.protocol") {
        None => false,
        Some((_, v)) if v.eq_ignore_ascii_case("http") => false,
        Some((_, v)) if v.eq_ignore_ascii_case("https") => true,
        Some((k, _)) => {
            errors.push(c.label_error(k, "expected http or https"));
            false
        }
    };
    let name = label_ci(c, "traefik.backend").map_or(c.group.clone(), |(_, v)| v.to_string());
    let ip = address(c, cx, network_label(c))
        .map_err(|e| errors.push(e))
        .ok();
    let port_label = label_ci(c, "traefik.port");
    let port = port(
        c,
        port_label.map_or("traefik.port", |p| p.0),
        port_label.map(|p| p.1),
        |k, m| c.label_error(k, m),
    )
    .map_err(|e| errors.push(e))
    .ok();
    let mut weight = 1;
    if let Some((k, v)) = label_ci(c, "traefik.weight") {
        match v.trim().parse::<u32>() {
            Ok(w) if w <= MAX_WEIGHT => weight = w,
            _ => errors.push(c.label_error(k, format!("not a weight (0..={MAX_WEIGHT})"))),
        }
    }
    let balance = match label_ci(c, "traefik.backend.loadbalancer.method") {
        None => BalanceAlgo::RoundRobin,
        Some((_, v)) if v.eq_ignore_ascii_case("wrr") => BalanceAlgo::RoundRobin,
        Some((_, v)) if v.eq_ignore_ascii_case("drr") => BalanceAlgo::LeastRequests,
        Some((k, _)) => {
            errors.push(c.label_error(k, "expected wrr or drr"));
            BalanceAlgo::RoundRobin
        }
    };
    let mut sticky = false;
    for key in [
        "traefik.backend.loadbalancer.stickiness",
        "traefik.backend.loadbalancer.sticky",
    ] {
        if let Some((k, v)) = label_ci(c, key) {
            match parse_bool(v) {
                Some(on) => sticky |= on,
                None => errors.push(c.label_error(k, "expected true or false")),
            }
        }
    }
    let mut attrs = CookieAttrs::for_service(&scoped(&name));
    if let Some((k, v)) = label_ci(c, "traefik.backend.loadbalancer.stickiness.cookieName") {
        sticky = true;
        if is_cookie_name(v) {
            attrs.name = v.to_string();
        } else {
            errors.push(c.label_error(k, "not a cookie name"));
        }
    }
    let (rule_text, modifiers) = match label_ci(c, RULE) {
        Some((k, v)) => match translate_rule(v) {
            Ok(r) => r,
            Err(m) => {
                errors.push(c.label_error(k, m));
                (String::new(), Vec::new())
            }
        },
        None => (format!("Host({})", lit(&name)), Vec::new()),
    };
    let secrets = cx
        .secrets_dir
        .unwrap_or(std::path::Path::new(super::certs::SECRETS_DIR));
    let rule_key = label_ci(c, RULE).map_or(RULE, |l| l.0);
    let defined = middlewares::declare(c, &name, &modifiers, rule_key, secrets)
        .map_err(|e| errors.extend(e))
        .unwrap_or_default();
    let mut routes = Vec::new();
    if !rule_text.is_empty() {
        match route(&name, rule_text, &name) {
            Ok(mut r) => {
                if let Some((k, v)) = label_ci(c, "traefik.frontend.priority") {
                    match v.trim().parse::<i64>() {
                        Ok(p) => r.priority = p,
                        Err(_) => errors.push(c.label_error(k, "not an integer")),
                    }
                }
                errors.extend(https(c, cx, &mut r));
                r.middlewares = defined.iter().map(|m| m.name.clone()).collect();
                routes.push(r);
            }
            Err(m) => errors.push(c.label_error(label_ci(c, RULE).map_or(RULE, |l| l.0), m)),
        }
    }
    let (Some(ip), Some(port), true) = (ip, port, errors.is_empty()) else {
        return Err(errors);
    };
    let mut srv = server(c, ip, port);
    srv.weight = weight;
    // `traefik.protocol=https`: TLS to the container, checked against the system's roots for
    // its address, as Traefik v1 did by default.
    srv.tls = tls.then(|| crate::decl::ServerTls {
        server_name: ip.to_string(),
        ca_file: None,
        insecure_skip_verify: false,
    });
    let mut svc = service(&name, srv);
    svc.balance = balance;
    svc.health = health;
    svc.affinity = sticky.then_some(AffinityPolicy {
        mode: AffinityMode::Cookie(attrs),
        nocache: false,
        on_missing: OnMissing::Rebalance,
    });
    Ok((vec![svc], routes, defined, Vec::new()))
}

/// The frontend's entrypoints, redirect and HSTS, given to route `r`.
fn https(c: &Container, cx: &Context<'_>, r: &mut RouteDecl) -> Vec<LabelError> {
    let mut errors = Vec::new();
    if let Some((k, v)) = label_ci(c, "traefik.frontend.entryPoints") {
        for name in list(v) {
            match cx.entrypoint(&name) {
                Ok(e) => r.entrypoints.push(e),
                Err(m) => errors.push(c.label_error(k, m)),
            }
        }
    }
    let permanent = match label_ci(c, "traefik.frontend.redirect.permanent") {
        None => false,
        Some((k, v)) => parse_bool(v).unwrap_or_else(|| {
            errors.push(c.label_error(k, "expected true or false"));
            false
        }),
    };
    if let Some((k, v)) = label_ci(c, "traefik.frontend.redirect.entryPoint") {
        match cx.entrypoint(v.trim()) {
            Ok(e) if cx.tls_entrypoints.contains(&e) => {
                r.redirect_https = Some(HttpsRedirect {
                    permanent,
                    port: None,
                    entrypoint: Some(e),
                })
            }
            Ok(e) => errors.push(c.label_error(
                k,
                format!("{e} does not terminate TLS: Tether redirects plain HTTP to a TLS entrypoint only"),
            )),
            Err(m) => errors.push(c.label_error(k, m)),
        }
    }
    // The headers options, in the words of Traefik v2's middlewares.
    let mut fields = Fields::new();
    for (v1, v2) in [
        ("STSSeconds", "headers.stsseconds"),
        ("STSIncludeSubdomains", "headers.stsincludesubdomains"),
        ("STSPreload", "headers.stspreload"),
        ("forceSTSHeader", "headers.forcestsheader"),
    ] {
        if let Some(kv) = label_ci(c, &format!("traefik.frontend.headers.{v1}")) {
            fields.insert(v2.to_string(), kv);
        }
    }
    for (v1, permanent) in [("SSLRedirect", "true"), ("SSLTemporaryRedirect", "false")] {
        if let Some((k, v)) = label_ci(c, &format!("traefik.frontend.headers.{v1}")) {
            match parse_bool(v) {
                Some(true) => {
                    fields.insert("redirectscheme.scheme".into(), (k, "https"));
                    fields.insert("redirectscheme.permanent".into(), (k, permanent));
                }
                Some(false) => {}
                None => errors.push(c.label_error(k, "expected true or false")),
            }
        }
    }
    errors.extend(middleware(c, "frontend", &fields, r));
    errors
}

/// `Host:a.com,b.com;PathPrefix:/api` → ``Host(`a.com`) || ... && PathPrefix(`/api`)``, and
/// the path modifiers (`PathPrefixStrip:/api` matches as `PathPrefix` and strips it).
pub fn translate_rule(v1: &str) -> Result<(String, Vec<Modifier>), String> {
    let mut all = Vec::new();
    let mut modifiers = Vec::new();
    for part in v1.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (matcher, values) = part
            .split_once(':')
            .ok_or_else(|| format!("{part:?}: expected Matcher:value, e.g. PathPrefix:/"))?;
        let values: Vec<&str> = values
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        if values.is_empty() {
            return Err(format!("{part:?}: no value after {matcher}:"));
        }
        let owned = || values.iter().map(|v| v.to_string()).collect::<Vec<_>>();
        let name = match matcher.trim().to_ascii_lowercase().as_str() {
            "host" => "Host",
            "path" => "Path",
            "pathprefix" => "PathPrefix",
            "method" => "Method",
            "pathprefixstrip" => {
                modifiers.push(Modifier::StripPrefix(owned()));
                "PathPrefix"
            }
            "pathstrip" => {
                modifiers.push(Modifier::StripPrefix(owned()));
                "Path"
            }
            "addprefix" => {
                modifiers.push(Modifier::AddPrefix(values[0].to_string()));
                continue;
            }
            "replacepath" => {
                modifiers.push(Modifier::ReplacePath(values[0].to_string()));
                continue;
            }
            "replacepathregex" => {
                let (re, with) = values[0]
                    .split_once(' ')
                    .ok_or_else(|| format!("{part:?}: expected ReplacePathRegex:REGEX REPLACEMENT"))?;
                modifiers.push(Modifier::ReplacePathRegex(re.trim().into(), with.trim().into()));
                continue;
            }
            other @ ("pathprefixstripregex" | "pathstripregex") => {
                return Err(format!(
                    "matcher {other:?} is not supported: its path templates are gorilla/mux's; use PathPrefixStrip, or Traefik v2's stripprefixregex"
                ))
            }
            other => {
                return Err(format!(
                    "matcher {other:?} is not supported: use Host, Path, PathPrefix, Method, PathPrefixStrip, PathStrip, AddPrefix, ReplacePath or ReplacePathRegex"
                ))
            }
        };
        all.push(any_of(name, &values));
    }
    if all.is_empty() {
        return Err("no matcher: a rule needs Host, Path, PathPrefix or Method".into());
    }
    // Matching first, then what the modifiers do, in their order.
    Ok((all.join(" && "), modifiers))
}
