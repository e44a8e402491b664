//! Certificates: read from PEM files, checked before they serve (the chain parses, the key is the
//! certificate's, it has not expired), and chosen for each handshake by the name the client
//! asks for (SNI): the exact name, then a wildcard one label up, then the default certificate
//! (the one marked `default`, else the first listed). A client that sends no name gets the
//! default. The set is swapped whole ([`CertStore::set`]), so a handshake sees the old set or
//! the new one, never a mix; a set that fails its checks is never swapped in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tether_model::file_config::CertificateFiles;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::sign::CertifiedKey;

/// Why a certificate cannot serve. Each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no certificate in it (expected PEM \"-----BEGIN CERTIFICATE-----\")")]
    NoCertificate { path: PathBuf },
    #[error("{path}: not a PEM certificate chain: {message}")]
    BadChain { path: PathBuf, message: String },
    #[error("{path}: no private key in it (expected PEM \"-----BEGIN PRIVATE KEY-----\" or an RSA or EC key): {message}")]
    NoKey { path: PathBuf, message: String },
    #[error("{path}: a key Tether cannot sign with: {message}")]
    BadKey { path: PathBuf, message: String },
    #[error("{key} is not the key of {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("{path}: the certificate cannot be read: {message}")]
    Unreadable { path: PathBuf, message: String },
    #[error("{path}: the certificate expired at {not_after}")]
    Expired { path: PathBuf, not_after: String },
    #[error(
        "{path}: the certificate names no host (no DNS subject alternative name or common name)"
    )]
    NoName { path: PathBuf },
}

/// A certificate ready to serve, and what is known of it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// Its host names (DNS subject alternative names, else its common name), lower case;
    /// wildcards as written (`*.example.com`).
    pub names: Vec<String>,
    pub not_after: SystemTime,
    /// Its serial number, hex.
    pub serial: String,
    /// Where it came from (the certificate file).
    pub source: String,
    pub default: bool,
}

