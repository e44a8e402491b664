//! The admin API's documents: a route or a service is a JSON object holding the fields of its
//! table in `tether.toml` (`{"rule": "PathPrefix(`/`)", "service": "web"}`); a TCP router or
//! TCP service those of `[tcp.routers.NAME]` and `[tcp.services.NAME]`.
//!
//! The documents are rendered as a TOML text of dotted keys, one field per line, and parsed by the
//! code that reads `tether.toml` ([`file_config::parse_declarations`]): the API has every option
//! of the file, with the same checks and messages. An error found on a line is reported against
//! that line's field (`routes.web.priority: invalid type: floating point ...`). A route may name a
//! service of another source (the file, Docker); the merged table's validation checks that.

use serde_json::Value;

use crate::decl::{CertificateDecl, CertificatePem, RouteDecl, ServiceDecl, TcpRouteDecl};
use crate::middleware::MiddlewareDecl;

/// The provider the API's middlewares are qualified by (`auth@api`), whatever its store.
pub const PROVIDER: &str = "api";

/// What a set of API documents declares.
#[derive(Debug, Default)]
pub struct Declarations {
    /// HTTP and TCP services (one name space).
    pub services: Vec<ServiceDecl>,
    pub routes: Vec<RouteDecl>,
    pub middlewares: Vec<MiddlewareDecl>,
    pub tcp_routes: Vec<TcpRouteDecl>,
}

impl Declarations {
    /// Add `other`'s to these.
    pub fn extend(&mut self, other: Declarations) {
        self.services.extend(other.services);
        self.routes.extend(other.routes);
        self.middlewares.extend(other.middlewares);
        self.tcp_routes.extend(other.tcp_routes);
    }
}
use crate::file_config::{self, ConfigError};
use crate::validate::{self, ValidationError};

/// What an API object declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Route,
    Service,
    /// A certificate for the TLS entrypoints (`{"cert": PEM, "key": PEM}`), not a declaration of
    /// the routing table: see [`certificate`].
    Certificate,
    /// A middleware: `{"basic_auth": {...}}`, its one type's table in `tether.toml`. Named
    /// `NAME@api` in the table, whatever the store.
    Middleware,
    /// A TCP router: `{"rule": "HostSNI(`*`)", "service": "db", "entrypoints": ["pg"]}`.
    TcpRouter,
    /// A TCP service: `{"servers": [{"address": "10.0.0.5:5432"}]}`.
    TcpService,
}

impl Kind {
    /// The plural used in paths and store keys: `routes`, `tcp/routers`.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Route => "routes",
            Kind::Service => "services",
            Kind::Certificate => "certificates",
            Kind::Middleware => "middlewares",
            Kind::TcpRouter => "tcp/routers",
            Kind::TcpService => "tcp/services",
        }
    }

    /// The table in `tether.toml`, which field names start with: `routes`, `tcp.routers`.
    pub fn table(self) -> &'static str {
        match self {
            Kind::TcpRouter => "tcp.routers",
            Kind::TcpService => "tcp.services",
            other => other.plural(),
        }
    }

    /// One of them, for messages: `route`, `TCP router`.
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Route => "route",
            Kind::Service => "service",
            Kind::Certificate => "certificate",
            Kind::Middleware => "middleware",
            Kind::TcpRouter => "TCP router",
            Kind::TcpService => "TCP service",
        }
    }

    /// The kind a path segment or store key names (`tcp/routers`; `tcp.routers` too).
    pub fn from_plural(s: &str) -> Option<Kind> {
        match s {
            "routes" => Some(Kind::Route),
            "services" => Some(Kind::Service),
            "certificates" => Some(Kind::Certificate),
            "middlewares" => Some(Kind::Middleware),
            "tcp/routers" | "tcp.routers" => Some(Kind::TcpRouter),
            "tcp/services" | "tcp.services" => Some(Kind::TcpService),
            _ => None,
        }
    }

    /// Does it declare part of the routing table (a route, service or TCP router), which one
    /// source alone may declare under a name?
    pub fn declares(self) -> bool {
        !matches!(self, Kind::Certificate | Kind::Middleware)
    }
}

/// The TOML text under construction, remembering which field each line came from.
struct Text {
    text: String,
    /// Table (`routes.web`) and field (`routes.web.rule`) of each line (1-based line n is
    /// `origin[n - 1]`).
    origin: Vec<(String, String)>,
}

