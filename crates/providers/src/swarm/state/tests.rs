use serde_json::json;

use super::*;

fn service(id: &str, name: &str, labels: serde_json::Value, env: &[&str]) -> Service {
    serde_json::from_value(json!({
        "ID": id,
        "Spec": {
            "Name": name,
            "Labels": labels,
            "TaskTemplate": { "ContainerSpec": {
                "Image": "sha256:abc",
                "Labels": { "traefik.port": "9999", "com.example": "kept" },
                "Env": env,
            } },
            "Mode": { "Replicated": { "Replicas": 2 } },
        },
    }))
    .unwrap()
}

fn task(id: &str, svc: &str, slot: u64, state: &str, desired: &str, ip: &str) -> Task {
    serde_json::from_value(json!({
        "ID": id, "ServiceID": svc, "Slot": slot, "NodeID": "node-1",
        "Status": { "State": state }, "DesiredState": desired,
        "NetworksAttachments": [
            { "Network": { "ID": "ing", "Spec": { "Name": "ingress", "Ingress": true } }, "Addresses": ["10.0.0.9/24"] },
            { "Network": { "ID": "w", "Spec": { "Name": "web" } }, "Addresses": [format!("{ip}/24")] },
        ],
    }))
    .unwrap()
}

fn tracker() -> Tracker {
    Tracker::new(Settings {
        entrypoints: vec!["web".into()],
        drain: Duration::from_secs(10),
        ..Default::default()
    })
}

fn traefik() -> serde_json::Value {
    json!({
        "traefik.port": "8000",
        "traefik.frontend.rule": "PathPrefix:/",
        "traefik.backend.loadbalancer.stickiness": "true",
    })
}

/// (server name, address, draining) of every server.
fn servers(o: &Outcome) -> Vec<(String, String, bool)> {
    o.update
        .services
        .iter()
        .flat_map(|s| s.servers.iter())
        .map(|s| (s.name.clone(), format!("{:?}", s.addr), s.draining))
        .collect()
}

#[test]
fn service_labels_declare_and_win_over_the_containers() {
    let mut t = tracker();
    let view = View {
        services: vec![service("s1", "shop_web", traefik(), &[])],
        tasks: vec![
            task("t1", "s1", 1, "running", "running", "10.0.1.3"),
            task("t2", "s1", 2, "running", "running", "10.0.1.4"),
        ],
        ..Default::default()
    };
    let o = t.translate(&view, Instant::now());
    assert!(o.update.errors.is_empty(), "{:?}", o.update.errors);
    assert_eq!(o.update.services.len(), 1);
    let s = &o.update.services[0];
    assert_eq!(s.name, "shop_web@swarm");
    assert!(s.affinity.is_some(), "stickiness from the service's labels");
    assert_eq!(
        servers(&o),
        [
            ("shop_web.1".into(), "Socket(10.0.1.3:8000)".into(), false),
            ("shop_web.2".into(), "Socket(10.0.1.4:8000)".into(), false),
        ],
        "the service's traefik.port (8000) wins over the container's (9999); never ingress"
    );
    assert_eq!(o.update.routes[0].service, "shop_web@swarm");
    assert_eq!(o.tasks, 2);
}

