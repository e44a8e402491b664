//! Declarations as JSON with the field names of `tether.toml`, so that what a read returns can be
//! sent back in a `PUT`.

use std::hash::{Hash, Hasher};
use std::time::SystemTime;

use serde_json::{json, Map, Value};
use tether_model::{
    AffinityMode, BalanceAlgo, HashOn, Middleware, MiddlewareDecl, OnMissing, RouteDecl,
    ServerWait, ServiceDecl, TcpRouteDecl,
};

/// A route's fields.
pub fn route(r: &RouteDecl) -> Value {
    let mut o = Map::new();
    o.insert("rule".into(), json!(r.rule_text));
    o.insert("service".into(), json!(r.service));
    o.insert("priority".into(), json!(r.priority));
    if !r.entrypoints.is_empty() {
        o.insert("entrypoints".into(), json!(r.entrypoints));
    }
    if let Some(max) = r.max_body {
        o.insert("max_body".into(), json!(max));
    }
    if let Some(redirect) = &r.redirect_https {
        let mut v = Map::new();
        if let Some(port) = redirect.port {
            v.insert("port".into(), json!(port));
        }
        if let Some(e) = &redirect.entrypoint {
            v.insert("entrypoint".into(), json!(e));
        }
        if !redirect.permanent {
            v.insert("permanent".into(), json!(false));
        }
        let v = if v.is_empty() {
            json!(true)
        } else {
            Value::Object(v)
        };
        o.insert("redirect_https".into(), v);
    }
    if let Some(h) = r.hsts {
        o.insert(
            "hsts".into(),
            json!({
                "max_age": format!("{}s", h.max_age),
                "include_subdomains": h.include_subdomains,
                "preload": h.preload,
            }),
        );
    }
    if !r.middlewares.is_empty() {
        o.insert("middlewares".into(), json!(r.middlewares));
    }
    Value::Object(o)
}

/// A middleware's fields, in the file's shape (`{"basic_auth": {...}}`). A password hash is
/// never shown: `basic_auth` lists its users' names only.
pub fn middleware(m: &MiddlewareDecl) -> Value {
    use tether_model::middleware::{FieldRules, UsersFile};
    let rules = |r: &FieldRules| {
        json!({
            "set": r.set.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "add": r.add.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "remove": r.remove,
        })
    };
    let fields = match &m.kind {
        Middleware::BasicAuth(b) => json!({
            "users": b.users.iter().map(|u| u.name.clone()).collect::<Vec<_>>(),
            "users_file": b.users_file.as_ref().map(|f| match f {
                UsersFile::Path(p) => p.display().to_string(),
                UsersFile::Secret(n) => n.clone(),
            }),
            "realm": b.realm,
            "remove_header": b.remove_header,
        }),
        Middleware::IpAllow(a) => json!({
            "ranges": a.ranges.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "depth": a.depth,
            "reject_status": a.reject_status,
        }),
        Middleware::StripPrefix(p) => json!({ "prefixes": p.prefixes }),
        Middleware::StripPrefixRegex(p) => json!({ "regex": p.regex }),
        Middleware::AddPrefix(p) => json!({ "prefix": p.prefix }),
        Middleware::ReplacePath(p) => json!({ "path": p.path }),
        Middleware::ReplacePathRegex(p) => {
            json!({ "regex": p.regex, "replacement": p.replacement })
        }
        Middleware::Headers(h) => {
            let sec = &h.security;
            json!({
                "request": rules(&h.request),
                "response": rules(&h.response),
                "frame_deny": sec.frame_deny,
                "content_type_nosniff": sec.content_type_nosniff,
                "browser_xss_filter": sec.browser_xss_filter,
                "referrer_policy": sec.referrer_policy,
                "content_security_policy": sec.content_security_policy,
                "sts_seconds": sec.sts.map(|s| s.max_age),
                "sts_include_subdomains": sec.sts.is_some_and(|s| s.include_subdomains),
                "sts_preload": sec.sts.is_some_and(|s| s.preload),
            })
        }
        Middleware::RedirectRegex(r) => {
            json!({ "regex": r.regex, "replacement": r.replacement, "permanent": r.permanent })
        }
        Middleware::RedirectScheme(r) => {
            json!({ "scheme": r.scheme, "port": r.port, "permanent": r.permanent })
        }
        Middleware::Methods(m) => json!({ "allow": m.allow, "deny": m.deny }),
        Middleware::RateLimit(r) => {
            let period = if r.period_ms % 1000 == 0 {
                format!("{}s", r.period_ms / 1000)
            } else {
                format!("{}ms", r.period_ms)
            };
            let mut o = json!({
                "average": r.average,
                "period": period,
                "burst": r.burst,
                "by": r.by.as_written(),
                "table_size": r.table_size,
            });
            if let tether_model::middleware::Source::ClientIp { depth: d @ 1.. } = r.by {
                o["depth"] = json!(d);
            }
            o
        }
        Middleware::InFlight(f) => {
            let mut o = json!({ "amount": f.amount, "by": f.by.as_written() });
            if let tether_model::middleware::Source::ClientIp { depth: d @ 1.. } = f.by {
                o["depth"] = json!(d);
            }
            o
        }
        Middleware::Compress(c) => json!({
            "encodings": c.encodings.iter().map(|e| e.token()).collect::<Vec<_>>(),
            "level": c.encodings.iter().zip(&c.levels).map(|(e, l)| (e.token().to_string(), json!(l))).collect::<Map<_, _>>(),
            "min_size": c.min_size,
            "exclude_types": c.exclude_types,
            "include_types": c.include_types,
            "compress_with_cookies": c.compress_with_cookies,
        }),
        Middleware::Chain(c) => json!({ "middlewares": c.middlewares }),
    };
    let mut o = Map::new();
    o.insert(m.kind.type_name().into(), fields);
    Value::Object(o)
}

