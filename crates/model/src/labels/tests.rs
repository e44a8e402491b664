use std::net::IpAddr;

use super::*;
use crate::decl::{AffinityMode, BalanceAlgo, CertificatePem, HashOn, HttpsRedirect, SameSite};

fn container(name: &str, labels: &[(&str, &str)], env: &[(&str, &str)]) -> Container {
    Container {
        name: name.into(),
        group: "web".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        networks: [("front".to_string(), "172.20.0.5".parse::<IpAddr>().unwrap())]
            .into_iter()
            .collect(),
        exposed_ports: vec![8080],
        host_network: false,
        hostname: String::new(),
        domainname: String::new(),
        kind: Kind::Container,
    }
}

const EPS: &[String] = &[];

fn cx() -> Context<'static> {
    Context {
        entrypoints: EPS,
        ..Default::default()
    }
}

fn ok(c: &Container) -> Declared {
    match declare(c, &cx()) {
        Some(Ok(d)) => d,
        Some(Err(e)) => panic!("unexpected errors: {e:?}"),
        None => panic!("container ignored"),
    }
}

fn errors(c: &Container) -> Vec<String> {
    match declare(c, &cx()) {
        Some(Err(e)) => e.iter().map(ToString::to_string).collect(),
        other => panic!("expected errors, got {other:?}"),
    }
}

fn route_matches(d: &Declared, host: &str, path: &str) -> bool {
    let headers = http::HeaderMap::new();
    let req = crate::rule::RequestView {
        host,
        path,
        method: &http::Method::GET,
        headers: &headers,
        client: std::net::Ipv4Addr::LOCALHOST.into(),
    };
    d.routes.iter().any(|r| r.rule.matches(&req))
}

const TLS_EPS: &[String] = &[];

fn with_tls() -> (Vec<String>, Vec<String>) {
    (
        vec!["web".into(), "websecure".into()],
        vec!["websecure".into()],
    )
}

fn declare_on(c: &Container, eps: &(Vec<String>, Vec<String>)) -> Result<Declared, Vec<String>> {
    let cx = Context {
        entrypoints: &eps.0,
        tls_entrypoints: &eps.1,
        ..Default::default()
    };
    match declare(c, &cx) {
        Some(Ok(d)) => Ok(d),
        Some(Err(e)) => Err(e.iter().map(ToString::to_string).collect()),
        None => panic!("container ignored"),
    }
}

#[test]
fn dialect_entrypoint_names_map_to_the_plain_and_the_tls_entrypoint() {
    let eps = with_tls();
    let cx = Context {
        entrypoints: &eps.0,
        tls_entrypoints: &eps.1,
        ..Default::default()
    };
    assert_eq!(cx.entrypoint("web").unwrap(), "web");
    assert_eq!(cx.entrypoint("http").unwrap(), "web");
    assert_eq!(cx.entrypoint("https").unwrap(), "websecure");
    assert_eq!(cx.entrypoint("WebSecure").unwrap(), "websecure");
    let e = cx.entrypoint("admin").unwrap_err();
    assert!(e.contains("web, websecure (TLS)"), "{e}");
    let none = Context {
        entrypoints: &eps.0,
        tls_entrypoints: TLS_EPS,
        ..Default::default()
    };
    assert!(none
        .entrypoint("http")
        .unwrap_err()
        .contains("no entrypoint"));
    assert!(none.tls_only().unwrap_err().contains("add tls = true"));
}

#[test]
fn traefik_v2_router_entrypoints_tls_and_middlewares_become_the_routes_policy() {
    let eps = with_tls();
    let c = container(
        "app.1",
        &[
            ("traefik.http.routers.app.rule", "Host(`app.test`)"),
            ("traefik.http.routers.app.entrypoints", "web"),
            ("traefik.http.routers.app.middlewares", "to-https"),
            (
                "traefik.http.middlewares.to-https.redirectscheme.scheme",
                "https",
            ),
            (
                "traefik.http.middlewares.to-https.redirectscheme.permanent",
                "true",
            ),
            ("traefik.http.routers.app-secure.rule", "Host(`app.test`)"),
            ("traefik.http.routers.app-secure.tls", "true"),
            ("traefik.http.routers.app-secure.middlewares", "sts"),
            (
                "traefik.http.middlewares.sts.headers.stsseconds",
                "63072000",
            ),
            (
                "traefik.http.middlewares.sts.headers.stsincludesubdomains",
                "true",
            ),
            ("traefik.http.middlewares.sts.headers.stspreload", "true"),
            ("traefik.http.services.app.loadbalancer.server.port", "8080"),
        ],
        &[],
    );
    let d = declare_on(&c, &eps).unwrap();
    let by = |n: &str| d.routes.iter().find(|r| r.name == n).unwrap();
    let plain = by("app@docker");
    assert_eq!(plain.entrypoints, ["web"]);
    assert_eq!(plain.middlewares, ["to-https@docker"]);
    let mw = |n: &str| &d.middlewares.iter().find(|m| m.name == n).unwrap().kind;
    assert_eq!(
        mw("to-https@docker"),
        &crate::Middleware::RedirectScheme(crate::middleware::RedirectScheme {
            scheme: "https".into(),
            port: None,
            permanent: true
        })
    );
    let secure = by("app-secure@docker");
    assert_eq!(
        secure.entrypoints,
        ["websecure"],
        "tls: the TLS entrypoints only"
    );
    assert_eq!(secure.middlewares, ["sts@docker"]);
    match mw("sts@docker") {
        crate::Middleware::Headers(h) => assert_eq!(
            h.security.sts.unwrap().value(),
            "max-age=63072000; includeSubDomains; preload"
        ),
        other => panic!("{other:?}"),
    }

    // What Tether cannot honour is refused, naming the label.
    let bad = container(
        "bad.1",
        &[
            ("traefik.http.routers.a.rule", "Host(`a`)"),
            ("traefik.http.routers.a.entrypoints", "internal"),
            ("traefik.http.routers.a.middlewares", "gzip,auth@file"),
            (
                "traefik.http.middlewares.gzip.forwardAuth.address",
                "http://auth",
            ),
            (
                "traefik.http.middlewares.ip.ipallowlist.ipstrategy.excludedips",
                "10.0.0.1",
            ),
            ("traefik.http.routers.b.rule", "Host(`b`)"),
            ("traefik.http.routers.b.tls.options", "modern@file"),
            ("traefik.http.routers.c.rule", "Host(`c`)"),
            ("traefik.http.routers.c.tls.certresolver", "le"),
            ("traefik.http.services.a.loadbalancer.server.port", "80"),
        ],
        &[],
    );
    let e = declare_on(&bad, &eps).unwrap_err();
    let all = e.join("\n");
    assert!(
        all.contains("traefik.http.routers.a.entrypoints")
            && all.contains("no entrypoint \"internal\""),
        "{all}"
    );
    assert!(
        all.contains("traefik.http.middlewares.gzip.forwardAuth.address")
            && all.contains("type forwardauth is not supported"),
        "{all}"
    );
    assert!(
        all.contains("traefik.http.middlewares.ip.ipallowlist.ipstrategy.excludedips")
            && all.contains("[forwarded] trusted_proxies"),
        "{all}"
    );
    assert!(all.contains("traefik.http.routers.b.tls.options"), "{all}");
    assert!(
        all.contains("traefik.http.routers.c.tls.certresolver")
            && all.contains("not a DNS name a CA issues for"),
        "{all}"
    );
    // tls on a Tether without a TLS entrypoint.
    let plain_only = (vec!["web".to_string()], Vec::new());
    let tls = container(
        "t.1",
        &[
            ("traefik.http.routers.t.rule", "Host(`t`)"),
            ("traefik.http.routers.t.tls", "true"),
            ("traefik.http.services.t.loadbalancer.server.port", "80"),
        ],
        &[],
    );
    let e = declare_on(&tls, &plain_only).unwrap_err();
    assert!(e[0].contains("needs a TLS entrypoint"), "{e:?}");
}

#[test]
fn traefik_v1_frontend_entrypoints_redirect_and_sts_headers() {
    let eps = with_tls();
    let c = container(
        "app.1",
        &[
            ("traefik.port", "8080"),
            ("traefik.frontend.rule", "Host:app.test"),
            ("traefik.frontend.entryPoints", "http,https"),
            ("traefik.frontend.redirect.entryPoint", "https"),
            ("traefik.frontend.headers.STSSeconds", "31536000"),
        ],
        &[],
    );
    let d = declare_on(&c, &eps).unwrap();
    let r = &d.routes[0];
    assert_eq!(r.entrypoints, ["web", "websecure"]);
    assert_eq!(
        r.redirect_https,
        Some(HttpsRedirect {
            permanent: false,
            port: None,
            entrypoint: Some("websecure".into())
        }),
        "v1's redirect is temporary unless redirect.permanent=true: 307"
    );
    assert_eq!(r.hsts.unwrap().value(), "max-age=31536000");
    let to_plain = container(
        "b.1",
        &[
            ("traefik.port", "8080"),
            ("traefik.frontend.redirect.entryPoint", "http"),
        ],
        &[],
    );
    let e = declare_on(&to_plain, &eps).unwrap_err();
    assert!(e[0].contains("web does not terminate TLS"), "{e:?}");
}

#[test]
fn flow_https_only_and_dockercloud_force_ssl_redirect_and_https_hosts_are_tls_only() {
    let eps = with_tls();
    let c = container(
        "go-demo.1",
        &[
            ("com.df.notify", "true"),
            ("com.df.servicePath", "/demo"),
            ("com.df.port", "8080"),
            ("com.df.httpsOnly", "true"),
        ],
        &[],
    );
    let d = declare_on(&c, &eps).unwrap();
    assert_eq!(d.routes[0].redirect_https, Some(HttpsRedirect::default()));

    let c = container(
        "web.1",
        &[],
        &[
            ("SERVICE_PORTS", "8080"),
            ("VIRTUAL_HOST", "a.test, https://secure.test"),
            ("FORCE_SSL", "yes"),
            ("HSTS_MAX_AGE", "31536000"),
        ],
    );
    let d = declare_on(&c, &eps).unwrap();
    let by = |n: &str| d.routes.iter().find(|r| r.name == n).unwrap();
    assert!(
        by("web@docker").entrypoints.is_empty(),
        "no scheme: every entrypoint"
    );
    assert_eq!(by("web-https@docker").entrypoints, ["websecure"]);
    for r in &d.routes {
        assert_eq!(r.redirect_https, Some(HttpsRedirect::default()));
        assert_eq!(r.hsts.unwrap().max_age, 31_536_000);
    }
}

