//! The TOML dialect of `tether.toml`: static settings (entrypoints, timeouts, affinity key,
//! trusted proxies) and the dynamic part (routes, services) that is hot-reloaded.
//!
//! Every error names the line and the field: `line 12: routes.web.rule: column 5: unknown matcher`.
//! See `docs/configuration.md` for the reference and `examples/` for complete files.

mod convert;
mod raw;
mod sections;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::decl::{RouteDecl, ServiceDecl, TcpRouteDecl};
use crate::middleware::{MiddlewareDecl, Origin};

pub use raw::{parse_size, Cidr};

/// A parsed and validated configuration file.
#[derive(Debug, Clone)]
pub struct FileConfig {
    pub settings: Settings,
    pub services: Vec<ServiceDecl>,
    pub routes: Vec<RouteDecl>,
    pub middlewares: Vec<MiddlewareDecl>,
    /// `[tcp.routers]`; their services are among `services`.
    pub tcp_routes: Vec<TcpRouteDecl>,
}

/// Who the text speaks for: the provider its names are qualified by (`auth@file`), how far its
/// middlewares are trusted ([`Origin`]), and whether its routes' services must be in the same text.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub provider: &'a str,
    pub origin: Origin,
    pub services_here: bool,
}

impl Source<'_> {
    /// `tether.toml`.
    pub const FILE: Source<'static> = Source {
        provider: "file",
        origin: Origin::File,
        services_here: true,
    };
}

/// Settings read once at start; changing them needs a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Entrypoint name and listen address, sorted by name.
    pub entrypoints: Vec<(String, SocketAddr)>,
    pub timeouts: Timeouts,
    pub affinity_key: KeySource,
    /// Peers whose `X-Forwarded-*` headers are believed. Empty: nobody's.
    pub trusted_proxies: Vec<Cidr>,
    /// The admin API's listener (`[admin] address`); off when unset.
    pub admin: Option<SocketAddr>,
    /// Merge `//` into `/` in request paths (`[http] merge_slashes`, default false).
    pub merge_slashes: bool,
    pub limits: Limits,
    /// `[swarm]`: follow a Swarm manager.
    pub swarm: Option<SwarmSettings>,
    /// `[stats]`: the stats page on traffic entrypoints.
    pub stats: Option<StatsMount>,
    /// Which entrypoints terminate TLS, and the certificates they serve.
    pub tls: TlsSettings,
    /// The entrypoints that take TCP routers only (`protocol = "tcp"`), by name.
    pub tcp_entrypoints: Vec<String>,
    /// How TCP connections and WebSocket tunnels are piped (`[tcp]`'s settings).
    pub tcp: TcpSettings,
    /// The entrypoints whose peers send a PROXY protocol header, by name.
    pub proxy_protocol: std::collections::BTreeMap<String, AcceptProxy>,
    /// `[acme.NAME]`: the ACME resolvers routes may name, by name.
    pub acme: Vec<crate::acme::AcmeResolver>,
    /// `workers = N` (top level): serving workers, each a thread with its own listening sockets;
    /// `None`: `--workers`, else one per CPU this process may use.
    pub workers: Option<usize>,
    /// `pin_workers = true`: worker i runs on the i-th CPU this process may use.
    pub pin_workers: bool,
}

/// The most serving workers `workers` may ask for.
pub const MAX_WORKERS: usize = 1024;

/// An entrypoint's `proxy_protocol = { trusted = [...], optional, timeout }`: the PROXY
/// protocol header its peers send first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptProxy {
    /// Peers allowed to send a header; any other is closed.
    pub trusted: Vec<Cidr>,
    /// A trusted peer may send no header (its own address is then the client's).
    pub optional: bool,
    /// How long the whole header may take (default 5 s).
    pub timeout: Duration,
}

/// `--entrypoint NAME=ADDR[,tcp][,tls]`: an entrypoint declared on the command line (Docker
/// Flow Proxy deployments run with flags and no file). It adds to the file's entrypoints, or
/// replaces the one of its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrypointFlag {
    pub name: String,
    pub addr: SocketAddr,
    /// `protocol = "tcp"`.
    pub tcp: bool,
    /// `tls = true`.
    pub tls: bool,
}