/// A service's fields.
pub fn service(s: &ServiceDecl) -> Value {
    let mut o = Map::new();
    let servers: Vec<Value> = s
        .servers
        .iter()
        .map(|srv| {
            let scheme = if srv.tls.is_some() { "https" } else { "http" };
            let mut v = json!({ "name": srv.name, "url": format!("{scheme}://{}", srv.addr), "weight": srv.weight });
            if srv.backup {
                v["backup"] = json!(true);
            }
            v
        })
        .collect();
    // The `tls` table the https:// servers were declared with (one per service).
    if let Some((srv, t)) = s
        .servers
        .iter()
        .find_map(|srv| Some((srv, srv.tls.as_ref()?)))
    {
        let mut m = Map::new();
        let host = match &srv.addr {
            tether_model::ServerAddr::Socket(sa) => sa.ip().to_string(),
            tether_model::ServerAddr::Host(h, _) => h.clone(),
        };
        if t.server_name != host {
            m.insert("server_name".into(), json!(t.server_name));
        }
        if let Some(ca) = &t.ca_file {
            m.insert("ca_file".into(), json!(ca.display().to_string()));
        }
        if t.insecure_skip_verify {
            m.insert("insecure_skip_verify".into(), json!(true));
        }
        if !m.is_empty() {
            o.insert("tls".into(), Value::Object(m));
        }
    }
    match &s.resolve {
        // Its servers are what the name resolved to: `resolve` is the field to send back.
        Some(r) => {
            o.insert("resolve".into(), json!(r.to_string()));
        }
        None => {
            o.insert("servers".into(), Value::Array(servers));
        }
    }
    match &s.balance {
        BalanceAlgo::RoundRobin => {
            o.insert("balance".into(), json!("round_robin"));
        }
        BalanceAlgo::LeastRequests => {
            o.insert("balance".into(), json!("least_requests"));
        }
        BalanceAlgo::ConsistentHash(on) => {
            o.insert("balance".into(), json!("consistent_hash"));
            let on = match on {
                HashOn::ClientIp => "client_ip".to_string(),
                HashOn::Header(h) => format!("header:{h}"),
                HashOn::Cookie(c) => format!("cookie:{c}"),
            };
            o.insert("hash_on".into(), json!(on));
        }
    }
    health_and_wait(&mut o, s);
    if let Some(a) = &s.affinity {
        let mut m = Map::new();
        match &a.mode {
            AffinityMode::Cookie(c) => {
                m.insert("mode".into(), json!("cookie"));
                m.insert("cookie".into(), json!(c.name));
                m.insert("path".into(), json!(c.path));
                if let Some(d) = &c.domain {
                    m.insert("domain".into(), json!(d));
                }
                m.insert("secure".into(), json!(c.secure));
                m.insert("http_only".into(), json!(c.http_only));
                if let Some(ss) = c.same_site {
                    m.insert("same_site".into(), json!(ss.as_str()));
                }
                if let Some(age) = c.max_age {
                    m.insert("max_age".into(), json!(format!("{}ms", age.as_millis())));
                }
            }
            AffinityMode::Prefix { cookie } => {
                m.insert("mode".into(), json!("prefix"));
                m.insert("cookie".into(), json!(cookie));
            }
        }
        m.insert("nocache".into(), json!(a.nocache));
        let on_missing = match a.on_missing {
            OnMissing::Rebalance => "rebalance",
            OnMissing::Fail => "fail",
        };
        m.insert("on_missing".into(), json!(on_missing));
        o.insert("affinity".into(), Value::Object(m));
    }
    Value::Object(o)
}

