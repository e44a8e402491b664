//! TCP routers and services from labels: Tether's own and Traefik v2/v3's, each placed on
//! Tether's entrypoints by the same checks as the file's, and what cannot be honoured refused
//! by name.

use std::net::IpAddr;

use super::*;
use crate::decl::{ProxyVersion, ServiceProtocol};

fn container(labels: &[(&str, &str)]) -> Container {
    Container {
        name: "db-1".into(),
        group: "db".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        env: Default::default(),
        networks: [("front".to_string(), "172.20.0.5".parse::<IpAddr>().unwrap())]
            .into_iter()
            .collect(),
        exposed_ports: vec![5432],
        host_network: false,
        hostname: String::new(),
        domainname: String::new(),
        kind: Kind::Container,
    }
}

/// web (HTTP), websecure (TLS), pg (TCP).
fn entrypoints() -> (Vec<String>, Vec<String>, Vec<String>) {
    (
        vec!["pg".into(), "web".into(), "websecure".into()],
        vec!["websecure".into()],
        vec!["pg".into()],
    )
}

fn declared(labels: &[(&str, &str)]) -> Result<Declared, Vec<String>> {
    declared_with(container(labels))
}

fn declared_with(c: Container) -> Result<Declared, Vec<String>> {
    let eps = entrypoints();
    let ports = [
        ("pg".to_string(), 6379),
        ("web".to_string(), 80),
        ("websecure".to_string(), 443),
    ];
    let cx = Context {
        entrypoints: &eps.0,
        tls_entrypoints: &eps.1,
        tcp_entrypoints: &eps.2,
        entrypoint_ports: &ports,
        ..Default::default()
    };
    match declare(&c, &cx) {
        Some(Ok(d)) => Ok(d),
        Some(Err(e)) => Err(e.iter().map(ToString::to_string).collect()),
        None => panic!("ignored"),
    }
}

fn refused(labels: &[(&str, &str)], key: &str, words: &str) {
    let e = declared(labels).expect_err("refused");
    assert!(
        e.iter()
            .any(|e| e.contains(&format!("label {key}")) && e.contains(words)),
        "no error on {key} saying {words:?}: {e:#?}"
    );
}

#[test]
fn tethers_tcp_labels_declare_a_tcp_service_of_the_container_and_no_http() {
    let d = declared(&[
        ("tether.tcp.routers.pg.rule", "HostSNI(`*`)"),
        ("tether.tcp.routers.pg.entrypoints", "pg"),
        ("tether.tcp.services.pg.port", "5432"),
        ("tether.tcp.services.pg.balance", "least_connections"),
        ("tether.tcp.services.pg.proxy_protocol", "v2"),
        ("tether.tcp.services.pg.health.interval", "3s"),
        ("tether.tcp.services.pg.backup", "true"),
    ])
    .unwrap();
    assert!(d.routes.is_empty(), "no default HTTP route: {:?}", d.routes);
    assert_eq!(d.services.len(), 1);
    let s = &d.services[0];
    assert_eq!(s.name, "pg@docker");
    assert_eq!(
        s.protocol,
        ServiceProtocol::Tcp {
            proxy_protocol: Some(ProxyVersion::V2)
        }
    );
    assert_eq!(s.servers[0].addr.to_string(), "172.20.0.5:5432");
    assert_eq!(s.servers[0].name, "db-1");
    assert!(s.servers[0].backup);
    assert_eq!(s.balance, BalanceAlgo::LeastRequests);
    let r = &d.tcp_routes[0];
    assert_eq!(
        (r.name.as_str(), r.service.as_str()),
        ("pg@docker", "pg@docker")
    );
    assert_eq!(r.entrypoints, ["pg"]);
    // A passthrough on the TLS entrypoint, beside the container's HTTP route.
    let d = declared(&[
        ("tether.http.routers.app.rule", "Host(`app.example`)"),
        ("tether.http.services.app.port", "8080"),
        ("tether.tcp.routers.vault.rule", "HostSNI(`vault.example`)"),
        ("tether.tcp.routers.vault.tls.passthrough", "true"),
        ("tether.tcp.services.vault.port", "8200"),
    ])
    .unwrap();
    assert_eq!(d.routes.len(), 1);
    assert!(d.tcp_routes[0].passthrough && d.tcp_routes[0].entrypoints.is_empty());
    assert_eq!(d.services.len(), 2);
}

