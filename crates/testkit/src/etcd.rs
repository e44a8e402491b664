//! A real etcd for tests (Debian's `etcd-server`): one member on 127.0.0.1 with a temporary data
//! directory, stopped when the handle drops, and restartable on the same ports and data.
//!
//! Without the `etcd` binary the tests that need it print a loud SKIPPED line and pass, except
//! under `CI=true`, where a missing etcd fails them.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::{wait_for, Client, TempDir};

/// A running (or stopped) etcd member.
#[derive(Debug)]
pub struct Etcd {
    pub client: SocketAddr,
    peer: SocketAddr,
    dir: TempDir,
    child: Option<Child>,
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

impl Etcd {
    /// Start etcd; `None` (after a loud message) when it is not installed. Under `CI=true` a
    /// missing etcd is a failure.
    pub async fn start(test: &str) -> Option<Etcd> {
        let found = Command::new("etcd")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            let msg = format!("no etcd binary (Debian's etcd-server package): {test} needs one");
            crate::missing(&msg);
            return None;
        }
        // A port found free may be taken before etcd binds it (tests start processes in
        // parallel): an etcd that exits at once is started again on other ports.
        for _ in 0..3 {
            let mut etcd = Etcd {
                client: free_port(),
                peer: free_port(),
                dir: TempDir::new("tether-etcd"),
                child: None,
            };
            if etcd.started(Duration::from_millis(1500)).await {
                etcd.resume().await;
                return Some(etcd);
            }
            etcd.stop();
        }
        panic!("etcd exited at once three times (ports taken?)");
    }

    /// `host:port` for `--store etcd://...`.
    pub fn endpoint(&self) -> String {
        self.client.to_string()
    }

    /// Kill the member (its data stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Recreate it without its data (a container without a volume): same ports, a new cluster.
    pub async fn wipe(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(self.dir.path().join("data"));
        self.resume().await;
    }

    /// Start it and watch it for `grace`: false if it exited in that time (a port was taken).
    async fn started(&mut self, grace: Duration) -> bool {
        self.spawn();
        let end = std::time::Instant::now() + grace;
        while std::time::Instant::now() < end {
            let exited = self
                .child
                .as_mut()
                .is_none_or(|c| c.try_wait().ok().flatten().is_some());
            if exited {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }

    /// Start it again on the same ports and data; returns once it answers `/health`.
    pub async fn resume(&mut self) {
        if self.child.is_none() {
            self.spawn();
        }
        let addr = self.client;
        wait_for("etcd /health", Duration::from_secs(20), || async move {
            let mut c = Client::without_cookies(addr);
            c.get("/health")
                .await
                .is_ok_and(|r| r.status == 200 && r.body.contains("true"))
        })
        .await;
    }

    /// Spawn the etcd process on this member's ports and data.
    fn spawn(&mut self) {
        let (client, peer) = (
            format!("http://{}", self.client),
            format!("http://{}", self.peer),
        );
        let log = std::fs::File::create(self.dir.path().join("etcd.log")).expect("log file");
        let child = Command::new("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("t={peer}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd starts");
        self.child = Some(child);
    }

    /// Compact the history up to `revision` (through etcd's JSON gateway).
    pub async fn compact(&self, revision: u64) {
        let body = format!("{{\"revision\": \"{revision}\", \"physical\": true}}");
        let req = Request::post("/v3/kv/compaction")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("valid request");
        let r = Client::without_cookies(self.client)
            .send(req)
            .await
            .expect("etcd answers");
        assert_eq!(r.status, 200, "compaction: {}", r.body);
    }

    /// The store's current revision (through etcd's JSON gateway).
    pub async fn revision(&self) -> u64 {
        let req = Request::post("/v3/kv/range")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(
                b"{\"key\": \"AA==\", \"count_only\": true}",
            )))
            .expect("valid request");
        let r = Client::without_cookies(self.client)
            .send(req)
            .await
            .expect("etcd answers");
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
        v["header"]["revision"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no revision in {}", r.body))
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}
