//! Traefik v1's frontend options that are middlewares in Tether, each named after the backend
//! (`<backend>-<type>@docker`) and run in this order:
//!
//! - `traefik.frontend.whiteList.sourceRange` (and the older `whitelistSourceRange`):
//!   `ip_allow`; `.whiteList.useXForwardedFor=true` is what Tether does for the proxies it
//!   trusts (`[forwarded] trusted_proxies`);
//! - `traefik.frontend.auth.basic.users` (and the older `auth.basic`), `.usersFile`,
//!   `.removeHeader`: `basic_auth`;
//! - `traefik.frontend.redirect.regex` with `.replacement` (and `.permanent`): `redirect_regex`;
//! - `traefik.frontend.headers.customRequestHeaders` / `customResponseHeaders`
//!   (`Name:value||Name:value`), `frameDeny`, `contentTypeNosniff`, `browserXSSFilter`,
//!   `referrerPolicy`, `contentSecurityPolicy`, `customFrameOptionsValue`: `headers`;
//! - `traefik.frontend.rateLimit.rateSet.<set>.average`, `.period`, `.burst`: one `rate_limit`
//!   for each set (all must pass, as in Traefik v1), grouped by
//!   `traefik.frontend.rateLimit.extractorFunc`: `client.ip` (the default) or
//!   `request.header.<name>`;
//! - the rule's modifiers `PathPrefixStrip`, `PathStrip`, `PathPrefixStripRegex`, `AddPrefix`,
//!   `ReplacePath`, `ReplacePathRegex` (see [`super::translate_rule`]).
//!
//! Each is checked by the code that reads `tether.toml`, its errors told against the label.

use serde::Deserialize;

use super::super::traefik::label_ci;
use super::super::{list, parse_bool, Container, LabelError};
use crate::middleware::{MiddlewareDecl, Origin, RawMiddleware};

/// A path modifier of a v1 rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modifier {
    StripPrefix(Vec<String>),
    StripPrefixRegex(Vec<String>),
    AddPrefix(String),
    ReplacePath(String),
    ReplacePathRegex(String, String),
}

/// One middleware's table (Tether's type and fields) and the label each field came from.
struct Table<'a> {
    kind: &'static str,
    fields: toml::Table,
    keys: Vec<(&'static str, &'a str)>,
}

