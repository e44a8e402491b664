//! The file as written: serde structs with spans, before any meaning is given to the values.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::Deserialize;
use toml::Spanned;

pub type S<T> = Spanned<T>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Serving workers (read at start).
    pub workers: Option<S<i64>>,
    pub pin_workers: Option<bool>,
    #[serde(default)]
    pub entrypoints: BTreeMap<String, S<RawEntrypoint>>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    #[serde(default)]
    pub affinity: RawAffinityKey,
    #[serde(default)]
    pub forwarded: RawForwarded,
    #[serde(default)]
    pub admin: Option<S<RawAdmin>>,
    #[serde(default)]
    pub swarm: Option<S<RawSwarm>>,
    #[serde(default)]
    pub stats: Option<S<RawStats>>,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub http: RawHttp,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub routes: BTreeMap<String, S<RawRoute>>,
    #[serde(default)]
    pub services: BTreeMap<String, S<RawService>>,
    #[serde(default)]
    pub middlewares: BTreeMap<String, S<crate::middleware::RawMiddleware>>,
    #[serde(default)]
    pub tcp: RawTcp,
    #[serde(default)]
    pub acme: BTreeMap<String, S<RawAcme>>,
}

/// `[acme.<name>]`: an ACME resolver.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcme {
    pub email: S<String>,
    pub ca: Option<S<String>>,
    pub ca_root: Option<S<String>>,
    pub challenge: Option<S<String>>,
    pub key_type: Option<S<String>>,
    pub renew_before: Option<S<String>>,
    pub max_orders_per_hour: Option<S<i64>>,
}

/// A route's `tls = { resolver = "le", domains = [{ main, sans }] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteTls {
    pub resolver: Option<S<String>>,
    #[serde(default)]
    pub domains: Vec<S<RawDomain>>,
}

/// One certificate of a route's `tls.domains`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDomain {
    pub main: String,
    #[serde(default)]
    pub sans: Vec<String>,
}

/// `[tcp]`: TCP routers and the TCP services they send connections to.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTcp {
    #[serde(default)]
    pub routers: BTreeMap<String, S<RawTcpRouter>>,
    #[serde(default)]
    pub services: BTreeMap<String, S<RawTcpService>>,
    /// Each direction's buffer of a piped connection.
    pub buffer: Option<S<RawSize>>,
    /// How long a client has to send its ClientHello.
    pub hello_timeout: Option<S<String>>,
}

/// `[tcp.routers.<name>]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTcpRouter {
    pub rule: S<String>,
    pub service: S<String>,
    pub priority: Option<i64>,
    #[serde(default)]
    pub entrypoints: Vec<S<String>>,
    pub tls: Option<S<Toggle<RawTcpTls>>>,
}

/// A TCP router's `tls`: only `{ passthrough = true }` for now.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTcpTls {
    pub passthrough: Option<bool>,
}

/// `[tcp.services.<name>]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTcpService {
    #[serde(default)]
    pub servers: Vec<S<RawTcpServer>>,
    pub balance: Option<S<String>>,
    pub hash_on: Option<S<String>>,
    pub health: Option<S<RawTcpHealth>>,
    pub proxy_protocol: Option<S<String>>,
    pub wait_for_server: Option<S<String>>,
    pub wait_queue: Option<S<i64>>,
}

/// A TCP service's server: `{ name = "db-1", address = "10.0.0.5:5432" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTcpServer {
    pub address: S<String>,
    pub name: Option<String>,
    pub weight: Option<S<i64>>,
    #[serde(default)]
    pub draining: bool,
    /// Used only while no other server of the service takes connections.
    #[serde(default)]
    pub backup: bool,
}

/// `[tcp.services.<name>.health]`: a connect check.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTcpHealth {
    pub interval: Option<S<String>>,
    pub timeout: Option<S<String>>,
    pub rise: Option<S<i64>>,
    pub fall: Option<S<i64>>,
}

