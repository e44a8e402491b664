//! Declarations: what a provider says should exist. Providers build these; `control` merges,
//! validates and compiles them into the routing table the data plane reads.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::rule::Rule;

/// One provider's whole desired state. Each update replaces that provider's previous one.
#[derive(Debug, Clone, Default)]
pub struct ProviderUpdate {
    /// Provider name, e.g. `file`, `docker`, `api`.
    pub provider: String,
    pub services: Vec<ServiceDecl>,
    pub routes: Vec<RouteDecl>,
    /// Problems in parts of the input that were left out (e.g. a container with an invalid label).
    /// The rest is applied; these are logged and shown in the status until the next update.
    pub errors: Vec<String>,
    /// The source's own version of this state, shown beside the table's: a digest of the file,
    /// the time of the engine's last event, an etcd revision, a count of API changes.
    pub version: String,
    /// When the earliest change this update carries happened at its source, by the source's
    /// clock (a Docker event's time, a Swarm task's status time); `None` when the source cannot
    /// tell (a file, the API). From it to the table serving is the discovery lag.
    pub observed: Option<std::time::SystemTime>,
    /// Certificates for the TLS entrypoints (from the API, a label, a Docker secret); served
    /// by SNI beside those of `tether.toml`, which win a name both have.
    pub certificates: Vec<CertificateDecl>,
    /// Middlewares its routes (or another source's) may name ([`crate::middleware`]).
    pub middlewares: Vec<crate::middleware::MiddlewareDecl>,
    /// TCP routers: connections, not requests, sent whole to a TCP service.
    pub tcp_routes: Vec<TcpRouteDecl>,
}

/// A TCP router: a connection on one of `entrypoints` whose ClientHello and client match `rule`
/// (``HostSNI(`db.example`)``, ``HostSNI(`*`)``, `ClientIP`) is piped whole to a server of
/// `service`, a TCP service.
#[derive(Debug, Clone)]
pub struct TcpRouteDecl {
    pub name: String,
    /// Parsed with [`Rule::parse_tcp`].
    pub rule: Arc<Rule>,
    pub rule_text: String,
    /// Higher wins; default the rule text's length, as for HTTP routes.
    pub priority: i64,
    pub service: String,
    /// Entrypoint names; empty means every TCP entrypoint and, for a passthrough router, every
    /// TLS entrypoint.
    pub entrypoints: Vec<String>,
    /// `tls = { passthrough = true }`: the TLS connection goes to the server undecrypted, chosen
    /// by its ClientHello's server name. Needed on an entrypoint that serves HTTP.
    pub passthrough: bool,
}

/// Every field but the parsed rule, which the rule text determines (as for [`RouteDecl`]).
impl std::hash::Hash for TcpRouteDecl {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let TcpRouteDecl {
            name,
            rule: _,
            rule_text,
            priority,
            service,
            entrypoints,
            passthrough,
        } = self;
        (name, rule_text, priority, service, entrypoints, passthrough).hash(state);
    }
}

/// What a service's servers speak: HTTP requests, or a TCP router's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum ServiceProtocol {
    #[default]
    Http,
    /// Each connection is piped whole to one server.
    Tcp {
        /// Sent first on each connection to a server: the client's address, as HAProxy's
        /// `send-proxy` (v1) and `send-proxy-v2`.
        proxy_protocol: Option<ProxyVersion>,
    },
}

impl ServiceProtocol {
    pub fn is_tcp(self) -> bool {
        matches!(self, ServiceProtocol::Tcp { .. })
    }
}

/// A version of the PROXY protocol (HAProxy's text v1, binary v2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyVersion {
    V1,
    V2,
}

impl ProxyVersion {
    /// `"v1"`, `"v2"`, or Traefik's `1` and `2`.
    pub fn parse(s: &str) -> Result<ProxyVersion, String> {
        match s.trim() {
            "v1" | "1" => Ok(ProxyVersion::V1),
            "v2" | "2" => Ok(ProxyVersion::V2),
            _ => Err(format!("{s:?}: expected \"v1\" or \"v2\"")),
        }
    }
}

