//! `tether upgrade` under TCP load: connections piped before the upgrade stay on the old
//! process until they end or the drain deadline passes (none is cut before it), and every new
//! connection during the upgrade is served, by one process or the other.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tether_testkit::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::Running;

const DRAIN: Duration = Duration::from_secs(4);

/// One round trip of `n` bytes on `c`.
async fn round_trip(c: &mut TcpStream, n: usize) -> Result<(), String> {
    let msg = vec![b'e'; n];
    c.write_all(&msg).await.map_err(|e| e.to_string())?;
    let mut back = vec![0; n];
    match tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut back)).await {
        Ok(Ok(_)) if back == msg => Ok(()),
        Ok(Ok(_)) => Err("other bytes came back".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no echo within 5 s".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_under_tcp_load_cuts_no_connection_before_the_drain_deadline() {
    let dir = TempDir::new("tether-upgrade-tcp");
    let echo = tether_testkit::echo_server().await;
    let config = dir.path().join("tether.toml");
    std::fs::write(
        &config,
        format!(
            "[entrypoints]\nweb = \"127.0.0.1:0\"\necho = {{ address = \"127.0.0.1:0\", protocol = \"tcp\" }}\n\
             [affinity]\nkey = \"test-key-test-key-test-key-test-key\"\n\
             [tcp.routers.echo]\nrule = \"HostSNI(`*`)\"\nservice = \"echo\"\n\
             [tcp.services.echo]\nservers = [{{ address = \"{echo}\" }}]\n"
        ),
    )
    .unwrap();
    let drain = format!("{}s", DRAIN.as_secs());
    let mut old = Running::spawn(
        &[
            "run".as_ref(),
            "--takeover".as_ref(),
            "--drain".as_ref(),
            drain.as_ref(),
            "--state-dir".as_ref(),
            dir.path().as_os_str(),
            "--config".as_ref(),
            config.as_os_str(),
        ],
        &[],
    );
    let at = old.addr("listening entrypoint=echo").await;

    // Long connections, open before the upgrade: half finish on their own 1 s after it, the
    // others go on until the old process cuts them at the drain deadline, not before.
    let upgraded: Arc<Mutex<Option<Instant>>> = Arc::default();
    let mut long = Vec::new();
    for i in 0..6 {
        let mut c = TcpStream::connect(at).await.unwrap();
        round_trip(&mut c, 64)
            .await
            .expect("echoed before the upgrade");
        let upgraded = upgraded.clone();
        long.push(tokio::spawn(async move {
            let finishes = i % 2 == 0;
            let mut trips = 0u64;
            loop {
                let since = *upgraded.lock().unwrap();
                if finishes && since.is_some_and(|t| t.elapsed() > Duration::from_secs(1)) {
                    return (finishes, trips, None);
                }
                if let Err(e) = round_trip(&mut c, 64).await {
                    return (finishes, trips, Some((Instant::now(), since, e)));
                }
                trips += 1;
                tokio::time::sleep(Duration::from_millis(20)).await; // pacing the trips, not a wait
            }
        }));
    }
    // New connections all along.
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(Mutex::new(Vec::new())),
    );
    let fresh = {
        let (stop, served, failed) = (stop.clone(), served.clone(), failed.clone());
        tokio::spawn(async move {
            while !stop.load(Relaxed) {
                let r = match TcpStream::connect(at).await {
                    Ok(mut c) => round_trip(&mut c, 1000).await,
                    Err(e) => Err(e.to_string()),
                };
                match r {
                    Ok(()) => served.fetch_add(1, Relaxed),
                    Err(e) => {
                        failed.lock().unwrap().push(e);
                        0
                    }
                };
            }
        })
    };
    tether_testkit::wait_for("new connections served", Duration::from_secs(10), || {
        std::future::ready(served.load(Relaxed) > 50)
    })
    .await;

    *upgraded.lock().unwrap() = Some(Instant::now());
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["upgrade", "--state-dir"])
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The successor, started by the old process rather than by this test: stopped when the test
    // ends, whatever its outcome, so that it does not outlive it.
    let _successor = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("STARTED ")?.parse::<u32>().ok())
        .map(Successor);
    let status = tokio::time::timeout(DRAIN + Duration::from_secs(10), old.child.wait())
        .await
        .expect("the old process exits once drained")
        .unwrap();
    assert!(status.success(), "{status}\n{}", old.log());
    let before = served.load(Relaxed);
    tether_testkit::wait_for("the new process serves", Duration::from_secs(10), || {
        std::future::ready(served.load(Relaxed) > before + 50)
    })
    .await;
    stop.store(true, Relaxed);
    fresh.await.unwrap();
    let mut cut = 0;
    for l in long {
        let (finishes, trips, ended) = l.await.unwrap();
        match ended {
            None => assert!(
                finishes && trips > 10,
                "finished on its own after {trips} trips"
            ),
            Some((when, since, e)) => {
                assert!(!finishes, "a connection that was to finish was cut: {e}");
                let since = since.expect("cut only after the upgrade began");
                let after = when.duration_since(since);
                // The old process counts its drain from the moment it is told to stop, a
                // little after the upgrade began here.
                assert!(after >= DRAIN, "cut {after:?} after the upgrade began, before the drain deadline ({DRAIN:?}): {e}");
                cut += 1;
            }
        }
    }
    assert_eq!(cut, 3, "the long connections were cut at the deadline");
    let failed = failed.lock().unwrap().clone();
    println!(
        "upgrade under TCP load: {} new connections served, {} failed; 3 long connections cut at the drain deadline",
        served.load(Relaxed),
        failed.len()
    );
    assert!(failed.is_empty(), "new connections failed: {failed:?}");
}

/// A process this test did not start itself, sent SIGTERM when dropped.
struct Successor(u32);

impl Drop for Successor {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.0.to_string()])
            .status();
    }
}