impl EntrypointFlag {
    /// `db=0.0.0.0:5432,tcp`, `websecure=0.0.0.0:443,tls`.
    pub fn parse(s: &str) -> Result<EntrypointFlag, String> {
        let form = "expected NAME=ADDR[,tcp][,tls], e.g. db=0.0.0.0:5432,tcp";
        let (name, rest) = s.split_once('=').ok_or_else(|| format!("{s:?}: {form}"))?;
        if !crate::validate::is_name(name) {
            return Err(format!(
                "{s:?}: {name:?} is not a name (letters, digits, '-', '_', '.')"
            ));
        }
        let mut parts = rest.split(',');
        let addr = parts.next().unwrap_or_default();
        let addr: SocketAddr = addr
            .parse()
            .map_err(|_| format!("{s:?}: {addr:?} is not a listen address such as 0.0.0.0:80"))?;
        let (mut tcp, mut tls) = (false, false);
        for p in parts {
            match p {
                "tcp" => tcp = true,
                "tls" => tls = true,
                "http" => {}
                other => return Err(format!("{s:?}: {other:?}: {form}")),
            }
        }
        if tcp && tls {
            return Err(format!("{s:?}: TLS termination on a TCP entrypoint is not offered yet: a TCP entrypoint's routers pass TLS through"));
        }
        Ok(EntrypointFlag {
            name: name.to_string(),
            addr,
            tcp,
            tls,
        })
    }
}

impl Settings {
    /// Declare (or redeclare) the entrypoint `flag` names.
    pub fn add_entrypoint(&mut self, flag: &EntrypointFlag) {
        let name = &flag.name;
        self.entrypoints.retain(|(n, _)| n != name);
        self.entrypoints.push((name.clone(), flag.addr));
        self.entrypoints.sort_by(|a, b| a.0.cmp(&b.0));
        self.tcp_entrypoints.retain(|n| n != name);
        if flag.tcp {
            self.tcp_entrypoints.push(name.clone());
        }
        if flag.tls {
            self.tls.entrypoints.entry(name.clone()).or_default();
        } else {
            self.tls.entrypoints.remove(name);
        }
    }
}

/// Settings of TCP routing and tunnels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSettings {
    /// Bytes of each direction's buffer (`[tcp] buffer`, default 16 KiB).
    pub buffer: usize,
    /// How long a client has to send its whole TLS ClientHello where routers read it
    /// (`[tcp] hello_timeout`, default 5 s); a slower one is closed.
    pub hello_timeout: Duration,
}

impl Default for TcpSettings {
    fn default() -> Self {
        TcpSettings {
            buffer: 16 * 1024,
            hello_timeout: Duration::from_secs(5),
        }
    }
}

/// TLS termination: `tls = true` (or a table) on an entrypoint, `[[tls.certificates]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// The entrypoints that terminate TLS, by name.
    pub entrypoints: std::collections::BTreeMap<String, EntrypointTls>,
    pub certificates: Vec<CertificateFiles>,
}

impl TlsSettings {
    /// Make relative certificate paths relative to `dir` (the configuration file's).
    pub fn resolve_relative(&mut self, dir: &std::path::Path) {
        for c in &mut self.certificates {
            for p in [&mut c.cert_file, &mut c.key_file] {
                if p.is_relative() {
                    *p = dir.join(&*p);
                }
            }
        }
    }
}

/// One TLS entrypoint's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrypointTls {
    /// Fail the handshake of a client naming a host no certificate has (default: serve it the
    /// default certificate).
    pub strict_sni: bool,
    pub min_version: TlsVersion,
    /// Protocols offered by ALPN, in order of preference (default `h2`, `http/1.1`).
    pub alpn: Vec<String>,
}

impl Default for EntrypointTls {
    fn default() -> Self {
        EntrypointTls {
            strict_sni: false,
            min_version: TlsVersion::V1_2,
            alpn: vec!["h2".into(), "http/1.1".into()],
        }
    }
}

/// The oldest TLS version an entrypoint accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

/// A certificate chain and its key, PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Served to a client that sends no name, or one no certificate has (default: the first).
    pub default: bool,
}

/// The stats page's path as written (`/haproxy?stats`): its path part, which matches with any
/// query or none.
pub fn stats_path(p: &str) -> Result<String, String> {
    let path = p.split('?').next().unwrap_or_default();
    if !path.starts_with('/') || path.contains(['#', ' ']) {
        return Err(format!(
            "{p:?}: expected a path such as \"/haproxy?stats\" or \"/stats\""
        ));
    }
    Ok(path.to_string())
}

/// `[stats] path = "/haproxy?stats"`: the stats page, read-only, behind basic auth with the
/// admin token as password, on the traffic entrypoints listed (all when none are).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsMount {
    /// The path part (`/haproxy`): it matches with any query, or none, as HAProxy's does.
    pub path: String,
    pub entrypoints: Vec<String>,
}

/// `[swarm]`: the manager to follow and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmSettings {
    /// `unix:///var/run/docker.sock` or `tcp://host:port`; `None`: `$DOCKER_HOST`, else the
    /// default socket.
    pub endpoint: Option<String>,
    /// The steady task poll (default 500 ms).
    pub poll: Duration,
    /// The network to reach tasks on when a service names none and Tether shares none.
    pub network: Option<String>,
    /// Only services with this label and value are read.
    pub constraint: Option<(String, String)>,
}

/// The steady task poll's default, and its bounds.
pub const SWARM_POLL: Duration = Duration::from_millis(500);
pub const SWARM_POLL_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(50)..=Duration::from_secs(60);

