//! The admin API with its state file (no etcd): changes checked, committed, served and kept
//! across a restart; tokens; preconditions; names owned by another source; Docker Flow Proxy's
//! reconfigure call.

use std::time::Duration;

use http::StatusCode;
use serde_json::json;
use tether::app::{self, AdminOptions, Instance};
use tether_testkit::{Admin, Backend, Client, TempDir};

use crate::support::{servers, KEY, WEB};

const TOKEN: &str = "t0ken-for-tests";

/// Tether with the admin API on 127.0.0.1:0, its state in `dir`, and an optional file.
async fn start(dir: &TempDir, toml: Option<&str>, token: Option<&str>, dfp: bool) -> Instance {
    let config = toml.map(|t| {
        let p = dir.path().join("tether.toml");
        std::fs::write(&p, t).unwrap();
        p
    });
    let mut opts = app::Options::file(
        dir.path().join("unused.toml"),
        dir.path().to_path_buf(),
        Duration::from_secs(1),
    );
    opts.config = config;
    opts.listen = "127.0.0.1:0".parse().unwrap();
    opts.key_file = None;
    opts.admin = AdminOptions {
        address: Some("127.0.0.1:0".parse().unwrap()),
        token: token.map(str::to_string),
        dfp: dfp.then(Default::default),
    };
    app::start(opts).await.expect("start")
}

fn admin(i: &Instance, token: Option<&str>) -> Admin {
    Admin::new(i.admin.expect("admin runs"), token)
}

/// `GET /api/routes` as `name@source`, in the order listed.
async fn routes(a: &mut Admin) -> Vec<String> {
    a.get("/api/routes")
        .await
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}@{}",
                r["name"].as_str().unwrap(),
                r["source"].as_str().unwrap()
            )
        })
        .collect()
}

fn service_body(b: &Backend) -> serde_json::Value {
    json!({ "servers": [{ "name": b.name, "url": b.url() }] })
}

