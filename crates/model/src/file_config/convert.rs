//! Gives meaning to the raw file: parses rules, addresses, durations and policies, collecting every
//! error with its line instead of stopping at the first.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;

use super::raw::{
    Cidr, RawAffinity, RawConfig, RawEntrypoint, RawHealth, RawHsts, RawLimits, RawRedirect,
    RawService, RawServiceTls, RawSize, RawStats, RawSwarm, RawTimeouts, Toggle, S,
};
use super::{
    line_of, CertificateFiles, ConfigError, ConfigErrors, EntrypointTls, FileConfig, KeySource,
    Limits, Settings, StatsMount, SwarmSettings, Timeouts, TlsSettings, TlsVersion, SWARM_POLL,
    SWARM_POLL_RANGE,
};
use crate::decl::{
    AffinityMode, AffinityPolicy, BalanceAlgo, CookieAttrs, HashOn, HealthCheck, Hsts,
    HttpsRedirect, OnMissing, Resolve, RouteDecl, SameSite, ServerAddr, ServerDecl, ServerTls,
    ServerWait, ServiceDecl,
};
use crate::rule::Rule;
use crate::{duration, validate};

mod acme;
mod tcp;

/// Minimum length of an inline or file affinity key.
pub const MIN_KEY_LEN: usize = 32;

struct Ctx<'a> {
    src: &'a str,
    errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    fn err(
        &mut self,
        span: Option<Range<usize>>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.errors.push(ConfigError {
            line: span.map(|s| line_of(self.src, s.start)),
            field: field.into(),
            message: message.into(),
        });
    }

    /// Apply `f` to a spanned value, recording its error at the value's line under the field
    /// name `field` gives (built only on error: a file holds thousands of fields).
    fn check<T, U>(
        &mut self,
        v: &S<T>,
        field: impl FnOnce() -> String,
        f: impl FnOnce(&T) -> Result<U, String>,
    ) -> Option<U> {
        match f(v.get_ref()) {
            Ok(u) => Some(u),
            Err(m) => {
                self.err(Some(v.span()), field(), m);
                None
            }
        }
    }
}

