//! One certificate for every replica: put through one replica's admin API into etcd, it is
//! served by all three (each from its own watch), a renewal replaces it on all, a delete
//! withdraws it from all. This is how an operator rotates a certificate everywhere: one `PUT`.

use std::time::{Duration, Instant};

use tether_testkit::etcd::Etcd;
use tether_testkit::tls::{connect, TestCert};
use tether_testkit::TempDir;

use crate::support::{median_max, Replica};

/// Wait until `r` presents `want` (`None`: fails the handshake) to a client naming `sni`; the
/// time from `since`.
async fn serves(r: &Replica, sni: &str, want: Option<&[u8]>, since: Instant) -> Duration {
    let addr = r.websecure.expect("a TLS entrypoint");
    let what = format!("{} serving the certificate expected for {sni}", r.name);
    tether_testkit::wait_for_value(&what, Duration::from_secs(5), || async {
        let got = connect(addr, Some(sni), &["http/1.1"])
            .await
            .ok()
            .map(|h| h.cert);
        if got.as_deref() == want {
            Ok(since.elapsed())
        } else {
            Err(r.log())
        }
    })
    .await
}

#[tokio::test]
async fn a_certificate_put_on_one_replica_is_served_by_all_and_renewed_on_all() {
    let Some(etcd) = Etcd::start("certificates on every replica").await else {
        return;
    };
    let store = format!("etcd://{}/certs", etcd.endpoint());
    let replicas: Vec<Replica> = ["a", "b", "c"]
        .iter()
        .map(|n| Replica::start_tls(n, &store))
        .collect();
    let dir = TempDir::new("tether-replica-certs");
    let mut lags = Vec::new();
    let mut api = replicas[0].api();
    for (round, stem) in ["first", "renewed"].iter().enumerate() {
        let cert = TestCert::write(dir.path(), stem, &["shop.test"]);
        let started = Instant::now();
        let r = api.put("/api/certificates/shop", cert.json()).await;
        assert_eq!(r.status, if round == 0 { 201 } else { 200 }, "{}", r.body);
        for rep in &replicas {
            lags.push(serves(rep, "shop.test", Some(&cert.der), started).await);
        }
        // Every replica lists the same certificate, by serial.
        let mut serials = Vec::new();
        for rep in &replicas {
            let list = rep.api().get("/api/certificates").await.json();
            serials.push(list[0]["serial"].clone());
            assert_eq!(list[0]["source"], "etcd", "{list}");
        }
        assert!(serials.windows(2).all(|w| w[0] == w[1]), "{serials:?}");
    }
    let (median, max) = median_max(lags);
    println!(
        "a certificate put on replica a, served by a, b and c: median {median:?}, max {max:?}"
    );
    let started = Instant::now();
    let r = replicas[2].api().delete("/api/certificates/shop").await;
    assert!(r.status.is_success(), "{}", r.body);
    for rep in &replicas {
        serves(rep, "shop.test", None, started).await;
    }
}
