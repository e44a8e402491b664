//! A Swarm service declaring a TCP router in its labels, reached through Tether's TCP
//! entrypoint (declared with `--entrypoint`): each connection piped to one of its tasks over
//! the overlay, and both tasks answer.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tether_testkit::swarm::Swarm;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::key_file;

#[tokio::test]
async fn a_labelled_tcp_service_is_reached_through_tethers_tcp_entrypoint() {
    let Some(swarm) = Swarm::get("tcp service").await else {
        return;
    };
    let (_dir, key) = key_file();
    let svc = swarm
        .service(
            "raw",
            &[
                "--replicas",
                "2",
                "--label",
                "tether.tcp.routers.raw.rule=HostSNI(`*`)",
                "--label",
                "tether.tcp.routers.raw.entrypoints=raw",
                "--label",
                "tether.tcp.services.raw.port=8080",
                "--label",
                "tether.tcp.services.raw.balance=round_robin",
            ],
        )
        .await;
    let tether = swarm
        .tether_with_ports(
            "proxy",
            Some(&key),
            &["--entrypoint", "raw=0.0.0.0:7000,tcp"],
            &[7000],
        )
        .await;
    swarm.converged(&svc, 2, Duration::from_secs(90)).await;
    let at = tether.ports[0];
    // Each connection is one whole HTTP exchange piped to a task; round robin reaches both.
    let mut answered = BTreeSet::new();
    let end = Instant::now() + Duration::from_secs(60);
    while answered.len() < 2 {
        assert!(
            Instant::now() < end,
            "only {answered:?} answered through {at}"
        );
        let Ok(mut c) = tokio::net::TcpStream::connect(at).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let _ = c
            .write_all(b"GET / HTTP/1.1\r\nHost: raw\r\nConnection: close\r\n\r\n")
            .await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out);
        if !text.starts_with("HTTP/1.1 200") {
            // Not routed yet (the table comes with the first poll), or a task not yet healthy.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let host = text
            .lines()
            .find_map(|l| l.strip_prefix("Hostname: "))
            .unwrap_or_default()
            .trim()
            .to_string();
        assert!(!host.is_empty(), "whoami names its task: {text}");
        answered.insert(host);
    }
}
