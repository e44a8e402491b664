//! `tether upgrade` under continuous load: kept-alive HTTP/1.1 clients, a new connection per
//! request, and an h2 client never see a failed request while a new process takes every
//! listening socket over (the admin API's too); the old process exits once drained.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tether_testkit::{Admin, Backend, Client, TempDir};

use crate::support::Running;

const BIN: &str = env!("CARGO_BIN_EXE_tether");
const TOKEN: &str = "upgrade-test-token";

/// What the load saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    /// h2 requests the server never processed (GOAWAY came first), sent again.
    retried: AtomicU64,
    /// Why they were sent again, each reason once.
    why_retried: Mutex<std::collections::BTreeSet<String>>,
    failed: Mutex<Vec<String>>,
}

impl Tally {
    fn record(&self, what: &str, r: Result<u16, String>) {
        match r {
            Ok(200) => {
                self.ok.fetch_add(1, Relaxed);
            }
            Ok(s) => self
                .failed
                .lock()
                .unwrap()
                .push(format!("{what}: status {s}")),
            Err(e) => self.failed.lock().unwrap().push(format!("{what}: {e}")),
        }
    }
}

/// Requests over one kept-alive connection at a time (a new one when the server closes it).
async fn kept_alive(addr: SocketAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let mut c = Client::new(addr);
    while !stop.load(Relaxed) {
        let r = c.get("/").await.map(|r| r.status.as_u16());
        tally.record("kept-alive", r);
    }
}

/// A new connection for every request.
async fn one_per_connection(addr: SocketAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    while !stop.load(Relaxed) {
        let mut c = Client::new(addr);
        let r = c.get("/").await.map(|r| r.status.as_u16());
        tally.record("new connection", r);
    }
}

/// h2 with prior knowledge: requests on one connection until the server sends GOAWAY, then a
/// new one. A request the server never processed ([`unprocessed`]) is sent again on the next
/// connection, as h2 clients do (RFC 9113 §6.8; browsers); anything else is a failure.
async fn h2(addr: SocketAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    while !stop.load(Relaxed) {
        let tcp = match tokio::net::TcpStream::connect(addr).await {
            Ok(t) => t,
            Err(e) => {
                tally.record("h2 connect", Err(e.to_string()));
                continue;
            }
        };
        let (mut send, conn) =
            match hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
            {
                Ok(x) => x,
                Err(e) => {
                    tally.record("h2 handshake", Err(chain(&e)));
                    continue;
                }
            };
        tokio::spawn(conn);
        while !stop.load(Relaxed) {
            // GOAWAY received: this connection takes no more requests; move on.
            if send.ready().await.is_err() {
                break;
            }
            let req = http::Request::get(format!("http://{addr}/"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let r = match send.send_request(req).await {
                Err(e) if unprocessed(&e) => {
                    tally.retried.fetch_add(1, Relaxed);
                    tally.why_retried.lock().unwrap().insert(chain(&e));
                    break;
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    resp.into_body()
                        .collect()
                        .await
                        .map(|_| status)
                        .map_err(|e| chain(&e))
                }
                Err(e) => Err(chain(&e)),
            };
            tally.record("h2", r);
        }
    }
}

/// Whether the server never processed a request that failed, so that a client may send it again
/// (RFC 9113 §6.8, §8.7): the connection never sent it (hyper's "canceled"); or h2 refused it
/// because the server's GOAWAY had come (a GOAWAY without error: the request was queued as it
/// came, or its stream was above the GOAWAY's last stream id); or the server reset its stream
/// with REFUSED_STREAM. A stream the server went on with is not touched by its GOAWAY: cut off,
/// it ends with an I/O error, which is a failure.
fn unprocessed(e: &hyper::Error) -> bool {
    if e.is_canceled() {
        return true;
    }
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<h2::Error>())
        .is_some_and(|h| {
            (h.is_go_away() && h.is_remote() && h.reason() == Some(h2::Reason::NO_ERROR))
                || (h.is_reset() && h.reason() == Some(h2::Reason::REFUSED_STREAM))
        })
}

/// An error and its causes, one after the other ("http2 error" alone says too little).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// `tether.toml` in `dir` ([`write_config`]), with `workers` serving workers (else the
/// default: one per CPU).
fn write_config(dir: &TempDir, backend: &Backend, workers: Option<usize>) -> std::path::PathBuf {
    let top = workers.map_or(String::new(), |n| format!("workers = {n}\n"));
    crate::support::write_config(dir, backend, &top)
}

/// Listening TCP sockets on `port` (IPv4), of any process.
fn listening_on(port: u16) -> usize {
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(3) == Some(&"0A")
                && f.get(1)
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                    == Some(port)
        })
        .count()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_under_load_fails_no_request_and_the_old_process_exits_once_drained() {
    under_load(None, None).await;
}

