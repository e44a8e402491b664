//! Middlewares end to end, through a backend that records every byte it receives: what reached
//! the server and what the client got, for `examples/middlewares.toml` on Tether's own HTTP/1.1
//! server and on h2c (hyper's path), and the refusals that keep the previous table serving.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use tether_testkit::raw::{self, status};
use tether_testkit::recorder::Recorder;

use crate::support::Proxy;

const QUIET: Duration = Duration::from_millis(300);

/// `examples/middlewares.toml`, served on a free port in front of `rec`.
fn example(rec: &Recorder) -> String {
    let text = include_str!("../../../../examples/middlewares.toml");
    text.replace("0.0.0.0:8080", "127.0.0.1:0")
        .replace("http://127.0.0.1:9001", &rec.url())
        .replace(
            "key_file = \"affinity.key.example\"",
            "key = \"test-key-test-key-test-key-test-key\"",
        )
}

fn basic(credentials: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

fn head(response: &str) -> String {
    response
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

#[tokio::test]
async fn the_example_chain_reaches_the_server_exactly_as_configured() {
    let rec = Recorder::answering("Server: leaky/1.0\r\nX-Frame-Options: SAMEORIGIN\r\n").await;
    let p = Proxy::start(&example(&rec)).await;

    // A page of the shop: the prefix stripped, the request fields set, the response edited.
    let r = raw::exchange(
        p.addr(),
        b"GET /shop/cart?id=7 HTTP/1.1\r\nHost: shop.test\r\nX-Env: dev\r\nX-Forwarded-Prefix: /evil\r\nConnection: close\r\n\r\n",
        QUIET,
    )
    .await;
    assert_eq!(status(&r), 200, "{r}");
    let got = head(&r);
    assert!(got.contains("x-frame-options: deny"), "{got}");
    assert!(
        !got.contains("sameorigin"),
        "the server's own is replaced: {got}"
    );
    assert!(got.contains("x-content-type-options: nosniff"), "{got}");
    assert!(got.contains("referrer-policy: same-origin"), "{got}");
    assert!(got.contains("cache-control: no-store"), "{got}");
    assert!(!got.contains("server: leaky"), "{got}");
    let sent = rec.requests().pop().unwrap();
    assert!(sent.starts_with("GET /cart?id=7 HTTP/1.1\r\n"), "{sent}");
    let sent_l = sent.to_ascii_lowercase();
    assert!(sent_l.contains("\r\nx-env: production\r\n"), "{sent}");
    assert!(
        !sent_l.contains("x-env: dev"),
        "set replaces the client's: {sent}"
    );
    assert!(sent_l.contains("\r\nx-shop-edge: tether\r\n"), "{sent}");
    assert!(
        sent_l.contains("\r\nx-forwarded-prefix: /shop\r\n"),
        "{sent}"
    );
    assert!(
        !sent_l.contains("/evil"),
        "a client's own prefix is dropped: {sent}"
    );
    assert!(sent_l.contains("\r\nhost: shop.test\r\n"), "{sent}");

    // The admin pages: 401 without a password, before any rewrite and without the server.
    let before = rec.requests().len();
    let r = raw::exchange(
        p.addr(),
        b"GET /shop/admin/orders HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
        QUIET,
    )
    .await;
    assert_eq!(status(&r), 401, "{r}");
    assert!(
        head(&r).contains("www-authenticate: basic realm=\"shop admin\""),
        "{r}"
    );
    assert_eq!(rec.requests().len(), before, "the server never sees it");

    // With each user's password: through, Authorization removed.
    for user in ["admin:secret", "ops:secret"] {
        let req = format!(
            "GET /shop/admin/orders HTTP/1.1\r\nHost: shop.test\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
            basic(user)
        );
        let r = raw::exchange(p.addr(), req.as_bytes(), QUIET).await;
        assert_eq!(status(&r), 200, "{user}: {r}");
        let sent = rec.requests().pop().unwrap();
        assert!(sent.starts_with("GET /admin/orders HTTP/1.1\r\n"), "{sent}");
        assert!(
            !sent.to_ascii_lowercase().contains("authorization"),
            "{sent}"
        );
    }
    let req = format!(
        "GET /shop/admin/ HTTP/1.1\r\nHost: shop.test\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        basic("admin:wrong")
    );
    assert_eq!(
        status(&raw::exchange(p.addr(), req.as_bytes(), QUIET).await),
        401
    );

    // The old address: redirected, never sent.
    let before = rec.requests().len();
    let r = raw::exchange(
        p.addr(),
        b"GET /store/item/3 HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
        QUIET,
    )
    .await;
    assert_eq!(status(&r), 301, "{r}");
    assert!(
        head(&r).contains("location: http://shop.test/shop/item/3"),
        "{r}"
    );
    assert_eq!(rec.requests().len(), before);

    // The stock report: this machine passes; another address (127.0.0.2, loopback too) is
    // told there is no such page.
    let stock = b"GET /shop/stock HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n";
    let r = raw::exchange(p.addr(), stock, QUIET).await;
    assert_eq!(status(&r), 200, "{r}");
    assert!(rec
        .requests()
        .pop()
        .unwrap()
        .starts_with("GET /stock HTTP/1.1\r\n"));
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut conn = sock.connect(p.addr()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut conn, stock)
        .await
        .unwrap();
    let mut r = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut conn, &mut r)
        .await
        .unwrap();
    assert_eq!(status(&r), 404, "{r}");
    assert!(
        r.ends_with("404 Not Found: no route matches this request\n"),
        "{r}"
    );
    assert_eq!(
        rec.requests().len(),
        before + 1,
        "only the allowed one was sent"
    );
}

#[tokio::test]
async fn h2c_requests_get_the_same_edits() {
    let rec = Recorder::answering("Server: leaky/1.0\r\n").await;
    let p = Proxy::start(&example(&rec)).await;
    let mut h2 = crate::proxying::h2c(p.addr()).await;
    let req = http::Request::get("http://shop.test/shop/cart")
        .header("x-env", "dev")
        .body(Full::<Bytes>::default())
        .unwrap();
    let resp = h2.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert!(!resp.headers().contains_key("server"));
    let sent = rec.requests().pop().unwrap();
    assert!(sent.starts_with("GET /cart HTTP/1.1\r\n"), "{sent}");
    let sent = sent.to_ascii_lowercase();
    assert!(
        sent.contains("x-env: production") && !sent.contains("x-env: dev"),
        "{sent}"
    );
    assert!(sent.contains("x-forwarded-prefix: /shop"), "{sent}");

    let req = http::Request::get("http://shop.test/shop/admin/")
        .body(Full::<Bytes>::default())
        .unwrap();
    let resp = h2.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Basic realm=\"shop admin\""
    );
}