#[test]
fn tethers_tcp_labels_are_refused_where_they_cannot_be_served() {
    refused(
        &[
            ("tether.tcp.routers.pg.rule", "HostSNI(`*`)"),
            ("tether.tcp.routers.pg.entrypoints", "web"),
        ],
        "tether.tcp.routers.pg.entrypoints",
        "serves HTTP",
    );
    refused(
        &[("tether.tcp.routers.pg.rule", "HostSNI(`db.example`)")],
        "tether.tcp.routers.pg.rule",
        "only a TLS ClientHello carries",
    );
    refused(
        &[("tether.tcp.routers.pg.rule", "Host(`db.example`)")],
        "tether.tcp.routers.pg.rule",
        "Host is an HTTP matcher",
    );
    refused(
        &[
            ("tether.tcp.routers.pg.rule", "HostSNI(`*`)"),
            ("tether.tcp.services.pg.servers", "x"),
        ],
        "tether.tcp.services.pg.servers",
        "containers themselves",
    );
}

#[test]
fn traefiks_tcp_labels_declare_routers_and_services() {
    let d = declared(&[
        ("traefik.tcp.routers.pg.rule", "HostSNI(`*`)"),
        ("traefik.tcp.routers.pg.entrypoints", "pg"),
        ("traefik.tcp.services.pg.loadbalancer.server.port", "5432"),
        (
            "traefik.tcp.services.pg.loadbalancer.proxyProtocol.version",
            "1",
        ),
        ("traefik.tcp.routers.vault.rule", "HostSNI(`vault.example`)"),
        ("traefik.tcp.routers.vault.entrypoints", "websecure"),
        ("traefik.tcp.routers.vault.tls.passthrough", "true"),
        ("traefik.tcp.routers.vault.service", "pg"),
    ])
    .unwrap();
    assert!(d.routes.is_empty(), "TCP only: no default HTTP router");
    assert_eq!(d.services.len(), 1);
    assert_eq!(
        d.services[0].protocol,
        ServiceProtocol::Tcp {
            proxy_protocol: Some(ProxyVersion::V1)
        }
    );
    assert_eq!(d.tcp_routes.len(), 2);
    let vault = d
        .tcp_routes
        .iter()
        .find(|r| r.name == "vault@docker")
        .unwrap();
    assert!(vault.passthrough);
    assert_eq!(vault.entrypoints, ["websecure"]);
}

#[test]
fn traefiks_tcp_options_tether_cannot_honour_are_refused_by_name() {
    let base = [
        ("traefik.tcp.routers.pg.rule", "HostSNI(`*`)"),
        ("traefik.tcp.routers.pg.entrypoints", "pg"),
    ];
    let with = |extra: (&'static str, &'static str)| {
        let mut l = base.to_vec();
        l.push(extra);
        l
    };
    for (label, words) in [
        (
            ("traefik.tcp.routers.pg.tls", "true"),
            "TLS termination for TCP routers",
        ),
        (
            ("traefik.tcp.routers.pg.tls.certresolver", "le"),
            "TLS termination for TCP routers",
        ),
        (
            ("traefik.tcp.routers.pg.middlewares", "allow"),
            "TCP middlewares",
        ),
        (
            (
                "traefik.tcp.services.db.loadbalancer.terminationdelay",
                "100",
            ),
            "half-close",
        ),
        (
            (
                "traefik.tcp.services.db.loadbalancer.proxyprotocol.version",
                "3",
            ),
            "expected 1 or 2",
        ),
        (("traefik.udp.routers.dns.entrypoints", "dns"), "not UDP"),
    ] {
        refused(&with(label), label.0, words);
    }
    refused(
        &[("traefik.tcp.routers.pg.entrypoints", "pg")],
        "traefik.tcp.routers.pg.rule",
        "needs a rule",
    );
    refused(
        &[
            ("traefik.tcp.routers.pg.rule", "HostSNI(`*`)"),
            ("traefik.tcp.routers.pg.entrypoints", "websecure"),
            ("traefik.tcp.routers.pg.tls.passthrough", "true"),
        ],
        "traefik.tcp.routers.pg.rule",
        "must name its hosts",
    );
}

/// A dockercloud container with these variables.
fn dockercloud(env: &[(&str, &str)]) -> Container {
    let mut c = container(&[]);
    c.env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    c.exposed_ports = vec![8080, 6379];
    c
}

