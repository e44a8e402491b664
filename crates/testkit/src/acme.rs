//! A real ACME certificate authority for tests: Pebble, Let's Encrypt's own test server (Debian's
//! `pebble`), one per test on loopback ports of its own, killed on drop. It validates HTTP-01 and
//! TLS-ALPN-01 for real, on the ports the test gives (Tether's entrypoints), rejects 5% of
//! nonces on purpose (a client must retry `badNonce`), and issues from a root that is new at every
//! start ([`Pebble::root_pem`]).
//!
//! Names reach Tether through `/etc/hosts` ([`host`]): each test uses a fresh name, mapped to
//! the loopback address its Tether listens on. Without `pebble`, or without the right to write
//! `/etc/hosts`, a test says loudly that it is skipped (under `CI=true`, a failure).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

use crate::programs::free_port;
use crate::TempDir;

/// A running Pebble.
#[derive(Debug)]
pub struct Pebble {
    child: Child,
    dir: TempDir,
    port: u16,
    management: u16,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pebble {
    /// Start Pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port` (of the
    /// name's address); `None` (after a loud message) when it is not installed.
    pub async fn start(http_port: u16, tls_port: u16) -> Option<Pebble> {
        if !crate::programs::installed("pebble", "pebble") {
            return None;
        }
        let dir = TempDir::new("tether-pebble");
        // Its own HTTPS: a certificate for 127.0.0.1 that the ACME client is given as `ca_root`.
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        let cert = params.self_signed(&key).expect("self-signed");
        std::fs::write(dir.path().join("server-ca.pem"), cert.pem()).expect("write");
        std::fs::write(dir.path().join("server-key.pem"), key.serialize_pem()).expect("write");
        for _ in 0..3 {
            let (port, management) = (free_port(), free_port());
            let config = serde_json::json!({"pebble": {
                "listenAddress": format!("127.0.0.1:{port}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": dir.path().join("server-ca.pem"),
                "privateKey": dir.path().join("server-key.pem"),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }});
            let cfg = dir.path().join("pebble.json");
            std::fs::write(&cfg, config.to_string()).expect("write");
            let mut cmd = Command::new("pebble");
            cmd.arg("-config").arg(&cfg).env("PEBBLE_VA_NOSLEEP", "1");
            let child = spawn_logged(&mut cmd, &dir.path().join("pebble.log"));
            let up = answering(child, 100, || root_from(&dir, management)).await;
            if let Some(child) = up {
                return Some(Pebble {
                    child,
                    dir,
                    port,
                    management,
                });
            }
            // A port taken between being found free and bound: again, on others.
        }
        panic!(
            "pebble did not come up three times; its log: {:?}",
            std::fs::read_to_string(dir.path().join("pebble.log"))
        );
    }

    /// The directory URL.
    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// The PEM file that Pebble's own HTTPS chains to (a resolver's `ca_root`).
    pub fn server_ca(&self) -> PathBuf {
        self.dir.path().join("server-ca.pem")
    }

    /// The root the certificates it issues chain to (PEM).
    pub async fn root_pem(&self) -> String {
        self.root_pem_now().await.expect("pebble's root")
    }

    async fn root_pem_now(&self) -> Option<String> {
        root_from(&self.dir, self.management).await
    }

    /// Stop it (a CA that is down); [`Pebble::resume`] starts it again on the same ports, with a
    /// new root (as Pebble always has).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start it again after [`Pebble::stop`].
    pub async fn resume(&mut self) {
        let mut cmd = Command::new("pebble");
        cmd.arg("-config")
            .arg(self.dir.path().join("pebble.json"))
            .env("PEBBLE_VA_NOSLEEP", "1");
        self.child = spawn_logged(&mut cmd, &self.dir.path().join("pebble.log"));
        crate::wait_for(
            "pebble to answer again",
            Duration::from_secs(10),
            || async { self.root_pem_now().await.is_some() },
        )
        .await;
    }

    /// What it logged (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }
}

/// Start `cmd`, its output appended to `log`.
fn spawn_logged(cmd: &mut Command, log: &std::path::Path) -> Child {
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    cmd.stdout(log.try_clone().expect("log"))
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("the CA starts")
}

/// `child` once `probe` answers (polled every 50 ms, up to `tries` times); `None`, the child
/// killed, if it exits or never answers.
async fn answering<F, Fut, T>(mut child: Child, tries: u32, mut probe: F) -> Option<Child>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..tries {
        if probe().await.is_some() {
            return Some(child);
        }
        if child.try_wait().ok().flatten().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// The root Pebble's management port serves, once it answers.
async fn root_from(dir: &TempDir, management: u16) -> Option<String> {
    let pem = std::fs::read(dir.path().join("server-ca.pem")).ok()?;
    let body = https_get(management, &pem, "/roots/0").await?;
    body.contains("BEGIN CERTIFICATE").then_some(body)
}

/// A GET over HTTPS to `127.0.0.1:port` trusting only `ca_pem`; the body, or `None`.
async fn https_get(port: u16, ca_pem: &[u8], path: &str) -> Option<String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.ok()?).ok()?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let name = ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into());
    let mut s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    (head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200")).then(|| body.to_string())
}

/// A fresh name for this test (`<stem>-<random>.tether.test`), mapped to `addr` in `/etc/hosts`;
/// `None` (after a loud message) when `/etc/hosts` cannot be written.
pub fn host(stem: &str, addr: std::net::IpAddr) -> Option<String> {
    let name = format!("{stem}-{:08x}.tether.test", fastrand::u32(..));
    let line = format!("{addr} {name}\n");
    match std::fs::OpenOptions::new().append(true).open("/etc/hosts") {
        Ok(mut f) => {
            f.write_all(line.as_bytes()).expect("write /etc/hosts");
            Some(name)
        }
        Err(e) => {
            crate::missing(&format!(
                "/etc/hosts cannot be written ({e}): the ACME tests map names to loopback there (run them as root, as CI does)"
            ));
            None
        }
    }
}

/// Connect to `addr` over TLS naming `sni`, trusting only `root_pem`: the handshake's error if
/// the certificate does not chain to it or does not name `sni`.
pub async fn connect_trusting(
    addr: std::net::SocketAddr,
    sni: &str,
    root_pem: &str,
) -> std::io::Result<crate::tls::Handshake> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots
            .add(c.map_err(std::io::Error::other)?)
            .map_err(std::io::Error::other)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(sni.to_string()).map_err(std::io::Error::other)?;
    crate::tls::handshake(cfg, addr, name).await
}

