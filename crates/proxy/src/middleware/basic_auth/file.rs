//! A users file, followed while it changes: read when the table that names it is compiled
//! (unreadable or malformed: the table is refused, naming the field), then checked once a
//! second by a thread of its own; a change is read and used from the next request on. A change
//! that cannot be read keeps the users read last, and says so in the log (line numbers only,
//! never a line), and [`Followed::problem`] keeps why until a change that can be used comes
//! (the admin API shows it). The thread ends once no table names the file.

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

    /// Why the users file that `f` names (a secret's under this folder) is not in use as it is
    /// now, when a change to it could not be used; `None` when it is, or no table follows it.
    pub fn users_file_problem(&self, f: &tether_model::middleware::UsersFile) -> Option<String> {
        use tether_model::middleware::UsersFile;
        let path = match f {
            UsersFile::Path(p) => p.clone(),
            UsersFile::Secret(name) => self.path(name),
        };
        followed(&path)?.problem()
    }
}

/// A users file and what it held when last read.
#[derive(Debug)]
pub struct Followed {
    path: PathBuf,
    users: ArcSwap<Vec<User>>,
    /// Why the file as it is now is not used (the users read before still apply).
    problem: Mutex<Option<String>>,
}

impl Followed {
    pub fn users(&self) -> arc_swap::Guard<Arc<Vec<User>>> {
        self.users.load()
    }

    /// Why the file as it is now is not in use, when a change could not be used: the path and
    /// the reason (line numbers only, never a line).
    pub fn problem(&self) -> Option<String> {
        self.problem.lock().expect("problem poisoned").clone()
    }

    fn set_problem(&self, p: Option<String>) {
        *self.problem.lock().expect("problem poisoned") = p;
    }
}

/// Every file followed, by path.
fn all() -> std::sync::MutexGuard<'static, HashMap<PathBuf, Weak<Followed>>> {
    static FOLLOWED: OnceLock<Mutex<HashMap<PathBuf, Weak<Followed>>>> = OnceLock::new();
    FOLLOWED
        .get_or_init(Default::default)
        .lock()
        .expect("followed poisoned")
}

/// The file at `path`, if a table follows it; nothing is read.
pub fn followed(path: &Path) -> Option<Arc<Followed>> {
    all().get(path).and_then(Weak::upgrade)
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
    let mut all = all();
    let (users, modified) = read(&path)?;
    if let Some(f) = all.get(&path).and_then(Weak::upgrade) {
        f.users.store(Arc::new(users));
        f.set_problem(None);
        return Ok(f);
    }
    let f = Arc::new(Followed {
        path: path.clone(),
        users: ArcSwap::from_pointee(users),
        problem: Mutex::new(None),
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
                f.set_problem(None);
                modified = m;
                failing = false;
            }
            Err(e) => {
                if !failing {
                    tracing::error!(error = %e, "users file changed but cannot be used; the users read last still apply");
                }
                f.set_problem(Some(e));
                modified = now;
                failing = true;
            }
        }
    }
}
