//! Interlock, as its users configure it: 0.x's `INTERLOCK_DATA` environment variable (a JSON
//! object, `{"hostname":"demo","domain":"interlock.com","port":5000}`) and 1.x's `interlock.*`
//! labels (`interlock.hostname=demo`, `interlock.domain=interlock.com`). Both are read into one
//! [`Data`] and routed alike:
//!
//! - the site is `hostname.domain` (the container's own `--hostname`/`--domainname` unless
//!   given), or the path `context_root` (1.x), with `alias_domains` beside it; every container of
//!   the same site is a replica of one service named after it;
//! - `port` (default: the container's only exposed port);
//! - a health check on every server, as Interlock's HAProxy did (`check inter 5000`): a connect,
//!   or with `check`/`interlock.health_check=httpchk GET /health` a `GET` of that path, every
//!   `check_interval`/`interlock.health_check_interval` ms;
//! - `balance_algorithm` (`roundrobin`, `leastconn`, `source`, ...; `interlock.ip_hash=true` is
//!   `source`), `ssl_only` (plain HTTP redirected to HTTPS), `ssl_backend` (TLS to the servers,
//!   verified only with `ssl_backend_tls_verify=required`, Interlock's default being `none`),
//!   `ssl_certificate`/`ssl_certificate_key` (`interlock.ssl_cert`/`_key`: Docker secrets given
//!   to Tether, see [`super::certs`]), `context_root_rewrite` (the prefix taken off), and
//!   `interlock.network` (the network to reach the container on);
//! - accepted with nothing to do: `ssl` (Tether serves every route on its TLS entrypoints too),
//!   `websocket_endpoints` (Tether passes every upgrade), `warm` (health checks decide), and
//!   the internal `interlock.app`;
//! - refused by name: `backend_options` (`interlock.backend_option`), which configure HAProxy
//!   itself, and any field or label Interlock does not document.

use std::time::Duration;

use serde_json::Value;

use super::{
    address, any_of, port, route, server, service, Container, Context, LabelError, Translation,
};
use crate::decl::{HealthCheck, HttpsRedirect, ServerTls};

const VAR: &str = "INTERLOCK_DATA";
const LABELS: &str = "interlock.";
const EXT_NAME: &str = "interlock.ext.name";

/// Is `c` this Tether's: it names no Interlock extension, or the one `--interlock-ext-name`
/// names?
pub(crate) fn ours(c: &Container, cx: &Context<'_>) -> bool {
    match (c.label(EXT_NAME), cx.interlock_ext_name) {
        (Some(theirs), Some(mine)) => theirs.trim() == mine,
        _ => true,
    }
}

/// What a container asks of Interlock, from either version.
#[derive(Debug, Default)]
pub(crate) struct Data {
    hostname: Option<String>,
    domain: Option<String>,
    port: Option<String>,
    alias_domains: Vec<String>,
    ssl_only: bool,
    ssl_backend: bool,
    ssl_backend_verify: bool,
    /// Secret names of the certificate chain and its key.
    pub(crate) ssl_cert: Option<String>,
    pub(crate) ssl_cert_key: Option<String>,
    check: Option<String>,
    check_interval: Option<u64>,
    balance: Option<String>,
    context_root: Option<String>,
    context_root_rewrite: bool,
    network: Option<String>,
}

/// Where a field was written, for errors: `INTERLOCK_DATA`'s field, or a label.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Origin {
    Env,
    Labels,
}

impl Origin {
    /// An error about `field` (a JSON field, or a label's key).
    pub(crate) fn error(self, c: &Container, field: &str, m: impl std::fmt::Display) -> LabelError {
        match self {
            Origin::Env => c.env_error(VAR, format!("{field}: {m}")),
            Origin::Labels => c.label_error(field, m.to_string()),
        }
    }

    /// The name of `field` as written in this origin (`ssl_cert` → `interlock.ssl_cert`).
    fn name(self, json: &str, label: &str) -> String {
        match self {
            Origin::Env => json.to_string(),
            Origin::Labels => format!("{LABELS}{label}"),
        }
    }
}

/// Read the container's Interlock configuration: its labels when it has `interlock.*` ones,
/// else `INTERLOCK_DATA`.
pub(crate) fn data(c: &Container) -> Result<(Data, Origin), Vec<LabelError>> {
    if c.labels.keys().any(|k| k.starts_with(LABELS)) {
        from_labels(c).map(|d| (d, Origin::Labels))
    } else {
        from_env(c).map(|d| (d, Origin::Env))
    }
}

