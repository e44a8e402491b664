//! Traefik v2/v3 middlewares (`traefik.http.middlewares.<name>.<type>.<option>`, keys in any
//! case), as Tether's middlewares of the same meaning, named `<name>@docker`:
//!
//! | Traefik | Tether |
//! |---|---|
//! | `basicauth.users`, `.usersfile`, `.realm`, `.removeheader` | `basic_auth` (`usersfile`: a Docker secret given to Tether, `/run/secrets/NAME`) |
//! | `ipallowlist.sourcerange`, `ipwhitelist.sourcerange`, `.ipstrategy.depth`, `.rejectstatuscode` | `ip_allow.ranges`, `.depth`, `.reject_status` |
//! | `stripprefix.prefixes` (`.forceslash=true`) | `strip_prefix` |
//! | `stripprefixregex.regex` | `strip_prefix_regex` |
//! | `addprefix.prefix` | `add_prefix` |
//! | `replacepath.path` | `replace_path` |
//! | `replacepathregex.regex`, `.replacement` | `replace_path_regex` |
//! | `headers.customrequestheaders.<H>`, `.customresponseheaders.<H>` (empty: removed) | `headers.request`/`.response` `set`, `remove` |
//! | `headers.framedeny`, `.contenttypenosniff`, `.browserxssfilter`, `.referrerpolicy`, `.contentsecuritypolicy`, `.customframeoptionsvalue`, `.permissionspolicy`, `.stsseconds`, `.stsincludesubdomains`, `.stspreload` | `headers` security fields |
//! | `redirectregex.regex`, `.replacement`, `.permanent` | `redirect_regex` |
//! | `redirectscheme.scheme`, `.port`, `.permanent` | `redirect_scheme` |
//! | `chain.middlewares` | `chain` |
//! | `ratelimit.average`, `.burst`, `.period` (`10s`, or seconds) | `rate_limit` |
//! | `inflightreq.amount` | `in_flight` |
//! | `compress=true`, `compress.encodings`, `.excludedcontenttypes`, `.includedcontenttypes`, `.minresponsebodybytes` | `compress` |
//! | `ratelimit.`/`inflightreq.` `sourcecriterion.ipstrategy.depth`, `.sourcecriterion.requestheadername` | `by = "client_ip"` with `depth`, `by = "header:NAME"` |
//!
//! Every other type and option is refused by name, with the reason.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::super::{list, parse_bool, Container, LabelError};
use super::https::Fields;
use crate::middleware::{MiddlewareDecl, Origin, RawMiddleware};

/// Traefik's type names, and Tether's.
const TYPES: &[(&str, &str)] = &[
    ("basicauth", "basic_auth"),
    ("ipallowlist", "ip_allow"),
    ("ipwhitelist", "ip_allow"),
    ("stripprefix", "strip_prefix"),
    ("stripprefixregex", "strip_prefix_regex"),
    ("addprefix", "add_prefix"),
    ("replacepath", "replace_path"),
    ("replacepathregex", "replace_path_regex"),
    ("headers", "headers"),
    ("redirectregex", "redirect_regex"),
    ("redirectscheme", "redirect_scheme"),
    ("chain", "chain"),
    ("ratelimit", "rate_limit"),
    ("inflightreq", "in_flight"),
    ("compress", "compress"),
];

/// Why a Traefik type Tether does not have is refused.
fn missing_type(kind: &str) -> String {
    match kind {
        "forwardauth" | "digestauth" => format!(
            "middleware type {kind} is not supported: Tether checks basicauth; put the authentication in the application or use basicauth"
        ),
        _ => format!(
            "middleware type {kind} is not supported: Tether has basicauth, ipallowlist, stripprefix, stripprefixregex, addprefix, replacepath, replacepathregex, headers, redirectregex, redirectscheme, ratelimit, inflightreq, compress and chain"
        ),
    }
}

/// One value as Tether's field wants it, and the label it came from.
struct Put<'a> {
    path: Vec<String>,
    value: toml::Value,
    key: &'a str,
}