impl Text {
    fn line(&mut self, line: String, table: &str, field: String) {
        self.text.push_str(&line);
        self.text.push('\n');
        self.origin.push((table.to_string(), field));
    }
}

/// The declarations of a set of API documents, checked as `tether.toml` is checked; every
/// problem is returned, each naming its field. `entrypoints` are the names a route may list.
pub fn declarations<'a>(
    docs: impl IntoIterator<Item = (Kind, &'a str, &'a Value)>,
    entrypoints: &[String],
) -> Result<Declarations, Vec<ValidationError>> {
    let mut t = Text {
        text: String::new(),
        origin: Vec::new(),
    };
    for ep in entrypoints {
        t.line(
            format!("entrypoints.{} = \"127.0.0.1:1\"", quote(ep)),
            "entrypoints",
            format!("entrypoints.{ep}"),
        );
    }
    let mut errors = Vec::new();
    for (kind, name, body) in docs {
        if kind == Kind::Certificate {
            continue;
        }
        let base = format!("{}.{name}", kind.table());
        if !validate::is_name(name) {
            errors.push(ValidationError::new(
                &base,
                "a name may hold letters, digits, '-', '_', '.' and '@'",
            ));
            continue;
        }
        let Some(fields) = body.as_object() else {
            errors.push(ValidationError::new(
                &base,
                format!(
                    "expected a JSON object of the {} fields of tether.toml, not {}",
                    kind.table(),
                    type_name(body)
                ),
            ));
            continue;
        };
        if fields.is_empty() && matches!(kind, Kind::Service | Kind::TcpService) {
            // An empty table still declares the service (no servers yet).
            t.line(
                format!("{}.{} = {{}}", kind.table(), quote(name)),
                &base,
                base.clone(),
            );
        }
        for (field, value) in fields {
            if value.is_null() {
                continue;
            }
            let at = format!("{base}.{field}");
            match toml::Value::try_from(value) {
                Ok(v) => t.line(
                    format!("{}.{}.{} = {v}", kind.table(), quote(name), quote(field)),
                    &base,
                    at,
                ),
                Err(e) => errors.push(ValidationError::new(at, e.to_string())),
            }
        }
        if matches!(kind, Kind::Route | Kind::TcpRouter) && fields.is_empty() {
            errors.push(ValidationError::new(
                &base,
                format!("missing: a {} needs rule and service", kind.singular()),
            ));
        }
        if kind == Kind::Middleware && fields.is_empty() {
            errors.push(ValidationError::new(
                &base,
                format!(
                    "missing: a middleware is one of {}, with its fields",
                    crate::middleware::TYPES.join(", ")
                ),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let source = file_config::Source {
        provider: PROVIDER,
        origin: crate::middleware::Origin::Untrusted,
        services_here: false,
    };
    match file_config::parse_as(&t.text, source) {
        Ok(cfg) => Ok(Declarations {
            services: cfg.services,
            routes: cfg.routes,
            middlewares: cfg.middlewares,
            tcp_routes: cfg.tcp_routes,
        }),
        Err(errs) => Err(errs.0.iter().map(|e| located(&t, e)).collect()),
    }
}

/// A certificate document: `{"cert": "-----BEGIN CERTIFICATE-----...", "key": "-----BEGIN
/// PRIVATE KEY-----...", "default": false}`; `cert` is the chain, leaf first, and `key` may be
/// left out when `cert` holds the key too (one PEM file holding both, as HAProxy's `crt`).
/// Only its shape is checked here; the certificate itself is checked where it is loaded.
pub fn certificate(name: &str, body: &Value) -> Result<CertificateDecl, ValidationError> {
    let base = format!("certificates.{name}");
    if !validate::is_name(name) {
        return Err(ValidationError::new(
            &base,
            "a name may hold letters, digits, '-', '_', '.' and '@'",
        ));
    }
    let Some(fields) = body.as_object() else {
        return Err(ValidationError::new(
            &base,
            format!(
                "expected a JSON object with cert and key (PEM text), not {}",
                type_name(body)
            ),
        ));
    };
    if let Some(f) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "cert" | "key" | "default"))
    {
        return Err(ValidationError::new(
            format!("{base}.{f}"),
            "unknown field: a certificate has cert, key and default",
        ));
    }
    let text = |field: &str| -> Result<Option<String>, ValidationError> {
        match fields.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(ValidationError::new(
                format!("{base}.{field}"),
                format!("expected PEM text (a string), not {}", type_name(v)),
            )),
        }
    };
    let Some(cert) = text("cert")? else {
        return Err(ValidationError::new(
            format!("{base}.cert"),
            "missing: the certificate chain as PEM text",
        ));
    };
    let key = text("key")?.unwrap_or_else(|| cert.clone());
    let default = match fields.get("default") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return Err(ValidationError::new(
                format!("{base}.default"),
                format!("expected true or false, not {}", type_name(v)),
            ))
        }
    };
    Ok(CertificateDecl {
        name: name.to_string(),
        origin: format!("certificates/{name}"),
        pem: CertificatePem::Text { cert, key },
        default,
    })
}

