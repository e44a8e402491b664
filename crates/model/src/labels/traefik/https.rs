//! A Traefik v2/v3 router's entrypoints, `tls` and middlewares, as Tether routes them:
//!
//! - `traefik.http.routers.<r>.entrypoints=web,websecure`: Tether's entrypoints of those names,
//!   or its plain and its TLS entrypoint for `web`/`http` and `websecure`/`https`;
//! - `traefik.http.routers.<r>.tls=true` (or any `tls.*`): served on the TLS entrypoints only.
//!   `tls.certresolver` names the ACME resolver (`[acme.NAME]`) that orders the route's
//!   certificate, for the names of `tls.domains[n].main`/`.sans`, else of its rule's `Host`
//!   matchers; without a resolver, `tls.domains` only asks for TLS (the certificate is picked by
//!   SNI from Tether's store); `tls.options` other than `default` is refused (TLS options are
//!   set per entrypoint in Tether);
//! - `traefik.http.routers.<r>.middlewares=a,b,auth@file`: the route's middlewares, in order
//!   (`a` is `a@docker`, defined on any container's labels, see [`super::middlewares`]).

use std::collections::BTreeMap;

use super::super::{list, parse_bool, Container, Context, LabelError};
use crate::acme::RouteTls;
use crate::decl::{Hsts, HttpsRedirect, RouteDecl};
use crate::labels::acme::DomainLabels;

/// Fields by lower-case name: (original key, value).
pub(crate) type Fields<'a> = BTreeMap<String, (&'a str, &'a str)>;

pub(super) const MIDDLEWARES: &str = "traefik.http.middlewares.";

/// Give route `r` its router's entrypoints, TLS and middlewares.
pub(super) fn apply(
    c: &Container,
    cx: &Context<'_>,
    fields: &Fields<'_>,
    r: &mut RouteDecl,
) -> Vec<LabelError> {
    let mut errors = Vec::new();
    if let Some((k, v)) = fields.get("entrypoints") {
        for name in list(v) {
            match cx.entrypoint(&name) {
                Ok(e) => r.entrypoints.push(e),
                Err(m) => errors.push(c.label_error(k, m)),
            }
        }
    }
    if let Err(e) = tls(c, cx, fields, r) {
        errors.push(e);
    }
    if let Some((_, v)) = fields.get("middlewares") {
        // Another container's, or another source's (`auth@file`): the merged table checks that
        // it exists.
        r.middlewares = list(v)
            .iter()
            .map(|m| crate::middleware::qualify(m, "docker"))
            .collect();
    }
    errors
}

