//! The PROXY protocol (HAProxy's `proxy-protocol.txt`, v1 text and v2 binary): the header a
//! load balancer in front of Tether sends first to say whose connection this is, and the one
//! Tether sends a TCP service's server (`proxy_protocol = "v2"`).
//!
//! Read on an entrypoint with `proxy_protocol = { trusted = [...] }` before anything else reads
//! the connection: a peer outside `trusted` is closed, as is a malformed header or one not
//! whole within the timeout; with `optional = true` a trusted peer may send none. The header's
//! source becomes the connection's peer for all that follows (forwarded fields, `ClientIP`,
//! `ip_allow`, rate limits, hashing, logs). v2's `LOCAL` command (a balancer's own health
//! check) and an address family Tether does not route (UDP, UNIX) keep the real peer. The
//! header is peeked first ([`crate::tcp::peek`]) and then exactly its bytes are read, so that
//! without one (`optional`) the first bytes are left for TLS or HTTP.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub use tether_model::file_config::AcceptProxy;
use tether_model::ProxyVersion;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::tcp::peek::{self, PeekFailed};

/// v2's signature: the first 12 bytes of every v2 header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// v1's longest line, CRLF included (the specification's 107).
const V1_MAX: usize = 107;
/// The largest v2 header accepted: its 16 fixed bytes, the addresses and TLVs of up to 4 KiB.
pub const V2_MAX: usize = 16 + 4096;

/// What a connection's first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    Incomplete,
    /// Not a PROXY header.
    NotProxy,
    /// A header of `len` bytes; `source` is `None` for v2 `LOCAL`, v1 `UNKNOWN` and address
    /// families other than TCP over IPv4 or IPv6.
    Header {
        len: usize,
        source: Option<SocketAddr>,
        destination: Option<SocketAddr>,
    },
    Invalid(&'static str),
}

/// Parse the first bytes of a connection.
pub fn parse(b: &[u8]) -> Parsed {
    let v1 = b"PROXY ";
    let n = b.len().min(v1.len());
    if b[..n] == v1[..n] {
        return if b.len() < v1.len() {
            Parsed::Incomplete
        } else {
            parse_v1(b)
        };
    }
    let n = b.len().min(V2_SIGNATURE.len());
    if b[..n] != V2_SIGNATURE[..n] {
        return Parsed::NotProxy;
    }
    if b.len() < 16 {
        return Parsed::Incomplete;
    }
    parse_v2(b)
}

fn parse_v1(b: &[u8]) -> Parsed {
    let Some(end) = b.windows(2).take(V1_MAX - 1).position(|w| w == b"\r\n") else {
        return if b.len() >= V1_MAX {
            Parsed::Invalid("a PROXY v1 line longer than 107 bytes")
        } else {
            Parsed::Incomplete
        };
    };
    let len = end + 2;
    let Ok(line) = std::str::from_utf8(&b[6..end]) else {
        return Parsed::Invalid("a PROXY v1 line that is not text");
    };
    let parts: Vec<&str> = line.split(' ').collect();
    match parts.as_slice() {
        ["UNKNOWN", ..] => Parsed::Header {
            len,
            source: None,
            destination: None,
        },
        [family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let ip = |s: &str| -> Option<IpAddr> {
                let ip: IpAddr = s.parse().ok()?;
                (ip.is_ipv4() == (*family == "TCP4")).then_some(ip)
            };
            // Ports are decimal without a sign or leading zero.
            let port = |s: &str| -> Option<u16> {
                (!s.is_empty()
                    && s.bytes().all(|c| c.is_ascii_digit())
                    && (s == "0" || !s.starts_with('0')))
                .then(|| s.parse().ok())
                .flatten()
            };
            match (ip(src), ip(dst), port(sport), port(dport)) {
                (Some(s), Some(d), Some(sp), Some(dp)) => Parsed::Header {
                    len,
                    source: Some(SocketAddr::new(s, sp)),
                    destination: Some(SocketAddr::new(d, dp)),
                },
                _ => Parsed::Invalid("a malformed PROXY v1 address"),
            }
        }
        _ => Parsed::Invalid("a PROXY v1 line of an unknown form"),
    }
}

