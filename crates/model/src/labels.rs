//! Container metadata (labels and environment) translated into declarations.
//!
//! A container speaks one dialect, chosen in this order:
//! 1. Tether's own labels (`tether.*`), see [`tether`];
//! 2. Traefik v2/v3 labels (`traefik.http.*`) or, with `traefik.port`, `traefik.frontend.*` or
//!    `traefik.backend.*`, Traefik v1 labels, see [`traefik`] and [`traefik_v1`];
//! 3. Docker Flow Proxy labels (`com.df.*`), see [`flow`];
//! 4. Interlock's `INTERLOCK_DATA` environment variable, see [`interlock`];
//! 5. dockercloud/haproxy's environment variables (`SERVICE_PORTS`, `VIRTUAL_HOST`, `COOKIE`,
//!    `BALANCE`), see [`dockercloud`].
//!
//! Every dialect yields the same [`Declared`] model. A mistake yields a [`LabelError`] naming the
//! container, the label (or variable) and its value; the provider leaves that container out and
//! keeps serving the others. Nothing here performs I/O: the provider gathers a [`Container`].
//!
//! Names are given the suffix `@docker` (as Traefik does), so a Docker service can never collide
//! with one from the configuration file.

mod acme;
pub mod certs;
pub mod dockercloud;
pub mod failover;
pub mod flow;
pub mod interlock;
pub mod tether;
pub mod traefik;
pub mod traefik_v1;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::decl::{
    BalanceAlgo, CertificateDecl, RouteDecl, ServerAddr, ServerDecl, ServiceDecl, TcpRouteDecl,
};
use crate::middleware::MiddlewareDecl;
use crate::rule::Rule;

/// Suffix of every name the Docker provider declares.
pub const SUFFIX: &str = "@docker";

/// What the provider knows about one running container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Container {
    /// Container name without the leading `/`; also the server's stable identity.
    pub name: String,
    /// The group this container is a replica of: the Compose or Swarm service name, else the
    /// container name. Default service name in every dialect.
    pub group: String,
    pub labels: BTreeMap<String, String>,
    /// Environment variables (`KEY=VALUE` split at the first `=`).
    pub env: BTreeMap<String, String>,
    /// Address on each network the container is attached to.
    pub networks: BTreeMap<String, IpAddr>,
    /// TCP ports the image or container exposes, sorted.
    pub exposed_ports: Vec<u16>,
    /// `network_mode: host`: reachable on the host's loopback.
    pub host_network: bool,
    /// The container's own host and domain name (`docker run --hostname`, `--domainname`; a
    /// Swarm service's `--hostname`), as Interlock names a site by them. Empty when unset.
    pub hostname: String,
    pub domainname: String,
    /// What `name` names, for messages: a container, or a Swarm service (whose labels every task
    /// shares).
    pub kind: Kind,
}

/// What a [`Container`] stands for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Kind {
    #[default]
    Container,
    /// A Swarm service: its labels and environment, one of its tasks' addresses.
    Service,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Container => "container",
            Kind::Service => "service",
        })
    }
}

/// What the translation needs to know about Tether itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// Tether's entrypoint names (routes may name them).
    pub entrypoints: &'a [String],
    /// Those of `entrypoints` that terminate TLS.
    pub tls_entrypoints: &'a [String],
    /// Those of `entrypoints` that take TCP routers only (`protocol = "tcp"`).
    pub tcp_entrypoints: &'a [String],
    /// The port each entrypoint listens on (a dialect that names the proxy's port, such as
    /// dockercloud's `TCP_PORTS`, finds its entrypoint by it).
    pub entrypoint_ports: &'a [(String, u16)],
    /// Networks Tether is attached to when it runs in a container; empty on the host (`host`
    /// alone for a container on the host's network, which is the host's).
    pub own_networks: &'a [String],
    /// When Tether runs on the host: the networks the host reaches, this engine's local bridge
    /// networks (an overlay is reachable from its containers only). `None`: not known, any.
    pub host_networks: Option<&'a [String]>,
    /// Network to use when a container names none (`--docker-network`).
    pub default_network: Option<&'a str>,
    /// Where Tether's Docker secrets are (default [`certs::SECRETS_DIR`]).
    pub secrets_dir: Option<&'a std::path::Path>,
    /// What dockercloud/haproxy reads from the proxy's own environment (`HTTP_BASIC_AUTH`,
    /// `GZIP_COMPRESSION_TYPE`): middlewares every dockercloud service's routes take
    /// ([`dockercloud::ProxyWide`]).
    pub dockercloud: Option<&'a dockercloud::ProxyWide>,
    /// `--interlock-ext-name NAME`: only containers whose `interlock.ext.name` is NAME (or that
    /// name none) are this Tether's, as an Interlock extension of that name took them.
    pub interlock_ext_name: Option<&'a str>,
    /// The ACME resolvers a route may name (`[acme.NAME]`); `None`: not known here (the table
    /// checks them).
    pub acme_resolvers: Option<&'a [String]>,
}

