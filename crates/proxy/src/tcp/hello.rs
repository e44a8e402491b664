//! The TLS ClientHello, read without taking it off the connection: what a TLS entrypoint with
//! passthrough routers, or a TCP entrypoint whose routers name hosts, chooses by. The first
//! bytes are peeked (`MSG_PEEK`) until the whole ClientHello is in; the connection is then
//! passed through untouched, or handed to rustls to terminate as if nothing had been read.
//!
//! Parsed here rather than by rustls, for what is forwarded: a name with characters no host
//! name has is refused (rustls drops it silently, so such a connection would be terminated
//! with the default certificate), a TLS 1.0 client can still reach a passthrough server, and
//! parsing is bounded by [`MAX_HELLO`] bytes however the records are cut. The parser only
//! reads the record and handshake framing, the server_name extension (RFC 6066 §3) and ALPN
//! (RFC 7301); it is fuzzed (`fuzz/fuzz_targets/client_hello.rs`).

use std::time::Duration;

use tokio::net::TcpStream;

use crate::tcp::peek::PeekFailed;

/// The largest ClientHello accepted (records' framing included): a post-quantum key share makes
/// one of 2 KiB, and nothing a browser sends comes near this.
pub const MAX_HELLO: usize = 16 * 1024;

/// What the first bytes of a connection say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Not all of it has come yet.
    Incomplete,
    Hello(Hello),
    /// The first byte is not a TLS handshake's: plain TCP (or plain HTTP on a TLS port).
    NotTls,
    /// Not a ClientHello Tether would forward: the connection is closed.
    Invalid(&'static str),
}

/// The parts of a ClientHello that routing reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hello {
    /// The server name, lower case, one trailing dot left out.
    pub sni: Option<String>,
    /// The protocols offered by ALPN, in the client's order.
    pub alpn: Vec<Vec<u8>>,
}

impl Hello {
    /// Offers only `acme-tls/1`: an ACME server validating a TLS-ALPN-01 challenge (RFC 8737).
    pub fn is_acme_challenge(&self) -> bool {
        self.alpn.len() == 1 && self.alpn[0] == b"acme-tls/1"
    }
}

const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;

/// Parse the first bytes of a connection.
pub fn parse(bytes: &[u8]) -> Parsed {
    let mut message = Vec::new();
    let mut rest = bytes;
    // The handshake message may be cut across records: join their payloads.
    if bytes.first().is_some_and(|&b| b != HANDSHAKE) {
        return Parsed::NotTls;
    }
    loop {
        if rest.len() < 5 {
            return incomplete(bytes);
        }
        if rest[0] != HANDSHAKE {
            return Parsed::Invalid("a TLS record that is not a handshake's");
        }
        if rest[1] != 3 {
            return Parsed::Invalid("not a TLS record version");
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if len == 0 || len > 1 << 14 {
            return Parsed::Invalid("a TLS record of an invalid length");
        }
        if rest.len() < 5 + len {
            return incomplete(bytes);
        }
        message.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
        if message.len() >= 4 {
            if message[0] != CLIENT_HELLO {
                return Parsed::Invalid("the first handshake message is not a ClientHello");
            }
            let need = 4 + u24(&message[1..4]);
            if need > MAX_HELLO {
                return Parsed::Invalid("a ClientHello over 16 KiB");
            }
            if message.len() >= need {
                return match client_hello(&message[4..need]) {
                    Some(h) => h,
                    None => Parsed::Invalid("a malformed ClientHello"),
                };
            }
        }
    }
}

fn incomplete(bytes: &[u8]) -> Parsed {
    if bytes.len() >= MAX_HELLO {
        Parsed::Invalid("a ClientHello over 16 KiB")
    } else {
        Parsed::Incomplete
    }
}

fn u24(b: &[u8]) -> usize {
    (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
}

/// A cursor over a ClientHello's body; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    /// A vector with a one- or two-byte length.
    fn vec8(&mut self) -> Option<Reader<'a>> {
        let n = usize::from(self.u8()?);
        self.take(n).map(Reader)
    }
    fn vec16(&mut self) -> Option<Reader<'a>> {
        let n = usize::from(self.u16()?);
        self.take(n).map(Reader)
    }
}

/// The ClientHello's body: `None` if its framing is broken; `Invalid` for a bad server name.
fn client_hello(body: &[u8]) -> Option<Parsed> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    if r.vec8()?.0.len() > 32 {
        return None; // legacy_session_id
    }
    r.vec16()?; // cipher_suites
    r.vec8()?; // legacy_compression_methods
    let mut hello = Hello::default();
    if r.0.is_empty() {
        return Some(Parsed::Hello(hello)); // no extensions at all
    }
    let mut exts = r.vec16()?;
    let mut seen_sni = false;
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let mut data = exts.vec16()?;
        match kind {
            EXT_SERVER_NAME => {
                if std::mem::replace(&mut seen_sni, true) {
                    return Some(Parsed::Invalid("two server_name extensions"));
                }
                let mut list = data.vec16()?;
                while !list.0.is_empty() {
                    let name_type = list.u8()?;
                    let name = list.vec16()?.0;
                    if name_type == 0 {
                        if hello.sni.is_some() {
                            return Some(Parsed::Invalid("two host names in server_name"));
                        }
                        match host_name(name) {
                            Some(n) => hello.sni = Some(n),
                            None => return Some(Parsed::Invalid("an invalid server name")),
                        }
                    }
                }
            }
            EXT_ALPN => {
                let mut list = data.vec16()?;
                while !list.0.is_empty() {
                    let p = list.vec8()?.0;
                    if p.is_empty() {
                        return None;
                    }
                    hello.alpn.push(p.to_vec());
                }
            }
            _ => {}
        }
    }
    Some(Parsed::Hello(hello))
}