/// Four workers hand their four sockets over; a successor with two keeps all four (two each),
/// since closing one would reset the connections queued on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_hand_every_socket_to_a_successor_with_two() {
    under_load(Some(4), Some(2)).await;
}

/// A successor with more workers than its predecessor had binds more sockets beside those it
/// took over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_with_more_workers_adds_sockets() {
    under_load(Some(2), Some(4)).await;
}

/// An upgrade under load, from `before` serving workers to `after` (`None`: one per CPU), the
/// successor's count set in the file it reads.
async fn under_load(before: Option<usize>, after: Option<usize>) {
    let dir = TempDir::new("tether-upgrade");
    let backend = Backend::spawn("app").await;
    let config = write_config(&dir, &backend, before);
    // systemd's readiness socket (Type=notify), as examples/systemd/tether.service runs it.
    let notify_path = dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // As the unit starts it: --takeover with nothing running starts afresh.
    // Worker counts set in the file are the file's, whatever TETHER_WORKERS the suite runs with.
    let remove: &[&str] = if before.is_some() {
        &["TETHER_WORKERS"]
    } else {
        &[]
    };
    let mut old = Running::spawn_without(
        &[
            "run".as_ref(),
            "--takeover".as_ref(),
            "--drain".as_ref(),
            "5s".as_ref(),
            "--admin".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--state-dir".as_ref(),
            dir.path().as_os_str(),
            "--config".as_ref(),
            config.as_os_str(),
        ],
        &[
            ("TETHER_ADMIN_TOKEN", TOKEN.as_ref()),
            ("NOTIFY_SOCKET", notify_path.as_os_str()),
        ],
        remove,
    );
    let web = old.addr("listening entrypoint=web").await;
    // The default: TETHER_WORKERS when the suite runs with it (CI's four-worker pass), else one
    // worker per CPU.
    let cpus = std::env::var("TETHER_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    assert_eq!(
        listening_on(web.port()),
        before.unwrap_or(cpus),
        "one socket per worker"
    );
    let admin_addr = old.addr("admin API listening").await;
    let mut datagram = [0u8; 256];
    let n = notify
        .recv(&mut datagram)
        .expect("READY=1 from the first process");
    assert_eq!(&datagram[..n], b"READY=1\n");
    assert!(old.said("starting afresh"), "{}", old.log());

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut load = Vec::new();
    for _ in 0..8 {
        load.push(tokio::spawn(kept_alive(web, stop.clone(), tally.clone())));
    }
    load.push(tokio::spawn(one_per_connection(
        web,
        stop.clone(),
        tally.clone(),
    )));
    load.push(tokio::spawn(h2(web, stop.clone(), tally.clone())));
    let wait_ok = |n: u64| {
        let tally = tally.clone();
        async move {
            tether_testkit::wait_for("requests served", Duration::from_secs(20), || {
                std::future::ready(tally.ok.load(Relaxed) >= n)
            })
            .await
        }
    };
    wait_ok(500).await;

    // The upgrade, while the load goes on; the successor reads its worker count afresh.
    if after != before {
        write_config(&dir, &backend, after);
    }
    let started = Instant::now();
    let out = tokio::process::Command::new(BIN)
        .args(["upgrade", "--state-dir"])
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        old.log()
    );
    let new_pid: u32 = said
        .lines()
        .find_map(|l| l.strip_prefix("STARTED "))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no STARTED line: {said}"));
    assert!(said.lines().any(|l| l == "DONE"), "{said}");
    // The successor tells systemd it is the service's main process now.
    let n = notify
        .recv(&mut datagram)
        .expect("the successor's notification");
    assert_eq!(
        String::from_utf8_lossy(&datagram[..n]),
        format!("MAINPID={new_pid}\nREADY=1\n")
    );
    let status = tokio::time::timeout(Duration::from_secs(10), old.child.wait())
        .await
        .expect("the old process exits once drained")
        .unwrap();
    let took = started.elapsed();
    assert!(status.success(), "{status}");
    assert!(alive(new_pid), "the new process serves");

    // The new process serves alone now, on the same addresses: on every socket it took over,
    // and on those its more workers added.
    let handed = before.unwrap_or(cpus);
    assert_eq!(
        listening_on(web.port()),
        handed.max(after.unwrap_or(cpus)),
        "sockets after the upgrade"
    );
    let served = tally.ok.load(Relaxed);
    wait_ok(served + 500).await;
    stop.store(true, Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let failed = tally.failed.lock().unwrap().clone();
    let ok = tally.ok.load(Relaxed);
    println!(
        "upgrade under load: {ok} requests, {} failed, {} h2 requests sent again after GOAWAY ({:?}); upgrade asked to old process gone: {took:?}",
        failed.len(),
        tally.retried.load(Relaxed),
        tally.why_retried.lock().unwrap()
    );
    assert!(
        failed.is_empty(),
        "{} failed: {:?}\n{}",
        failed.len(),
        &failed[..failed.len().min(10)],
        old.log()
    );
    let mut a = Admin::new(admin_addr, Some(TOKEN));
    assert_eq!(a.get("/api/version").await.status, 200, "the admin API too");
    let mut c = Client::new(web);
    assert_eq!(c.get("/").await.unwrap().server(), "app");

    // The successor is a `tether run` like any: SIGTERM ends it.
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &new_pid.to_string()])
        .status()
        .unwrap()
        .success());
    tether_testkit::wait_for("the successor stopping", Duration::from_secs(10), || {
        std::future::ready(!alive(new_pid))
    })
    .await;
    drop(dir);
}

