//! Tether's own labels: the configuration file flattened into dotted keys.
//!
//! | label | file key |
//! |---|---|
//! | `tether.http.routers.<r>.<field>` | `routes.<r>.<field>` (rule, service, priority, entrypoints) |
//! | `tether.http.services.<s>.<field>` | `services.<s>.<field>` (balance, hash_on, affinity.*) |
//! | `tether.http.services.<s>.port` | the container's port for this service |
//! | `tether.http.services.<s>.weight` | this container's weight in the service |
//! | `tether.http.services.<s>.backup` | `true`: this container is a backup server of the service |
//! | `tether.http.services.<s>.scheme` | `https`: TLS to the container (`.tls.*` as the file's `tls`) |
//! | `tether.http.middlewares.<m>.<type>.<field>` | `middlewares.<m>.<type>.<field>` (lists comma-separated) |
//! | `tether.http.routers.<r>.middlewares` | `routes.<r>.middlewares`: `a,b,auth@file`, run in order |
//! | `tether.http.routers.<r>.tls.resolver` | `routes.<r>.tls.resolver`: the ACME resolver that orders its certificate |
//! | `tether.http.routers.<r>.tls.domains[n].main`, `.sans` | `routes.<r>.tls.domains`: the names to order (sans comma-separated) |
//! | `tether.docker.network` | the network to reach the container on |
//! | `tether.enable` | `false` leaves the container out |
//! | `tether.tls.secret` | a certificate and key from a Docker secret of Tether's ([`super::certs`]) |
//! | `tether.tcp.routers.<r>.<field>` | `tcp.routers.<r>.<field>` (rule, service, priority, entrypoints, tls.passthrough) |
//! | `tether.tcp.services.<s>.<field>` | `tcp.services.<s>.<field>` (balance, hash_on, health.*, proxy_protocol) |
//! | `tether.tcp.services.<s>.port` | the container's port for this TCP service (`.weight` and `.backup` as for HTTP) |
//!
//! The labels are rendered as a TOML document of dotted keys, one label per line, and parsed by
//! the very code that reads `tether.toml`: every option of the file is a label, with the same
//! checks. Errors found on a line are reported against that line's label.

use std::collections::{BTreeMap, BTreeSet};

use super::acme::DomainLabels;
use super::{address, port, scoped, Container, Context, LabelError, Source, Translation};
use crate::file_config::{self, ConfigError};
use crate::validate::MAX_WEIGHT;

const ROUTERS: &str = "tether.http.routers.";
const SERVICES: &str = "tether.http.services.";
const MIDDLEWARES: &str = "tether.http.middlewares.";
const TCP_ROUTERS: &str = "tether.tcp.routers.";
const TCP_SERVICES: &str = "tether.tcp.services.";
const NETWORK: &str = "tether.docker.network";
const ENABLE: &str = "tether.enable";

/// The TOML document under construction, remembering which label each line came from.
struct Doc {
    text: String,
    /// Label key of each line (1-based line n is `origin[n - 1]`); `None` for generated lines.
    origin: Vec<Option<String>>,
}

impl Doc {
    fn line(&mut self, line: String, label: Option<&str>) {
        self.text.push_str(&line);
        self.text.push('\n');
        self.origin.push(label.map(str::to_string));
    }
}

/// A service's port, weight, scheme and backup labels: they describe the container as its server.
#[derive(Debug, Default)]
struct ServerLabels<'a> {
    port: Option<&'a str>,
    weight: Option<&'a str>,
    /// HTTP only.
    scheme: Option<&'a str>,
    backup: Option<&'a str>,
}

impl<'a> ServerLabels<'a> {
    /// Keep the value of the server label `field` (`port`, `weight`, `scheme` or `backup`).
    fn set(&mut self, field: &str, value: &'a str) {
        let slot = match field {
            "port" => &mut self.port,
            "weight" => &mut self.weight,
            "scheme" => &mut self.scheme,
            _ => &mut self.backup,
        };
        *slot = Some(value);
    }
}