#[tokio::test]
async fn a_route_naming_a_missing_middleware_is_refused_and_the_last_table_serves() {
    let rec = Recorder::spawn().await;
    let good = example(&rec);
    let p = Proxy::start(&good).await;
    let version = p.version();
    let bad = good.replace(
        "middlewares = [\"old-store\"]",
        "middlewares = [\"old-store\", \"ghost\"]",
    );
    p.write(&bad);
    p.refused(|e| e.contains("routes.old-shop.middlewares[1]") && e.contains("ghost@file"))
        .await;
    assert_eq!(p.version(), version, "the previous table keeps serving");
    let r = raw::exchange(
        p.addr(),
        b"GET /store/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        QUIET,
    )
    .await;
    assert_eq!(status(&r), 301);
}

#[tokio::test]
async fn what_a_middleware_answered_is_counted_shown_and_logged() {
    use tether::app::{self, AdminOptions};
    use tether_proxy::upstream::meter::{Format, Target};
    let rec = Recorder::spawn().await;
    let dir = tether_testkit::TempDir::new("tether-mw-observe");
    let path = dir.path().join("tether.toml");
    std::fs::write(&path, example(&rec)).unwrap();
    let log = dir.path().join("access.log");
    let mut opts = app::Options::file(path, dir.path().to_path_buf(), Duration::from_secs(1));
    opts.admin = AdminOptions {
        address: Some("127.0.0.1:0".parse().unwrap()),
        token: None,
        dfp: None,
    };
    opts.access_log = Some((Format::Json, Target::File(log.clone())));
    let i = app::start(opts).await.expect("start");
    let web = i.addr("web");
    for _ in 0..3 {
        let r = raw::exchange(
            web,
            b"GET /shop/admin/ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            QUIET,
        )
        .await;
        assert_eq!(status(&r), 401);
    }
    let r = raw::exchange(
        web,
        b"GET /store/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        QUIET,
    )
    .await;
    assert_eq!(status(&r), 301);
    let r = raw::exchange(
        web,
        b"GET /shop/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        QUIET,
    )
    .await;
    assert_eq!(status(&r), 200);

    let mut admin = tether_testkit::Admin::new(i.admin.expect("admin"), None);
    let m = admin.get("/metrics").await.body;
    for (series, want) in [
        ("tether_middleware_responses_total{middleware=\"admin-auth@file\",route=\"shop-admin\",code=\"401\"}", "3"),
        ("tether_middleware_responses_total{middleware=\"old-store@file\",route=\"old-shop\",code=\"301\"}", "1"),
    ] {
        let line = m.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("{series} not in\n{m}"));
        assert!(line.ends_with(&format!(" {want}")), "{line}");
    }
    let stats = admin.get("/api/stats").await.json();
    let route = stats["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "shop-admin")
        .unwrap()
        .clone();
    let names: Vec<&str> = route["middlewares"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["admin-auth@file", "security@file", "strip-shop@file"]
    );
    assert_eq!(route["middlewares"][0]["answered"]["401"], 3);
    let page = admin.get("/").await.body;
    assert!(
        page.contains("admin-auth@file (401: 3)"),
        "the stats page shows it"
    );

    let lines = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    tether_testkit::wait_until(Duration::from_secs(5), || async { lines().len() == 5 }).await;
    let l = lines();
    assert_eq!(l[0]["middleware"], "admin-auth@file");
    assert_eq!(l[3]["middleware"], "old-store@file");
    assert_eq!(
        l[4]["middleware"],
        serde_json::Value::Null,
        "served by the server"
    );
    i.shutdown().await;
}

