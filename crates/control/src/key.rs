//! The affinity sealing key: from the configuration, from a file (a Docker secret), or generated
//! once and kept in the state directory. Replicas must share one key to accept each other's
//! cookies, so a generated key comes with a warning.

use std::io::Write;
use std::path::{Path, PathBuf};

use tether_balance::AffinityKey;
use tether_model::file_config::KeySource;

/// Minimum length of key material read from a file.
pub const MIN_KEY_LEN: usize = 32;
const GENERATED_NAME: &str = "affinity.key";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("affinity.key_file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "affinity.key_file {path}: holds {len} bytes; use at least {MIN_KEY_LEN} random bytes"
    )]
    TooShort { path: PathBuf, len: usize },
    #[error("cannot keep a generated affinity key in {path}: {source}")]
    Persist {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Load or create the key. `state_dir` holds a generated key.
pub fn load(source: &KeySource, state_dir: &Path) -> Result<AffinityKey, KeyError> {
    match source {
        KeySource::Inline(k) => Ok(AffinityKey::from_secret(k.as_bytes())),
        KeySource::File(path) => {
            let bytes = std::fs::read(path).map_err(|e| KeyError::Read {
                path: path.clone(),
                source: e,
            })?;
            let trimmed = bytes.trim_ascii();
            if trimmed.len() < MIN_KEY_LEN {
                return Err(KeyError::TooShort {
                    path: path.clone(),
                    len: trimmed.len(),
                });
            }
            Ok(AffinityKey::from_secret(trimmed))
        }
        KeySource::Generated => generated(state_dir),
    }
}

fn generated(dir: &Path) -> Result<AffinityKey, KeyError> {
    let path = dir.join(GENERATED_NAME);
    let persist = |e| KeyError::Persist {
        path: path.clone(),
        source: e,
    };
    if let Ok(bytes) = std::fs::read(&path) {
        if bytes.trim_ascii().len() >= MIN_KEY_LEN {
            tracing::warn!(path = %path.display(), "using this instance's own affinity key: other Tether replicas will not accept its cookies; set affinity.key_file to a shared secret");
            return Ok(AffinityKey::from_secret(bytes.trim_ascii()));
        }
    }
    std::fs::create_dir_all(dir).map_err(persist)?;
    let secret: String = random_secret();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&path).map_err(persist)?;
    f.write_all(secret.as_bytes()).map_err(persist)?;
    tracing::warn!(path = %path.display(), "generated an affinity key for this instance: replicas need a shared one (affinity.key_file in the file, or --key-file) to honour each other's sticky cookies");
    Ok(AffinityKey::from_secret(secret.as_bytes()))
}

/// 64 characters from the operating system's random source, falling back to a seeded generator.
pub fn random_secret() -> String {
    let mut buf = [0u8; 48];
    let from_os = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf));
    if from_os.is_err() {
        let mut rng = fastrand::Rng::new();
        buf.iter_mut().for_each(|b| *b = rng.u8(..));
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_kept_and_reused() {
        let dir = std::env::temp_dir().join(format!("tether-key-{}", fastrand::u64(..)));
        let a = load(&KeySource::Generated, &dir).unwrap();
        let b = load(&KeySource::Generated, &dir).unwrap();
        assert_eq!(a.seal("s", "x"), b.seal("s", "x"));
        let short = dir.join("short");
        std::fs::write(&short, "abc").unwrap();
        assert!(matches!(
            load(&KeySource::File(short), &dir),
            Err(KeyError::TooShort { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
