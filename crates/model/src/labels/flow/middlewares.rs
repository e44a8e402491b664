//! Docker Flow Proxy's request options as Tether's middlewares, for both ways DFP is told them
//! (`com.df.*` labels, and the parameters of `/v1/docker-flow-proxy/reconfigure`), run in this
//! order:
//!
//! | DFP | Tether |
//! |---|---|
//! | `redirectFromDomain=a.com,b.com` | `redirect_regex` to the first `serviceDomain`, 301, path and query kept (and the route also matches those hosts) |
//! | `allowedMethods`, `deniedMethods` | `methods` (405 with `Allow`, as DFP answers) |
//! | `users` (`user:pass,...`), `usersPassEncrypted`, `usersSecret` | `basic_auth`: plain passwords are hashed (SHA-512-crypt) when read, never kept; `usersSecret` names the Docker secret `dfp_users_<name>`, which must hold hashes (`usersPassEncrypted=true`) |
//! | `reqPathSearchReplace=search,replace[:search,replace...]`, or `reqPathSearch` with `reqPathReplace` | `replace_path_regex` each (`\1` is `${1}`) |
//! | `addReqHeader`, `setReqHeader` (`Name value,...`), `delReqHeader` (`Name,...`), and the `Res` three; `outboundHostname` (the `Host` the service is sent) | `headers` |
//! | `compressionAlgo=gzip` with `compressionType` (media types, space- or comma-separated) | `compress` in gzip, of those types only (HAProxy's `compression algo`/`type`); `identity` is no compression; `deflate` is refused |
//!
//! Every table is returned as the file's TOML (so the admin API can store it as a document),
//! each with the parameter it came from, for errors.

use crate::middleware::htpasswd;

/// The parameters read here.
pub const PARAMS: &[&str] = &[
    "redirectFromDomain",
    "allowedMethods",
    "deniedMethods",
    "users",
    "usersPassEncrypted",
    "usersSecret",
    "reqPathSearchReplace",
    "reqPathSearch",
    "reqPathReplace",
    "addReqHeader",
    "setReqHeader",
    "delReqHeader",
    "addResHeader",
    "setResHeader",
    "delResHeader",
    "compressionAlgo",
    "compressionType",
    "outboundHostname",
];

/// Every name suffix [`translate`] gives (`<service>-<suffix>`), for forgetting those a later
/// call no longer asks for.
pub const SUFFIXES: &[&str] = &[
    "redirect-from-domain",
    "methods",
    "auth",
    "path-1",
    "path-2",
    "path-3",
    "path-4",
    "headers",
    "compress",
];

/// One middleware to declare: its name's suffix (`<service>-<suffix>`), its table (`{type =
/// {fields}}`) and the parameter it came from.
#[derive(Debug, Clone)]
pub struct Table {
    pub suffix: &'static str,
    pub table: toml::Table,
    pub param: &'static str,
}