#[test]
fn certificates_come_from_a_named_secret_or_dockercloud_ssl_cert_and_never_show_the_key() {
    let eps = (
        vec!["web".to_string(), "websecure".to_string()],
        vec!["websecure".to_string()],
    );
    // dockercloud: the PEM text, `\n` as two characters.
    let pem = "-----BEGIN PRIVATE KEY-----\\nAAA\\n-----END PRIVATE KEY-----\\n";
    let c = container(
        "web.1",
        &[],
        &[("SERVICE_PORTS", "8080"), ("SSL_CERT", pem)],
    );
    let d = declare_on(&c, &eps).unwrap();
    assert_eq!(d.certificates.len(), 1);
    let cert = &d.certificates[0];
    assert_eq!(cert.name, "web@docker");
    assert_eq!(cert.origin, "env SSL_CERT (container web.1)");
    match &cert.pem {
        CertificatePem::Text { cert, key } => {
            assert_eq!(cert, key);
            assert!(
                cert.starts_with("-----BEGIN PRIVATE KEY-----\nAAA\n"),
                "{cert}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{cert:?}").contains("AAA"), "Debug hides the PEM");
    let c = container(
        "web.1",
        &[],
        &[
            ("SERVICE_PORTS", "8080"),
            ("SSL_CERT", "secret-key-material"),
        ],
    );
    let e = declare_on(&c, &eps).unwrap_err();
    assert!(e[0].contains("env SSL_CERT: expected PEM text"), "{e:?}");
    assert!(
        !e[0].contains("secret-key-material"),
        "the value is never shown: {e:?}"
    );

    // Tether labels: one secret, or two; under the secrets directory.
    let route = [
        ("tether.http.routers.shop.rule", "Host(`shop.test`)"),
        ("tether.http.services.shop.port", "8080"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut l = route.to_vec();
        l.extend_from_slice(extra);
        container("web.1", &l, &[])
    };
    let d = declare_on(&with(&[("tether.tls.secret", "shop_pem")]), &eps).unwrap();
    assert_eq!(
        d.certificates[0].pem,
        CertificatePem::Files {
            cert: "/run/secrets/shop_pem".into(),
            key: "/run/secrets/shop_pem".into()
        }
    );
    assert_eq!(
        d.certificates[0].origin,
        "label tether.tls.secret=shop_pem (container web.1)"
    );
    let d = declare_on(
        &with(&[
            ("tether.tls.cert_secret", "shop.crt"),
            ("tether.tls.key_secret", "shop.key"),
        ]),
        &eps,
    )
    .unwrap();
    assert_eq!(
        d.certificates[0].pem,
        CertificatePem::Files {
            cert: "/run/secrets/shop.crt".into(),
            key: "/run/secrets/shop.key".into()
        }
    );
    for (labels, says) in [
        (
            vec![("tether.tls.secret", "../../etc/shadow")],
            "label tether.tls.secret=\"../../etc/shadow\": expected the name of a Docker secret",
        ),
        (
            vec![("tether.tls.secret", "/etc/ssl/key.pem")],
            "not a path",
        ),
        (
            vec![("tether.tls.cert_secret", "a")],
            "tether.tls.key_secret is missing",
        ),
        (
            vec![("tether.tls.secret", "a"), ("tether.tls.key_secret", "b")],
            "not both",
        ),
        (vec![("tether.tls.sekret", "a")], "unknown label"),
    ] {
        let e = declare_on(&with(&labels), &eps).unwrap_err();
        assert!(e.iter().any(|e| e.contains(says)), "{labels:?}: {e:?}");
    }
    // Another secrets directory (--secrets-dir).
    let dir = std::path::Path::new("/srv/secrets");
    let cx = Context {
        entrypoints: &eps.0,
        tls_entrypoints: &eps.1,
        secrets_dir: Some(dir),
        ..Default::default()
    };
    let d = declare(&with(&[("tether.tls.secret", "s")]), &cx)
        .unwrap()
        .unwrap();
    assert!(
        matches!(&d.certificates[0].pem, CertificatePem::Files { cert, .. } if cert == &dir.join("s"))
    );
}

#[test]
fn plain_containers_are_ignored_and_opt_outs_respected() {
    assert!(declare(&container("a", &[], &[]), &cx()).is_none());
    let off = container(
        "a",
        &[
            ("tether.enable", "false"),
            ("tether.http.services.x.port", "1"),
        ],
        &[],
    );
    assert!(declare(&off, &cx()).is_none());
    let off = container(
        "a",
        &[("traefik.enable", "false"), ("traefik.port", "80")],
        &[],
    );
    assert!(declare(&off, &cx()).is_none());
}

#[test]
fn a_tether_backup_label_must_be_a_boolean() {
    let c = container(
        "web-1",
        &[("tether.http.services.web.backup", "maybe")],
        &[],
    );
    let e = errors(&c);
    assert!(
        e.iter().any(|e| e
            .contains("label tether.http.services.web.backup=\"maybe\": expected true or false")),
        "{e:?}"
    );
}

#[test]
fn tether_labels_set_every_file_option() {
    let c = container(
        "web-1",
        &[
            (
                "tether.http.routers.api.rule",
                "Host(`a.com`) && PathPrefix(`/api`)",
            ),
            ("tether.http.routers.api.priority", "50"),
            ("tether.http.services.api.port", "9000"),
            ("tether.http.services.api.weight", "3"),
            ("tether.http.services.api.backup", "true"),
            ("tether.http.services.api.balance", "consistent_hash"),
            ("tether.http.services.api.hash_on", "header:X-User"),
            ("tether.http.services.api.affinity.mode", "cookie"),
            ("tether.http.services.api.affinity.cookie", "SRV"),
            ("tether.http.services.api.affinity.secure", "true"),
            ("tether.http.services.api.affinity.same_site", "Strict"),
            ("tether.http.services.api.affinity.max_age", "1h"),
            ("tether.http.services.api.affinity.nocache", "true"),
            ("tether.http.services.api.affinity.on_missing", "fail"),
        ],
        &[],
    );
    let d = ok(&c);
    assert_eq!(d.dialect, Dialect::Tether);
    let s = &d.services[0];
    assert_eq!(s.name, "api@docker");
    assert_eq!(s.servers[0].name, "web-1");
    assert_eq!(s.servers[0].addr.to_string(), "172.20.0.5:9000");
    assert_eq!(s.servers[0].weight, 3);
    assert!(s.servers[0].backup);
    assert_eq!(
        s.balance,
        BalanceAlgo::ConsistentHash(HashOn::Header("x-user".into()))
    );
    let a = s.affinity.as_ref().unwrap();
    assert!(a.nocache);
    assert_eq!(a.on_missing, crate::OnMissing::Fail);
    let AffinityMode::Cookie(attrs) = &a.mode else {
        panic!()
    };
    assert_eq!(attrs.name, "SRV");
    assert!(attrs.secure);
    assert_eq!(attrs.same_site, Some(SameSite::Strict));
    assert_eq!(attrs.max_age, Some(std::time::Duration::from_secs(3600)));
    assert_eq!(d.routes[0].name, "api@docker");
    assert_eq!(d.routes[0].service, "api@docker");
    assert_eq!(d.routes[0].priority, 50);
    assert!(route_matches(&d, "a.com", "/api/x"));
    assert!(!route_matches(&d, "b.com", "/api/x"));
}

#[test]
fn tether_label_defaults_use_the_group_and_the_exposed_port() {
    let d = ok(&container(
        "web-1",
        &[
            ("tether.enable", "true"),
            ("com.docker.compose.project", "shop"),
        ],
        &[],
    ));
    assert_eq!(d.services[0].name, "web@docker");
    assert_eq!(d.services[0].servers[0].addr.to_string(), "172.20.0.5:8080");
    assert!(route_matches(&d, "web", "/"));
    let d = ok(&container(
        "web-1",
        &[("tether.http.routers.r.rule", "PathPrefix(`/`)")],
        &[],
    ));
    assert_eq!(d.routes[0].service, "web@docker");
}

#[test]
fn tether_label_errors_name_container_label_and_value() {
    let c = container("web-1", &[("tether.http.services.web.port", "80a")], &[]);
    assert_eq!(
        errors(&c),
        ["label tether.http.services.web.port=\"80a\": not a port number (1..=65535) (container web-1)"]
    );
    let c = container(
        "web-1",
        &[("tether.http.services.web.affinity.mode", "cokie")],
        &[],
    );
    let e = errors(&c);
    assert!(
        e[0].starts_with("label tether.http.services.web.affinity.mode=\"cokie\": "),
        "{e:?}"
    );
    assert!(e[0].contains("expected \"cookie\" or \"prefix\""), "{e:?}");
    let c = container("web-1", &[("tether.http.routers.r.rule", "Hots(`a`)")], &[]);
    let e = errors(&c);
    assert!(
        e[0].starts_with("label tether.http.routers.r.rule=\"Hots(`a`)\": column 1"),
        "{e:?}"
    );
    let c = container(
        "web-1",
        &[("tether.http.services.web.afinity.mode", "cookie")],
        &[],
    );
    let e = errors(&c);
    assert!(
        e[0].contains("tether.http.services.web.afinity.mode") && e[0].contains("unknown field"),
        "{e:?}"
    );
    let c = container("web-1", &[("tether.htp.routers.r.rule", "Path(`/`)")], &[]);
    assert!(errors(&c)[0].contains("unknown label"));
    let c = container(
        "web-1",
        &[("tether.docker.network", "back"), ("tether.enable", "true")],
        &[],
    );
    assert!(errors(&c)[0].contains("not attached to this network (it is on: front)"));
}

#[test]
fn dockercloud_seed_prefix_cookie_on_a_path() {
    let c = container(
        "stack_service1.1",
        &[],
        &[
            ("SERVICE_PORTS", "8080"),
            ("COOKIE", "connect.sid prefix nocache"),
            ("VIRTUAL_HOST", "*/service1"),
        ],
    );
    let d = ok(&c);
    assert_eq!(d.dialect, Dialect::DockerCloud);
    let a = d.services[0].affinity.as_ref().unwrap();
    assert!(a.nocache);
    assert_eq!(
        a.mode,
        AffinityMode::Prefix {
            cookie: "connect.sid".into()
        }
    );
    assert!(route_matches(&d, "any.host", "/service1"));
    assert!(!route_matches(&d, "any.host", "/service1/"));
    assert!(!route_matches(&d, "any.host", "/service2"));
}

#[test]
fn dockercloud_virtual_host_forms() {
    use dockercloud::Scheme;
    let one = |v: &str| {
        let got = dockercloud::virtual_host(v).unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        got[0].1.clone()
    };
    assert_eq!(one("a.com"), "Host(`a.com`)");
    assert_eq!(one("a.com/api/*"), "Host(`a.com`) && PathPrefix(`/api/`)");
    assert_eq!(
        one("*.a.com, b.com/x"),
        "(Host(`*.a.com`) || (Host(`b.com`) && Path(`/x`)))"
    );
    assert_eq!(one("*"), "PathPrefix(`/`)");
    assert_eq!(
        dockercloud::virtual_host("*.a.com, http://b.com/x, https://c.com, wss://d.com").unwrap(),
        [
            (Scheme::Any, "Host(`*.a.com`)".to_string()),
            (Scheme::Plain, "Host(`b.com`) && Path(`/x`)".to_string()),
            (Scheme::Tls, "(Host(`c.com`) || Host(`d.com`))".to_string()),
        ]
    );
    assert!(dockercloud::virtual_host("ftp://a.com")
        .unwrap_err()
        .contains("http, https"));
    assert!(dockercloud::virtual_host("*/a*b")
        .unwrap_err()
        .contains("not supported"));
    let c = container(
        "s.1",
        &[],
        &[("VIRTUAL_HOST", "*/x"), ("BALANCE", "source")],
    );
    assert_eq!(
        ok(&c).services[0].balance,
        BalanceAlgo::ConsistentHash(HashOn::ClientIp)
    );
    let c = container(
        "s.1",
        &[],
        &[
            ("SERVICE_PORTS", "8080"),
            ("COOKIE", "SRV insert indirect nocache"),
        ],
    );
    let d = ok(&c);
    let AffinityMode::Cookie(attrs) = &d.services[0].affinity.as_ref().unwrap().mode else {
        panic!()
    };
    assert_eq!(attrs.name, "SRV");
    assert!(
        route_matches(&d, "x", "/anything"),
        "no VIRTUAL_HOST: the default route"
    );
    let c = container(
        "s.1",
        &[],
        &[("SERVICE_PORTS", "8080"), ("COOKIE", "connect.sid prefx")],
    );
    assert_eq!(
        errors(&c),
        ["env COOKIE=\"connect.sid prefx\": mode \"prefx\" is not supported: use prefix or insert (container s.1)"]
    );
}

#[test]
fn traefik_v1_seed_stickiness_on_a_named_network() {
    let mut c = container(
        "whoami.1",
        &[
            ("traefik.port", "8000"),
            ("traefik.frontend.rule", "PathPrefix:/"),
            ("traefik.backend.loadbalancer.stickiness", "true"),
            ("traefik.docker.network", "whoaminet"),
        ],
        &[],
    );
    c.networks
        .insert("whoaminet".into(), "10.0.0.5".parse().unwrap());
    let d = ok(&c);
    assert_eq!(d.dialect, Dialect::TraefikV1);
    assert_eq!(d.services[0].servers[0].addr.to_string(), "10.0.0.5:8000");
    assert!(matches!(
        &d.services[0].affinity.as_ref().unwrap().mode,
        AffinityMode::Cookie(_)
    ));
    assert!(route_matches(&d, "x", "/anything"));
    c.labels.insert(
        "traefik.backend.loadbalancer.stickiness.cookieName".into(),
        "sess".into(),
    );
    c.labels.insert(
        "traefik.frontend.rule".into(),
        "Host:a.com,b.com;PathPrefix:/api".into(),
    );
    let d = ok(&c);
    let AffinityMode::Cookie(attrs) = &d.services[0].affinity.as_ref().unwrap().mode else {
        panic!()
    };
    assert_eq!(attrs.name, "sess");
    assert!(route_matches(&d, "b.com", "/api/v"));
    assert!(!route_matches(&d, "c.com", "/api/v"));
    c.labels.insert(
        "traefik.frontend.rule".into(),
        "PathPrefixStripRegex:/api/{id}".into(),
    );
    assert!(
        errors(&c)[0]
            .starts_with("label traefik.frontend.rule=\"PathPrefixStripRegex:/api/{id}\": matcher"),
        "{:?}",
        errors(&c)
    );
}

#[test]
fn traefik_v2_router_service_and_sticky_cookie() {
    let c = container(
        "whoami-1",
        &[
            ("traefik.enable", "true"),
            (
                "traefik.http.routers.who.rule",
                "Host(`who.local`) || PathPrefix(`/who`)",
            ),
            ("traefik.http.services.who.loadbalancer.server.port", "8000"),
            (
                "traefik.http.services.who.loadBalancer.sticky.cookie.name",
                "who_sticky",
            ),
            (
                "traefik.http.services.who.loadbalancer.sticky.cookie.secure",
                "true",
            ),
            (
                "traefik.http.services.who.loadbalancer.sticky.cookie.httpOnly",
                "false",
            ),
            (
                "traefik.http.services.who.loadbalancer.sticky.cookie.sameSite",
                "strict",
            ),
        ],
        &[],
    );
    let d = ok(&c);
    assert_eq!(d.dialect, Dialect::Traefik);
    assert_eq!(d.routes[0].service, "who@docker");
    assert_eq!(d.services[0].servers[0].addr.to_string(), "172.20.0.5:8000");
    let AffinityMode::Cookie(attrs) = &d.services[0].affinity.as_ref().unwrap().mode else {
        panic!()
    };
    assert_eq!(
        (
            attrs.name.as_str(),
            attrs.secure,
            attrs.http_only,
            attrs.same_site
        ),
        ("who_sticky", true, false, Some(SameSite::Strict))
    );
    assert!(route_matches(&d, "who.local", "/"));
    assert!(route_matches(&d, "x", "/who"));
    let bad = container(
        "w-1",
        &[("traefik.http.services.w.loadbalancer.server.port", "http")],
        &[],
    );
    assert_eq!(
        errors(&bad),
        ["label traefik.http.services.w.loadbalancer.server.port=\"http\": not a port number (1..=65535) (container w-1)"]
    );
}

#[test]
fn https_to_the_container_from_traefik_and_tether_labels() {
    // Traefik: scheme=https, checked against the system's roots for the container's address.
    let c = container(
        "w-1",
        &[
            ("traefik.http.routers.w.rule", "Host(`w.test`)"),
            ("traefik.http.services.w.loadbalancer.server.port", "8443"),
            (
                "traefik.http.services.w.loadbalancer.server.scheme",
                "https",
            ),
            (
                "traefik.http.services.w.loadbalancer.passhostheader",
                "true",
            ),
        ],
        &[],
    );
    let tls = ok(&c).services[0].servers[0].tls.clone().expect("TLS");
    assert_eq!(
        tls,
        crate::decl::ServerTls {
            server_name: "172.20.0.5".into(),
            ca_file: None,
            insecure_skip_verify: false
        }
    );
    for (label, value, says) in [
        (
            "loadbalancer.server.scheme",
            "h2c",
            "expected http or https",
        ),
        (
            "loadbalancer.serverstransport",
            "insecure@file",
            "servers transport",
        ),
        ("loadbalancer.passhostheader", "false", "always passes"),
    ] {
        let key = format!("traefik.http.services.w.{label}");
        let c = container(
            "w-1",
            &[
                ("traefik.http.routers.w.rule", "Host(`w.test`)"),
                ("traefik.http.services.w.loadbalancer.server.port", "8443"),
                (key.as_str(), value),
            ],
            &[],
        );
        let e = errors(&c);
        assert!(
            e.iter().any(|e| e.contains(&key) && e.contains(says)),
            "{e:?}"
        );
    }
    // Tether: scheme=https, with the file's tls table as labels.
    let c = container(
        "w-1",
        &[
            ("tether.http.routers.w.rule", "Host(`w.test`)"),
            ("tether.http.services.w.port", "8443"),
            ("tether.http.services.w.scheme", "https"),
            ("tether.http.services.w.tls.insecure_skip_verify", "true"),
        ],
        &[],
    );
    let tls = ok(&c).services[0].servers[0].tls.clone().expect("TLS");
    assert!(tls.insecure_skip_verify);
    assert_eq!(tls.server_name, "172.20.0.5");
    let c = container(
        "w-1",
        &[
            ("tether.http.routers.w.rule", "Host(`w.test`)"),
            ("tether.http.services.w.port", "8443"),
            ("tether.http.services.w.tls.server_name", "w.internal"),
        ],
        &[],
    );
    let e = errors(&c);
    assert!(
        e.iter()
            .any(|e| e.contains("no server of this service is https://")),
        "{e:?}"
    );
    let c = container(
        "w-1",
        &[
            ("tether.http.routers.w.rule", "Host(`w.test`)"),
            ("tether.http.services.w.scheme", "ftp"),
        ],
        &[],
    );
    assert!(
        errors(&c)[0].contains("expected http or https"),
        "{:?}",
        errors(&c)
    );
}

#[test]
fn traefik_health_checks_map_and_what_tether_cannot_do_is_refused() {
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut l = vec![
            ("traefik.http.routers.w.rule", "Host(`w.test`)"),
            ("traefik.http.services.w.loadbalancer.server.port", "8080"),
        ];
        l.extend_from_slice(extra);
        container("w-1", &l, &[])
    };
    let d = ok(&with(&[
        (
            "traefik.http.services.w.loadbalancer.healthcheck.path",
            "/health",
        ),
        (
            "traefik.http.services.w.loadbalancer.healthcheck.interval",
            "10s",
        ),
    ]));
    let h = d.services[0].health.clone().expect("a health check");
    assert_eq!(h.path, "/health");
    assert_eq!(h.interval, std::time::Duration::from_secs(10));
    assert_eq!(
        h.timeout,
        std::time::Duration::from_secs(5),
        "Traefik's default"
    );
    for (labels, says) in [
        (
            vec![(
                "traefik.http.services.w.loadbalancer.healthcheck.interval",
                "10s",
            )],
            "healthcheck.path is missing",
        ),
        (
            vec![
                (
                    "traefik.http.services.w.loadbalancer.healthcheck.path",
                    "/h",
                ),
                (
                    "traefik.http.services.w.loadbalancer.healthcheck.port",
                    "9000",
                ),
            ],
            "health checks GET the path on the server's own port",
        ),
        (
            vec![(
                "traefik.http.services.w.loadbalancer.responseforwarding.flushinterval",
                "1s",
            )],
            "not supported: Tether reads loadbalancer.server.port",
        ),
        (
            vec![("traefik.http.routers.w.observability.accesslogs", "false")],
            "Tether reads a router's rule, service, priority",
        ),
        (
            // TCP routers are read (labels/tcp_tests.rs); with no TCP entrypoint, refused.
            vec![("traefik.tcp.routers.db.rule", "HostSNI(`*`)")],
            "no TCP entrypoint to serve it",
        ),
        (
            vec![("traefik.udp.routers.dns.entrypoints", "dns")],
            "not UDP",
        ),
    ] {
        let e = errors(&with(&labels));
        assert!(e.iter().any(|e| e.contains(says)), "{labels:?}: {e:?}");
    }
}

#[test]
fn traefik_v1_protocol_health_checks_and_refusals() {
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut l = vec![
            ("traefik.port", "8443"),
            ("traefik.frontend.rule", "Host:v1.test"),
        ];
        l.extend_from_slice(extra);
        container("w-1", &l, &[])
    };
    let d = ok(&with(&[
        ("traefik.protocol", "https"),
        ("traefik.backend.healthcheck.path", "/health"),
        ("traefik.backend.healthcheck.interval", "15s"),
        ("traefik.frontend.passHostHeader", "true"),
    ]));
    assert_eq!(d.dialect, Dialect::TraefikV1);
    let srv = &d.services[0].servers[0];
    assert_eq!(srv.tls.as_ref().unwrap().server_name, "172.20.0.5");
    let h = d.services[0].health.clone().unwrap();
    assert_eq!((h.path.as_str(), h.interval.as_secs()), ("/health", 15));
    for (labels, says) in [
        (vec![("traefik.protocol", "h2c")], "expected http or https"),
        (vec![("traefik.tags", "public")], "--docker-constraint"),
        (
            vec![("traefik.frontend.auth.basic", "u:p")],
            "the password is in plain text",
        ),
        (
            vec![("traefik.frontend.headers.isDevelopment", "true")],
            "not supported: Tether reads traefik.port",
        ),
        (
            vec![("traefik.frontend.passHostHeader", "false")],
            "always passes",
        ),
        (
            vec![("traefik.backend.healthcheck.port", "9000")],
            "health checks GET the path",
        ),
    ] {
        let e = errors(&with(&labels));
        assert!(e.iter().any(|e| e.contains(says)), "{labels:?}: {e:?}");
    }
}