/// A certificate a provider asks Tether to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateDecl {
    /// Its name in its provider (the API's name, `web@docker`).
    pub name: String,
    /// Where it came from, for messages: `label tether.tls.secret=app (container web-1)`.
    pub origin: String,
    pub pem: CertificatePem,
    /// Served to a client that sends no name or one no certificate has, unless `tether.toml`
    /// marks a default.
    pub default: bool,
}

/// A certificate chain and its private key, as PEM.
#[derive(Clone, PartialEq, Eq)]
pub enum CertificatePem {
    /// The PEM text itself (the chain and the key in one text, or each in its own).
    Text { cert: String, key: String },
    /// Files, read when declared and again whenever they change (a Docker secret under
    /// `/run/secrets`); the same path twice for one file holding both.
    Files {
        cert: std::path::PathBuf,
        key: std::path::PathBuf,
    },
}

impl fmt::Debug for CertificatePem {
    /// Never prints the text: it holds a private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertificatePem::Text { cert, key } => {
                write!(f, "Text({} + {} bytes of PEM)", cert.len(), key.len())
            }
            CertificatePem::Files { cert, key } => {
                write!(f, "Files({}, {})", cert.display(), key.display())
            }
        }
    }
}

/// A route: requests matching `rule` on the listed entrypoints go to `service`.
#[derive(Debug, Clone)]
pub struct RouteDecl {
    pub name: String,
    /// Shared with every table compiled from it: a reload does not copy rules.
    pub rule: Arc<Rule>,
    /// The rule's source text, kept for display and default priority.
    pub rule_text: String,
    /// Higher wins. Default: the length of the rule text, so longer (more specific) rules win.
    pub priority: i64,
    pub service: String,
    /// Entrypoint names; empty means all.
    pub entrypoints: Vec<String>,
    /// Largest request body accepted on this route (413 beyond), over the global limit.
    pub max_body: Option<u64>,
    /// A request that arrives over plain HTTP is answered 308 with its `https://` URL.
    pub redirect_https: Option<HttpsRedirect>,
    /// Responses to requests over TLS carry `Strict-Transport-Security`.
    pub hsts: Option<Hsts>,
    /// Middlewares run in this order, by qualified name (`auth@file`); `redirect_https` runs
    /// before them and `hsts` is the last response edit.
    pub middlewares: Vec<String>,
    /// `tls = { resolver, domains }`: the ACME resolver that orders the route's certificate, and
    /// the names. It does not limit which entrypoints serve the route.
    pub tls: Option<crate::acme::RouteTls>,
}

/// `redirect_https`: where the `https://` URL points.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpsRedirect {
    /// 308 Permanent Redirect (the default), else 307 Temporary Redirect: both keep the method.
    pub permanent: bool,
    /// The URL's port; `None`: the port of `entrypoint`, else of the route's TLS entrypoint
    /// (left out when it is 443).
    pub port: Option<u16>,
    /// The TLS entrypoint the URL points to (Traefik v1's `frontend.redirect.entryPoint`).
    pub entrypoint: Option<String>,
}

impl Default for HttpsRedirect {
    fn default() -> Self {
        HttpsRedirect {
            permanent: true,
            port: None,
            entrypoint: None,
        }
    }
}

/// `hsts`: HTTP Strict Transport Security (RFC 6797).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hsts {
    /// Seconds a browser keeps to HTTPS (default: a year, 31536000).
    pub max_age: u64,
    pub include_subdomains: bool,
    /// Asks to be on the browsers' preload list (needs `include_subdomains` and a year or more).
    pub preload: bool,
}

impl Hsts {
    /// A year: what the browsers' preload list requires, and the common default.
    pub const YEAR: u64 = 31_536_000;

    /// The field's value: `max-age=31536000; includeSubDomains; preload`.
    pub fn value(&self) -> String {
        let mut v = format!("max-age={}", self.max_age);
        if self.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if self.preload {
            v.push_str("; preload");
        }
        v
    }

