//! A middleware for every replica: put through one replica's admin API into etcd, it guards the
//! route on all three, each from its own watch; deleted (with its route), it is gone from all.

use std::time::Duration;

use serde_json::json;
use tether_testkit::etcd::Etcd;
use tether_testkit::{Backend, Client};

use crate::support::{put_app, Replica};

/// Wait until a GET of `/` on `r` answers `want`.
async fn answers(r: &Replica, want: u16, auth: Option<&str>) {
    let what = format!("{} answering {want}", r.name);
    tether_testkit::wait_for_value(&what, Duration::from_secs(5), || async {
        let mut req = http::Request::get("/");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let got = Client::new(r.web)
            .send(req.body(Default::default()).unwrap())
            .await
            .map(|reply| reply.status.as_u16());
        match got {
            Ok(s) if s == want => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

#[tokio::test]
async fn a_middleware_put_on_one_replica_guards_the_route_on_all() {
    let Some(etcd) = Etcd::start("middlewares on every replica").await else {
        return;
    };
    let store = format!("etcd://{}/mw", etcd.endpoint());
    let replicas: Vec<Replica> = ["a", "b", "c"]
        .iter()
        .map(|n| Replica::start(n, &store))
        .collect();
    let backend = Backend::spawn("app").await;
    let mut api = replicas[0].api();
    put_app(&mut api, &backend).await;
    let r = api
        .put(
            "/api/middlewares/auth",
            json!({ "basic_auth": { "users": ["admin:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="] } }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = replicas[1]
        .api()
        .put(
            "/api/routes/app",
            json!({ "rule": "PathPrefix(`/`)", "service": "app", "middlewares": ["auth"] }),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let creds = "Basic YWRtaW46c2VjcmV0";
    for rep in &replicas {
        answers(rep, 401, None).await;
        answers(rep, 200, Some(creds)).await;
        let listed = rep.api().get("/api/middlewares/auth").await;
        assert_eq!(listed.json()["source"], "etcd", "{}", listed.body);
        assert!(!listed.body.contains("5en6G6"), "{}", listed.body);
    }
    // In use on replica c too: 409 there.
    let r = replicas[2].api().delete("/api/middlewares/auth").await;
    assert_eq!(r.status, 409, "{}", r.body);
    let r = replicas[2]
        .api()
        .put(
            "/api/routes/app",
            json!({ "rule": "PathPrefix(`/`)", "service": "app" }),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let r = replicas[2].api().delete("/api/middlewares/auth").await;
    assert!(r.status.is_success(), "{}", r.body);
    for rep in &replicas {
        answers(rep, 200, None).await;
    }
}