#[test]
fn dockerclouds_tcp_ports_are_routed_from_the_tcp_entrypoint_of_the_same_port() {
    // TCP only: no HTTP route.
    let d = declared_with(dockercloud(&[
        ("SERVICE_PORTS", "6379"),
        ("TCP_PORTS", "6379"),
        ("EXTRA_ROUTE_SETTINGS", "send-proxy-v2"),
    ]))
    .unwrap();
    assert!(d.routes.is_empty());
    assert_eq!(d.tcp_routes.len(), 1);
    let r = &d.tcp_routes[0];
    assert_eq!(
        (r.name.as_str(), r.entrypoints.as_slice()),
        ("db-tcp-6379@docker", &["pg".to_string()][..])
    );
    assert_eq!(d.services[0].servers[0].addr.to_string(), "172.20.0.5:6379");
    assert_eq!(
        d.services[0].protocol,
        ServiceProtocol::Tcp {
            proxy_protocol: Some(ProxyVersion::V2)
        }
    );
    // Beside the HTTP port, which SERVICE_PORTS names too.
    let d = declared_with(dockercloud(&[
        ("SERVICE_PORTS", "8080, 6379"),
        ("TCP_PORTS", "6379"),
    ]))
    .unwrap();
    assert_eq!(d.routes.len(), 1);
    assert_eq!(d.tcp_routes.len(), 1);
    let http = d.services.iter().find(|s| !s.protocol.is_tcp()).unwrap();
    assert_eq!(http.servers[0].addr.to_string(), "172.20.0.5:8080");
}

#[test]
fn dockerclouds_tcp_options_tether_cannot_honour_are_refused_by_name() {
    let refused_env = |env: &[(&str, &str)], key: &str, words: &str| {
        let e = declared_with(dockercloud(env)).expect_err("refused");
        assert!(
            e.iter()
                .any(|e| e.contains(&format!("env {key}")) && e.contains(words)),
            "no error on {key} saying {words:?}: {e:#?}"
        );
    };
    refused_env(
        &[("SERVICE_PORTS", "9000"), ("TCP_PORTS", "9000")],
        "TCP_PORTS",
        "--entrypoint tcp9000=0.0.0.0:9000,tcp",
    );
    refused_env(
        &[("SERVICE_PORTS", "6379"), ("TCP_PORTS", "6379/ssl")],
        "TCP_PORTS",
        "TLS termination for a TCP port",
    );
    refused_env(
        &[
            ("SERVICE_PORTS", "8080"),
            ("EXTRA_ROUTE_SETTINGS", "send-proxy"),
        ],
        "EXTRA_ROUTE_SETTINGS",
        "PROXY protocol to HTTP servers",
    );
    refused_env(
        &[
            ("SERVICE_PORTS", "6379"),
            ("TCP_PORTS", "6379"),
            ("EXTRA_ROUTE_SETTINGS", "check maxconn 100"),
        ],
        "EXTRA_ROUTE_SETTINGS",
        "\"maxconn\": not supported",
    );
    // HAProxy's check options are Tether's connect check of the TCP servers.
    let d = declared_with(dockercloud(&[
        ("SERVICE_PORTS", "6379"),
        ("TCP_PORTS", "6379"),
        (
            "EXTRA_ROUTE_SETTINGS",
            "check inter 500 fall 2 send-proxy-v2",
        ),
    ]))
    .unwrap();
    let h = d.services[0].health.as_ref().expect("checked");
    assert_eq!(
        (h.path.as_str(), h.interval, h.fall, h.rise),
        ("", std::time::Duration::from_millis(500), 2, 2)
    );
}