#[tokio::test]
async fn ip_allow_and_client_ip_read_the_admitted_client_address() {
    let (inside, outside) = (Recorder::spawn().await, Recorder::spawn().await);
    // 127.0.0.1 (the test's own address) is a trusted proxy: the client is the first address
    // from the right of X-Forwarded-For that is not one.
    let toml = format!(
        "[entrypoints]\nweb = \"127.0.0.1:0\"\n{}\
         [forwarded]\ntrusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\"]\n\
         [routes.office]\nrule = \"PathPrefix(`/`) && ClientIP(`192.0.2.0/24`)\"\nservice = \"inside\"\n\
         [routes.world]\nrule = \"PathPrefix(`/`)\"\nservice = \"outside\"\nmiddlewares = [\"only-docs\"]\n\
         [routes.hidden]\nrule = \"PathPrefix(`/hidden`)\"\nservice = \"outside\"\nmiddlewares = [\"two-away\"]\n\
         [middlewares.only-docs.ip_allow]\nranges = [\"198.51.100.0/24\"]\n\
         [middlewares.two-away.ip_allow]\nranges = [\"198.51.100.0/24\"]\ndepth = 2\nreject_status = 404\n\
         [services.inside]\nservers = [{{ url = \"{}\" }}]\n\
         [services.outside]\nservers = [{{ url = \"{}\" }}]\n",
        crate::support::KEY,
        inside.url(),
        outside.url()
    );
    let p = Proxy::start(&toml).await;
    let to = |path: &str, xff: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: {xff}\r\nConnection: close\r\n\r\n"
        )
    };
    let from = |xff: &str| to("/x", xff);
    // The office, behind a trusted proxy at 10.0.0.7.
    let r = raw::exchange(
        p.addr(),
        from("6.6.6.6, 192.0.2.44, 10.0.0.7").as_bytes(),
        QUIET,
    )
    .await;
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(inside.requests().len(), 1);
    // An allowed address elsewhere.
    let r = raw::exchange(p.addr(), from("198.51.100.9").as_bytes(), QUIET).await;
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(outside.requests().len(), 1);
    // A client that writes the office's address first cannot pass for it: the rightmost
    // untrusted entry is its own.
    let r = raw::exchange(p.addr(), from("192.0.2.44, 203.0.113.1").as_bytes(), QUIET).await;
    assert_eq!(status(&r), 403, "{r}");
    assert_eq!(inside.requests().len(), 1);
    assert_eq!(outside.requests().len(), 1);

    // `depth = 2`: the second entry from the right, whatever the trusted proxies; refused with
    // the 404 a path no route matches gets, word for word.
    let hidden = |xff: &str| to("/hidden", xff);
    let r = raw::exchange(p.addr(), hidden("198.51.100.9, 10.0.0.7").as_bytes(), QUIET).await;
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(outside.requests().len(), 2);
    let refused = raw::exchange(p.addr(), hidden("198.51.100.9").as_bytes(), QUIET).await;
    assert_eq!(status(&refused), 404, "too few entries: {refused}");
    let r = raw::exchange(
        p.addr(),
        hidden("203.0.113.1, 198.51.100.9").as_bytes(),
        QUIET,
    )
    .await;
    assert_eq!(status(&r), 404, "{r}");
    assert_eq!(
        outside.requests().len(),
        2,
        "no refused request reached the server"
    );
    let body = |r: &str| r.split_once("\r\n\r\n").map(|b| b.1.to_string());
    let toml_without_routes = format!(
        "[entrypoints]\nweb = \"127.0.0.1:0\"\n{}",
        crate::support::KEY
    );
    let empty = Proxy::start(&toml_without_routes).await;
    let nothing = raw::exchange(empty.addr(), hidden("198.51.100.9").as_bytes(), QUIET).await;
    assert_eq!(status(&nothing), 404, "{nothing}");
    assert_eq!(body(&refused), body(&nothing), "the same 404 as no route");
}

