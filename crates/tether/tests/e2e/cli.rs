//! The `tether` binary itself: `check`, `demo` and `--help`.

use std::process::{Command, Stdio};
use std::time::Duration;

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
            let out = Command::new(BIN)
                .args(["check", "--config"])
                .arg(&path)
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