/// A TCP router's fields (`[tcp.routers.NAME]`).
pub fn tcp_router(r: &TcpRouteDecl) -> Value {
    let mut o = Map::new();
    o.insert("rule".into(), json!(r.rule_text));
    o.insert("service".into(), json!(r.service));
    o.insert("priority".into(), json!(r.priority));
    if !r.entrypoints.is_empty() {
        o.insert("entrypoints".into(), json!(r.entrypoints));
    }
    if r.passthrough {
        o.insert("tls".into(), json!({ "passthrough": true }));
    }
    Value::Object(o)
}

/// A TCP service's fields (`[tcp.services.NAME]`).
pub fn tcp_service(s: &ServiceDecl) -> Value {
    let mut o = Map::new();
    let servers: Vec<Value> = s
        .servers
        .iter()
        .map(|srv| {
            let mut v =
                json!({ "name": srv.name, "address": srv.addr.to_string(), "weight": srv.weight });
            if srv.draining {
                v["draining"] = json!(true);
            }
            if srv.backup {
                v["backup"] = json!(true);
            }
            v
        })
        .collect();
    o.insert("servers".into(), Value::Array(servers));
    let balance = match &s.balance {
        BalanceAlgo::RoundRobin => "round_robin",
        BalanceAlgo::LeastRequests => "least_connections",
        BalanceAlgo::ConsistentHash(_) => {
            o.insert("hash_on".into(), json!("client_ip"));
            "consistent_hash"
        }
    };
    o.insert("balance".into(), json!(balance));
    health_and_wait(&mut o, s);
    if let tether_model::ServiceProtocol::Tcp {
        proxy_protocol: Some(v),
    } = &s.protocol
    {
        let v = match v {
            tether_model::ProxyVersion::V1 => "v1",
            tether_model::ProxyVersion::V2 => "v2",
        };
        o.insert("proxy_protocol".into(), json!(v));
    }
    Value::Object(o)
}

/// An HTTP or a TCP service's `health` (a TCP service's check, a connect, has no `path`),
/// `wait_for_server` and `wait_queue`, each shown when it is not the default.
fn health_and_wait(o: &mut Map<String, Value>, s: &ServiceDecl) {
    if let Some(h) = &s.health {
        let mut v = json!({
            "interval": format!("{}ms", h.interval.as_millis()),
            "timeout": format!("{}ms", h.timeout.as_millis()),
            "rise": h.rise,
            "fall": h.fall,
        });
        if !s.protocol.is_tcp() {
            v["path"] = json!(h.path);
        }
        o.insert("health".into(), v);
    }
    if s.wait.timeout != ServerWait::DEFAULT_TIMEOUT {
        o.insert(
            "wait_for_server".into(),
            json!(format!("{}ms", s.wait.timeout.as_millis())),
        );
    }
    if s.wait.queue != ServerWait::DEFAULT_QUEUE {
        o.insert("wait_queue".into(), json!(s.wait.queue));
    }
}

/// An ETag for a declaration no API change can touch: a digest of it.
pub fn digest_etag(d: &impl Hash) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    d.hash(&mut h);
    format!("\"d{:016x}\"", h.finish())
}

/// The ETag of a stored object: its store revision.
pub fn revision_etag(revision: u64) -> String {
    format!("\"{revision}\"")
}

pub fn time(t: Option<SystemTime>) -> Value {
    match t {
        Some(t) => json!(humantime::format_rfc3339_millis(t).to_string()),
        None => Value::Null,
    }
}
