//! Docker Flow Proxy's `reqMode=tcp` and `reqMode=sni`, read alike from `com.df.*` labels and
//! from `reconfigure` parameters:
//!
//! - `reqMode=tcp`: every connection to the proxy's `srcPort` goes to the service's `port`
//!   (Tether's TCP entrypoint on `srcPort`, a ``HostSNI(`*`)`` router);
//! - `reqMode=sni`: a TLS connection to `srcPort` whose ClientHello names a host that
//!   `pathType` and `servicePath` match is passed through, undecrypted, to the service's `port`
//!   (a passthrough router on Tether's TLS or TCP entrypoint on `srcPort`). `pathType` is
//!   HAProxy's `req_ssl_sni` fetch with its match method: `-m str` (the default), `beg`, `end`,
//!   `sub`, `dom` or `reg`, each value of `servicePath` one pattern. The name is matched without
//!   regard to case, since DNS names have none (HAProxy's `-i`, which DFP's examples all set).
//!
//! What only HTTP has (paths, domains, sessions, HTTPS, the request options) is refused by name.

use super::super::Context;
use crate::rule::{HostPattern, Rule};

/// Which of DFP's TCP modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Tcp,
    Sni,
}

impl Mode {
    /// `reqMode`'s value, when it is a TCP mode (`http` and others are not).
    pub fn of(req_mode: &str) -> Option<Mode> {
        match req_mode.to_ascii_lowercase().as_str() {
            "tcp" => Some(Mode::Tcp),
            "sni" => Some(Mode::Sni),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Tcp => "tcp",
            Mode::Sni => "sni",
        }
    }

    /// Is parameter (or label, without `com.df.`) `p` read in this mode (or one of Docker Flow
    /// Swarm Listener's, ignored on purpose: [`super::dfsl`])?
    pub fn reads(self, p: &str) -> bool {
        matches!(
            p,
            "serviceName" | "port" | "srcPort" | "reqMode" | "distribute"
        ) || (self == Mode::Sni && matches!(p, "pathType" | "servicePath"))
            || super::dfsl::ignored(p).is_some()
    }

    /// Why parameter `p` is refused in this mode.
    pub fn refusal(self) -> String {
        match self {
            Mode::Tcp => {
                "not used with reqMode=tcp: every connection to srcPort goes to the service whole"
                    .into()
            }
            Mode::Sni => "not used with reqMode=sni: the connection is passed through undecrypted, so only its server name (pathType, servicePath) can route it".into(),
        }
    }

    /// The missing `srcPort`'s message.
    pub fn src_port_missing(self) -> String {
        format!(
            "missing: reqMode={} needs the proxy's port (srcPort)",
            self.name()
        )
    }

    /// The router's rule, as text (`pathType` and `servicePath` read for SNI); an error names
    /// the parameter (without `com.df.`) it is about.
    pub fn rule(
        self,
        path_type: Option<&str>,
        paths: &[String],
    ) -> Result<String, (&'static str, String)> {
        match self {
            Mode::Tcp => Ok("HostSNI(`*`)".into()),
            Mode::Sni => sni_rule(path_type, paths),
        }
    }

    /// Tether's entrypoint on the proxy's port `src_port`: a TCP one for `tcp`; a TLS one (the
    /// ClientHello peeked beside HTTPS) or a TCP one for `sni`.
    pub fn entrypoint(self, cx: &Context<'_>, src_port: u16) -> Result<String, String> {
        match self {
            Mode::Tcp => cx.tcp_entrypoint_on(src_port),
            Mode::Sni => cx
                .entrypoint_ports
                .iter()
                .find(|(n, p)| {
                    *p == src_port
                        && (cx.tls_entrypoints.contains(n) || cx.tcp_entrypoints.contains(n))
                })
                .map(|(n, _)| n.clone())
                .ok_or_else(|| {
                    format!("Tether has no TLS or TCP entrypoint on port {src_port}: declare one, e.g. --entrypoint websecure=0.0.0.0:{src_port},tls (HTTPS beside the passed-through names) or --entrypoint tls{src_port}=0.0.0.0:{src_port},tcp")
                }),
        }
    }
}

/// How `pathType` matches a server name against each of `servicePath`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Str,
    Beg,
    End,
    Sub,
    Dom,
    Reg,
}

/// `req_ssl_sni -i -m beg` (or `req.ssl_sni`): the match method; every other flag is refused.
fn method(path_type: &str) -> Result<Method, String> {
    let mut words = path_type.split_whitespace();
    match words.next() {
        Some("req_ssl_sni" | "req.ssl_sni") => {}
        Some(other) => {
            return Err(format!(
            "{other:?}: with reqMode=sni the fetch is req_ssl_sni (e.g. \"req_ssl_sni -i -m beg\")"
        ))
        }
        None => return Err("empty: expected e.g. \"req_ssl_sni -i -m beg\"".into()),
    }
    let mut method = Method::Str;
    while let Some(w) = words.next() {
        match w {
            "-i" => {}
            "-m" => {
                method = match words.next() {
                    Some("str") => Method::Str,
                    Some("beg") => Method::Beg,
                    Some("end") => Method::End,
                    Some("sub") => Method::Sub,
                    Some("dom") => Method::Dom,
                    Some("reg") => Method::Reg,
                    Some(m) => {
                        return Err(format!(
                            "-m {m}: not supported for a server name; expected str, beg, end, sub, dom or reg"
                        ))
                    }
                    None => return Err("-m needs a method (str, beg, end, sub, dom or reg)".into()),
                }
            }
            other => {
                return Err(format!(
                    "{other:?}: not supported; pathType takes -i and -m METHOD (the name is always matched without regard to case)"
                ))
            }
        }
    }
    Ok(method)
}