#[test]
fn a_task_on_its_way_out_drains_and_its_successor_inherits_the_slot() {
    let mut t = tracker();
    let now = Instant::now();
    let svc = service("s1", "web", traefik(), &[]);
    // Slot 2 is being replaced (start-first): the old task is shutting down, the new one runs.
    let view = View {
        services: vec![svc.clone()],
        tasks: vec![
            task("old2", "s1", 2, "running", "shutdown", "10.0.1.4"),
            task("new2", "s1", 2, "running", "running", "10.0.1.8"),
            task("t1", "s1", 1, "running", "running", "10.0.1.3"),
            task("gone", "s1", 3, "shutdown", "shutdown", "10.0.1.5"),
            task("starting", "s1", 3, "starting", "running", "10.0.1.6"),
        ],
        ..Default::default()
    };
    let o = t.translate(&view, now);
    assert_eq!(
        servers(&o),
        [
            ("web.1".into(), "Socket(10.0.1.3:8000)".into(), false),
            ("web.2".into(), "Socket(10.0.1.8:8000)".into(), false),
            ("web.2~old2".into(), "Socket(10.0.1.4:8000)".into(), true),
        ]
    );
    // Stop-first: the old task alone in its slot drains under the slot's name, so its pinned
    // sessions stay until the new task takes the name.
    let alone = View {
        tasks: vec![
            task("old2", "s1", 2, "running", "shutdown", "10.0.1.4"),
            task("t1", "s1", 1, "running", "running", "10.0.1.3"),
        ],
        ..view.clone()
    };
    let o = t.translate(&alone, now + Duration::from_secs(1));
    assert!(servers(&o).contains(&("web.2".into(), "Socket(10.0.1.4:8000)".into(), true)));
    // The drain period counts from when the task was first seen leaving.
    let o = t.translate(&alone, now + Duration::from_secs(11));
    assert_eq!(servers(&o).len(), 1, "{:?}", servers(&o));
}

#[test]
fn tasks_on_a_node_that_is_down_are_out() {
    let mut t = tracker();
    let mut view = View {
        services: vec![service("s1", "web", traefik(), &[])],
        tasks: vec![task("t1", "s1", 1, "running", "running", "10.0.1.3")],
        nodes: serde_json::from_value(json!([{ "ID": "node-1", "Status": { "State": "down" } }]))
            .unwrap(),
        ..Default::default()
    };
    // The service stays, with no server.
    assert!(servers(&t.translate(&view, Instant::now())).is_empty());
    view.nodes[0].status.state = "ready".into();
    assert_eq!(servers(&t.translate(&view, Instant::now())).len(), 1);
}

#[test]
fn the_dockercloud_environment_and_a_global_service_are_read() {
    let mut t = tracker();
    let mut svc = service(
        "s1",
        "stack_service1",
        json!({}),
        &[
            "SERVICE_PORTS=8080",
            "COOKIE=connect.sid prefix nocache",
            "VIRTUAL_HOST=*/service1",
        ],
    );
    svc.spec.task_template.container_spec.labels.clear();
    svc.spec.mode = serde_json::from_value(json!({ "Global": {} })).unwrap();
    let mut t1 = task("t1", "s1", 0, "running", "running", "10.0.1.3");
    t1.node_id = "nodeA".into();
    let view = View {
        services: vec![svc],
        tasks: vec![t1],
        ..Default::default()
    };
    let o = t.translate(&view, Instant::now());
    assert!(o.update.errors.is_empty(), "{:?}", o.update.errors);
    assert_eq!(servers(&o)[0].0, "stack_service1.nodeA");
    assert!(o.update.routes[0].rule_text.contains("/service1"));
}

#[test]
fn a_dockercloud_failover_service_backs_up_the_service_sharing_its_virtual_host() {
    let mut t = tracker();
    let env = |extra: &'static [&'static str]| {
        let mut e = vec!["SERVICE_PORTS=8080", "VIRTUAL_HOST=*/shop"];
        e.extend(extra);
        e
    };
    let mut shop = service("s1", "stack_shop", json!({}), &env(&[]));
    let mut spare = service("s2", "stack_spare", json!({}), &env(&["FAILOVER=true"]));
    for s in [&mut shop, &mut spare] {
        s.spec.task_template.container_spec.labels.clear();
    }
    let view = View {
        services: vec![shop, spare],
        tasks: vec![
            task("t1", "s1", 1, "running", "running", "10.0.1.3"),
            task("t2", "s2", 1, "running", "running", "10.0.1.4"),
        ],
        ..Default::default()
    };
    let o = t.translate(&view, Instant::now());
    assert!(o.update.errors.is_empty(), "{:?}", o.update.errors);
    let routes: Vec<&str> = o.update.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(routes, ["stack_shop@swarm"]);
    assert_eq!(o.update.services.len(), 1);
    let servers: Vec<(&str, bool)> = o.update.services[0]
        .servers
        .iter()
        .map(|s| (s.name.as_str(), s.backup))
        .collect();
    assert_eq!(servers, [("stack_shop.1", false), ("stack_spare.1", true)]);
}