#[test]
fn docker_flow_proxys_sni_mode_passes_the_matching_names_through_from_its_src_port() {
    // As DFP's SNI tutorial labels its two services.
    let d = declared(&[
        ("com.df.notify", "true"),
        ("com.df.distribute", "true"),
        ("com.df.pathType", "req_ssl_sni -i -m reg"),
        ("com.df.servicePath", r"^(api\.)"),
        ("com.df.srcPort", "443"),
        ("com.df.reqMode", "sni"),
        ("com.df.port", "443"),
    ])
    .unwrap();
    assert!(d.routes.is_empty());
    let r = &d.tcp_routes[0];
    assert!(r.passthrough);
    assert_eq!(r.entrypoints, ["websecure"], "the TLS entrypoint on 443");
    assert_eq!(r.rule_text, r"HostSNIRegexp(`^(api\.)`)");
    assert!(d.services[0].protocol.is_tcp());
    assert_eq!(d.services[0].servers[0].addr.to_string(), "172.20.0.5:443");
    let d = declared(&[
        ("com.df.notify", "true"),
        ("com.df.pathType", "req_ssl_sni -i -m beg"),
        ("com.df.servicePath", "test."),
        ("com.df.srcPort", "6379"),
        ("com.df.reqMode", "SNI"),
        ("com.df.port", "443"),
    ])
    .unwrap();
    assert_eq!(d.tcp_routes[0].entrypoints, ["pg"], "or a TCP entrypoint");
    let sni = |extra: &[(&'static str, &'static str)]| {
        let mut l = vec![
            ("com.df.notify", "true"),
            ("com.df.reqMode", "sni"),
            ("com.df.port", "443"),
        ];
        l.extend_from_slice(extra);
        l
    };
    refused(
        &sni(&[
            ("com.df.srcPort", "443"),
            ("com.df.servicePath", "a.example"),
        ]),
        "com.df.pathType",
        "missing",
    );
    refused(
        &sni(&[
            ("com.df.srcPort", "80"),
            ("com.df.pathType", "req_ssl_sni -i"),
            ("com.df.servicePath", "a.example"),
        ]),
        "com.df.srcPort",
        "no TLS or TCP entrypoint on port 80",
    );
    refused(
        &sni(&[
            ("com.df.srcPort", "443"),
            ("com.df.pathType", "req_ssl_sni -i"),
            ("com.df.servicePath", "a.example"),
            ("com.df.sessionType", "sticky-server"),
        ]),
        "com.df.sessionType",
        "not used with reqMode=sni",
    );
    refused(
        &sni(&[("com.df.srcPort", "443")]),
        "com.df.pathType",
        "missing",
    );
    refused(
        &[
            ("com.df.notify", "true"),
            ("com.df.reqMode", "udp"),
            ("com.df.port", "1"),
        ],
        "com.df.reqMode",
        "expected http, tcp or sni",
    );
}

#[test]
fn docker_flow_proxys_tcp_mode_is_routed_from_the_tcp_entrypoint_of_its_src_port() {
    let d = declared(&[
        ("com.df.notify", "true"),
        ("com.df.serviceName", "redis"),
        ("com.df.reqMode", "tcp"),
        ("com.df.srcPort", "6379"),
        ("com.df.port", "5432"),
        ("com.df.distribute", "true"),
    ])
    .unwrap();
    assert!(d.routes.is_empty());
    let r = &d.tcp_routes[0];
    assert_eq!(
        (r.name.as_str(), r.entrypoints.as_slice()),
        ("redis@docker", &["pg".to_string()][..])
    );
    assert!(r.rule.is_catch_all());
    assert!(d.services[0].protocol.is_tcp());
    assert_eq!(d.services[0].servers[0].addr.to_string(), "172.20.0.5:5432");
    // srcPort in HTTP mode: the HTTP entrypoint of that port.
    let d = declared(&[
        ("com.df.notify", "true"),
        ("com.df.servicePath", "/demo"),
        ("com.df.port", "8080"),
        ("com.df.srcPort", "443"),
    ])
    .unwrap();
    assert_eq!(d.routes[0].entrypoints, ["websecure"]);
    // What cannot be served is refused, naming the label.
    let df = |extra: &[(&'static str, &'static str)]| {
        let mut l = vec![
            ("com.df.notify", "true"),
            ("com.df.reqMode", "tcp"),
            ("com.df.port", "5432"),
        ];
        l.extend_from_slice(extra);
        l
    };
    refused(&df(&[]), "com.df.srcPort", "missing");
    refused(
        &df(&[("com.df.srcPort", "9999")]),
        "com.df.srcPort",
        "--entrypoint tcp9999=0.0.0.0:9999,tcp",
    );
    refused(
        &df(&[("com.df.srcPort", "6379"), ("com.df.servicePath", "/x")]),
        "com.df.servicePath",
        "not used with reqMode=tcp",
    );
    refused(
        &[
            ("com.df.notify", "true"),
            ("com.df.servicePath", "/demo"),
            ("com.df.port", "8080"),
            ("com.df.srcPort", "8081"),
        ],
        "com.df.srcPort",
        "no HTTP entrypoint on port 8081",
    );
}