/// Middleware `name` of container `c` from its labels.
pub(super) fn declare(
    c: &Container,
    name: &str,
    fields: &Fields<'_>,
    secrets: &std::path::Path,
) -> Result<MiddlewareDecl, Vec<LabelError>> {
    let mut errors = Vec::new();
    let mut kinds: Vec<&str> = fields
        .keys()
        .map(|f| f.split('.').next().unwrap_or(f))
        .collect();
    kinds.dedup();
    let (kind, first_key) = match (kinds.as_slice(), fields.values().next()) {
        ([one], Some((k, _))) => (*one, *k),
        (_, Some((k, _))) => {
            return Err(vec![c.label_error(
                k,
                format!(
                    "middleware {name} has several types ({}): one middleware is one type",
                    kinds.join(", ")
                ),
            )])
        }
        _ => return Err(Vec::new()),
    };
    let Some(&(_, ours)) = TYPES.iter().find(|(t, _)| *t == kind) else {
        return Err(vec![c.label_error(first_key, missing_type(kind))]);
    };
    let mut puts: Vec<Put<'_>> = Vec::new();
    for (field, (key, value)) in fields {
        let option = field.split_once('.').map_or("", |(_, o)| o);
        match option_of(c, ours, option, key, value, secrets) {
            Ok(Some((path, value))) => puts.push(Put { path, value, key }),
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // The table of Tether's type, read by the code that reads tether.toml.
    let mut table = toml::Table::new();
    for p in &puts {
        let mut at = table
            .entry(ours.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        for (i, seg) in p.path.iter().enumerate() {
            let toml::Value::Table(t) = at else { break };
            if i + 1 == p.path.len() {
                match (t.get_mut(seg), &p.value) {
                    // Several fields removed: one list.
                    (Some(toml::Value::Array(have)), toml::Value::Array(more)) => {
                        have.extend(more.iter().cloned())
                    }
                    _ => {
                        t.insert(seg.clone(), p.value.clone());
                    }
                }
                break;
            }
            at = t
                .entry(seg.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        }
    }
    if puts.is_empty() {
        table.insert(ours.to_string(), toml::Value::Table(toml::Table::new()));
    }
    let raw = RawMiddleware::deserialize(toml::Value::Table(table))
        .map_err(|e| vec![c.label_error(first_key, e.to_string())])?;
    raw.convert(name, "docker", Origin::Untrusted)
        .map_err(|errs| {
            errs.into_iter()
                .map(|e| {
                    // `middlewares.<name>.<type>.<field>[i]...`: back to the label that set it.
                    let field = e
                        .field
                        .strip_prefix(&format!("middlewares.{name}.{ours}."))
                        .unwrap_or("");
                    let field = field.split('[').next().unwrap_or(field);
                    let key = puts
                        .iter()
                        .find(|p| {
                            p.path.join(".") == field || p.path.first().is_some_and(|f| f == field)
                        })
                        .map_or(first_key, |p| p.key);
                    c.label_error(key, e.message)
                })
                .collect()
        })
}

fn string(v: &str) -> toml::Value {
    toml::Value::String(v.to_string())
}

fn strings(v: &str) -> toml::Value {
    toml::Value::Array(list(v).into_iter().map(toml::Value::String).collect())
}

type Option_ = Result<Option<(Vec<String>, toml::Value)>, LabelError>;

/// Option `option` (lower case) of Traefik's type, as Tether's field of type `ours`.
fn option_of(
    c: &Container,
    ours: &str,
    option: &str,
    key: &str,
    value: &str,
    secrets: &std::path::Path,
) -> Option_ {
    let bad = |m: &str| c.label_error(key, m);
    let flag = || {
        parse_bool(value)
            .map(toml::Value::Boolean)
            .ok_or_else(|| bad("expected true or false"))
    };
    let one = |f: &str, v: toml::Value| Ok(Some((vec![f.to_string()], v)));
    match (ours, option) {
        ("basic_auth", "users") => {
            // Users are comma-separated; a hash holds no comma.
            let users: Vec<toml::Value> = value
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(|u| toml::Value::String(u.to_string()))
                .collect();
            one("users", toml::Value::Array(users))
        }
        ("basic_auth", "usersfile") => {
            let v = value.trim();
            let name = std::path::Path::new(v)
                .strip_prefix(secrets)
                .ok()
                .and_then(|p| p.to_str())
                .filter(|n| !n.contains('/'));
            match name {
                Some(n) => one("users_file", string(n)),
                None => Err(bad(&format!(
                    "Tether reads a users file from labels only as a Docker secret given to it ({}/NAME)",
                    secrets.display()
                ))),
            }
        }
        ("basic_auth", "realm") => one("realm", string(value)),
        ("basic_auth", "removeheader") => one("remove_header", flag()?),
        ("basic_auth", "headerfield") => Err(bad(
            "not supported: Tether does not pass the user name on in a header",
        )),
        ("ip_allow", "sourcerange") => one("ranges", strings(value)),
        ("ip_allow", "rejectstatuscode") => match value.trim().parse::<i64>() {
            Ok(n) => one("reject_status", toml::Value::Integer(n)),
            _ => Err(bad("expected a status code")),
        },
        ("strip_prefix", "prefixes") => one("prefixes", strings(value)),
        ("strip_prefix", "forceslash") => match parse_bool(value) {
            Some(true) => Ok(None),
            _ => Err(bad("only true is supported: Tether makes an emptied path /")),
        },
        ("strip_prefix_regex", "regex") => one("regex", strings(value)),
        ("add_prefix", "prefix") => one("prefix", string(value)),
        ("replace_path", "path") => one("path", string(value)),
        ("replace_path_regex" | "redirect_regex", "regex") => one("regex", string(value)),
        ("replace_path_regex" | "redirect_regex", "replacement") => {
            one("replacement", string(value))
        }
        ("redirect_regex" | "redirect_scheme", "permanent") => one("permanent", flag()?),
        ("redirect_scheme", "scheme") => one("scheme", string(value)),
        ("redirect_scheme", "port") => match value.trim().parse::<i64>() {
            Ok(p) => one("port", toml::Value::Integer(p)),
            Err(_) => Err(bad("not a port number")),
        },
        ("chain", "middlewares") => one("middlewares", strings(value)),
        ("rate_limit", "average") => match value.trim().parse::<i64>() {
            Ok(0) => Err(bad(
                "0 turns Traefik's rate limit off: remove the middleware instead",
            )),
            Ok(n) if n > 0 => one("average", toml::Value::Integer(n)),
            _ => Err(bad("expected a number of requests")),
        },
        // The same name in both: `burst`, `amount`.
        ("rate_limit", "burst") | ("in_flight", "amount") => match value.trim().parse::<i64>() {
            Ok(n) if n > 0 => one(option, toml::Value::Integer(n)),
            _ => Err(bad("expected a number of requests above 0")),
        },
        ("rate_limit", "period") => {
            // Traefik takes a duration, or a number of seconds.
            let v = value.trim();
            match v.parse::<u64>() {
                Ok(n) => one("period", string(&format!("{n}s"))),
                Err(_) => one("period", string(v)),
            }
        }
        // Traefik's ipStrategy, on the allow list and on the limits' source criterion.
        ("ip_allow", "ipstrategy.depth")
        | ("rate_limit" | "in_flight", "sourcecriterion.ipstrategy.depth") => {
            match value.trim().parse::<i64>() {
                Ok(n) if n >= 0 => one("depth", toml::Value::Integer(n)),
                _ => Err(bad("expected a depth of 0 or more")),
            }
        }
        ("rate_limit" | "in_flight", "sourcecriterion.requestheadername") => {
            one("by", string(&format!("header:{}", value.trim())))
        }
        ("rate_limit" | "in_flight", "sourcecriterion.requesthost") => Err(bad(
            "not supported: group by a field with sourcecriterion.requestheadername",
        )),
        ("ip_allow", "ipstrategy.excludedips")
        | ("rate_limit" | "in_flight", "sourcecriterion.ipstrategy.excludedips") => Err(bad(
            "not supported: list the proxies in [forwarded] trusted_proxies, which the client address skips",
        )),
        ("compress", "") => match parse_bool(value) {
            Some(true) => Ok(None),
            _ => Err(bad("expected true (leave the middleware out for no compression)")),
        },
        ("compress", "encodings") => one("encodings", strings(value)),
        ("compress", "excludedcontenttypes") => one("exclude_types", strings(value)),
        ("compress", "includedcontenttypes") => one("include_types", strings(value)),
        ("compress", "minresponsebodybytes") => match value.trim().parse::<i64>() {
            Ok(n) if n >= 0 => one("min_size", toml::Value::Integer(n)),
            _ => Err(bad("expected a number of bytes")),
        },
        ("compress", "defaultencoding") => Err(bad(
            "not supported: Tether compresses only for a client whose Accept-Encoding asks for it",
        )),
        ("headers", o) => headers(c, o, key, value),
        _ => Err(bad(&format!("not supported: {ours} has no option {option:?} in Tether"))),
    }
}

/// A `headers` option.
fn headers(c: &Container, option: &str, key: &str, value: &str) -> Option_ {
    let bad = |m: &str| c.label_error(key, m);
    let flag = || {
        parse_bool(value)
            .map(toml::Value::Boolean)
            .ok_or_else(|| bad("expected true or false"))
    };
    let at = |p: &[&str], v: toml::Value| Ok(Some((p.iter().map(|s| s.to_string()).collect(), v)));
    for (prefix, side) in [
        ("customrequestheaders.", "request"),
        ("customresponseheaders.", "response"),
    ] {
        if option.starts_with(prefix) {
            // The field's name as written in the label.
            let name = &key[key.len() - (option.len() - prefix.len())..];
            return if value.is_empty() {
                at(&[side, "remove"], toml::Value::Array(vec![string(name)]))
            } else {
                at(&[side, "set", name], string(value))
            };
        }
    }
    match option {
        "framedeny" => at(&["frame_deny"], flag()?),
        "contenttypenosniff" => at(&["content_type_nosniff"], flag()?),
        "browserxssfilter" => at(&["browser_xss_filter"], flag()?),
        "referrerpolicy" => at(&["referrer_policy"], string(value)),
        "contentsecuritypolicy" => at(&["content_security_policy"], string(value)),
        "customframeoptionsvalue" => at(&["response", "set", "X-Frame-Options"], string(value)),
        "permissionspolicy" => at(&["response", "set", "Permissions-Policy"], string(value)),
        "stsseconds" => match value.trim().parse::<i64>() {
            Ok(s) if s >= 0 => at(&["sts_seconds"], toml::Value::Integer(s)),
            _ => Err(bad("expected a number of seconds")),
        },
        "stsincludesubdomains" => at(&["sts_include_subdomains"], flag()?),
        "stspreload" => at(&["sts_preload"], flag()?),
        "forcestsheader" => match parse_bool(value) {
            Some(false) => Ok(None),
            _ => Err(bad("Tether sends Strict-Transport-Security over TLS only, as RFC 6797 asks")),
        },
        _ => Err(bad(&format!(
            "headers.{option} is not supported: Tether reads customrequestheaders, customresponseheaders, framedeny, contenttypenosniff, browserxssfilter, referrerpolicy, contentsecuritypolicy, customframeoptionsvalue, permissionspolicy and the sts* options"
        ))),
    }
}

/// Every middleware the container's labels define, by name.
pub(super) fn all(
    c: &Container,
    defined: &BTreeMap<String, Fields<'_>>,
    secrets: &std::path::Path,
) -> (Vec<MiddlewareDecl>, Vec<LabelError>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (name, fields) in defined {
        match declare(c, name, fields, secrets) {
            Ok(m) => out.push(m),
            Err(e) => errors.extend(e),
        }
    }
    (out, errors)
}