fn from_env(c: &Container) -> Result<Data, Vec<LabelError>> {
    let raw = c.env.get(VAR).map(String::as_str).unwrap_or_default();
    let bad = |m: String| vec![c.env_error(VAR, m)];
    let fields: serde_json::Map<String, Value> = match serde_json::from_str(raw) {
        Ok(Value::Object(m)) => m,
        Ok(other) => return Err(bad(format!("expected a JSON object, not {other}"))),
        Err(e) => return Err(bad(format!("not valid JSON: {e}"))),
    };
    let mut d = Data::default();
    let mut errors = Vec::new();
    let err = |f: &str, m: String| c.env_error(VAR, format!("{f}: {m}"));
    for (f, v) in &fields {
        let got = match f.as_str() {
            "hostname" => text(v).map(|t| d.hostname = Some(t)),
            "domain" => text(v).map(|t| d.domain = Some(t)),
            "port" => match v {
                Value::Number(n) => {
                    d.port = Some(n.to_string());
                    Ok(())
                }
                Value::String(s) => {
                    d.port = Some(s.clone());
                    Ok(())
                }
                other => Err(format!("{other}: not a port number")),
            },
            "alias_domains" | "alias" => match v {
                Value::String(s) => {
                    d.alias_domains.extend(super::list(s));
                    Ok(())
                }
                Value::Array(items) => items
                    .iter()
                    .try_for_each(|a| text(a).map(|a| d.alias_domains.push(a))),
                other => Err(format!("{other}: expected a host name or a list of them")),
            },
            "ssl" => flag(v).map(|_| ()),
            "ssl_only" => flag(v).map(|b| d.ssl_only = b),
            "ssl_backend" => flag(v).map(|b| d.ssl_backend = b),
            "ssl_backend_tls_verify" => verify(v).map(|b| d.ssl_backend_verify = b),
            "ssl_certificate" => text(v).map(|t| d.ssl_cert = Some(t)),
            "ssl_certificate_key" => text(v).map(|t| d.ssl_cert_key = Some(t)),
            "check" => text(v).map(|t| d.check = Some(t)),
            "check_interval" => millis(v).map(|n| d.check_interval = Some(n)),
            "balance_algorithm" => text(v).map(|t| d.balance = Some(t)),
            "websocket_endpoints" => match v {
                Value::Array(_) | Value::String(_) => Ok(()),
                other => Err(format!("{other}: expected a list of paths")),
            },
            "warm" => flag(v).map(|_| ()),
            "backend_options" => Err(BACKEND_OPTIONS.into()),
            _ => Err(
                "unknown field: Interlock's are hostname, domain, port, alias_domains, check, check_interval, balance_algorithm, ssl, ssl_only, ssl_backend, ssl_backend_tls_verify, ssl_certificate, ssl_certificate_key, websocket_endpoints, warm and backend_options"
                    .into(),
            ),
        };
        if let Err(m) = got {
            errors.push(err(f, m));
        }
    }
    if errors.is_empty() {
        Ok(d)
    } else {
        Err(errors)
    }
}

const BACKEND_OPTIONS: &str = "not supported: HAProxy backend options configure HAProxy itself, which Tether is not (its behaviour is set by the other fields)";