/// What the options ask for.
#[derive(Debug, Default)]
pub struct Translated {
    pub tables: Vec<Table>,
    /// Hosts redirected to the service's domain: the route must match them too.
    pub redirect_from: Vec<String>,
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn s(v: &str) -> toml::Value {
    toml::Value::String(v.to_string())
}

fn strings(v: &[String]) -> toml::Value {
    toml::Value::Array(v.iter().map(|x| s(x)).collect())
}

fn one(kind: &str, fields: toml::Table) -> toml::Table {
    let mut t = toml::Table::new();
    t.insert(kind.to_string(), toml::Value::Table(fields));
    t
}

/// `\1` (HAProxy's) as `${1}`.
fn replacement(r: &str) -> String {
    let mut out = String::new();
    let mut chars = r.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some(d)) if d.is_ascii_digit() => {
                out.push_str(&format!("${{{d}}}"));
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// Translate the options `get` gives (by DFP's parameter name); `domains`: the service's
/// `serviceDomain`. Errors name the parameter.
pub fn translate(
    get: &dyn Fn(&str) -> Option<String>,
    domains: &[String],
) -> Result<Translated, Vec<(&'static str, String)>> {
    let mut out = Translated::default();
    let mut errors = Vec::new();

    if let Some(v) = get("redirectFromDomain") {
        let from = list(&v);
        match domains.first() {
            None => errors.push((
                "redirectFromDomain",
                "needs serviceDomain: the domain to redirect to".to_string(),
            )),
            Some(to) if !from.is_empty() => {
                let alternatives: Vec<String> = from.iter().map(|d| regex_escape(d)).collect();
                let mut f = toml::Table::new();
                f.insert(
                    "regex".into(),
                    s(&format!(
                        "^(https?)://(?:{})(?::[0-9]+)?(/.*)?$",
                        alternatives.join("|")
                    )),
                );
                f.insert("replacement".into(), s(&format!("${{1}}://{to}${{2}}")));
                f.insert("permanent".into(), toml::Value::Boolean(true));
                out.tables.push(Table {
                    suffix: "redirect-from-domain",
                    table: one("redirect_regex", f),
                    param: "redirectFromDomain",
                });
                out.redirect_from = from;
            }
            Some(_) => {}
        }
    }

    let allow = get("allowedMethods").map(|v| list(&v)).unwrap_or_default();
    let deny = get("deniedMethods").map(|v| list(&v)).unwrap_or_default();
    if !allow.is_empty() || !deny.is_empty() {
        let mut f = toml::Table::new();
        f.insert("allow".into(), strings(&allow));
        f.insert("deny".into(), strings(&deny));
        out.tables.push(Table {
            suffix: "methods",
            table: one("methods", f),
            param: if allow.is_empty() {
                "deniedMethods"
            } else {
                "allowedMethods"
            },
        });
    }

    let encrypted = match get("usersPassEncrypted").as_deref().map(str::trim) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            errors.push((
                "usersPassEncrypted",
                format!("{other:?}: expected true or false"),
            ));
            false
        }
    };
    let users = get("users").map(|v| list(&v)).unwrap_or_default();
    let secret = get("usersSecret").filter(|v| !v.trim().is_empty());
    if !users.is_empty() || secret.is_some() {
        let mut f = toml::Table::new();
        let mut lines = Vec::new();
        for u in &users {
            let Some((name, pass)) = u.split_once(':') else {
                errors.push(("users", "expected user:password,user:password".to_string()));
                continue;
            };
            lines.push(s(&if encrypted {
                format!("{name}:{pass}")
            } else {
                let h = htpasswd::hash_plain(name, pass);
                format!("{}:{}", h.name, h.hash)
            }));
        }
        if !lines.is_empty() {
            f.insert("users".into(), toml::Value::Array(lines));
        }
        if let Some(name) = secret {
            if encrypted {
                f.insert(
                    "users_file".into(),
                    s(&format!("dfp_users_{}", name.trim())),
                );
            } else {
                errors.push((
                    "usersSecret",
                    "Tether reads a users secret of hashed passwords only: write it with mkpasswd or htpasswd and set usersPassEncrypted=true".to_string(),
                ));
            }
        }
        out.tables.push(Table {
            suffix: "auth",
            table: one("basic_auth", f),
            param: if users.is_empty() {
                "usersSecret"
            } else {
                "users"
            },
        });
    }

    let mut pairs: Vec<(String, String)> = Vec::new();
    if let Some(v) = get("reqPathSearchReplace") {
        for pair in v.split(':').filter(|p| !p.trim().is_empty()) {
            match pair.split_once(',') {
                Some((a, b)) => pairs.push((a.to_string(), b.to_string())),
                None => errors.push((
                    "reqPathSearchReplace",
                    format!("{pair:?}: expected search,replace (pairs separated by ':')"),
                )),
            }
        }
    }
    match (get("reqPathSearch"), get("reqPathReplace")) {
        (Some(a), Some(b)) => pairs.push((a, b)),
        (Some(_), None) => {
            errors.push(("reqPathReplace", "missing: reqPathSearch needs it".into()))
        }
        (None, Some(_)) => {
            errors.push(("reqPathSearch", "missing: reqPathReplace needs it".into()))
        }
        (None, None) => {}
    }
    const PATH_SUFFIXES: [&str; 4] = ["path-1", "path-2", "path-3", "path-4"];
    if pairs.len() > PATH_SUFFIXES.len() {
        errors.push((
            "reqPathSearchReplace",
            format!("at most {} pairs", PATH_SUFFIXES.len()),
        ));
    }
    for ((search, replace), suffix) in pairs.iter().zip(PATH_SUFFIXES) {
        let mut f = toml::Table::new();
        f.insert("regex".into(), s(search));
        f.insert("replacement".into(), s(&replacement(replace)));
        out.tables.push(Table {
            suffix,
            table: one("replace_path_regex", f),
            param: "reqPathSearchReplace",
        });
    }

