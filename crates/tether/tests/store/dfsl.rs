//! Docker Flow Swarm Listener's calls, replayed as it builds them (its `service/parameters.go`:
//! every `com.df.*` label without its prefix, `serviceName`, `replicas` for a replicated
//! service, `distribute=true` unless labelled, `nodeInfo`; a stack prefix stripped under
//! `com.df.shortName=true`), against three replicas on one etcd. DFSL sends no bearer token:
//! replica a admits its network (`--dfp-compat-allow`), b and c take the token as the password of
//! the notify URL (`http://dfsl:TOKEN@proxy:8080/...`), as Go's client sends it.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use tether_testkit::etcd::Etcd;
use tether_testkit::{Admin, Backend, Client};

use crate::support::{Replica, TOKEN};

/// A Swarm service as DFSL sees it.
struct Service<'a> {
    name: &'a str,
    labels: &'a [(&'a str, &'a str)],
    /// `None` for a global service.
    replicas: Option<u64>,
    node_info: Option<&'a str>,
}

/// The query of DFSL's create notification for `s`.
fn create(s: &Service<'_>) -> String {
    let mut params: BTreeMap<String, String> = s
        .labels
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("com.df.")?.to_string(), v.to_string())))
        .filter(|(k, _)| !k.is_empty())
        .collect();
    params.insert("serviceName".into(), service_name(s));
    if let Some(n) = s.replicas {
        params.insert("replicas".into(), n.to_string());
    }
    params
        .entry("distribute".into())
        .or_insert_with(|| "true".into());
    if let Some(info) = s.node_info {
        params.insert("nodeInfo".into(), info.into());
    }
    query(&params)
}

/// The query of DFSL's remove notification for `s`.
fn remove(s: &Service<'_>) -> String {
    let mut params = BTreeMap::from([("serviceName".to_string(), service_name(s))]);
    let distribute = s
        .labels
        .iter()
        .find(|(k, _)| *k == "com.df.distribute")
        .map_or("true", |(_, v)| *v);
    params.insert("distribute".into(), distribute.into());
    query(&params)
}

/// The stack prefix goes when the service is labelled `com.df.shortName=true`.
fn service_name(s: &Service<'_>) -> String {
    let label = |k: &str| s.labels.iter().find(|(l, _)| *l == k).map(|(_, v)| *v);
    match (
        label("com.docker.stack.namespace"),
        label("com.df.shortName"),
    ) {
        (Some(stack), Some(short)) if short.eq_ignore_ascii_case("true") => s
            .name
            .strip_prefix(&format!("{stack}_"))
            .unwrap_or(s.name)
            .to_string(),
        _ => s.name.to_string(),
    }
}

/// `k=v&...`, each percent-encoded as Go's `url.Values.Encode` does.
fn query(params: &BTreeMap<String, String>) -> String {
    let enc = |t: &str| {
        t.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_string(),
                b => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// DFSL's GET to `path?query` on `r`: through the allowed network on replica a, with the token
/// as the notify URL's password elsewhere.
async fn notify(r: &Replica, path: &str, query: &str) -> (u16, String) {
    let mut admin = Admin::new(r.admin, None);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("dfsl:{TOKEN}"))
    );
    let headers: Vec<(&str, &str)> = if r.name == "a" {
        Vec::new()
    } else {
        vec![("authorization", basic.as_str())]
    };
    let reply = admin
        .call(
            http::Method::GET,
            &format!("/v1/docker-flow-proxy/{path}?{query}"),
            None,
            &headers,
        )
        .await;
    (reply.status.as_u16(), reply.body)
}

/// Wait until every replica lists route `name` (or no longer does).
async fn listed_everywhere(replicas: &[Replica], name: &str, listed: bool) {
    for r in replicas {
        tether_testkit::wait_for(
            &format!("{}: route {name} listed = {listed}", r.name),
            Duration::from_secs(5),
            || async {
                let routes = r.api().get("/api/routes").await.json();
                let has = routes
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x["name"] == name));
                has == listed
            },
        )
        .await;
    }
}

