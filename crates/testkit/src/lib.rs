//! Test helpers, all on 127.0.0.1 with ports chosen by the kernel:
//! [`Backend`] (a whoami server you can stop), [`Sink`] (a listener that only counts connections,
//! to prove nothing reached it), [`Client`] (HTTP/1.1 keep-alive with a cookie jar), [`TempDir`],
//! and [`wait_until`] to await a condition with a deadline instead of sleeping. [`Admin`] talks
//! to the admin API, [`etcd::Etcd`] runs a real etcd, [`relay::Relay`] cuts a TCP path on demand.

mod client;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tether_whoami::{Stats, Whoami};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub mod acme;
pub mod admin;
pub mod docker;
pub mod etcd;
pub mod h2raw;
pub mod programs;
pub mod raw;
pub mod recorder;
pub mod relay;
pub mod swarm;
pub mod tls;

pub use admin::Admin;
pub use client::{Client, Reply};

/// A whoami server on 127.0.0.1. Stopped (listener and connections closed) on drop.
#[derive(Debug)]
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    task: Option<JoinHandle<()>>,
}

impl Backend {
    pub async fn spawn(name: &str) -> Backend {
        Self::spawn_with(Whoami::new(name)).await
    }

    /// A backend that answers every request `delay` late.
    pub async fn spawn_slow(name: &str, delay: Duration) -> Backend {
        let mut id = Whoami::new(name);
        id.delay = delay;
        Self::spawn_with(id).await
    }

    async fn spawn_with(id: Whoami) -> Backend {
        let l = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = l.local_addr().expect("local addr");
        let stats = Arc::new(Stats::default());
        let name = id.name.clone();
        let task = tokio::spawn(tether_whoami::serve(l, id, stats.clone()));
        Backend {
            name,
            addr,
            stats,
            task: Some(task),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> u64 {
        self.stats.requests.load(SeqCst)
    }

    /// Stop serving: the port refuses connections and open ones close.
    pub async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
        // The listener is closed once the aborted task is dropped; confirm before returning.
        wait_until(Duration::from_secs(5), || async {
            tokio::net::TcpStream::connect(self.addr).await.is_err()
        })
        .await;
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// A TCP echo server on loopback: what comes in goes back, until the client's FIN (a
/// half-close is passed on as the copy ends). It runs until the test's runtime ends.
pub async fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// A listener that accepts and counts connections and never answers.
#[derive(Debug)]
pub struct Sink {
    pub addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Sink {
    pub async fn spawn() -> Sink {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                count.fetch_add(1, SeqCst);
                held.push(s);
            }
        });
        Sink {
            addr,
            accepted,
            task,
        }
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(SeqCst)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A fresh directory under the system's temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Poll `cond` every 10 ms until it holds; panics when `deadline` passes.
pub async fn wait_until<F, Fut>(deadline: Duration, cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for("condition", deadline, cond).await
}

/// [`wait_until`], naming `what` was awaited when the deadline passes.
pub async fn wait_for<F, Fut>(what: &str, deadline: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for_value(what, deadline, || {
        let held = cond();
        async move {
            if held.await {
                Ok(())
            } else {
                Err("no".to_string())
            }
        }
    })
    .await
}

/// Poll `probe` every 10 ms until it gives `Ok(value)`, and return the value; panics when
/// `deadline` passes, with what `what` was and the last `Err` the probe gave (what it saw).
pub async fn wait_for_value<T, F, Fut>(what: &str, deadline: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let end = Instant::now() + deadline;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(last) => assert!(
                Instant::now() < end,
                "{what}: not within {deadline:?} (last: {last})"
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A part a test needs is missing (`what`: why, and what to install): a loud SKIPPED line, or,
/// under `CI=true`, a failure, since CI installs every part.
pub fn missing(what: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what}; under CI=true this is a failure");
    }
    eprintln!("\n!!!!!!!! SKIPPED: {what} !!!!!!!!\n");
}