/// `tls=true` or any `tls.*`: the route is served over TLS only.
fn tls(
    c: &Container,
    cx: &Context<'_>,
    fields: &Fields<'_>,
    r: &mut RouteDecl,
) -> Result<(), LabelError> {
    let mut on = false;
    let mut key = None;
    let mut resolver: Option<(&str, &str)> = None;
    let mut domains = DomainLabels::default();
    for (field, (k, v)) in fields.range("tls".to_string()..) {
        if field != "tls" && !field.starts_with("tls.") {
            break;
        }
        key.get_or_insert(*k);
        if field == "tls" {
            on |= parse_bool(v).ok_or_else(|| c.label_error(k, "expected true or false"))?;
        } else if field == "tls.options" {
            if !v.trim().is_empty() && !v.trim().eq_ignore_ascii_case("default") {
                return Err(c.label_error(k, "Traefik's TLS options are not read: Tether sets TLS options on its entrypoint (tls = { min_version, alpn, strict_sni })"));
            }
            on = true;
        } else if field == "tls.certresolver" {
            resolver = Some((k, v.trim()));
            on = true;
        } else if let Some(r) = domains.take(field, k, v) {
            r.map_err(|m| c.label_error(k, m))?;
            on = true;
        } else {
            return Err(c.label_error(
                k,
                "unknown tls option: expected tls, tls.certresolver, tls.domains or tls.options",
            ));
        }
    }
    let (true, Some(k)) = (on, key) else {
        return Ok(());
    };
    // With a resolver, the names it orders; without one, `tls.domains` only says the route is
    // served over TLS (the certificate is picked by SNI from Tether's store).
    if let Some((rk, name)) = resolver {
        let list = domains.domains().map_err(|(dk, m)| c.label_error(dk, m))?;
        let tls = RouteTls {
            resolver: Some(name.to_string()),
            domains: list,
        };
        if let Err((_, m)) = crate::acme::wanted(&r.name, &r.rule, &tls) {
            return Err(c.label_error(rk, m));
        }
        r.tls = Some(tls);
    }
    let tls = cx.tls_only().map_err(|m| c.label_error(k, m))?;
    if r.entrypoints.is_empty() {
        r.entrypoints = tls;
        return Ok(());
    }
    r.entrypoints.retain(|e| tls.contains(e));
    if r.entrypoints.is_empty() {
        return Err(c.label_error(
            k,
            format!(
                "none of the router's entrypoints terminates TLS (Tether's TLS entrypoints: {})",
                tls.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Traefik v1's frontend redirect and STS labels (`<type>.<option>`, lower case, as a v2
/// middleware would name them) as the route's `redirect_https` and `hsts`.
pub(crate) fn middleware(
    c: &Container,
    name: &str,
    m: &Fields<'_>,
    r: &mut RouteDecl,
) -> Vec<LabelError> {
    let mut errors = Vec::new();
    let mut redirect: Option<HttpsRedirect> = None;
    let mut hsts: Option<Hsts> = None;
    let mut sts_seconds = None;
    for (field, (k, v)) in m {
        let bad = |msg: &str| c.label_error(k, msg);
        let flag = || parse_bool(v).ok_or_else(|| bad("expected true or false"));
        let (kind, option) = field.split_once('.').unwrap_or((field, ""));
        match (kind, option) {
            ("redirectscheme", "scheme") => {
                if !v.trim().eq_ignore_ascii_case("https") {
                    errors.push(bad("Tether redirects to https only"));
                }
                redirect.get_or_insert_with(temporary);
            }
            ("redirectscheme", "permanent") => match flag() {
                Ok(p) => redirect.get_or_insert_with(temporary).permanent = p,
                Err(e) => errors.push(e),
            },
            ("redirectscheme", "port") => match v.trim().parse::<u16>() {
                Ok(p) if p > 0 => redirect.get_or_insert_with(temporary).port = Some(p),
                _ => errors.push(bad("not a port number")),
            },
            ("headers", "stsseconds") => match v.trim().parse::<u64>() {
                Ok(s) => sts_seconds = Some(s),
                Err(_) => errors.push(bad("expected a number of seconds")),
            },
            ("headers", "stsincludesubdomains") => match flag() {
                Ok(b) => hsts.get_or_insert_with(no_hsts).include_subdomains = b,
                Err(e) => errors.push(e),
            },
            ("headers", "stspreload") => match flag() {
                Ok(b) => hsts.get_or_insert_with(no_hsts).preload = b,
                Err(e) => errors.push(e),
            },
            ("headers", "forcestsheader") => {
                if flag() == Ok(true) {
                    errors.push(bad("Tether sends Strict-Transport-Security over TLS only, as RFC 6797 asks"));
                }
            }
            ("redirectscheme" | "headers", _) => errors.push(bad(&format!(
                "{kind}.{option} is not supported: Tether reads redirectscheme.scheme, .permanent and .port, and headers.stsseconds, .stsincludesubdomains and .stspreload"
            ))),
            _ => errors.push(bad(&format!(
                "middleware {name}: type {kind} is not supported (Tether reads redirectscheme and the headers sts* options)"
            ))),
        }
    }
    if redirect.is_some() {
        r.redirect_https = redirect;
    }
    match (sts_seconds, hsts) {
        (Some(0), _) => {}
        (Some(max_age), h) => {
            let h = Hsts {
                max_age,
                ..h.unwrap_or_else(no_hsts)
            };
            let key = m.get("headers.stspreload").map_or_else(
                || format!("{MIDDLEWARES}{name}.headers.stspreload"),
                |(k, _)| k.to_string(),
            );
            match h.preload_problem() {
                Some(p) => errors.push(c.label_error(&key, p)),
                None => r.hsts = Some(h),
            }
        }
        (None, Some(_)) => errors.push(c.label_error(
            &format!("{MIDDLEWARES}{name}.headers.stsseconds"),
            "missing: the other sts options need stsseconds",
        )),
        (None, None) => {}
    }
    errors
}

/// Traefik's `redirectscheme` default: not permanent.
fn temporary() -> HttpsRedirect {
    HttpsRedirect {
        permanent: false,
        ..HttpsRedirect::default()
    }
}

fn no_hsts() -> Hsts {
    Hsts {
        max_age: 0,
        include_subdomains: false,
        preload: false,
    }
}