#[tokio::test]
async fn a_route_put_through_the_api_is_served_and_survives_a_restart() {
    let dir = TempDir::new("tether-api");
    let b = Backend::spawn("api-1").await;
    let inst = start(&dir, None, Some(TOKEN), false).await;
    let mut a = admin(&inst, Some(TOKEN));
    let empty = a.version().await;
    assert_eq!(
        Client::new(inst.addr("web")).get("/").await.unwrap().status,
        StatusCode::NOT_FOUND,
        "starts empty"
    );

    let r = a.put("/api/services/app", service_body(&b)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = a
        .put(
            "/api/routes/app",
            json!({"rule": "PathPrefix(`/`)", "service": "app"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // Answered once served: the very next request reaches the backend.
    let version = r.json()["version"].as_str().unwrap().to_string();
    assert_ne!(version, empty);
    assert_eq!(a.version().await, version);
    let reply = Client::new(inst.addr("web")).get("/hello").await.unwrap();
    assert_eq!(reply.server(), "api-1");

    let listed = a.get("/api/routes").await.json();
    assert_eq!(listed[0]["name"], "app");
    assert_eq!(listed[0]["source"], "api");
    inst.shutdown().await;

    let again = start(&dir, None, Some(TOKEN), false).await;
    let mut a = admin(&again, Some(TOKEN));
    assert_eq!(a.version().await, version, "the same table after a restart");
    let reply = Client::new(again.addr("web")).get("/").await.unwrap();
    assert_eq!(reply.server(), "api-1");
    again.shutdown().await;
}

#[tokio::test]
async fn changes_need_the_token_and_without_one_the_api_is_read_only() {
    let dir = TempDir::new("tether-api-auth");
    let inst = start(&dir, None, Some(TOKEN), false).await;
    let body = json!({"servers": []});
    let r = admin(&inst, None)
        .put("/api/services/x", body.clone())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("Authorization: Bearer"), "{}", r.body);
    let r = admin(&inst, Some("wrong"))
        .put("/api/services/x", body.clone())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Reads on loopback need no token.
    assert_eq!(
        admin(&inst, None).get("/api/version").await.status,
        StatusCode::OK
    );
    inst.shutdown().await;

    let dir = TempDir::new("tether-api-notoken");
    let inst = start(&dir, None, None, false).await;
    let r = admin(&inst, Some("anything"))
        .put("/api/services/x", body)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("no admin token configured"), "{}", r.body);
    inst.shutdown().await;

    // Beyond loopback without a token: refused at start.
    let mut opts = app::Options::file(dir.path().join("x"), dir.path().into(), Duration::ZERO);
    opts.config = None;
    opts.listen = "127.0.0.1:0".parse().unwrap();
    opts.admin.address = Some("0.0.0.0:0".parse().unwrap());
    let e = app::start(opts).await.expect_err("refused");
    assert!(format!("{e:#}").contains("no admin token"), "{e:#}");
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_field_and_changes_nothing() {
    let dir = TempDir::new("tether-api-bad");
    let b = Backend::spawn("bad-1").await;
    let inst = start(&dir, None, Some(TOKEN), false).await;
    let mut a = admin(&inst, Some(TOKEN));
    assert_eq!(
        a.put("/api/services/app", service_body(&b)).await.status,
        StatusCode::CREATED
    );
    let before = a.version().await;

    let r = a
        .put(
            "/api/routes/app",
            json!({"rule": "PathPrefix(`/`", "service": "app"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["field"], "routes.app.rule", "{}", r.body);
    assert!(r.body.contains("column"), "{}", r.body);
    let r = a
        .put(
            "/api/routes/app",
            json!({"rule": "Path(`/`)", "service": "nowhere"}),
        )
        .await;
    assert_eq!(r.json()["field"], "routes.app.service", "{}", r.body);
    let r = a
        .put("/api/services/app", json!({"servers": [], "balence": "x"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["field"], "services.app.balence", "{}", r.body);
    let r = a
        .call(http::Method::PUT, "/api/services/app", None, &[])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(a.version().await, before, "nothing changed");

    // Shown in /api/errors with its field.
    let errors = a.get("/api/errors").await.json();
    let fields: Vec<&str> = errors["recent"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert!(fields.contains(&"routes.app.rule"), "{errors}");

    // A change of several parts applies whole or not at all.
    let r = a
        .call(
            http::Method::POST,
            "/api/changes",
            Some(&json!({"changes": [
                {"op": "put", "kind": "routes", "name": "ok", "body": {"rule": "Path(`/ok`)", "service": "app"}},
                {"op": "put", "kind": "routes", "name": "broken", "body": {"rule": "Nope()", "service": "app"}},
            ]})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(a.version().await, before);
    assert_eq!(a.get("/api/routes/ok").await.status, StatusCode::NOT_FOUND);
    inst.shutdown().await;
}

#[tokio::test]
async fn a_stale_if_match_is_a_412_and_a_fresh_one_applies() {
    let dir = TempDir::new("tether-api-etag");
    let b = Backend::spawn("etag-1").await;
    let inst = start(&dir, None, Some(TOKEN), false).await;
    let mut a = admin(&inst, Some(TOKEN));
    a.put("/api/services/app", service_body(&b)).await;
    let read = a.get("/api/services/app").await;
    let etag = read.headers["etag"].to_str().unwrap().to_string();
    // Another operator changes it first.
    let r = a
        .put(
            "/api/services/app",
            json!({"servers": [], "balance": "least_requests"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let body = service_body(&b);
    let stale = a
        .call(
            http::Method::PUT,
            "/api/services/app",
            Some(&body),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.body
    );
    let fresh = a.get("/api/services/app").await.headers["etag"]
        .to_str()
        .unwrap()
        .to_string();
    let r = a
        .call(
            http::Method::PUT,
            "/api/services/app",
            Some(&body),
            &[("if-match", &fresh)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let created = a
        .call(
            http::Method::PUT,
            "/api/services/app",
            Some(&body),
            &[("if-none-match", "*")],
        )
        .await;
    assert_eq!(created.status, StatusCode::PRECONDITION_FAILED);
    inst.shutdown().await;
}

#[tokio::test]
async fn a_name_the_file_declares_is_a_409() {
    let dir = TempDir::new("tether-api-409");
    let b = Backend::spawn("file-1").await;
    let toml = format!(
        "{WEB}{KEY}[routes.web]\nrule = \"PathPrefix(`/`)\"\nservice = \"web\"\n[services.web]\n{}\n",
        servers(&[&b])
    );
    let inst = start(&dir, Some(&toml), Some(TOKEN), false).await;
    let mut a = admin(&inst, Some(TOKEN));
    let r = a.put("/api/services/web", json!({"servers": []})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(r.body.contains("file"), "{}", r.body);
    // A route of the API may use the file's service.
    let r = a
        .put(
            "/api/routes/extra",
            json!({"rule": "PathPrefix(`/extra`)", "service": "web", "priority": 100}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(routes(&mut a).await, ["extra@api", "web@file"]);
    let backends = a.get("/api/backends").await.json();
    assert_eq!(backends[0]["server"], "file-1");
    assert_eq!(backends[0]["state"], "serving");
    inst.shutdown().await;
}

#[tokio::test]
async fn docker_flow_proxys_reconfigure_call_is_served() {
    let dir = TempDir::new("tether-api-dfp");
    let b = Backend::spawn("go-demo").await;
    let inst = start(&dir, None, Some(TOKEN), true).await;
    let call = format!(
        "/v1/docker-flow-proxy/reconfigure?serviceName=localhost&servicePath=/demo&port={}&distribute=true",
        b.addr.port()
    );
    let r = admin(&inst, None).get(&call).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "needs the token like every change"
    );
    let r = admin(&inst, Some(TOKEN)).get(&call).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["Status"], "OK");
    let mut c = Client::new(inst.addr("web"));
    for _ in 0..50 {
        let reply = c.get("/demo/hello").await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.server(), "go-demo");
    }
    let r = admin(&inst, Some(TOKEN))
        .get("/v1/docker-flow-proxy/reconfigure?serviceName=a&servicePath=/a&port=80&aclName=x")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("aclName"), "{}", r.body);
    let r = admin(&inst, Some(TOKEN))
        .get("/v1/docker-flow-proxy/remove?serviceName=localhost")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        c.get("/demo/hello").await.unwrap().status,
        StatusCode::NOT_FOUND
    );
    inst.shutdown().await;
}

#[tokio::test]
async fn the_api_examples_are_accepted_in_the_order_try_sh_sends_them() {
    let dir = TempDir::new("tether-api-examples");
    // examples/admin.toml's entrypoints, on free ports.
    let toml = "[entrypoints]\nweb = \"127.0.0.1:0\"\ncache = { address = \"127.0.0.1:0\", protocol = \"tcp\" }\n";
    let inst = start(&dir, Some(toml), Some(TOKEN), false).await;
    let mut a = admin(&inst, Some(TOKEN));
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/api");
    let read = |f: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(examples.join(f)).unwrap()).unwrap()
    };
    let r = a
        .put("/api/services/go-demo", read("services.go-demo.json"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = a
        .put("/api/routes/go-demo", read("routes.go-demo.json"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = a
        .call(
            http::Method::POST,
            "/api/changes",
            Some(&read("changes.json")),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(routes(&mut a).await, ["shop@api"]);
    // What a read returns can be sent back as it is.
    let svc = a.get("/api/services/go-demo").await.json();
    let mut body = svc.clone();
    for k in ["name", "source", "etag"] {
        body.as_object_mut().unwrap().remove(k);
    }
    let r = a.put("/api/services/go-demo", body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let again = a.get("/api/services/go-demo").await.json();
    assert_eq!(again["affinity"], svc["affinity"]);
    // A TCP service and its router, as try.sh sends them; read back and sent again unchanged.
    for (path, file) in [
        ("/api/tcp/services/cache", "tcp-services.cache.json"),
        ("/api/tcp/routers/cache", "tcp-routers.cache.json"),
    ] {
        let r = a.put(path, read(file)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{path}: {}", r.body);
        let read_back = a.get(path).await.json();
        let mut body = read_back.clone();
        for k in ["name", "source", "etag"] {
            body.as_object_mut().unwrap().remove(k);
        }
        let r = a.put(path, body).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        let mut again = a.get(path).await.json();
        again["etag"] = read_back["etag"].clone();
        assert_eq!(again, read_back, "{path}: the same declaration");
    }
    let svc = a.get("/api/tcp/services/cache").await.json();
    assert_eq!(svc["hash_on"], "client_ip", "{svc}");
    assert_eq!(svc["health"]["timeout"], "1000ms", "{svc}");
    inst.shutdown().await;
}

#[tokio::test]
async fn a_service_with_no_server_is_shown_as_such() {
    let dir = TempDir::new("tether-api-noserver");
    let toml = format!(
        "{WEB}{KEY}[routes.idle]\nrule = \"PathPrefix(`/`)\"\nservice = \"idle\"\n[services.idle]\nservers = []\n"
    );
    let i = start(&dir, Some(&toml), Some(TOKEN), false).await;
    let mut a = admin(&i, Some(TOKEN));
    let backends = a.get("/api/backends").await.json();
    let row = backends
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["service"] == "idle")
        .unwrap_or_else(|| panic!("no row for the service: {backends}"));
    assert_eq!(row["state"], "no server", "{row}");
    assert!(row["server"].is_null());
    let stats = a.get("/api/stats").await.json();
    let svc = stats["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "idle")
        .unwrap_or_else(|| panic!("{stats}"));
    assert_eq!(svc["no_server"], true, "{svc}");
    let page = a.get("/").await;
    assert!(
        page.body.contains("no server: requests wait for one"),
        "the stats page says so"
    );
}

#[tokio::test]
async fn a_middleware_put_through_the_api_guards_its_routes_and_never_shows_a_hash() {
    let dir = TempDir::new("tether-api-mw");
    let b = Backend::spawn("api-mw").await;
    let inst = start(&dir, None, Some(TOKEN), false).await;
    let mut a = admin(&inst, Some(TOKEN));
    let hash = "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=";

    // A plain password is refused, naming the field, and never repeated.
    let r = a
        .put(
            "/api/middlewares/auth",
            json!({ "basic_auth": { "users": ["admin:hunter2"] } }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        r.body.contains("middlewares.auth.basic_auth.users[0]"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("hunter2"), "{}", r.body);
    // A route naming a middleware that does not exist: both names.
    assert_eq!(
        a.put("/api/services/app", service_body(&b)).await.status,
        StatusCode::CREATED
    );
    let route = json!({ "rule": "PathPrefix(`/`)", "service": "app", "middlewares": ["auth"] });
    let r = a.put("/api/routes/web", route.clone()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        r.body.contains("auth@api") && r.body.contains("route web"),
        "{}",
        r.body
    );

    let r = a
        .put(
            "/api/middlewares/auth",
            json!({ "basic_auth": { "users": [format!("admin:{hash}")], "realm": "api" } }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        a.put("/api/routes/web", route).await.status,
        StatusCode::CREATED
    );
    let mut c = Client::new(inst.addr("web"));
    let resp = c.get("/").await.unwrap();
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    let req = http::Request::get("/")
        .header("authorization", "Basic YWRtaW46c2VjcmV0")
        .body(Default::default())
        .unwrap();
    assert_eq!(c.send(req).await.unwrap().status, StatusCode::OK);

    // Read back: the users' names, never their hashes.
    let r = a.get("/api/middlewares/auth").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    assert_eq!(v["name"], "auth@api");
    assert_eq!(v["basic_auth"]["users"], json!(["admin"]));
    assert!(!r.body.contains("5en6G6"), "{}", r.body);
    assert!(!a.get("/api/middlewares").await.body.contains("5en6G6"));

    // In use: 409 naming the route; once the route is gone, deleted.
    let r = a.delete("/api/middlewares/auth").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(
        r.body.contains("routes web still use auth@api"),
        "{}",
        r.body
    );
    assert_eq!(a.delete("/api/routes/web").await.status, StatusCode::OK);
    assert_eq!(
        a.delete("/api/middlewares/auth").await.status,
        StatusCode::OK
    );
    assert_eq!(
        a.get("/api/middlewares/auth").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn docker_flow_proxys_request_options_are_served_and_go_with_the_service() {
    let dir = TempDir::new("tether-api-dfp-mw");
    let rec = tether_testkit::recorder::Recorder::spawn().await;
    let inst = start(&dir, None, Some(TOKEN), true).await;
    let mut a = admin(&inst, Some(TOKEN));
    // `localhost` resolves to the recorder's address; DFP's users are plain passwords.
    let call = |extra: &str| {
        format!(
            "/v1/docker-flow-proxy/reconfigure?serviceName=localhost&servicePath=/shop&port={}{extra}",
            rec.addr.port()
        )
    };
    let r = a
        .get(&call("&users=admin:secret&reqPathSearchReplace=/shop/(.*),/%5C1&setReqHeader=X-Env%20prod&deniedMethods=DELETE"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let web = inst.addr("web");
    let get = |path: &str, auth: Option<&str>, method: &str| {
        let auth = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        format!("{method} {path} HTTP/1.1\r\nHost: a\r\n{auth}Connection: close\r\n\r\n")
    };
    let exchange = |req: String| async move {
        tether_testkit::raw::exchange(web, req.as_bytes(), Duration::from_millis(300)).await
    };
    let creds = "Basic YWRtaW46c2VjcmV0"; // admin:secret
    assert_eq!(
        tether_testkit::raw::status(&exchange(get("/shop/cart", None, "GET")).await),
        401
    );
    assert_eq!(
        tether_testkit::raw::status(&exchange(get("/shop/cart", Some(creds), "DELETE")).await),
        405
    );
    assert_eq!(
        tether_testkit::raw::status(&exchange(get("/shop/cart", Some(creds), "GET")).await),
        200
    );
    let sent = rec.requests().pop().unwrap();
    assert!(sent.starts_with("GET /cart HTTP/1.1\r\n"), "{sent}");
    assert!(sent.to_ascii_lowercase().contains("x-env: prod"), "{sent}");
    assert!(
        !sent.to_ascii_lowercase().contains("authorization"),
        "{sent}"
    );
    // Stored hashed: the plain password is nowhere in the store.
    let stored = a.get("/api/middlewares/localhost-auth").await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.body);
    assert!(!stored.body.contains("secret"), "{}", stored.body);
    let state = std::fs::read_to_string(dir.path().join("api-state.json")).unwrap_or_default();
    assert!(!state.contains("admin:secret"), "never kept in plain text");

    // Called again without users: the auth middleware goes, the others stay.
    let r = a.get(&call("&setReqHeader=X-Env%20prod")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        tether_testkit::raw::status(&exchange(get("/shop/cart", None, "GET")).await),
        200
    );
    assert_eq!(
        a.get("/api/middlewares/localhost-auth").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        a.get("/api/middlewares/localhost-headers").await.status,
        StatusCode::OK
    );
    // Removed: its middlewares with it.
    let r = a
        .get("/v1/docker-flow-proxy/remove?serviceName=localhost")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        a.get("/api/middlewares/localhost-headers").await.status,
        StatusCode::NOT_FOUND
    );
    inst.shutdown().await;
}
