//! Server-side sessions under the `connect.sid` cookie, as express-session keeps them: the cookie
//! holds only an id, the visit count lives in this process (express-session's default
//! MemoryStore). A session id this server never issued starts a new session (and a new cookie),
//! exactly what breaks without sticky routing.
//!
//! With a directory (`tether whoami --sessions DIR`), each session is a file there instead:
//! replicas sharing the directory (a volume) share their sessions, as an application with a
//! shared store (express-session with connect-redis) does, and a session outlives the task that
//! started it. A rolling update then keeps every session's count, if the proxy hands the
//! application its own cookie intact.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use http::HeaderMap;

/// The application cookie, as express-session names it.
pub const SESSION_COOKIE: &str = "connect.sid";

/// Sessions beyond this count evict the oldest half (a demo server must not grow without bound).
const MAX_SESSIONS: usize = 100_000;

#[derive(Debug, Default)]
pub(crate) struct Store {
    visits: Mutex<HashMap<String, (u64, u64)>>,
    /// Sessions as files here instead of in `visits`.
    dir: Option<PathBuf>,
}

/// The value of cookie `name` in the request's Cookie headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A new session id, in express-session's shape: "s:" (URL-encoded) and an opaque id.
fn new_id() -> String {
    format!(
        "s%3A{}",
        (0..32)
            .map(|_| fastrand::alphanumeric())
            .collect::<String>()
    )
}

/// Is `id` one [`new_id`] could have made (so a file name under the directory, never a path)?
fn well_formed(id: &str) -> bool {
    id.strip_prefix("s%3A")
        .is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

impl Store {
    /// Sessions kept as files under `dir` (shared by every replica that mounts it), or, without
    /// one, in this process.
    pub fn new(dir: Option<PathBuf>) -> Store {
        Store {
            visits: Mutex::default(),
            dir,
        }
    }

    /// Count a visit: (session id, visits including this one, whether the session is new).
    pub fn visit(&self, headers: &HeaderMap) -> (String, u64, bool) {
        if let Some(dir) = &self.dir {
            // One visit at a time in this process; one browser sends one request at a time.
            let _one = self.visits.lock().expect("session store poisoned");
            return in_dir(dir, cookie(headers, SESSION_COOKIE));
        }
        let mut map = self.visits.lock().expect("session store poisoned");
        let seq = map.len() as u64;
        if let Some(id) = cookie(headers, SESSION_COOKIE) {
            if let Some(entry) = map.get_mut(id) {
                entry.0 += 1;
                return (id.to_string(), entry.0, false);
            }
        }
        if map.len() >= MAX_SESSIONS {
            let mut ages: Vec<u64> = map.values().map(|v| v.1).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            map.retain(|_, v| v.1 > cut);
        }
        let id = new_id();
        map.insert(id.clone(), (1, seq));
        (id, 1, true)
    }
}

/// A visit of session `id` kept as the file `dir/id` holding its count. A file that cannot be
/// read or written starts a new session, as a store that lost it would.
fn in_dir(dir: &Path, id: Option<&str>) -> (String, u64, bool) {
    let write = |id: &str, visits: u64| {
        // Whole or not at all: another replica may read it at any moment.
        let tmp = dir.join(format!(".{id}.{}", std::process::id()));
        std::fs::write(&tmp, visits.to_string()).and_then(|()| std::fs::rename(&tmp, dir.join(id)))
    };
    if let Some(id) = id.filter(|id| well_formed(id)) {
        let known = std::fs::read_to_string(dir.join(id))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        if let Some(n) = known {
            match write(id, n + 1) {
                Ok(()) => return (id.to_string(), n + 1, false),
                Err(e) => {
                    tracing::warn!(error = %e, dir = %dir.display(), "whoami: cannot keep a session")
                }
            }
        }
    }
    let id = new_id();
    if let Err(e) = write(&id, 1) {
        tracing::warn!(error = %e, dir = %dir.display(), "whoami: cannot keep a session");
    }
    (id, 1, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(id: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            format!("{SESSION_COOKIE}={id}").parse().unwrap(),
        );
        h
    }

    #[test]
    fn two_stores_on_one_directory_share_sessions_and_a_path_is_never_an_id() {
        let dir = std::env::temp_dir().join(format!("whoami-sessions-{}", new_id()));
        std::fs::create_dir(&dir).unwrap();
        let (a, b) = (Store::new(Some(dir.clone())), Store::new(Some(dir.clone())));
        let (id, n, new) = a.visit(&HeaderMap::new());
        assert_eq!((n, new), (1, true));
        assert_eq!(b.visit(&with_cookie(&id)), (id.clone(), 2, false));
        assert_eq!(a.visit(&with_cookie(&id)), (id.clone(), 3, false));
        // Not an id this store makes: a new session, and nothing read or written outside.
        let (other, n, new) = a.visit(&with_cookie("..%2F..%2Fetc%2Fpasswd"));
        assert_eq!((n, new), (1, true));
        assert_ne!(other, id);
        // In memory, another store knows nothing of it.
        let m = Store::default();
        assert_eq!(m.visit(&with_cookie(&id)).1, 1);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
