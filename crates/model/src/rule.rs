//! Routing rules: a small boolean language over request properties, compatible with Traefik's.
//!
//! ```text
//! Host(`example.com`, `*.example.org`) && (PathPrefix(`/api`) || Path(`/health`)) && !Method(`DELETE`)
//! ```
//! Matchers: `Host` (exact or `*.` wildcard, case-insensitive, port ignored), `Path` (exact),
//! `PathPrefix` (string prefix), `Method`, `Header(name, value)`, `ClientIP` (an address or CIDR
//! range; the client's address as admitted: the peer's, or the first untrusted hop of a trusted
//! proxy's `X-Forwarded-For`). Arguments are quoted with backticks or double quotes; a matcher
//! with several arguments matches any of them.
//!
//! A TCP router's rule ([`Rule::parse_tcp`]) is parsed by the same parser with other matchers:
//! `HostSNI` (the TLS ClientHello's server name, with the same patterns as `Host`; `*` matches
//! every connection, with a name or without), `HostSNIRegexp` (a regular expression the server
//! name must match, unanchored unless it says `^`/`$`, as Traefik v3's) and `ClientIP`.

mod parse;

use std::borrow::Cow;
use std::fmt;

pub use parse::{Mode, RuleError};

/// A parsed rule. Evaluate with [`Rule::matches`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// `Host(...)`: any of the patterns.
    Host(Vec<HostPattern>),
    /// `Path(...)`: the path equals one of the values.
    Path(Vec<String>),
    /// `PathPrefix(...)`: the path starts with one of the values.
    PathPrefix(Vec<String>),
    /// `Method(...)`: the method is one of the values (upper case).
    Method(Vec<String>),
    /// `Header(name, value)`: a header named `name` (lower case) has exactly `value`.
    Header(String, String),
    /// `ClientIP(...)`: the client's address is in one of the ranges.
    ClientIp(Vec<crate::file_config::Cidr>),
    /// `HostSNI(...)` (TCP routers only): the server name of the TLS ClientHello.
    HostSni(SniMatch),
    /// `HostSNIRegexp(...)` (TCP routers only): the server name matches one of the expressions.
    HostSniRegexp(Vec<SniRegex>),
    And(Box<Rule>, Box<Rule>),
    Or(Box<Rule>, Box<Rule>),
    Not(Box<Rule>),
}

/// What `HostSNI(...)` accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SniMatch {
    /// `HostSNI(`*`)`: every connection, TLS or not, with a server name or without.
    Any,
    /// A ClientHello naming one of these (lower case, one trailing dot left out).
    Names(Vec<HostPattern>),
}

/// A regular expression over a ClientHello's server name (lower case, no trailing dot), matched
/// without regard to case. Two are equal when their sources are.
#[derive(Clone)]
pub struct SniRegex {
    source: String,
    regex: regex::Regex,
}

impl SniRegex {
    /// Compile `source` (size-limited, as every regex a source may send is); the error names
    /// the column of a syntax error.
    pub fn new(source: &str) -> Result<SniRegex, String> {
        crate::middleware::regex(source)?;
        let regex = regex::RegexBuilder::new(source)
            .case_insensitive(true)
            .size_limit(crate::middleware::REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| format!("invalid regex {source:?}: {e}"))?;
        Ok(SniRegex {
            source: source.to_string(),
            regex,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn is_match(&self, name: &str) -> bool {
        self.regex.is_match(name)
    }
}

impl PartialEq for SniRegex {
    fn eq(&self, other: &SniRegex) -> bool {
        self.source == other.source
    }
}

impl Eq for SniRegex {}

impl fmt::Debug for SniRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SniRegex({:?})", self.source)
    }
}

/// What a TCP router's rule looks at: the ClientHello's server name (lower case, without a
/// trailing dot; `None` for plain TCP or a ClientHello without one) and the client's address.
#[derive(Debug, Clone, Copy)]
pub struct ConnView<'a> {
    pub sni: Option<&'a str>,
    pub client: std::net::IpAddr,
}