fn from_labels(c: &Container) -> Result<Data, Vec<LabelError>> {
    let mut d = Data::default();
    let mut errors = Vec::new();
    for (key, v) in c.labels.iter().filter(|(k, _)| k.starts_with(LABELS)) {
        let field = &key[LABELS.len()..];
        // `alias_domain.0`, `backend_option.1`, `websocket_endpoint.2`: indexed forms.
        let base = match field.rsplit_once('.') {
            Some((b, n)) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => b,
            _ => field,
        };
        let s = Value::String(v.clone());
        let got = match base {
            "hostname" => text(&s).map(|t| d.hostname = Some(t)),
            "domain" => text(&s).map(|t| d.domain = Some(t)),
            "port" => {
                d.port = Some(v.clone());
                Ok(())
            }
            "alias_domain" => {
                d.alias_domains.extend(super::list(v));
                Ok(())
            }
            "ssl" => flag(&s).map(|_| ()),
            "ssl_only" => flag(&s).map(|b| d.ssl_only = b),
            "ssl_backend" => flag(&s).map(|b| d.ssl_backend = b),
            "ssl_backend_tls_verify" => verify(&s).map(|b| d.ssl_backend_verify = b),
            "ssl_cert" => text(&s).map(|t| d.ssl_cert = Some(t)),
            "ssl_cert_key" => text(&s).map(|t| d.ssl_cert_key = Some(t)),
            "websocket_endpoint" => Ok(()),
            "context_root" => {
                let p = v.trim();
                if p.starts_with('/') && !p.bytes().any(|b| b.is_ascii_control() || b == b' ') {
                    d.context_root = Some(p.to_string());
                    Ok(())
                } else {
                    Err(format!("{p:?}: a path starting with /"))
                }
            }
            "context_root_rewrite" => flag(&s).map(|b| d.context_root_rewrite = b),
            "balance_algorithm" => text(&s).map(|t| d.balance = Some(t)),
            "ip_hash" => flag(&s).map(|b| {
                if b {
                    d.balance = Some("source".into());
                }
            }),
            "health_check" => text(&s).map(|t| d.check = Some(t)),
            "health_check_interval" => millis(&s).map(|n| d.check_interval = Some(n)),
            "network" => text(&s).map(|t| d.network = Some(t)),
            // Read by `ours`; Interlock's own bookkeeping.
            "ext.name" | "app" => Ok(()),
            "backend_option" => Err(BACKEND_OPTIONS.into()),
            _ => Err("unknown label: Interlock's are interlock.hostname, .domain, .port, .alias_domain, .context_root, .context_root_rewrite, .ssl, .ssl_only, .ssl_backend, .ssl_backend_tls_verify, .ssl_cert, .ssl_cert_key, .websocket_endpoint, .balance_algorithm, .ip_hash, .health_check, .health_check_interval, .backend_option, .network and .ext.name".into()),
        };
        if let Err(m) = got {
            errors.push(c.label_error(key, m));
        }
    }
    if errors.is_empty() {
        Ok(d)
    } else {
        Err(errors)
    }
}

fn text(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        other => Err(format!("{other}: expected a non-empty text")),
    }
}

fn flag(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => {
            super::parse_bool(s).ok_or_else(|| format!("{s:?}: expected true or false"))
        }
        other => Err(format!("{other}: expected true or false")),
    }
}

/// `ssl_backend_tls_verify`: `none` (Interlock's default) or `required`, or a boolean.
fn verify(v: &Value) -> Result<bool, String> {
    match v {
        Value::String(s) if s.eq_ignore_ascii_case("none") => Ok(false),
        Value::String(s) if s.eq_ignore_ascii_case("required") => Ok(true),
        other => flag(other).map_err(|_| format!("{other}: expected none or required")),
    }
}

/// Milliseconds, at least 100.
fn millis(v: &Value) -> Result<u64, String> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    n.filter(|&n| n >= 100)
        .ok_or_else(|| format!("{v}: expected milliseconds (100 or more)"))
}

/// `httpchk GET /health` (HAProxy's `option httpchk`; `httpchk /health` too): the path
/// Tether's check GETs.
fn check_path(check: &str) -> Result<String, String> {
    let mut words = check.split_whitespace();
    if words.next() != Some("httpchk") {
        return Err(format!(
            "{check:?}: Tether's health check is a connect, or with httpchk GET /path a GET of that path"
        ));
    }
    let (method, path) = match (words.next(), words.next()) {
        (Some(p), None) if p.starts_with('/') => ("GET", p),
        (Some(m), Some(p)) => (m, p),
        _ => return Err(format!("{check:?}: expected httpchk GET /path")),
    };
    if !matches!(method.to_ascii_uppercase().as_str(), "GET" | "HEAD") || !path.starts_with('/') {
        return Err(format!(
            "{check:?}: Tether's check GETs a path (HEAD is read as GET): write httpchk GET /path"
        ));
    }
    Ok(path.to_string())
}

