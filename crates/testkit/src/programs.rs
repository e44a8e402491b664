//! Real servers the tests put behind Tether, each on a free loopback port and killed on drop:
//! [`Program::redis`] (`redis-server`), [`Program::tls_server`] (`openssl s_server -www`, which
//! answers a GET with a page over its own certificate) and [`Program::haproxy`]. Without the
//! program installed, a test says loudly that it is skipped ([`crate::missing`]; under
//! `CI=true` a failure, since `.ci/run` installs them).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running program; killed on drop.
#[derive(Debug)]
pub struct Program {
    child: Child,
    /// Where it listens (for HAProxy: its first bind).
    pub addr: SocketAddr,
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Is `program` on the PATH? If not, says so ([`crate::missing`]).
pub fn installed(program: &str, package: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        crate::missing(&format!(
            "{program} is not installed (apt-get install {package}; scripts/test installs it)"
        ));
    }
    found
}

/// A port that was free a moment ago, for a program that must be told its port before it
/// starts. Picked at random below Linux's ephemeral range (32768 and up): the kernel gives those
/// to every `bind` to port 0 and every outgoing connection, of the tests running beside this one,
/// so a port from there may be taken again before the program binds it (an ACME test's
/// entrypoint met one, in CI).
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let port = fastrand::u16(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Program {
    /// `redis-server` on a free port, persisting nothing; `None` if it is not installed.
    pub async fn redis() -> Option<Program> {
        if !installed("redis-server", "redis-server") {
            return None;
        }
        Some(
            Self::start_on(|port| {
                let mut c = Command::new("redis-server");
                c.args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ]);
                c
            })
            .await,
        )
    }

    /// `openssl s_server` serving `cert` and `key` (PEM files) with `-www`; `None` if openssl
    /// is not installed.
    pub async fn tls_server(cert: &Path, key: &Path) -> Option<Program> {
        if !installed("openssl", "openssl") {
            return None;
        }
        let (cert, key) = (cert.to_path_buf(), key.to_path_buf());
        Some(
            Self::start_on(move |port| {
                let mut c = Command::new("openssl");
                c.args(["s_server", "-quiet", "-www", "-accept"])
                    .arg(format!("127.0.0.1:{port}"))
                    .arg("-cert")
                    .arg(&cert)
                    .arg("-key")
                    .arg(&key);
                c
            })
            .await,
        )
    }

    /// `haproxy -f config`, where `config` (a function of a free port) binds that port first;
    /// `None` if HAProxy is not installed.
    pub async fn haproxy(dir: &Path, config: impl Fn(u16) -> String) -> Option<Program> {
        if !installed("haproxy", "haproxy") {
            return None;
        }
        let dir = dir.to_path_buf();
        Some(
            Self::start_on(move |port| {
                let path = dir.join(format!("haproxy-{port}.cfg"));
                std::fs::write(&path, config(port)).expect("writing haproxy.cfg");
                let mut c = Command::new("haproxy");
                c.arg("-db").arg("-f").arg(path);
                c
            })
            .await,
        )
    }

    /// Start `command(port)` on a free port until it accepts connections there (another port if
    /// it exits at once, which a port taken meanwhile makes it do).
    async fn start_on(command: impl Fn(u16) -> Command) -> Program {
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut child = command(port)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("starting the program");
            let end = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = std::io::Read::read_to_string(&mut e, &mut err);
                    }
                    last = format!("exited ({status}): {err}");
                    break;
                }
                if tokio::net::TcpStream::connect(addr).await.is_ok() {
                    return Program { child, addr };
                }
                assert!(Instant::now() < end, "not listening on {addr} within 10 s");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        panic!("the program did not start: {last}");
    }
}