/// A server name as routing compares it: letters, digits, `-` and `_` in non-empty labels of
/// at most 63, lower case, one trailing dot left out; else `None`.
pub fn host_name(raw: &[u8]) -> Option<String> {
    let raw = raw.strip_suffix(b".").unwrap_or(raw);
    if raw.is_empty() || raw.len() > 253 {
        return None;
    }
    let label_ok = |l: &[u8]| {
        !l.is_empty()
            && l.len() <= 63
            && l.iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    };
    if !raw.split(|b| *b == b'.').all(label_ok) {
        return None;
    }
    Some(String::from_utf8_lossy(raw).to_ascii_lowercase())
}

/// Why a connection's ClientHello could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PeekError {
    #[error("not TLS")]
    NotTls,
    #[error("{0}")]
    Invalid(&'static str),
    #[error("reading the ClientHello: {0}")]
    Peek(#[from] PeekFailed),
}

/// Peek at `stream` until its ClientHello is whole, within `timeout`; the bytes stay on the
/// connection for whoever reads it next.
pub async fn peek(stream: &TcpStream, timeout: Duration) -> Result<Hello, PeekError> {
    let decided = crate::tcp::peek::until(stream, MAX_HELLO, timeout, |bytes| match parse(bytes) {
        Parsed::Incomplete => None,
        Parsed::Hello(h) => Some(Ok(h)),
        Parsed::NotTls => Some(Err(PeekError::NotTls)),
        Parsed::Invalid(why) => Some(Err(PeekError::Invalid(why))),
    });
    decided.await?
}

/// For the fuzz target: parse `data` as a connection's first bytes; a name found is a valid host
/// name, and every prefix of a whole ClientHello is incomplete or refused, never another hello.
#[doc(hidden)]
pub fn fuzz_client_hello(data: &[u8]) {
    let parsed = parse(data);
    if let Parsed::Hello(h) = &parsed {
        if let Some(n) = &h.sni {
            assert_eq!(host_name(n.as_bytes()).as_deref(), Some(n.as_str()));
        }
        assert!(h.alpn.iter().all(|p| !p.is_empty()));
    }
    if data.len() <= MAX_HELLO {
        for cut in [data.len() / 2, data.len().saturating_sub(1)] {
            if let Parsed::Hello(h) = parse(&data[..cut]) {
                assert!(
                    matches!(&parsed, Parsed::Hello(_)),
                    "a prefix is a hello ({h:?}) while the whole is {parsed:?}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello with these extensions, in one record.
    pub(crate) fn hello_bytes(sni: Option<&[u8]>, alpn: &[&[u8]]) -> Vec<u8> {
        let mut exts = Vec::new();
        if let Some(name) = sni {
            let mut entry = vec![0u8];
            entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
            entry.extend_from_slice(name);
            let mut list = (entry.len() as u16).to_be_bytes().to_vec();
            list.extend_from_slice(&entry);
            exts.extend_from_slice(&EXT_SERVER_NAME.to_be_bytes());
            exts.extend_from_slice(&(list.len() as u16).to_be_bytes());
            exts.extend_from_slice(&list);
        }
        if !alpn.is_empty() {
            let mut list = Vec::new();
            for p in alpn {
                list.push(p.len() as u8);
                list.extend_from_slice(p);
            }
            let mut data = (list.len() as u16).to_be_bytes().to_vec();
            data.extend_from_slice(&list);
            exts.extend_from_slice(&EXT_ALPN.to_be_bytes());
            exts.extend_from_slice(&(data.len() as u16).to_be_bytes());
            exts.extend_from_slice(&data);
        }
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one cipher suite
        body.extend_from_slice(&[1, 0]); // null compression
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut msg = vec![CLIENT_HELLO];
        msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend_from_slice(&body);
        record(&msg)
    }

    fn record(payload: &[u8]) -> Vec<u8> {
        let mut r = vec![HANDSHAKE, 3, 1];
        r.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        r.extend_from_slice(payload);
        r
    }

    #[test]
    fn the_name_and_protocols_are_read() {
        let b = hello_bytes(Some(b"DB.Example."), &[b"h2", b"http/1.1"]);
        let Parsed::Hello(h) = parse(&b) else {
            panic!("{:?}", parse(&b))
        };
        assert_eq!(h.sni.as_deref(), Some("db.example"));
        assert_eq!(h.alpn, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert!(!h.is_acme_challenge());
        let acme = hello_bytes(Some(b"a.example"), &[b"acme-tls/1"]);
        assert!(matches!(parse(&acme), Parsed::Hello(h) if h.is_acme_challenge()));
        assert_eq!(
            parse(&hello_bytes(None, &[])),
            Parsed::Hello(Hello::default())
        );
    }

    #[test]
    fn openssls_own_hellos_are_read() {
        let corpus = |name: &str| {
            let path = format!(
                "{}/../../fuzz/corpus/client_hello/{name}",
                env!("CARGO_MANIFEST_DIR")
            );
            parse(&std::fs::read(path).unwrap())
        };
        let Parsed::Hello(h) = corpus("openssl-sni-alpn") else {
            panic!()
        };
        assert_eq!(h.sni.as_deref(), Some("db.example.com"));
        assert_eq!(h.alpn, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert_eq!(corpus("openssl-no-sni"), Parsed::Hello(Hello::default()));
        assert!(matches!(corpus("openssl-acme-tls12"), Parsed::Hello(h) if h.is_acme_challenge()));
        assert_eq!(corpus("plain-http"), Parsed::NotTls);
    }

    #[test]
    fn every_cut_of_a_hello_waits_for_the_rest() {
        let b = hello_bytes(Some(b"a.example"), &[]);
        for cut in 0..b.len() {
            assert_eq!(parse(&b[..cut]), Parsed::Incomplete, "cut at {cut}");
        }
        // The same message cut over three records.
        let msg = &b[5..];
        let mut split = record(&msg[..3]);
        split.extend(record(&msg[3..40]));
        split.extend(record(&msg[40..]));
        assert!(matches!(parse(&split), Parsed::Hello(h) if h.sni.as_deref() == Some("a.example")));
    }

    #[test]
    fn what_is_not_a_good_hello_is_refused() {
        let bad = |b: &[u8]| matches!(parse(b), Parsed::Invalid(_));
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Parsed::NotTls);
        assert_eq!(parse(b"*"), Parsed::NotTls);
        assert!(bad(&hello_bytes(Some(b"a b.example"), &[])));
        assert!(bad(&hello_bytes(Some(b"a..example"), &[])));
        assert!(bad(&hello_bytes(Some(b""), &[])));
        assert!(bad(&hello_bytes(Some(b"a.example\0.evil"), &[])));
        // A handshake message other than a ClientHello.
        let mut b = hello_bytes(Some(b"a.example"), &[]);
        b[5] = 2;
        assert!(bad(&b));
        // Claims more than 16 KiB.
        let mut b = hello_bytes(None, &[]);
        b[6..9].copy_from_slice(&[0, 0x40, 0x01]);
        assert!(bad(&b));
        // Records of a handshake that never ends: refused once 16 KiB came.
        let mut b = hello_bytes(None, &[]);
        b[6..9].copy_from_slice(&[0, 0x3f, 0xf0]);
        let mut many = b[..9].to_vec();
        while many.len() < MAX_HELLO {
            many.extend(record(&[0; 1000]));
        }
        assert!(bad(&many));
        // Framing that lies about a length inside the body.
        let mut b = hello_bytes(Some(b"a.example"), &[]);
        let last = b.len() - 1;
        b.truncate(last);
        let n = u16::from_be_bytes([b[3], b[4]]) - 1;
        b[3..5].copy_from_slice(&n.to_be_bytes());
        let m = u24(&b[6..9]) - 1;
        b[6..9].copy_from_slice(&(m as u32).to_be_bytes()[1..]);
        assert!(bad(&b));
    }

    #[tokio::test]
    async fn peeking_leaves_the_bytes_and_waits_for_a_slow_client() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (mut s, _) = l.accept().await.unwrap();
        let b = hello_bytes(Some(b"slow.example"), &[b"h2"]);
        let (first, rest) = b.split_at(20);
        c.write_all(first).await.unwrap();
        let writer = {
            let rest = rest.to_vec();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                c.write_all(&rest).await.unwrap();
                c
            })
        };
        let h = peek(&s, Duration::from_secs(5)).await.unwrap();
        assert_eq!(h.sni.as_deref(), Some("slow.example"));
        let mut all = vec![0; b.len()];
        s.read_exact(&mut all).await.unwrap();
        assert_eq!(all, b, "every byte is still there to read");
        let mut c = writer.await.unwrap();
        // A client that sends half and stops is given up on.
        c.write_all(first).await.unwrap();
        let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut c2 = TcpStream::connect(l2.local_addr().unwrap()).await.unwrap();
        let (s2, _) = l2.accept().await.unwrap();
        c2.write_all(first).await.unwrap();
        let e = peek(&s2, Duration::from_millis(100)).await.unwrap_err();
        assert!(matches!(e, PeekError::Peek(PeekFailed::Timeout(_))), "{e}");
    }
}
