//! The `tether` binary itself: `check`, `demo`, `--help`, and `run` ending on SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use tether_testkit::tls::TestCert;
use tether_testkit::{Client, TempDir};
use tokio::io::AsyncBufReadExt;

const BIN: &str = env!("CARGO_BIN_EXE_tether");

#[test]
fn check_reports_each_error_with_file_line_and_field() {
    let dir = TempDir::new("tether-check");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[entrypoints]\nweb = \"127.0.0.1:0\"\n\n[routes.web]\nrule = \"Host(`a.com`) &&\"\nservice = \"nope\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let p = path.display();
    assert!(
        err.contains(&format!(
            "{p}:5: routes.web.rule: column 17: rule ends early"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{p}:6: routes.web.service: no service named \"nope\""
        )),
        "{err}"
    );
}

#[test]
fn check_accepts_every_example() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let mut n = 0;
    for e in std::fs::read_dir(examples).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "toml") {
            // An example with certificates is checked beside certificates made for it (no key
            // is committed): the same file, in a directory that has them.
            let text = std::fs::read_to_string(&path).unwrap();
            let scratch = TempDir::new("tether-example");
            let checked = if text.contains("[[tls.certificates]]") {
                for line in text.lines() {
                    let Some(cert) = line.strip_prefix("cert_file = \"") else {
                        continue;
                    };
                    let cert = std::path::Path::new(cert.trim_end_matches('"'));
                    let dir = scratch.path().join(cert.parent().unwrap());
                    std::fs::create_dir_all(&dir).unwrap();
                    let stem = cert.file_stem().unwrap().to_str().unwrap();
                    TestCert::write(&dir, stem, &[&format!("{stem}.example.com")]);
                }
                let copy = scratch.path().join(path.file_name().unwrap());
                std::fs::write(&copy, &text).unwrap();
                copy
            } else {
                path.clone()
            };
            let out = Command::new(BIN)
                .args(["check", "--config"])
                .arg(&checked)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            n += 1;
        }
    }
    assert!(n >= 3, "found only {n} examples");
}

#[test]
fn check_names_a_certificate_that_cannot_serve() {
    let dir = TempDir::new("tether-check-tls");
    let good = TestCert::write(dir.path(), "good", &["a.test"]);
    let other = TestCert::write(dir.path(), "other", &["b.test"]);
    let cfg = dir.path().join("tether.toml");
    std::fs::write(
        &cfg,
        "[entrypoints]\nwebsecure = { address = \"127.0.0.1:0\", tls = true }\n\
         [[tls.certificates]]\ncert_file = \"good.crt\"\nkey_file = \"good.key\"\n\
         [[tls.certificates]]\ncert_file = \"good.crt\"\nkey_file = \"other.key\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("tls.certificates[0]: OK (a.test;"),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "tls.certificates[1]: {} is not the key of {}",
            other.key_file.display(),
            good.cert_file.display()
        )),
        "{stderr}"
    );
    // Start refuses it the same way, before anything listens.
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&cfg)
        .arg("--state-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not the key of"), "{stderr}");
}

#[test]
fn help_explains_every_command() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["run", "check", "whoami", "demo", "docs/configuration.md"] {
        assert!(help.contains(cmd), "--help does not mention {cmd}:\n{help}");
    }
}

/// `tether demo` runs the seed's scenario: service1 sticky, service2 round robin.
#[tokio::test]
async fn the_demo_shows_sticky_and_round_robin_side_by_side() {
    let dir = TempDir::new("tether-demo");
    let mut child = tokio::process::Command::new(BIN)
        .args(["demo", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let find = async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if l.contains("running on http://") {
                return l;
            }
        }
        panic!("the demo ended without printing its address");
    };
    let line = tokio::time::timeout(Duration::from_secs(20), find)
        .await
        .expect("demo did not start");
    let addr = line
        .rsplit("http://")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut c = Client::new(addr);
    let mut first = String::new();
    for n in 1..=4 {
        let r = c.get("/service1").await.unwrap();
        assert_eq!(r.visits(), n, "service1 counts up on one replica");
        if n == 1 {
            first = r.server().to_string();
        }
        assert_eq!(r.server(), first);
    }
    let mut c = Client::new(addr);
    let mut names = Vec::new();
    for _ in 0..4 {
        let r = c.get("/service2").await.unwrap();
        assert_eq!(
            r.visits(),
            1,
            "service2 is not sticky: every visit is a new session"
        );
        names.push(r.server().to_string());
    }
    assert!(
        names.windows(2).all(|w| w[0] != w[1]),
        "service2 alternates: {names:?}"
    );
    child.kill().await.unwrap();
}