    /// Why these settings cannot be preloaded, when `preload` is asked.
    pub fn preload_problem(&self) -> Option<&'static str> {
        (self.preload && !(self.include_subdomains && self.max_age >= Self::YEAR)).then_some(
            "preload needs include_subdomains = true and a max_age of a year (365d) or more",
        )
    }
}

/// Every field but the parsed rule, which the rule text determines. The pattern names every field,
/// so a field added later must be placed here (or left out on purpose) before this compiles.
impl std::hash::Hash for RouteDecl {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let RouteDecl {
            name,
            rule: _,
            rule_text,
            priority,
            service,
            entrypoints,
            max_body,
            redirect_https,
            hsts,
            middlewares,
            tls,
        } = self;
        (
            name,
            rule_text,
            priority,
            service,
            entrypoints,
            max_body,
            redirect_https,
            hsts,
            middlewares,
            tls,
        )
            .hash(state);
    }
}

/// A service: a set of servers, how to choose among them, and whether sessions stick.
#[derive(Debug, Clone, Hash)]
pub struct ServiceDecl {
    pub name: String,
    pub servers: Vec<ServerDecl>,
    pub balance: BalanceAlgo,
    pub affinity: Option<AffinityPolicy>,
    /// Servers found in DNS instead of listed: every address of this name is one server. The
    /// sources resolve it (again every few seconds) and fill `servers` before the control plane
    /// sees the service.
    pub resolve: Option<Resolve>,
    /// Active health checks of each server.
    pub health: Option<HealthCheck>,
    /// What a request does while the service has no server to take it.
    pub wait: ServerWait,
    /// HTTP (routes name it) or TCP (TCP routers name it).
    pub protocol: ServiceProtocol,
}

/// While a service has no server that takes new requests (scaled to 0, every task stopping in a
/// rolling update, every server unhealthy, `servers = []`), its routes stay and a request waits
/// up to `timeout` for one to come, then gets 503 with `Retry-After: 1`. At most `queue`
/// requests wait; beyond them, 503 at once. HAProxy's `timeout queue`, Traefik's 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServerWait {
    /// `wait_for_server`: 0 answers 503 at once.
    pub timeout: Duration,
    /// `wait_queue`: requests that may wait at once, per service and process.
    pub queue: u32,
}

impl ServerWait {
    /// 5 s: a Swarm task starts in 1-3 s, and a client gives up later than that.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
    pub const DEFAULT_QUEUE: u32 = 1024;
}

impl Default for ServerWait {
    fn default() -> Self {
        ServerWait {
            timeout: Self::DEFAULT_TIMEOUT,
            queue: Self::DEFAULT_QUEUE,
        }
    }
}

/// An active health check: `GET path` on each server every `interval`; `fall` failures in a row
/// (no answer within `timeout`, or a status outside 2xx and 3xx) take it out of rotation, `rise`
/// successes in a row bring it back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

impl HealthCheck {
    /// Defaults for a check of `path`: every 5 s, 2 s to answer, 2 to rise, 3 to fall.
    pub fn of(path: String) -> HealthCheck {
        HealthCheck {
            path,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            rise: 2,
            fall: 3,
        }
    }
}

/// A DNS name whose every address is a server, as Swarm's `tasks.<service>` names each task.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Resolve {
    pub host: String,
    pub port: u16,
}

impl Resolve {
    /// `tasks.go-demo:8080`
    pub fn parse(s: &str) -> Result<Resolve, String> {
        match ServerAddr::parse(s)? {
            ServerAddr::Host(host, port) if s.contains(':') => Ok(Resolve { host, port }),
            _ => Err(format!(
                "{s:?}: expected a DNS name and port such as tasks.web:8080"
            )),
        }
    }
}

impl fmt::Display for Resolve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// One backend server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerDecl {
    /// Stable identity: the sticky cookie seals this, never the address. Unique within the service.
    pub name: String,
    pub addr: ServerAddr,
    /// Relative share of traffic, 1..=1000 (0 means: receives no new requests).
    pub weight: u32,
    /// Takes no new sessions; requests pinned to it are still served (a stopping container).
    pub draining: bool,
    /// `https://`: TLS to the server, and how its certificate is checked.
    pub tls: Option<ServerTls>,
    /// A backup server (HAProxy's `backup`): it takes requests only while no other server of
    /// its service does (all down, draining or weight 0).
    pub backup: bool,
}