#[test]
fn interlock_data_hostname_domain_port_alias() {
    let c = container(
        "dockchat_web_1",
        &[],
        &[(
            "INTERLOCK_DATA",
            r#"{"hostname":"demo","domain":"interlock.com","port":5000,"alias_domains":["www.demo.com"]}"#,
        )],
    );
    let d = ok(&c);
    assert_eq!(d.dialect, Dialect::Interlock);
    assert_eq!(d.services[0].name, "demo.interlock.com@docker");
    assert_eq!(d.services[0].servers[0].addr.to_string(), "172.20.0.5:5000");
    assert!(route_matches(&d, "demo.interlock.com", "/"));
    assert!(route_matches(&d, "www.demo.com", "/"));
    assert!(!route_matches(&d, "other.com", "/"));
    let c = container(
        "w",
        &[],
        &[(
            "INTERLOCK_DATA",
            r#"{"hostname":"demo","domain":"i.com","alias":"a.com"}"#,
        )],
    );
    assert!(route_matches(&ok(&c), "a.com", "/"));
    let c = container("w", &[], &[("INTERLOCK_DATA", "{hostname:demo}")]);
    assert!(errors(&c)[0].starts_with("env INTERLOCK_DATA=\"{hostname:demo}\": not valid JSON"));
}