impl<'a> Table<'a> {
    fn new(kind: &'static str) -> Table<'a> {
        Table {
            kind,
            fields: toml::Table::new(),
            keys: Vec::new(),
        }
    }

    fn put(&mut self, field: &'static str, value: toml::Value, key: &'a str) {
        self.fields.insert(field.to_string(), value);
        self.keys.push((field, key));
    }
}

/// `traefik.frontend.rateLimit.*`: a `rate_limit` table for each rate set, in the sets' order.
fn rate_limits<'a>(
    c: &'a Container,
    tables: &mut Vec<(String, Table<'a>)>,
    errors: &mut Vec<LabelError>,
) {
    const PREFIX: &str = "traefik.frontend.ratelimit.";
    let mut by: Option<(&'a str, String)> = None;
    let mut sets: std::collections::BTreeMap<String, Table<'a>> = Default::default();
    for (key, value) in &c.labels {
        let lower = key.to_ascii_lowercase();
        let Some(option) = lower.strip_prefix(PREFIX) else {
            continue;
        };
        if option == "extractorfunc" {
            let v = value.trim();
            match v {
                "client.ip" => by = Some((key, "client_ip".into())),
                _ if v.to_ascii_lowercase().starts_with("request.header.") => {
                    by = Some((key, format!("header:{}", &v["request.header.".len()..])))
                }
                _ => errors.push(c.label_error(
                    key,
                    "expected client.ip or request.header.<name> (request.host is not supported)",
                )),
            }
            continue;
        }
        let parts: Vec<&str> = option.split('.').collect();
        let (set, field) = match parts.as_slice() {
            ["rateset", set, field] => (*set, *field),
            _ => {
                errors.push(c.label_error(
                    key,
                    "not supported: Tether reads rateLimit.extractorFunc and rateLimit.rateSet.<set>.average, .period and .burst",
                ));
                continue;
            }
        };
        let t = sets
            .entry(set.to_string())
            .or_insert_with(|| Table::new("rate_limit"));
        let number = |v: &str| v.trim().parse::<i64>().ok().filter(|n| *n > 0);
        match field {
            "average" | "burst" => match number(value) {
                Some(n) => t.put(
                    if field == "average" {
                        "average"
                    } else {
                        "burst"
                    },
                    toml::Value::Integer(n),
                    key,
                ),
                None => errors.push(c.label_error(key, "expected a number of requests above 0")),
            },
            "period" => {
                // A duration, or a number of seconds.
                let v = value.trim();
                let v = match v.parse::<u64>() {
                    Ok(n) => format!("{n}s"),
                    Err(_) => v.to_string(),
                };
                t.put("period", toml::Value::String(v), key);
            }
            _ => errors.push(c.label_error(
                key,
                "not supported: a rate set has average, period and burst",
            )),
        }
    }
    for (set, mut t) in sets {
        if let Some((k, b)) = &by {
            t.put("by", toml::Value::String(b.clone()), k);
        }
        tables.push((format!("ratelimit-{set}"), t));
    }
}

/// The frontend's middlewares for backend `name`, in the order they run, and the modifiers of
/// its rule after them.
pub(super) fn declare(
    c: &Container,
    name: &str,
    modifiers: &[Modifier],
    rule_key: &str,
    secrets: &std::path::Path,
) -> Result<Vec<MiddlewareDecl>, Vec<LabelError>> {
    let mut errors = Vec::new();
    let mut tables: Vec<(String, Table<'_>)> = Vec::new();
    let text = |v: &str| toml::Value::String(v.to_string());
    let strings =
        |v: &str| toml::Value::Array(list(v).into_iter().map(toml::Value::String).collect());

    // Allow list.
    let range = label_ci(c, "traefik.frontend.whiteList.sourceRange")
        .or_else(|| label_ci(c, "traefik.frontend.whitelistSourceRange"));
    if let Some((k, v)) = range {
        let mut t = Table::new("ip_allow");
        t.put("ranges", strings(v), k);
        tables.push(("whitelist".into(), t));
    }
    if let Some((k, v)) = label_ci(c, "traefik.frontend.whiteList.useXForwardedFor") {
        if parse_bool(v) != Some(true) {
            errors.push(c.label_error(k, "Tether takes the client address from [forwarded] trusted_proxies for every rule and middleware (true only; leave it out)"));
        }
    }

    // Basic auth.
    let users = label_ci(c, "traefik.frontend.auth.basic.users")
        .or_else(|| label_ci(c, "traefik.frontend.auth.basic"));
    let users_file = label_ci(c, "traefik.frontend.auth.basic.usersFile");
    if users.is_some() || users_file.is_some() {
        let mut t = Table::new("basic_auth");
        if let Some((k, v)) = users {
            let lines: Vec<toml::Value> = v
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(|u| toml::Value::String(u.to_string()))
                .collect();
            t.put("users", toml::Value::Array(lines), k);
        }
        if let Some((k, v)) = users_file {
            match std::path::Path::new(v.trim()).strip_prefix(secrets).ok().and_then(|p| p.to_str()) {
                Some(n) if !n.contains('/') => t.put("users_file", text(n), k),
                _ => errors.push(c.label_error(k, format!("Tether reads a users file from labels only as a Docker secret given to it ({}/NAME)", secrets.display()))),
            }
        }
        if let Some((k, v)) = label_ci(c, "traefik.frontend.auth.basic.removeHeader") {
            match parse_bool(v) {
                Some(b) => t.put("remove_header", toml::Value::Boolean(b), k),
                None => errors.push(c.label_error(k, "expected true or false")),
            }
        }
        tables.push(("basicauth".into(), t));
    }

    // Redirect by regex.
    let regex = label_ci(c, "traefik.frontend.redirect.regex");
    let replacement = label_ci(c, "traefik.frontend.redirect.replacement");
    match (regex, replacement) {
        (Some((rk, r)), Some((pk, p))) => {
            let mut t = Table::new("redirect_regex");
            t.put("regex", text(r), rk);
            t.put("replacement", text(p), pk);
            if let Some((k, v)) = label_ci(c, "traefik.frontend.redirect.permanent") {
                if let Some(b) = parse_bool(v) {
                    t.put("permanent", toml::Value::Boolean(b), k);
                }
            }
            tables.push(("redirect".into(), t));
        }
        (Some((k, _)), None) | (None, Some((k, _))) => errors.push(c.label_error(
            k,
            "traefik.frontend.redirect.regex and .replacement go together",
        )),
        (None, None) => {}
    }

    // Headers.
    let mut h = Table::new("headers");
    for (label, side) in [
        ("customRequestHeaders", "request"),
        ("customResponseHeaders", "response"),
    ] {
        let Some((k, v)) = label_ci(c, &format!("traefik.frontend.headers.{label}")) else {
            continue;
        };
        let mut set = toml::Table::new();
        let mut remove = Vec::new();
        for pair in v.split("||").map(str::trim).filter(|p| !p.is_empty()) {
            match pair.split_once(':') {
                Some((n, val)) if val.trim().is_empty() => remove.push(text(n.trim())),
                Some((n, val)) => {
                    set.insert(n.trim().to_string(), text(val.trim()));
                }
                None => errors.push(c.label_error(k, "expected Name:value||Name:value")),
            }
        }
        let mut rules = toml::Table::new();
        rules.insert("set".into(), toml::Value::Table(set));
        rules.insert("remove".into(), toml::Value::Array(remove));
        h.put(
            if side == "request" {
                "request"
            } else {
                "response"
            },
            toml::Value::Table(rules),
            k,
        );
    }
    for (label, field, flag) in [
        ("frameDeny", "frame_deny", true),
        ("contentTypeNosniff", "content_type_nosniff", true),
        ("browserXSSFilter", "browser_xss_filter", true),
        ("referrerPolicy", "referrer_policy", false),
        ("contentSecurityPolicy", "content_security_policy", false),
    ] {
        if let Some((k, v)) = label_ci(c, &format!("traefik.frontend.headers.{label}")) {
            if flag {
                match parse_bool(v) {
                    Some(b) => h.put(field, toml::Value::Boolean(b), k),
                    None => errors.push(c.label_error(k, "expected true or false")),
                }
            } else {
                h.put(field, text(v), k);
            }
        }
    }
    if let Some((k, v)) = label_ci(c, "traefik.frontend.headers.customFrameOptionsValue") {
        let mut set = toml::Table::new();
        set.insert("X-Frame-Options".into(), text(v));
        let response = h
            .fields
            .entry("response")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(r) = response {
            if let toml::Value::Table(s) = r
                .entry("set")
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            {
                s.extend(set);
            }
        }
        h.keys.push(("response", k));
    }
    if !h.fields.is_empty() {
        tables.push(("headers".into(), h));
    }

    // Rate limits: one per rate set.
    rate_limits(c, &mut tables, &mut errors);

    // The rule's path modifiers.
    for (i, m) in modifiers.iter().enumerate() {
        let (kind, fields): (&'static str, Vec<(&'static str, toml::Value)>) = match m {
            Modifier::StripPrefix(p) => (
                "strip_prefix",
                vec![(
                    "prefixes",
                    toml::Value::Array(p.iter().map(|s| text(s)).collect()),
                )],
            ),
            Modifier::StripPrefixRegex(p) => (
                "strip_prefix_regex",
                vec![(
                    "regex",
                    toml::Value::Array(p.iter().map(|s| text(s)).collect()),
                )],
            ),
            Modifier::AddPrefix(p) => ("add_prefix", vec![("prefix", text(p))]),
            Modifier::ReplacePath(p) => ("replace_path", vec![("path", text(p))]),
            Modifier::ReplacePathRegex(r, p) => (
                "replace_path_regex",
                vec![("regex", text(r)), ("replacement", text(p))],
            ),
        };
        let mut t = Table::new(kind);
        for (f, v) in fields {
            t.put(f, v, rule_key);
        }
        tables.push((format!("rule{}", i + 1), t));
    }

    let mut out = Vec::new();
    for (suffix, t) in tables {
        let mw_name = format!("{name}-{suffix}");
        let first = t.keys.first().map_or(rule_key, |(_, k)| *k);
        let mut outer = toml::Table::new();
        outer.insert(t.kind.to_string(), toml::Value::Table(t.fields));
        let raw = match RawMiddleware::deserialize(toml::Value::Table(outer)) {
            Ok(r) => r,
            Err(e) => {
                errors.push(c.label_error(first, e.to_string()));
                continue;
            }
        };
        match raw.convert(&mw_name, "docker", Origin::Untrusted) {
            Ok(d) => out.push(d),
            Err(es) => errors.extend(es.into_iter().map(|e| {
                let field = e
                    .field
                    .strip_prefix(&format!("middlewares.{mw_name}.{}.", t.kind))
                    .unwrap_or("");
                let field = field.split(['[', '.']).next().unwrap_or(field);
                let key = t
                    .keys
                    .iter()
                    .find(|(f, _)| *f == field)
                    .map_or(first, |(_, k)| *k);
                c.label_error(key, e.message)
            })),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}