/// TLS to a server (`url = "https://..."`, with the service's `tls` table).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerTls {
    /// The name sent as SNI and that the certificate must hold: the URL's host, or the
    /// service's `tls.server_name`. An IP address is checked against the certificate's IP names.
    pub server_name: String,
    /// Check the server's certificate against the CA certificates of this PEM file instead of
    /// the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Do not check the server's certificate at all (a self-signed test backend). Logged as a
    /// warning whenever such a server is set up.
    pub insecure_skip_verify: bool,
}

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServerAddr {
    Socket(SocketAddr),
    /// A host name resolved when connecting.
    Host(String, u16),
}

impl ServerAddr {
    /// Parse `http://host:port`, `host:port` or `http://host` (port 80).
    pub fn parse(s: &str) -> Result<ServerAddr, String> {
        match s.split_once("://") {
            Some(("https", _)) => Err(format!(
                "{s:?}: https:// is for a service's servers (url = \"https://...\"), use http:// here"
            )),
            _ => ServerAddr::parse_url(s).map(|(a, _)| a),
        }
    }

    /// Parse a server URL: `http://host[:port]` (port 80), `host:port`, or `https://host[:port]`
    /// (port 443), which also gives the host to name in TLS (SNI, the certificate check).
    pub fn parse_url(s: &str) -> Result<(ServerAddr, Option<String>), String> {
        let (rest, tls, default_port) = match s.split_once("://") {
            Some(("http", rest)) => (rest, false, 80),
            Some(("https", rest)) => (rest, true, 443),
            Some((scheme, _)) => {
                return Err(format!(
                    "{s:?}: scheme {scheme:?} is not supported, use http:// or https://"
                ))
            }
            None => (s, false, 80),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
            return Err(format!(
                "{s:?}: expected http://host:port or https://host:port"
            ));
        }
        let addr = ServerAddr::parse_authority(s, rest, default_port)?;
        let name = tls.then(|| {
            let host = match rest.parse::<SocketAddr>() {
                Ok(sa) => sa.ip().to_string(),
                Err(_) => rest
                    .rsplit_once(':')
                    .filter(|(_, p)| p.parse::<u16>().is_ok())
                    .map_or(rest, |(h, _)| h)
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
            };
            host.to_ascii_lowercase()
        });
        Ok((addr, name))
    }

    fn parse_authority(s: &str, rest: &str, default_port: u16) -> Result<ServerAddr, String> {
        if let Ok(sa) = rest.parse::<SocketAddr>() {
            return Ok(ServerAddr::Socket(sa));
        }
        let (host, port) = match rest.rsplit_once(':') {
            // `[::1]`: an IPv6 address without a port.
            _ if rest.starts_with('[') && rest.ends_with(']') => (rest, default_port),
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("{s:?}: {p:?} is not a port number"))?,
            ),
            None => (rest, default_port),
        };
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
        {
            return Ok(ServerAddr::Socket(SocketAddr::new(ip, port)));
        }
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return Err(format!("{s:?}: {host:?} is not a host name"));
        }
        Ok(ServerAddr::Host(host.to_ascii_lowercase(), port))
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerAddr::Socket(sa) => write!(f, "{sa}"),
            ServerAddr::Host(h, p) => write!(f, "{h}:{p}"),
        }
    }
}

/// How a service picks a server for a request that is not pinned.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub enum BalanceAlgo {
    /// Smooth weighted round robin (as NGINX): weights 3:1 give A A B A, never A A A B bursts.
    #[default]
    RoundRobin,
    /// Power of two choices on outstanding requests, scaled by weight.
    LeastRequests,
    /// Consistent hash ring: removing one of n servers moves about 1/n of the keys.
    ConsistentHash(HashOn),
}

