//! The request's host, as routing sees it: from the URI's authority (HTTP/2, absolute-form) or
//! the `Host` header, without the port, lower case. Parsed in place: no allocation unless the
//! client sent upper-case letters.

use std::borrow::Cow;

/// What a byte may be in a reg-name (RFC 3986 §3.2.2: unreserved / pct-encoded / sub-delims).
const NOT_ALLOWED: u8 = 0;
const ALLOWED: u8 = 1;
const UPPER: u8 = 2;

static CLASS: [u8; 256] = {
    let mut t = [NOT_ALLOWED; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_uppercase() {
            t[b] = UPPER;
        } else if c.is_ascii_alphanumeric() {
            t[b] = ALLOWED;
        }
        b += 1;
    }
    let others = b"-._~%!$&'()*+,;=";
    let mut i = 0;
    while i < others.len() {
        t[others[i] as usize] = ALLOWED;
        i += 1;
    }
    t
};

/// The host part of an `authority` (`host[:port]`), lower case; `None` when it is empty or not a
/// valid host (RFC 3986 reg-name or IP literal, optional numeric port, no userinfo). One pass over
/// the bytes; no allocation unless there are upper-case letters.
pub fn parse(authority: &[u8]) -> Option<Cow<'_, str>> {
    let host = if let Some(rest) = authority.strip_prefix(b"[") {
        let end = rest.iter().position(|&b| b == b']')?;
        let (lit, after) = (&rest[..end], &rest[end + 1..]);
        if lit.is_empty()
            || !lit
                .iter()
                .all(|b| b.is_ascii_hexdigit() || *b == b':' || *b == b'.')
        {
            return None;
        }
        port_ok(after)?;
        let literal = &authority[..end + 2];
        if literal.iter().any(u8::is_ascii_uppercase) {
            return Some(Cow::Owned(lower(literal)));
        }
        literal
    } else {
        let (host, port) = match authority.iter().rposition(|&b| b == b':') {
            Some(i) => (&authority[..i], &authority[i..]),
            None => (authority, &[][..]),
        };
        port_ok(port)?;
        let mut seen = 0;
        for &b in host {
            let c = CLASS[usize::from(b)];
            if c == NOT_ALLOWED {
                return None;
            }
            seen |= c;
        }
        if host.is_empty() {
            return None;
        }
        if seen & UPPER != 0 {
            return Some(Cow::Owned(lower(host)));
        }
        host
    };
    Some(Cow::Borrowed(ascii_str(host)))
}

/// ASCII `bytes` in lower case.
fn lower(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| char::from(b.to_ascii_lowercase()))
        .collect()
}

/// `bytes` as text: every caller has checked that they are ASCII.
#[allow(unsafe_code)]
fn ascii_str(bytes: &[u8]) -> &str {
    debug_assert!(bytes.is_ascii());
    // SAFETY: both callers in `parse` pass only bytes they have checked: a reg-name's bytes each
    // have a `CLASS` other than NOT_ALLOWED (which only ASCII letters, digits and the listed
    // ASCII punctuation have), and an IP literal is `[`, hex digits, `:` and `.`, and `]`. ASCII
    // is valid UTF-8.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

/// Empty, or `:` followed by up to five digits.
fn port_ok(p: &[u8]) -> Option<()> {
    if p.is_empty() {
        return Some(());
    }
    let digits = p.strip_prefix(b":")?;
    (digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit)).then_some(())
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn hosts_are_lowercased_and_lose_their_port() {
        let parse = |s: &'static str| parse(s.as_bytes());
        assert_eq!(parse("example.com").as_deref(), Some("example.com"));
        assert_eq!(parse("Example.COM:8080").as_deref(), Some("example.com"));
        assert_eq!(parse("127.0.0.1:80").as_deref(), Some("127.0.0.1"));
        assert_eq!(parse("[::1]:8080").as_deref(), Some("[::1]"));
        assert_eq!(parse("[::1]").as_deref(), Some("[::1]"));
        assert_eq!(parse("[::FFFF:a]:1").as_deref(), Some("[::ffff:a]"));
        assert_eq!(parse("a:").as_deref(), Some("a"));
    }

    #[test]
    fn malformed_hosts_are_refused() {
        let parse = |s: &'static str| parse(s.as_bytes());
        for bad in [
            "",
            ":80",
            "a b",
            "user@host",
            "a:8x",
            "a:123456",
            "[::1",
            "[]",
            "[zz]",
            "a/b",
            "[::1]x",
            "a\u{e9}",
            "\u{e9}:80",
            "A\u{c9}",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
