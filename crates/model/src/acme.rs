//! Automatic HTTPS: the ACME resolvers of `tether.toml` (`[acme.NAME]`) and what a route asks
//! of them (`tls = { resolver, domains }`), with the checks `tether check` makes.
//!
//! A resolver orders certificates from one ACME directory with one challenge type. A route names
//! a resolver and the names to order: its `domains`, else the host names of its rule's `Host`
//! matchers. Each route's names are one certificate (the first name its subject, all of them its
//! subject alternative names). Wildcards need DNS-01, which Tether does not offer, so they are
//! refused by name, as is a route that gives no name at all.

use std::time::Duration;

use crate::rule::{HostPattern, Rule};

/// Let's Encrypt's production directory: a resolver's default CA.
pub const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory, named `ca = "letsencrypt-staging"`.
pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// How the CA is shown that Tether answers for a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Challenge {
    /// `http-01`: a token under `/.well-known/acme-challenge/` on a plain entrypoint (port 80).
    Http01,
    /// `tls-alpn-01`: a validation certificate for a ClientHello offering `acme-tls/1` on a TLS
    /// entrypoint (port 443).
    TlsAlpn01,
}

impl Challenge {
    pub fn as_str(self) -> &'static str {
        match self {
            Challenge::Http01 => "http-01",
            Challenge::TlsAlpn01 => "tls-alpn-01",
        }
    }

    /// The port the CA connects to.
    pub fn port(self) -> u16 {
        match self {
            Challenge::Http01 => 80,
            Challenge::TlsAlpn01 => 443,
        }
    }
}

/// The key of each certificate ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeyType {
    /// ECDSA on P-256 (the default).
    #[default]
    P256,
    /// ECDSA on P-384.
    P384,
}

impl KeyType {
    pub fn parse(s: &str) -> Result<KeyType, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "P256" | "P-256" | "EC256" | "ECDSA-P256" => Ok(KeyType::P256),
            "P384" | "P-384" | "EC384" | "ECDSA-P384" => Ok(KeyType::P384),
            _ => Err(format!(
                "{s:?}: expected \"P-256\" (the default) or \"P-384\" (ECDSA keys)"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::P256 => "P-256",
            KeyType::P384 => "P-384",
        }
    }
}

/// `[acme.NAME]`: one ACME account and how its orders are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeResolver {
    pub name: String,
    /// The account's contact (`mailto:`); the CA writes to it about expiring certificates.
    pub email: String,
    /// The directory URL.
    pub ca: String,
    /// A PEM file of roots to trust for the directory's own HTTPS (a private CA); else the
    /// system's roots, then Mozilla's.
    pub ca_root: Option<std::path::PathBuf>,
    pub challenge: Challenge,
    pub key_type: KeyType,
    /// Renew this long before expiry; `None`: when a third of the lifetime is left.
    pub renew_before: Option<Duration>,
    /// New orders this resolver may place in any hour (default 20).
    pub max_orders_per_hour: u32,
}

impl AcmeResolver {
    /// The default of `max_orders_per_hour`.
    pub const MAX_ORDERS_PER_HOUR: u32 = 20;

    /// `ca` as written: a URL, or `letsencrypt` / `letsencrypt-staging`.
    pub fn parse_ca(s: &str) -> Result<String, String> {
        match s.trim() {
            "" | "letsencrypt" | "letsencrypt-production" => Ok(LETSENCRYPT.into()),
            "letsencrypt-staging" => Ok(LETSENCRYPT_STAGING.into()),
            url if url.starts_with("https://") && url.len() > "https://".len() => Ok(url.into()),
            url if url.starts_with("http://") => Err(format!(
                "{url:?}: an ACME directory is served over HTTPS (RFC 8555 section 6.1)"
            )),
            other => Err(format!(
                "{other:?}: expected an ACME directory URL (https://...), \"letsencrypt\" or \"letsencrypt-staging\""
            )),
        }
    }

    /// When a certificate valid from `not_before` to `not_after` is due for renewal.
    pub fn renew_at(
        &self,
        not_before: std::time::SystemTime,
        not_after: std::time::SystemTime,
    ) -> std::time::SystemTime {
        let lifetime = not_after
            .duration_since(not_before)
            .unwrap_or(Duration::ZERO);
        let before = self.renew_before.unwrap_or(lifetime / 3);
        not_after
            .checked_sub(before)
            .unwrap_or(std::time::UNIX_EPOCH)
    }
}

/// Is `s` an address a CA accepts as a contact: `local@domain.tld`, no spaces, no `mailto:`.
pub fn check_email(s: &str) -> Result<(), String> {
    let bad = || {
        Err(format!(
            "{s:?}: expected an email address such as admin@example.com"
        ))
    };
    let Some((local, domain)) = s.rsplit_once('@') else {
        return bad();
    };
    let printable = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | ',' | ';' | '"' | '@'))
    };
    if !printable(local) || !printable(domain) || !domain.contains('.') {
        return bad();
    }
    if domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
        return bad();
    }
    Ok(())
}