/// `services_here`: a route's service must be declared in the same text.
pub(super) fn convert(
    raw: RawConfig,
    src: &str,
    source: super::Source<'_>,
) -> Result<FileConfig, ConfigErrors> {
    let services_here = source.services_here;
    let mut cx = Ctx {
        src,
        errors: Vec::new(),
    };
    let settings = settings(&mut cx, &raw);
    let mut services = Vec::new();
    let mut service_lines = std::collections::HashMap::new();
    for (name, svc) in &raw.services {
        service_lines.insert(name.clone(), svc.span());
        if let Some(s) = service(&mut cx, name, svc) {
            services.push(s);
        }
    }
    services.extend(tcp::services(&mut cx, &raw));
    let tcp_routes = tcp::routers(&mut cx, &raw, &settings.entrypoints, services_here);
    if services_here {
        tcp::placement(&mut cx, &raw, &settings, &services, &tcp_routes);
    }
    let mut routes = Vec::new();
    let acme_names: Vec<String> = raw.acme.keys().cloned().collect();
    for (name, r) in &raw.routes {
        let r = r.get_ref();
        let rule = cx.check(
            &r.rule,
            || format!("routes.{name}.rule"),
            |t| Rule::parse(t).map_err(|e| e.to_string()),
        );
        for ep in &r.entrypoints {
            if !settings.entrypoints.iter().any(|(n, _)| n == ep.get_ref()) {
                cx.err(
                    Some(ep.span()),
                    format!("routes.{name}.entrypoints"),
                    format!("no entrypoint named {:?}", ep.get_ref()),
                );
            } else if settings.tcp_entrypoints.contains(ep.get_ref()) {
                cx.err(
                    Some(ep.span()),
                    format!("routes.{name}.entrypoints"),
                    format!("{:?} is a TCP entrypoint (protocol = \"tcp\"): HTTP routes go on the others", ep.get_ref()),
                );
            }
        }
        if services_here && !raw.services.contains_key(r.service.get_ref()) {
            let also = if raw.tcp.services.contains_key(r.service.get_ref()) {
                ": that is a TCP service ([tcp.services]); an HTTP route needs a [services] one"
            } else {
                ""
            };
            cx.err(
                Some(r.service.span()),
                format!("routes.{name}.service"),
                format!("no service named {:?}{also}", r.service.get_ref()),
            );
        }
        let max_body = r
            .max_body
            .as_ref()
            .and_then(|v| size(&mut cx, v, &format!("routes.{name}.max_body"), 1..=u64::MAX));
        let redirect_https = r
            .redirect_https
            .as_ref()
            .and_then(|v| redirect(&mut cx, v, &format!("routes.{name}.redirect_https")));
        let hsts = r
            .hsts
            .as_ref()
            .and_then(|v| hsts(&mut cx, v, &format!("routes.{name}.hsts")));
        let middlewares: Vec<String> = r
            .middlewares
            .iter()
            .map(|m| crate::middleware::qualify(m.get_ref().trim(), source.provider))
            .collect();
        // Only the file declares resolvers; a route of another source is checked by the table.
        // (By the names declared: a resolver with a bad field is reported on its own.)
        let known = (source.provider == "file").then_some(acme_names.as_slice());
        let tls = match &r.tls {
            None => None,
            Some(t) => match acme::route_tls(&mut cx, name, t, known) {
                Some(t) => Some(t),
                None => continue,
            },
        };
        if let (Some(rule), Some(t)) = (&rule, &tls) {
            if let Err((field, m)) = crate::acme::wanted(name, rule, t) {
                let span = r.tls.as_ref().map(|t| t.span());
                cx.err(span, field, m);
                continue;
            }
        }
        if let Some(rule) = rule {
            routes.push(RouteDecl {
                name: name.clone(),
                priority: r.priority.unwrap_or(r.rule.get_ref().len() as i64),
                rule: rule.into(),
                rule_text: r.rule.get_ref().clone(),
                service: r.service.get_ref().clone(),
                entrypoints: r.entrypoints.iter().map(|e| e.get_ref().clone()).collect(),
                max_body,
                redirect_https,
                hsts,
                middlewares,
                tls,
            });
        }
    }
    let mut middlewares = Vec::new();
    let mut middleware_lines = std::collections::HashMap::new();
    for (name, m) in &raw.middlewares {
        match m.get_ref().convert(name, source.provider, source.origin) {
            Ok(d) => {
                middleware_lines.insert(d.name.clone(), m.span());
                middlewares.push(d);
            }
            Err(errs) => {
                for e in errs {
                    cx.err(Some(m.span()), e.field, e.message);
                }
            }
        }
    }
    // Shared checks; locate their errors at the service or route they concern.
    for e in validate::set(&services, &[], &[]) {
        let svc = e.field.split('.').nth(1).unwrap_or_default();
        let span = service_lines.get(svc).cloned();
        cx.err(span, e.field, e.message);
    }
    // Names twice, chains that name themselves, and (when everything is here) references to
    // middlewares that do not exist.
    for e in validate::set(&[], &routes, &middlewares) {
        if e.field.ends_with(".service") {
            continue;
        }
        let route_name = e
            .field
            .strip_prefix("routes.")
            .and_then(|r| r.split(".middlewares").next());
        // A reference to another source's middleware (and any reference from a label, which
        // may name another container's) is checked by the merged table.
        if route_name.is_some() && (source.provider != "file" || !e.message.contains("@file\"")) {
            continue;
        }
        let span = match route_name {
            Some(r) => raw.routes.get(r).map(|x| x.span()),
            None => e
                .field
                .strip_prefix("middlewares.")
                .and_then(|m| middleware_lines.get(m.split(".chain").next().unwrap_or(m)))
                .cloned(),
        };
        cx.err(span, e.field, e.message);
    }
    if cx.errors.is_empty() {
        Ok(FileConfig {
            settings,
            services,
            routes,
            middlewares,
            tcp_routes,
        })
    } else {
        Err(ConfigErrors(cx.errors))
    }
}