/// `web = "127.0.0.1:80"` or `[entrypoints.web] address = "...", tls = ...`. Read by hand rather
/// than as an untagged enum, so that an unknown key in the table is named instead of "did not
/// match any variant".
#[derive(Debug)]
pub enum RawEntrypoint {
    Address(String),
    Table {
        address: String,
        tls: Option<Toggle<RawEntrypointTls>>,
        /// `"http"` (the default) or `"tcp"`.
        protocol: Option<String>,
        proxy_protocol: Option<RawAcceptProxy>,
    },
}

/// An entrypoint's `proxy_protocol = { trusted = [...], optional, timeout }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcceptProxy {
    pub trusted: Vec<String>,
    pub optional: Option<bool>,
    pub timeout: Option<String>,
}

/// `true`, `false`, or a table of options (which means on, the options left out at their
/// defaults): an entrypoint's `tls`, a route's `redirect_https` and `hsts`. Read by hand rather
/// than as an untagged enum, so that an unknown key in the table is named instead of "did not
/// match any variant".
#[derive(Debug, Clone)]
pub enum Toggle<T> {
    Off,
    On(T),
}

impl<T: Default> Toggle<T> {
    /// The options when on.
    pub fn on(&self) -> Option<&T> {
        match self {
            Toggle::Off => None,
            Toggle::On(t) => Some(t),
        }
    }
}

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for Toggle<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Default> serde::de::Visitor<'de> for Visit<T> {
            type Value = Toggle<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false, or a table of options")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Toggle<T>, E> {
                Ok(if v {
                    Toggle::On(T::default())
                } else {
                    Toggle::Off
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Toggle<T>, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Toggle::On)
            }
        }
        d.deserialize_any(Visit(std::marker::PhantomData))
    }
}

/// An entrypoint's `tls` options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEntrypointTls {
    pub strict_sni: Option<bool>,
    pub min_version: Option<String>,
    pub alpn: Option<Vec<String>>,
}

/// A route's `redirect_https` options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedirect {
    /// The port the `https://` URL names (default: the TLS entrypoint's).
    pub port: Option<S<i64>>,
    /// The TLS entrypoint whose port it names.
    pub entrypoint: Option<S<String>>,
    /// `false`: 307 rather than 308.
    pub permanent: Option<bool>,
}

/// A route's `hsts` options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHsts {
    pub max_age: Option<S<String>>,
    pub include_subdomains: Option<bool>,
    pub preload: Option<bool>,
}

/// `[tls]`: the certificates TLS entrypoints serve.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    #[serde(default)]
    pub certificates: Vec<S<RawCertificate>>,
}

/// `[[tls.certificates]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub cert_file: String,
    pub key_file: String,
    pub default: Option<bool>,
}

impl<'de> Deserialize<'de> for RawEntrypoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = RawEntrypoint;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a listen address such as \"0.0.0.0:80\" or a table { address = \"...\" }",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawEntrypoint, E> {
                Ok(RawEntrypoint::Address(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawEntrypoint, A::Error> {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Table {
                    address: String,
                    tls: Option<Toggle<RawEntrypointTls>>,
                    protocol: Option<String>,
                    proxy_protocol: Option<RawAcceptProxy>,
                }
                let t = Table::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(RawEntrypoint::Table {
                    address: t.address,
                    tls: t.tls,
                    protocol: t.protocol,
                    proxy_protocol: t.proxy_protocol,
                })
            }
        }
        d.deserialize_any(Visit)
    }
}

/// `[http]`: how requests are read.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub merge_slashes: Option<bool>,
}

/// `[limits]`: what a request may hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub head: Option<S<RawSize>>,
    pub headers: Option<S<i64>>,
    pub uri: Option<S<RawSize>>,
    pub body: Option<S<RawSize>>,
    pub connections_per_client: Option<S<i64>>,
}

