//! Tests of `[tcp]` and the entrypoints' `protocol`: the documented shape parses, and each
//! router or service that cannot be served is refused, naming its field.

use super::*;
use crate::decl::{BalanceAlgo, HashOn, ProxyVersion, ServiceProtocol};

const TCP: &str = r#"
[entrypoints]
web = "127.0.0.1:8080"
websecure = { address = "127.0.0.1:8443", tls = true, proxy_protocol = { trusted = ["10.0.0.0/8"], optional = true } }
db = { address = "127.0.0.1:5432", protocol = "tcp" }

[timeouts]
tunnel = "10m"

[tcp]
buffer = "32KiB"
hello_timeout = "2s"

[tcp.routers.pg]
rule = "HostSNI(`*`)"
entrypoints = ["db"]
service = "pg"

[tcp.routers.vault]
rule = "HostSNI(`vault.example`)"
service = "vault"
tls = { passthrough = true }
priority = 7

[tcp.services.pg]
servers = [{ name = "pg-1", address = "10.0.0.5:5432" }, { address = "pg-2:5432", weight = 2 }]
balance = "consistent_hash"
hash_on = "client_ip"
proxy_protocol = "v2"
health = { interval = "2s", timeout = "1s" }

[tcp.services.vault]
servers = [{ address = "10.0.0.9:8200" }]
balance = "least_connections"
"#;

#[test]
fn tcp_routers_and_services_parse_in_the_documented_shape() {
    let c = parse(TCP).unwrap();
    assert_eq!(c.settings.tcp_entrypoints, ["db"]);
    let pp = &c.settings.proxy_protocol["websecure"];
    assert!(pp.optional && pp.timeout == Duration::from_secs(5));
    assert_eq!(pp.trusted[0].to_string(), "10.0.0.0/8");
    assert_eq!(c.settings.proxy_protocol.len(), 1);
    assert_eq!(c.settings.tcp.buffer, 32 * 1024);
    assert_eq!(c.settings.tcp.hello_timeout, Duration::from_secs(2));
    assert_eq!(c.settings.timeouts.tunnel, Duration::from_secs(600));
    let pg = c.tcp_routes.iter().find(|r| r.name == "pg").unwrap();
    assert!(!pg.passthrough && pg.rule.is_catch_all());
    assert_eq!(pg.priority, "HostSNI(`*`)".len() as i64);
    let vault = c.tcp_routes.iter().find(|r| r.name == "vault").unwrap();
    assert!(vault.passthrough && vault.entrypoints.is_empty());
    assert_eq!(vault.priority, 7);
    let svc = |n: &str| c.services.iter().find(|s| s.name == n).unwrap();
    assert_eq!(
        svc("pg").protocol,
        ServiceProtocol::Tcp {
            proxy_protocol: Some(ProxyVersion::V2)
        }
    );
    assert_eq!(
        svc("pg").balance,
        BalanceAlgo::ConsistentHash(HashOn::ClientIp)
    );
    assert_eq!(svc("pg").servers[1].name, "pg-2:5432");
    assert_eq!(svc("pg").servers[1].weight, 2);
    let h = svc("pg").health.as_ref().unwrap();
    assert_eq!((h.interval, h.rise, h.fall), (Duration::from_secs(2), 2, 3));
    assert_eq!(svc("vault").balance, BalanceAlgo::LeastRequests);
    assert!(c.routes.is_empty());
}

/// `TCP` with `from` replaced by `to`: the errors, as "field: message".
fn refused(from: &str, to: &str) -> Vec<String> {
    assert!(TCP.contains(from), "{from}");
    match parse(&TCP.replacen(from, to, 1)) {
        Ok(_) => panic!("accepted: {from} -> {to}"),
        Err(e) => {
            e.0.iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect()
        }
    }
}

fn said(errors: &[String], field: &str, words: &str) {
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with(field) && e.contains(words)),
        "no {field:?} error saying {words:?}: {errors:#?}"
    );
}