fn settings(cx: &mut Ctx<'_>, raw: &RawConfig) -> Settings {
    let mut entrypoints = Vec::new();
    for (name, ep) in &raw.entrypoints {
        let field = format!("entrypoints.{name}");
        if !validate::is_name(name) {
            cx.err(
                Some(ep.span()),
                &field,
                "a name may hold letters, digits, '-', '_', '.' and '@'",
            );
        }
        let addr = match ep.get_ref() {
            RawEntrypoint::Address(a) | RawEntrypoint::Table { address: a, .. } => a,
        };
        match addr.parse::<SocketAddr>() {
            Ok(sa) => entrypoints.push((name.clone(), sa)),
            Err(_) => cx.err(
                Some(ep.span()),
                field,
                format!("{addr:?}: expected a listen address such as 0.0.0.0:80"),
            ),
        }
    }
    let affinity_key = match (&raw.affinity.key, &raw.affinity.key_file) {
        (Some(_), Some(f)) => {
            cx.err(
                Some(f.span()),
                "affinity.key_file",
                "set either affinity.key or affinity.key_file, not both",
            );
            KeySource::Generated
        }
        (Some(k), None) => cx
            .check(
                k,
                || "affinity.key".into(),
                |k| {
                    if k.len() < MIN_KEY_LEN {
                        Err(format!(
                            "the key has {} bytes; use at least {MIN_KEY_LEN} random bytes",
                            k.len()
                        ))
                    } else {
                        Ok(KeySource::Inline(k.clone()))
                    }
                },
            )
            .unwrap_or(KeySource::Generated),
        (None, Some(f)) => KeySource::File(PathBuf::from(f.get_ref())),
        (None, None) => KeySource::Generated,
    };
    let mut trusted_proxies = Vec::new();
    for (i, c) in raw.forwarded.trusted_proxies.iter().enumerate() {
        if let Some(c) = cx.check(
            c,
            || format!("forwarded.trusted_proxies[{i}]"),
            |s| Cidr::parse(s),
        ) {
            trusted_proxies.push(c);
        }
    }
    let admin = raw.admin.as_ref().and_then(|a| {
        cx.check(
            &a.get_ref().address,
            || "admin.address".into(),
            |s| {
                s.parse::<SocketAddr>()
                    .map_err(|_| format!("{s:?}: expected a listen address such as 127.0.0.1:8081"))
            },
        )
    });
    if let Some(addr) = admin {
        if let Some((name, _)) = entrypoints
            .iter()
            .find(|(_, a)| *a == addr && addr.port() != 0)
        {
            let span = raw.admin.as_ref().map(|a| a.span());
            cx.err(
                span,
                "admin.address",
                format!("{addr} is entrypoint {name}'s address: the admin API never shares a port with traffic"),
            );
        }
    }
    let stats = raw
        .stats
        .as_ref()
        .and_then(|s| stats(cx, s.get_ref(), &entrypoints));
    let tls = tls(cx, raw);
    let tcp_entrypoints = tcp::entrypoints(cx, raw);
    Settings {
        entrypoints,
        timeouts: timeouts(cx, &raw.timeouts),
        affinity_key,
        trusted_proxies,
        admin,
        merge_slashes: raw.http.merge_slashes.unwrap_or(false),
        limits: limits(cx, &raw.limits),
        swarm: raw.swarm.as_ref().map(|s| swarm(cx, s.get_ref())),
        stats,
        tls,
        tcp_entrypoints,
        tcp: tcp::settings(cx, raw),
        proxy_protocol: tcp::accept_proxy(cx, raw),
        acme: acme::resolvers(cx, raw),
        workers: raw.workers.as_ref().and_then(|w| {
            cx.check(w, || "workers".into(), |&n| {
                usize::try_from(n)
                    .ok()
                    .filter(|n| (1..=super::MAX_WORKERS).contains(n))
                    .ok_or_else(|| {
                        format!("{n}: expected 1 to {} serving workers (leave it out for one per CPU)", super::MAX_WORKERS)
                    })
            })
        }),
        pin_workers: raw.pin_workers.unwrap_or(false),
    }
}

/// The entrypoints' `tls` and `[[tls.certificates]]`.
fn tls(cx: &mut Ctx<'_>, raw: &RawConfig) -> TlsSettings {
    let mut certificates = Vec::new();
    let mut default_at: Option<usize> = None;
    for (i, c) in raw.tls.certificates.iter().enumerate() {
        let field = format!("tls.certificates[{i}]");
        let r = c.get_ref();
        for (key, v) in [("cert_file", &r.cert_file), ("key_file", &r.key_file)] {
            if v.trim().is_empty() {
                cx.err(
                    Some(c.span()),
                    format!("{field}.{key}"),
                    "a file path is needed",
                );
            }
        }
        let default = r.default.unwrap_or(false);
        if default {
            if let Some(first) = default_at {
                cx.err(
                    Some(c.span()),
                    format!("{field}.default"),
                    format!("tls.certificates[{first}] is the default already: only one may be"),
                );
            }
            default_at.get_or_insert(i);
        }
        certificates.push(CertificateFiles {
            cert_file: PathBuf::from(&r.cert_file),
            key_file: PathBuf::from(&r.key_file),
            default,
        });
    }
    let mut entrypoints = std::collections::BTreeMap::new();
    for (name, ep) in &raw.entrypoints {
        let RawEntrypoint::Table { tls: Some(t), .. } = ep.get_ref() else {
            continue;
        };
        let Some(t) = t.on() else {
            continue;
        };
        let field = format!("entrypoints.{name}.tls");
        let mut opts = EntrypointTls {
            strict_sni: t.strict_sni.unwrap_or(false),
            ..Default::default()
        };
        match t.min_version.as_deref() {
            None | Some("1.2") => {}
            Some("1.3") => opts.min_version = TlsVersion::V1_3,
            Some(v) => cx.err(
                Some(ep.span()),
                format!("{field}.min_version"),
                format!("{v:?}: Tether speaks TLS 1.2 and 1.3 only; use \"1.2\" or \"1.3\""),
            ),
        }
        if let Some(alpn) = &t.alpn {
            if alpn.is_empty() {
                cx.err(
                    Some(ep.span()),
                    format!("{field}.alpn"),
                    "name at least one protocol: \"h2\", \"http/1.1\"",
                );
            }
            for p in alpn {
                if p != "h2" && p != "http/1.1" {
                    cx.err(
                        Some(ep.span()),
                        format!("{field}.alpn"),
                        format!("{p:?}: Tether serves \"h2\" and \"http/1.1\""),
                    );
                }
            }
            opts.alpn = alpn.clone();
        }
        entrypoints.insert(name.clone(), opts);
    }
    TlsSettings {
        entrypoints,
        certificates,
    }
}

