//! ACME challenge answers, read by the request path of every replica: the key authorisation of
//! each pending HTTP-01 token (answered at `/.well-known/acme-challenge/TOKEN` before routing,
//! [`crate::handler`]'s local answers) and the validation certificate of each name with a
//! pending TLS-ALPN-01 challenge (presented to a ClientHello that offers only `acme-tls/1`,
//! [`crate::front::tls`]). The ACME client (`tether-acme`) fills them; each set is swapped whole.
//!
//! Only tokens of pending orders are answered, and only tokens of `[A-Za-z0-9_-]+`: any other
//! path under `/.well-known/acme-challenge/` falls through to routing, since users may run their
//! own ACME client behind the proxy.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_rustls::rustls::sign::CertifiedKey;

/// Where HTTP-01 tokens are asked for.
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";
/// The ALPN protocol of TLS-ALPN-01 (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The answers to pending challenges.
#[derive(Default)]
pub struct Challenges {
    /// Token → key authorisation.
    http: ArcSwap<HashMap<String, String>>,
    /// Lower-case name → validation certificate.
    alpn: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
    /// Any HTTP-01 token pending: a request path pays one load when none is.
    any_http: AtomicBool,
}

impl std::fmt::Debug for Challenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenges")
            .field("http", &self.http.load().len())
            .field("alpn", &self.alpn.load().len())
            .finish()
    }
}

/// Is `t` a token as ACME makes them (base64url, RFC 8555 section 8.3).
pub fn is_token(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 256
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Challenges {
    pub fn new() -> Arc<Challenges> {
        Arc::new(Challenges::default())
    }

    /// Answer these HTTP-01 tokens from now on, and no others.
    pub fn set_http(&self, tokens: HashMap<String, String>) {
        self.any_http.store(!tokens.is_empty(), Ordering::Release);
        self.http.store(Arc::new(tokens));
    }

    /// Present these validation certificates from now on, and no others.
    pub fn set_alpn(&self, certs: HashMap<String, Arc<CertifiedKey>>) {
        self.alpn.store(Arc::new(certs));
    }

    /// The key authorisation to answer for request path `path`, if it asks for a pending token.
    pub fn http_answer(&self, path: &str) -> Option<String> {
        if !self.any_http.load(Ordering::Acquire) {
            return None;
        }
        let token = path.strip_prefix(HTTP01_PREFIX)?;
        if !is_token(token) {
            return None;
        }
        self.http.load().get(token).cloned()
    }

    /// The validation certificate for a ClientHello naming `sni`.
    pub fn alpn_cert(&self, sni: &str) -> Option<Arc<CertifiedKey>> {
        let name = sni.trim_end_matches('.').to_ascii_lowercase();
        self.alpn.load().get(&name).cloned()
    }

    /// The tokens and names pending (for tests and the log).
    pub fn pending(&self) -> (usize, usize) {
        (self.http.load().len(), self.alpn.load().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pending_well_formed_tokens_are_answered() {
        let c = Challenges::new();
        assert_eq!(c.http_answer("/.well-known/acme-challenge/abc"), None);
        c.set_http(HashMap::from([(
            "abc_-1".to_string(),
            "abc_-1.thumb".to_string(),
        )]));
        assert_eq!(
            c.http_answer("/.well-known/acme-challenge/abc_-1")
                .as_deref(),
            Some("abc_-1.thumb")
        );
        for other in [
            "/.well-known/acme-challenge/other",
            "/.well-known/acme-challenge/",
            "/.well-known/acme-challenge/abc_-1/x",
            "/.well-known/acme-challenge/abc_-1.x",
            "/abc_-1",
        ] {
            assert_eq!(c.http_answer(other), None, "{other}");
        }
        c.set_http(HashMap::new());
        assert_eq!(c.http_answer("/.well-known/acme-challenge/abc_-1"), None);
    }
}