/// A file error told in terms of the document field it came from.
fn located(t: &Text, e: &ConfigError) -> ValidationError {
    let origin = e.line.and_then(|l| t.origin.get(l.wrapping_sub(1)));
    // "missing field `rule`" is found at the table's last line: name the missing field itself.
    let missing = e
        .message
        .strip_prefix("missing field `")
        .and_then(|m| m.split('`').next());
    if let (Some((table, _)), Some(m)) = (origin, missing) {
        return ValidationError::new(format!("{table}.{m}"), "missing");
    }
    let field = match origin {
        // A syntax or type error is located by its line only.
        Some((_, o)) if e.field == "syntax" || !e.field.starts_with(o.as_str()) => o.clone(),
        _ => e.field.clone(),
    };
    ValidationError::new(field, e.message.clone())
}

/// A TOML key segment, quoted so that any text stays one segment.
fn quote(segment: &str) -> String {
    toml::Value::String(segment.to_string()).to_string()
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eps() -> Vec<String> {
        vec!["web".into()]
    }

    #[test]
    fn documents_become_declarations_with_the_files_defaults() {
        let route = json!({"rule": "PathPrefix(`/demo`)", "service": "go-demo"});
        let svc = json!({"servers": [{"url": "http://go-demo:8080", "name": "a"}], "affinity": {"mode": "cookie"}});
        let Declarations {
            services, routes, ..
        } = declarations(
            [
                (Kind::Route, "demo", &route),
                (Kind::Service, "go-demo", &svc),
            ],
            &eps(),
        )
        .unwrap();
        assert_eq!(routes[0].service, "go-demo");
        assert_eq!(routes[0].priority, "PathPrefix(`/demo`)".len() as i64);
        assert_eq!(services[0].servers[0].name, "a");
        assert!(services[0].affinity.is_some());
    }

    #[test]
    fn a_route_may_name_a_service_of_another_source() {
        let route = json!({"rule": "Host(`a.com`)", "service": "from-the-file"});
        let routes = declarations([(Kind::Route, "r", &route)], &eps())
            .unwrap()
            .routes;
        assert_eq!(routes[0].service, "from-the-file");
    }

    #[test]
    fn a_route_asks_an_acme_resolver_for_its_names() {
        let route = json!({"rule": "Host(`shop.example`)", "service": "s",
            "tls": {"resolver": "le", "domains": [{"main": "shop.example", "sans": ["www.shop.example"]}]}});
        let routes = declarations([(Kind::Route, "r", &route)], &eps())
            .unwrap()
            .routes;
        let tls = routes[0].tls.as_ref().unwrap();
        assert_eq!(tls.resolver.as_deref(), Some("le"));
        assert_eq!(tls.domains[0].names(), ["shop.example", "www.shop.example"]);
        let e = errors(
            Kind::Route,
            json!({"rule": "PathPrefix(`/`)", "service": "s", "tls": {"resolver": "le"}}),
        );
        assert_eq!(e[0].field, "routes.x.tls.resolver", "{e:?}");
        assert!(e[0].message.contains("no name to order"), "{e:?}");
    }

    fn errors(kind: Kind, body: Value) -> Vec<ValidationError> {
        declarations([(kind, "x", &body)], &eps()).unwrap_err()
    }

    #[test]
    fn each_error_names_its_field() {
        let e = errors(Kind::Route, json!({"rule": "Pth(`/`)", "service": "s"}));
        assert_eq!(e[0].field, "routes.x.rule");
        assert!(e[0].message.contains("column 1"), "{}", e[0].message);

        let e = errors(
            Kind::Route,
            json!({"rule": "Path(`/`)", "service": "s", "priority": 1.5}),
        );
        assert_eq!(e[0].field, "routes.x.priority", "{e:?}");

        let e = errors(Kind::Service, json!({"servers": [], "balence": "x"}));
        assert_eq!(e[0].field, "services.x.balence", "{e:?}");
        assert!(e[0].message.contains("unknown field"), "{}", e[0].message);

        let e = errors(Kind::Service, json!({"servers": [{"url": "ftp://a:1"}]}));
        assert_eq!(e[0].field, "services.x.servers[0].url", "{e:?}");

        let e = errors(
            Kind::Route,
            json!({"rule": "Path(`/`)", "service": "s", "entrypoints": ["nope"]}),
        );
        assert_eq!(e[0].field, "routes.x.entrypoints", "{e:?}");

        let e = errors(Kind::Route, json!(["not", "an", "object"]));
        assert!(e[0].message.contains("not an array"), "{e:?}");

        let e = errors(Kind::Route, json!({"service": "s"}));
        assert_eq!(e[0].field, "routes.x.rule", "{e:?}");
        assert_eq!(e[0].message, "missing", "{e:?}");
    }

    #[test]
    fn a_middleware_document_is_its_types_table() {
        let body = json!({"basic_auth": {"users": ["admin:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="]}});
        let route = json!({"rule": "Path(`/`)", "service": "s", "middlewares": ["auth"]});
        let Declarations {
            routes,
            middlewares: mws,
            ..
        } = declarations(
            [
                (Kind::Middleware, "auth", &body),
                (Kind::Route, "r", &route),
            ],
            &eps(),
        )
        .unwrap();
        assert_eq!(mws[0].name, "auth@api");
        assert_eq!(routes[0].middlewares, ["auth@api"]);
        let e = errors(
            Kind::Middleware,
            json!({"basic_auth": {"users": ["admin:plain"]}}),
        );
        assert_eq!(e[0].field, "middlewares.x.basic_auth.users[0]", "{e:?}");
        assert!(!e[0].message.contains("plain\""), "{e:?}");
        let e = errors(
            Kind::Middleware,
            json!({"basic_auth": {"users_file": "/etc/passwd"}}),
        );
        assert_eq!(e[0].field, "middlewares.x.basic_auth.users_file", "{e:?}");
        let e = errors(Kind::Middleware, json!({}));
        assert!(e[0].message.contains("basic_auth"), "{e:?}");
    }

    #[test]
    fn tcp_documents_are_the_tcp_tables() {
        let router = json!({"rule": "HostSNI(`*`)", "service": "db", "entrypoints": ["web"]});
        let svc = json!({"servers": [{"name": "a", "address": "10.0.0.5:5432"}], "balance": "least_connections"});
        let d = declarations(
            [
                (Kind::TcpRouter, "db", &router),
                (Kind::TcpService, "db", &svc),
            ],
            &eps(),
        )
        .unwrap();
        assert_eq!(d.tcp_routes[0].service, "db");
        assert!(d.services[0].protocol.is_tcp());
        assert!(d.routes.is_empty());
        let e = errors(
            Kind::TcpService,
            json!({"servers": [{"url": "http://a:1"}]}),
        );
        assert_eq!(e[0].field, "tcp.services.x.servers", "{e:?}");
        assert!(e[0].message.contains("unknown field `url`"), "{e:?}");
        let e = errors(
            Kind::TcpRouter,
            json!({"rule": "Host(`a`)", "service": "s"}),
        );
        assert_eq!(e[0].field, "tcp.routers.x.rule", "{e:?}");
        assert!(e[0].message.contains("HTTP matcher"), "{e:?}");
        let e = errors(Kind::TcpRouter, json!({}));
        assert!(e[0].message.contains("TCP router needs rule"), "{e:?}");
        let e = errors(
            Kind::TcpRouter,
            json!({"rule": "HostSNI(`*`)", "service": "s", "tls": {"passthrough": false, "cert": "x"}}),
        );
        assert_eq!(e[0].field, "tcp.routers.x.tls", "{e:?}");
        // A name is one service's, HTTP or TCP.
        let http = json!({"servers": []});
        let tcp = json!({"servers": []});
        let e = declarations(
            [(Kind::Service, "x", &http), (Kind::TcpService, "x", &tcp)],
            &eps(),
        )
        .unwrap_err();
        assert!(e[0].field.starts_with("tcp.services.x"), "{e:?}");
        assert!(
            e[0].message.contains("an HTTP service of the same name"),
            "{e:?}"
        );
    }

    #[test]
    fn names_are_checked_before_rendering() {
        let body = json!({});
        let e = declarations([(Kind::Service, "a\"b", &body)], &eps()).unwrap_err();
        assert_eq!(e[0].field, "services.a\"b");
    }
}