/// `[stats]`.
fn stats(
    cx: &mut Ctx<'_>,
    raw: &RawStats,
    entrypoints: &[(String, SocketAddr)],
) -> Option<StatsMount> {
    let path = cx.check(
        &raw.path,
        || "stats.path".into(),
        |p| crate::file_config::stats_path(p),
    )?;
    for ep in &raw.entrypoints {
        if !entrypoints.iter().any(|(n, _)| n == ep) {
            cx.err(
                Some(raw.path.span()),
                "stats.entrypoints",
                format!("no entrypoint named {ep:?}"),
            );
        }
    }
    Some(StatsMount {
        path,
        entrypoints: raw.entrypoints.clone(),
    })
}

/// `[swarm]`.
fn swarm(cx: &mut Ctx<'_>, raw: &RawSwarm) -> SwarmSettings {
    let endpoint = raw.endpoint.as_ref().and_then(|e| {
        cx.check(
            e,
            || "swarm.endpoint".into(),
            |s| {
                let ok = s.starts_with("unix://") || s.starts_with('/') || s.starts_with("tcp://");
                ok.then(|| s.clone()).ok_or_else(|| {
                    format!("{s:?}: expected unix:///var/run/docker.sock or tcp://host:port")
                })
            },
        )
    });
    let poll = raw
        .poll
        .as_ref()
        .and_then(|p| {
            cx.check(
                p,
                || "swarm.poll".into(),
                |s| {
                    let d = positive_duration(s)?;
                    if SWARM_POLL_RANGE.contains(&d) {
                        Ok(d)
                    } else {
                        Err(format!("{s:?}: expected between 50ms and 60s"))
                    }
                },
            )
        })
        .unwrap_or(SWARM_POLL);
    let constraint = raw.constraint.as_ref().and_then(|c| {
        cx.check(
            c,
            || "swarm.constraint".into(),
            |s| match s.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                _ => Err(format!("{s:?}: expected LABEL=VALUE")),
            },
        )
    });
    SwarmSettings {
        endpoint,
        poll,
        network: raw.network.as_ref().map(|n| n.get_ref().clone()),
        constraint,
    }
}

/// A route's `redirect_https`: `true` or `{ port = 8443 }`.
fn redirect(cx: &mut Ctx<'_>, v: &S<Toggle<RawRedirect>>, field: &str) -> Option<HttpsRedirect> {
    let t = v.get_ref().on()?;
    let port = match &t.port {
        None => None,
        Some(p) => Some(cx.check(
            p,
            || format!("{field}.port"),
            |&n| {
                u16::try_from(n)
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("{n}: a port is 1 to 65535"))
            },
        )?),
    };
    let entrypoint = t.entrypoint.as_ref().map(|e| e.get_ref().clone());
    Some(HttpsRedirect {
        permanent: t.permanent.unwrap_or(true),
        port,
        entrypoint,
    })
}