fn parse_v2(b: &[u8]) -> Parsed {
    let (ver_cmd, family) = (b[12], b[13]);
    if ver_cmd >> 4 != 2 {
        return Parsed::Invalid("a PROXY v2 header of another version");
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Parsed::Invalid("a PROXY v2 command other than LOCAL or PROXY"),
    };
    let body = usize::from(u16::from_be_bytes([b[14], b[15]]));
    let len = 16 + body;
    if len > V2_MAX {
        return Parsed::Invalid("a PROXY v2 header over 4 KiB");
    }
    if b.len() < len {
        return Parsed::Incomplete;
    }
    let a = &b[16..len];
    let (source, destination) = match family {
        _ if local => (None, None),
        // TCP over IPv4.
        0x11 => {
            if a.len() < 12 {
                return Parsed::Invalid("a PROXY v2 header too short for its IPv4 addresses");
            }
            let ip = |i: usize| IpAddr::V4(Ipv4Addr::new(a[i], a[i + 1], a[i + 2], a[i + 3]));
            let port = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
            (
                Some(SocketAddr::new(ip(0), port(8))),
                Some(SocketAddr::new(ip(4), port(10))),
            )
        }
        // TCP over IPv6.
        0x21 => {
            if a.len() < 36 {
                return Parsed::Invalid("a PROXY v2 header too short for its IPv6 addresses");
            }
            let ip = |i: usize| {
                let o: [u8; 16] = a[i..i + 16].try_into().expect("16 bytes");
                IpAddr::V6(Ipv6Addr::from(o))
            };
            let port = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
            (
                Some(SocketAddr::new(ip(0), port(32))),
                Some(SocketAddr::new(ip(16), port(34))),
            )
        }
        // UNSPEC, UDP, UNIX: the connection's own addresses stand.
        _ => (None, None),
    };
    Parsed::Header {
        len,
        source,
        destination,
    }
}

/// The header that tells a server a connection from `source` to `destination`.
pub fn encode(version: ProxyVersion, source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    // A v4-mapped address is written as the IPv4 one it maps, and a pair of two families as
    // IPv6 (the header has one family).
    let unmap = |a: SocketAddr| match a.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(a, |v4| SocketAddr::new(IpAddr::V4(v4), a.port())),
        _ => a,
    };
    let (s, d) = (unmap(source), unmap(destination));
    let (s, d) = match (s.ip(), d.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => (s, d),
        _ => (to_v6(s), to_v6(d)),
    };
    match version {
        ProxyVersion::V1 => {
            let family = if s.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {family} {} {} {} {}\r\n",
                s.ip(),
                d.ip(),
                s.port(),
                d.port()
            )
            .into_bytes()
        }
        ProxyVersion::V2 => {
            let mut out = V2_SIGNATURE.to_vec();
            out.push(0x21); // version 2, PROXY
            match (s.ip(), d.ip()) {
                (IpAddr::V4(a), IpAddr::V4(b)) => {
                    out.extend_from_slice(&[0x11, 0, 12]);
                    out.extend_from_slice(&a.octets());
                    out.extend_from_slice(&b.octets());
                }
                (a, b) => {
                    out.extend_from_slice(&[0x21, 0, 36]);
                    for ip in [a, b] {
                        if let IpAddr::V6(v6) = ip {
                            out.extend_from_slice(&v6.octets());
                        }
                    }
                }
            }
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
            out
        }
    }
}

fn to_v6(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    }
}

