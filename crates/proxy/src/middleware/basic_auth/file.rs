//! A users file, followed while it changes: read when the table that names it is compiled
//! (unreadable or malformed: the table is refused, naming the field), then checked once a
//! second by a thread of its own; a change is read and used from the next request on. A change
//! that cannot be read keeps the users read last, and says so in the log (line numbers only,
//! never a line). The thread ends once no table names the file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tether_model::middleware::{htpasswd, User};

/// Where Docker secrets given to Tether are (`/run/secrets`, or `--secrets-dir`).
#[derive(Debug, Clone)]
pub struct Secrets(pub PathBuf);

impl Default for Secrets {
    fn default() -> Self {
        Secrets(PathBuf::from(tether_model::labels::certs::SECRETS_DIR))
    }
}

impl Secrets {
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

/// A users file and what it held when last read.
#[derive(Debug)]
pub struct Followed {
    path: PathBuf,
    users: ArcSwap<Vec<User>>,
}

impl Followed {
    pub fn users(&self) -> arc_swap::Guard<Arc<Vec<User>>> {
        self.users.load()
    }
}

/// What tells a change: the modification time and the length (a coarse clock may give two
/// writes one time).
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path)
        .and_then(|m| Ok((m.modified()?, m.len())))
        .ok()
}

fn read(path: &Path) -> Result<(Vec<User>, Stamp), String> {
    let modified = stamp(path);
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let users = htpasswd::parse_file(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((users, modified))
}

/// The file at `path`, followed; shared by every table that names it.
pub fn follow(path: PathBuf) -> Result<Arc<Followed>, String> {
    static FOLLOWED: OnceLock<Mutex<HashMap<PathBuf, Weak<Followed>>>> = OnceLock::new();
    let mut all = FOLLOWED
        .get_or_init(Default::default)
        .lock()
        .expect("followed poisoned");
    let (users, modified) = read(&path)?;
    if let Some(f) = all.get(&path).and_then(Weak::upgrade) {
        f.users.store(Arc::new(users));
        return Ok(f);
    }
    let f = Arc::new(Followed {
        path: path.clone(),
        users: ArcSwap::from_pointee(users),
    });
    all.insert(path, Arc::downgrade(&f));
    let weak = Arc::downgrade(&f);
    std::thread::Builder::new()
        .name("users-file".into())
        .spawn(move || watch(weak, modified))
        .map_err(|e| format!("cannot follow the file: {e}"))?;
    Ok(f)
}

fn watch(f: Weak<Followed>, mut modified: Stamp) {
    let mut failing = false;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let Some(f) = f.upgrade() else { return };
        let now = stamp(&f.path);
        if now == modified && !failing {
            continue;
        }
        match read(&f.path) {
            Ok((users, m)) => {
                tracing::info!(file = %f.path.display(), users = users.len(), "users file read again");
                f.users.store(Arc::new(users));
                modified = m;
                failing = false;
            }
            Err(e) => {
                if !failing {
                    tracing::error!(error = %e, "users file changed but cannot be used; the users read last still apply");
                }
                modified = now;
                failing = true;
            }
        }
    }
}