/// A route's `hsts`: `true` (a year) or `{ max_age = "365d", include_subdomains, preload }`.
fn hsts(cx: &mut Ctx<'_>, v: &S<Toggle<RawHsts>>, field: &str) -> Option<Hsts> {
    let t = v.get_ref().on()?;
    let max_age = match &t.max_age {
        None => Hsts::YEAR,
        Some(m) => cx
            .check(m, || format!("{field}.max_age"), |s| duration::parse(s))?
            .as_secs(),
    };
    let h = Hsts {
        max_age,
        include_subdomains: t.include_subdomains.unwrap_or(false),
        preload: t.preload.unwrap_or(false),
    };
    if let Some(problem) = h.preload_problem() {
        cx.err(Some(v.span()), format!("{field}.preload"), problem);
        return None;
    }
    Some(h)
}

fn size(
    cx: &mut Ctx<'_>,
    v: &S<RawSize>,
    field: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Option<u64> {
    cx.check(
        v,
        || field.to_string(),
        |s| {
            let n = s.0.map_err(str::to_string)?;
            if range.contains(&n) {
                Ok(n)
            } else {
                Err(format!(
                    "{n} bytes: expected {} to {}",
                    range.start(),
                    range.end()
                ))
            }
        },
    )
}

fn limits(cx: &mut Ctx<'_>, raw: &RawLimits) -> Limits {
    let mut l = Limits::default();
    // The head is parsed in one buffer: at most 1 MiB.
    if let Some(v) = &raw.head {
        if let Some(n) = size(cx, v, "limits.head", 1024..=1 << 20) {
            l.head = n as usize;
        }
    }
    if let Some(v) = &raw.uri {
        if let Some(n) = size(cx, v, "limits.uri", 64..=1 << 20) {
            l.uri = n as usize;
        }
    }
    if let Some(v) = &raw.body {
        l.body = size(cx, v, "limits.body", 0..=u64::MAX).filter(|&n| n > 0);
    }
    if let Some(v) = &raw.headers {
        if let Some(n) = cx.check(
            v,
            || "limits.headers".into(),
            |&n| {
                usize::try_from(n)
                    .ok()
                    .filter(|n| (8..=1024).contains(n))
                    .ok_or_else(|| format!("{n}: expected 8 to 1024 fields"))
            },
        ) {
            l.headers = n;
        }
    }
    if let Some(v) = &raw.connections_per_client {
        if let Some(n) = cx.check(
            v,
            || "limits.connections_per_client".into(),
            |&n| u32::try_from(n).map_err(|_| format!("{n}: expected 0 (no limit) or more")),
        ) {
            l.connections_per_client = n;
        }
    }
    l
}

/// A duration that is more than zero.
fn positive_duration(s: &str) -> Result<std::time::Duration, String> {
    duration::parse(s).and_then(|d| {
        if d.is_zero() {
            Err("must be more than zero".into())
        } else {
            Ok(d)
        }
    })
}

fn timeouts(cx: &mut Ctx<'_>, raw: &RawTimeouts) -> Timeouts {
    let mut t = Timeouts::default();
    let fields = [
        (&raw.connect, "connect", &mut t.connect),
        (&raw.request_header, "request_header", &mut t.request_header),
        (&raw.idle, "idle", &mut t.idle),
        (
            &raw.upstream_response,
            "upstream_response",
            &mut t.upstream_response,
        ),
        (&raw.request_body, "request_body", &mut t.request_body),
        (
            &raw.body_rate_window,
            "body_rate_window",
            &mut t.body_rate_window,
        ),
        (&raw.tunnel, "tunnel", &mut t.tunnel),
    ];
    for (v, name, slot) in fields {
        if let Some(v) = v {
            let parsed = cx.check(v, || format!("timeouts.{name}"), |s| positive_duration(s));
            if let Some(d) = parsed {
                *slot = d;
            }
        }
    }
    if let Some(v) = &raw.server_keepalive {
        let parsed = cx.check(
            v,
            || "timeouts.server_keepalive".into(),
            |s| match s.trim() {
                "0" => Ok(std::time::Duration::ZERO),
                s => duration::parse(s).and_then(|d| {
                    if d.is_zero() || d >= std::time::Duration::from_secs(3) {
                        Ok(d)
                    } else {
                        Err(format!(
                            "{s}: at least 3s (probes go a third of it apart), or 0s for off"
                        ))
                    }
                }),
            },
        );
        if let Some(d) = parsed {
            t.server_keepalive = d;
        }
    }
    if let Some(r) = &raw.body_min_rate {
        if let Some(rate) = cx.check(
            r,
            || "timeouts.body_min_rate".into(),
            |&r| u64::try_from(r).map_err(|_| format!("{r}: expected bytes per second, 0 or more")),
        ) {
            t.body_min_rate = rate;
        }
    }
    t
}

fn service(cx: &mut Ctx<'_>, name: &str, raw: &S<RawService>) -> Option<ServiceDecl> {
    let base = format!("services.{name}");
    let svc = raw.get_ref();
    let before = cx.errors.len();
    let mut servers = Vec::new();
    for (i, s) in svc.servers.iter().enumerate() {
        let s = s.get_ref();
        let base = &base;
        let field = |leaf| move || format!("{base}.servers[{i}].{leaf}");
        let addr = cx.check(&s.url, field("url"), |u| ServerAddr::parse_url(u));
        let weight = match &s.weight {
            Some(w) => cx.check(w, field("weight"), |&w| {
                u32::try_from(w)
                    .map_err(|_| format!("{w} is not a weight (0..={})", validate::MAX_WEIGHT))
            }),
            None => Some(1),
        };
        if let (Some((addr, tls_name)), Some(weight)) = (addr, weight) {
            let name = s.name.clone().unwrap_or_else(|| addr.to_string());
            let tls = tls_name.map(|n| server_tls(n, svc.tls.as_ref().map(|t| t.get_ref())));
            servers.push(ServerDecl {
                name,
                addr,
                weight,
                draining: s.draining,
                tls,
                backup: s.backup,
            });
        }
    }
    if let Some(t) = &svc.tls {
        let field = format!("{base}.tls");
        if svc.resolve.is_some() {
            cx.err(
                Some(t.span()),
                field,
                "TLS to servers found by resolve is not supported: list the servers with https:// URLs",
            );
        } else if !servers.iter().any(|s| s.tls.is_some()) && !svc.servers.is_empty() {
            cx.err(
                Some(t.span()),
                field,
                "no server of this service is https://: the tls table says how https:// servers are checked",
            );
        } else {
            let t = t.get_ref();
            if let (Some(ca), true) = (&t.ca_file, t.insecure_skip_verify) {
                cx.err(
                    Some(ca.span()),
                    format!("{base}.tls.ca_file"),
                    "set ca_file or insecure_skip_verify, not both",
                );
            }
            if let Some(n) = &t.server_name {
                cx.check(
                    n,
                    || format!("{base}.tls.server_name"),
                    |n| {
                        if !n.is_empty()
                            && n.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
                        {
                            Ok(())
                        } else {
                            Err(format!("{n:?} is not a host name"))
                        }
                    },
                );
            }
        }
    }
    let balance = balance(cx, &base, svc);
    let affinity = svc
        .affinity
        .as_ref()
        .and_then(|a| affinity(cx, &base, name, a.get_ref()));
    let resolve = svc
        .resolve
        .as_ref()
        .and_then(|r| cx.check(r, || format!("{base}.resolve"), |s| Resolve::parse(s)));
    let health = svc
        .health
        .as_ref()
        .and_then(|h| health(cx, &base, h.get_ref()));
    if let (Some(r), false) = (&svc.resolve, svc.servers.is_empty()) {
        cx.err(
            Some(r.span()),
            format!("{base}.resolve"),
            "set either servers or resolve, not both",
        );
    }
    let wait = server_wait(
        cx,
        &base,
        svc.wait_for_server.as_ref(),
        svc.wait_queue.as_ref(),
    );
    if let Some(p) = &svc.proxy_protocol {
        cx.err(
            Some(p.span()),
            format!("{base}.proxy_protocol"),
            "the PROXY protocol to an HTTP service's servers is not offered yet (a pooled connection carries many clients' requests): it is a TCP service's setting ([tcp.services])",
        );
    }
    if cx.errors.len() > before {
        return None;
    }
    Some(ServiceDecl {
        name: name.to_string(),
        servers,
        balance: balance?,
        affinity,
        resolve,
        health,
        wait,
        protocol: Default::default(),
    })
}

/// The longest `wait_for_server`.
const MAX_SERVER_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// `wait_for_server` and `wait_queue` (an HTTP or a TCP service's).
fn server_wait(
    cx: &mut Ctx<'_>,
    base: &str,
    wait_for_server: Option<&S<String>>,
    wait_queue: Option<&S<i64>>,
) -> ServerWait {
    let mut wait = ServerWait::default();
    if let Some(v) = wait_for_server {
        let parsed = cx.check(
            v,
            || format!("{base}.wait_for_server"),
            |s| match s.trim() {
                "0" => Ok(std::time::Duration::ZERO),
                s => duration::parse(s).and_then(|d| {
                    if d > MAX_SERVER_WAIT {
                        Err(format!(
                            "{s}: at most 10m (a client has given up long before)"
                        ))
                    } else {
                        Ok(d)
                    }
                }),
            },
        );
        if let Some(d) = parsed {
            wait.timeout = d;
        }
    }
    if let Some(v) = wait_queue {
        if let Some(n) = cx.check(
            v,
            || format!("{base}.wait_queue"),
            |&n| match u32::try_from(n) {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!(
                    "{n}: expected 1 or more requests (wait_for_server = \"0s\" turns waiting off)"
                )),
            },
        ) {
            wait.queue = n;
        }
    }
    wait
}

