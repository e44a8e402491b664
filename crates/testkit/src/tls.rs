//! TLS for tests: certificates made on the spot (`rcgen`, never a committed key) and a client
//! that shows what the server presented (its certificate, the protocol ALPN chose) instead of
//! judging it: the tests check the choice themselves.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tether_proxy::upstream::tls::Unchecked;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

/// A self-signed certificate for `names`, written as `<stem>.crt` and `<stem>.key` under `dir`.
#[derive(Debug, Clone)]
pub struct TestCert {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The certificate, DER (what a client is presented).
    pub der: Vec<u8>,
}

impl TestCert {
    pub fn write(dir: &Path, stem: &str, names: &[&str]) -> TestCert {
        let c = rcgen::generate_simple_self_signed(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .expect("rcgen");
        TestCert::save(dir, stem, &c.cert, &c.signing_key)
    }

    /// Write `cert` and `key` as `<stem>.crt` and `<stem>.key` under `dir`.
    fn save(dir: &Path, stem: &str, cert: &rcgen::Certificate, key: &rcgen::KeyPair) -> TestCert {
        let cert_file = dir.join(format!("{stem}.crt"));
        let key_file = dir.join(format!("{stem}.key"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        TestCert {
            cert_file,
            key_file,
            der: cert.der().to_vec(),
        }
    }

    /// A certificate for `names` that expired in 2021, written as `write` does.
    pub fn write_expired(dir: &Path, stem: &str, names: &[&str]) -> TestCert {
        let mut p =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("rcgen");
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let key = rcgen::KeyPair::generate().expect("rcgen");
        let c = p.self_signed(&key).expect("rcgen");
        TestCert::save(dir, stem, &c, &key)
    }

    /// The certificate's PEM text.
    pub fn cert_pem(&self) -> String {
        std::fs::read_to_string(&self.cert_file).unwrap()
    }

    /// The key's PEM text.
    pub fn key_pem(&self) -> String {
        std::fs::read_to_string(&self.key_file).unwrap()
    }

    /// `{"cert": ..., "key": ...}`, an admin API certificate document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({ "cert": self.cert_pem(), "key": self.key_pem() })
    }

    /// `[[tls.certificates]]` for it.
    pub fn toml(&self, default: bool) -> String {
        format!(
            "[[tls.certificates]]\ncert_file = {:?}\nkey_file = {:?}\ndefault = {default}\n",
            self.cert_file.display().to_string(),
            self.key_file.display().to_string()
        )
    }
}

/// A finished handshake: the stream, the server's certificate (DER), the protocol ALPN chose.
pub struct Handshake {
    pub stream: TlsStream<TcpStream>,
    pub cert: Vec<u8>,
    pub alpn: Option<Vec<u8>>,
}

/// Connect to `addr` over TLS naming `sni` (none: the client sends no name) and offering
/// `alpn`; the error is the handshake's.
pub async fn connect(
    addr: SocketAddr,
    sni: Option<&str>,
    alpn: &[&str],
) -> std::io::Result<Handshake> {
    let tcp = TcpStream::connect(addr).await?;
    connect_over(tcp, sni, alpn).await
}

/// As [`connect`], on a connection already open (after a PROXY protocol header, say).
pub async fn connect_over(
    tcp: TcpStream,
    sni: Option<&str>,
    alpn: &[&str],
) -> std::io::Result<Handshake> {
    let addr = tcp.peer_addr()?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .dangerous()
        // Any certificate is taken: the tests look at which one was presented.
        .with_custom_certificate_verifier(Arc::new(Unchecked(provider)))
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    // An IP address as the server name: rustls sends no SNI then.
    let name = match sni {
        Some(n) => ServerName::try_from(n.to_string()).expect("a DNS name"),
        None => ServerName::IpAddress(addr.ip().into()),
    };
    handshake_over(cfg, tcp, name).await
}

/// Connect to `addr` and complete a handshake with client configuration `cfg`, naming `name`.
pub(crate) async fn handshake(
    cfg: rustls::ClientConfig,
    addr: SocketAddr,
    name: ServerName<'static>,
) -> std::io::Result<Handshake> {
    handshake_over(cfg, TcpStream::connect(addr).await?, name).await
}

/// A handshake on `tcp` with client configuration `cfg`, naming `name`.
async fn handshake_over(
    cfg: rustls::ClientConfig,
    tcp: TcpStream,
    name: ServerName<'static>,
) -> std::io::Result<Handshake> {
    let stream = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await?;
    let (_, session) = stream.get_ref();
    let cert = session
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    Ok(Handshake { stream, cert, alpn })
}

/// A certificate authority of the test's own, written as `<stem>.crt` (a server's `ca_file`).
pub struct TestCa {
    pub cert_file: PathBuf,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn write(dir: &Path, stem: &str) -> TestCa {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("rcgen");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, format!("Tether test CA {stem}"));
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().expect("rcgen");
        let cert = p.self_signed(&key).expect("rcgen");
        let cert_file = dir.join(format!("{stem}.crt"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        TestCa {
            cert_file,
            issuer: rcgen::Issuer::new(p, key),
        }
    }

    /// A certificate for `names` signed by this authority, written as [`TestCert::write`] does.
    pub fn issue(&self, dir: &Path, stem: &str, names: &[&str]) -> TestCert {
        let p =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("rcgen");
        let key = rcgen::KeyPair::generate().expect("rcgen");
        let c = p.signed_by(&key, &self.issuer).expect("rcgen");
        TestCert::save(dir, stem, &c, &key)
    }
}

/// A TLS server in front of a plain one (a test backend): it presents `cert`, records the name
/// each client sent (SNI), and relays the bytes to `to`.
pub struct TlsFront {
    pub addr: SocketAddr,
    names: Arc<std::sync::Mutex<Vec<Option<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsFront {
    pub async fn spawn(cert: &TestCert, to: SocketAddr) -> TlsFront {
        use rustls::pki_types::pem::PemObject;
        let chain = CertificateDer::pem_file_iter(&cert.cert_file)
            .expect("cert file")
            .collect::<Result<Vec<_>, _>>()
            .expect("PEM");
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&cert.key_file).expect("key");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("certificate and key");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let names = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = names.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let sni = tls.get_ref().1.server_name().map(str::to_string);
                    seen.lock().unwrap().push(sni);
                    let Ok(mut plain) = TcpStream::connect(to).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        TlsFront { addr, names, task }
    }

    /// The name each TLS connection sent, in order (`None`: no SNI).
    pub fn names(&self) -> Vec<Option<String>> {
        self.names.lock().unwrap().clone()
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}