/// One certificate a route asks for: the first name is its subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Domain {
    pub main: String,
    pub sans: Vec<String>,
}

impl Domain {
    /// Every name, the main one first, lower case, each once.
    pub fn names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::with_capacity(1 + self.sans.len());
        for n in std::iter::once(&self.main).chain(&self.sans) {
            let n = n.trim().trim_end_matches('.').to_ascii_lowercase();
            if !out.contains(&n) {
                out.push(n);
            }
        }
        out
    }
}

/// A route's `tls`: the resolver that orders its certificate and the names to order. It does not
/// limit which entrypoints serve the route.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct RouteTls {
    pub resolver: Option<String>,
    pub domains: Vec<Domain>,
}

/// A certificate to order: a resolver and its names (the first is the subject).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Wanted {
    pub resolver: String,
    pub names: Vec<String>,
}

/// Is `name` one a CA can issue for by HTTP-01 or TLS-ALPN-01: a DNS name of two labels or more,
/// letters, digits and hyphens, no wildcard, not an IP address.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.starts_with("*.") || name.contains('*') {
        return Err(format!(
            "{name:?}: a wildcard certificate needs the DNS-01 challenge, which Tether does not offer; name each host, or give the certificate another way (tls.certificates, the admin API)"
        ));
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "{name:?}: an IP address: ACME orders here are for DNS names"
        ));
    }
    let ok_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if name.len() > 253 || !name.contains('.') || !name.split('.').all(ok_label) {
        return Err(format!(
            "{name:?}: not a DNS name a CA issues for (letters, digits and '-', two labels or more)"
        ));
    }
    Ok(())
}