/// `tether run` on SIGTERM (what `docker stop` sends): it stops accepting at once, lets the
/// request in flight finish, then exits cleanly.
#[tokio::test]
async fn sigterm_lets_the_request_in_flight_finish_and_accepts_no_new_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = TempDir::new("tether-sigterm");
    let slow = tether_testkit::Backend::spawn_slow("slow", Duration::from_secs(3)).await;
    let config = dir.path().join("tether.toml");
    std::fs::write(
        &config,
        format!(
            "[entrypoints]\nweb = \"127.0.0.1:0\"\n[affinity]\nkey = \"{}\"\n\
             [routes.slow]\nrule = \"PathPrefix(`/`)\"\nservice = \"slow\"\n\
             [services.slow]\nservers = [{{ name = \"slow\", url = \"{}\" }}]\n",
            "k".repeat(40),
            slow.url()
        ),
    )
    .unwrap();
    let mut child = crate::support::Running::spawn(
        &[
            "run".as_ref(),
            "--drain".as_ref(),
            "10s".as_ref(),
            "--state-dir".as_ref(),
            dir.path().as_os_str(),
            "--config".as_ref(),
            config.as_os_str(),
        ],
        &[],
    );
    let addr = child.addr("listening entrypoint=web").await;

    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let in_flight = tokio::spawn(async move {
        let mut out = Vec::new();
        conn.read_to_end(&mut out).await.unwrap();
        (
            String::from_utf8_lossy(&out).into_owned(),
            std::time::Instant::now(),
        )
    });
    tether_testkit::wait_for("the request at its server", Duration::from_secs(5), || {
        std::future::ready(slow.requests() == 1)
    })
    .await;
    let pid = child.child.id().unwrap().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());

    // New connections are refused while the request is still being served.
    let refused = tether_testkit::wait_for_value(
        "new connections refused after SIGTERM",
        Duration::from_secs(2),
        || async {
            match tokio::net::TcpStream::connect(addr).await {
                Err(_) => Ok(std::time::Instant::now()),
                Ok(_) => Err("a connection was accepted".to_string()),
            }
        },
    )
    .await;
    let (response, answered) = in_flight.await.unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "the request in flight finished: {response}"
    );
    assert!(
        refused < answered,
        "refused new connections before the slow answer came"
    );
    let status = tokio::time::timeout(Duration::from_secs(10), child.child.wait())
        .await
        .expect("tether exits once drained")
        .unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(slow.requests(), 1, "no other request reached the server");
}

/// `tether check` takes `tether run`'s flags: the README's run line with `check` in place of
/// `run` checks what it would serve, the key file included.
#[test]
fn check_takes_the_flags_of_run() {
    let dir = TempDir::new("tether-check-flags");
    let config = dir.path().join("t.toml");
    std::fs::write(&config, "[entrypoints]\nweb = \"127.0.0.1:0\"\n").unwrap();
    let good = dir.path().join("good.key");
    std::fs::write(&good, "k".repeat(48)).unwrap();
    let short = dir.path().join("short.key");
    std::fs::write(&short, "short").unwrap();
    let run_flags = |key: &std::path::Path| {
        let mut c = Command::new(BIN);
        c.args(["check", "--config"])
            .arg(&config)
            .arg("--key-file")
            .arg(key)
            .args([
                "--listen",
                "0.0.0.0:80",
                "--drain",
                "10s",
                "--admin",
                "127.0.0.1:8081",
            ])
            .args(["--access-log", "json", "--state-dir"])
            .arg(dir.path());
        c.output().unwrap()
    };
    let ok = run_flags(&good);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = run_flags(&short);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("--key-file") && err.contains("short.key"),
        "{err}"
    );
}