pub(crate) fn declare(c: &Container, cx: &Context<'_>) -> Translation {
    let (d, origin) = data(c)?;
    let mut errors = Vec::new();
    // The site: hostname.domain, the container's own unless given.
    let hostname = d.hostname.clone().unwrap_or_else(|| c.hostname.clone());
    let domain = d.domain.clone().unwrap_or_else(|| c.domainname.clone());
    let host = match (hostname.as_str(), domain.as_str()) {
        (h, dom) if !dom.is_empty() && !h.is_empty() && h != dom => Some(format!("{h}.{dom}")),
        (_, dom) if !dom.is_empty() => Some(dom.to_string()),
        (h, _) if !h.is_empty() && d.hostname.is_some() => Some(h.to_string()),
        _ => None,
    }
    .map(|h| h.to_ascii_lowercase());
    let mut hosts: Vec<String> = host.iter().cloned().collect();
    hosts.extend(d.alias_domains.iter().map(|a| a.to_ascii_lowercase()));
    let (name, rule) = match (&d.context_root, &host) {
        (Some(root), _) => {
            let name = host.clone().unwrap_or_else(|| c.group.clone());
            let mut rule = format!("PathPrefix(`{root}`)");
            if !hosts.is_empty() {
                rule = format!("{} && {rule}", any_of("Host", &hosts));
            }
            (name, rule)
        }
        (None, Some(h)) => (h.clone(), any_of("Host", &hosts)),
        (None, None) => {
            let field = origin.name("domain", "domain");
            return Err(vec![origin.error(
                c,
                &field,
                "missing: Interlock names the site hostname.domain (the container's --domainname, or interlock.domain); give a domain, or a context_root",
            )]);
        }
    };
    let port_field = origin.name("port", "port");
    let port = port(c, &port_field, d.port.as_deref(), |_, m| {
        origin.error(c, &port_field, m)
    })
    .map_err(|e| errors.push(e))
    .ok();
    let network = d.network.as_deref().map(|n| ("interlock.network", n));
    let ip = address(c, cx, network).map_err(|e| errors.push(e)).ok();
    let balance = d.balance.as_deref().map(|b| {
        super::dockercloud::balance(b).map_err(|m| {
            errors.push(origin.error(c, &origin.name("balance_algorithm", "balance_algorithm"), m))
        })
    });
    // Interlock's HAProxy checked every server (`check inter 5000`).
    let check_field = origin.name("check", "health_check");
    let path = match d.check.as_deref().map(check_path) {
        None => String::new(),
        Some(Ok(p)) => p,
        Some(Err(m)) => {
            errors.push(origin.error(c, &check_field, m));
            String::new()
        }
    };
    let mut health = HealthCheck::of(path);
    health.interval = Duration::from_millis(d.check_interval.unwrap_or(5000));
    health.timeout = health.timeout.min(health.interval);
    let mut r = match route(&name, rule, &name) {
        Ok(r) => Some(r),
        Err(m) => {
            errors.push(origin.error(c, &origin.name("hostname", "hostname"), m));
            None
        }
    };
    let mut middlewares = Vec::new();
    if let (Some(r), Some(root), true) = (r.as_mut(), &d.context_root, d.context_root_rewrite) {
        match strip(&name, root) {
            Ok(m) => {
                r.middlewares.push(m.name.clone());
                middlewares.push(m);
            }
            Err(m) => errors.push(c.label_error("interlock.context_root_rewrite", m)),
        }
    }
    if let Some(r) = r.as_mut() {
        if d.ssl_only {
            r.redirect_https = Some(HttpsRedirect::default());
        }
    }
    let (Some(r), Some(port), Some(ip), true) = (r, port, ip, errors.is_empty()) else {
        return Err(errors);
    };
    let mut srv = server(c, ip, port);
    if d.ssl_backend {
        srv.tls = Some(ServerTls {
            server_name: host.clone().unwrap_or_else(|| ip.to_string()),
            ca_file: None,
            insecure_skip_verify: !d.ssl_backend_verify,
        });
    }
    let mut svc = service(&name, srv);
    svc.health = Some(health);
    if let Some(Ok(b)) = balance {
        svc.balance = b;
    }
    Ok((vec![svc], vec![r], middlewares, Vec::new()))
}

/// `context_root_rewrite`: the context root taken off before the request is sent.
fn strip(name: &str, root: &str) -> Result<crate::middleware::MiddlewareDecl, String> {
    let mut fields = toml::Table::new();
    fields.insert(
        "prefixes".into(),
        toml::Value::Array(vec![toml::Value::String(root.to_string())]),
    );
    let mut table = toml::Table::new();
    table.insert("strip_prefix".into(), toml::Value::Table(fields));
    super::dialect_middleware(&format!("{name}-context-root"), table).map_err(|m| m.join("; "))
}