#[test]
fn docker_flow_proxy_path_domain_port_sticky() {
    let c = container(
        "go-demo.1",
        &[
            ("com.df.notify", "true"),
            ("com.df.servicePath", "/demo"),
            ("com.df.serviceDomain", "go.demo.com"),
            ("com.df.port", "8080"),
            ("com.df.sessionType", "sticky-server"),
        ],
        &[],
    );
    let d = ok(&c);
    assert_eq!(d.dialect, Dialect::DockerFlow);
    assert!(d.services[0].affinity.is_some());
    assert!(route_matches(&d, "go.demo.com", "/demo/x"));
    assert!(!route_matches(&d, "go.demo.com", "/other"));
    let c = container(
        "g",
        &[("com.df.notify", "true"), ("com.df.port", "8080")],
        &[],
    );
    assert!(errors(&c)[0].contains("com.df.servicePath: missing"));
}

#[test]
fn docker_flow_proxy_labels_meant_for_other_consumers_are_ignored_and_unknown_ones_refused() {
    // Docker Flow Monitor's labels sit beside the proxy's on the same service.
    let c = container(
        "go-demo.1",
        &[
            ("com.df.notify", "true"),
            ("com.df.servicePath", "/demo"),
            ("com.df.port", "8080"),
            ("com.df.alertName", "mem"),
            ("com.df.alertIf.1", "@service_mem_limit:0.8"),
            ("com.df.scrapePort", "9100"),
            ("com.df.shortName", "true"),
        ],
        &[],
    );
    assert!(route_matches(&ok(&c), "a", "/demo"));
    let c = container(
        "go-demo.1",
        &[
            ("com.df.notify", "true"),
            ("com.df.servicePath", "/demo"),
            ("com.df.port", "8080"),
            ("com.df.aclName", "05-go-demo"),
        ],
        &[],
    );
    let e = errors(&c);
    assert!(
        e.iter()
            .any(|e| e.contains("com.df.aclName") && e.contains("not supported")),
        "{e:?}"
    );
    // A documented option Tether cannot honour says why; an undocumented one lists what is read.
    for (label, says) in [
        ("com.df.templateFePath", "configure HAProxy itself"),
        ("com.df.userAgent", "whole header values"),
        ("com.df.colour", "unknown parameter"),
    ] {
        let c = container(
            "go-demo.1",
            &[
                ("com.df.notify", "true"),
                ("com.df.servicePath", "/demo"),
                ("com.df.port", "8080"),
                (label, "x"),
            ],
            &[],
        );
        let e = errors(&c);
        assert!(
            e.iter().any(|e| e.contains(label) && e.contains(says)),
            "{label}: {e:?}"
        );
    }
}

#[test]
fn network_choice_prefers_tethers_own_networks() {
    let mut c = container("w", &[("tether.enable", "true")], &[]);
    c.networks
        .insert("back".into(), "10.9.0.2".parse().unwrap());
    let own = ["back".to_string()];
    let cx = Context {
        own_networks: &own,
        ..cx()
    };
    let d = declare(&c, &cx).unwrap().unwrap();
    assert_eq!(d.services[0].servers[0].addr.to_string(), "10.9.0.2:8080");
    let own = ["elsewhere".to_string()];
    let cx = Context {
        own_networks: &own,
        ..cx
    };
    let e = declare(&c, &cx).unwrap().unwrap_err();
    assert!(
        e[0].to_string().contains("shares no network with Tether"),
        "{e:?}"
    );
}

#[test]
fn health_checks_come_from_labels_and_resolve_is_refused() {
    let c = container(
        "web-1",
        &[
            ("tether.http.services.web.port", "80"),
            ("tether.http.services.web.health.path", "/healthz"),
            ("tether.http.services.web.health.fall", "5"),
        ],
        &[],
    );
    let d = ok(&c);
    let h = d.services[0].health.clone().expect("a health check");
    assert_eq!((h.path.as_str(), h.fall), ("/healthz", 5));
    let c = container(
        "web-1",
        &[("tether.http.services.web.resolve", "tasks.web:80")],
        &[],
    );
    let e = errors(&c);
    assert!(e[0].contains("servers are the containers"), "{e:?}");
}

#[test]
fn the_wait_for_a_server_comes_from_labels() {
    let c = container(
        "web-1",
        &[
            ("tether.http.services.web.port", "80"),
            ("tether.http.services.web.wait_for_server", "30s"),
            ("tether.http.services.web.wait_queue", "10"),
        ],
        &[],
    );
    let w = ok(&c).services[0].wait;
    assert_eq!(
        (w.timeout, w.queue),
        (std::time::Duration::from_secs(30), 10)
    );
    let c = container(
        "web-1",
        &[
            ("tether.http.services.web.port", "80"),
            ("tether.http.services.web.wait_queue", "none"),
        ],
        &[],
    );
    let e = errors(&c);
    assert!(
        e[0].contains("tether.http.services.web.wait_queue"),
        "{e:?}"
    );
}

/// The second seed's container: on `whoaminet` (an overlay) and `front` (a local bridge).
fn on_two_networks(labels: &[(&str, &str)]) -> Container {
    let mut c = container("who-1", labels, &[]);
    c.networks
        .insert("whoaminet".into(), "10.0.9.4".parse().unwrap());
    c
}

#[test]
fn a_network_tether_is_not_on_is_never_routed() {
    let named = [
        ("traefik.port", "8080"),
        ("traefik.docker.network", "whoaminet"),
    ];
    // In a container on `proxy` and `front`: the label's network is not one of them.
    let own = ["proxy".to_string(), "front".to_string()];
    let cx = Context {
        own_networks: &own,
        ..Default::default()
    };
    let e = declare(&on_two_networks(&named), &cx).unwrap().unwrap_err();
    let msg = e[0].to_string();
    assert!(
        msg.contains("traefik.docker.network")
            && msg.contains("not attached to network whoaminet")
            && msg.contains("Tether is on proxy, front")
            && msg.contains("container who-1"),
        "{msg}"
    );
    // Attached to it: routed there.
    let own = ["whoaminet".to_string()];
    let cx = Context {
        own_networks: &own,
        ..Default::default()
    };
    let d = declare(&on_two_networks(&named), &cx).unwrap().unwrap();
    assert_eq!(
        d.services[0].servers[0].addr,
        ServerAddr::parse("10.0.9.4:8080").unwrap()
    );
}

#[test]
fn on_the_host_only_local_bridges_and_the_host_network_are_routed() {
    let bridges = ["front".to_string(), "bridge".to_string()];
    let cx = Context {
        host_networks: Some(&bridges),
        ..Default::default()
    };
    // An overlay named by a label: refused, naming it and what the host reaches.
    let named = [
        ("traefik.port", "8080"),
        ("traefik.docker.network", "whoaminet"),
    ];
    let e = declare(&on_two_networks(&named), &cx).unwrap().unwrap_err();
    let msg = e[0].to_string();
    assert!(
        msg.contains("network whoaminet is not reachable from the host")
            && msg.contains("front, bridge"),
        "{msg}"
    );
    // No label: the reachable network, whatever the order.
    let d = declare(&on_two_networks(&[("traefik.port", "8080")]), &cx)
        .unwrap()
        .unwrap();
    assert_eq!(
        d.services[0].servers[0].addr,
        ServerAddr::parse("172.20.0.5:8080").unwrap()
    );
    // Only on the overlay: left out, saying why.
    let mut only = on_two_networks(&[("traefik.port", "8080")]);
    only.networks.remove("front");
    let e = declare(&only, &cx).unwrap().unwrap_err();
    assert!(
        e[0].to_string()
            .contains("is on no network the host Tether runs on reaches"),
        "{e:?}"
    );
    // The host's network: its loopback.
    let mut host = container("h", &[("traefik.port", "8080")], &[]);
    host.host_network = true;
    host.networks.clear();
    let d = declare(&host, &cx).unwrap().unwrap();
    assert_eq!(
        d.services[0].servers[0].addr,
        ServerAddr::parse("127.0.0.1:8080").unwrap()
    );
    // ... which a container on a bridge does not share.
    let own = ["proxy".to_string()];
    let in_container = Context {
        own_networks: &own,
        ..Default::default()
    };
    let e = declare(&host, &in_container).unwrap().unwrap_err();
    assert!(
        e[0].to_string().contains("uses the host's network"),
        "{e:?}"
    );
}