#[test]
fn every_reason_for_nothing_is_said() {
    let mut t = Tracker::new(Settings {
        entrypoints: vec!["web".into()],
        own_networks: vec!["proxy".into()],
        drain: Duration::from_secs(1),
        ..Default::default()
    });
    let mut bare = service("s2", "plain", json!({}), &[]);
    bare.spec.task_template.container_spec.labels.clear();
    let view = View {
        services: vec![
            service("s1", "web", traefik(), &[]),
            bare,
            service(
                "s3",
                "idle",
                json!({ "tether.http.services.idle.port": "80" }),
                &[],
            ),
            service(
                "s4",
                "odd",
                json!({ "tether.swarm.endpoint": "anycast", "traefik.port": "80" }),
                &[],
            ),
        ],
        tasks: vec![
            task("t1", "s1", 1, "running", "running", "10.0.1.3"),
            task("t2", "s2", 1, "running", "running", "10.0.1.4"),
        ],
        ..Default::default()
    };
    let o = t.translate(&view, Instant::now());
    // Only the service with no task is declared: with its route, and no server.
    let names: Vec<(&str, usize)> = o
        .update
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.servers.len()))
        .collect();
    assert_eq!(names, [("idle@swarm", 0)]);
    let all = [o.update.errors.clone(), o.notes.clone()]
        .concat()
        .join("\n");
    assert!(
        all.contains("shares no network with Tether") && all.contains("(service web)"),
        "{all}"
    );
    assert!(all.contains("service plain: no routing labels"), "{all}");
    assert!(all.contains("service idle: has routing labels"), "{all}");
    assert!(all.contains("no task running (0 of 2 replicas)"), "{all}");
    assert!(
        all.contains("tether.swarm.endpoint=\"anycast\": expected tasks or vip"),
        "{all}"
    );
}

#[test]
fn a_named_network_and_the_vip_endpoint() {
    let mut t = tracker();
    let mut labels = traefik();
    labels["tether.swarm.network"] = json!("other");
    let mut named = service("s1", "web", labels, &[]);
    named.id = "s1".into();
    let view = View {
        services: vec![named],
        tasks: vec![task("t1", "s1", 1, "running", "running", "10.0.1.3")],
        ..Default::default()
    };
    let o = t.translate(&view, Instant::now());
    assert!(o.update.services.is_empty());
    assert!(
        o.update
            .errors
            .iter()
            .any(|e| e.contains("no network address")),
        "only the named network is used: {:?}",
        o.update.errors
    );
    let mut labels = traefik();
    labels["tether.swarm.endpoint"] = json!("vip");
    let mut vip = service("s1", "web", labels, &[]);
    vip.endpoint = serde_json::from_value(json!({
        "VirtualIPs": [{ "NetworkID": "w", "Addr": "10.0.1.2/24" }, { "NetworkID": "ing", "Addr": "10.0.0.2/24" }]
    }))
    .unwrap();
    let view = View {
        services: vec![vip],
        tasks: vec![task("t1", "s1", 1, "running", "running", "10.0.1.3")],
        networks: serde_json::from_value(json!([
            { "Id": "w", "Name": "web" }, { "Id": "ing", "Name": "ingress" }
        ]))
        .unwrap(),
        ..Default::default()
    };
    let o = t.translate(&view, Instant::now());
    assert_eq!(
        servers(&o),
        [("web".into(), "Socket(10.0.1.2:8000)".into(), false)]
    );
}

#[test]
fn docker_flow_proxy_labels_on_a_service_and_a_port_that_cannot_be_found() {
    let mut t = tracker();
    let mut flow = service(
        "s1",
        "go-demo",
        json!({ "com.df.notify": "true", "com.df.servicePath": "/demo", "com.df.port": "8080" }),
        &[],
    );
    flow.spec.task_template.container_spec.labels.clear();
    let mut portless = service(
        "s2",
        "api",
        json!({ "traefik.frontend.rule": "PathPrefix:/api" }),
        &[],
    );
    portless.spec.task_template.container_spec.labels.clear();
    let view = View {
        services: vec![flow, portless],
        tasks: vec![
            task("t1", "s1", 1, "running", "running", "10.0.1.3"),
            task("t2", "s2", 1, "running", "running", "10.0.1.4"),
        ],
        ..Default::default()
    };
    let o = t.translate(&view, Instant::now());
    assert_eq!(o.update.services.len(), 1, "{:?}", o.update.errors);
    assert!(o.update.routes[0].rule_text.contains("/demo"));
    assert_eq!(o.update.errors.len(), 1, "{:?}", o.update.errors);
    assert!(
        o.update.errors[0].contains("exposes no port")
            && o.update.errors[0].contains("(service api)"),
        "{:?}",
        o.update.errors
    );
}