/// Why a connection was closed before anything read it.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{0} is not among proxy_protocol.trusted")]
    Untrusted(IpAddr),
    #[error("no PROXY protocol header (proxy_protocol.optional is false)")]
    Missing,
    #[error("{0}")]
    Invalid(&'static str),
    #[error("the PROXY protocol header: {0}")]
    Peek(#[from] PeekFailed),
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

/// The addresses a connection speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// The client's: the header's source, else the peer's.
    pub client: SocketAddr,
    /// The address the client connected to: the header's destination, else Tether's own.
    pub destination: Option<SocketAddr>,
}

/// Read `stream`'s header, if its peer `peer` is trusted to send one, taking exactly its bytes.
pub async fn accept(
    stream: &mut TcpStream,
    peer: SocketAddr,
    cfg: &AcceptProxy,
) -> Result<Addresses, Refused> {
    if !cfg.trusted.iter().any(|c| c.contains(peer.ip())) {
        return Err(Refused::Untrusted(peer.ip()));
    }
    let decided = peek::until(stream, V2_MAX, cfg.timeout, |b| match parse(b) {
        Parsed::Incomplete => None,
        other => Some(other),
    })
    .await?;
    match decided {
        Parsed::Header {
            len,
            source,
            destination,
        } => {
            let mut taken = vec![0; len];
            stream.read_exact(&mut taken).await?;
            Ok(Addresses {
                client: source.unwrap_or(peer),
                destination: destination.or_else(|| stream.local_addr().ok()),
            })
        }
        Parsed::NotProxy if cfg.optional => Ok(Addresses {
            client: peer,
            destination: stream.local_addr().ok(),
        }),
        Parsed::NotProxy => Err(Refused::Missing),
        Parsed::Invalid(why) => Err(Refused::Invalid(why)),
        Parsed::Incomplete => unreachable!("decided"),
    }
}

/// For the fuzz target: whatever the bytes, a header's length is within them and its limits,
/// and a header Tether writes parses back to its addresses.
#[doc(hidden)]
pub fn fuzz_header(data: &[u8]) {
    if let Parsed::Header { len, source, .. } = parse(data) {
        assert!(len <= data.len() && len <= V2_MAX.max(V1_MAX));
        if let Some(s) = source {
            for v in [ProxyVersion::V1, ProxyVersion::V2] {
                let d = SocketAddr::new(s.ip(), 443);
                let out = encode(v, s, d);
                match parse(&out) {
                    Parsed::Header {
                        len,
                        source: Some(back),
                        ..
                    } => {
                        assert_eq!(len, out.len());
                        assert_eq!(back.port(), s.port());
                    }
                    other => panic!("{out:?} parsed as {other:?}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tether_model::file_config::Cidr;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn what_tether_writes_parses_back_in_both_versions() {
        for (s, d) in [
            ("192.0.2.7:51000", "10.0.0.1:443"),
            ("[2001:db8::7]:51000", "[2001:db8::1]:443"),
            ("[::ffff:192.0.2.7]:1", "10.0.0.1:443"),
        ] {
            for v in [ProxyVersion::V1, ProxyVersion::V2] {
                let out = encode(v, sa(s), sa(d));
                let Parsed::Header {
                    len,
                    source: Some(src),
                    destination: Some(dst),
                } = parse(&out)
                else {
                    panic!("{v:?} {s}: {:?}", parse(&out))
                };
                assert_eq!(len, out.len());
                assert_eq!(src.port(), sa(s).port());
                assert_eq!(dst.port(), 443);
            }
        }
        assert_eq!(
            encode(ProxyVersion::V1, sa("192.0.2.7:51000"), sa("10.0.0.1:443")),
            b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 443\r\n"
        );
        // A mapped address is written as the IPv4 one.
        assert!(encode(
            ProxyVersion::V1,
            sa("[::ffff:192.0.2.7]:1"),
            sa("10.0.0.1:443")
        )
        .starts_with(b"PROXY TCP4 192.0.2.7 "));
    }

    #[test]
    fn v2_local_and_other_families_keep_the_peer() {
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(
            parse(&local),
            Parsed::Header {
                len: 16,
                source: None,
                destination: None
            }
        );
        // UDP over IPv4 (0x12), with its 12 bytes of addresses and a TLV after them.
        let mut udp = V2_SIGNATURE.to_vec();
        udp.extend_from_slice(&[0x21, 0x12, 0, 15]);
        udp.extend_from_slice(&[1; 15]);
        assert!(matches!(
            parse(&udp),
            Parsed::Header {
                len: 31,
                source: None,
                ..
            }
        ));
        // TLVs after TCP4's addresses are skipped with them.
        let mut tlv = encode(ProxyVersion::V2, sa("1.2.3.4:5"), sa("6.7.8.9:10"));
        tlv[15] += 7;
        tlv.extend_from_slice(&[0x04, 0, 4, 0, 0, 0, 0]);
        tlv.extend_from_slice(b"GET /");
        assert!(
            matches!(parse(&tlv), Parsed::Header { len: 35, source: Some(s), .. } if s == sa("1.2.3.4:5"))
        );
    }

    #[test]
    fn partial_headers_wait_and_bad_ones_are_refused() {
        let v2 = encode(ProxyVersion::V2, sa("1.2.3.4:5"), sa("6.7.8.9:10"));
        for cut in 1..v2.len() {
            assert_eq!(parse(&v2[..cut]), Parsed::Incomplete, "v2 cut at {cut}");
        }
        let v1 = b"PROXY TCP4 1.2.3.4 6.7.8.9 5 10\r\n";
        for cut in 1..v1.len() {
            assert_eq!(parse(&v1[..cut]), Parsed::Incomplete, "v1 cut at {cut}");
        }
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Parsed::NotProxy);
        assert_eq!(parse(b"\x16\x03\x01"), Parsed::NotProxy);
        assert_eq!(parse(b"PROXZ"), Parsed::NotProxy);
        let bad = |b: &[u8]| matches!(parse(b), Parsed::Invalid(_));
        assert!(bad(b"PROXY TCP4 1.2.3.4 6.7.8.9 5 010\r\n"));
        assert!(bad(b"PROXY TCP4 ::1 6.7.8.9 5 10\r\n"));
        assert!(bad(b"PROXY TCP4 1.2.3.4 6.7.8.9 5 70000\r\n"));
        assert!(bad(b"PROXY TCP4 1.2.3.4 6.7.8.9 5\r\n"));
        assert!(bad(b"PROXY SCTP 1.2.3.4 6.7.8.9 5 10\r\n"));
        assert!(bad(&[b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat()));
        let mut v3 = v2.clone();
        v3[12] = 0x31;
        assert!(bad(&v3));
        let mut huge = v2.clone();
        huge[14..16].copy_from_slice(&5000u16.to_be_bytes());
        assert!(bad(&huge));
        let mut short = v2.clone();
        short[15] = 4;
        short.truncate(20);
        assert!(bad(&short));
        assert!(matches!(
            parse(b"PROXY UNKNOWN\r\nGET"),
            Parsed::Header {
                len: 15,
                source: None,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn exactly_the_header_is_taken_and_untrusted_peers_are_refused() {
        use tokio::io::AsyncWriteExt;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cfg = AcceptProxy {
            trusted: vec![Cidr::parse("127.0.0.0/8").unwrap()],
            optional: false,
            timeout: Duration::from_secs(5),
        };
        let mut c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let mut header = encode(ProxyVersion::V2, sa("203.0.113.9:4000"), sa("10.0.0.1:443"));
        header.extend_from_slice(b"hello");
        c.write_all(&header).await.unwrap();
        let (mut s, peer) = l.accept().await.unwrap();
        let got = accept(&mut s, peer, &cfg).await.unwrap();
        assert_eq!(got.client, sa("203.0.113.9:4000"));
        assert_eq!(got.destination, Some(sa("10.0.0.1:443")));
        let mut rest = [0; 5];
        s.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"hello", "what follows the header is left");
        // Without a header: refused, unless optional (and then nothing is taken).
        let mut c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let (mut s, peer) = l.accept().await.unwrap();
        assert!(matches!(
            accept(&mut s, peer, &cfg).await,
            Err(Refused::Missing)
        ));
        let optional = AcceptProxy {
            optional: true,
            ..cfg.clone()
        };
        let got = accept(&mut s, peer, &optional).await.unwrap();
        assert_eq!(got.client, peer);
        let mut first = [0; 3];
        s.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"GET");
        // A peer outside `trusted` is refused before a byte is read.
        let other = AcceptProxy {
            trusted: vec![Cidr::parse("10.0.0.0/8").unwrap()],
            ..cfg
        };
        assert!(matches!(
            accept(&mut s, peer, &other).await,
            Err(Refused::Untrusted(_))
        ));
    }
}
