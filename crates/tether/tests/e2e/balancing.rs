//! Balancing through the proxy: weights, least outstanding requests, consistent hashing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tether_testkit::{Backend, Client};

use crate::support::{Proxy, KEY, WEB};

fn weighted(a: &Backend, b: &Backend, extra: &str) -> String {
    format!(
        "{WEB}{KEY}[routes.web]\nrule = \"PathPrefix(`/`)\"\nservice = \"web\"\n[services.web]\n{extra}\nservers = [{{ name = \"a\", url = \"{}\", weight = 3 }}, {{ name = \"b\", url = \"{}\", weight = 1 }}]\n",
        a.url(),
        b.url()
    )
}

#[tokio::test]
async fn weights_three_to_one_give_75_percent() {
    let (a, b) = (Backend::spawn("a").await, Backend::spawn("b").await);
    let p = Proxy::start(&weighted(&a, &b, "")).await;
    let mut c = Client::without_cookies(p.addr());
    let mut to_a = 0;
    for _ in 0..4000 {
        if c.get("/").await.unwrap().server() == "a" {
            to_a += 1;
        }
    }
    let share = to_a as f64 / 4000.0;
    assert!(
        (0.70..=0.80).contains(&share),
        "a got {:.1}%",
        share * 100.0
    );
}

#[tokio::test]
async fn least_requests_prefers_the_idle_server_over_the_slow_one() {
    let slow = Backend::spawn_slow("slow", Duration::from_millis(200)).await;
    let fast = Backend::spawn("fast").await;
    let toml = format!(
        "{WEB}{KEY}[routes.web]\nrule = \"PathPrefix(`/`)\"\nservice = \"web\"\n[services.web]\nbalance = \"least_requests\"\n{}\n",
        crate::support::servers(&[&slow, &fast])
    );
    let p = Proxy::start(&toml).await;
    let end = Instant::now() + Duration::from_secs(2);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let addr = p.addr();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::without_cookies(addr);
            let mut n = HashMap::<String, u32>::new();
            while Instant::now() < end {
                *n.entry(c.get("/").await.unwrap().server().to_string())
                    .or_default() += 1;
            }
            n
        }));
    }
    let mut total = HashMap::<String, u32>::new();
    for t in tasks {
        for (k, v) in t.await.unwrap() {
            *total.entry(k).or_default() += v;
        }
    }
    let (s, f) = (
        total.get("slow").copied().unwrap_or(0),
        total.get("fast").copied().unwrap_or(0),
    );
    assert!(
        f > 10 * s.max(1),
        "fast {f} vs slow {s}: least requests must favour the idle server"
    );
    assert!(s > 0, "the slow server still gets some traffic");
}

#[tokio::test]
async fn consistent_hash_keeps_keys_in_place_when_a_server_leaves() {
    let backends = [
        Backend::spawn("s0").await,
        Backend::spawn("s1").await,
        Backend::spawn("s2").await,
        Backend::spawn("s3").await,
        Backend::spawn("s4").await,
    ];
    let refs: Vec<&Backend> = backends.iter().collect();
    let cfg = |bs: &[&Backend]| {
        format!(
            "{WEB}{KEY}[routes.web]\nrule = \"PathPrefix(`/`)\"\nservice = \"web\"\n[services.web]\nbalance = \"consistent_hash\"\nhash_on = \"header:X-User\"\n{}\n",
            crate::support::servers(bs)
        )
    };
    let p = Proxy::start(&cfg(&refs)).await;
    let mut c = Client::without_cookies(p.addr());
    let mut placed = Vec::new();
    for k in 0..300 {
        let req = || {
            Request::get("/")
                .header("x-user", format!("user-{k}"))
                .body(Full::<Bytes>::default())
                .unwrap()
        };
        let first = c.send(req()).await.unwrap().server().to_string();
        assert_eq!(
            c.send(req()).await.unwrap().server(),
            first,
            "the same key lands on the same server"
        );
        placed.push(first);
    }
    let without_s2: Vec<&Backend> = refs.iter().copied().filter(|b| b.name != "s2").collect();
    p.reload(&cfg(&without_s2)).await;
    let mut moved = 0;
    for (k, before) in placed.iter().enumerate() {
        let req = Request::get("/")
            .header("x-user", format!("user-{k}"))
            .body(Full::<Bytes>::default())
            .unwrap();
        let now = c.send(req).await.unwrap().server().to_string();
        if &now != before {
            assert_eq!(before, "s2", "only keys of the removed server move");
            moved += 1;
        }
    }
    assert!(
        moved <= 300 * 3 / 10,
        "{moved} of 300 keys moved (limit 1.5/n)"
    );
}

#[tokio::test]
async fn a_service_of_resolved_servers_reaches_every_address_of_the_name() {
    let b = Backend::spawn("dns-1").await;
    let toml = format!(
        "{WEB}{KEY}[routes.web]\nrule = \"PathPrefix(`/`)\"\nservice = \"web\"\n[services.web]\nresolve = \"localhost:{}\"\n",
        b.addr.port()
    );
    let proxy = Proxy::start(&toml).await;
    let mut c = proxy.client();
    for _ in 0..20 {
        let r = c.get("/").await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.server(), "dns-1");
    }
}