#[test]
fn a_service_whose_every_task_stops_keeps_its_route_with_no_server() {
    let mut t = tracker();
    let svc = service(
        "s1",
        "stack_service1",
        json!({}),
        &["SERVICE_PORTS=8080", "VIRTUAL_HOST=*/service1"],
    );
    let running = View {
        services: vec![svc.clone()],
        tasks: vec![
            task("t1", "s1", 1, "running", "running", "10.0.1.3"),
            task("t2", "s1", 2, "running", "running", "10.0.1.4"),
        ],
        ..Default::default()
    };
    let before = t.translate(&running, Instant::now());
    assert_eq!(servers(&before).len(), 2);
    // The seed's update_config (stop-first, parallelism 5): both old tasks stop before a new one
    // runs.
    let stopping = View {
        services: vec![svc.clone()],
        tasks: vec![
            task("t1", "s1", 1, "shutdown", "shutdown", "10.0.1.3"),
            task("t2", "s1", 2, "shutdown", "shutdown", "10.0.1.4"),
            task("t3", "s1", 1, "preparing", "running", "10.0.1.5"),
        ],
        ..Default::default()
    };
    let during = t.translate(&stopping, Instant::now());
    assert!(
        during.update.errors.is_empty(),
        "{:?}",
        during.update.errors
    );
    assert_eq!(during.update.services.len(), 1);
    assert!(servers(&during).is_empty(), "{:?}", servers(&during));
    assert_eq!(
        during
            .update
            .routes
            .iter()
            .map(|r| (&r.name, &r.service))
            .collect::<Vec<_>>(),
        before
            .update
            .routes
            .iter()
            .map(|r| (&r.name, &r.service))
            .collect::<Vec<_>>(),
        "the same routes, to the same service"
    );
    assert!(
        during.notes.iter().any(|n| n.contains("its routes stay")),
        "{:?}",
        during.notes
    );
}

#[test]
fn a_network_label_tether_is_not_on_leaves_the_service_out_with_an_error() {
    // The second seed: traefik.docker.network=web names the tasks' network, which Tether's
    // container is not attached to.
    let mut labels = traefik();
    labels["traefik.docker.network"] = json!("web");
    let mut t = Tracker::new(Settings {
        entrypoints: vec!["web".into()],
        own_networks: vec!["proxy".into()],
        drain: Duration::from_secs(1),
        ..Default::default()
    });
    let view = View {
        services: vec![service("s1", "whoami", labels.clone(), &[])],
        tasks: vec![task("t1", "s1", 1, "running", "running", "10.0.1.3")],
        ..Default::default()
    };
    let o = t.translate(&view, Instant::now());
    assert!(servers(&o).is_empty(), "{:?}", servers(&o));
    let all = o.update.errors.join("\n");
    assert!(
        all.contains("traefik.docker.network")
            && all.contains("not attached to network web")
            && all.contains("Tether is on proxy")
            && all.contains("(service whoami)"),
        "{all}"
    );
    // On the host, an overlay is out of reach too.
    let mut t = Tracker::new(Settings {
        entrypoints: vec!["web".into()],
        host_networks: Some(vec!["bridge".into()]),
        drain: Duration::from_secs(1),
        ..Default::default()
    });
    let o = t.translate(&view, Instant::now());
    assert!(servers(&o).is_empty());
    assert!(
        o.update
            .errors
            .join("\n")
            .contains("network web is not reachable from the host"),
        "{:?}",
        o.update.errors
    );
}
