//! Interlock's `INTERLOCK_DATA` environment variable, a JSON object:
//! `{"hostname":"demo","domain":"interlock.com","port":5000,"alias_domains":["www.demo.com"]}`.
//!
//! Every container with the same `hostname.domain` is a replica of one service named after that
//! host; requests for the host or one of its aliases (`alias_domains`, or `alias`) go to it.
//! `port` defaults to the container's only exposed port. Other Interlock fields are not read.

use serde::Deserialize;

use super::{address, any_of, port, route, server, service, Container, Context, Translation};

const VAR: &str = "INTERLOCK_DATA";

#[derive(Deserialize)]
struct Data {
    hostname: Option<String>,
    domain: Option<String>,
    port: Option<serde_json::Value>,
    #[serde(default)]
    alias_domains: Vec<String>,
    alias: Option<serde_json::Value>,
}

pub(crate) fn declare(c: &Container, cx: &Context<'_>) -> Translation {
    let raw = c.env.get(VAR).map(String::as_str).unwrap_or_default();
    let bad = |m: String| vec![c.env_error(VAR, m)];
    let data: Data = serde_json::from_str(raw).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let host = match (data.hostname.as_deref(), data.domain.as_deref()) {
        (Some(h), Some(d)) if !h.is_empty() && !d.is_empty() => format!("{h}.{d}"),
        (Some(h), _) if !h.is_empty() => h.to_string(),
        (_, Some(d)) if !d.is_empty() => d.to_string(),
        _ => return Err(bad("needs \"hostname\" and \"domain\"".into())),
    };
    let host = host.to_ascii_lowercase();
    let mut hosts = vec![host.clone()];
    hosts.extend(data.alias_domains.iter().map(|a| a.to_ascii_lowercase()));
    match data.alias {
        None => {}
        Some(serde_json::Value::String(a)) => {
            hosts.extend(super::list(&a).into_iter().map(|a| a.to_ascii_lowercase()))
        }
        Some(serde_json::Value::Array(items)) => {
            for a in items {
                match a {
                    serde_json::Value::String(a) => hosts.push(a.to_ascii_lowercase()),
                    other => return Err(bad(format!("alias {other}: expected a host name"))),
                }
            }
        }
        Some(other) => {
            return Err(bad(format!(
                "alias {other}: expected a host name or a list"
            )))
        }
    }
    let port_text = match &data.port {
        None => None,
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(bad(format!("port {other}: not a port number"))),
    };
    let port = port(c, VAR, port_text.as_deref(), |_, m| {
        c.env_error(VAR, format!("port: {m}"))
    })
    .map_err(|e| vec![e])?;
    let ip = address(c, cx, None).map_err(|e| vec![e])?;
    let rule = route(&host, any_of("Host", &hosts), &host).map_err(bad)?;
    Ok((
        vec![service(&host, server(c, ip, port))],
        vec![rule],
        Vec::new(),
        Vec::new(),
    ))
}