/// Dialects' names for the plain and the TLS entrypoint (Traefik's defaults and the common ones).
const PLAIN_NAMES: [&str; 2] = ["http", "web"];
const TLS_NAMES: [&str; 3] = ["https", "websecure", "web-secure"];

impl Context<'_> {
    /// The TCP entrypoint listening on `port`, or an error saying how to declare one.
    pub fn tcp_entrypoint_on(&self, port: u16) -> Result<String, String> {
        self.entrypoint_ports
            .iter()
            .find(|(name, p)| *p == port && self.tcp_entrypoints.contains(name))
            .map(|(name, _)| name.clone())
            .ok_or_else(|| {
                format!("Tether has no TCP entrypoint on port {port}: declare one, e.g. --entrypoint tcp{port}=0.0.0.0:{port},tcp (or tcp{port} = {{ address = \"0.0.0.0:{port}\", protocol = \"tcp\" }} in tether.toml)")
            })
    }

    /// The entrypoint serving HTTP on `port` (a plain or TLS one, not `protocol = "tcp"`), or
    /// an error saying how to declare one.
    pub fn http_entrypoint_on(&self, port: u16) -> Result<String, String> {
        self.entrypoint_ports
            .iter()
            .find(|(name, p)| *p == port && !self.tcp_entrypoints.contains(name))
            .map(|(name, _)| name.clone())
            .ok_or_else(|| {
                format!("Tether has no HTTP entrypoint on port {port}: declare one, e.g. --entrypoint web{port}=0.0.0.0:{port}")
            })
    }

    /// The Tether entrypoint a dialect's entrypoint name means: the one of that name; else, for
    /// `http`/`web` and `https`/`websecure`, the plain or the TLS entrypoint when Tether has
    /// exactly one of that kind.
    pub fn entrypoint(&self, name: &str) -> Result<String, String> {
        if let Some(e) = self
            .entrypoints
            .iter()
            .find(|e| e.eq_ignore_ascii_case(name))
        {
            return Ok(e.clone());
        }
        let lower = name.to_ascii_lowercase();
        let kind: Vec<&String> = if PLAIN_NAMES.contains(&lower.as_str()) {
            self.plain().collect()
        } else if TLS_NAMES.contains(&lower.as_str()) {
            self.tls_entrypoints.iter().collect()
        } else {
            Vec::new()
        };
        match kind.as_slice() {
            [one] => Ok((*one).clone()),
            _ => Err(format!(
                "no entrypoint {name:?}: Tether's are {} (http and web name the plain one, https and websecure the TLS one, when there is one of each)",
                self.listed()
            )),
        }
    }

    /// The TLS entrypoints, for a route that is served over TLS only.
    pub fn tls_only(&self) -> Result<Vec<String>, String> {
        if self.tls_entrypoints.is_empty() {
            return Err(format!(
                "needs a TLS entrypoint, and Tether has none ({}): add tls = true to one",
                self.listed()
            ));
        }
        Ok(self.tls_entrypoints.to_vec())
    }

    /// The plain entrypoints, for a route that is served over plain HTTP only.
    pub fn plain_only(&self) -> Result<Vec<String>, String> {
        let plain: Vec<String> = self.plain().cloned().collect();
        if plain.is_empty() {
            return Err(format!(
                "needs a plain HTTP entrypoint, and Tether has none ({})",
                self.listed()
            ));
        }
        Ok(plain)
    }

    fn plain(&self) -> impl Iterator<Item = &String> {
        self.entrypoints
            .iter()
            .filter(|e| !self.tls_entrypoints.contains(e))
    }

    fn listed(&self) -> String {
        if self.entrypoints.is_empty() {
            return "none".into();
        }
        self.entrypoints
            .iter()
            .map(|e| {
                if self.tls_entrypoints.contains(e) {
                    format!("{e} (TLS)")
                } else {
                    e.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The dialect a container was read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Tether,
    Traefik,
    TraefikV1,
    DockerFlow,
    Interlock,
    DockerCloud,
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::Tether => "tether labels",
            Dialect::Traefik => "traefik v2 labels",
            Dialect::TraefikV1 => "traefik v1 labels",
            Dialect::DockerFlow => "docker flow proxy labels",
            Dialect::Interlock => "INTERLOCK_DATA",
            Dialect::DockerCloud => "dockercloud/haproxy variables",
        })
    }
}

