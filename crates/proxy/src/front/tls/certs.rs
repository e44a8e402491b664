//! Certificates: read from PEM files, checked before they serve (the chain parses, the key is the
//! certificate's, it has not expired), and chosen for each handshake by the name the client
//! asks for (SNI): the exact name, then a wildcard one label up, then the default certificate
//! (the one marked `default`, else the first listed). A client that sends no name gets the
//! default.
//!
//! Certificates come from sources: `tether.toml`'s files, the admin API (kept in its store,
//! etcd's shared by every replica), and providers (a Docker secret named by a label, a
//! dockercloud/haproxy `SSL_CERT`), and ACME's orders. When two claim a name, the file's wins, then
//! the API's, then ACME's, then the providers'. The served set is swapped whole ([`CertStore::set_source`],
//! [`CertStore::refresh`]), so a handshake sees the old set or the new one, never a mix; a
//! certificate that fails its checks never serves, and the version of it before keeps serving.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tether_model::decl::{CertificateDecl, CertificatePem};
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
    /// Where it came from (the certificate file, or what declared its text).
    pub source: String,
    pub default: bool,
    /// Its name in its provider (`tls.certificates[0]`, the API's name).
    pub name: String,
    /// The source that declared it ([`FILE_SOURCE`], `api`, `etcd`, `docker`, `swarm`).
    pub provider: String,
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
        name: String::new(),
        provider: String::new(),
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

/// The certificates of `tether.toml` as one source's declarations.
pub fn file_declarations(files: &[CertificateFiles]) -> Vec<CertificateDecl> {
    files
        .iter()
        .enumerate()
        .map(|(i, f)| CertificateDecl {
            name: format!("tls.certificates[{i}]"),
            origin: f.cert_file.display().to_string(),
            pem: CertificatePem::Files {
                cert: f.cert_file.clone(),
                key: f.key_file.clone(),
            },
            default: f.default,
        })
        .collect()
}

/// Read and check a declared certificate.
pub fn load_declared(d: &CertificateDecl) -> Result<Loaded, CertError> {
    let mut l = match &d.pem {
        CertificatePem::Files { cert, key } => {
            let (c, k) = (read(cert)?, read(key)?);
            from_pem(&c, &k, cert, key)?
        }
        CertificatePem::Text { cert, key } => {
            let origin = Path::new(&d.origin);
            from_pem(cert.as_bytes(), key.as_bytes(), origin, origin)?
        }
    };
    l.default = d.default;
    l.name = d.name.clone();
    if let CertificatePem::Text { .. } = d.pem {
        l.source = d.origin.clone();
    }
    Ok(l)
}

/// What a file looked like when last read: its modification time and length.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn stamps(d: &CertificateDecl) -> Vec<Stamp> {
    match &d.pem {
        CertificatePem::Files { cert, key } => vec![stamp(cert), stamp(key)],
        CertificatePem::Text { .. } => Vec::new(),
    }
}

/// Follow the store's certificate files until the task is dropped: every `every`, those that
/// changed (modification time or length) are read again ([`CertStore::refresh`]).
pub async fn follow(store: Arc<CertStore>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        store.refresh();
    }
}

/// One declared certificate and what became of it.
struct Entry {
    decl: CertificateDecl,
    /// Its files when last read.
    stamps: Vec<Stamp>,
    /// What serves: the declaration as last read successfully (perhaps an older version of it).
    loaded: Option<Loaded>,
    /// Why its latest version does not serve.
    problem: Option<String>,
}

impl Entry {
    /// Read `decl`; `before`, the entry of the same name until now, keeps serving if it fails.
    fn read(decl: CertificateDecl, before: Option<Entry>) -> Entry {
        let stamps = stamps(&decl);
        match load_declared(&decl) {
            Ok(l) => Entry {
                decl,
                stamps,
                loaded: Some(l),
                problem: None,
            },
            Err(e) => Entry {
                decl,
                stamps,
                loaded: before.and_then(|b| b.loaded),
                problem: Some(e.to_string()),
            },
        }
    }
}

/// The source name of `tether.toml`'s `[[tls.certificates]]` (not the file provider's: those
/// are read at start and followed as files, not declared by its updates).
pub const FILE_SOURCE: &str = "tls.certificates";