/// TLS to a server whose URL names `host`, as the service's `tls` table says.
fn server_tls(host: String, t: Option<&RawServiceTls>) -> ServerTls {
    ServerTls {
        server_name: t
            .and_then(|t| t.server_name.as_ref())
            .map_or(host, |n| n.get_ref().to_ascii_lowercase()),
        ca_file: t
            .and_then(|t| t.ca_file.as_ref())
            .map(|c| std::path::PathBuf::from(c.get_ref())),
        insecure_skip_verify: t.is_some_and(|t| t.insecure_skip_verify),
    }
}

fn health(cx: &mut Ctx<'_>, base: &str, h: &RawHealth) -> Option<HealthCheck> {
    let base = format!("{base}.health");
    let path = cx.check(
        &h.path,
        || format!("{base}.path"),
        |p| {
            if p.starts_with('/') && !p.contains(char::is_whitespace) {
                Ok(p.clone())
            } else {
                Err(format!("{p:?}: a path starts with / and holds no spaces"))
            }
        },
    )?;
    let check = HealthCheck::of(path);
    health_timing(
        cx,
        &base,
        [&h.interval, &h.timeout],
        [&h.rise, &h.fall],
        check,
    )
}

/// A health check's `interval` and `timeout`, then `rise` and `fall`, over `check`'s defaults;
/// `base` is the check's field (`services.web.health`). An HTTP and a TCP check read them alike.
fn health_timing(
    cx: &mut Ctx<'_>,
    base: &str,
    [interval, timeout]: [&Option<S<String>>; 2],
    [rise, fall]: [&Option<S<i64>>; 2],
    mut check: HealthCheck,
) -> Option<HealthCheck> {
    for (v, name, slot) in [
        (interval, "interval", &mut check.interval),
        (timeout, "timeout", &mut check.timeout),
    ] {
        if let Some(v) = v {
            *slot = cx.check(v, || format!("{base}.{name}"), |s| positive_duration(s))?;
        }
    }
    for (v, name, slot) in [
        (rise, "rise", &mut check.rise),
        (fall, "fall", &mut check.fall),
    ] {
        if let Some(v) = v {
            *slot = cx.check(
                v,
                || format!("{base}.{name}"),
                |&n| {
                    u32::try_from(n)
                        .ok()
                        .filter(|n| (1..=100).contains(n))
                        .ok_or_else(|| format!("{n}: expected 1 to 100 checks in a row"))
                },
            )?;
        }
    }
    if check.timeout > check.interval {
        cx.err(
            timeout.as_ref().map(|t| t.span()),
            format!("{base}.timeout"),
            "the timeout must not be longer than the interval",
        );
        return None;
    }
    Some(check)
}

