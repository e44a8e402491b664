//! Hot reload: valid edits swap the table under load with no failed request; invalid edits are
//! refused with the file, line and field, and the previous table keeps serving.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tether_testkit::{wait_for, wait_until, Backend, Client};

use crate::support::{servers, Proxy, KEY, WEB};

/// Stable routes /stable1 and /stable2, plus routes /extra-0 .. /extra-{n-1}.
fn config(stable: &[&Backend], extra: usize) -> String {
    let mut s = format!(
        "{WEB}{KEY}[routes.stable1]\nrule = \"PathPrefix(`/stable1`)\"\nservice = \"stable\"\n\
         [routes.stable2]\nrule = \"Path(`/stable2`) || Host(`stable.example`)\"\nservice = \"stable\"\n\
         [services.stable]\n{}\n[services.stable.affinity]\nmode = \"cookie\"\n",
        servers(stable)
    );
    for i in 0..extra {
        s.push_str(&format!(
            "[routes.extra-{i}]\nrule = \"PathPrefix(`/extra-{i}/`)\"\nservice = \"stable\"\n"
        ));
    }
    s
}

#[tokio::test]
async fn fifty_rewrites_under_load_fail_no_request_on_stable_routes() {
    let (a, b) = (Backend::spawn("a").await, Backend::spawn("b").await);
    let p = Proxy::start(&config(&[&a, &b], 0)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for i in 0..4 {
        let (addr, stop, ok, failed) = (p.addr(), stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            // Half the clients keep sessions, half reconnect per request.
            let mut c = Client::new(addr);
            while !stop.load(SeqCst) {
                if i % 2 == 1 {
                    c = Client::new(addr);
                }
                let path = if i < 2 { "/stable1/x" } else { "/stable2" };
                match c.get(path).await {
                    Ok(r) if r.status == 200 => ok.fetch_add(1, SeqCst),
                    Ok(r) => panic!("{path}: {} {}", r.status, r.body),
                    Err(e) => {
                        eprintln!("{path}: {e}");
                        failed.fetch_add(1, SeqCst)
                    }
                };
                tokio::time::sleep(Duration::from_millis(2)).await; // pacing, not synchronisation
            }
        }));
    }
    let start = Instant::now();
    let mut extra_seen = 0;
    for round in 0..50 {
        let extra = (round * 7 + 7) % 11; // routes come and go; never the same file twice in a row
        p.reload(&config(&[&a, &b], extra)).await;
        if extra > 0 {
            let r = Client::new(p.addr())
                .get(&format!("/extra-{}/x", extra - 1))
                .await
                .unwrap();
            assert_eq!(r.status, 200, "a route added by reload {round} is served");
            extra_seen += 1;
        }
        let gone = Client::new(p.addr())
            .get(&format!("/extra-{extra}/x"))
            .await
            .unwrap();
        assert_eq!(
            gone.status, 404,
            "a route removed by reload {round} is gone"
        );
        // Spread the 50 rewrites over about 20 s.
        let due = Duration::from_millis(400 * (round as u64 + 1));
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            tokio::time::sleep(wait).await; // pacing the edits, not waiting for a condition
        }
    }
    stop.store(true, SeqCst);
    for l in load {
        l.await.unwrap();
    }
    assert!(extra_seen > 30);
    assert_eq!(failed.load(SeqCst), 0, "requests failed during reloads");
    assert!(
        ok.load(SeqCst) > 500,
        "only {} requests ran",
        ok.load(SeqCst)
    );
}

#[tokio::test]
async fn an_invalid_edit_is_refused_with_file_line_and_field_and_the_old_table_serves() {
    let a = Backend::spawn("a").await;
    let p = Proxy::start(&config(&[&a], 1)).await;
    let good_version = p.version();
    let broken = config(&[&a], 1).replace("PathPrefix(`/extra-0/`)", "PathPrefx(`/extra-0/`)");
    let line = broken
        .lines()
        .position(|l| l.contains("PathPrefx"))
        .unwrap()
        + 1;
    p.write(&broken);
    let status = || p.instance.control.status();
    wait_until(Duration::from_secs(5), || async {
        status().errors.contains_key("file")
    })
    .await;
    let errors = status().errors["file"].join("\n");
    let want =
        format!("tether.toml:{line}: routes.extra-0.rule: column 1: unknown matcher \"PathPrefx\"");
    assert!(errors.contains(&want), "expected {want:?} in {errors}");
    assert_eq!(
        p.version(),
        good_version,
        "the previous table keeps serving"
    );
    let mut c = p.client();
    assert_eq!(c.get("/extra-0/").await.unwrap().status, 200);
    assert_eq!(c.get("/stable1").await.unwrap().status, 200);
    // A fix is applied and clears the error.
    p.reload(&config(&[&a], 2)).await;
    assert!(status().errors.is_empty());
    assert_eq!(c.get("/extra-1/").await.unwrap().status, 200);
}

#[tokio::test]
async fn requests_in_flight_finish_on_the_table_they_started_with() {
    let a = Backend::spawn("a").await;
    let p = Proxy::start(&config(&[&a], 1)).await;
    let addr = p.addr();
    let slow = tokio::spawn(async move { Client::new(addr).get("/extra-0/?sleep=700ms").await });
    wait_until(Duration::from_secs(5), || async { a.requests() == 1 }).await;
    p.reload(&config(&[&a], 0)).await; // removes /extra-0 while its request is in flight
    let r = slow.await.unwrap().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(p.client().get("/extra-0/").await.unwrap().status, 404);
}

/// An editor or deploy tool that truncates the file and then writes it must not make Tether
/// apply an empty table in between: every route would answer 404.
#[tokio::test]
async fn a_file_truncated_mid_save_does_not_empty_the_table() {
    let a = Backend::spawn("a").await;
    let p = Proxy::start(&config(&[&a], 1)).await;
    let good_version = p.version();
    let swaps = p.instance.control.status().swaps;
    p.write("");
    // The empty file is refused like an invalid one: reported in the status, never applied.
    wait_for(
        "the empty file reported",
        Duration::from_secs(5),
        || async {
            p.instance
                .control
                .status()
                .errors
                .get("file")
                .is_some_and(|e| e.iter().any(|m| m.contains("the file is empty")))
        },
    )
    .await;
    let mut c = p.client();
    assert_eq!(c.get("/stable1").await.unwrap().status, 200);
    assert_eq!(p.version(), good_version);
    assert_eq!(
        p.instance.control.status().swaps,
        swaps,
        "nothing was applied"
    );
    // The save completes with the same content as before: applied again, the report cleared.
    p.write(&config(&[&a], 1));
    wait_for("the report cleared", Duration::from_secs(5), || async {
        p.instance.control.status().errors.is_empty()
    })
    .await;
    assert_eq!(p.version(), good_version);
    p.reload(&config(&[&a], 2)).await;
    assert_eq!(c.get("/extra-1/").await.unwrap().status, 200);
}