#[test]
fn tether_middleware_labels_declare_middlewares_that_routers_name_in_order() {
    let c = container(
        "shop-1",
        &[
            ("tether.http.routers.shop.rule", "PathPrefix(`/shop`)"),
            (
                "tether.http.routers.shop.middlewares",
                "auth, strip,sec@file",
            ),
            (
                "tether.http.middlewares.auth.basic_auth.users",
                "admin:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=,ops:$apr1$o0CJxGu4$QnnTssamc9OYtXRPiZWNn.",
            ),
            (
                "tether.http.middlewares.auth.basic_auth.remove_header",
                "false",
            ),
            (
                "tether.http.middlewares.strip.strip_prefix.prefixes",
                "/shop",
            ),
            (
                "tether.http.middlewares.hdr.headers.request.set.X-Env",
                "prod",
            ),
            ("tether.http.middlewares.hdr.headers.frame_deny", "true"),
            ("tether.http.services.web.port", "8080"),
        ],
        &[],
    );
    let d = ok(&c);
    assert_eq!(
        d.routes[0].middlewares,
        ["auth@docker", "strip@docker", "sec@file"]
    );
    let names: Vec<&str> = d.middlewares.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["auth@docker", "hdr@docker", "strip@docker"]);
    match &d.middlewares[0].kind {
        crate::Middleware::BasicAuth(b) => {
            assert_eq!(b.users.len(), 2);
            assert!(!b.remove_header);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_bad_middleware_label_is_refused_by_name() {
    let e = errors(&container(
        "web-1",
        &[
            (
                "tether.http.middlewares.auth.basic_auth.users",
                "admin:hunter2",
            ),
            ("tether.http.services.web.port", "8080"),
        ],
        &[],
    ));
    assert!(
        e.iter().any(
            |e| e.contains("tether.http.middlewares.auth.basic_auth.users")
                && e.contains("plain text")
                && !e.contains("hunter2")
        ),
        "{e:?}"
    );
    let e = errors(&container(
        "web-1",
        &[
            (
                "tether.http.middlewares.auth.basic_auth.users_file",
                "/etc/shadow",
            ),
            ("tether.http.services.web.port", "8080"),
        ],
        &[],
    ));
    assert!(
        e.iter().any(|e| e.contains("names a Docker secret")),
        "{e:?}"
    );
    let e = errors(&container(
        "web-1",
        &[
            ("tether.http.middlewares.auth", "x"),
            ("tether.http.services.web.port", "8080"),
        ],
        &[],
    ));
    assert!(
        e.iter().any(|e| e.contains("<name>.<type>.<field>")),
        "{e:?}"
    );
}

#[test]
fn traefik_middlewares_map_onto_tethers_by_their_exact_names() {
    let c = container(
        "shop.1",
        &[
            ("traefik.http.routers.shop.rule", "PathPrefix(`/shop`)"),
            (
                "traefik.http.routers.shop.middlewares",
                "auth,allow,strip,hdr,all",
            ),
            (
                "traefik.http.middlewares.auth.basicauth.users",
                "admin:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=,ops:$apr1$o0CJxGu4$QnnTssamc9OYtXRPiZWNn.",
            ),
            ("traefik.http.middlewares.auth.basicauth.realm", "shop"),
            (
                "traefik.http.middlewares.auth.basicauth.removeHeader",
                "true",
            ),
            (
                "traefik.http.middlewares.allow.ipAllowList.sourceRange",
                "10.0.0.0/8, 192.168.1.7",
            ),
            (
                "traefik.http.middlewares.old.ipwhitelist.sourcerange",
                "127.0.0.1/32",
            ),
            (
                "traefik.http.middlewares.strip.stripPrefix.prefixes",
                "/shop,/store",
            ),
            (
                "traefik.http.middlewares.strip.stripPrefix.forceSlash",
                "true",
            ),
            (
                "traefik.http.middlewares.re.stripPrefixRegex.regex",
                "/api/v[0-9]+",
            ),
            ("traefik.http.middlewares.add.addPrefix.prefix", "/v2"),
            ("traefik.http.middlewares.rp.replacePath.path", "/health"),
            (
                "traefik.http.middlewares.rpr.replacePathRegex.regex",
                "^/old/(.*)",
            ),
            (
                "traefik.http.middlewares.rpr.replacePathRegex.replacement",
                "/new/$1",
            ),
            (
                "traefik.http.middlewares.hdr.headers.customRequestHeaders.X-Script-Name",
                "shop",
            ),
            (
                "traefik.http.middlewares.hdr.headers.customRequestHeaders.X-Debug",
                "",
            ),
            (
                "traefik.http.middlewares.hdr.headers.customResponseHeaders.Server",
                "",
            ),
            (
                "traefik.http.middlewares.hdr.headers.customResponseHeaders.X-Served-By",
                "tether",
            ),
            ("traefik.http.middlewares.hdr.headers.frameDeny", "true"),
            (
                "traefik.http.middlewares.hdr.headers.contentTypeNosniff",
                "true",
            ),
            (
                "traefik.http.middlewares.hdr.headers.referrerPolicy",
                "no-referrer",
            ),
            (
                "traefik.http.middlewares.rr.redirectRegex.regex",
                "^http://old/(.*)",
            ),
            (
                "traefik.http.middlewares.rr.redirectRegex.replacement",
                "https://new/$1",
            ),
            (
                "traefik.http.middlewares.rr.redirectRegex.permanent",
                "true",
            ),
            ("traefik.http.middlewares.rs.redirectScheme.scheme", "https"),
            ("traefik.http.middlewares.rs.redirectScheme.port", "8443"),
            (
                "traefik.http.middlewares.all.chain.middlewares",
                "re,add,common@file",
            ),
            (
                "traefik.http.services.shop.loadbalancer.server.port",
                "8080",
            ),
        ],
        &[],
    );
    let d = ok(&c);
    assert_eq!(
        d.routes[0].middlewares,
        [
            "auth@docker",
            "allow@docker",
            "strip@docker",
            "hdr@docker",
            "all@docker"
        ]
    );
    let kinds: Vec<(&str, &str)> = d
        .middlewares
        .iter()
        .map(|m| (m.name.as_str(), m.kind.type_name()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("add@docker", "add_prefix"),
            ("all@docker", "chain"),
            ("allow@docker", "ip_allow"),
            ("auth@docker", "basic_auth"),
            ("hdr@docker", "headers"),
            ("old@docker", "ip_allow"),
            ("re@docker", "strip_prefix_regex"),
            ("rp@docker", "replace_path"),
            ("rpr@docker", "replace_path_regex"),
            ("rr@docker", "redirect_regex"),
            ("rs@docker", "redirect_scheme"),
            ("strip@docker", "strip_prefix"),
        ]
    );
    let by = |n: &str| &d.middlewares.iter().find(|m| m.name == n).unwrap().kind;
    match by("hdr@docker") {
        crate::Middleware::Headers(h) => {
            assert_eq!(
                h.request.set,
                [("x-script-name".to_string(), "shop".to_string())]
            );
            assert_eq!(h.request.remove, ["x-debug"]);
            assert_eq!(h.response.remove, ["server"]);
            assert!(h.security.frame_deny && h.security.content_type_nosniff);
            assert_eq!(h.security.referrer_policy.as_deref(), Some("no-referrer"));
        }
        other => panic!("{other:?}"),
    }
    match by("all@docker") {
        crate::Middleware::Chain(ch) => {
            assert_eq!(ch.middlewares, ["re@docker", "add@docker", "common@file"])
        }
        other => panic!("{other:?}"),
    }
    // A refusal names the label, and never quotes a password.
    let e = errors(&container(
        "x.1",
        &[
            (
                "traefik.http.middlewares.a.basicauth.users",
                "admin:hunter2",
            ),
            (
                "traefik.http.middlewares.b.basicauth.usersfile",
                "/etc/htpasswd",
            ),
            (
                "traefik.http.middlewares.c.headers.accessControlAllowOrigin",
                "*",
            ),
            (
                "traefik.http.middlewares.d.headers.customRequestHeaders.X-Forwarded-For",
                "1.2.3.4",
            ),
            ("traefik.http.services.x.loadbalancer.server.port", "80"),
        ],
        &[],
    ))
    .join("\n");
    assert!(
        e.contains("label traefik.http.middlewares.a.basicauth.users: user \"admin\""),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "{e}");
    assert!(
        e.contains("traefik.http.middlewares.b.basicauth.usersfile") && e.contains("Docker secret"),
        "{e}"
    );
    assert!(
        e.contains("headers.accesscontrolalloworigin is not supported"),
        "{e}"
    );
    assert!(
        e.contains("customRequestHeaders.X-Forwarded-For") && e.contains("forwarding field"),
        "{e}"
    );
}

#[test]
fn traefik_v1_frontend_options_become_middlewares_in_traefik_v1s_order() {
    let c = container(
        "shop.1",
        &[
            ("traefik.port", "8080"),
            ("traefik.backend", "shop"),
            (
                "traefik.frontend.rule",
                "Host:shop.test;PathPrefixStrip:/shop",
            ),
            (
                "traefik.frontend.auth.basic.users",
                "admin:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=",
            ),
            ("traefik.frontend.auth.basic.removeHeader", "false"),
            (
                "traefik.frontend.whiteList.sourceRange",
                "10.0.0.0/8,192.168.0.0/16",
            ),
            ("traefik.frontend.whiteList.useXForwardedFor", "true"),
            (
                "traefik.frontend.headers.customRequestHeaders",
                "X-Script-Name:shop||X-Debug:",
            ),
            (
                "traefik.frontend.headers.customResponseHeaders",
                "X-Served-By:tether",
            ),
            ("traefik.frontend.headers.frameDeny", "true"),
            ("traefik.frontend.redirect.regex", "^http://old.test/(.*)"),
            (
                "traefik.frontend.redirect.replacement",
                "http://shop.test/$1",
            ),
        ],
        &[],
    );
    let d = ok(&c);
    assert_eq!(d.dialect, Dialect::TraefikV1);
    assert!(route_matches(&d, "shop.test", "/shop/cart"));
    assert!(!route_matches(&d, "shop.test", "/cart"));
    assert_eq!(
        d.routes[0].middlewares,
        [
            "shop-whitelist@docker",
            "shop-basicauth@docker",
            "shop-redirect@docker",
            "shop-headers@docker",
            "shop-rule1@docker"
        ]
    );
    let by = |n: &str| &d.middlewares.iter().find(|m| m.name == n).unwrap().kind;
    assert_eq!(by("shop-rule1@docker").type_name(), "strip_prefix");
    match by("shop-headers@docker") {
        crate::Middleware::Headers(h) => {
            assert_eq!(
                h.request.set,
                [("x-script-name".to_string(), "shop".to_string())]
            );
            assert_eq!(h.request.remove, ["x-debug"]);
            assert_eq!(
                h.response.set,
                [("x-served-by".to_string(), "tether".to_string())]
            );
            assert!(h.security.frame_deny);
        }
        other => panic!("{other:?}"),
    }
    match by("shop-basicauth@docker") {
        crate::Middleware::BasicAuth(b) => assert!(!b.remove_header),
        other => panic!("{other:?}"),
    }
    // The other modifiers.
    let (rule, mods) =
        traefik_v1::translate_rule("PathPrefix:/a;AddPrefix:/v1;ReplacePathRegex:^/a/(.*) /b/$1")
            .unwrap();
    assert_eq!(rule, "PathPrefix(`/a`)");
    assert_eq!(mods.len(), 2);
    let e = errors(&container(
        "x.1",
        &[
            ("traefik.port", "80"),
            ("traefik.frontend.whiteList.useXForwardedFor", "false"),
            ("traefik.frontend.redirect.regex", "^(.*"),
            ("traefik.frontend.redirect.replacement", "/x"),
        ],
        &[],
    ))
    .join("\n");
    assert!(
        e.contains("traefik.frontend.whiteList.useXForwardedFor") && e.contains("trusted_proxies"),
        "{e}"
    );
    assert!(
        e.contains("traefik.frontend.redirect.regex") && e.contains("invalid regex"),
        "{e}"
    );
}

#[test]
fn docker_flow_proxy_labels_declare_its_request_options_as_middlewares() {
    let c = container(
        "shop.1",
        &[
            ("com.df.notify", "true"),
            ("com.df.serviceName", "shop"),
            ("com.df.servicePath", "/shop"),
            ("com.df.port", "8080"),
            ("com.df.users", "admin:hunter2"),
            ("com.df.reqPathSearch", "^/shop/"),
            ("com.df.reqPathReplace", "/"),
            ("com.df.addResHeader", "X-Served-By tether"),
            ("com.df.allowedMethods", "GET,HEAD"),
            ("com.df.compressionAlgo", "gzip"),
            ("com.df.compressionType", "text/html text/css"),
        ],
        &[],
    );
    let d = ok(&c);
    assert_eq!(
        d.routes[0].middlewares,
        [
            "shop-methods@docker",
            "shop-auth@docker",
            "shop-path-1@docker",
            "shop-headers@docker",
            "shop-compress@docker"
        ]
    );
    match &d
        .middlewares
        .iter()
        .find(|m| m.name == "shop-compress@docker")
        .unwrap()
        .kind
    {
        crate::Middleware::Compress(c) => {
            assert_eq!(c.encodings, [crate::middleware::Encoding::Gzip]);
            assert_eq!(c.include_types, ["text/html", "text/css"]);
        }
        other => panic!("{other:?}"),
    }
    let auth = format!("{:?}", d.middlewares);
    assert!(!auth.contains("hunter2"), "{auth}");
    let e = errors(&container(
        "x.1",
        &[
            ("com.df.notify", "true"),
            ("com.df.servicePath", "/x"),
            ("com.df.port", "80"),
            ("com.df.usersSecret", "admins"),
        ],
        &[],
    ));
    assert!(
        e.iter()
            .any(|e| e.contains("com.df.usersSecret") && e.contains("usersPassEncrypted=true")),
        "{e:?}"
    );
}

#[test]
fn dockercloud_http_basic_auth_guards_every_service_but_those_that_opt_out() {
    let auth = dockercloud::basic_auth(Some("admin:pa\\,ss, ops:x"), None)
        .unwrap()
        .unwrap();
    match &auth.kind {
        crate::Middleware::BasicAuth(b) => {
            assert_eq!(b.users.len(), 2);
            assert_eq!(b.users[0].name, "admin");
            assert!(!format!("{b:?}").contains("pa,ss"));
            assert!(b.users[0].hash.starts_with("$6$"), "hashed at once");
        }
        other => panic!("{other:?}"),
    }
    let secure =
        dockercloud::basic_auth(None, Some("ops:$apr1$o0CJxGu4$QnnTssamc9OYtXRPiZWNn.")).unwrap();
    assert!(secure.is_some());
    assert!(dockercloud::basic_auth(None, Some("ops:plain"))
        .unwrap_err()
        .contains("HTTP_BASIC_AUTH_SECURE"));
    assert!(dockercloud::basic_auth(None, None).unwrap().is_none());

    let cx = Context {
        entrypoints: EPS,
        dockercloud: Some(&dockercloud::ProxyWide {
            basic_auth: Some(auth.clone()),
            compress: None,
        }),
        ..Default::default()
    };
    let app = container(
        "app-1",
        &[],
        &[("SERVICE_PORTS", "8080"), ("VIRTUAL_HOST", "a.test")],
    );
    let d = declare(&app, &cx).unwrap().unwrap();
    assert_eq!(d.routes[0].middlewares, ["http-basic-auth@docker"]);
    assert_eq!(d.middlewares.len(), 1);
    assert_eq!(d.middlewares[0], auth);
    let open = container(
        "pub-1",
        &[],
        &[
            ("SERVICE_PORTS", "8080"),
            ("VIRTUAL_HOST", "b.test"),
            ("EXCLUDE_BASIC_AUTH", "true"),
        ],
    );
    let d = declare(&open, &cx).unwrap().unwrap();
    assert!(d.routes[0].middlewares.is_empty() && d.middlewares.is_empty());
}

#[test]
fn traefik_allow_list_depth_and_reject_status_map_onto_ip_allow() {
    use crate::middleware::IpAllow;
    let c = container(
        "api.1",
        &[
            ("traefik.http.routers.api.rule", "PathPrefix(`/api`)"),
            ("traefik.http.routers.api.middlewares", "office"),
            (
                "traefik.http.middlewares.office.ipAllowList.sourceRange",
                "198.51.100.0/24, 2001:db8::/32",
            ),
            (
                "traefik.http.middlewares.office.ipAllowList.ipStrategy.depth",
                "2",
            ),
            (
                "traefik.http.middlewares.office.ipAllowList.rejectStatusCode",
                "404",
            ),
            ("traefik.http.services.api.loadbalancer.server.port", "80"),
        ],
        &[],
    );
    let d = ok(&c);
    let Some(crate::Middleware::IpAllow(IpAllow {
        ranges,
        depth,
        reject_status,
    })) = d
        .middlewares
        .iter()
        .find(|m| m.name == "office@docker")
        .map(|m| &m.kind)
    else {
        panic!("no ip_allow: {:?}", d.middlewares)
    };
    assert_eq!(
        ranges.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["198.51.100.0/24", "2001:db8::/32"]
    );
    assert_eq!((*depth, *reject_status), (2, 404));
    // A status that is not an error, and a negative depth, are refused by label.
    let e = errors(&container(
        "x.1",
        &[
            (
                "traefik.http.middlewares.a.ipallowlist.sourcerange",
                "10.0.0.0/8",
            ),
            (
                "traefik.http.middlewares.a.ipallowlist.rejectstatuscode",
                "200",
            ),
            (
                "traefik.http.middlewares.b.ipallowlist.sourcerange",
                "10.0.0.0/8",
            ),
            (
                "traefik.http.middlewares.b.ipallowlist.ipstrategy.depth",
                "-1",
            ),
        ],
        &[],
    ))
    .join("\n");
    assert!(
        e.contains("rejectstatuscode") && e.contains("200: expected a 4xx or 5xx status"),
        "{e}"
    );
    assert!(
        e.contains("traefik.http.middlewares.b.ipallowlist.ipstrategy.depth")
            && e.contains("expected a depth of 0 or more"),
        "{e}"
    );
}

#[test]
fn traefik_rate_and_in_flight_limits_map_onto_tethers_in_both_versions() {
    use crate::middleware::{InFlight, RateLimit, Source};
    let c = container(
        "api.1",
        &[
            ("traefik.http.routers.api.rule", "PathPrefix(`/api`)"),
            ("traefik.http.routers.api.middlewares", "rl,key,slots"),
            ("traefik.http.middlewares.rl.rateLimit.average", "100"),
            ("traefik.http.middlewares.rl.rateLimit.burst", "50"),
            ("traefik.http.middlewares.rl.rateLimit.period", "1m"),
            (
                "traefik.http.middlewares.rl.rateLimit.sourceCriterion.ipStrategy.depth",
                "2",
            ),
            ("traefik.http.middlewares.key.ratelimit.average", "5"),
            ("traefik.http.middlewares.key.ratelimit.period", "10"),
            (
                "traefik.http.middlewares.key.ratelimit.sourcecriterion.requestheadername",
                "X-Api-Key",
            ),
            ("traefik.http.middlewares.slots.inFlightReq.amount", "10"),
            ("traefik.http.services.api.loadbalancer.server.port", "80"),
        ],
        &[],
    );
    let d = ok(&c);
    let by = |n: &str| &d.middlewares.iter().find(|m| m.name == n).unwrap().kind;
    assert_eq!(
        *by("rl@docker"),
        crate::Middleware::RateLimit(RateLimit {
            average: 100,
            period_ms: 60_000,
            burst: 50,
            by: Source::ClientIp { depth: 2 },
            table_size: crate::middleware::rate_limit::TABLE_SIZE,
        })
    );
    assert_eq!(
        *by("key@docker"),
        crate::Middleware::RateLimit(RateLimit {
            average: 5,
            period_ms: 10_000,
            burst: 1,
            by: Source::Header("x-api-key".into()),
            table_size: crate::middleware::rate_limit::TABLE_SIZE,
        })
    );
    assert_eq!(
        *by("slots@docker"),
        crate::Middleware::InFlight(InFlight {
            amount: 10,
            by: Source::ClientIp { depth: 0 },
        })
    );
    // What Tether cannot honour is refused by label.
    let e = errors(&container(
        "x.1",
        &[
            ("traefik.http.middlewares.a.ratelimit.average", "0"),
            ("traefik.http.middlewares.b.ratelimit.average", "5"),
            (
                "traefik.http.middlewares.b.ratelimit.sourcecriterion.requesthost",
                "true",
            ),
            (
                "traefik.http.middlewares.c.compress.defaultEncoding",
                "gzip",
            ),
            ("traefik.http.services.x.loadbalancer.server.port", "80"),
        ],
        &[],
    ))
    .join("\n");
    assert!(
        e.contains(
            "traefik.http.middlewares.a.ratelimit.average=\"0\": 0 turns Traefik's rate limit off"
        ),
        "{e}"
    );
    assert!(
        e.contains("sourcecriterion.requesthost=\"true\": not supported"),
        "{e}"
    );
    assert!(
        e.contains("compress.defaultEncoding=\"gzip\": not supported"),
        "{e}"
    );

    // Traefik v1: one rate limit per rate set, grouped by the extractor.
    let v1 = container(
        "shop.1",
        &[
            ("traefik.port", "8080"),
            ("traefik.backend", "shop"),
            ("traefik.frontend.rule", "PathPrefix:/shop"),
            (
                "traefik.frontend.rateLimit.extractorFunc",
                "request.header.X-Api-Key",
            ),
            ("traefik.frontend.rateLimit.rateSet.fast.period", "10s"),
            ("traefik.frontend.rateLimit.rateSet.fast.average", "100"),
            ("traefik.frontend.rateLimit.rateSet.fast.burst", "200"),
            ("traefik.frontend.rateLimit.rateSet.slow.period", "3"),
            ("traefik.frontend.rateLimit.rateSet.slow.average", "5"),
        ],
        &[],
    );
    let d = ok(&v1);
    assert_eq!(
        d.routes[0].middlewares,
        ["shop-ratelimit-fast@docker", "shop-ratelimit-slow@docker"]
    );
    let by = |n: &str| &d.middlewares.iter().find(|m| m.name == n).unwrap().kind;
    assert_eq!(
        *by("shop-ratelimit-slow@docker"),
        crate::Middleware::RateLimit(RateLimit {
            average: 5,
            period_ms: 3000,
            burst: 1,
            by: Source::Header("x-api-key".into()),
            table_size: crate::middleware::rate_limit::TABLE_SIZE,
        })
    );
    let e = errors(&container(
        "x.1",
        &[
            ("traefik.port", "80"),
            ("traefik.frontend.rule", "PathPrefix:/x"),
            ("traefik.frontend.rateLimit.extractorFunc", "request.host"),
            ("traefik.frontend.rateLimit.rateSet.a.average", "5"),
            ("traefik.frontend.rateLimit.rateSet.a.cost", "5"),
        ],
        &[],
    ))
    .join("\n");
    assert!(e.contains("request.host is not supported"), "{e}");
    assert!(
        e.contains("rateset.a.cost") || e.contains("rateSet.a.cost"),
        "{e}"
    );
}

#[test]
fn compression_labels_of_every_dialect_become_compress() {
    use crate::middleware::{Compress, Encoding};
    // Traefik v2/v3.
    let c = container(
        "web.1",
        &[
            ("traefik.http.routers.web.rule", "PathPrefix(`/`)"),
            ("traefik.http.routers.web.middlewares", "gz,custom"),
            ("traefik.http.middlewares.gz.compress", "true"),
            (
                "traefik.http.middlewares.custom.compress.encodings",
                "gzip,br",
            ),
            (
                "traefik.http.middlewares.custom.compress.includedContentTypes",
                "text/html,application/json",
            ),
            (
                "traefik.http.middlewares.custom.compress.minResponseBodyBytes",
                "2048",
            ),
            ("traefik.http.services.web.loadbalancer.server.port", "80"),
        ],
        &[],
    );
    let d = ok(&c);
    let by = |n: &str| {
        d.middlewares
            .iter()
            .find(|m| m.name == n)
            .unwrap()
            .kind
            .clone()
    };
    match by("gz@docker") {
        crate::Middleware::Compress(c) => assert_eq!(c.encodings, Encoding::ALL),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        by("custom@docker"),
        crate::Middleware::Compress(Compress {
            encodings: vec![Encoding::Gzip, Encoding::Br],
            min_size: 2048,
            levels: vec![6, 4],
            exclude_types: crate::middleware::compress::EXCLUDE_TYPES
                .iter()
                .map(|t| t.to_string())
                .collect(),
            include_types: vec!["text/html".into(), "application/json".into()],
            compress_with_cookies: false,
        })
    );
    let e = errors(&container(
        "x.1",
        &[
            (
                "traefik.http.middlewares.a.compress.encodings",
                "gzip,deflate",
            ),
            ("traefik.http.services.x.loadbalancer.server.port", "80"),
        ],
        &[],
    ))
    .join("\n");
    assert!(
        e.contains("unknown encoding \"deflate\": Tether writes zstd, br, gzip"),
        "{e}"
    );

    // dockercloud/haproxy's GZIP_COMPRESSION_TYPE on the proxy: every service's routes.
    let gzip = dockercloud::gzip(Some("text/html text/css"))
        .unwrap()
        .unwrap();
    assert_eq!(gzip.name, "gzip-compression@docker");
    let wide = dockercloud::ProxyWide {
        basic_auth: None,
        compress: Some(gzip),
    };
    let cx = Context {
        entrypoints: EPS,
        dockercloud: Some(&wide),
        ..Default::default()
    };
    let app = container(
        "app-1",
        &[],
        &[("SERVICE_PORTS", "8080"), ("VIRTUAL_HOST", "a.test")],
    );
    let d = declare(&app, &cx).unwrap().unwrap();
    assert_eq!(d.routes[0].middlewares, ["gzip-compression@docker"]);
    match &d.middlewares[0].kind {
        crate::Middleware::Compress(c) => {
            assert_eq!(c.encodings, [Encoding::Gzip]);
            assert_eq!(c.include_types, ["text/html", "text/css"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(dockercloud::gzip(Some("html"))
        .unwrap_err()
        .contains("GZIP_COMPRESSION_TYPE"));
    assert!(dockercloud::gzip(None).unwrap().is_none());

    // Tether's own labels, with the rate and in-flight limits.
    let c = container(
        "api-1",
        &[
            ("tether.http.routers.api.rule", "PathPrefix(`/api`)"),
            ("tether.http.routers.api.middlewares", "z,rl,fl"),
            ("tether.http.middlewares.z.compress.encodings", "br,gzip"),
            ("tether.http.middlewares.z.compress.level.br", "5"),
            ("tether.http.middlewares.z.compress.min_size", "512"),
            (
                "tether.http.middlewares.z.compress.compress_with_cookies",
                "true",
            ),
            ("tether.http.middlewares.rl.rate_limit.average", "50"),
            ("tether.http.middlewares.rl.rate_limit.burst", "100"),
            (
                "tether.http.middlewares.rl.rate_limit.by",
                "header:X-Api-Key",
            ),
            ("tether.http.middlewares.fl.in_flight.amount", "4"),
            ("tether.http.services.api.port", "8080"),
        ],
        &[],
    );
    let d = ok(&c);
    let by = |n: &str| {
        d.middlewares
            .iter()
            .find(|m| m.name == n)
            .unwrap()
            .kind
            .clone()
    };
    match by("z@docker") {
        crate::Middleware::Compress(c) => {
            assert_eq!(c.encodings, [Encoding::Br, Encoding::Gzip]);
            assert_eq!(c.levels, [5, 6]);
            assert_eq!(c.min_size, 512);
            assert!(c.compress_with_cookies);
        }
        other => panic!("{other:?}"),
    }
    match by("rl@docker") {
        crate::Middleware::RateLimit(r) => assert_eq!((r.average, r.burst), (50, 100)),
        other => panic!("{other:?}"),
    }
    match by("fl@docker") {
        crate::Middleware::InFlight(f) => assert_eq!(f.amount, 4),
        other => panic!("{other:?}"),
    }
}

#[test]
fn dockercloud_deactivate_leaves_the_service_out() {
    let env = [("SERVICE_PORTS", "8080"), ("VIRTUAL_HOST", "a.test")];
    let c = container(
        "app-1",
        &[("com.docker.dockercloud.haproxy.deactivate", "true")],
        &env,
    );
    assert!(declare(&c, &cx()).is_none(), "its owner switched it off");
    let c = container(
        "app-1",
        &[("com.docker.dockercloud.haproxy.deactivate", "false")],
        &env,
    );
    assert_eq!(ok(&c).routes.len(), 1);
    let c = container(
        "app-1",
        &[("com.docker.dockercloud.haproxy.deactivate", "maybe")],
        &env,
    );
    assert!(errors(&c)[0].contains("com.docker.dockercloud.haproxy.deactivate"));
}

#[test]
fn dockercloud_health_check_http_check_weight_and_exclude_ports_map_onto_tethers() {
    let mut c = container(
        "app-1",
        &[],
        &[
            ("VIRTUAL_HOST", "a.test"),
            ("EXCLUDE_PORTS", "22, 5432"),
            ("HEALTH_CHECK", "check inter 3s rise 1 fall 4"),
            ("HTTP_CHECK", "HEAD /healthz HTTP/1.1"),
            ("EXTRA_ROUTE_SETTINGS", "weight 20 backup"),
        ],
    );
    c.exposed_ports = vec![22, 8000, 5432];
    let d = ok(&c);
    let svc = &d.services[0];
    assert_eq!(svc.servers[0].addr.to_string(), "172.20.0.5:8000");
    assert_eq!(svc.servers[0].weight, 20);
    assert!(svc.servers[0].backup, "HAProxy's backup server option");
    let h = svc.health.as_ref().unwrap();
    assert_eq!(
        (h.path.as_str(), h.interval.as_secs(), h.rise, h.fall),
        ("/healthz", 3, 1, 4)
    );
    // HAProxy's `check` alone: a connect check with HAProxy's timings.
    let c = container(
        "app-1",
        &[],
        &[("SERVICE_PORTS", "8080"), ("HEALTH_CHECK", "check")],
    );
    let h = ok(&c).services[0].health.clone().unwrap();
    assert_eq!(
        (h.path.as_str(), h.interval.as_millis(), h.rise, h.fall),
        ("", 2000, 2, 3)
    );
    // A service's own GZIP_COMPRESSION_TYPE.
    let c = container(
        "app-1",
        &[],
        &[
            ("SERVICE_PORTS", "8080"),
            ("GZIP_COMPRESSION_TYPE", "text/html text/css"),
        ],
    );
    let d = ok(&c);
    assert_eq!(d.routes[0].middlewares, ["web-gzip@docker"]);
}

#[test]
fn dockercloud_failover_makes_the_servers_backups_and_marks_the_container() {
    let c = container(
        "spare-1",
        &[],
        &[("SERVICE_PORTS", "8080"), ("FAILOVER", "true")],
    );
    let d = ok(&c);
    assert!(d.failover);
    assert!(d.services[0].servers[0].backup);
    // As dockercloud reads it, an empty value is not set.
    let c = container("web-1", &[], &[("SERVICE_PORTS", "8080"), ("FAILOVER", "")]);
    let d = ok(&c);
    assert!(!d.failover);
    assert!(!d.services[0].servers[0].backup);
}

#[test]
fn dockercloud_options_tether_cannot_honour_are_refused_with_their_reason() {
    for (var, value, words) in [
        ("APPSESSION", "JSESSIONID len 52 timeout 3h", "COOKIE"),
        ("OPTION", "forwardfor", "configures HAProxy itself"),
        (
            "EXTRA_SETTINGS",
            "balance source",
            "configures HAProxy itself",
        ),
        ("DEFAULT_SSL_CERT", "x", "belongs on the proxy"),
        ("HTTP_CHECK", "OPTIONS * HTTP/1.1", "GET /path"),
        ("HEALTH_CHECK", "check port 9000", "\"port\": not supported"),
        (
            "EXTRA_ROUTE_SETTINGS",
            "backup maxconn 10",
            "\"maxconn\": not supported",
        ),
        ("EXCLUDE_PORTS", "http", "not a port number"),
    ] {
        let c = container("app-1", &[], &[("SERVICE_PORTS", "8080"), (var, value)]);
        let e = errors(&c);
        assert!(
            e.iter()
                .any(|e| e.contains(&format!("env {var}")) && e.contains(words)),
            "{var}={value}: {e:?}"
        );
    }
}

#[test]
fn traefik_v1_segments_are_each_a_route_and_a_service() {
    let c = container(
        "app.1",
        &[
            ("traefik.web.port", "8080"),
            ("traefik.web.frontend.rule", "Host:web.test"),
            ("traefik.admin.port", "9090"),
            (
                "traefik.admin.frontend.rule",
                "Host:admin.test;PathPrefix:/admin",
            ),
            ("traefik.admin.frontend.priority", "20"),
            ("traefik.backend.loadbalancer.stickiness", "true"),
        ],
        &[],
    );
    let d = ok(&c);
    assert_eq!(
        d.dialect,
        Dialect::TraefikV1,
        "read as v1, not v2's defaults"
    );
    let svc = |n: &str| d.services.iter().find(|s| s.name == n).unwrap();
    assert_eq!(
        svc("web-web@docker").servers[0].addr.to_string(),
        "172.20.0.5:8080"
    );
    assert_eq!(
        svc("web-admin@docker").servers[0].addr.to_string(),
        "172.20.0.5:9090"
    );
    assert!(
        svc("web-admin@docker").affinity.is_some(),
        "container-wide labels apply to each"
    );
    assert!(route_matches(&d, "web.test", "/"));
    assert!(route_matches(&d, "admin.test", "/admin/x"));
    assert!(!route_matches(&d, "admin.test", "/"));
    let admin = d
        .routes
        .iter()
        .find(|r| r.name == "web-admin@docker")
        .unwrap();
    assert_eq!(admin.priority, 20);
    // An error names the segment's own label.
    let c = container(
        "app.1",
        &[
            ("traefik.web.port", "8080"),
            ("traefik.web.frontend.rule", "Host:web.test"),
            ("traefik.admin.port", "9090"),
            ("traefik.admin.frontend.priority", "high"),
        ],
        &[],
    );
    let e = errors(&c);
    assert!(
        e.iter()
            .any(|e| e.contains("label traefik.admin.frontend.priority")),
        "{e:?}"
    );
}

#[test]
fn interlock_0x_data_fields_and_the_containers_own_host_and_domain() {
    // No hostname or domain in INTERLOCK_DATA: the container's own, as Interlock 0.x read them.
    let mut c = container("web_1", &[], &[("INTERLOCK_DATA", r#"{"port": 8080}"#)]);
    c.hostname = "demo".into();
    c.domainname = "interlock.com".into();
    let d = ok(&c);
    assert_eq!(d.services[0].name, "demo.interlock.com@docker");
    // Interlock's HAProxy checked every server (`check inter 5000`).
    let h = d.services[0].health.as_ref().unwrap();
    assert_eq!((h.path.as_str(), h.interval.as_millis()), ("", 5000));
    let c = container(
        "web_1",
        &[],
        &[(
            "INTERLOCK_DATA",
            r#"{"hostname":"demo","domain":"i.com","check":"httpchk GET /health","check_interval":2000,"balance_algorithm":"leastconn","ssl_only":true,"ssl_backend":true,"websocket_endpoints":["/ws"],"warm":true,"ssl":true}"#,
        )],
    );
    let d = ok(&c);
    let svc = &d.services[0];
    let h = svc.health.as_ref().unwrap();
    assert_eq!((h.path.as_str(), h.interval.as_millis()), ("/health", 2000));
    assert_eq!(svc.balance, BalanceAlgo::LeastRequests);
    let tls = svc.servers[0].tls.as_ref().expect("ssl_backend");
    assert!(
        tls.insecure_skip_verify,
        "Interlock's default: ssl_backend_tls_verify=none"
    );
    assert!(d.routes[0].redirect_https.is_some(), "ssl_only");
    // What cannot be honoured is refused, naming the field.
    for (data, field) in [
        (
            r#"{"hostname":"a","domain":"b.c","backend_options":["forceclose"]}"#,
            "backend_options: not supported",
        ),
        (
            r#"{"hostname":"a","domain":"b.c","check":"ssl-hello-chk"}"#,
            "check:",
        ),
        (
            r#"{"hostname":"a","domain":"b.c","colour":"red"}"#,
            "colour: unknown field",
        ),
        (r#"{"port": 80}"#, "domain: missing"),
    ] {
        let c = container("w", &[], &[("INTERLOCK_DATA", data)]);
        let e = errors(&c);
        assert!(e.iter().any(|e| e.contains(field)), "{data}: {e:?}");
    }
}

#[test]
fn interlock_1x_labels_route_by_host_or_context_root() {
    let c = container(
        "app.1",
        &[
            ("interlock.hostname", "app"),
            ("interlock.domain", "local"),
            ("interlock.port", "8080"),
            ("interlock.alias_domain.0", "www.app.local"),
            ("interlock.alias_domain.1", "app.example"),
            ("interlock.ssl_backend", "true"),
            ("interlock.ssl_backend_tls_verify", "required"),
            ("interlock.ip_hash", "true"),
            ("interlock.health_check", "httpchk /ping"),
            ("interlock.health_check_interval", "1500"),
            ("interlock.websocket_endpoint", "/ws"),
        ],
        &[],
    );
    let d = ok(&c);
    assert_eq!(d.dialect, Dialect::Interlock);
    for host in ["app.local", "www.app.local", "app.example"] {
        assert!(route_matches(&d, host, "/"), "{host}");
    }
    let svc = &d.services[0];
    assert_eq!(svc.balance, BalanceAlgo::ConsistentHash(HashOn::ClientIp));
    assert!(!svc.servers[0].tls.as_ref().unwrap().insecure_skip_verify);
    let h = svc.health.as_ref().unwrap();
    assert_eq!((h.path.as_str(), h.interval.as_millis()), ("/ping", 1500));
    // A context root instead of a host, its prefix taken off.
    let c = container(
        "app.1",
        &[
            ("interlock.context_root", "/myapp"),
            ("interlock.context_root_rewrite", "true"),
            ("interlock.port", "8080"),
        ],
        &[],
    );
    let d = ok(&c);
    assert!(route_matches(&d, "any.host", "/myapp/x"));
    assert!(!route_matches(&d, "any.host", "/other"));
    assert_eq!(d.routes[0].middlewares, ["web-context-root@docker"]);
    // Refused by name.
    for (key, value, says) in [
        (
            "interlock.backend_option.0",
            "forceclose",
            "configure HAProxy itself",
        ),
        ("interlock.colour", "red", "unknown label"),
        ("interlock.ssl_cert", "/etc/ssl/app.crt", "e.g. app.crt"),
    ] {
        let c = container(
            "app.1",
            &[
                ("interlock.hostname", "a"),
                ("interlock.domain", "b.c"),
                (key, value),
            ],
            &[],
        );
        let e = errors(&c);
        assert!(
            e.iter()
                .any(|e| e.contains(&format!("label {key}")) && e.contains(says)),
            "{key}: {e:?}"
        );
    }
}

#[test]
fn interlock_ext_name_scopes_which_containers_are_read() {
    let c = container(
        "app.1",
        &[
            ("interlock.hostname", "a"),
            ("interlock.domain", "b.c"),
            ("interlock.ext.name", "lb-2"),
        ],
        &[],
    );
    let mine = Context {
        interlock_ext_name: Some("lb-1"),
        ..cx()
    };
    assert!(declare(&c, &mine).is_none(), "another extension's");
    let theirs = Context {
        interlock_ext_name: Some("lb-2"),
        ..cx()
    };
    assert!(matches!(declare(&c, &theirs), Some(Ok(_))));
    assert!(
        matches!(declare(&c, &cx()), Some(Ok(_))),
        "no scope: every container"
    );
}

#[test]
fn docker_flow_proxy_routing_options_map_onto_tethers_rule_and_servers() {
    let c = container(
        "go-demo.1",
        &[
            ("com.df.notify", "true"),
            ("com.df.servicePath", "/demo"),
            ("com.df.servicePathExclude", "/demo/admin"),
            ("com.df.serviceHeader", "X-Version:3"),
            ("com.df.port", "8080"),
            ("com.df.sslVerifyNone", "true"),
            ("com.df.checkResolvers", "true"),
            ("com.df.outboundHostname", "internal.demo"),
        ],
        &[],
    );
    let d = ok(&c);
    let r = &d.routes[0];
    let m = http::Method::GET;
    let mut h = http::HeaderMap::new();
    let at = |path: &str, h: &http::HeaderMap| {
        r.rule.matches(&crate::rule::RequestView {
            host: "a",
            path,
            method: &m,
            headers: h,
            client: "10.0.0.1".parse().unwrap(),
        })
    };
    assert!(!at("/demo/x", &h), "serviceHeader: the header is needed");
    h.insert("x-version", "3".parse().unwrap());
    assert!(at("/demo/x", &h));
    assert!(!at("/demo/admin/x", &h), "servicePathExclude");
    let tls = d.services[0].servers[0]
        .tls
        .as_ref()
        .expect("sslVerifyNone: TLS");
    assert!(tls.insecure_skip_verify);
    assert_eq!(
        r.middlewares,
        ["web-headers@docker"],
        "outboundHostname: a Host rule"
    );
    // isDefaultBackend: everything no other route takes, at the lowest priority.
    let c = container(
        "fallback.1",
        &[
            ("com.df.notify", "true"),
            ("com.df.isDefaultBackend", "true"),
            ("com.df.port", "8080"),
        ],
        &[],
    );
    let d = ok(&c);
    assert_eq!(d.routes[0].priority, 1);
    assert!(route_matches(&d, "any.host", "/anything"));
    let c = container(
        "go-demo.1",
        &[
            ("com.df.notify", "true"),
            ("com.df.servicePath", "/demo"),
            ("com.df.port", "8080"),
            ("com.df.timeoutServer", "60"),
        ],
        &[],
    );
    assert!(errors(&c)
        .iter()
        .any(|e| e.contains("com.df.timeoutServer") && e.contains("[timeouts] server")));
}

#[test]
fn docker_flow_proxy_indexed_labels_are_destinations_of_their_own() {
    let c = container(
        "go-demo.1",
        &[
            ("com.df.notify", "true"),
            ("com.df.servicePath", "/demo"),
            ("com.df.port", "8080"),
            ("com.df.servicePath.1", "/admin"),
            ("com.df.port.1", "9090"),
            ("com.df.sessionType", "sticky-server"),
        ],
        &[],
    );
    let d = ok(&c);
    let svc = |n: &str| d.services.iter().find(|s| s.name == n).unwrap();
    assert_eq!(
        svc("web@docker").servers[0].addr.to_string(),
        "172.20.0.5:8080"
    );
    assert_eq!(
        svc("web-1@docker").servers[0].addr.to_string(),
        "172.20.0.5:9090"
    );
    assert!(
        svc("web-1@docker").affinity.is_some(),
        "the service's options apply to each"
    );
    assert!(route_matches(&d, "a", "/admin/x"));
    let c = container(
        "go-demo.1",
        &[
            ("com.df.notify", "true"),
            ("com.df.servicePath", "/demo"),
            ("com.df.port", "8080"),
            ("com.df.servicePath.1", "/admin"),
            ("com.df.port.1", "http"),
        ],
        &[],
    );
    let e = errors(&c);
    assert!(e.iter().any(|e| e.contains("label com.df.port.1")), "{e:?}");
}

#[test]
fn routers_ask_acme_resolvers_by_tethers_and_traefiks_labels() {
    let eps = (
        vec!["web".to_string(), "websecure".to_string()],
        vec!["websecure".to_string()],
    );
    let resolvers = vec!["le".to_string()];
    let cx = Context {
        entrypoints: &eps.0,
        tls_entrypoints: &eps.1,
        acme_resolvers: Some(&resolvers),
        ..Default::default()
    };
    let traefik = container(
        "shop",
        &[
            ("traefik.http.routers.shop.rule", "Host(`shop.example`)"),
            ("traefik.http.routers.shop.tls.certresolver", "le"),
            (
                "traefik.http.routers.shop.tls.domains[0].main",
                "shop.example",
            ),
            (
                "traefik.http.routers.shop.tls.domains[0].sans",
                "www.shop.example,cdn.shop.example",
            ),
            ("traefik.http.services.shop.loadbalancer.server.port", "80"),
        ],
        &[],
    );
    let d = match declare(&traefik, &cx) {
        Some(Ok(d)) => d,
        other => panic!("{other:?}"),
    };
    let tls = d.routes[0].tls.as_ref().unwrap();
    assert_eq!(tls.resolver.as_deref(), Some("le"));
    assert_eq!(
        tls.domains[0].names(),
        ["shop.example", "www.shop.example", "cdn.shop.example"]
    );
    // Traefik's tls implies the TLS entrypoints.
    assert_eq!(d.routes[0].entrypoints, ["websecure"]);
    let tether = container(
        "api",
        &[
            (
                "tether.http.routers.api.rule",
                "Host(`api.example`) || Host(`api2.example`)",
            ),
            ("tether.http.routers.api.tls.resolver", "le"),
            ("tether.http.services.api.port", "80"),
        ],
        &[],
    );
    let d = match declare(&tether, &cx) {
        Some(Ok(d)) => d,
        other => panic!("{other:?}"),
    };
    let tls = d.routes[0].tls.as_ref().unwrap();
    assert_eq!(tls.resolver.as_deref(), Some("le"));
    assert!(tls.domains.is_empty());
    // A route's own tls does not limit its entrypoints.
    assert!(d.routes[0].entrypoints.is_empty());
    let with_domains = container(
        "api",
        &[
            ("tether.http.routers.api.rule", "PathPrefix(`/`)"),
            ("tether.http.routers.api.tls.resolver", "le"),
            ("tether.http.routers.api.tls.domains[0].main", "api.example"),
            (
                "tether.http.routers.api.tls.domains[0].sans",
                "v1.api.example",
            ),
            ("tether.http.services.api.port", "80"),
        ],
        &[],
    );
    let d = match declare(&with_domains, &cx) {
        Some(Ok(d)) => d,
        other => panic!("{other:?}"),
    };
    let tls = d.routes[0].tls.as_ref().unwrap();
    assert_eq!(tls.domains[0].names(), ["api.example", "v1.api.example"]);
    // Refused, each at its label: an unknown resolver, no name, a wildcard, a domain with no main.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case<'_>; 4] = [
        (
            &[
                ("traefik.http.routers.r.rule", "Host(`a.example`)"),
                ("traefik.http.routers.r.tls.certresolver", "myresolver"),
            ],
            "traefik.http.routers.r.tls.certresolver",
            "no ACME resolver named \"myresolver\" (Tether's: le)",
        ),
        (
            &[
                ("tether.http.routers.r.rule", "PathPrefix(`/`)"),
                ("tether.http.routers.r.tls.resolver", "le"),
            ],
            "tether.http.routers.r.tls.resolver",
            "no name to order",
        ),
        (
            &[
                ("traefik.http.routers.r.rule", "PathPrefix(`/`)"),
                ("traefik.http.routers.r.tls.certresolver", "le"),
                ("traefik.http.routers.r.tls.domains[0].main", "*.a.example"),
            ],
            "traefik.http.routers.r.tls.certresolver",
            "\"*.a.example\": a wildcard certificate needs the DNS-01 challenge",
        ),
        (
            &[
                ("traefik.http.routers.r.rule", "Host(`a.example`)"),
                ("traefik.http.routers.r.tls.certresolver", "le"),
                ("traefik.http.routers.r.tls.domains[0].sans", "b.example"),
            ],
            "traefik.http.routers.r.tls.domains[0].sans",
            "no main name",
        ),
    ];
    for (labels, key, message) in cases {
        let c = container("r", labels, &[]);
        let all = match declare(&c, &cx) {
            Some(Err(e)) => e
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
            other => panic!("{labels:?}: {other:?}"),
        };
        assert!(all.contains(key) && all.contains(message), "{key}: {all}");
    }
}
