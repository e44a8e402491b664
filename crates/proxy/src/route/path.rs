//! The request path as routing and the server both see it (RFC 3986 §6.2.2): percent-encoded
//! unreserved characters decoded (`%61` is `a`, `%2e` is `.`), other escapes kept with upper-case
//! hex (`%2F` stays encoded: it is data, not a separator), dot segments removed (`/a/./b/../c` is
//! `/a/c`). A path that would climb above the root, or holds `%00`, a backslash (raw or `%5C`) or
//! a malformed escape is refused with 400: servers disagree on what they mean, and a proxy that
//! routes on one reading while a server acts on another lets a request escape its route.
//! Merging `//` into `/` is an option (`[http] merge_slashes`), off by default, as a server may
//! give empty segments a meaning.
//!
//! Most paths need none of this: one scan finds that and leaves them as they are.

/// Why a path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// `%00`
    Nul,
    /// `\` or `%5C`
    Backslash,
    /// `%` not followed by two hex digits
    BadEscape,
    /// More `..` segments than there are segments before them.
    AboveRoot,
}

impl PathError {
    pub fn message(self) -> &'static str {
        match self {
            PathError::Nul => "the path holds %00",
            PathError::Backslash => "the path holds a backslash",
            PathError::BadEscape => "the path holds a malformed %-escape",
            PathError::AboveRoot => "the path climbs above the root with ..",
        }
    }
}

/// The normal form of `path` (origin-form, starting with `/`); `Ok(None)`: it is normal already.
pub fn normalize(path: &str, merge_slashes: bool) -> Result<Option<String>, PathError> {
    if !needs_work(path.as_bytes(), merge_slashes) {
        return Ok(None);
    }
    let decoded = decode(path.as_bytes())?;
    let out = remove_dots(&decoded, merge_slashes)?;
    Ok((out != path).then_some(out))
}

/// Could `p` change, or be refused? `%`, `\`, a `.` starting a segment, or `//` when merging.
fn needs_work(p: &[u8], merge_slashes: bool) -> bool {
    p.iter().enumerate().any(|(i, &b)| match b {
        b'%' | b'\\' => true,
        b'.' => i > 0 && p[i - 1] == b'/',
        b'/' => merge_slashes && p.get(i + 1) == Some(&b'/'),
        _ => false,
    })
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Unreserved escapes decoded, the others kept in upper case.
fn decode(p: &[u8]) -> Result<String, PathError> {
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'%' => {
                let (Some(h), Some(l)) = (
                    p.get(i + 1).copied().and_then(hex),
                    p.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadEscape);
                };
                let v = h << 4 | l;
                match v {
                    0 => return Err(PathError::Nul),
                    b'\\' => return Err(PathError::Backslash),
                    v if is_unreserved(v) => out.push(v),
                    v => out.extend_from_slice(format!("%{v:02X}").as_bytes()),
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash),
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    // Only ASCII went in for what was taken out: still UTF-8 if the path was.
    String::from_utf8(out).map_err(|_| PathError::BadEscape)
}

/// RFC 3986 §5.2.4 over segments; a trailing `.` or `..` leaves a trailing slash.
fn remove_dots(p: &str, merge_slashes: bool) -> Result<String, PathError> {
    let mut kept: Vec<&str> = Vec::new();
    let segments: Vec<&str> = p[1..].split('/').collect();
    let last = segments.len() - 1;
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => trailing_slash = i == last,
            ".." => {
                if kept.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = i == last;
            }
            "" if merge_slashes && i != last => {}
            s => {
                kept.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(p.len());
    for s in &kept {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// For the fuzz target and its corpus: a normal form is normal, and never climbs or keeps a
/// dot segment. Panics on a broken invariant.
#[doc(hidden)]
pub fn fuzz_normalize(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = format!("/{}", text.trim_start_matches('/'));
    for merge in [false, true] {
        if let Ok(Some(n)) = normalize(&path, merge) {
            assert!(n.starts_with('/'), "{n:?}");
            assert_eq!(
                normalize(&n, merge),
                Ok(None),
                "{path:?} gave {n:?}, which is not normal"
            );
            assert!(!n.split('/').any(|s| s == "." || s == ".."), "{n:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> String {
        normalize(p, false)
            .unwrap()
            .unwrap_or_else(|| p.to_string())
    }

    #[test]
    fn normal_paths_are_left_alone_without_copying() {
        for p in ["/", "/a/b", "/a/b/", "/a.b/c..d/.e", "/a//b", "/~user"] {
            assert_eq!(normalize(p, false), Ok(None), "{p}");
        }
    }

    #[test]
    fn dot_segments_and_unreserved_escapes_are_resolved() {
        assert_eq!(n("/x/../admin"), "/admin");
        assert_eq!(n("/a/%2E%2E/admin"), "/admin");
        assert_eq!(n("/%61dmin"), "/admin");
        assert_eq!(n("/a/./b/."), "/a/b/");
        assert_eq!(n("/a/b/.."), "/a/");
        assert_eq!(n("/a/%2fb"), "/a/%2Fb", "%2F stays encoded");
        assert_eq!(n("/a%20b"), "/a%20b");
        assert_eq!(n("/a/.%2e"), "/");
        assert_eq!(normalize("/a//b", true).unwrap().as_deref(), Some("/a/b"));
        assert_eq!(normalize("//a", true).unwrap().as_deref(), Some("/a"));
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        assert_eq!(normalize("/%2e%2e/admin", false), Err(PathError::AboveRoot));
        assert_eq!(normalize("/../etc", false), Err(PathError::AboveRoot));
        assert_eq!(normalize("/a/../../b", false), Err(PathError::AboveRoot));
        assert_eq!(normalize("/a%00b", false), Err(PathError::Nul));
        assert_eq!(normalize("/a\\b", false), Err(PathError::Backslash));
        assert_eq!(normalize("/a%5cb", false), Err(PathError::Backslash));
        assert_eq!(normalize("/a%zz", false), Err(PathError::BadEscape));
        assert_eq!(normalize("/a%4", false), Err(PathError::BadEscape));
    }
}