/// A host pattern: `example.com` or `*.example.com` (any depth of subdomain).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// Lower-case host name.
    Exact(String),
    /// Lower-case suffix without the `*.`: `example.com` for `*.example.com`.
    Wildcard(String),
}

/// What a rule looks at. Host is lower case and has no port.
#[derive(Clone, Copy)]
pub struct RequestView<'a> {
    pub host: &'a str,
    pub path: &'a str,
    pub method: &'a http::Method,
    pub headers: &'a dyn HeaderLookup,
    /// The client's address, as admitted.
    pub client: std::net::IpAddr,
}

impl std::fmt::Debug for RequestView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestView")
            .field("host", &self.host)
            .field("path", &self.path)
            .field("method", self.method)
            .finish_non_exhaustive()
    }
}

/// The request's header fields as a rule reads them, however the proxy holds them.
pub trait HeaderLookup {
    /// Has some field `name` (lower case) exactly `value`?
    fn has_value(&self, name: &str, value: &[u8]) -> bool;
}

impl HeaderLookup for http::HeaderMap {
    fn has_value(&self, name: &str, value: &[u8]) -> bool {
        self.get_all(name).iter().any(|v| v.as_bytes() == value)
    }
}

impl Rule {
    /// Parse an HTTP route's rule; errors give the column and what was expected.
    pub fn parse(src: &str) -> Result<Rule, RuleError> {
        parse::parse(src, Mode::Http)
    }

    /// Parse a TCP router's rule: `HostSNI` and `ClientIP` with `&&`, `||`, `!` and parentheses.
    pub fn parse_tcp(src: &str) -> Result<Rule, RuleError> {
        parse::parse(src, Mode::Tcp)
    }

    /// Does a TCP connection match? (A TCP rule holds no HTTP matcher; one would not match.)
    pub fn matches_conn(&self, c: &ConnView<'_>) -> bool {
        match self {
            Rule::HostSni(SniMatch::Any) => true,
            Rule::HostSni(SniMatch::Names(pats)) => {
                c.sni.is_some_and(|n| pats.iter().any(|p| p.matches(n)))
            }
            Rule::HostSniRegexp(res) => c.sni.is_some_and(|n| res.iter().any(|r| r.is_match(n))),
            Rule::ClientIp(ranges) => ranges.iter().any(|r| r.contains(c.client)),
            Rule::And(a, b) => a.matches_conn(c) && b.matches_conn(c),
            Rule::Or(a, b) => a.matches_conn(c) || b.matches_conn(c),
            Rule::Not(a) => !a.matches_conn(c),
            _ => false,
        }
    }

    /// Is this rule `HostSNI(`*`)` alone: every connection of its entrypoint?
    pub fn is_catch_all(&self) -> bool {
        matches!(self, Rule::HostSni(SniMatch::Any))
    }

    /// Can the rule match only with a server name (it reads the ClientHello)? True when some
    /// `HostSNI` names hosts.
    pub fn needs_sni(&self) -> bool {
        match self {
            Rule::HostSni(SniMatch::Names(_)) | Rule::HostSniRegexp(_) => true,
            Rule::And(a, b) | Rule::Or(a, b) => a.needs_sni() || b.needs_sni(),
            Rule::Not(a) => a.needs_sni(),
            _ => false,
        }
    }