/// The container as a service's server, read from its [`ServerLabels`].
struct Served {
    port: u16,
    weight: u32,
    backup: bool,
}

pub(crate) fn declare(c: &Container, cx: &Context<'_>) -> Translation {
    let mut errors = Vec::new();
    let mut doc = Doc {
        text: String::new(),
        origin: Vec::new(),
    };
    for ep in cx.entrypoints {
        // Each entrypoint of its kind, so that a TCP router's placement is checked here.
        let kind = if cx.tcp_entrypoints.contains(ep) {
            ", protocol = \"tcp\""
        } else if cx.tls_entrypoints.contains(ep) {
            ", tls = true"
        } else {
            ""
        };
        doc.line(
            format!(
                "entrypoints.{} = {{ address = \"127.0.0.1:1\"{kind} }}",
                quote(ep)
            ),
            None,
        );
    }
    let mut services: BTreeMap<String, ServerLabels<'_>> = BTreeMap::new();
    let mut routers: BTreeMap<String, bool> = BTreeMap::new();
    let mut tcp_services: BTreeMap<String, ServerLabels<'_>> = BTreeMap::new();
    let mut tcp_routers: BTreeMap<String, bool> = BTreeMap::new();
    let mut domains: BTreeMap<&str, DomainLabels<'_>> = BTreeMap::new();
    for (key, value) in &c.labels {
        // tether.tls.*: the certificate, read by `certs`.
        if !key.starts_with("tether.")
            || key == ENABLE
            || key == NETWORK
            || key.starts_with("tether.tls.")
        {
            continue;
        }
        if let Some(rest) = key.strip_prefix(TCP_ROUTERS) {
            match rest.split_once('.') {
                Some((name, field)) => {
                    let has_service = tcp_routers.entry(name.to_string()).or_default();
                    *has_service |= field == "service";
                    doc.line(
                        format!(
                            "tcp.routers.{}.{} = {}",
                            quote(name),
                            path(field),
                            literal(field, value)
                        ),
                        Some(key),
                    );
                }
                None => {
                    errors.push(c.label_error(key, "expected tether.tcp.routers.<name>.<field>"))
                }
            }
        } else if let Some(rest) = key.strip_prefix(TCP_SERVICES) {
            match rest.split_once('.') {
                Some((name, field @ ("port" | "weight" | "backup"))) => tcp_services
                    .entry(name.into())
                    .or_default()
                    .set(field, value),
                Some((_, "servers" | "address")) => errors.push(c.label_error(
                    key,
                    "servers are the containers themselves; set port (weight, backup) instead",
                )),
                Some((name, field)) => {
                    tcp_services.entry(name.into()).or_default();
                    doc.line(
                        format!(
                            "tcp.services.{}.{} = {}",
                            quote(name),
                            path(field),
                            literal(field, value)
                        ),
                        Some(key),
                    );
                }
                None => {
                    errors.push(c.label_error(key, "expected tether.tcp.services.<name>.<field>"))
                }
            }
        } else if let Some(rest) = key.strip_prefix(ROUTERS) {
            // `tls.domains[n].main` / `.sans`: an array of tables, written whole below.
            if let Some((name, field)) = rest.split_once('.') {
                if let Some(r) = domains.entry(name).or_default().take(field, key, value) {
                    if let Err(m) = r {
                        errors.push(c.label_error(key, m));
                    }
                    continue;
                }
            }
            match rest.split_once('.') {
                Some((name, field)) => {
                    let has_service = routers.entry(name.to_string()).or_default();
                    *has_service |= field == "service";
                    doc.line(
                        format!(
                            "routes.{}.{} = {}",
                            quote(name),
                            path(field),
                            literal(field, value)
                        ),
                        Some(key),
                    );
                }
                None => {
                    errors.push(c.label_error(key, "expected tether.http.routers.<name>.<field>"))
                }
            }
        } else if let Some(rest) = key.strip_prefix(SERVICES) {
            match rest.split_once('.') {
                Some((name, field @ ("port" | "weight" | "scheme" | "backup"))) => {
                    services.entry(name.into()).or_default().set(field, value)
                }
                Some((_, "servers" | "url" | "resolve")) => errors.push(c.label_error(
                    key,
                    "servers are the containers themselves; set port (weight, backup) instead",
                )),
                Some((name, field)) => {
                    services.entry(name.into()).or_default();
                    doc.line(
                        format!(
                            "services.{}.{} = {}",
                            quote(name),
                            path(field),
                            literal(field, value)
                        ),
                        Some(key),
                    );
                }
                None => {
                    errors.push(c.label_error(key, "expected tether.http.services.<name>.<field>"))
                }
            }
        } else if let Some(rest) = key.strip_prefix(MIDDLEWARES) {
            match rest.split_once('.') {
                Some((name, field)) if field.contains('.') => doc.line(
                    format!(
                        "middlewares.{}.{} = {}",
                        quote(name),
                        path(field),
                        middleware_literal(field, value)
                    ),
                    Some(key),
                ),
                _ => errors.push(c.label_error(
                    key,
                    "expected tether.http.middlewares.<name>.<type>.<field>",
                )),
            }
        } else {
            errors.push(c.label_error(
                key,
                "unknown label: expected tether.enable, tether.docker.network, tether.http.routers.<name>.<field>, tether.http.services.<name>.<field>, tether.http.middlewares.<name>.<type>.<field>, tether.tcp.routers.<name>.<field> or tether.tcp.services.<name>.<field>",
            ));
        }
    }
    for (router, d) in &domains {
        let (Some(first), false) = (d.first_key(), d.is_empty()) else {
            continue;
        };
        match d.domains() {
            Ok(list) => {
                let items: Vec<String> = list
                    .iter()
                    .map(|d| {
                        format!(
                            "{{ main = {}, sans = {} }}",
                            quote(&d.main),
                            array(d.sans.clone())
                        )
                    })
                    .collect();
                doc.line(
                    format!(
                        "routes.{}.tls.domains = [{}]",
                        quote(router),
                        items.join(", ")
                    ),
                    Some(first),
                );
            }
            Err((k, m)) => errors.push(c.label_error(k, m)),
        }
    }
    let tcp_only = services.is_empty() && !(tcp_services.is_empty() && tcp_routers.is_empty());
    if services.is_empty() && !tcp_only {
        services.insert(c.group.clone(), ServerLabels::default());
    }
    if tcp_services.is_empty() && !tcp_routers.is_empty() {
        tcp_services.insert(c.group.clone(), ServerLabels::default());
    }
    let network = c.labels.get(NETWORK).map(|v| (NETWORK, v.as_str()));
    let ip = address(c, cx, network).map_err(|e| errors.push(e)).ok();
    for (name, labels) in &tcp_services {
        let server = served(c, TCP_SERVICES, name, labels, &mut errors);
        if let (
            Some(ip),
            Some(Served {
                port,
                weight,
                backup,
            }),
        ) = (ip, server)
        {
            let address = toml::Value::String(std::net::SocketAddr::new(ip, port).to_string());
            let server_name = toml::Value::String(c.name.clone());
            doc.line(
                format!("tcp.services.{}.servers = [{{ address = {address}, name = {server_name}, weight = {weight}, backup = {backup} }}]", quote(name)),
                None,
            );
        }
    }
    for (router, has_service) in &tcp_routers {
        if *has_service {
            continue;
        }
        if tcp_services.len() == 1 {
            let only = toml::Value::String(tcp_services.keys().next().cloned().unwrap_or_default());
            doc.line(
                format!("tcp.routers.{}.service = {only}", quote(router)),
                None,
            );
        } else {
            errors.push(c.label_error(
                &format!("{TCP_ROUTERS}{router}.service"),
                format!(
                    "missing: the container declares several TCP services ({}), so name one",
                    tcp_services.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    for (name, labels) in &services {
        let server = served(c, SERVICES, name, labels, &mut errors);
        let scheme = match labels.scheme.map(|s| s.trim().to_ascii_lowercase()) {
            None => Some("http"),
            Some(s) if s == "http" => Some("http"),
            Some(s) if s == "https" => Some("https"),
            Some(_) => {
                errors.push(c.label_error(
                    &format!("{SERVICES}{name}.scheme"),
                    "expected http or https (TLS to the container, checked as tls.* say)",
                ));
                None
            }
        };
        if let (
            Some(ip),
            Some(Served {
                port,
                weight,
                backup,
            }),
            Some(scheme),
        ) = (ip, server, scheme)
        {
            let url = toml::Value::String(format!(
                "{scheme}://{}",
                std::net::SocketAddr::new(ip, port)
            ));
            let server_name = toml::Value::String(c.name.clone());
            doc.line(
                format!("services.{}.servers = [{{ url = {url}, name = {server_name}, weight = {weight}, backup = {backup} }}]", quote(name)),
                None,
            );
        }
    }
    if routers.is_empty() && !tcp_only {
        // No router: each service answers on its own name as host (as Traefik's default rule).
        for name in services.keys() {
            let rule = toml::Value::String(format!("Host(`{name}`)"));
            doc.line(format!("routes.{}.rule = {rule}", quote(name)), None);
            routers.insert(name.clone(), false);
        }
    }
    for (router, has_service) in &routers {
        if *has_service {
            continue;
        }
        if services.len() == 1 {
            let only = toml::Value::String(services.keys().next().cloned().unwrap_or_default());
            doc.line(format!("routes.{}.service = {only}", quote(router)), None);
        } else {
            errors.push(c.label_error(
                &format!("{ROUTERS}{router}.service"),
                format!(
                    "missing: the container declares several services ({}), so name one",
                    services.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let source = file_config::Source {
        provider: "docker",
        origin: crate::middleware::Origin::Untrusted,
        services_here: true,
    };
    match file_config::parse_as(&doc.text, source) {
        Ok(cfg) => {
            let mut services = cfg.services;
            let mut routes = cfg.routes;
            for s in &mut services {
                s.name = scoped(&s.name);
            }
            for r in &mut routes {
                r.name = scoped(&r.name);
                r.service = scoped(&r.service);
            }
            let mut tcp_routes = cfg.tcp_routes;
            for r in &mut tcp_routes {
                r.name = scoped(&r.name);
                r.service = scoped(&r.service);
            }
            Ok((services, routes, cfg.middlewares, tcp_routes))
        }
        Err(errs) => Err(errs.0.iter().map(|e| located(c, &doc, e)).collect()),
    }
}

/// A service's server: the container's port for it (`<prefix><name>.port`, or its one exposed
/// port), its weight and whether it is a backup; `None` after recording what is wrong.
fn served(
    c: &Container,
    prefix: &str,
    name: &str,
    labels: &ServerLabels<'_>,
    errors: &mut Vec<LabelError>,
) -> Option<Served> {
    let port_key = format!("{prefix}{name}.port");
    let weight_key = format!("{prefix}{name}.weight");
    let port = port(c, &port_key, labels.port, |k, m| c.label_error(k, m))
        .map_err(|e| errors.push(e))
        .ok();
    let backup = match labels.backup {
        None => Some(false),
        Some(b) => super::parse_bool(b).or_else(|| {
            errors.push(c.label_error(
                &format!("{prefix}{name}.backup"),
                "expected true or false (true: a backup server, taking requests only while no other server of the service can)",
            ));
            None
        }),
    };
    let weight = match labels.weight {
        None => Some(1),
        Some(w) => w
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|&w| w <= MAX_WEIGHT)
            .or_else(|| {
                errors.push(c.label_error(&weight_key, format!("not a weight (0..={MAX_WEIGHT})")));
                None
            }),
    };
    Some(Served {
        port: port?,
        weight: weight?,
        backup: backup?,
    })
}

/// A file error told in terms of the label it came from.
fn located(c: &Container, doc: &Doc, e: &ConfigError) -> LabelError {
    let origin = e
        .line
        .and_then(|l| doc.origin.get(l.wrapping_sub(1)))
        .cloned()
        .flatten();
    let key = origin.unwrap_or_else(|| {
        if let Some(f) = e.field.strip_prefix("tcp.") {
            return format!("tether.tcp.{f}");
        }
        e.field
            .replacen("routes.", ROUTERS, 1)
            .replacen("services.", SERVICES, 1)
    });
    LabelError {
        container: c.name.clone(),
        kind: c.kind,
        origin: Source::Label,
        value: c.labels.get(&key).cloned(),
        key,
        message: e.message.clone(),
    }
}

/// A TOML key segment, quoted so that any label text stays one segment.
fn quote(segment: &str) -> String {
    toml::Value::String(segment.to_string()).to_string()
}

/// A dotted field path (`affinity.mode`), each segment quoted.
fn path(field: &str) -> String {
    field.split('.').map(quote).collect::<Vec<_>>().join(".")
}

/// A label value as the TOML type its field expects; left a string when it is not one, so the
/// file parser reports the type error against this label.
fn literal(field: &str, value: &str) -> String {
    let leaf = field.rsplit('.').next().unwrap_or(field);
    let v = value.trim();
    match leaf {
        "priority" | "rise" | "fall" | "port" | "wait_queue" if v.parse::<i64>().is_ok() => {
            v.to_string()
        }
        "nocache"
        | "secure"
        | "http_only"
        | "redirect_https"
        | "hsts"
        | "include_subdomains"
        | "preload"
        | "passthrough"
        | "insecure_skip_verify" => match super::parse_bool(v) {
            Some(b) => b.to_string(),
            None => toml::Value::String(value.to_string()).to_string(),
        },
        "entrypoints" => {
            let items: BTreeSet<String> = super::list(v).into_iter().collect();
            toml::Value::Array(items.into_iter().map(toml::Value::String).collect()).to_string()
        }
        // In order: they run in the order given.
        "middlewares" => array(super::list(v)),
        _ => toml::Value::String(value.to_string()).to_string(),
    }
}

/// A TOML array of strings.
fn array(items: Vec<String>) -> String {
    toml::Value::Array(items.into_iter().map(toml::Value::String).collect()).to_string()
}

/// A middleware label's value (`<type>.<field>`) as the TOML type its field expects: lists are
/// comma-separated (as Traefik's labels), flags and numbers are literals; anything that does not
/// read as its type stays a string, so the file parser names the label.
fn middleware_literal(field: &str, value: &str) -> String {
    let (kind, rest) = field.split_once('.').unwrap_or((field, ""));
    let leaf = rest.rsplit('.').next().unwrap_or(rest);
    let v = value.trim();
    let string = || toml::Value::String(value.to_string()).to_string();
    let list = matches!(
        (kind, leaf),
        (
            _,
            "users"
                | "ranges"
                | "prefixes"
                | "middlewares"
                | "allow"
                | "deny"
                | "encodings"
                | "exclude_types"
                | "include_types"
        ) | ("strip_prefix_regex", "regex")
            | ("headers", "remove")
    );
    if list {
        return array(super::list(v));
    }
    match leaf {
        "remove_header"
        | "permanent"
        | "frame_deny"
        | "content_type_nosniff"
        | "browser_xss_filter"
        | "sts_include_subdomains"
        | "sts_preload"
        | "compress_with_cookies" => match super::parse_bool(v) {
            Some(b) => b.to_string(),
            None => string(),
        },
        "port" | "sts_seconds" | "average" | "burst" | "depth" | "table_size" | "amount"
        | "min_size" | "reject_status"
            if v.parse::<i64>().is_ok() =>
        {
            v.to_string()
        }
        // `compress.level.<encoding>`.
        "gzip" | "br" | "zstd" if kind == "compress" && v.parse::<i64>().is_ok() => v.to_string(),
        _ => string(),
    }
}
