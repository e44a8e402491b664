//! The request's host, as routing sees it: from the URI's authority (HTTP/2, absolute-form) or
//! the `Host` header, without the port, lower case. Parsed in place: no allocation unless the
//! client sent upper-case letters.

use std::borrow::Cow;

/// The host part of an `authority` (`host[:port]`), lower case; `None` when it is empty or not a
/// valid host (RFC 3986 reg-name or IP literal, optional numeric port, no userinfo).
pub fn parse(authority: &str) -> Option<Cow<'_, str>> {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        let (lit, after) = (&rest[..end], &rest[end + 1..]);
        if lit.is_empty()
            || !lit
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        port_ok(after)?;
        &authority[..end + 2]
    } else {
        let (host, port) = match authority.rfind(':') {
            Some(i) => (&authority[..i], &authority[i..]),
            None => (authority, ""),
        };
        port_ok(port)?;
        if host.is_empty() || !host.bytes().all(reg_name_byte) {
            return None;
        }
        host
    };
    Some(if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    })
}

/// `""` or `:` followed by up to five digits.
fn port_ok(p: &str) -> Option<()> {
    if p.is_empty() {
        return Some(());
    }
    let digits = p.strip_prefix(':')?;
    (digits.len() <= 5 && digits.bytes().all(|b| b.is_ascii_digit())).then_some(())
}

/// unreserved / pct-encoded / sub-delims (RFC 3986 §3.2.2).
fn reg_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn hosts_are_lowercased_and_lose_their_port() {
        assert_eq!(parse("example.com").as_deref(), Some("example.com"));
        assert_eq!(parse("Example.COM:8080").as_deref(), Some("example.com"));
        assert_eq!(parse("127.0.0.1:80").as_deref(), Some("127.0.0.1"));
        assert_eq!(parse("[::1]:8080").as_deref(), Some("[::1]"));
        assert_eq!(parse("[::1]").as_deref(), Some("[::1]"));
        assert_eq!(parse("a:").as_deref(), Some("a"));
    }

    #[test]
    fn malformed_hosts_are_refused() {
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
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