#[tokio::test]
async fn a_users_file_is_followed_live_and_a_bad_change_keeps_the_last_users() {
    let rec = Recorder::spawn().await;
    let dir = tether_testkit::TempDir::new("tether-users-file");
    let users = dir.path().join("users");
    // htpasswd -nbs alice secret; openssl passwd -apr1 -salt o0CJxGu4 secret (for bob).
    std::fs::write(
        &users,
        "# the shop's admins\nalice:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n",
    )
    .unwrap();
    let toml = format!(
        "[entrypoints]\nweb = \"127.0.0.1:0\"\n{}\
         [routes.r]\nrule = \"PathPrefix(`/`)\"\nservice = \"s\"\nmiddlewares = [\"auth\"]\n\
         [middlewares.auth.basic_auth]\nusers_file = \"{}\"\n\
         [services.s]\nservers = [{{ url = \"{}\" }}]\n",
        crate::support::KEY,
        users.display(),
        rec.url()
    );
    let p = Proxy::start(&toml).await;
    let as_user = |who: &'static str| {
        let addr = p.addr();
        async move {
            let req = format!(
                "GET / HTTP/1.1\r\nHost: a\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
                basic(&format!("{who}:secret"))
            );
            status(&raw::exchange(addr, req.as_bytes(), QUIET).await)
        }
    };
    assert_eq!(as_user("alice").await, 200);
    assert_eq!(as_user("bob").await, 401);

    std::fs::write(&users, "bob:$apr1$o0CJxGu4$QnnTssamc9OYtXRPiZWNn.\n").unwrap();
    tether_testkit::wait_for(
        "bob's password to be read",
        Duration::from_secs(10),
        || async { as_user("bob").await == 200 },
    )
    .await;
    assert_eq!(as_user("alice").await, 401, "alice was removed");

    // A change that cannot be used (plain text) keeps the users read last.
    std::fs::write(&users, "carol:plaintext\n").unwrap();
    let file = tether_model::middleware::UsersFile::Path(users.clone());
    let problem =
        tether_testkit::wait_for_value("the change to be refused", Duration::from_secs(10), || {
            let p = p.instance.control.users_file_problem(&file);
            std::future::ready(p.ok_or_else(|| "not yet".to_string()))
        })
        .await;
    assert!(problem.contains("line 1"), "{problem}");
    assert!(
        !problem.contains("plaintext"),
        "a line is never quoted: {problem}"
    );
    assert_eq!(as_user("bob").await, 200);
    assert_eq!(as_user("carol").await, 401);

    // A good change again clears the problem.
    std::fs::write(&users, "carol:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n").unwrap();
    tether_testkit::wait_for(
        "carol's password to be read",
        Duration::from_secs(10),
        || async { as_user("carol").await == 200 },
    )
    .await;
    assert_eq!(p.instance.control.users_file_problem(&file), None);
}