/// One container's contribution: services holding this container as their one server, and routes.
#[derive(Debug, Clone)]
pub struct Declared {
    pub dialect: Dialect,
    pub services: Vec<ServiceDecl>,
    pub routes: Vec<RouteDecl>,
    /// Certificates for the TLS entrypoints (a Docker secret named by a label, `SSL_CERT`).
    pub certificates: Vec<CertificateDecl>,
    /// Middlewares its labels declare (`name@docker`), which any container's routes may name.
    pub middlewares: Vec<MiddlewareDecl>,
    /// TCP routers (their services are among `services`).
    pub tcp_routes: Vec<TcpRouteDecl>,
    /// dockercloud's `FAILOVER`: its HTTP services back up the other services whose routes have
    /// the same rule and entrypoints; the provider folds them in ([`failover::fold`]).
    pub failover: bool,
}

/// Where a bad value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Label,
    Env,
}

/// A label or variable that could not be used. Displays as
/// `label tether.http.services.web.port="80a": not a port number (container web-1)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LabelError {
    pub container: String,
    /// What `container` names.
    pub kind: Kind,
    pub origin: Source,
    /// Label key or variable name; empty when the problem is the container as a whole.
    pub key: String,
    pub value: Option<String>,
    pub message: String,
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.origin {
            Source::Label => "label",
            Source::Env => "env",
        };
        match (&self.value, self.key.is_empty()) {
            (_, true) => write!(f, "{}", self.message)?,
            // A password or its hash is never repeated.
            (Some(_), false) if holds_secret(&self.key) => {
                write!(f, "{kind} {}: {}", self.key, self.message)?
            }
            (Some(v), false) => write!(f, "{kind} {}={v:?}: {}", self.key, self.message)?,
            (None, false) => write!(f, "{kind} {}: {}", self.key, self.message)?,
        }
        write!(f, " ({} {})", self.kind, self.container)
    }
}

/// Does label or variable `key` hold passwords or their hashes (whose value no message repeats)?
pub fn holds_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.ends_with(".basic_auth.users")
        || k.ends_with(".basicauth.users")
        || k.ends_with("frontend.auth.basic.users")
        || k.ends_with("frontend.auth.basic")
        || k == "com.df.users"
        || k == "http_basic_auth"
}

impl Container {
    /// An error about label `key` (its value is looked up).
    pub fn label_error(&self, key: &str, message: impl Into<String>) -> LabelError {
        LabelError {
            container: self.name.clone(),
            kind: self.kind,
            origin: Source::Label,
            key: key.to_string(),
            value: self.labels.get(key).cloned(),
            message: message.into(),
        }
    }

    /// An error about environment variable `key`.
    pub fn env_error(&self, key: &str, message: impl Into<String>) -> LabelError {
        LabelError {
            container: self.name.clone(),
            kind: self.kind,
            origin: Source::Env,
            key: key.to_string(),
            value: self.env.get(key).cloned(),
            message: message.into(),
        }
    }

    /// An error about the container as a whole (no one label).
    pub fn whole_error(&self, message: String) -> LabelError {
        LabelError {
            container: self.name.clone(),
            kind: self.kind,
            origin: Source::Label,
            key: String::new(),
            value: None,
            message,
        }
    }

    fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// A boolean label: `true`/`false` (any case); absent is `None`.
    fn flag(&self, key: &str) -> Result<Option<bool>, LabelError> {
        match self.label(key) {
            None => Ok(None),
            Some(v) => parse_bool(v)
                .map(Some)
                .ok_or_else(|| self.label_error(key, "expected true or false")),
        }
    }
}

