//! Sticky sessions: prefix mode on the app's cookie, Tether's own cookie, tampering, and what
//! happens when the pinned server goes away.

use std::collections::HashMap;

use tether_testkit::{Backend, Client, Sink};

use crate::support::{one_service, Proxy};

const PREFIX: &str =
    "[services.web.affinity]\nmode = \"prefix\"\ncookie = \"connect.sid\"\nnocache = true\n";
const COOKIE: &str = "[services.web.affinity]\nmode = \"cookie\"\ncookie = \"sticky\"\nsecure = true\nmax_age = \"1h\"\nsame_site = \"Strict\"\n";

#[tokio::test]
async fn a_session_stays_on_one_replica_and_counts_to_100() {
    let (a, b) = (Backend::spawn("a").await, Backend::spawn("b").await);
    let p = Proxy::start(&one_service(&[&a, &b], PREFIX)).await;
    let mut c = p.client();
    let first = c.get("/").await.unwrap();
    let server = first.server().to_string();
    assert_eq!(first.visits(), 1);
    for n in 2..=100 {
        let r = c.get("/").await.unwrap();
        assert_eq!(r.server(), server, "request {n} left its replica");
        assert_eq!(
            r.visits(),
            n,
            "the session's counter must grow without a gap"
        );
    }
    // Without cookies both replicas get traffic, and every visit is a new session.
    let mut seen = HashMap::new();
    let mut anon = Client::without_cookies(p.addr());
    for _ in 0..20 {
        let r = anon.get("/").await.unwrap();
        assert_eq!(r.visits(), 1);
        *seen.entry(r.server().to_string()).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[tokio::test]
async fn prefix_mode_shows_the_app_exactly_its_own_cookie() {
    let (a, b) = (Backend::spawn("a").await, Backend::spawn("b").await);
    let p = Proxy::start(&one_service(&[&a, &b], PREFIX)).await;
    let mut c = p.client();
    let first = c.get("/?format=json").await.unwrap();
    let session = first.json()["session"].as_str().unwrap().to_string();
    let set = first.set_cookies();
    assert_eq!(set.len(), 1);
    let (key, app) = set[0]
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("connect.sid=")
        .split_once('~')
        .unwrap();
    assert_eq!(app, session, "the client holds <key>~<app value>");
    assert!(
        !key.contains("127.0.0.1") && !set[0].contains(&a.addr.port().to_string()),
        "the key reveals no address: {}",
        set[0]
    );
    assert!(
        first.headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("no-cache=\"set-cookie\""),
        "nocache"
    );
    let second = c.get("/?format=json").await.unwrap();
    assert_eq!(
        second.json()["headers"]["cookie"],
        format!("connect.sid={session}"),
        "the app sees only its own value"
    );
    assert_eq!(second.json()["visits"], 2);
    assert!(
        second.set_cookies().is_empty(),
        "a pinned session gets no new cookie"
    );
}

#[tokio::test]
async fn cookie_mode_sets_the_configured_attributes_and_hides_the_cookie() {
    let (a, b) = (Backend::spawn("a").await, Backend::spawn("b").await);
    let p = Proxy::start(&one_service(&[&a, &b], COOKIE)).await;
    let mut c = p.client();
    let r = c.get("/?format=json").await.unwrap();
    let sticky = r
        .set_cookies()
        .into_iter()
        .find(|s| s.starts_with("sticky="))
        .expect("sticky cookie");
    for attr in [
        "Path=/",
        "Max-Age=3600",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
    ] {
        assert!(sticky.contains(attr), "{attr} missing from {sticky}");
    }
    let server = r.server().to_string();
    for _ in 0..10 {
        let r = c.get("/?format=json").await.unwrap();
        assert_eq!(r.server(), server);
        let seen = r.json()["headers"]["cookie"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(
            !seen.contains("sticky="),
            "the app must not see Tether's cookie: {seen}"
        );
    }
}

/// Tampered values are treated as absent: balanced normally, a fresh cookie, no stray connection.
#[tokio::test]
async fn tampered_cookies_are_balanced_normally_and_reach_nothing_else() {
    let (a, b) = (Backend::spawn("a").await, Backend::spawn("b").await);
    let sink = Sink::spawn().await;
    let other = Backend::spawn("other").await;
    let toml = format!(
        "{}\n[routes.other]\nrule = \"PathPrefix(`/other`)\"\nservice = \"other\"\n[services.other]\n{}\n[services.other.affinity]\nmode = \"cookie\"\ncookie = \"sticky\"\n",
        one_service(&[&a, &b], COOKIE),
        crate::support::servers(&[&other])
    );
    let p = Proxy::start(&toml).await;
    let mut c = p.client();
    c.get("/").await.unwrap();
    let good = c.jar["sticky"].clone();
    let mut o = p.client();
    o.get("/other").await.unwrap();
    let other_service_cookie = o.jar["sticky"].clone();
    let mut flipped = good.clone().into_bytes();
    flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
    let cases = [
        String::from_utf8(flipped).unwrap(),
        other_service_cookie,
        "x".repeat(8 * 1024),
        format!("http://{}", sink.addr),
        "http://127.0.0.1:2375".to_string(),
        good[..good.len() - 1].to_string(),
    ];
    let before = a.requests() + b.requests();
    for (i, v) in cases.iter().enumerate() {
        let mut t = Client::without_cookies(p.addr());
        t.jar.insert("sticky".into(), v.clone());
        let r = t.get("/").await.unwrap();
        assert_eq!(r.status, 200, "case {i}");
        assert!(
            ["a", "b"].contains(&r.server()),
            "case {i} reached {:?}",
            r.server()
        );
        let fresh = r
            .set_cookies()
            .into_iter()
            .find(|s| s.starts_with("sticky="))
            .unwrap_or_else(|| panic!("case {i}: no fresh cookie"));
        assert_ne!(fresh.split(';').next().unwrap(), format!("sticky={v}"));
    }
    assert_eq!(
        a.requests() + b.requests() - before,
        cases.len() as u64,
        "every request reached exactly a or b"
    );
    assert_eq!(
        sink.accepted(),
        0,
        "no connection went to the address in a cookie"
    );
    assert_eq!(
        other.requests(),
        1,
        "another service's cookie does not route there"
    );
}

#[tokio::test]
async fn a_prefix_that_was_tampered_with_is_stripped_and_repinned() {
    let (a, b) = (Backend::spawn("a").await, Backend::spawn("b").await);
    let p = Proxy::start(&one_service(&[&a, &b], PREFIX)).await;
    let mut t = Client::without_cookies(p.addr());
    t.jar.insert(
        "connect.sid".into(),
        "forgedforgedforgedforged~s%3Aapp".into(),
    );
    let r = t.get("/?format=json").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["headers"]["cookie"],
        "connect.sid=s%3Aapp",
        "the forged prefix never reaches the app"
    );
    assert!(!r.set_cookies().is_empty(), "the session gets a valid pin");
}

#[tokio::test]
async fn when_the_pinned_server_stops_the_session_moves_with_a_new_cookie() {
    let (mut a, mut b) = (Backend::spawn("a").await, Backend::spawn("b").await);
    let p = Proxy::start(&one_service(&[&a, &b], COOKIE)).await;
    let mut c = p.client();
    let first = c.get("/").await.unwrap();
    let old = c.jar["sticky"].clone();
    let pinned = first.server().to_string();
    if pinned == "a" {
        a.stop().await
    } else {
        b.stop().await
    }
    let r = c.get("/").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_ne!(r.server(), pinned);
    assert_ne!(c.jar["sticky"], old, "a new cookie pins the new server");
    let again = c.get("/").await.unwrap();
    assert_eq!(again.server(), r.server(), "and the session stays there");
}

#[tokio::test]
async fn with_on_missing_fail_a_vanished_server_gives_503() {
    let (mut a, mut b) = (Backend::spawn("a").await, Backend::spawn("b").await);
    let p = Proxy::start(&one_service(
        &[&a, &b],
        &format!("{COOKIE}on_missing = \"fail\"\n"),
    ))
    .await;
    let mut c = p.client();
    let pinned = c.get("/").await.unwrap().server().to_string();
    if pinned == "a" {
        a.stop().await
    } else {
        b.stop().await
    }
    let r = c.get("/").await.unwrap();
    assert_eq!(r.status, 503);
    assert!(r.body.contains("holding this session"), "{}", r.body);
    // A new visitor is still served by the remaining replica.
    let fresh = Client::without_cookies(p.addr()).get("/").await.unwrap();
    assert_eq!(fresh.status, 200);
}

#[tokio::test]
async fn sessions_survive_a_reload_that_removes_another_server() {
    let (a, b, c3) = (
        Backend::spawn("a").await,
        Backend::spawn("b").await,
        Backend::spawn("c").await,
    );
    let p = Proxy::start(&one_service(&[&a, &b, &c3], COOKIE)).await;
    let mut clients = Vec::new();
    for _ in 0..12 {
        let mut c = p.client();
        let s = c.get("/").await.unwrap().server().to_string();
        clients.push((c, s));
    }
    // Remove c from the configuration: sessions on a and b keep their server and counter.
    p.reload(&one_service(&[&a, &b], COOKIE)).await;
    for (c, s) in clients.iter_mut() {
        let r = c.get("/").await.unwrap();
        if s != "c" {
            assert_eq!(r.server(), s.as_str());
            assert_eq!(r.visits(), 2);
        } else {
            assert!(["a", "b"].contains(&r.server()));
        }
    }
}
