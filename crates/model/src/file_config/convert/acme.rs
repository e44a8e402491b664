//! `[acme.NAME]` and a route's `tls = { resolver, domains }`: ACME as the file declares it. The
//! checks that need the entrypoints as `--entrypoint` leaves them (a plain entrypoint for
//! HTTP-01, a TLS one for TLS-ALPN-01) are [`crate::acme::check_settings`]'s.

use super::super::raw::{RawAcme, RawConfig, RawRouteTls, S};
use super::{positive_duration, Ctx};
use crate::acme::{check_email, AcmeResolver, Challenge, Domain, KeyType, RouteTls};

/// Every `[acme.NAME]`, by name.
pub(super) fn resolvers(cx: &mut Ctx<'_>, raw: &RawConfig) -> Vec<AcmeResolver> {
    let mut out = Vec::new();
    for (name, r) in &raw.acme {
        if !crate::validate::is_name(name) {
            cx.err(
                Some(r.span()),
                format!("acme.{name}"),
                "a name may hold letters, digits, '-', '_', '.' and '@'",
            );
            continue;
        }
        if let Some(r) = resolver(cx, name, r) {
            out.push(r);
        }
    }
    out
}

fn resolver(cx: &mut Ctx<'_>, name: &str, r: &S<RawAcme>) -> Option<AcmeResolver> {
    let r = r.get_ref();
    let f = |k: &str| format!("acme.{name}.{k}");
    let email = cx.check(
        &r.email,
        || f("email"),
        |e| check_email(e.trim()).map(|()| e.trim().to_string()),
    );
    let ca = match &r.ca {
        Some(ca) => cx.check(ca, || f("ca"), |s| AcmeResolver::parse_ca(s)),
        None => Some(crate::acme::LETSENCRYPT.to_string()),
    };
    let ca_root = r
        .ca_root
        .as_ref()
        .map(|p| std::path::PathBuf::from(p.get_ref()));
    let challenge = match &r.challenge {
        None => Some(Challenge::Http01),
        Some(c) => cx.check(
            c,
            || f("challenge"),
            |s| match s.trim().to_ascii_lowercase().as_str() {
                "http-01" => Ok(Challenge::Http01),
                "tls-alpn-01" => Ok(Challenge::TlsAlpn01),
                "dns-01" => Err("\"dns-01\" is not offered: it needs a DNS provider's API; use \"http-01\" or \"tls-alpn-01\" (and no wildcard names)".into()),
                other => Err(format!("{other:?}: expected \"http-01\" or \"tls-alpn-01\"")),
            },
        ),
    };
    let key_type = match &r.key_type {
        None => Some(KeyType::P256),
        Some(k) => cx.check(k, || f("key_type"), |s| KeyType::parse(s)),
    };
    let renew_before = match &r.renew_before {
        None => Some(None),
        Some(d) => cx
            .check(d, || f("renew_before"), |s| positive_duration(s))
            .map(Some),
    };
    let max_orders_per_hour = match &r.max_orders_per_hour {
        None => Some(AcmeResolver::MAX_ORDERS_PER_HOUR),
        Some(n) => cx.check(
            n,
            || f("max_orders_per_hour"),
            |n| {
                u32::try_from(*n)
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| format!("{n}: expected 1 to 10000 orders"))
            },
        ),
    };
    Some(AcmeResolver {
        name: name.to_string(),
        email: email?,
        ca: ca?,
        ca_root,
        challenge: challenge?,
        key_type: key_type?,
        renew_before: renew_before?,
        max_orders_per_hour: max_orders_per_hour?,
    })
}

/// A route's `tls`; `resolvers` are the file's resolver names when the file is the whole
/// configuration (a route from another source may name a resolver only the table knows).
pub(super) fn route_tls(
    cx: &mut Ctx<'_>,
    route: &str,
    t: &S<RawRouteTls>,
    resolvers: Option<&[String]>,
) -> Option<RouteTls> {
    let raw = t.get_ref();
    let resolver = raw
        .resolver
        .as_ref()
        .map(|r| r.get_ref().trim().to_string());
    if let (Some(name), Some(known), Some(span)) = (
        &resolver,
        resolvers,
        raw.resolver.as_ref().map(|r| r.span()),
    ) {
        if !known.contains(name) {
            let names: Vec<&str> = known.iter().map(String::as_str).collect();
            cx.err(
                Some(span),
                format!("routes.{route}.tls.resolver"),
                if names.is_empty() {
                    format!("no ACME resolver named {name:?}: declare it as [acme.{name}]")
                } else {
                    format!(
                        "no ACME resolver named {name:?} (declared: {})",
                        names.join(", ")
                    )
                },
            );
            return None;
        }
    }
    let mut domains = Vec::new();
    for (i, d) in raw.domains.iter().enumerate() {
        let main = d.get_ref().main.trim();
        if main.is_empty() {
            cx.err(
                Some(d.span()),
                format!("routes.{route}.tls.domains[{i}].main"),
                "empty: expected a host name",
            );
            continue;
        }
        domains.push(Domain {
            main: main.to_string(),
            sans: d.get_ref().sans.clone(),
        });
    }
    if !raw.domains.is_empty() && resolver.is_none() {
        cx.err(
            Some(t.span()),
            format!("routes.{route}.tls.domains"),
            "domains name what a resolver orders: give tls.resolver too (certificates from files or the API are picked by the client's SNI name, whatever the route says)",
        );
        return None;
    }
    Some(RouteTls { resolver, domains })
}