    /// Does the request match?
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        match self {
            Rule::Host(pats) => pats.iter().any(|p| p.matches(req.host)),
            Rule::Path(paths) => paths.iter().any(|p| req.path == p),
            Rule::PathPrefix(prefixes) => prefixes.iter().any(|p| req.path.starts_with(p.as_str())),
            Rule::Method(methods) => methods.iter().any(|m| req.method.as_str() == m),
            Rule::Header(name, value) => req.headers.has_value(name, value.as_bytes()),
            Rule::ClientIp(ranges) => ranges.iter().any(|c| c.contains(req.client)),
            Rule::HostSni(_) | Rule::HostSniRegexp(_) => false,
            Rule::And(a, b) => a.matches(req) && b.matches(req),
            Rule::Or(a, b) => a.matches(req) || b.matches(req),
            Rule::Not(a) => !a.matches(req),
        }
    }

    /// Host patterns that every matching request must satisfy, if the rule implies any.
    /// The router indexes routes by these, so host lookups cost the same for 10 or 10,000 routes.
    /// Borrowed from the rule unless an `||` merges two lists.
    pub fn required_hosts(&self) -> Option<Cow<'_, [HostPattern]>> {
        match self {
            Rule::Host(pats) => Some(Cow::Borrowed(pats)),
            Rule::And(a, b) => match (a.required_hosts(), b.required_hosts()) {
                (Some(x), Some(y)) => Some(if x.len() <= y.len() { x } else { y }),
                (x, y) => x.or(y),
            },
            Rule::Or(a, b) => {
                let mut x = a.required_hosts()?.into_owned();
                x.extend_from_slice(&b.required_hosts()?);
                x.sort();
                x.dedup();
                Some(Cow::Owned(x))
            }
            _ => None,
        }
    }

    /// Path prefixes of which every matching request's path starts with one, if the rule implies
    /// any (`Path(x)` implies the prefix `x`). The router indexes long route lists by these, so
    /// path lookups do not scan every route. Borrowed from the rule unless an `||` merges two lists.
    pub fn required_path_prefixes(&self) -> Option<Cow<'_, [String]>> {
        match self {
            Rule::PathPrefix(p) | Rule::Path(p) => Some(Cow::Borrowed(p)),
            Rule::And(a, b) => match (a.required_path_prefixes(), b.required_path_prefixes()) {
                (Some(x), Some(y)) => Some(if x.len() <= y.len() { x } else { y }),
                (x, y) => x.or(y),
            },
            Rule::Or(a, b) => {
                let mut x = a.required_path_prefixes()?.into_owned();
                x.extend_from_slice(&b.required_path_prefixes()?);
                x.sort_unstable();
                x.dedup();
                Some(Cow::Owned(x))
            }
            _ => None,
        }
    }
}

impl HostPattern {
    /// Parse `example.com` or `*.example.com`; rejects empty labels and other wildcards.
    pub fn parse(s: &str) -> Result<HostPattern, String> {
        let lower = s.trim().to_ascii_lowercase();
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, lower),
        };
        let valid_label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
            return Err(format!(
                "invalid host {s:?}: expected a name such as example.com or *.example.com"
            ));
        }
        Ok(if wild {
            HostPattern::Wildcard(name)
        } else {
            HostPattern::Exact(name)
        })
    }

    /// Does the (lower-case, port-less) host match?
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => host == h,
            HostPattern::Wildcard(suffix) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(h) => write!(f, "{h}"),
            HostPattern::Wildcard(s) => write!(f, "*.{s}"),
        }
    }
}