/// What one request may hold, and how many connections one client may open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Request head, request line and fields (431 beyond).
    pub head: usize,
    /// Header fields in a request (431 beyond).
    pub headers: usize,
    /// Request target (414 beyond).
    pub uri: usize,
    /// Request body, unless a route sets its own `max_body` (413 beyond). `None`: no limit.
    pub body: Option<u64>,
    /// Open connections from one client address (refused with 429 beyond); 0: no limit.
    pub connections_per_client: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            head: 64 * 1024,
            headers: 128,
            uri: 8 * 1024,
            body: None,
            connections_per_client: 0,
        }
    }
}

/// Where the affinity sealing key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Generated once and kept in the state directory (single-replica setups).
    Generated,
    Inline(String),
    File(PathBuf),
}

/// Time limits. Defaults are safe for the public internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing a TCP connection to a server.
    pub connect: Duration,
    /// Receiving a client's complete request head.
    pub request_header: Duration,
    /// A client keep-alive connection with no traffic is closed after this.
    pub idle: Duration,
    /// Waiting for a server's response head after sending the request.
    pub upstream_response: Duration,
    /// A streamed request body must have arrived whole this long after it began (else 408).
    pub request_body: Duration,
    /// ...and keep at least this many bytes a second, averaged over each `body_rate_window` of
    /// time spent waiting for it (time the server takes to read it does not count). 0: no minimum.
    pub body_min_rate: u64,
    pub body_rate_window: Duration,
    /// TCP keepalive's idle time on server connections (0: off): a connection to a host that
    /// died is noticed within about twice this, long before `upstream_response`.
    pub server_keepalive: Duration,
    /// A TCP router's connection or a WebSocket tunnel with no byte either way is closed after
    /// this (HAProxy's `timeout tunnel`).
    pub tunnel: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            request_header: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            upstream_response: Duration::from_secs(60),
            request_body: Duration::from_secs(300),
            body_min_rate: 1024,
            body_rate_window: Duration::from_secs(10),
            server_keepalive: Duration::from_secs(10),
            tunnel: Duration::from_secs(3600),
        }
    }
}

/// One problem in the file, located by line (1-based) when the parser knows it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{field}: {message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct ConfigError {
    pub line: Option<usize>,
    pub field: String,
    pub message: String,
}

/// All problems found in one file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// One line per error, each prefixed with the file name: `tether.toml:12: routes.web.rule: ...`.
    pub fn render(&self, file: &str) -> String {
        self.0
            .iter()
            .map(|e| match e.line {
                Some(l) => format!("{file}:{l}: {}: {}", e.field, e.message),
                None => format!("{file}: {}: {}", e.field, e.message),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Parse and validate a configuration file's text.
pub fn parse(src: &str) -> Result<FileConfig, ConfigErrors> {
    parse_as(src, Source::FILE)
}

/// Parse routes and services whose routes may name services declared elsewhere (another source
/// of the merged table): the checks of [`parse`] but that one, which the merged table's
/// validation makes instead. Used for documents that carry only part of the configuration,
/// such as the admin API's.
pub fn parse_declarations(src: &str) -> Result<FileConfig, ConfigErrors> {
    parse_as(
        src,
        Source {
            services_here: false,
            ..Source::FILE
        },
    )
}

/// Parse a text of the file's dialect on behalf of `source`: labels and the admin API are read
/// this way, their names qualified by their provider and their middlewares held to
/// [`Origin::Untrusted`].
pub fn parse_as(src: &str, source: Source<'_>) -> Result<FileConfig, ConfigErrors> {
    let read = sections::read(src).map_err(|e| ConfigErrors(vec![e]))?;
    let mut errors = read.errors;
    let left_out_mw: Vec<String> = read
        .left_out_middlewares
        .iter()
        .map(|m| crate::middleware::qualify(m, source.provider))
        .collect();
    match convert::convert(read.raw, src, source) {
        Ok(cfg) if errors.is_empty() => Ok(cfg),
        Ok(_) => Err(ConfigErrors(errors)),
        Err(more) => {
            // A route naming a service left out for its own error says nothing new.
            let left_out = &read.left_out_services;
            errors.extend(more.0.into_iter().filter(|e| {
                let service_left_out = e.field.ends_with(".service")
                    && left_out
                        .iter()
                        .any(|s| e.message == format!("no service named {s:?}"));
                let middleware_left_out = left_out_mw
                    .iter()
                    .any(|m| e.message.starts_with(&format!("no middleware named {m:?}")));
                !(service_left_out || middleware_left_out)
            }));
            errors.sort_by_key(|e| e.line);
            Err(ConfigErrors(errors))
        }
    }
}

/// 1-based line of a byte offset.
pub(crate) fn line_of(src: &str, offset: usize) -> usize {
    src.as_bytes()[..offset.min(src.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod acme_tests;
#[cfg(test)]
mod tcp_tests;
#[cfg(test)]
mod tests;