#[tokio::test]
async fn a_successor_that_fails_to_start_leaves_the_running_process_serving() {
    let dir = TempDir::new("tether-upgrade-fails");
    // Nothing running: said plainly, naming the socket.
    let out = std::process::Command::new(BIN)
        .args(["upgrade", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("tether.sock") && err.contains("no Tether listening"),
        "{err}"
    );

    let backend = Backend::spawn("app").await;
    let config = write_config(&dir, &backend, None);
    let mut old = Running::run(&dir, &config, &[]);
    let web = old.addr("listening entrypoint=web").await;
    // The control socket is ready once READY would be sent: wait for the file.
    let sock = dir.path().join("tether.sock");
    tether_testkit::wait_for("the control socket", Duration::from_secs(10), || {
        std::future::ready(sock.exists())
    })
    .await;
    let out = tokio::process::Command::new(BIN)
        .args(["upgrade", "--binary", "/bin/false", "--state-dir"])
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("STARTED"), "{said}");
    assert!(
        err.contains("exited") && err.contains("keeps serving"),
        "{said}{err}"
    );
    let mut c = Client::new(web);
    assert_eq!(c.get("/").await.unwrap().server(), "app", "still serving");
    assert!(old.child.try_wait().unwrap().is_none(), "still running");
}

/// The systemd unit's commands use flags the binary has (clap stops at `--help` only after
/// every flag before it parsed).
#[test]
fn the_systemd_example_runs_commands_the_binary_accepts() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/systemd/tether.service"
    ))
    .unwrap();
    for key in ["ExecStart=", "ExecReload="] {
        let line = unit
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key}"));
        let args: Vec<&str> = line.split_whitespace().skip(1).collect();
        let out = std::process::Command::new(BIN)
            .args(&args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{key}{line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(unit.contains("Type=notify") && unit.contains("NotifyAccess=all"));
}