/// A running Caddy `acme_server` (smallstep's ACME implementation, independent of Pebble): it
/// validates HTTP-01 on port 80 and TLS-ALPN-01 on 443 only, and issues 12-hour certificates.
#[derive(Debug)]
pub struct Caddy {
    child: Child,
    dir: TempDir,
    port: u16,
}

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Caddy {
    /// Start Caddy's ACME server on a free loopback port; `None` (after a loud message) when
    /// `caddy` is not installed.
    pub async fn start() -> Option<Caddy> {
        if !crate::programs::installed("caddy", "caddy") {
            return None;
        }
        let dir = TempDir::new("tether-caddy");
        for _ in 0..3 {
            let (port, http_port) = (free_port(), free_port());
            let caddyfile = format!(
                "{{\n\tadmin off\n\thttp_port {http_port}\n\tskip_install_trust\n\tstorage file_system {}\n\tpki {{\n\t\tca local {{\n\t\t\tname \"Tether test ACME CA\"\n\t\t}}\n\t}}\n}}\nhttps://127.0.0.1:{port} {{\n\ttls internal\n\tacme_server\n}}\n",
                dir.path().join("data").display()
            );
            let cfg = dir.path().join("Caddyfile");
            std::fs::write(&cfg, caddyfile).expect("write");
            let mut cmd = Command::new("caddy");
            cmd.args(["run", "--adapter", "caddyfile", "--config"])
                .arg(&cfg)
                .env("HOME", dir.path())
                .env("XDG_DATA_HOME", dir.path().join("xdg-data"))
                .env("XDG_CONFIG_HOME", dir.path().join("xdg-config"));
            let child = spawn_logged(&mut cmd, &dir.path().join("caddy.log"));
            let root = dir.path().join("data/pki/authorities/local/root.crt");
            let up = answering(child, 200, || async {
                let pem = std::fs::read(&root).ok()?;
                https_get(port, &pem, "/acme/local/directory").await
            })
            .await;
            if let Some(child) = up {
                return Some(Caddy { child, dir, port });
            }
        }
        panic!(
            "caddy did not come up three times; its log: {:?}",
            std::fs::read_to_string(dir.path().join("caddy.log"))
        );
    }

    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/acme/local/directory", self.port)
    }

    /// Its root (PEM file): the directory's HTTPS and the certificates it issues chain to it.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("data/pki/authorities/local/root.crt")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("caddy.log")).unwrap_or_default()
    }
}