pub(crate) fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// Translate a container. `None`: the container asks for nothing (or opted out).
/// A route's ACME resolver that Tether does not have, named at its label (`…tls.resolver`,
/// `…tls.certresolver`).
fn unknown_resolvers(c: &Container, cx: &Context<'_>, routes: &[RouteDecl]) -> Vec<LabelError> {
    let Some(known) = cx.acme_resolvers else {
        return Vec::new();
    };
    let mut errors = Vec::new();
    for r in routes {
        let Some(name) = r.tls.as_ref().and_then(|t| t.resolver.as_deref()) else {
            continue;
        };
        if known.iter().any(|k| k == name) {
            continue;
        }
        let key = c
            .labels
            .iter()
            .find(|(k, v)| {
                (k.ends_with(".tls.resolver")
                    || k.to_ascii_lowercase().ends_with(".tls.certresolver"))
                    && v.trim() == name
            })
            .map_or("tls.resolver", |(k, _)| k.as_str());
        let declared = if known.is_empty() {
            "Tether has none: declare it as [acme.NAME] in tether.toml".to_string()
        } else {
            format!("Tether's: {}", known.join(", "))
        };
        errors.push(c.label_error(key, format!("no ACME resolver named {name:?} ({declared})")));
    }
    errors
}

pub fn declare(c: &Container, cx: &Context<'_>) -> Option<Result<Declared, Vec<LabelError>>> {
    let has = |prefix: &str| c.labels.keys().any(|k| k.starts_with(prefix));
    let (dialect, result) = if has("tether.") {
        match c.flag("tether.enable") {
            Ok(Some(false)) => return None,
            Err(e) => return Some(Err(vec![e])),
            _ => (Dialect::Tether, tether::declare(c, cx)),
        }
    } else if has("traefik.") {
        match c.flag("traefik.enable") {
            Ok(Some(false)) => return None,
            Err(e) => return Some(Err(vec![e])),
            _ => {}
        }
        if has("traefik.http.") || !traefik_v1::applies(c) {
            (Dialect::Traefik, traefik::declare(c, cx))
        } else {
            (Dialect::TraefikV1, traefik_v1::declare(c, cx))
        }
    } else if has("com.df.") {
        if c.label("com.df.notify").and_then(parse_bool) == Some(false) {
            return None;
        }
        (Dialect::DockerFlow, flow::declare(c, cx))
    } else if has("interlock.") || c.env.contains_key("INTERLOCK_DATA") {
        if !interlock::ours(c, cx) {
            return None;
        }
        (Dialect::Interlock, interlock::declare(c, cx))
    } else if c.env.contains_key("SERVICE_PORTS") || c.env.contains_key("VIRTUAL_HOST") {
        // Its owner switched it off (blue/green), as dockercloud/haproxy honours.
        match c.flag(dockercloud::DEACTIVATE) {
            Ok(Some(true)) => return None,
            Err(e) => return Some(Err(vec![e])),
            _ => {}
        }
        (Dialect::DockerCloud, dockercloud::declare(c, cx))
    } else {
        return None;
    };
    let secrets = cx
        .secrets_dir
        .unwrap_or(std::path::Path::new(certs::SECRETS_DIR));
    let certificates = certs::declare(c, dialect, secrets);
    let failover = dialect == Dialect::DockerCloud && dockercloud::failover(c);
    let result = result.and_then(|d| match unknown_resolvers(c, cx, &d.1) {
        e if e.is_empty() => Ok(d),
        e => Err(e),
    });
    Some(match (result, certificates) {
        (Ok((services, routes, middlewares, tcp_routes)), Ok(certificates)) => Ok(Declared {
            dialect,
            services,
            routes,
            certificates,
            middlewares,
            tcp_routes,
            failover,
        }),
        (Err(mut a), Err(b)) => {
            a.extend(b);
            Err(a)
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    })
}

/// What a dialect returns before it is labelled with its name.
pub(crate) type Translation = Result<
    (
        Vec<ServiceDecl>,
        Vec<RouteDecl>,
        Vec<MiddlewareDecl>,
        Vec<TcpRouteDecl>,
    ),
    Vec<LabelError>,
>;

/// A middleware a dialect declares from `table` (`{type = {fields}}`, the file's shape), named
/// `name@docker` and held to what an untrusted source may ask; or the messages of what is wrong.
pub(crate) fn dialect_middleware(
    name: &str,
    table: toml::Table,
) -> Result<MiddlewareDecl, Vec<String>> {
    use serde::Deserialize as _;
    let raw = crate::middleware::RawMiddleware::deserialize(toml::Value::Table(table))
        .map_err(|e| vec![e.to_string()])?;
    raw.convert(name, "docker", crate::middleware::Origin::Untrusted)
        .map_err(|errs| errs.into_iter().map(|e| e.message).collect())
}

/// Several translations of one container (Traefik v1's segments, Docker Flow Proxy's
/// destinations) as one: every declaration, or every error, each said once.
pub(crate) fn merged(parts: impl IntoIterator<Item = Translation>) -> Translation {
    let mut out = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut errors = Vec::new();
    for part in parts {
        match part {
            Ok((s, r, m, t)) => {
                out.0.extend(s);
                out.1.extend(r);
                out.2.extend(m);
                out.3.extend(t);
            }
            Err(es) => errors.extend(es),
        }
    }
    if errors.is_empty() {
        return Ok(out);
    }
    // A container-wide label refused once, not once per part.
    let mut seen = std::collections::HashSet::new();
    errors.retain(|e: &LabelError| seen.insert((e.key.clone(), e.message.clone())));
    Err(errors)
}

/// Where a container's TCP routers go on Tether's entrypoints, checked as every source's are
/// ([`crate::validate::tcp`]); each error told against the label `key(router, field)` names
/// (`router` as written, without `@docker`). A service named on another container is the merged
/// table's to check.
pub(crate) fn tcp_placement(
    c: &Container,
    cx: &Context<'_>,
    services: &[ServiceDecl],
    routes: &[TcpRouteDecl],
    key: impl Fn(&str, &str) -> String,
) -> Vec<LabelError> {
    let eps = crate::validate::tcp::Entrypoints {
        names: cx.entrypoints,
        tls: cx.tls_entrypoints,
        tcp: cx.tcp_entrypoints,
    };
    crate::validate::tcp::routers(services, routes, &eps)
        .into_iter()
        .filter(|e| !e.field.ends_with(".service"))
        .map(|e| {
            let rest = e.field.strip_prefix("tcp.routers.").unwrap_or(&e.field);
            let found = routes.iter().find_map(|r| {
                let field = rest.strip_prefix(r.name.as_str())?;
                Some((
                    r.name.trim_end_matches(SUFFIX),
                    field.trim_start_matches('.'),
                ))
            });
            let (router, field) = found.unwrap_or((rest, "rule"));
            let field = if field.is_empty() { "rule" } else { field };
            c.label_error(&key(router, field), e.message)
        })
        .collect()
}

/// The name a dialect's service or route gets: `<name>@docker` unless it already names a provider.
pub fn scoped(name: &str) -> String {
    if name.contains('@') {
        name.to_string()
    } else {
        format!("{name}{SUFFIX}")
    }
}

/// The address to reach `c` on: the network `label` names, else one Tether shares with it, else
/// the default network, else its only (or first) network. `label` is `(key, value)`.
///
/// Only an address Tether can reach is ever used: in a container, one on a network that
/// container is attached to; on the host (or the host's network), the host's loopback for a
/// container on the host's network, or one on a local bridge network of this engine. Otherwise
/// the container is left out with an error naming the network and what Tether is attached to.
pub fn address(
    c: &Container,
    cx: &Context<'_>,
    label: Option<(&str, &str)>,
) -> Result<IpAddr, LabelError> {
    let on_host = cx.own_networks.is_empty() || cx.own_networks == ["host"];
    if c.host_network {
        if on_host {
            return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        return Err(c.whole_error(format!(
            "uses the host's network, which Tether's container (on {}) does not share: run Tether on the host network, or publish the container's port on a network Tether is attached to",
            cx.own_networks.join(", ")
        )));
    }
    if let Some((key, net)) = label {
        let Some(ip) = c.networks.get(net).copied() else {
            return Err(c.label_error(
                key,
                format!(
                    "the container is not attached to this network (it is on: {})",
                    names(&c.networks)
                ),
            ));
        };
        return match unreachable(cx, net, on_host) {
            None => Ok(ip),
            Some(why) => Err(c.label_error(key, why)),
        };
    }
    if let Some(net) = cx.own_networks.iter().find(|n| c.networks.contains_key(*n)) {
        return Ok(c.networks[net]);
    }
    if !on_host {
        return Err(c.whole_error(format!(
            "shares no network with Tether (Tether is on {}, the container on {}): connect them or name one with a network label",
            cx.own_networks.join(", "),
            names(&c.networks)
        )));
    }
    if let Some(net) = cx.default_network {
        if let Some(ip) = c.networks.get(net) {
            return match unreachable(cx, net, on_host) {
                None => Ok(*ip),
                Some(why) => Err(c.whole_error(format!("default network {net}: {why}"))),
            };
        }
    }
    if c.networks.is_empty() {
        return Err(c.whole_error("the container has no network address".into()));
    }
    c.networks
        .iter()
        .find(|(n, _)| unreachable(cx, n, on_host).is_none())
        .map(|(_, ip)| *ip)
        .ok_or_else(|| {
            c.whole_error(format!(
                "is on no network the host Tether runs on reaches (the container is on {}; the host reaches this engine's local bridge networks: {}): run Tether in a container attached to one of them",
                names(&c.networks),
                cx.host_networks.map_or_else(|| "any".into(), list_or_none)
            ))
        })
}

/// Why Tether cannot reach network `net`, if it cannot.
fn unreachable(cx: &Context<'_>, net: &str, on_host: bool) -> Option<String> {
    if !on_host {
        if cx.own_networks.iter().any(|n| n == net) {
            return None;
        }
        return Some(format!(
            "Tether's container is not attached to network {net} (Tether is on {}): attach it, or name a network both share",
            cx.own_networks.join(", ")
        ));
    }
    match cx.host_networks {
        Some(h) if !h.iter().any(|n| n == net) => Some(format!(
            "network {net} is not reachable from the host Tether runs on (it reaches this engine's local bridge networks: {}; an overlay network only from containers attached to it): run Tether in a container attached to {net}",
            list_or_none(h)
        )),
        _ => None,
    }
}

fn list_or_none(l: &[String]) -> String {
    if l.is_empty() {
        "none".into()
    } else {
        l.join(", ")
    }
}

fn names(networks: &BTreeMap<String, IpAddr>) -> String {
    if networks.is_empty() {
        "no network".into()
    } else {
        networks.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// The port to reach `c` on: `value` (from the label or variable `key`), else its only exposed
/// port. `err` builds the error for `key`.
pub fn port(
    c: &Container,
    key: &str,
    value: Option<&str>,
    err: impl Fn(&str, String) -> LabelError,
) -> Result<u16, LabelError> {
    match value {
        Some(v) => v
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| err(key, "not a port number (1..=65535)".into())),
        None => match c.exposed_ports.as_slice() {
            [p] => Ok(*p),
            [] => Err(err(
                key,
                "missing: the container exposes no port, so name one".into(),
            )),
            many => Err(err(
                key,
                format!(
                    "missing: the container exposes several ports ({}), so name one",
                    many.iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        },
    }
}

/// This container as the one server of a service.
pub fn server(c: &Container, ip: IpAddr, port: u16) -> ServerDecl {
    ServerDecl {
        name: c.name.clone(),
        addr: ServerAddr::Socket(SocketAddr::new(ip, port)),
        weight: 1,
        draining: false,
        tls: None,
        backup: false,
    }
}

/// A route built by a dialect from its own syntax, already translated into Tether's rule text.
pub fn route(name: &str, rule_text: String, service: &str) -> Result<RouteDecl, String> {
    let rule = Rule::parse(&rule_text).map_err(|e| format!("{e} in {rule_text}"))?;
    Ok(RouteDecl {
        name: scoped(name),
        priority: rule_text.len() as i64,
        rule: rule.into(),
        rule_text,
        service: scoped(service),
        entrypoints: Vec::new(),
        max_body: None,
        redirect_https: None,
        hsts: None,
        middlewares: Vec::new(),
        tls: None,
    })
}

/// A service of one server with default balancing and no affinity.
pub fn service(name: &str, server: ServerDecl) -> ServiceDecl {
    ServiceDecl {
        name: scoped(name),
        servers: vec![server],
        balance: BalanceAlgo::RoundRobin,
        affinity: None,
        resolve: None,
        health: None,
        wait: Default::default(),
        protocol: Default::default(),
    }
}

/// A rule string literal: backquoted, as in Traefik.
pub(crate) fn lit(s: &str) -> String {
    format!("`{s}`")
}

/// ``Host(`a`) || Host(`b`)``: one matcher over alternative values.
pub(crate) fn any_of<S: AsRef<str>>(matcher: &str, values: &[S]) -> String {
    group(
        values
            .iter()
            .map(|v| format!("{matcher}({})", lit(v.as_ref())))
            .collect(),
    )
}

/// Joins alternatives with `||`, in parentheses when there are several.
pub(crate) fn group(parts: Vec<String>) -> String {
    if parts.len() == 1 {
        parts.into_iter().next().unwrap_or_default()
    } else {
        format!("({})", parts.join(" || "))
    }
}

/// Split a comma (or space) separated list, dropping empty items.
pub(crate) fn list(v: &str) -> Vec<String> {
    v.split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tcp_tests;
#[cfg(test)]
mod tests;
