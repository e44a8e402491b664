//! `basic_auth`: a request without a valid `Authorization: Basic` for one of `users` (or the
//! users of `users_file`) is answered 401 with `WWW-Authenticate: Basic realm="…"`.

use std::path::PathBuf;

use serde::Deserialize;

use super::htpasswd::{self, User};
use super::{Cx, Origin};
use crate::validate::ValidationError;

/// Realm when none is given.
pub const DEFAULT_REALM: &str = "tether";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BasicAuth {
    pub users: Vec<User>,
    /// More users, read from a file and followed while it changes.
    pub users_file: Option<UsersFile>,
    pub realm: String,
    /// `Authorization` is removed before the request goes on (default true).
    pub remove_header: bool,
}

/// Where `users_file` points.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UsersFile {
    /// Any path: only `tether.toml` may name one.
    Path(PathBuf),
    /// A Docker secret given to Tether (`/run/secrets/NAME`, or under `--secrets-dir`): what a
    /// label or the API may name, so neither can make Tether read an arbitrary file.
    Secret(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    #[serde(default)]
    users: Vec<String>,
    users_file: Option<String>,
    realm: Option<String>,
    remove_header: Option<bool>,
}

impl Raw {
    pub(super) fn convert(&self, cx: &Cx<'_>) -> Result<BasicAuth, Vec<ValidationError>> {
        let base = cx.base;
        let origin = cx.origin;
        let mut errors = Vec::new();
        let mut users = Vec::new();
        for (i, line) in self.users.iter().enumerate() {
            match htpasswd::parse_line(line) {
                Ok(u) if users.iter().any(|x: &User| x.name == u.name) => {
                    errors.push(ValidationError::new(
                        format!("{base}.users[{i}]"),
                        format!("user {:?} is listed twice", u.name),
                    ))
                }
                Ok(u) => users.push(u),
                Err(e) => errors.push(ValidationError::new(
                    format!("{base}.users[{i}]"),
                    e.to_string(),
                )),
            }
        }
        let users_file = match (&self.users_file, origin) {
            (None, _) => None,
            (Some(p), Origin::File) if !p.trim().is_empty() => Some(UsersFile::Path(p.into())),
            (Some(name), Origin::Untrusted) if is_secret_name(name) => {
                Some(UsersFile::Secret(name.clone()))
            }
            (Some(_), Origin::File) => {
                errors.push(ValidationError::new(
                    format!("{base}.users_file"),
                    "is empty",
                ));
                None
            }
            (Some(_), Origin::Untrusted) => {
                errors.push(ValidationError::new(
                    format!("{base}.users_file"),
                    "here it names a Docker secret given to Tether (letters, digits, '-', '_', '.'; not a path)",
                ));
                None
            }
        };
        if users.is_empty() && users_file.is_none() && errors.is_empty() {
            errors.push(ValidationError::new(
                base,
                "no users: give `users` (htpasswd lines) or `users_file`",
            ));
        }
        let realm = self.realm.clone().unwrap_or_else(|| DEFAULT_REALM.into());
        if realm.is_empty()
            || realm
                .bytes()
                .any(|b| b.is_ascii_control() || b == b'"' || b == b'\\')
        {
            errors.push(ValidationError::new(
                format!("{base}.realm"),
                "must be non-empty, without quotes, backslashes or control characters",
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(BasicAuth {
            users,
            users_file,
            realm,
            remove_header: self.remove_header.unwrap_or(true),
        })
    }
}

/// Is `s` the name of a Docker secret (no path)?
pub fn is_secret_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}