fn balance(cx: &mut Ctx<'_>, base: &str, svc: &RawService) -> Option<BalanceAlgo> {
    let kinds = Balances {
        least: "least_requests",
        hash_on: "\"client_ip\", \"header:NAME\" or \"cookie:NAME\"",
        parse_hash_on,
    };
    balance_of(cx, base, svc.balance.as_ref(), svc.hash_on.as_ref(), &kinds)
}

/// What a kind of service (HTTP, TCP) calls its balancing: the least-loaded algorithm's name,
/// what `hash_on` may say, and how it is read.
struct Balances {
    least: &'static str,
    hash_on: &'static str,
    parse_hash_on: fn(&str) -> Result<HashOn, String>,
}

/// `balance` and `hash_on` as a kind of service reads them.
fn balance_of(
    cx: &mut Ctx<'_>,
    base: &str,
    balance: Option<&S<String>>,
    hash_on: Option<&S<String>>,
    kinds: &Balances,
) -> Option<BalanceAlgo> {
    let span = balance.map(|b| b.span());
    let algo = balance.map_or("round_robin", |b| b.get_ref().as_str());
    match (algo, hash_on) {
        ("round_robin", None) => Some(BalanceAlgo::RoundRobin),
        (least, None) if least == kinds.least => Some(BalanceAlgo::LeastRequests),
        ("consistent_hash", None) => {
            cx.err(
                span,
                format!("{base}.hash_on"),
                format!("consistent_hash needs hash_on = {}", kinds.hash_on),
            );
            None
        }
        ("consistent_hash", Some(h)) => cx
            .check(
                h,
                || format!("{base}.hash_on"),
                |h| (kinds.parse_hash_on)(h),
            )
            .map(BalanceAlgo::ConsistentHash),
        (other, Some(h)) if other == "round_robin" || other == kinds.least => {
            cx.err(
                Some(h.span()),
                format!("{base}.hash_on"),
                "hash_on only applies to balance = \"consistent_hash\"",
            );
            None
        }
        (other, _) => {
            cx.err(
                span,
                format!("{base}.balance"),
                format!(
                    "{other:?}: expected \"round_robin\", \"{}\" or \"consistent_hash\"",
                    kinds.least
                ),
            );
            None
        }
    }
}