/// The host names of every `Host` matcher in `rule` that a request may match (not under `!`),
/// in order, each once.
pub fn rule_hosts(rule: &Rule) -> Vec<HostPattern> {
    fn walk(r: &Rule, negated: bool, out: &mut Vec<HostPattern>) {
        match r {
            Rule::Host(pats) if !negated => {
                for p in pats {
                    if !out.contains(p) {
                        out.push(p.clone());
                    }
                }
            }
            Rule::And(a, b) | Rule::Or(a, b) => {
                walk(a, negated, out);
                walk(b, negated, out);
            }
            Rule::Not(a) => walk(a, !negated, out),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(rule, false, &mut out);
    out
}

/// What route `route` (named so in errors) with rule `rule` and `tls` asks `resolver` to order:
/// one certificate per domain, else one for its rule's hosts. An error names the field.
pub fn wanted(route: &str, rule: &Rule, tls: &RouteTls) -> Result<Vec<Wanted>, (String, String)> {
    let Some(resolver) = &tls.resolver else {
        return Ok(Vec::new());
    };
    let field = |f: &str| format!("routes.{route}.tls.{f}");
    let mut out = Vec::new();
    if tls.domains.is_empty() {
        let hosts = rule_hosts(rule);
        let mut names = Vec::new();
        for h in hosts {
            match h {
                HostPattern::Exact(n) => names.push(n),
                HostPattern::Wildcard(w) => {
                    return Err((
                        field("resolver"),
                        check_name(&format!("*.{w}")).unwrap_err(),
                    ))
                }
            }
        }
        if names.is_empty() {
            return Err((
                field("resolver"),
                "no name to order: give tls.domains, or a Host matcher in the rule".into(),
            ));
        }
        for n in &names {
            check_name(n).map_err(|m| (field("resolver"), m))?;
        }
        out.push(Wanted {
            resolver: resolver.clone(),
            names,
        });
    } else {
        for (i, d) in tls.domains.iter().enumerate() {
            let names = d.names();
            for n in &names {
                check_name(n).map_err(|m| (field(&format!("domains[{i}]")), m))?;
            }
            out.push(Wanted {
                resolver: resolver.clone(),
                names,
            });
        }
    }
    Ok(out)
}

/// What `settings` lacks for its resolvers to work (errors), and what may not (warnings), each
/// naming the resolver: HTTP-01 needs a plain HTTP entrypoint and TLS-ALPN-01 a TLS one; a
/// challenge entrypoint on another port than the CA's (80, 443) works only if something sends
/// that port there (Docker's published port, say).
pub fn check_settings(settings: &crate::file_config::Settings) -> (Vec<String>, Vec<String>) {
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    if !settings.acme.is_empty() && settings.tls.entrypoints.is_empty() {
        errors.push(format!(
            "acme.{}: the certificates ordered serve on TLS entrypoints, and there is none: add one (websecure = {{ address = \"0.0.0.0:443\", tls = true }})",
            settings.acme[0].name
        ));
    }
    for r in &settings.acme {
        let field = format!("acme.{}.challenge", r.name);
        let candidates: Vec<&(String, std::net::SocketAddr)> = settings
            .entrypoints
            .iter()
            .filter(|(n, _)| !settings.tcp_entrypoints.contains(n))
            .filter(|(n, _)| {
                settings.tls.entrypoints.contains_key(n) == (r.challenge == Challenge::TlsAlpn01)
            })
            .collect();
        if candidates.is_empty() {
            errors.push(match r.challenge {
                Challenge::Http01 => format!("{field}: \"http-01\" needs a plain HTTP entrypoint (the CA asks for http://NAME/.well-known/acme-challenge/... on port 80); declare one, or use \"tls-alpn-01\""),
                Challenge::TlsAlpn01 => format!("{field}: \"tls-alpn-01\" needs a TLS entrypoint (tls = true; the CA connects to port 443); declare one, or use \"http-01\""),
            });
        } else if !candidates
            .iter()
            .any(|(_, a)| a.port() == r.challenge.port())
        {
            let list: Vec<String> = candidates
                .iter()
                .map(|(n, a)| format!("{n} on {}", a.port()))
                .collect();
            warnings.push(format!(
                "{field}: the CA validates {} on port {}, and no entrypoint listens on it ({}): the name must reach one of them on port {} (a port Docker publishes, a load balancer)",
                r.challenge.as_str(),
                r.challenge.port(),
                list.join(", "),
                r.challenge.port()
            ));
        }
    }
    (errors, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(rule: &str, tls: RouteTls) -> Result<Vec<Wanted>, (String, String)> {
        wanted("r", &Rule::parse(rule).unwrap(), &tls)
    }

    fn le() -> RouteTls {
        RouteTls {
            resolver: Some("le".into()),
            domains: Vec::new(),
        }
    }

    #[test]
    fn names_come_from_domains_else_from_the_rule_hosts() {
        let w = want(
            "Host(`A.example`) || (Host(`b.example`) && PathPrefix(`/x`))",
            le(),
        )
        .unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].names, ["a.example", "b.example"]);
        let tls = RouteTls {
            domains: vec![Domain {
                main: "c.example".into(),
                sans: vec!["d.example.".into(), "C.example".into()],
            }],
            ..le()
        };
        let w = want("Host(`a.example`)", tls).unwrap();
        assert_eq!(w[0].names, ["c.example", "d.example"]);
        // No resolver: nothing to order.
        assert!(want("PathPrefix(`/`)", RouteTls::default())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn no_name_wildcards_and_negated_hosts_are_refused_by_field() {
        let (f, m) = want("PathPrefix(`/`)", le()).unwrap_err();
        assert_eq!(f, "routes.r.tls.resolver");
        assert!(m.contains("no name to order"), "{m}");
        let (_, m) = want("!Host(`a.example`)", le()).unwrap_err();
        assert!(m.contains("no name to order"), "{m}");
        let (_, m) = want("Host(`*.a.example`)", le()).unwrap_err();
        assert!(m.contains("DNS-01"), "{m}");
        let tls = RouteTls {
            domains: vec![Domain {
                main: "a.example".into(),
                sans: vec!["*.a.example".into()],
            }],
            ..le()
        };
        let (f, m) = want("Host(`a.example`)", tls).unwrap_err();
        assert_eq!(f, "routes.r.tls.domains[0]");
        assert!(m.contains("DNS-01"), "{m}");
        assert!(check_name("localhost").is_err());
        assert!(check_name("10.0.0.1").is_err());
        assert!(check_name("a_b.example").is_err());
    }

    #[test]
    fn emails_cas_and_key_types_are_checked() {
        assert!(check_email("ops@example.com").is_ok());
        for bad in [
            "",
            "ops",
            "ops@",
            "@example.com",
            "ops@example",
            "o ps@example.com",
            "mailto:ops@example.com@x",
        ] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
        assert_eq!(AcmeResolver::parse_ca("").unwrap(), LETSENCRYPT);
        assert_eq!(
            AcmeResolver::parse_ca("letsencrypt-staging").unwrap(),
            LETSENCRYPT_STAGING
        );
        assert!(AcmeResolver::parse_ca("http://ca/dir").is_err());
        assert!(AcmeResolver::parse_ca("ca.example").is_err());
        assert_eq!(KeyType::parse("p-384").unwrap(), KeyType::P384);
        assert!(KeyType::parse("rsa2048").is_err());
    }

    #[test]
    fn renewal_is_due_a_third_of_the_lifetime_before_expiry_unless_set() {
        let t0 = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let day = Duration::from_secs(86_400);
        let mut r = AcmeResolver {
            name: "le".into(),
            email: "a@b.c".into(),
            ca: LETSENCRYPT.into(),
            ca_root: None,
            challenge: Challenge::Http01,
            key_type: KeyType::P256,
            renew_before: None,
            max_orders_per_hour: 20,
        };
        assert_eq!(r.renew_at(t0, t0 + 90 * day), t0 + 60 * day);
        r.renew_before = Some(10 * day);
        assert_eq!(r.renew_at(t0, t0 + 90 * day), t0 + 80 * day);
    }
}