    let mut request = toml::Table::new();
    let mut response = toml::Table::new();
    let mut param = None;
    for (p, op) in [
        ("delReqHeader", "remove"),
        ("setReqHeader", "set"),
        ("addReqHeader", "add"),
        ("delResHeader", "remove"),
        ("setResHeader", "set"),
        ("addResHeader", "add"),
    ] {
        let Some(v) = get(p) else { continue };
        param.get_or_insert(p);
        let rules = if p.contains("Req") {
            &mut request
        } else {
            &mut response
        };
        if op == "remove" {
            rules.insert("remove".into(), strings(&list(&v)));
            continue;
        }
        let mut fields = toml::Table::new();
        for h in list(&v) {
            if h.contains("%[") {
                errors.push((p, format!("{h:?}: HAProxy sample expressions (%[...]) are not supported; give a fixed value")));
                continue;
            }
            match h.split_once(' ') {
                Some((n, val)) if !val.trim().is_empty() => {
                    fields.insert(n.trim().to_string(), s(val.trim()));
                }
                _ => errors.push((p, format!("{h:?}: expected \"Name value\""))),
            }
        }
        rules.insert(op.into(), toml::Value::Table(fields));
    }
    // `outboundHostname`: the Host field the service is sent (HAProxy's `http-request
    // set-header Host`).
    if let Some(h) = get("outboundHostname") {
        let h = h.trim().to_string();
        if h.is_empty() || h.contains(' ') {
            errors.push(("outboundHostname", format!("{h:?}: expected a host name")));
        } else {
            param.get_or_insert("outboundHostname");
            let set = request
                .entry("set")
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = set {
                t.insert("Host".into(), s(&h));
            }
        }
    }
    if let Some(p) = param {
        let mut f = toml::Table::new();
        if !request.is_empty() {
            f.insert("request".into(), toml::Value::Table(request));
        }
        if !response.is_empty() {
            f.insert("response".into(), toml::Value::Table(response));
        }
        out.tables.push(Table {
            suffix: "headers",
            table: one("headers", f),
            param: p,
        });
    }
    match (get("compressionAlgo"), get("compressionType")) {
        (Some(algo), types) => match algo.trim() {
            "gzip" => {
                let mut f = toml::Table::new();
                f.insert("encodings".into(), strings(&["gzip".to_string()]));
                if let Some(t) = types {
                    let t: Vec<String> = t
                        .split([' ', ','])
                        .filter(|x| !x.is_empty())
                        .map(str::to_string)
                        .collect();
                    f.insert("include_types".into(), strings(&t));
                }
                out.tables.push(Table {
                    suffix: "compress",
                    table: one("compress", f),
                    param: "compressionAlgo",
                });
            }
            "identity" => {}
            "deflate" | "raw-deflate" => errors.push((
                "compressionAlgo",
                "deflate is not supported (browsers disagree on what it means): use gzip".into(),
            )),
            other => errors.push((
                "compressionAlgo",
                format!("{other:?}: expected gzip or identity"),
            )),
        },
        (None, Some(_)) => errors.push(("compressionType", "needs compressionAlgo=gzip".into())),
        (None, None) => {}
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// A host name as a regex that matches it literally.
fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = !(c.is_ascii_alphanumeric() || c == '-');
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}