/// The source name of the certificates ACME ordered.
pub const ACME_SOURCE: &str = "acme";

/// Sources in the order their certificates claim names: `tether.toml`'s first, then the API's,
/// then ACME's, then the providers' (Docker labels).
fn rank(provider: &str) -> u8 {
    match provider {
        FILE_SOURCE => 0,
        "api" | "etcd" => 1,
        ACME_SOURCE => 2,
        _ => 3,
    }
}

/// Does a certificate of names `names` serve `name` (exactly, or by a wildcard one label up)?
fn covers(names: &[String], name: &str) -> bool {
    names.iter().any(|n| match n.strip_prefix("*.") {
        Some(parent) => name.split_once('.').is_some_and(|(_, p)| p == parent),
        None => n == name,
    })
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

/// The certificates every TLS entrypoint serves from, by source; the served set is swapped whole
/// when one changes.
#[derive(Default)]
pub struct CertStore {
    set: ArcSwap<Set>,
    sources: Mutex<BTreeMap<(u8, String), Vec<Entry>>>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("served", &self.set.load().loaded.len())
            .finish_non_exhaustive()
    }
}

impl CertStore {
    /// A store serving `loaded` (in the order listed: the first is the default unless one is
    /// marked), followed by nothing.
    pub fn new(loaded: Vec<Loaded>) -> Arc<CertStore> {
        let s = CertStore::default();
        s.set.store(Arc::new(Set::of(loaded)));
        Arc::new(s)
    }

    /// Serve what `provider` declares from the next handshake on, in place of what it declared
    /// before. A certificate that fails its checks does not serve; when `provider` declared one
    /// of that name before, that one keeps serving. Returns every problem, naming the
    /// certificate.
    pub fn set_source(&self, provider: &str, decls: Vec<CertificateDecl>) -> Vec<String> {
        let mut sources = self.sources.lock().expect("certificate sources poisoned");
        let key = (rank(provider), provider.to_string());
        let mut before: HashMap<String, Entry> = sources
            .remove(&key)
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.decl.name.clone(), e))
            .collect();
        let mut entries = Vec::with_capacity(decls.len());
        for d in decls {
            let old = before.remove(&d.name);
            let entry = match old {
                // Unchanged: kept as read (its files are followed by `refresh`).
                Some(old) if old.decl == d && old.problem.is_none() => old,
                old => Entry::read(d, old),
            };
            if let (Some(l), None) = (&entry.loaded, &entry.problem) {
                tracing::info!(%provider, certificate = %l.source, names = %l.names.join(","), serial = %l.serial, "TLS: certificate loaded");
            }
            entries.push(entry);
        }
        let problems = problems(&entries);
        for p in &problems {
            tracing::error!(%provider, "TLS: {p}");
        }
        if entries.is_empty() {
            if !before.is_empty() {
                tracing::info!(%provider, "TLS: the source's certificates are withdrawn");
            }
        } else {
            sources.insert(key, entries);
        }
        self.publish(&sources);
        problems
    }

    /// Read again every certificate file that changed since it was read; serve those that pass
    /// their checks, and keep serving the version before of those that do not (logged once per
    /// problem, naming the file). A file written in place may be read half-written: it fails
    /// its checks and is read again at the next look.
    pub fn refresh(&self) {
        let mut sources = self.sources.lock().expect("certificate sources poisoned");
        let mut changed = false;
        for entries in sources.values_mut() {
            for e in entries.iter_mut() {
                let now = stamps(&e.decl);
                if now == e.stamps {
                    continue;
                }
                e.stamps = now;
                match load_declared(&e.decl) {
                    Ok(l) => {
                        tracing::info!(certificate = %l.source, names = %l.names.join(","), serial = %l.serial, "TLS: certificate loaded");
                        e.loaded = Some(l);
                        e.problem = None;
                        changed = true;
                    }
                    Err(err) => {
                        let err = err.to_string();
                        if e.problem.as_ref() != Some(&err) {
                            tracing::error!(
                                "TLS: {err}; still serving the certificate loaded before"
                            );
                            e.problem = Some(err);
                        }
                    }
                }
            }
        }
        if changed {
            self.publish(&sources);
        }
    }

    fn publish(&self, sources: &BTreeMap<(u8, String), Vec<Entry>>) {
        let loaded = sources
            .iter()
            .flat_map(|((_, provider), es)| {
                es.iter().filter_map(move |e| {
                    e.loaded.clone().map(|mut l| {
                        l.provider = provider.clone();
                        l
                    })
                })
            })
            .collect();
        self.set.store(Arc::new(Set::of(loaded)));
    }

    /// The problems of the certificates declared now, by source (those left out or serving an
    /// older version).
    pub fn problems(&self) -> Vec<(String, String)> {
        let sources = self.sources.lock().expect("certificate sources poisoned");
        sources
            .iter()
            .flat_map(|((_, p), es)| problems(es).into_iter().map(|m| (p.clone(), m)))
            .collect()
    }

    /// What is served now.
    pub fn loaded(&self) -> Vec<Loaded> {
        self.set.load().loaded.clone()
    }

    /// Is `name` served by a certificate of a source that ranks above ACME's (`tether.toml`'s or
    /// the API's)? Then ACME orders nothing for it.
    pub fn covered_above_acme(&self, name: &str) -> bool {
        let acme = rank(ACME_SOURCE);
        self.set
            .load()
            .loaded
            .iter()
            .any(|l| rank(&l.provider) < acme && covers(&l.names, name))
    }

    /// Is there no certificate to serve?
    pub fn is_empty(&self) -> bool {
        self.set.load().loaded.is_empty()
    }

    /// The certificate for a handshake naming `sni`; `None` fails the handshake.
    pub fn pick(&self, sni: Option<&str>, strict: bool) -> Option<Arc<CertifiedKey>> {
        self.set.load().pick(sni, strict)
    }
}