#[test]
fn what_cannot_be_served_is_refused_by_name() {
    // A plain TCP router on an entrypoint that serves HTTP.
    let e = refused("entrypoints = [\"db\"]", "entrypoints = [\"web\"]");
    said(&e, "tcp.routers.pg.entrypoints", "\"web\" serves HTTP");
    // A passthrough on a plain HTTP entrypoint.
    let e = refused("priority = 7", "priority = 7\nentrypoints = [\"web\"]");
    said(
        &e,
        "tcp.routers.vault.entrypoints",
        "does not terminate TLS",
    );
    // On an entrypoint that serves HTTP, a passthrough must name hosts.
    let e = refused(
        "rule = \"HostSNI(`vault.example`)\"",
        "rule = \"ClientIP(`10.0.0.0/8`)\"\nentrypoints = [\"websecure\"]",
    );
    said(&e, "tcp.routers.vault.rule", "must name its hosts");
    // Two HostSNI(`*`) on one entrypoint.
    let e = refused(
        "[tcp.services.pg]",
        "[tcp.routers.pg2]\nrule = \"HostSNI(`*`)\"\nentrypoints = [\"db\"]\nservice = \"pg\"\n\n[tcp.services.pg]",
    );
    said(
        &e,
        "tcp.routers.pg2.rule",
        "HostSNI(`*`) router already (\"pg\")",
    );
    // A name in HostSNI without passthrough.
    let e = refused(
        "rule = \"HostSNI(`*`)\"",
        "rule = \"HostSNI(`pg.example`)\"",
    );
    said(&e, "tcp.routers.pg.tls", "only a TLS ClientHello carries");
    // TLS termination for TCP routers is not offered.
    let e = refused("tls = { passthrough = true }", "tls = true");
    said(&e, "tcp.routers.vault.tls", "not offered yet");
    // HTTP's matchers in a TCP rule, and the reverse.
    let e = refused("rule = \"HostSNI(`*`)\"", "rule = \"Host(`a.example`)\"");
    said(&e, "tcp.routers.pg.rule", "Host is an HTTP matcher");
    // A TCP service for an HTTP route, and an HTTP service for a TCP router.
    let e = refused(
        "[tcp.routers.pg]",
        "[routes.web]\nrule = \"PathPrefix(`/`)\"\nservice = \"pg\"\n\n[tcp.routers.pg]",
    );
    said(&e, "routes.web.service", "that is a TCP service");
    let e = refused(
        "service = \"vault\"",
        "service = \"http\"\n[services.http]\nservers = []\n[tcp.routers.y]\nrule = \"HostSNI(`*`)\"\nentrypoints = [\"db\"]\nservice = \"vault\"",
    );
    said(&e, "tcp.routers.vault.service", "that is an HTTP service");
    // An HTTP route on a TCP entrypoint.
    let e = refused(
        "[tcp.routers.pg]",
        "[routes.web]\nrule = \"PathPrefix(`/`)\"\nservice = \"h\"\nentrypoints = [\"db\"]\n[services.h]\nservers = []\n\n[tcp.routers.pg]",
    );
    said(&e, "routes.web.entrypoints", "\"db\" is a TCP entrypoint");
    // The entrypoint and the service's own fields.
    let e = refused("protocol = \"tcp\"", "protocol = \"udp\"");
    said(
        &e,
        "entrypoints.db.protocol",
        "expected \"http\" or \"tcp\"",
    );
    let e = refused("protocol = \"tcp\"", "protocol = \"tcp\", tls = true");
    said(&e, "entrypoints.db.tls", "not offered yet");
    let e = refused("\"10.0.0.5:5432\"", "\"tcp://10.0.0.5:5432\"");
    said(&e, "tcp.services.pg.servers[0].address", "without a scheme");
    let e = refused("hash_on = \"client_ip\"", "hash_on = \"header:X-User\"");
    said(&e, "tcp.services.pg.hash_on", "hashes on \"client_ip\"");
    let e = refused("proxy_protocol = \"v2\"", "proxy_protocol = \"v3\"");
    said(
        &e,
        "tcp.services.pg.proxy_protocol",
        "expected \"v1\" or \"v2\"",
    );
    let e = refused("buffer = \"32KiB\"", "buffer = 10");
    said(&e, "tcp.buffer", "expected 1024");
    let e = refused(
        "[tcp.services.vault]",
        "[services.vault]\nservers = []\n[tcp.services.vault]",
    );
    said(&e, "tcp.services.vault", "HTTP service of the same name");
}

#[test]
fn entrypoint_flags_parse_and_add_to_the_files_or_replace_theirs() {
    let f = EntrypointFlag::parse("db=0.0.0.0:5432,tcp").unwrap();
    assert_eq!((f.name.as_str(), f.tcp, f.tls), ("db", true, false));
    assert_eq!(f.addr, "0.0.0.0:5432".parse().unwrap());
    let tls = EntrypointFlag::parse("websecure=[::]:443,tls").unwrap();
    assert!(tls.tls && !tls.tcp);
    for (bad, words) in [
        ("db", "NAME=ADDR"),
        ("db=5432", "not a listen address"),
        ("db=0.0.0.0:5432,udp", "\"udp\""),
        ("db=0.0.0.0:5432,tcp,tls", "not offered yet"),
        ("d b=0.0.0.0:1", "not a name"),
    ] {
        let e = EntrypointFlag::parse(bad).unwrap_err();
        assert!(e.contains(words), "{bad}: {e}");
    }
    let mut s = parse(TCP).unwrap().settings;
    s.add_entrypoint(&f.clone());
    s.add_entrypoint(&EntrypointFlag::parse("web=127.0.0.1:81,tls").unwrap());
    s.add_entrypoint(&EntrypointFlag::parse("extra=127.0.0.1:82,tcp").unwrap());
    let names: Vec<&str> = s.entrypoints.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["db", "extra", "web", "websecure"]);
    assert_eq!(s.entrypoints[2].1.port(), 81, "web replaced");
    assert!(s.tls.entrypoints.contains_key("web"));
    assert_eq!(s.tcp_entrypoints, ["db", "extra"]);
    // Redeclared as HTTP, an entrypoint is no longer TCP.
    s.add_entrypoint(&EntrypointFlag::parse("db=127.0.0.1:83").unwrap());
    assert_eq!(s.tcp_entrypoints, ["extra"]);
}