#[tokio::test]
async fn docker_flow_swarm_listeners_calls_are_all_200_and_served_by_every_replica() {
    let Some(etcd) = Etcd::start("DFSL replay").await else {
        return;
    };
    let store = format!("etcd://{}/dfsl", etcd.endpoint());
    let replicas = [
        Replica::start_args("a", &store, &["--dfp-compat-allow", "127.0.0.0/8"]),
        Replica::start("b", &store),
        Replica::start("c", &store),
    ];
    let go_demo = Backend::spawn("go-demo").await;
    let port = go_demo.addr.port().to_string();
    // The seed's service, replicated, with a Docker Flow Monitor alert beside its proxy labels.
    let replicated = Service {
        name: "localhost",
        labels: &[
            ("com.df.notify", "true"),
            ("com.df.servicePath", "/demo"),
            ("com.df.port", &port),
            ("com.df.alertName", "memlimit"),
            ("com.df.alertIf", "@service_mem_limit:0.8"),
            ("com.df.alertName.2", "replicas"),
            ("com.df.scrapePort", "9100"),
        ],
        replicas: Some(3),
        node_info: Some(r#"[["node-1","10.0.0.5"],["node-2","10.0.0.6"]]"#),
    };
    let global = Service {
        name: "exporter",
        labels: &[
            ("com.df.notify", "true"),
            ("com.df.servicePath", "/metrics-exporter"),
            ("com.df.port", "9100"),
            ("com.df.distribute", "false"),
        ],
        replicas: None,
        node_info: None,
    };
    let stack = Service {
        name: "shop_web",
        labels: &[
            ("com.docker.stack.namespace", "shop"),
            ("com.df.notify", "true"),
            ("com.df.shortName", "true"),
            ("com.df.serviceDomain", "shop.example.com"),
            ("com.df.port", "8000"),
        ],
        replicas: Some(2),
        node_info: None,
    };
    for (i, s) in [&replicated, &global, &stack].into_iter().enumerate() {
        let r = &replicas[i];
        let (status, body) = notify(r, "reconfigure", &create(s)).await;
        assert_eq!(status, 200, "{} through {}: {body}", s.name, r.name);
    }
    for name in ["localhost", "exporter", "web"] {
        listed_everywhere(&replicas, name, true).await;
    }
    for r in &replicas {
        let reply = Client::new(r.web).get("/demo/hello").await.unwrap();
        assert_eq!(reply.status, 200, "{}", r.name);
        assert_eq!(reply.server(), "go-demo", "{}", r.name);
    }
    // A node notification (sent where the node URLs point at the proxy) is acknowledged.
    let node = "id=n1&hostname=node-1&address=10.0.0.5&versionIndex=7&state=ready&role=worker&availability=active";
    let (status, body) = notify(&replicas[1], "reconfigure", node).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("node notification"), "{body}");
    // An option no consumer of DFSL reads is still refused, by name.
    let (status, body) = notify(
        &replicas[2],
        "reconfigure",
        "serviceName=x&port=1&servicePath=/x&aclName=05-x",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("aclName"), "{body}");

    // Removal, as DFSL sends it, through another replica than the one that declared it.
    let (status, body) = notify(&replicas[1], "remove", &remove(&stack)).await;
    assert_eq!(status, 200, "{body}");
    listed_everywhere(&replicas, "web", false).await;
    let (status, body) = notify(&replicas[0], "remove", &remove(&global)).await;
    assert_eq!(status, 200, "{body}");
    listed_everywhere(&replicas, "exporter", false).await;

    // DFP's other endpoints: ping, reload (nothing to do) and the configuration served.
    for path in ["ping", "reload?recreate=true&fromListener=false"] {
        let (status, body) = notify(
            &replicas[2],
            path.split('?').next().unwrap(),
            path.split_once('?').map_or("", |p| p.1),
        )
        .await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, body) = notify(&replicas[2], "config", "type=toml").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("[routes.localhost]"), "{body}");
    let parsed: toml::Table = body.parse().unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(
        parsed["routes"]["localhost"]["rule"].as_str(),
        Some("PathPrefix(`/demo`)")
    );
    let (status, body) = notify(&replicas[2], "config", "").await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["routes"][0]["name"], "localhost", "{json}");
    assert!(!body.contains(TOKEN), "the token is never shown");
    // Without the token or the allowed network: refused.
    let mut stranger = Admin::new(replicas[1].admin, None);
    let r = stranger
        .get(&format!(
            "/v1/docker-flow-proxy/reconfigure?{}",
            create(&replicated)
        ))
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
}