/// A size: bytes as an integer, or a string with a unit (`"64KiB"`, `"10MiB"`, `"1GiB"`).
#[derive(Debug, Clone, Copy)]
pub struct RawSize(pub Result<u64, &'static str>);

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = RawSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: bytes, or a string such as \"64KiB\" or \"10MiB\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawSize, E> {
                Ok(RawSize(u64::try_from(v).map_err(|_| "a size is 0 or more")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawSize, E> {
                Ok(RawSize(Ok(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawSize, E> {
                Ok(RawSize(parse_size(v)))
            }
        }
        d.deserialize_any(Visit)
    }
}

/// `"512"`, `"64KiB"`, `"10MiB"`, `"1GiB"` (also `KB`, `MB`, `GB` for powers of 1000).
pub fn parse_size(s: &str) -> Result<u64, &'static str> {
    const BAD: &str = "expected bytes, or a size such as \"64KiB\" or \"10MiB\"";
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| BAD)?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(BAD),
    };
    n.checked_mul(mult).ok_or("too large")
}

/// `[admin] address = "127.0.0.1:8081"`: the admin API's listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub address: S<String>,
}

/// `[stats]`: the stats page, read-only, on traffic entrypoints (HAProxy's `stats uri`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStats {
    pub path: S<String>,
    #[serde(default)]
    pub entrypoints: Vec<String>,
}

/// `[swarm]`: follow a Swarm manager (as `--swarm` does).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSwarm {
    pub endpoint: Option<S<String>>,
    pub poll: Option<S<String>>,
    pub network: Option<S<String>>,
    pub constraint: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub connect: Option<S<String>>,
    pub request_header: Option<S<String>>,
    pub idle: Option<S<String>>,
    pub upstream_response: Option<S<String>>,
    pub request_body: Option<S<String>>,
    pub body_min_rate: Option<S<i64>>,
    pub body_rate_window: Option<S<String>>,
    pub server_keepalive: Option<S<String>>,
    pub tunnel: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAffinityKey {
    pub key: Option<S<String>>,
    pub key_file: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForwarded {
    #[serde(default)]
    pub trusted_proxies: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub rule: S<String>,
    pub service: S<String>,
    pub priority: Option<i64>,
    #[serde(default)]
    pub entrypoints: Vec<S<String>>,
    pub max_body: Option<S<RawSize>>,
    pub redirect_https: Option<S<Toggle<RawRedirect>>>,
    pub hsts: Option<S<Toggle<RawHsts>>>,
    #[serde(default)]
    pub middlewares: Vec<S<String>>,
    pub tls: Option<S<RawRouteTls>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    #[serde(default)]
    pub servers: Vec<S<RawServer>>,
    pub balance: Option<S<String>>,
    pub hash_on: Option<S<String>>,
    pub affinity: Option<S<RawAffinity>>,
    pub resolve: Option<S<String>>,
    pub health: Option<S<RawHealth>>,
    pub tls: Option<S<RawServiceTls>>,
    /// How long a request waits for a server while the service has none ("0s": not at all).
    pub wait_for_server: Option<S<String>>,
    /// Requests that may wait at once.
    pub wait_queue: Option<S<i64>>,
    /// Refused with its reason: the PROXY protocol goes to TCP services' servers only.
    pub proxy_protocol: Option<S<String>>,
}

/// `[services.<name>.tls]`: how the service's `https://` servers are checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServiceTls {
    pub ca_file: Option<S<String>>,
    pub server_name: Option<S<String>>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// `[services.<name>.health]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub path: S<String>,
    pub interval: Option<S<String>>,
    pub timeout: Option<S<String>>,
    pub rise: Option<S<i64>>,
    pub fall: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub url: S<String>,
    pub name: Option<String>,
    pub weight: Option<S<i64>>,
    /// Drained by hand: no new sessions, pinned ones still served.
    #[serde(default)]
    pub draining: bool,
    /// Used only while no other server of the service takes requests.
    #[serde(default)]
    pub backup: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAffinity {
    pub mode: S<String>,
    pub cookie: Option<S<String>>,
    #[serde(default)]
    pub nocache: bool,
    pub on_missing: Option<S<String>>,
    pub path: Option<String>,
    pub domain: Option<S<String>>,
    pub secure: Option<bool>,
    pub http_only: Option<bool>,
    pub same_site: Option<S<String>>,
    pub max_age: Option<S<String>>,
}

/// An address range such as `10.0.0.0/8` or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let bad = || format!("{s:?}: expected an address or range such as 10.0.0.0/8");
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(bad)?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}
