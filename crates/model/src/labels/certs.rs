//! Certificates that a container's labels or environment give the TLS entrypoints:
//!
//! - Tether labels: `tether.tls.secret=NAME`, a Docker secret mounted in Tether's own container
//!   (`/run/secrets/NAME`, or under `--secrets-dir`) holding the chain and the key in one PEM
//!   file, or `tether.tls.cert_secret` with `tether.tls.key_secret` for the two in two secrets;
//! - Interlock's `ssl_certificate`/`ssl_certificate_key` (1.x: `interlock.ssl_cert`,
//!   `interlock.ssl_cert_key`): Docker secrets given to Tether, by name;
//! - dockercloud/haproxy's `SSL_CERT`: the PEM text itself (the key and the chain, with `\n`, two
//!   characters, as the line separator, as dockercloud's docs have it).
//!
//! A secret is read by Tether from its own filesystem, never from the Docker API (which does not
//! give a secret's content): it must be given to Tether's service or container. A secret's name
//! is a name, never a path. The certificate serves by SNI for the names it holds; a name that a
//! certificate of `tether.toml` or of the API holds stays theirs.

use std::path::{Path, PathBuf};

use super::{scoped, Container, Dialect, LabelError};
use crate::decl::{CertificateDecl, CertificatePem};

/// Where Docker mounts a container's secrets.
pub const SECRETS_DIR: &str = "/run/secrets";

const SECRET: &str = "tether.tls.secret";
const CERT_SECRET: &str = "tether.tls.cert_secret";
const KEY_SECRET: &str = "tether.tls.key_secret";

/// The certificates `c` declares, read in `dialect`; `secrets` is the directory of Tether's
/// secrets.
pub(crate) fn declare(
    c: &Container,
    dialect: Dialect,
    secrets: &Path,
) -> Result<Vec<CertificateDecl>, Vec<LabelError>> {
    match dialect {
        Dialect::Tether => tether(c, secrets),
        Dialect::DockerCloud => dockercloud(c),
        Dialect::Interlock => interlock(c, secrets),
        _ => Ok(Vec::new()),
    }
}

fn tether(c: &Container, secrets: &Path) -> Result<Vec<CertificateDecl>, Vec<LabelError>> {
    let mut errors = Vec::new();
    for key in c.labels.keys().filter(|k| k.starts_with("tether.tls.")) {
        if ![SECRET, CERT_SECRET, KEY_SECRET].contains(&key.as_str()) {
            errors.push(c.label_error(
                key,
                "unknown label: expected tether.tls.secret, or tether.tls.cert_secret with tether.tls.key_secret",
            ));
        }
    }
    let mut secret = |key: &str| -> Option<PathBuf> {
        let v = c.labels.get(key)?;
        match secret_path(secrets, v.trim()) {
            Ok(p) => Some(p),
            Err(m) => {
                errors.push(c.label_error(key, m));
                None
            }
        }
    };
    let one = secret(SECRET);
    let cert = secret(CERT_SECRET);
    let key = secret(KEY_SECRET);
    let has = |k: &str| c.labels.contains_key(k);
    let pem = match (has(SECRET), has(CERT_SECRET), has(KEY_SECRET)) {
        (false, false, false) => None,
        (true, false, false) => one.map(|p| (p.clone(), p, SECRET)),
        (false, true, true) => cert.zip(key).map(|(c, k)| (c, k, CERT_SECRET)),
        (true, _, _) => {
            errors.push(c.label_error(
                SECRET,
                "give the certificate as one secret (tether.tls.secret) or as two (tether.tls.cert_secret and tether.tls.key_secret), not both",
            ));
            None
        }
        (false, true, false) => {
            errors.push(c.label_error(
                CERT_SECRET,
                "tether.tls.key_secret is missing: name the secret holding the key",
            ));
            None
        }
        (false, false, true) => {
            errors.push(c.label_error(
                KEY_SECRET,
                "tether.tls.cert_secret is missing: name the secret holding the certificate chain",
            ));
            None
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(pem
        .map(|(cert, key, label)| CertificateDecl {
            name: scoped(&c.group),
            origin: format!("label {label}={} ({} {})", c.labels[label], c.kind, c.name),
            pem: CertificatePem::Files { cert, key },
            default: false,
        })
        .into_iter()
        .collect())
}

/// Interlock's certificate and key, each a Docker secret given to Tether. (A field that does
/// not read is reported by the dialect itself.)
fn interlock(c: &Container, secrets: &Path) -> Result<Vec<CertificateDecl>, Vec<LabelError>> {
    let Ok((d, origin)) = super::interlock::data(c) else {
        return Ok(Vec::new());
    };
    let (cert_field, key_field) = match origin {
        super::interlock::Origin::Env => ("ssl_certificate", "ssl_certificate_key"),
        super::interlock::Origin::Labels => ("interlock.ssl_cert", "interlock.ssl_cert_key"),
    };
    let path = |field: &str, name: &str| {
        secret_path(secrets, name).map_err(|m| {
            let base = name.rsplit('/').next().unwrap_or(name);
            vec![origin.error(c, field, format!("{m}: give the file to Tether as a Docker secret and name it here (e.g. {base})"))]
        })
    };
    let (cert, key) = match (&d.ssl_cert, &d.ssl_cert_key) {
        (None, None) => return Ok(Vec::new()),
        (None, Some(_)) => {
            return Err(vec![origin.error(
                c,
                key_field,
                format!("{cert_field} is missing: name the secret holding the certificate chain"),
            )])
        }
        (Some(cert), None) => {
            let p = path(cert_field, cert)?;
            (p.clone(), p)
        }
        (Some(cert), Some(key)) => (path(cert_field, cert)?, path(key_field, key)?),
    };
    let written = d.ssl_cert.clone().unwrap_or_default();
    Ok(vec![CertificateDecl {
        name: scoped(&c.group),
        origin: format!("Interlock {cert_field}={written} ({} {})", c.kind, c.name),
        pem: CertificatePem::Files { cert, key },
        default: false,
    }])
}

/// The file of secret `name` under `dir`; a name that is not a Docker secret's is refused, so a
/// label cannot make Tether read any other file.
fn secret_path(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(dir.join(name))
    } else {
        Err("expected the name of a Docker secret given to Tether (letters, digits, '-', '_', '.'; not a path)".into())
    }
}

/// `SSL_CERT`: the key and the chain in one PEM text, `\n` written as two characters.
fn dockercloud(c: &Container) -> Result<Vec<CertificateDecl>, Vec<LabelError>> {
    let Some(v) = c.env.get("SSL_CERT") else {
        return Ok(Vec::new());
    };
    let text = v.replace("\\n", "\n");
    if !text.contains("-----BEGIN") {
        let mut e = c.env_error(
            "SSL_CERT",
            "expected PEM text (the private key and the certificate chain, lines separated by \\n)",
        );
        // It may hold a private key: never shown.
        e.value = None;
        return Err(vec![e]);
    }
    Ok(vec![CertificateDecl {
        name: scoped(&c.group),
        origin: format!("env SSL_CERT ({} {})", c.kind, c.name),
        pem: CertificatePem::Text {
            cert: text.clone(),
            key: text,
        },
        default: false,
    }])
}