#[tokio::test]
async fn each_path_and_redirect_middleware_does_what_traefiks_does() {
    let rec = Recorder::spawn().await;
    let toml = format!(
        "[entrypoints]\nweb = \"127.0.0.1:0\"\n{}\
         [services.s]\nservers = [{{ url = \"{}\" }}]\n\
         [routes.regex]\nrule = \"PathPrefix(`/api`)\"\nservice = \"s\"\nmiddlewares = [\"versions\"]\n\
         [middlewares.versions.strip_prefix_regex]\nregex = [\"/api/v[0-9]+\"]\n\
         [routes.add]\nrule = \"PathPrefix(`/add`)\"\nservice = \"s\"\nmiddlewares = [\"v2\"]\n\
         [middlewares.v2.add_prefix]\nprefix = \"/v2\"\n\
         [routes.health]\nrule = \"Path(`/healthz`)\"\nservice = \"s\"\nmiddlewares = [\"health\"]\n\
         [middlewares.health.replace_path]\npath = \"/status\"\n\
         [routes.old]\nrule = \"PathPrefix(`/old`)\"\nservice = \"s\"\nmiddlewares = [\"old-to-new\"]\n\
         [middlewares.old-to-new.replace_path_regex]\nregex = \"^/old/(.*)\"\nreplacement = \"/new/$1\"\n\
         [routes.secure]\nrule = \"PathPrefix(`/secure`)\"\nservice = \"s\"\nmiddlewares = [\"to-https\"]\n\
         [middlewares.to-https.redirect_scheme]\nscheme = \"https\"\nport = 8443\n\
         [routes.ro]\nrule = \"PathPrefix(`/ro`)\"\nservice = \"s\"\nmiddlewares = [\"read-only\"]\n\
         [middlewares.read-only.methods]\nallow = [\"GET\", \"HEAD\"]\n",
        crate::support::KEY,
        rec.url()
    );
    let p = Proxy::start(&toml).await;
    let send = |req: String| {
        let addr = p.addr();
        async move { raw::exchange(addr, req.as_bytes(), QUIET).await }
    };
    let get =
        |path: &str| format!("GET {path} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n");
    // A client's own X-Forwarded-Prefix never reaches a server (it is not a trusted proxy),
    // whatever the route's middlewares.
    let r = send(
        "GET /add/x HTTP/1.1\r\nHost: a\r\nX-Forwarded-Prefix: /evil\r\nX_Forwarded_Prefix: /evil\r\nConnection: close\r\n\r\n".into(),
    )
    .await;
    assert_eq!(status(&r), 200, "{r}");
    let sent = rec.requests().pop().unwrap();
    assert!(!sent.contains("/evil"), "{sent}");
    // What reached the server for each path.
    for (path, reached, field) in [
        (
            "/api/v2/users?id=1",
            "GET /users?id=1 ",
            Some("x-forwarded-prefix: /api/v2"),
        ),
        ("/add/x", "GET /v2/add/x ", None),
        (
            "/healthz?full=1",
            "GET /status?full=1 ",
            Some("x-replaced-path: /healthz"),
        ),
        (
            "/old/a/b",
            "GET /new/a/b ",
            Some("x-replaced-path: /old/a/b"),
        ),
    ] {
        let r = send(get(path)).await;
        assert_eq!(status(&r), 200, "{path}: {r}");
        let sent = rec.requests().pop().unwrap();
        assert!(sent.starts_with(reached), "{path}: {sent}");
        if let Some(f) = field {
            assert!(
                sent.to_ascii_lowercase().contains(&format!("\r\n{f}\r\n")),
                "{path}: {sent}"
            );
        }
    }
    // What the client got instead, the server never asked.
    let before = rec.requests().len();
    let r = send(get("/secure/page?q=1")).await;
    assert_eq!(status(&r), 302, "{r}");
    assert!(
        head(&r).contains("location: https://shop.test:8443/secure/page?q=1"),
        "{r}"
    );
    let r = send("DELETE /ro/item HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".into()).await;
    assert_eq!(status(&r), 405, "{r}");
    assert!(head(&r).contains("allow: get, head"), "{r}");
    assert_eq!(rec.requests().len(), before);
    assert_eq!(status(&send(get("/ro/item")).await), 200);
}
