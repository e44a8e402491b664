//! A service with no server keeps its routes: a request waits `wait_for_server` for one, is
//! served by the server that comes, or gets 503 with `Retry-After: 1`; never 404 and never
//! another route. Beyond `wait_queue` waiting requests, 503 at once.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tether_testkit::{wait_for, Backend, Client};

use crate::support::{servers, Proxy, KEY, WEB};

/// `/app` to service `app` (with `app_servers` and `extra`), and a catch-all route to `other`.
fn config(app_servers: &str, extra: &str, other: &Backend) -> String {
    format!(
        "{WEB}{KEY}[routes.app]\nrule = \"PathPrefix(`/app`)\"\nservice = \"app\"\n\
         [routes.rest]\nrule = \"PathPrefix(`/`)\"\nservice = \"other\"\n\
         [services.app]\n{app_servers}\n{extra}\n[services.other]\n{}\n",
        servers(&[other])
    )
}

/// Requests waiting now for a server of `service`.
fn waiting(p: &Proxy, service: &str) -> u32 {
    let table = p.instance.control.store().load_full();
    table
        .services
        .iter()
        .find(|s| s.name == service)
        .map_or(0, |s| s.stats.waiting.load(Relaxed))
}

#[tokio::test]
async fn no_server_waits_then_answers_503_never_another_route() {
    let other = Backend::spawn("other").await;
    let p = Proxy::start(&config(
        "servers = []",
        "wait_for_server = \"400ms\"",
        &other,
    ))
    .await;
    let t = Instant::now();
    let r = p.client().get("/app/x").await.unwrap();
    let took = t.elapsed();
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.headers["retry-after"], "1");
    assert!(
        r.body.contains("service app has no available server"),
        "{}",
        r.body
    );
    assert!(took >= Duration::from_millis(400), "waited {took:?}");
    assert!(took < Duration::from_secs(3), "waited {took:?}");
    assert_eq!(other.requests(), 0, "the catch-all route never took it");
    // 0 turns waiting off.
    p.reload(&config("servers = []", "wait_for_server = \"0s\"", &other))
        .await;
    let t = Instant::now();
    let r = p.client().get("/app/x").await.unwrap();
    assert_eq!(r.status, 503);
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(p.client().get("/else").await.unwrap().status, 200);
    assert_eq!(other.requests(), 1);
}

#[tokio::test]
async fn a_waiting_request_is_served_by_the_server_that_comes() {
    let other = Backend::spawn("other").await;
    let app = Backend::spawn("app-1").await;
    let p = Proxy::start(&config("servers = []", "wait_for_server = \"20s\"", &other)).await;
    let addr = p.addr();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(async move {
                let t = Instant::now();
                let r = Client::new(addr).get("/app/x").await.unwrap();
                (r, t.elapsed())
            })
        })
        .collect();
    wait_for("three requests waiting", Duration::from_secs(5), || async {
        waiting(&p, "app") == 3
    })
    .await;
    let arrived = Instant::now();
    p.reload(&config(
        &servers(&[&app]),
        "wait_for_server = \"20s\"",
        &other,
    ))
    .await;
    for w in waiters {
        let (r, _) = w.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.server(), "app-1");
    }
    // Woken by the new table, not by a poll.
    assert!(
        arrived.elapsed() < Duration::from_secs(2),
        "{:?}",
        arrived.elapsed()
    );
    assert_eq!(app.requests(), 3);
    assert_eq!(other.requests(), 0);
    assert_eq!(waiting(&p, "app"), 0);
}

#[tokio::test]
async fn beyond_the_wait_queue_503_at_once() {
    let other = Backend::spawn("other").await;
    let p = Proxy::start(&config(
        "servers = []",
        "wait_for_server = \"3s\"\nwait_queue = 2",
        &other,
    ))
    .await;
    let addr = p.addr();
    let waiters: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { Client::new(addr).get("/app").await.unwrap() }))
        .collect();
    wait_for("two requests waiting", Duration::from_secs(5), || async {
        waiting(&p, "app") == 2
    })
    .await;
    let t = Instant::now();
    let r = p.client().get("/app").await.unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.headers["retry-after"], "1");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    for w in waiters {
        assert_eq!(w.await.unwrap().status, 503);
    }
    assert_eq!(other.requests(), 0);
}

#[tokio::test]
async fn bad_wait_settings_are_refused_naming_the_field() {
    for (extra, field) in [
        ("wait_for_server = \"soon\"", "services.app.wait_for_server"),
        ("wait_for_server = \"1h\"", "services.app.wait_for_server"),
        ("wait_queue = 0", "services.app.wait_queue"),
    ] {
        let toml = config("servers = []", extra, &Backend::spawn("o").await);
        let err = tether_model::file_config::parse(&toml)
            .unwrap_err()
            .to_string();
        assert!(err.contains(field), "{extra}: {err}");
    }
}
