//! Server-side sessions under the `connect.sid` cookie, as express-session keeps them: the cookie
//! holds only an id, the visit count lives in this process. A session id this server never issued
//! starts a new session (and a new cookie), exactly what breaks without sticky routing.

use std::collections::HashMap;
use std::sync::Mutex;

use http::HeaderMap;

/// The application cookie, as express-session names it.
pub const SESSION_COOKIE: &str = "connect.sid";

/// Sessions beyond this count evict the oldest half (a demo server must not grow without bound).
const MAX_SESSIONS: usize = 100_000;

#[derive(Debug, Default)]
pub(crate) struct Store {
    visits: Mutex<HashMap<String, (u64, u64)>>,
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

impl Store {
    /// Count a visit: (session id, visits including this one, whether the session is new).
    pub fn visit(&self, headers: &HeaderMap) -> (String, u64, bool) {
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
        // Express-session's shape: "s:" (URL-encoded) and an opaque id.
        let id = format!(
            "s%3A{}",
            (0..32)
                .map(|_| fastrand::alphanumeric())
                .collect::<String>()
        );
        map.insert(id.clone(), (1, seq));
        (id, 1, true)
    }
}