/// `client_ip`, `header:X-User` or `cookie:session`.
pub fn parse_hash_on(s: &str) -> Result<HashOn, String> {
    match s.split_once(':') {
        None if s == "client_ip" => Ok(HashOn::ClientIp),
        Some(("header", h)) if http::HeaderName::from_bytes(h.as_bytes()).is_ok() => {
            Ok(HashOn::Header(h.to_ascii_lowercase()))
        }
        Some(("cookie", c)) if validate::is_cookie_name(c) => Ok(HashOn::Cookie(c.to_string())),
        _ => Err(format!(
            "{s:?}: expected \"client_ip\", \"header:NAME\" or \"cookie:NAME\""
        )),
    }
}

fn affinity(
    cx: &mut Ctx<'_>,
    base: &str,
    service: &str,
    a: &RawAffinity,
) -> Option<AffinityPolicy> {
    let base = format!("{base}.affinity");
    let on_missing = match &a.on_missing {
        Some(o) => cx.check(o, || format!("{base}.on_missing"), |s| OnMissing::parse(s))?,
        None => OnMissing::Rebalance,
    };
    let mode = match a.mode.get_ref().as_str() {
        "cookie" => {
            let mut attrs = CookieAttrs::for_service(service);
            if let Some(c) = &a.cookie {
                attrs.name = c.get_ref().clone();
            }
            if let Some(p) = &a.path {
                attrs.path = p.clone();
            }
            attrs.domain = a.domain.as_ref().map(|d| d.get_ref().clone());
            attrs.secure = a.secure.unwrap_or(attrs.secure);
            attrs.http_only = a.http_only.unwrap_or(attrs.http_only);
            if let Some(s) = &a.same_site {
                attrs.same_site =
                    Some(cx.check(s, || format!("{base}.same_site"), |s| SameSite::parse(s))?);
            }
            if let Some(m) = &a.max_age {
                attrs.max_age =
                    Some(cx.check(m, || format!("{base}.max_age"), |s| duration::parse(s))?);
            }
            if attrs.same_site == Some(SameSite::None) && !attrs.secure {
                let span = a.same_site.as_ref().map(|s| s.span());
                cx.err(
                    span,
                    format!("{base}.same_site"),
                    "SameSite=None requires secure = true (browsers drop it otherwise)",
                );
                return None;
            }
            AffinityMode::Cookie(attrs)
        }
        "prefix" => {
            let Some(c) = &a.cookie else {
                cx.err(Some(a.mode.span()), format!("{base}.cookie"), "prefix mode needs the application's cookie name, e.g. cookie = \"connect.sid\"");
                return None;
            };
            let only_cookie_mode = [
                ("path", a.path.is_some()),
                ("domain", a.domain.is_some()),
                ("secure", a.secure.is_some()),
                ("http_only", a.http_only.is_some()),
                ("same_site", a.same_site.is_some()),
                ("max_age", a.max_age.is_some()),
            ];
            if let Some((f, _)) = only_cookie_mode.iter().find(|(_, set)| *set) {
                cx.err(Some(a.mode.span()), format!("{base}.{f}"), "prefix mode keeps the application's own cookie attributes; this field only applies to mode = \"cookie\"");
                return None;
            }
            AffinityMode::Prefix {
                cookie: c.get_ref().clone(),
            }
        }
        other => {
            cx.err(
                Some(a.mode.span()),
                format!("{base}.mode"),
                format!("{other:?}: expected \"cookie\" or \"prefix\""),
            );
            return None;
        }
    };
    Some(AffinityPolicy {
        mode,
        nocache: a.nocache,
        on_missing,
    })
}