fn sni_rule(path_type: Option<&str>, paths: &[String]) -> Result<String, (&'static str, String)> {
    let method = match path_type {
        Some(t) => method(t).map_err(|m| ("pathType", m))?,
        None => {
            return Err((
                "pathType",
                "missing: reqMode=sni matches the server name with pathType, e.g. \"req_ssl_sni -i -m beg\" (or -m str, end, sub, dom, reg)".into(),
            ))
        }
    };
    if paths.is_empty() {
        return Err((
            "servicePath",
            "missing: reqMode=sni needs the server names (or patterns) to match in servicePath"
                .into(),
        ));
    }
    // An exact name is HostSNI's; every other method a regular expression.
    if method == Method::Str && paths.iter().all(|p| !p.contains('*')) {
        let names: Result<Vec<String>, _> = paths
            .iter()
            .map(|p| HostPattern::parse(p).map(|h| format!("`{h}`")))
            .collect();
        if let Ok(names) = names {
            return Ok(format!("HostSNI({})", names.join(", ")));
        }
    }
    let mut res = Vec::new();
    for p in paths {
        if p.contains('`') {
            return Err(("servicePath", format!("{p:?}: holds a backtick")));
        }
        let e = regex::escape(p);
        res.push(match method {
            Method::Str => format!("^{e}$"),
            Method::Beg => format!("^{e}"),
            Method::End => format!("{e}$"),
            Method::Sub => e,
            Method::Dom => format!(r"(^|\.){e}(\.|$)"),
            Method::Reg => p.clone(),
        });
    }
    let args: Vec<String> = res.iter().map(|r| format!("`{r}`")).collect();
    let rule = format!("HostSNIRegexp({})", args.join(", "));
    Rule::parse_tcp(&rule).map_err(|e| {
        let m = e.message;
        let m = m.strip_prefix("HostSNIRegexp: ").unwrap_or(&m).to_string();
        ("servicePath", m)
    })?;
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(t: &str, paths: &[&str]) -> Result<String, (&'static str, String)> {
        let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        Mode::Sni.rule(Some(t), &paths)
    }

    #[test]
    fn each_match_method_becomes_the_rule_that_matches_the_same_names() {
        let matches = |rule: &str, name: &str| {
            Rule::parse_tcp(rule)
                .unwrap()
                .matches_conn(&crate::ConnView {
                    sni: Some(name),
                    client: "10.0.0.1".parse().unwrap(),
                })
        };
        // The DFP tutorial's two services.
        let beg = rule("req_ssl_sni -i -m beg", &["test."]).unwrap();
        assert!(matches(&beg, "test.foobar.net") && !matches(&beg, "api.test.net"));
        let reg = rule("req_ssl_sni -i -m reg", &[r"^(api\.)"]).unwrap();
        assert!(matches(&reg, "api.foobar.net") && !matches(&reg, "test.foobar.net"));
        let exact = rule("req_ssl_sni -i", &["A.example", "b.example"]).unwrap();
        assert_eq!(exact, "HostSNI(`a.example`, `b.example`)");
        let end = rule("req.ssl_sni -m end", &[".example"]).unwrap();
        assert!(matches(&end, "x.example") && !matches(&end, "x.example.net"));
        let dom = rule("req_ssl_sni -m dom", &["corp"]).unwrap();
        assert!(matches(&dom, "db.corp.net") && !matches(&dom, "db.corporate.net"));
        let sub = rule("req_ssl_sni -m sub", &["a.b"]).unwrap();
        assert!(
            matches(&sub, "xa.by") && !matches(&sub, "xaxb"),
            "the dot is literal"
        );
    }

    #[test]
    fn what_cannot_be_matched_is_named() {
        let e = Mode::Sni.rule(None, &["a".into()]).unwrap_err();
        assert_eq!(e.0, "pathType");
        assert_eq!(rule("path_beg", &["a"]).unwrap_err().0, "pathType");
        assert!(rule("req_ssl_sni -m len", &["a"])
            .unwrap_err()
            .1
            .contains("-m len"));
        assert!(rule("req_ssl_sni -f /x", &["a"])
            .unwrap_err()
            .1
            .contains("\"-f\""));
        assert_eq!(
            rule("req_ssl_sni -m beg", &[]).unwrap_err().0,
            "servicePath"
        );
        let e = rule("req_ssl_sni -m reg", &["^(a"]).unwrap_err();
        assert_eq!(e.0, "servicePath");
        assert!(e.1.contains("invalid regex"), "{e:?}");
    }
}