fn write_args(f: &mut fmt::Formatter<'_>, name: &str, args: &[String]) -> fmt::Result {
    write!(f, "{name}(")?;
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            write!(f, ", ")?;
        }
        write!(f, "`{a}`")?;
    }
    write!(f, ")")
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Host(p) => {
                let s: Vec<String> = p.iter().map(|p| p.to_string()).collect();
                write_args(f, "Host", &s)
            }
            Rule::Path(p) => write_args(f, "Path", p),
            Rule::PathPrefix(p) => write_args(f, "PathPrefix", p),
            Rule::Method(m) => write_args(f, "Method", m),
            Rule::Header(n, v) => write!(f, "Header(`{n}`, `{v}`)"),
            Rule::ClientIp(c) => {
                let s: Vec<String> = c.iter().map(ToString::to_string).collect();
                write_args(f, "ClientIP", &s)
            }
            Rule::HostSni(SniMatch::Any) => write!(f, "HostSNI(`*`)"),
            Rule::HostSni(SniMatch::Names(p)) => {
                let s: Vec<String> = p.iter().map(|p| p.to_string()).collect();
                write_args(f, "HostSNI", &s)
            }
            Rule::HostSniRegexp(res) => {
                let s: Vec<String> = res.iter().map(|r| r.as_str().to_string()).collect();
                write_args(f, "HostSNIRegexp", &s)
            }
            Rule::And(a, b) => write!(f, "({a} && {b})"),
            Rule::Or(a, b) => write!(f, "({a} || {b})"),
            Rule::Not(a) => write!(f, "!{a}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(
        host: &'a str,
        path: &'a str,
        m: &'a http::Method,
        h: &'a http::HeaderMap,
    ) -> RequestView<'a> {
        RequestView {
            host,
            path,
            method: m,
            headers: h,
            client: std::net::Ipv4Addr::LOCALHOST.into(),
        }
    }

    #[test]
    fn client_ip_matches_addresses_and_ranges() {
        let r = Rule::parse("ClientIP(`10.0.0.0/8`, `::1`) && PathPrefix(`/admin`)").unwrap();
        assert_eq!(
            r.to_string(),
            "(ClientIP(`10.0.0.0/8`, `::1/128`) && PathPrefix(`/admin`))"
        );
        let (m, h) = (http::Method::GET, http::HeaderMap::new());
        let at = |ip: &str| {
            let mut v = view("a", "/admin", &m, &h);
            v.client = ip.parse().unwrap();
            r.matches(&v)
        };
        assert!(at("10.1.2.3") && at("::1") && at("::ffff:10.0.0.1"));
        assert!(!at("11.0.0.1") && !at("::2"));
        let e = Rule::parse("ClientIP(`10.0.0.0/40`)")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ClientIP") && e.contains("10.0.0.0/40"), "{e}");
    }

    #[test]
    fn tcp_rules_match_the_server_name_and_the_client() {
        let r =
            Rule::parse_tcp("HostSNI(`db.example`, `*.Mq.example`) && !ClientIP(`10.9.0.0/16`)")
                .unwrap();
        let at = |sni: Option<&str>, ip: &str| {
            r.matches_conn(&ConnView {
                sni,
                client: ip.parse().unwrap(),
            })
        };
        assert!(at(Some("db.example"), "10.1.0.1"));
        assert!(at(Some("a.b.mq.example"), "10.1.0.1"));
        assert!(!at(Some("mq.example"), "10.1.0.1"));
        assert!(!at(Some("db.example"), "10.9.0.1"));
        assert!(!at(None, "10.1.0.1"), "a name is needed");
        assert!(r.needs_sni() && !r.is_catch_all());
        let any = Rule::parse_tcp("HostSNI(`*`)").unwrap();
        assert!(any.is_catch_all() && !any.needs_sni());
        assert!(any.matches_conn(&ConnView {
            sni: None,
            client: "::1".parse().unwrap()
        }));
        assert_eq!(any.to_string(), "HostSNI(`*`)");
        // Each mode refuses the other's matchers, naming them.
        let e = Rule::parse_tcp("Host(`a`)").unwrap_err().to_string();
        assert!(e.contains("Host is an HTTP matcher"), "{e}");
        let e = Rule::parse_tcp("PathPrefix(`/`)").unwrap_err().to_string();
        assert!(e.contains("HostSNI, HostSNIRegexp and ClientIP"), "{e}");
        let e = Rule::parse("HostSNI(`a`)").unwrap_err().to_string();
        assert!(e.contains("TCP router"), "{e}");
        let e = Rule::parse_tcp("HostSNI(`a b`)").unwrap_err().to_string();
        assert!(e.contains("HostSNI: invalid host"), "{e}");
        let e = Rule::parse_tcp("").unwrap_err().to_string();
        assert!(e.contains("HostSNI(`*`)"), "{e}");
    }

    #[test]
    fn host_sni_regexp_matches_the_name_in_any_case_where_the_expression_says() {
        let r = Rule::parse_tcp(r"HostSNIRegexp(`^(api\.)`, `\.internal$`)").unwrap();
        let at = |sni: Option<&str>| {
            r.matches_conn(&ConnView {
                sni,
                client: "10.0.0.1".parse().unwrap(),
            })
        };
        assert!(at(Some("api.foobar.net")));
        assert!(at(Some("db.internal")));
        assert!(!at(Some("test.foobar.net")));
        assert!(!at(Some("db.internal.net")));
        assert!(!at(None), "a name is needed");
        assert!(r.needs_sni() && !r.is_catch_all());
        let upper = Rule::parse_tcp("HostSNIRegexp(`^API\\.`)").unwrap();
        assert!(upper.matches_conn(&ConnView {
            sni: Some("api.x"),
            client: "10.0.0.1".parse().unwrap(),
        }));
        assert_eq!(
            r.to_string(),
            r"HostSNIRegexp(`^(api\.)`, `\.internal$`)",
            "shown as written"
        );
        let e = Rule::parse_tcp("HostSNIRegexp(`^(api`)")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("HostSNIRegexp: invalid regex") && e.contains("column"),
            "{e}"
        );
        let e = Rule::parse("HostSNIRegexp(`^a`)").unwrap_err().to_string();
        assert!(e.contains("TCP router"), "{e}");
    }

    #[test]
    fn evaluates_combinations() {
        let r =
            Rule::parse("Host(`a.com`) && (PathPrefix(`/api`) || Path(`/x`)) && !Method(`DELETE`)")
                .unwrap();
        let h = http::HeaderMap::new();
        let get = http::Method::GET;
        let del = http::Method::DELETE;
        assert!(r.matches(&view("a.com", "/api/v1", &get, &h)));
        assert!(r.matches(&view("a.com", "/x", &get, &h)));
        assert!(!r.matches(&view("a.com", "/xy", &get, &h)));
        assert!(!r.matches(&view("b.com", "/api", &get, &h)));
        assert!(!r.matches(&view("a.com", "/api", &del, &h)));
    }

    #[test]
    fn wildcard_hosts_match_subdomains_only() {
        let p = HostPattern::parse("*.Example.com").unwrap();
        assert!(p.matches("a.example.com"));
        assert!(p.matches("a.b.example.com"));
        assert!(!p.matches("example.com"));
        assert!(!p.matches("aexample.com"));
        assert!(HostPattern::parse("a..com").is_err());
        assert!(HostPattern::parse("*").is_err());
    }

    #[test]
    fn headers_match_exact_values() {
        let r = Rule::parse("Header(`X-Env`, `canary`)").unwrap();
        let mut h = http::HeaderMap::new();
        let get = http::Method::GET;
        assert!(!r.matches(&view("a", "/", &get, &h)));
        h.insert("x-env", "canary".parse().unwrap());
        assert!(r.matches(&view("a", "/", &get, &h)));
    }

    #[test]
    fn required_hosts_follow_the_boolean_structure() {
        let hosts = |s: &str| {
            Rule::parse(s)
                .unwrap()
                .required_hosts()
                .map(Cow::into_owned)
        };
        assert_eq!(hosts("PathPrefix(`/`)"), None);
        assert_eq!(hosts("Host(`a.com`) && PathPrefix(`/`)").unwrap().len(), 1);
        assert_eq!(hosts("Host(`a.com`) || Host(`b.com`)").unwrap().len(), 2);
        assert_eq!(hosts("Host(`a.com`) || PathPrefix(`/`)"), None);
        assert_eq!(hosts("!Host(`a.com`)"), None);
        assert_eq!(
            hosts("(Host(`b.com`) || Host(`a.com`, `b.com`)) && Host(`c.com`, `d.com`, `e.com`)"),
            Some(vec![
                HostPattern::Exact("a.com".into()),
                HostPattern::Exact("b.com".into())
            ])
        );
    }

    #[test]
    fn required_path_prefixes_follow_the_boolean_structure() {
        let prefixes = |s: &str| {
            Rule::parse(s)
                .unwrap()
                .required_path_prefixes()
                .map(Cow::into_owned)
        };
        assert_eq!(prefixes("Host(`a.com`)"), None);
        assert_eq!(
            prefixes("Host(`a.com`) && PathPrefix(`/a`, `/b`) && Path(`/a/x`)"),
            Some(vec!["/a/x".to_string()])
        );
        assert_eq!(
            prefixes("Path(`/b`) || PathPrefix(`/a`, `/b`)"),
            Some(vec!["/a".to_string(), "/b".to_string()])
        );
        assert_eq!(prefixes("Path(`/b`) || Method(`GET`)"), None);
        assert_eq!(prefixes("!PathPrefix(`/a`)"), None);
    }
}
