//! Users and their password hashes, as `htpasswd` and `mkpasswd` write them: `name:hash`, one
//! per line. The schemes Tether checks are bcrypt (`$2y$`, `$2a$`, `$2b$`), `{SHA}`, Apache's
//! MD5 (`$apr1$`) and sha-crypt (`$5$`, `$6$`). A password in plain text is refused: a dialect
//! that carries plain passwords has them hashed when it is parsed ([`hash_plain`]). A hash is
//! never printed: [`User`]'s `Debug` leaves it out, and no error quotes it.

use std::fmt;

use sha2::Digest;

/// A password hash's scheme, named by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashScheme {
    Bcrypt,
    /// `{SHA}`: base64 of SHA-1, unsalted (htpasswd -s).
    Sha1,
    /// `$apr1$`: Apache's MD5-crypt (htpasswd -m, its default before 2.4).
    Apr1,
    /// `$5$`
    Sha256Crypt,
    /// `$6$`
    Sha512Crypt,
}

impl HashScheme {
    /// The scheme of `hash`, by its prefix.
    pub fn of(hash: &str) -> Option<HashScheme> {
        if ["$2y$", "$2a$", "$2b$"].iter().any(|p| hash.starts_with(p)) {
            Some(HashScheme::Bcrypt)
        } else if hash.starts_with("{SHA}") {
            Some(HashScheme::Sha1)
        } else if hash.starts_with("$apr1$") {
            Some(HashScheme::Apr1)
        } else if hash.starts_with("$5$") {
            Some(HashScheme::Sha256Crypt)
        } else if hash.starts_with("$6$") {
            Some(HashScheme::Sha512Crypt)
        } else {
            None
        }
    }
}

/// One user and the hash of their password.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct User {
    pub name: String,
    pub hash: String,
    pub scheme: HashScheme,
}

impl fmt::Debug for User {
    /// The name and the scheme; never the hash.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "User({}, {:?})", self.name, self.scheme)
    }
}

/// Why a line is refused. Its `Display` names the user and never quotes the hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("expected user:hash (the output of htpasswd -nB user)")]
    NoColon,
    #[error("the user name is empty")]
    NoName,
    #[error("user {0:?}: the password is in plain text or in a scheme Tether does not check; hash it with `htpasswd -nB {0}` (bcrypt; also accepted: {{SHA}}, $apr1$, $5$, $6$)")]
    NotHashed(String),
    #[error("user {0:?}: the {1} hash is malformed")]
    Malformed(String, &'static str),
}

/// Parse one `name:hash` line.
pub fn parse_line(line: &str) -> Result<User, LineError> {
    let (name, hash) = line.trim().split_once(':').ok_or(LineError::NoColon)?;
    if name.is_empty() {
        return Err(LineError::NoName);
    }
    let scheme = HashScheme::of(hash).ok_or_else(|| LineError::NotHashed(name.to_string()))?;
    let well_formed = match scheme {
        HashScheme::Bcrypt => hash.len() == 60,
        HashScheme::Sha1 => {
            let b = &hash[5..];
            b.len() == 28
                && b.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(&c))
        }
        HashScheme::Apr1 | HashScheme::Sha256Crypt | HashScheme::Sha512Crypt => {
            hash.matches('$').count() >= 3
        }
    };
    if !well_formed {
        let what = match scheme {
            HashScheme::Bcrypt => "bcrypt",
            HashScheme::Sha1 => "{SHA}",
            HashScheme::Apr1 => "$apr1$",
            HashScheme::Sha256Crypt => "$5$",
            HashScheme::Sha512Crypt => "$6$",
        };
        return Err(LineError::Malformed(name.to_string(), what));
    }
    Ok(User {
        name: name.to_string(),
        hash: hash.to_string(),
        scheme,
    })
}

/// Parse an htpasswd file's text: one user per line; blank lines and `#` comments skipped.
/// Errors name the line number, never its content.
pub fn parse_file(text: &str) -> Result<Vec<User>, String> {
    let mut users = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        users.push(parse_line(line).map_err(|e| format!("line {}: {e}", i + 1))?);
    }
    Ok(users)
}

/// A plain password from a dialect that carries them (Docker Flow Proxy's `users` without
/// `usersPassEncrypted`, dockercloud/haproxy's `HTTP_BASIC_AUTH`), hashed at once with
/// SHA-512-crypt so that it is never kept in plain text. The salt is derived from the user name,
/// so the same labels give the same declaration (and table version) on every replica.
pub fn hash_plain(name: &str, password: &str) -> User {
    use sha_crypt::PasswordHasher;
    let digest = sha2::Sha512::digest(format!("tether basic_auth salt\0{name}"));
    let salt = &digest[..12];
    let hash = sha_crypt::ShaCrypt::SHA512
        .hash_password_with_salt(password.as_bytes(), salt)
        .expect("SHA-512-crypt takes any password and a 12-byte salt")
        .as_str()
        .to_string();
    User {
        name: name.to_string(),
        hash,
        scheme: HashScheme::Sha512Crypt,
    }
}
