//! What Tether shows of what it does: `/metrics` counts a known traffic mix exactly (per
//! service, code and method, per server, affinity outcomes), passes `promtool check metrics`, and
//! drops the series of a removed server; the access log has one line per request with its
//! route, service, server, status and affinity outcome, and moves to a new file on reopen.

use std::time::Duration;

use tether::app::{self, AdminOptions, Instance};
use tether_proxy::upstream::meter::{Format, Target};
use tether_testkit::{wait_until, Admin, Backend, Client, TempDir};

use crate::support::{KEY, WEB};

fn config(a: &Backend, b: &Backend) -> String {
    format!(
        "{WEB}{KEY}[routes.app]\nrule = \"PathPrefix(`/`)\"\nservice = \"app\"\n\
         [services.app]\nservers = [{{ name = \"a\", url = \"{}\" }}, {{ name = \"b\", url = \"{}\" }}]\n\
         [services.app.affinity]\nmode = \"cookie\"\ncookie = \"tid\"\n",
        a.url(),
        b.url()
    )
}

async fn start(dir: &TempDir, toml: &str, log: Option<(Format, Target)>) -> Instance {
    start_on(dir, toml, log, 1).await
}

/// [`start`] with `workers` serving workers.
async fn start_on(
    dir: &TempDir,
    toml: &str,
    log: Option<(Format, Target)>,
    workers: usize,
) -> Instance {
    let path = dir.path().join("tether.toml");
    std::fs::write(&path, toml).unwrap();
    let mut opts = app::Options::file(path, dir.path().to_path_buf(), Duration::from_secs(1));
    opts.workers = Some(workers);
    opts.admin = AdminOptions {
        address: Some("127.0.0.1:0".parse().unwrap()),
        token: None,
        dfp: None,
    };
    opts.access_log = log;
    app::start(opts).await.expect("start")
}

/// The value of the sample `name{labels}` (labels in the order Tether writes them).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let (s, v) = l.rsplit_once(' ')?;
        (s == series).then(|| v.parse().ok()).flatten()
    })
}

#[tokio::test]
async fn metrics_count_a_known_mix_and_forget_a_removed_server() {
    known_mix(1).await;
}

/// Four workers count in cells of their own (the visitors' new connections spread over the
/// workers' sockets); every figure read is the sum, exact as with one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_sum_what_four_workers_counted() {
    known_mix(4).await;
}

