//! Each seed's own way of labelling containers, routed as that seed expects.

use std::time::Duration;

use tether_testkit::docker::{Container, Engine};

use crate::support::{labels, setup, strs, wait_for_servers};

const FAST: Duration = Duration::from_secs(10);

/// Two replicas of one group (as Compose would label them), with extra `docker run` arguments.
async fn pair(engine: &Engine, group: &str, args: &[String], port: &str) -> (Container, Container) {
    let mut all = args.to_vec();
    all.extend([
        "--label".into(),
        format!("com.docker.compose.service={group}"),
    ]);
    let start = |i: u32| {
        let name = format!("{}-{group}-{i}", engine.run);
        let all = all.clone();
        async move {
            engine
                .run(
                    &format!("{group}-{i}"),
                    &strs(&all),
                    &[
                        "whoami",
                        "--name",
                        &name,
                        "--listen",
                        &format!("0.0.0.0:{port}"),
                    ],
                )
                .await
        }
    };
    (start(1).await, start(2).await)
}

fn env(pairs: &[(&str, &str)]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|(k, v)| ["--env".to_string(), format!("{k}={v}")])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockercloud_haproxy_seed_service1_sticky_by_prefix_service2_round_robin() {
    let Some((engine, net, tether)) = setup("dockercloud", Duration::from_secs(2)).await else {
        return;
    };
    let mut s1 = labels(&engine, &net, &[]);
    s1.extend(env(&[
        ("SERVICE_PORTS", "8080"),
        ("COOKIE", "connect.sid prefix nocache"),
        ("VIRTUAL_HOST", "*/service1"),
    ]));
    let (a1, a2) = pair(&engine, "service1", &s1, "8080").await;
    let mut s2 = labels(&engine, &net, &[]);
    s2.extend(env(&[
        ("SERVICE_PORTS", "8080"),
        ("VIRTUAL_HOST", "*/service2"),
    ]));
    let (b1, b2) = pair(&engine, "service2", &s2, "8080").await;
    wait_for_servers(
        &mut tether.anonymous("localhost"),
        "/service1",
        &[&a1.name, &a2.name],
        FAST,
    )
    .await;
    wait_for_servers(
        &mut tether.anonymous("localhost"),
        "/service2",
        &[&b1.name, &b2.name],
        FAST,
    )
    .await;

    // service1: the counter grows on one replica; the app sees only its own connect.sid.
    let mut browser = tether.client("localhost");
    let first = browser.get("/service1").await.unwrap();
    assert!(
        first.headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("no-cache"),
        "nocache"
    );
    let held = browser.jar["connect.sid"].clone();
    assert!(held.contains('~'), "prefix mode: {held}");
    for visit in 2..=6 {
        let r = browser.get("/service1?format=json").await.unwrap();
        assert_eq!(r.server(), first.server());
        let j = r.json();
        assert_eq!(j["visits"], visit);
        let cookie = j["headers"]["cookie"].as_str().unwrap();
        assert!(
            !cookie.contains('~'),
            "the app saw Tether's prefix: {cookie}"
        );
    }
    // service2: a new replica each time for a client without cookies.
    let mut anon = tether.anonymous("localhost");
    let (x, y) = (
        anon.get("/service2").await.unwrap(),
        anon.get("/service2").await.unwrap(),
    );
    assert_ne!(x.server(), y.server());
    assert_eq!(anon.get("/other").await.unwrap().status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_v1_seed_sticky_on_the_named_network_without_revealing_addresses() {
    let Some((engine, front, tether)) = setup("traefik-v1", Duration::from_secs(2)).await else {
        return;
    };
    let whoaminet = engine.network("whoaminet").await;
    let args = labels(
        &engine,
        &front,
        &[
            "traefik.port=8000".into(),
            "traefik.frontend.rule=PathPrefix:/".into(),
            "traefik.backend.loadbalancer.stickiness=true".into(),
            format!("traefik.docker.network={whoaminet}"),
        ],
    );
    let (a, b) = pair(&engine, "whoami-service", &args, "8000").await;
    for c in [&a, &b] {
        engine
            .docker(&["network", "connect", &whoaminet, &c.id])
            .await
            .unwrap();
    }
    let mut anon = tether.anonymous(&format!("x.{}", engine.run));
    wait_for_servers(&mut anon, "/", &[&a.name, &b.name], FAST).await;
    let servers = tether.servers("whoami-service@docker");
    assert_eq!(
        servers[&a.name],
        format!("{}:8000", engine.ip(&a, &whoaminet).await)
    );
    assert_eq!(
        servers[&b.name],
        format!("{}:8000", engine.ip(&b, &whoaminet).await)
    );

    let mut browser = tether.client("any");
    let first = browser.get("/").await.unwrap();
    let set = first.set_cookies().join(" | ");
    let value = browser.jar["tether_whoami-service"].clone();
    assert!(
        !value.contains(':') && !value.contains("http") && !value.contains('.'),
        "cookie reveals an address: {set}"
    );
    for _ in 0..5 {
        assert_eq!(browser.get("/").await.unwrap().server(), first.server());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_v2_router_rule_service_port_and_sticky_cookie_attributes() {
    let Some((engine, net, tether)) = setup("traefik-v2", Duration::from_secs(2)).await else {
        return;
    };
    let host = format!("who.{}", engine.run);
    let args = labels(
        &engine,
        &net,
        &[
            "traefik.enable=true".into(),
            format!("traefik.http.routers.who.rule=Host(`{host}`)"),
            "traefik.http.services.who.loadbalancer.server.port=8000".into(),
            "traefik.http.services.who.loadbalancer.sticky.cookie.name=who_sticky".into(),
            "traefik.http.services.who.loadbalancer.sticky.cookie.secure=true".into(),
            "traefik.http.services.who.loadbalancer.sticky.cookie.httpOnly=true".into(),
            "traefik.http.services.who.loadbalancer.sticky.cookie.sameSite=strict".into(),
        ],
    );
    let (a, b) = pair(&engine, "whoami", &args, "8000").await;
    wait_for_servers(&mut tether.anonymous(&host), "/", &[&a.name, &b.name], FAST).await;
    let mut browser = tether.client(&host);
    let first = browser.get("/").await.unwrap();
    let set = first
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("who_sticky="))
        .expect("sticky cookie");
    for attr in ["Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(set.contains(attr), "{attr} missing in {set}");
    }
    for _ in 0..5 {
        assert_eq!(browser.get("/").await.unwrap().server(), first.server());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interlock_data_routes_the_host_and_its_alias_to_every_replica() {
    let Some((engine, net, tether)) = setup("interlock", Duration::from_secs(2)).await else {
        return;
    };
    let domain = format!("{}.interlock.com", engine.run);
    let data = format!(
        r#"{{"hostname":"demo","domain":"{domain}","port":5000,"alias_domains":["www.{domain}"]}}"#
    );
    let mut args = labels(&engine, &net, &[]);
    args.extend(env(&[("INTERLOCK_DATA", &data)]));
    let (a, b) = pair(&engine, "web", &args, "5000").await;
    wait_for_servers(
        &mut tether.anonymous(&format!("demo.{domain}")),
        "/",
        &[&a.name, &b.name],
        FAST,
    )
    .await;
    wait_for_servers(
        &mut tether.anonymous(&format!("www.{domain}")),
        "/",
        &[&a.name, &b.name],
        FAST,
    )
    .await;
    assert_eq!(
        tether.anonymous("other.com").get("/").await.unwrap().status,
        404
    );
    // Scaled up, the new replica joins the same host.
    let c = engine
        .run(
            "web-3",
            &strs(&args),
            &[
                "whoami",
                "--name",
                &format!("{}-web-3", engine.run),
                "--listen",
                "0.0.0.0:5000",
            ],
        )
        .await;
    wait_for_servers(
        &mut tether.anonymous(&format!("demo.{domain}")),
        "/",
        &[&c.name],
        FAST,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_flow_proxy_labels_route_the_path_and_domain_with_sticky_sessions() {
    let Some((engine, net, tether)) = setup("docker-flow", Duration::from_secs(2)).await else {
        return;
    };
    let domain = format!("go.{}", engine.run);
    let args = labels(
        &engine,
        &net,
        &[
            "com.df.notify=true".into(),
            "com.df.serviceName=go-demo".into(),
            "com.df.servicePath=/demo".into(),
            format!("com.df.serviceDomain={domain}"),
            "com.df.port=8080".into(),
            "com.df.sessionType=sticky-server".into(),
        ],
    );
    let (a, b) = pair(&engine, "go-demo", &args, "8080").await;
    wait_for_servers(
        &mut tether.anonymous(&domain),
        "/demo/hello",
        &[&a.name, &b.name],
        FAST,
    )
    .await;
    assert_eq!(
        tether
            .anonymous(&domain)
            .get("/elsewhere")
            .await
            .unwrap()
            .status,
        404
    );
    let mut browser = tether.client(&domain);
    let first = browser.get("/demo/x").await.unwrap();
    for _ in 0..5 {
        assert_eq!(
            browser.get("/demo/x").await.unwrap().server(),
            first.server()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockercloud_health_check_takes_a_dead_port_out_and_deactivate_leaves_a_service_out() {
    let Some((engine, net, tether)) = setup("dockercloud-health", Duration::from_secs(2)).await
    else {
        return;
    };
    // Two replicas; the second listens on another port than SERVICE_PORTS names, so only
    // HAProxy's `check` (a connect) can tell.
    let mut args = labels(&engine, &net, &[]);
    args.extend(env(&[
        ("SERVICE_PORTS", "8080"),
        ("VIRTUAL_HOST", "*/hc"),
        ("HEALTH_CHECK", "check inter 200 rise 1 fall 1"),
    ]));
    args.extend([
        "--label".into(),
        "com.docker.compose.service=hc".to_string(),
    ]);
    let live = engine
        .run(
            "hc-1",
            &strs(&args),
            &["whoami", "--name", "hc-live", "--listen", "0.0.0.0:8080"],
        )
        .await;
    let dead = engine
        .run(
            "hc-2",
            &strs(&args),
            &["whoami", "--name", "hc-dead", "--listen", "0.0.0.0:8081"],
        )
        .await;
    crate::support::wait_state("both servers declared", FAST, || {
        tether.servers("hc@docker").len() == 2
    })
    .await;
    crate::support::wait_state("the dead port checked out", FAST, || {
        !tether.takes_new("hc@docker", &dead.name) && tether.takes_new("hc@docker", &live.name)
    })
    .await;
    let mut c = tether.anonymous("localhost");
    for _ in 0..10 {
        let r = c.get("/hc").await.unwrap();
        assert_eq!(r.status, 200, "only the live replica is sent requests");
        assert_eq!(r.server(), "hc-live");
    }

    // Switched off by its owner: not routed, and no error.
    let mut off = labels(
        &engine,
        &net,
        &["com.docker.dockercloud.haproxy.deactivate=true".to_string()],
    );
    off.extend(env(&[("SERVICE_PORTS", "8080"), ("VIRTUAL_HOST", "*/off")]));
    let (_o1, _o2) = pair(&engine, "off", &off, "8080").await;
    let mut on = labels(&engine, &net, &[]);
    on.extend(env(&[("SERVICE_PORTS", "8080"), ("VIRTUAL_HOST", "*/on")]));
    let (n1, n2) = pair(&engine, "on", &on, "8080").await;
    wait_for_servers(&mut c, "/on", &[&n1.name, &n2.name], FAST).await;
    assert_eq!(c.get("/off").await.unwrap().status, 404);
    assert!(tether.servers("off@docker").is_empty());
    assert!(tether.errors().is_empty(), "{:?}", tether.errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockercloud_failover_takes_requests_only_while_the_service_it_backs_up_has_none() {
    let Some((engine, net, tether)) = setup("dockercloud-failover", Duration::from_secs(1)).await
    else {
        return;
    };
    let mut shop = labels(&engine, &net, &[]);
    shop.extend(env(&[
        ("SERVICE_PORTS", "8080"),
        ("VIRTUAL_HOST", "*/shop"),
    ]));
    let (s1, s2) = pair(&engine, "shop", &shop, "8080").await;
    // The same VIRTUAL_HOST, with FAILOVER: its servers are the shop's backups.
    let mut args = labels(
        &engine,
        &net,
        &["com.docker.compose.service=spare".to_string()],
    );
    args.extend(env(&[
        ("SERVICE_PORTS", "8080"),
        ("VIRTUAL_HOST", "*/shop"),
        ("FAILOVER", "true"),
    ]));
    let spare = engine.whoami("spare-1", &strs(&args)).await;
    crate::support::wait_state("the spare folded into the shop", FAST, || {
        tether.servers("shop@docker").len() == 3
    })
    .await;
    assert!(
        tether.servers("spare@docker").is_empty(),
        "no service of its own"
    );
    let mut c = tether.anonymous("localhost");
    wait_for_servers(&mut c, "/shop", &[&s1.name, &s2.name], FAST).await;
    for _ in 0..20 {
        let r = c.get("/shop").await.unwrap();
        assert_eq!(r.status, 200);
        assert_ne!(
            r.server(),
            spare.name,
            "a backup while the shop has servers"
        );
    }
    // Both shop replicas stop: the route stays, and the spare takes its requests.
    for s in [&s1, &s2] {
        engine.docker(&["stop", "-t", "1", &s.name]).await.unwrap();
    }
    wait_for_servers(&mut c, "/shop", &[&spare.name], FAST).await;
    for _ in 0..10 {
        assert_eq!(c.get("/shop").await.unwrap().server(), spare.name);
    }
    // One comes back: the spare is a backup again.
    engine.docker(&["start", &s1.name]).await.unwrap();
    wait_for_servers(&mut c, "/shop", &[&s1.name], FAST).await;
    for _ in 0..10 {
        assert_eq!(c.get("/shop").await.unwrap().server(), s1.name);
    }
    assert!(tether.errors().is_empty(), "{:?}", tether.errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interlock_names_a_site_by_the_containers_own_hostname_and_reads_1x_labels() {
    let Some((engine, net, tether)) = setup("interlock-1x", Duration::from_secs(2)).await else {
        return;
    };
    // Interlock 0.x: `docker run --hostname demo --domainname ...` names the site.
    let domain = format!("{}.interlock.local", engine.run);
    let mut args = labels(&engine, &net, &[]);
    args.extend(env(&[("INTERLOCK_DATA", r#"{"port": 5000}"#)]));
    args.extend([
        "--hostname".into(),
        "demo".into(),
        "--domainname".into(),
        domain.clone(),
    ]);
    let (a, b) = pair(&engine, "site", &args, "5000").await;
    wait_for_servers(
        &mut tether.anonymous(&format!("demo.{domain}")),
        "/",
        &[&a.name, &b.name],
        FAST,
    )
    .await;
    // Interlock 1.x labels: a context root, taken off before the request is sent.
    let app = labels(
        &engine,
        &net,
        &[
            "interlock.context_root=/myapp".to_string(),
            "interlock.context_root_rewrite=true".to_string(),
            "interlock.port=5000".to_string(),
        ],
    );
    let (x, y) = pair(&engine, "app", &app, "5000").await;
    let mut c = tether.anonymous("anything.test");
    wait_for_servers(&mut c, "/myapp/hello", &[&x.name, &y.name], FAST).await;
    let r = c.get("/myapp/hello?format=json").await.unwrap();
    assert_eq!(
        r.json()["uri"],
        "/hello?format=json",
        "the context root is taken off"
    );
    assert!(tether.errors().is_empty(), "{:?}", tether.errors());
}
