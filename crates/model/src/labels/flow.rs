//! Docker Flow Proxy labels, as Docker Flow Swarm Listener reads them:
//!
//! - `com.df.notify=true`: the container takes part;
//! - `com.df.serviceName`: the service (default: the container's group);
//! - `com.df.servicePath=/demo,/api`: path prefixes;
//! - `com.df.serviceDomain=a.com,*.b.com`: hosts;
//! - `com.df.port`: the container's port;
//! - `com.df.sessionType=sticky-server`: sticky sessions in a cookie Tether inserts;
//! - `com.df.httpsOnly=true`: plain HTTP is answered 308 with the `https://` URL;
//! - auth, path rewrites, header rules, method filters and `redirectFromDomain` as middlewares,
//!   see [`middlewares`].
//!
//! Docker Flow Proxy needed Consul to give every proxy replica the same routes; Tether replicas
//! each read the same labels from the engine (or Swarm) and agree without talking to each other.

pub mod middlewares;

use super::{
    address, any_of, list, parse_bool, port, route, scoped, server, service, Container, Context,
    Translation,
};
use serde::Deserialize;

use crate::decl::{AffinityMode, AffinityPolicy, CookieAttrs, HttpsRedirect, OnMissing};

const PATH: &str = "com.df.servicePath";
const DOMAIN: &str = "com.df.serviceDomain";
const PORT: &str = "com.df.port";
const SESSION: &str = "com.df.sessionType";
const REQ_MODE: &str = "com.df.reqMode";
const HTTPS_ONLY: &str = "com.df.httpsOnly";

pub(crate) fn declare(c: &Container, cx: &Context<'_>) -> Translation {
    let mut errors = Vec::new();
    let name = c
        .label("com.df.serviceName")
        .map_or(c.group.clone(), str::to_string);
    let ip = address(c, cx, None).map_err(|e| errors.push(e)).ok();
    let port = port(c, PORT, c.label(PORT), |k, m| c.label_error(k, m))
        .map_err(|e| errors.push(e))
        .ok();
    let paths = c.label(PATH).map(list).unwrap_or_default();
    for p in &paths {
        if !p.starts_with('/') {
            errors.push(c.label_error(PATH, format!("{p:?}: a path starts with /")));
        }
    }
    let domains = c.label(DOMAIN).map(list).unwrap_or_default();
    let get = |p: &str| c.label(&format!("com.df.{p}")).map(str::to_string);
    let translated = match middlewares::translate(&get, &domains) {
        Ok(t) => t,
        Err(es) => {
            for (p, m) in es {
                errors.push(c.label_error(&format!("com.df.{p}"), m));
            }
            middlewares::Translated::default()
        }
    };
    let mut hosts = domains.clone();
    hosts.extend(translated.redirect_from.iter().cloned());
    let mut parts = Vec::new();
    if !hosts.is_empty() {
        parts.push(any_of("Host", &hosts));
    }
    if !paths.is_empty() {
        parts.push(any_of("PathPrefix", &paths));
    }
    if parts.is_empty() {
        errors.push(c.label_error(
            PATH,
            "missing: give com.df.servicePath, com.df.serviceDomain or both",
        ));
    }
    if let Some(mode) = c.label(REQ_MODE) {
        if !mode.eq_ignore_ascii_case("http") {
            errors.push(c.label_error(REQ_MODE, "only http is supported"));
        }
    }
    let affinity = match c.label(SESSION) {
        None => None,
        Some("sticky-server") => Some(AffinityPolicy {
            mode: AffinityMode::Cookie(CookieAttrs::for_service(&scoped(&name))),
            nocache: false,
            on_missing: OnMissing::Rebalance,
        }),
        Some(_) => {
            errors.push(c.label_error(SESSION, "expected sticky-server"));
            None
        }
    };
    let https_only = match c.label(HTTPS_ONLY).map(parse_bool) {
        None | Some(Some(false)) => false,
        Some(Some(true)) => true,
        Some(None) => {
            errors.push(c.label_error(HTTPS_ONLY, "expected true or false"));
            false
        }
    };
    let rule = route(&name, parts.join(" && "), &name);
    let mut rule = match rule {
        Ok(r) if errors.is_empty() => r,
        Ok(_) => return Err(errors),
        Err(m) => {
            errors.push(c.label_error(if domains.is_empty() { PATH } else { DOMAIN }, m));
            return Err(errors);
        }
    };
    if https_only {
        rule.redirect_https = Some(HttpsRedirect::default());
    }
    let mut defined = Vec::new();
    for t in translated.tables {
        let mw_name = format!("{name}-{}", t.suffix);
        let key = format!("com.df.{}", t.param);
        let raw = match crate::middleware::RawMiddleware::deserialize(toml::Value::Table(t.table)) {
            Ok(r) => r,
            Err(e) => {
                errors.push(c.label_error(&key, e.to_string()));
                continue;
            }
        };
        match raw.convert(&mw_name, "docker", crate::middleware::Origin::Untrusted) {
            Ok(d) => {
                rule.middlewares.push(d.name.clone());
                defined.push(d);
            }
            Err(es) => errors.extend(es.into_iter().map(|e| c.label_error(&key, e.message))),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let (Some(ip), Some(port)) = (ip, port) else {
        return Err(errors);
    };
    let mut svc = service(&name, server(c, ip, port));
    svc.affinity = affinity;
    Ok((vec![svc], vec![rule], defined, Vec::new()))
}