async fn known_mix(workers: usize) {
    let (a, b) = (Backend::spawn("a").await, Backend::spawn("b").await);
    let dir = TempDir::new("tether-metrics");
    let i = start_on(&dir, &config(&a, &b), None, workers).await;
    let web = i.addr("web");
    // 10 new visitors (round robin: 5 each), one of them back 4 times with its cookie,
    // 2 forged cookies, 3 POSTs.
    let mut regular = Client::new(web);
    regular.get("/").await.unwrap();
    for _ in 0..9 {
        Client::without_cookies(web).get("/").await.unwrap();
    }
    for _ in 0..4 {
        assert_eq!(regular.get("/").await.unwrap().status, 200);
    }
    for _ in 0..2 {
        let mut c = Client::without_cookies(web);
        c.jar.insert("tid".into(), "forged-value".into());
        c.get("/").await.unwrap();
    }
    for _ in 0..3 {
        let post = http::Request::post("/form")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"x=1")))
            .unwrap();
        Client::without_cookies(web).send(post).await.unwrap();
    }
    let mut admin = Admin::new(i.admin.unwrap(), None);
    let m = admin.get("/metrics").await;
    assert_eq!(m.status, 200);
    let body = m.body;
    let get = |s: &str| sample(&body, s).unwrap_or_else(|| panic!("no {s} in\n{body}"));
    assert_eq!(
        get(r#"tether_service_requests_total{service="app",code="200",method="GET"}"#),
        16.0
    );
    assert_eq!(
        get(r#"tether_service_requests_total{service="app",code="200",method="POST"}"#),
        3.0
    );
    assert_eq!(
        get(r#"tether_service_request_duration_seconds_count{service="app"}"#),
        19.0
    );
    assert_eq!(get(r#"tether_sticky_hits_total{service="app"}"#), 4.0);
    assert_eq!(get(r#"tether_sticky_misses_total{service="app"}"#), 13.0);
    assert_eq!(get(r#"tether_sticky_forged_total{service="app"}"#), 2.0);
    let per_server =
        get(r#"tether_server_requests_total{service="app",server="a",code_class="2xx"}"#)
            + get(r#"tether_server_requests_total{service="app",server="b",code_class="2xx"}"#);
    assert_eq!(per_server, 19.0);
    assert_eq!(
        get(r#"tether_route_requests_total{route="app",service="app",code_class="2xx"}"#),
        19.0
    );
    assert_eq!(
        a.requests() + b.requests(),
        19,
        "what the servers saw is what was counted"
    );
    assert_eq!(get(r#"tether_server_up{service="app",server="a"}"#), 1.0);
    assert!(get(r#"tether_open_connections{entrypoint="web"}"#) <= 20.0);
    assert!(body.contains(&format!(
        "tether_config_info{{version=\"{}\"}} 1",
        i.control.status().version
    )));
    promtool(&body).await;

    // A server removed from the file: its series go with it.
    let c = Backend::spawn("c").await;
    let next = config(&a, &c).replace("name = \"b\"", "name = \"c\"");
    let before = i.control.status().version;
    std::fs::write(dir.path().join("tether.toml.tmp"), next).unwrap();
    std::fs::rename(
        dir.path().join("tether.toml.tmp"),
        dir.path().join("tether.toml"),
    )
    .unwrap();
    wait_until(Duration::from_secs(5), || async {
        i.control.status().version != before
    })
    .await;
    let body = admin.get("/metrics").await.body;
    assert!(!body.contains(r#"server="b""#), "{body}");
    assert!(
        body.contains(r#"tether_server_up{service="app",server="c"} 1"#),
        "{body}"
    );
    i.shutdown().await;
}

/// `promtool check metrics` accepts the exposition (Debian's `prometheus` package; `.ci/run`
/// installs it). Skipped loudly without it, a failure under `CI=true`.
pub(crate) async fn promtool(body: &str) {
    use tokio::io::AsyncWriteExt;
    let child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        let msg = "promtool not found (apt-get install prometheus)";
        tether_testkit::missing(msg);
        return;
    };
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(body.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_request_its_client_cancelled_is_counted_and_logged_as_499() {
    let slow = Backend::spawn_slow("slow", Duration::from_secs(3)).await;
    let dir = TempDir::new("tether-abandoned");
    let file = dir.path().join("access.log");
    let toml = format!(
        "{WEB}{KEY}[routes.app]\nrule = \"PathPrefix(`/`)\"\nservice = \"app\"\n\
         [services.app]\nservers = [{{ name = \"slow\", url = \"{}\" }}]\n",
        slow.url()
    );
    let i = start(
        &dir,
        &toml,
        Some((Format::Json, Target::File(file.clone()))),
    )
    .await;
    // An h2 client asks, then cancels its stream (RST_STREAM, CANCEL) before the slow server
    // answers, as a browser does when the user leaves the page.
    use tether_testkit::h2raw;
    let mut s = h2raw::connect(i.addr("web")).await;
    let get = h2raw::frame(
        h2raw::HEADERS,
        h2raw::END_STREAM | h2raw::END_HEADERS,
        1,
        &h2raw::get("x", "/wait"),
    );
    tokio::io::AsyncWriteExt::write_all(&mut s, &get)
        .await
        .unwrap();
    wait_until(Duration::from_secs(5), || async { slow.requests() == 1 }).await;
    let cancel = h2raw::frame(h2raw::RST_STREAM, 0, 1, &8u32.to_be_bytes());
    tokio::io::AsyncWriteExt::write_all(&mut s, &cancel)
        .await
        .unwrap();
    let line = || -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(&file).ok()?;
        serde_json::from_str(text.lines().next()?).ok()
    };
    wait_until(Duration::from_secs(5), || async { line().is_some() }).await;
    let l = line().unwrap();
    assert_eq!(
        l["status"], 499,
        "NGINX's code for a client that closed first: {l}"
    );
    assert_eq!(l["path"], "/wait");
    let body = Admin::new(i.admin.unwrap(), None)
        .get("/metrics")
        .await
        .body;
    assert_eq!(
        sample(
            &body,
            r#"tether_service_requests_total{service="app",code="4xx",method="GET"}"#
        ),
        Some(1.0),
        "{body}"
    );
    assert!(
        !body.contains("1xx"),
        "not counted as an informational response: {body}"
    );
    i.shutdown().await;
}

#[tokio::test]
async fn the_access_log_has_a_line_per_request_and_moves_on_reopen() {
    let (a, b) = (Backend::spawn("a").await, Backend::spawn("b").await);
    let dir = TempDir::new("tether-access");
    let file = dir.path().join("access.log");
    let i = start(
        &dir,
        &config(&a, &b),
        Some((Format::Json, Target::File(file.clone()))),
    )
    .await;
    let web = i.addr("web");
    let mut c = Client::new(web);
    c.get("/first?q=1").await.unwrap();
    c.get("/second").await.unwrap();
    let lines = |p: &std::path::Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    };
    wait_until(Duration::from_secs(5), || async { lines(&file).len() == 2 }).await;
    let l = lines(&file);
    assert_eq!(l[0]["path"], "/first?q=1");
    assert_eq!(l[0]["status"], 200);
    assert_eq!(l[0]["route"], "app");
    assert_eq!(l[0]["service"], "app");
    assert_eq!(l[0]["affinity"], "new");
    assert_eq!(l[1]["affinity"], "pinned");
    assert_eq!(l[0]["server"], l[1]["server"], "pinned to the same server");
    assert!(l[0]["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(l[0]["bytes_out"].as_u64().unwrap() > 0);

    // logrotate: the file is moved away, Tether is told (SIGHUP does this), new lines go to a
    // new file.
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&file, &rotated).unwrap();
    i.access_log.as_ref().unwrap().reopen();
    wait_until(Duration::from_secs(5), || async { file.exists() }).await;
    Client::without_cookies(web).get("/third").await.unwrap();
    wait_until(Duration::from_secs(5), || async { lines(&file).len() == 1 }).await;
    assert_eq!(lines(&file)[0]["path"], "/third");
    assert_eq!(lines(&rotated).len(), 2);
    i.shutdown().await;
}

#[tokio::test]
async fn the_stats_page_on_a_traffic_entrypoint_needs_the_token_and_matches_any_query() {
    let (a, b) = (Backend::spawn("a").await, Backend::spawn("b").await);
    let dir = TempDir::new("tether-stats-uri");
    let toml = format!("{}[stats]\npath = \"/haproxy?stats\"\n", config(&a, &b));
    let path = dir.path().join("tether.toml");
    std::fs::write(&path, &toml).unwrap();
    let mut opts = app::Options::file(
        path.clone(),
        dir.path().to_path_buf(),
        Duration::from_secs(1),
    );
    // Without a token it does not start: the page would be open to every client.
    let refused = app::start(opts.clone()).await.unwrap_err().to_string();
    assert!(refused.contains("admin token"), "{refused}");
    opts.admin.token = Some("s3cret".into());
    let i = app::start(opts).await.expect("start");
    let mut c = Client::without_cookies(i.addr("web"));
    let r = c.get("/haproxy?stats").await.unwrap();
    assert_eq!(r.status, 401);
    assert!(r.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("admin:s3cret")
    );
    for target in ["/haproxy?stats", "/haproxy", "/haproxy?stats;csv"] {
        let req = http::Request::get(target)
            .header("authorization", &basic)
            .body(http_body_util::Full::default())
            .unwrap();
        let r = c.send(req).await.unwrap();
        assert_eq!(r.status, 200, "{target}");
        assert!(
            r.body.contains("data-server=\"a\"") && r.body.contains("Tether"),
            "{target}"
        );
    }
    assert_eq!(
        a.requests() + b.requests(),
        0,
        "the page never reaches a server"
    );
    // Everything else is routed as before.
    assert_eq!(c.get("/haproxy/other").await.unwrap().status, 200);
    i.shutdown().await;
}