fn problems(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| {
            let p = e.problem.as_ref()?;
            Some(match &e.loaded {
                Some(_) => format!("{p}; still serving the version loaded before"),
                None => format!("{p}; it is not served"),
            })
        })
        .collect()
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

    fn declared(name: &str, names: &[&str]) -> CertificateDecl {
        let (cert, key) = cert(names);
        CertificateDecl {
            name: name.to_string(),
            origin: format!("certificates/{name}"),
            pem: CertificatePem::Text { cert, key },
            default: false,
        }
    }

    fn serial_for(store: &CertStore, sni: &str) -> Option<String> {
        let k = store.pick(Some(sni), true)?;
        store
            .loaded()
            .into_iter()
            .find(|l| Arc::ptr_eq(&l.key, &k))
            .map(|l| l.serial)
    }

    #[test]
    fn sources_claim_names_in_order_and_a_bad_version_keeps_the_one_before() {
        let store = CertStore::default();
        let file = declared("f", &["shared.test"]);
        assert!(store.set_source(FILE_SOURCE, vec![file]).is_empty());
        let api = declared("a", &["shared.test", "api.test"]);
        assert!(store.set_source("etcd", vec![api.clone()]).is_empty());
        let label = declared("l@docker", &["api.test", "label.test"]);
        assert!(store.set_source("docker", vec![label]).is_empty());
        let by_source = |sni: &str| {
            let s = serial_for(&store, sni)?;
            store
                .loaded()
                .into_iter()
                .find(|l| l.serial == s)
                .map(|l| l.provider)
        };
        assert_eq!(by_source("shared.test").as_deref(), Some(FILE_SOURCE));
        assert_eq!(by_source("api.test").as_deref(), Some("etcd"));
        assert_eq!(by_source("label.test").as_deref(), Some("docker"));

        // A new version that does not check out: the one before keeps serving, and says so.
        let before = serial_for(&store, "api.test");
        let mut broken = declared("a", &["api.test"]);
        broken.pem = CertificatePem::Text {
            cert: "garbage".into(),
            key: "garbage".into(),
        };
        let problems = store.set_source("etcd", vec![broken]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("certificates/a: no certificate")
                && problems[0].ends_with("still serving the version loaded before"),
            "{problems:?}"
        );
        assert_eq!(serial_for(&store, "api.test"), before);
        assert_eq!(store.problems().len(), 1);
        // Fixed: served, problem gone; withdrawn: gone, the label's serves the name.
        assert!(store.set_source("etcd", vec![api]).is_empty());
        assert!(store.problems().is_empty());
        store.set_source("etcd", Vec::new());
        assert_eq!(by_source("api.test").as_deref(), Some("docker"));
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