/// Read and check one certificate and its key.
pub fn load(files: &CertificateFiles) -> Result<Loaded, CertError> {
    let cert_pem = read(&files.cert_file)?;
    let key_pem = read(&files.key_file)?;
    from_pem(&cert_pem, &key_pem, &files.cert_file, &files.key_file).map(|mut l| {
        l.default = files.default;
        l
    })
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Check a certificate chain and key given as PEM; the paths name them in errors.
pub fn from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<Loaded, CertError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::BadChain {
            path: cert_path.to_path_buf(),
            message: e.to_string(),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(CertError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    };
    let (names, not_after, serial) = inspect(leaf, cert_path)?;
    if not_after <= SystemTime::now() {
        return Err(CertError::Expired {
            path: cert_path.to_path_buf(),
            not_after: humantime::format_rfc3339_seconds(not_after).to_string(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| CertError::NoKey {
        path: key_path.to_path_buf(),
        message: e.to_string(),
    })?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| CertError::BadKey {
            path: key_path.to_path_buf(),
            message: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    if certified.keys_match().is_err() {
        return Err(CertError::Mismatch {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
        });
    }
    Ok(Loaded {
        key: Arc::new(certified),
        names,
        not_after,
        serial,
        source: cert_path.display().to_string(),
        default: false,
    })
}

/// The leaf's host names, expiry and serial.
fn inspect(
    leaf: &CertificateDer<'_>,
    path: &Path,
) -> Result<(Vec<String>, SystemTime, String), CertError> {
    let unreadable = |message: String| CertError::Unreadable {
        path: path.to_path_buf(),
        message,
    };
    let (_, cert) =
        x509_parser::parse_x509_certificate(leaf).map_err(|e| unreadable(e.to_string()))?;
    let mut names: Vec<String> = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    if names.is_empty() {
        return Err(CertError::NoName {
            path: path.to_path_buf(),
        });
    }
    let secs = cert.validity().not_after.timestamp();
    let not_after = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    Ok((
        names,
        not_after,
        cert.raw_serial_as_string().replace(':', ""),
    ))
}

/// Load every certificate of `files`, in order; the first that fails its checks stops.
pub fn load_all(files: &[CertificateFiles]) -> Result<Vec<Loaded>, CertError> {
    files.iter().map(load).collect()
}

/// What a file looked like when last read: its modification time and length.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn stamps(files: &[CertificateFiles]) -> Vec<Stamp> {
    files
        .iter()
        .flat_map(|f| [stamp(&f.cert_file), stamp(&f.key_file)])
        .collect()
}

/// Follow `files` for `store` until the task is dropped: every `every`, when a file changed (its
/// modification time or length), read them all again and serve the new set if every one passes
/// its checks; else log why, naming the file, and keep serving the set before. A file written in
/// place may be read half-written: it fails its checks and is read again at the next look.
pub async fn follow(store: Arc<CertStore>, files: Vec<CertificateFiles>, every: Duration) {
    let mut served = stamps(&files);
    let mut last_error = String::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = stamps(&files);
        if now == served {
            continue;
        }
        match load_all(&files) {
            Ok(loaded) => {
                for l in &loaded {
                    tracing::info!(certificate = %l.source, names = %l.names.join(","), serial = %l.serial, "TLS: certificate loaded");
                }
                store.set(loaded);
                served = now;
                last_error.clear();
            }
            Err(e) => {
                let e = e.to_string();
                if e != last_error {
                    tracing::error!("TLS: {e}; still serving the certificates loaded before");
                    last_error = e;
                }
            }
        }
    }
}

/// The certificates served, by name.
#[derive(Debug, Default)]
struct Set {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    loaded: Vec<Loaded>,
}

impl Set {
    fn of(loaded: Vec<Loaded>) -> Set {
        let mut s = Set::default();
        // The first certificate to claim a name keeps it.
        for l in &loaded {
            for n in &l.names {
                match n.strip_prefix("*.") {
                    Some(parent) => {
                        s.wildcard
                            .entry(parent.to_string())
                            .or_insert_with(|| l.key.clone());
                    }
                    None => {
                        s.exact.entry(n.clone()).or_insert_with(|| l.key.clone());
                    }
                }
            }
        }
        s.default = loaded
            .iter()
            .find(|l| l.default)
            .or(loaded.first())
            .map(|l| l.key.clone());
        s.loaded = loaded;
        s
    }

    fn pick(&self, sni: Option<&str>, strict: bool) -> Option<Arc<CertifiedKey>> {
        let Some(name) = sni else {
            return self.default.clone();
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(k) = self.exact.get(&name) {
            return Some(k.clone());
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(k) = self.wildcard.get(parent) {
                return Some(k.clone());
            }
        }
        if strict {
            None
        } else {
            self.default.clone()
        }
    }
}

/// The certificates every TLS entrypoint serves from, swapped whole when they change.
#[derive(Debug, Default)]
pub struct CertStore {
    set: ArcSwap<Set>,
}

impl CertStore {
    /// A store serving `loaded` (in the order listed: the first is the default unless one is
    /// marked).
    pub fn new(loaded: Vec<Loaded>) -> Arc<CertStore> {
        let s = CertStore::default();
        s.set(loaded);
        Arc::new(s)
    }

    /// Serve `loaded` from the next handshake on.
    pub fn set(&self, loaded: Vec<Loaded>) {
        self.set.store(Arc::new(Set::of(loaded)));
    }

    /// What is served now.
    pub fn loaded(&self) -> Vec<Loaded> {
        self.set.load().loaded.clone()
    }

    /// The certificate for a handshake naming `sni`; `None` fails the handshake.
    pub fn pick(&self, sni: Option<&str>, strict: bool) -> Option<Arc<CertifiedKey>> {
        self.set.load().pick(sni, strict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(names: &[&str]) -> (String, String) {
        let c = rcgen::generate_simple_self_signed(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    fn loaded(names: &[&str]) -> Loaded {
        let (c, k) = cert(names);
        from_pem(
            c.as_bytes(),
            k.as_bytes(),
            Path::new("c.pem"),
            Path::new("k.pem"),
        )
        .unwrap()
    }

    #[test]
    fn exact_then_wildcard_then_the_default() {
        let a = loaded(&["a.example.com"]);
        let w = loaded(&["*.example.com"]);
        let mut d = loaded(&["default.test"]);
        d.default = true;
        let store = CertStore::new(vec![a.clone(), w.clone(), d.clone()]);
        let is = |got: Option<Arc<CertifiedKey>>, want: &Loaded| {
            got.is_some_and(|g| Arc::ptr_eq(&g, &want.key))
        };
        assert!(is(store.pick(Some("a.example.com"), false), &a));
        assert!(
            is(store.pick(Some("A.Example.COM."), false), &a),
            "case and a root dot"
        );
        assert!(is(store.pick(Some("b.example.com"), false), &w));
        assert!(
            store.pick(Some("x.b.example.com"), true).is_none(),
            "a wildcard is one label"
        );
        assert!(is(store.pick(Some("other.test"), false), &d));
        assert!(store.pick(Some("other.test"), true).is_none(), "strict SNI");
        assert!(is(store.pick(None, true), &d), "no name: the default");
        // Without a marked default, the first listed.
        let store = CertStore::new(vec![a.clone(), w]);
        assert!(is(store.pick(None, false), &a));
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused_with_both_files_named() {
        let (c, _) = cert(&["a.test"]);
        let (_, other) = cert(&["b.test"]);
        let e = from_pem(
            c.as_bytes(),
            other.as_bytes(),
            Path::new("/certs/a.crt"),
            Path::new("/certs/b.key"),
        )
        .unwrap_err();
        assert!(matches!(e, CertError::Mismatch { .. }), "{e}");
        assert_eq!(e.to_string(), "/certs/b.key is not the key of /certs/a.crt");
        let e = from_pem(
            b"garbage",
            other.as_bytes(),
            Path::new("/x.crt"),
            Path::new("/k"),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("/x.crt: no certificate"), "{e}");
        let e = from_pem(c.as_bytes(), b"", Path::new("/x.crt"), Path::new("/x.key")).unwrap_err();
        assert!(e.to_string().starts_with("/x.key: no private key"), "{e}");
    }

    #[test]
    fn an_expired_certificate_is_refused() {
        let mut p = rcgen::CertificateParams::new(vec!["old.test".to_string()]).unwrap();
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let c = p.self_signed(&key).unwrap();
        let e = from_pem(
            c.pem().as_bytes(),
            key.serialize_pem().as_bytes(),
            Path::new("/old.crt"),
            Path::new("/old.key"),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/old.crt: the certificate expired at 2021-01-01T00:00:00Z"
        );
        assert_eq!(loaded(&["n.test"]).names, ["n.test"]);
    }
}
