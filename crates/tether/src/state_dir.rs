//! Where Tether keeps state between runs (a generated affinity key, the demo's configuration).

use std::path::PathBuf;

/// `$TETHER_STATE_DIR`, else `/var/lib/tether` for root, else `$XDG_STATE_HOME/tether`, else
/// `~/.local/state/tether`, else `./.tether`.
pub fn default() -> PathBuf {
    if let Some(d) = std::env::var_os("TETHER_STATE_DIR") {
        return d.into();
    }
    if std::env::var("USER").as_deref() == Ok("root") || std::env::var_os("HOME").is_none() {
        if let Ok(()) = std::fs::create_dir_all("/var/lib/tether") {
            return "/var/lib/tether".into();
        }
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(x).join("tether");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".local/state/tether");
    }
    ".tether".into()
}