/// What the consistent hash is computed from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HashOn {
    ClientIp,
    /// Lower-case header name.
    Header(String),
    Cookie(String),
}

/// Session affinity for a service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AffinityPolicy {
    pub mode: AffinityMode,
    /// Mark responses that set the cookie as not cacheable.
    pub nocache: bool,
    pub on_missing: OnMissing,
}

/// Where the server key travels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AffinityMode {
    /// Tether inserts its own cookie.
    Cookie(CookieAttrs),
    /// HAProxy `prefix`: `<key>~` is prefixed to the application's cookie on the way out and
    /// stripped on the way in, so the application sees exactly its own value.
    Prefix { cookie: String },
}

/// Attributes of an inserted cookie.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CookieAttrs {
    pub name: String,
    pub path: String,
    pub domain: Option<String>,
    pub secure: bool,
    pub http_only: bool,
    pub same_site: Option<SameSite>,
    pub max_age: Option<Duration>,
}

impl CookieAttrs {
    /// Defaults for a service: cookie `tether_<service>`, Path=/, HttpOnly, SameSite=Lax, session cookie.
    /// A provider suffix (`web@docker`) is left out of the name.
    pub fn for_service(service: &str) -> CookieAttrs {
        let base = service.split('@').next().unwrap_or(service);
        let safe: String = base
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        CookieAttrs {
            name: format!("tether_{safe}"),
            path: "/".into(),
            domain: None,
            secure: false,
            http_only: true,
            same_site: Some(SameSite::Lax),
            max_age: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

impl SameSite {
    pub fn parse(s: &str) -> Result<SameSite, String> {
        match s.to_ascii_lowercase().as_str() {
            "strict" => Ok(SameSite::Strict),
            "lax" => Ok(SameSite::Lax),
            "none" => Ok(SameSite::None),
            _ => Err(format!("{s:?}: expected Strict, Lax or None")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// What happens when the pinned server is gone or unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum OnMissing {
    /// Choose a new server by consistent hash of the old key, so every proxy replica agrees.
    #[default]
    Rebalance,
    /// Answer 503: the session's state is lost and the application prefers to say so.
    Fail,
}

impl OnMissing {
    pub fn parse(s: &str) -> Result<OnMissing, String> {
        match s {
            "rebalance" => Ok(OnMissing::Rebalance),
            "fail" => Ok(OnMissing::Fail),
            _ => Err(format!("{s:?}: expected \"rebalance\" or \"fail\"")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_parse() {
        assert_eq!(
            ServerAddr::parse("http://127.0.0.1:9000")
                .unwrap()
                .to_string(),
            "127.0.0.1:9000"
        );
        assert_eq!(
            ServerAddr::parse("10.0.0.5:8000").unwrap().to_string(),
            "10.0.0.5:8000"
        );
        assert_eq!(
            ServerAddr::parse("http://[::1]:81/").unwrap().to_string(),
            "[::1]:81"
        );
        assert_eq!(
            ServerAddr::parse("http://web").unwrap(),
            ServerAddr::Host("web".into(), 80)
        );
        assert!(ServerAddr::parse("https://a:1").is_err());
        assert_eq!(
            ServerAddr::parse_url("https://API.example.com").unwrap(),
            (
                ServerAddr::Host("api.example.com".into(), 443),
                Some("api.example.com".to_string())
            )
        );
        assert_eq!(
            ServerAddr::parse_url("https://10.0.0.5:8443/").unwrap(),
            (
                ServerAddr::Socket("10.0.0.5:8443".parse().unwrap()),
                Some("10.0.0.5".to_string())
            )
        );
        assert_eq!(
            ServerAddr::parse_url("https://[::1]").unwrap().1.as_deref(),
            Some("::1")
        );
        assert_eq!(ServerAddr::parse_url("http://a:1").unwrap().1, None);
        assert!(ServerAddr::parse_url("ftp://a:1")
            .unwrap_err()
            .contains("use http:// or https://"));
        assert!(ServerAddr::parse("http://a:99999").is_err());
        assert!(ServerAddr::parse("http://a/b").is_err());
    }
}
