//! `basic_auth`: a request must carry one `Authorization: Basic` field with the name and
//! password of one of the users (listed, or in a users file followed while it changes), else it
//! is answered 401 with `WWW-Authenticate: Basic realm="…"`.
//!
//! Passwords are checked against the schemes `htpasswd` and `mkpasswd` write ([`verify`]), in
//! constant time. A bcrypt check costs milliseconds by design, so a check that passed is
//! remembered in a bounded cache ([`cache`]) keyed by a salted digest of the credentials and the
//! hash (never the password itself): a kept-alive client sending the same credentials pays for
//! bcrypt once. Neither hashes, passwords nor file lines appear in a log or an error.

mod apr1;
mod cache;
mod file;
mod verify;

use std::sync::Arc;

use base64::Engine as _;
use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::StatusCode;
use tether_model::middleware::{User, UsersFile};

use super::{Flow, Request};
use crate::headers::ReadFields as _;

pub use file::Secrets;

#[derive(Debug)]
pub struct BasicAuth {
    users: Box<[User]>,
    file: Option<Arc<file::Followed>>,
    /// `Basic realm="…"`.
    challenge: HeaderValue,
}

impl BasicAuth {
    pub fn new(
        d: &tether_model::middleware::BasicAuth,
        secrets: &Secrets,
    ) -> Result<BasicAuth, String> {
        let file = match &d.users_file {
            None => None,
            Some(UsersFile::Path(p)) => Some(file::follow(p.clone())?),
            Some(UsersFile::Secret(name)) => Some(file::follow(secrets.path(name))?),
        };
        Ok(BasicAuth {
            users: d.users.clone().into(),
            file,
            challenge: HeaderValue::from_str(&format!("Basic realm=\"{}\"", d.realm))
                .expect("the realm was checked"),
        })
    }

    pub fn request(&self, r: &mut Request<'_, '_>) -> Flow {
        let mut fields = r.head.values("authorization");
        let (Some(field), None) = (fields.next(), fields.next()) else {
            return self.refuse("credentials required");
        };
        let Some((name, password)) = credentials(field) else {
            return self.refuse("malformed Basic credentials");
        };
        let listed = self.users.iter().find(|u| u.name == name);
        let ok = match listed {
            Some(u) => check(u, field, &password),
            None => match &self.file {
                Some(f) => f
                    .users()
                    .iter()
                    .find(|u| u.name == name)
                    .is_some_and(|u| check(u, field, &password)),
                None => false,
            },
        };
        if ok {
            Flow::Next
        } else {
            self.refuse("wrong user name or password")
        }
    }

    fn refuse(&self, why: &str) -> Flow {
        let mut r = crate::answer::error(StatusCode::UNAUTHORIZED, why);
        r.headers_mut()
            .insert(WWW_AUTHENTICATE, self.challenge.clone());
        Flow::answer(r)
    }
}

/// Does `password` match `u`'s hash? Remembered once it does.
fn check(u: &User, field: &[u8], password: &[u8]) -> bool {
    let key = cache::key(&u.hash, field);
    if cache::contains(&key) {
        return true;
    }
    let ok = verify::verify(u, password);
    if ok {
        cache::insert(key);
    }
    ok
}

/// The user name and password of an `Authorization: Basic` value.
fn credentials(value: &[u8]) -> Option<(String, Vec<u8>)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let mut decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let password = decoded.split_off(colon + 1);
    decoded.pop();
    Some((String::from_utf8(decoded).ok()?, password))
}
