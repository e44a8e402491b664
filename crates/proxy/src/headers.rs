//! Header hygiene between client and server: hop-by-hop headers (RFC 9110 §7.6.1) never cross
//! the proxy, and `X-Forwarded-*` and `Forwarded` (RFC 7239: `for=` and `proto=`) describe the real
//! peer; a client's own values are only believed when it is a trusted proxy.

use std::net::IpAddr;

use bytes::Bytes;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use tether_model::file_config::Cidr;

/// Hop-by-hop headers besides `Upgrade` (RFC 9110 §7.6.1, and `HTTP2-Settings` of an h2c
/// upgrade, RFC 7540 §3.2.1); `Connection` first.
const HOPS: usize = 9;
static HOP_BY_HOP: [HeaderName; HOPS] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    HeaderName::from_static("http2-settings"),
];

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// What a `strip_prefix` removed (set by that middleware; a client's own is believed only from a
/// trusted proxy: a received head masks it as a forwarding field, a header map has it removed
/// before the route's edits, in `handler::send`).
pub const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Remove hop-by-hop headers, including every header the `Connection` header names, and
/// `Upgrade` unless `keep_upgrade` (a WebSocket handshake needs it to reach the server).
pub fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the names finds which are there: most messages carry none, many only
    // `Connection: close` or `keep-alive`. Bit `i` stands for `HOP_BY_HOP[i]`, `UPGRADE_BIT` for
    // `Upgrade`.
    const UPGRADE_BIT: u16 = 1 << HOPS;
    const SPOOF_BIT: u16 = 1 << (HOPS + 1);
    let mut present = 0u16;
    for k in h.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|n| n == k) {
            present |= 1 << i;
        } else if *k == header::UPGRADE {
            present |= UPGRADE_BIT;
        } else if crate::http1::fields::spoofs_forwarding(k.as_str().as_bytes()) {
            present |= SPOOF_BIT;
        }
    }
    if present == 0 {
        return;
    }
    if present & SPOOF_BIT != 0 {
        let spoofs: Vec<HeaderName> = h
            .keys()
            .filter(|k| crate::http1::fields::spoofs_forwarding(k.as_str().as_bytes()))
            .cloned()
            .collect();
        for n in spoofs {
            h.remove(n);
        }
    }
    let names_others = || {
        tokens(h, header::CONNECTION).any(|t| {
            !(t.eq_ignore_ascii_case("close")
                || t.eq_ignore_ascii_case("keep-alive")
                || t.eq_ignore_ascii_case("upgrade"))
        })
    };
    // HOP_BY_HOP[0] is `Connection`: the other fields it names go too (`close`, `keep-alive` and
    // `upgrade` name none that is not removed anyway).
    if present & 1 != 0 && names_others() {
        let named: Vec<HeaderName> = h
            .keys()
            .filter(|k| !HOP_BY_HOP.contains(k) && **k != header::UPGRADE)
            .filter(|k| tokens(h, header::CONNECTION).any(|t| t.eq_ignore_ascii_case(k.as_str())))
            .cloned()
            .collect();
        for n in named {
            h.remove(n);
        }
    }
    for (i, n) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            h.remove(n);
        }
    }
    if !keep_upgrade && present & UPGRADE_BIT != 0 {
        h.remove(header::UPGRADE);
    }
}

/// Header maps with at most this many fields are searched by a scan of their names, not a hash.
const SCANNED: usize = 8;

/// The first value of `name` in `h`. A request usually carries a handful of fields, and comparing
/// a handful of names costs less than hashing one; a longer map is looked up as usual.
pub fn first<'a>(h: &'a HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    if h.len() <= SCANNED {
        h.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    } else {
        h.get(name)
    }
}

/// Has `h` a field `name`? (See [`first`].)
pub fn has(h: &HeaderMap, name: &HeaderName) -> bool {
    first(h, name).is_some()
}

/// A request's header fields read alike wherever they are held: in a header map, or where they
/// lie in a received head ([`crate::request::Received`]).
pub trait ReadFields {
    /// The value of every field named `name` (lower case), in order.
    fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's;

    /// The first value of `name`.
    fn first_value<'s>(&'s self, name: &'s str) -> Option<&'s [u8]> {
        self.values(name).next()
    }

    /// Is there a field `name`?
    fn has_field(&self, name: &str) -> bool {
        self.first_value(name).is_some()
    }
}

impl ReadFields for HeaderMap {
    fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        self.get_all(name).into_iter().map(HeaderValue::as_bytes)
    }

    fn first_value<'s>(&'s self, name: &'s str) -> Option<&'s [u8]> {
        if self.len() <= SCANNED {
            self.iter()
                .find(|(n, _)| n.as_str() == name)
                .map(|(_, v)| v.as_bytes())
        } else {
            self.get(name).map(HeaderValue::as_bytes)
        }
    }
}

/// One iterator or the other, as one type.
pub enum Either<A, B> {
    A(A),
    B(B),
}

impl<T, A: Iterator<Item = T>, B: Iterator<Item = T>> Iterator for Either<A, B> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        match self {
            Either::A(a) => a.next(),
            Either::B(b) => b.next(),
        }
    }
}

/// Is `peer` one of the trusted proxies?
pub fn is_trusted(peer: IpAddr, trusted: &[Cidr]) -> bool {
    trusted.iter().any(|c| c.contains(peer))
}

/// The client end of a connection, as forwarding headers describe it: worked out once per
/// connection, not per request.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: std::net::SocketAddr,
    /// The address with IPv4-mapped IPv6 turned back into IPv4.
    pub ip: IpAddr,
    /// `ip` as a header value (cloning it is a reference-count increment).
    pub ip_value: HeaderValue,
    /// This hop's `Forwarded` element: `for=192.0.2.1;proto=https`.
    pub forwarded: HeaderValue,
    /// The forwarding fields every request of an untrusted peer gets, bar `X-Forwarded-Host`,
    /// as they are written: `X-Forwarded-For`, `X-Real-IP`, `X-Forwarded-Proto`, `Forwarded`.
    pub untrusted_fields: Bytes,
    /// Its own `X-Forwarded-*` are believed.
    pub trusted: bool,
    /// It came over TLS: `X-Forwarded-Proto: https`.
    pub https: bool,
}

impl Peer {
    /// A client over plain TCP.
    pub fn new(addr: std::net::SocketAddr, trusted_proxies: &[Cidr]) -> Peer {
        Peer::on(addr, trusted_proxies, false)
    }

    /// A client over TLS (`https`) or plain TCP.
    pub fn on(addr: std::net::SocketAddr, trusted_proxies: &[Cidr], https: bool) -> Peer {
        let ip = addr.ip().to_canonical();
        let (ip_value, forwarded, untrusted_fields) = ip_values(ip, https);
        Peer {
            addr,
            ip,
            ip_value,
            forwarded,
            untrusted_fields,
            trusted: is_trusted(ip, trusted_proxies),
            https,
        }
    }

    /// The scheme the client used, as `X-Forwarded-Proto` says it.
    pub fn proto(&self) -> &'static [u8] {
        if self.https {
            b"https"
        } else {
            b"http"
        }
    }
}

/// `for=192.0.2.1;proto=http`, an IPv6 address quoted in brackets (RFC 7239 §6).
fn forwarded_element(ip: IpAddr, https: bool) -> String {
    let proto = if https { "https" } else { "http" };
    match ip {
        IpAddr::V4(v4) => format!("for={v4};proto={proto}"),
        IpAddr::V6(v6) => format!("for=\"[{v6}]\";proto={proto}"),
    }
}

/// `ip` as a header value, [`Peer::forwarded`] and [`Peer::untrusted_fields`]. The last ones made on this thread are
/// kept: connections often come from the same address (a load balancer, NAT, a busy client), and
/// formatting an address costs more than the rest of setting up a connection's peer.
fn ip_values(ip: IpAddr, https: bool) -> (HeaderValue, HeaderValue, Bytes) {
    type Values = (IpAddr, bool, HeaderValue, HeaderValue, Bytes);
    thread_local! {
        static LAST: std::cell::RefCell<Option<Values>> = const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((at, tls, v, fwd, f)) if *at == ip && *tls == https => {
            (v.clone(), fwd.clone(), f.clone())
        }
        _ => {
            let text = ip.to_string();
            let v = HeaderValue::from_str(&text).expect("an IP address is a valid header value");
            let mut f = Vec::with_capacity(64 + 2 * text.len());
            crate::http1::fields::put(&mut f, b"x-forwarded-for", text.as_bytes());
            crate::http1::fields::put(&mut f, b"x-real-ip", text.as_bytes());
            let proto: &[u8] = if https { b"https" } else { b"http" };
            crate::http1::fields::put(&mut f, b"x-forwarded-proto", proto);
            let element = forwarded_element(ip, https);
            crate::http1::fields::put(&mut f, b"forwarded", element.as_bytes());
            let fwd = HeaderValue::from_str(&element).expect("an address and a scheme");
            let f = Bytes::from(f);
            *last = Some((ip, https, v.clone(), fwd.clone(), f.clone()));
            (v, fwd, f)
        }
    })
}

/// Where `X-Forwarded-Host` comes from: the request's `Host` header, or else the host routing saw.
#[derive(Debug, Clone, Copy)]
pub enum ForwardedHost<'a> {
    HostHeader,
    Name(&'a str),
}

/// The client's own forwarding headers that a trusted proxy's value is appended to, not kept.
static TRUSTED_DROPPED: [HeaderName; 2] = [X_FORWARDED_FOR, FORWARDED];
/// The client's own forwarding headers that an untrusted client may not pass on.
static UNTRUSTED_DROPPED: [HeaderName; 5] = [
    FORWARDED,
    X_FORWARDED_FOR,
    X_REAL_IP,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
];

/// The forwarding headers of one request, worked out without editing its header fields: which of
/// the client's own are left out, and which are added. The request encoder applies it as it
/// writes the head ([`crate::upstream::exchange::Outgoing`]); [`Forwarding::apply`] edits a map instead.
#[derive(Debug)]
pub struct Forwarding<'p> {
    /// Whose forwarding fields these are: an untrusted peer's are written from
    /// [`Peer::untrusted_fields`] in one piece, nothing copied per request.
    peer: &'p Peer,
    /// A trusted proxy's `X-Forwarded-For` with the peer appended; `None`: the peer's address.
    extended_for: Option<HeaderValue>,
    /// A trusted proxy's `Forwarded`, this hop's element appended to its own when it sent one
    /// (`None` for an untrusted peer, whose field is in [`Peer::untrusted_fields`]).
    forwarded: Option<HeaderValue>,
    /// `X-Forwarded-Proto` is added.
    proto: bool,
    /// `X-Real-IP` (the peer's address) is added.
    real_ip: bool,
    host: AddedHost,
}

/// The `X-Forwarded-Host` added, if any.
#[derive(Debug)]
enum AddedHost {
    None,
    /// The value of the request's `Host` field (looked up as the head is written).
    HostField,
    Value(HeaderValue),
}

impl<'p> Forwarding<'p> {
    /// The forwarding headers for a request with fields `h` from `peer`.
    pub fn new<H: ReadFields + ?Sized>(
        h: &H,
        peer: &'p Peer,
        host: ForwardedHost<'_>,
    ) -> Forwarding<'p> {
        let mut added_host = match host {
            ForwardedHost::HostHeader => AddedHost::HostField,
            ForwardedHost::Name(n) if !n.is_empty() => {
                HeaderValue::from_str(n).map_or(AddedHost::None, AddedHost::Value)
            }
            ForwardedHost::Name(_) => AddedHost::None,
        };
        if !peer.trusted {
            return Forwarding {
                peer,
                extended_for: None,
                forwarded: None,
                proto: true,
                real_ip: true,
                host: added_host,
            };
        }
        let prior = h
            .first_value("x-forwarded-for")
            .and_then(|v| std::str::from_utf8(v).ok())
            .filter(|v| !v.trim().is_empty());
        let extended_for =
            prior.and_then(|prior| HeaderValue::from_str(&format!("{prior}, {}", peer.ip)).ok());
        if h.has_field("x-forwarded-host") {
            added_host = AddedHost::None;
        }
        let prior: Vec<&str> = h
            .values("forwarded")
            .filter_map(|v| std::str::from_utf8(v).ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        let forwarded = if prior.is_empty() {
            Some(peer.forwarded.clone())
        } else {
            let element = String::from_utf8_lossy(peer.forwarded.as_bytes());
            HeaderValue::from_str(&format!("{}, {element}", prior.join(", "))).ok()
        };
        Forwarding {
            peer,
            extended_for,
            forwarded,
            proto: !h.has_field("x-forwarded-proto"),
            real_ip: !h.has_field("x-real-ip"),
            host: added_host,
        }
    }

    /// Is the client a trusted proxy (its own forwarding fields kept, but `X-Forwarded-For`)?
    pub fn is_trusted(&self) -> bool {
        self.peer.trusted
    }

    /// Is the client's own header `name` left out?
    pub fn drops(&self, name: &HeaderName) -> bool {
        let s = name.as_str();
        if !(s.starts_with("x-") || s == "forwarded") {
            return false;
        }
        self.dropped().contains(name)
    }

    fn dropped(&self) -> &'static [HeaderName] {
        if self.peer.trusted {
            &TRUSTED_DROPPED
        } else {
            &UNTRUSTED_DROPPED
        }
    }

    /// Append the added fields to a head being written; `host_field`: the request's `Host` value.
    pub fn write(&self, out: &mut Vec<u8>, host_field: Option<&[u8]>) {
        let put = crate::http1::fields::put;
        if !self.peer.trusted {
            out.extend_from_slice(&self.peer.untrusted_fields);
        } else {
            let ip = self.peer.ip_value.as_bytes();
            let forwarded_for = self.extended_for.as_ref().map_or(ip, HeaderValue::as_bytes);
            put(out, b"x-forwarded-for", forwarded_for);
            if self.real_ip {
                put(out, b"x-real-ip", ip);
            }
            if self.proto {
                put(out, b"x-forwarded-proto", self.peer.proto());
            }
            if let Some(v) = &self.forwarded {
                put(out, b"forwarded", v.as_bytes());
            }
        }
        match (&self.host, host_field) {
            (AddedHost::Value(v), _) => put(out, b"x-forwarded-host", v.as_bytes()),
            (AddedHost::HostField, Some(v)) => put(out, b"x-forwarded-host", v),
            _ => {}
        }
    }

    /// Edit `h` to match: the dropped headers removed, the added ones set.
    pub fn apply(self, h: &mut HeaderMap) {
        for n in self.dropped() {
            h.remove(n);
        }
        let host = match self.host {
            AddedHost::None => None,
            AddedHost::HostField => first(h, &header::HOST).cloned(),
            AddedHost::Value(v) => Some(v),
        };
        let ip = &self.peer.ip_value;
        h.insert(
            X_FORWARDED_FOR,
            self.extended_for.unwrap_or_else(|| ip.clone()),
        );
        if self.real_ip {
            h.insert(X_REAL_IP, ip.clone());
        }
        if self.proto {
            let proto = if self.peer.https { "https" } else { "http" };
            h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
        }
        h.insert(
            FORWARDED,
            self.forwarded
                .unwrap_or_else(|| self.peer.forwarded.clone()),
        );
        if let Some(v) = host {
            h.insert(X_FORWARDED_HOST, v);
        }
    }
}

/// Set the forwarding headers for a request from `peer` in its header map.
pub fn set_forwarded(h: &mut HeaderMap, peer: &Peer, host: ForwardedHost<'_>) {
    Forwarding::new(h, peer, host).apply(h);
}

/// Does the request ask to switch protocols (`Connection: upgrade` with an `Upgrade` header)?
///
/// An upgrade to `h2c` is not one: a proxy that tunnelled it would let every later request on the
/// connection bypass routing. Its `Upgrade`, `HTTP2-Settings` and `Connection` tokens are then
/// stripped as hop-by-hop fields and the request goes on as HTTP/1.1 (as NGINX does).
pub fn wants_upgrade(h: &HeaderMap) -> bool {
    has(h, &header::UPGRADE)
        && tokens(h, header::CONNECTION).any(|t| t.eq_ignore_ascii_case("upgrade"))
        && tokens(h, header::UPGRADE).any(|t| {
            let protocol = t.split('/').next().unwrap_or(t).trim();
            !protocol.eq_ignore_ascii_case("h2c")
        })
}

/// The comma-separated elements of every `name` field, trimmed (RFC 9110 §5.6.1).
pub fn tokens(h: &HeaderMap, name: HeaderName) -> impl Iterator<Item = &str> {
    h.get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// What the server is to get instead of the client's Cookie fields, once Tether's part is out.
#[derive(Debug, PartialEq, Eq)]
pub enum CookieEdit {
    /// The fields as they came.
    Keep,
    /// No Cookie field at all (Tether's cookie was all of it).
    Remove,
    /// One Cookie field with this value.
    Replace(HeaderValue),
}

impl CookieEdit {
    /// Apply the edit to a header map.
    pub fn apply(self, h: &mut HeaderMap) {
        match self {
            CookieEdit::Keep => {}
            CookieEdit::Remove => {
                h.remove(header::COOKIE);
            }
            CookieEdit::Replace(v) => {
                h.insert(header::COOKIE, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "close, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn connection_options_go_and_upgrade_stays_only_when_asked() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "Upgrade, X-A".parse().unwrap());
        h.append(header::CONNECTION, "close".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert("x-a", "1".parse().unwrap());
        h.insert("close", "odd but named".parse().unwrap());
        h.insert("x-b", "1".parse().unwrap());
        let names = |h: &HeaderMap| {
            let mut n: Vec<String> = h.keys().map(|k| k.to_string()).collect();
            n.sort();
            n
        };
        let mut kept = h.clone();
        strip_hop_by_hop(&mut kept, true);
        assert_eq!(names(&kept), ["upgrade", "x-b"]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(names(&h), ["x-b"]);
        let mut plain = HeaderMap::new();
        plain.insert("x-c", "1".parse().unwrap());
        strip_hop_by_hop(&mut plain, false);
        assert_eq!(plain.len(), 1);
    }

    #[test]
    fn short_and_long_maps_are_searched_alike() {
        for n in [0, 3, SCANNED, SCANNED + 5] {
            let mut h = HeaderMap::new();
            for i in 0..n {
                h.insert(
                    HeaderName::from_bytes(format!("x-{i}").as_bytes()).unwrap(),
                    "v".parse().unwrap(),
                );
            }
            h.append(header::HOST, "a".parse().unwrap());
            h.append(header::HOST, "b".parse().unwrap());
            assert_eq!(first(&h, &header::HOST).unwrap(), "a", "{n} fields");
            assert!(!has(&h, &header::UPGRADE));
            assert_eq!(first(&h, &header::HOST), h.get(header::HOST));
        }
    }

    #[test]
    fn peers_from_one_address_share_its_value() {
        let a = Peer::new("10.1.2.3:1".parse().unwrap(), &[]);
        let b = Peer::new("10.1.2.3:2".parse().unwrap(), &[]);
        let c = Peer::new("[::ffff:10.1.2.4]:3".parse().unwrap(), &[]);
        assert_eq!(a.ip_value, "10.1.2.3");
        assert_eq!(b.ip_value, "10.1.2.3");
        assert_eq!(c.ip_value, "10.1.2.4");
        assert_eq!(
            &c.untrusted_fields[..],
            b"x-forwarded-for: 10.1.2.4\r\nx-real-ip: 10.1.2.4\r\nx-forwarded-proto: http\r\n\
              forwarded: for=10.1.2.4;proto=http\r\n"
        );
        let v6 = Peer::on("[2001:db8::1]:4".parse().unwrap(), &[], true);
        assert_eq!(
            v6.forwarded, "for=\"[2001:db8::1]\";proto=https",
            "RFC 7239 §6"
        );
        assert_eq!(a.untrusted_fields, b.untrusted_fields);
    }

    #[test]
    fn untrusted_clients_cannot_spoof_forwarding() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, "6.6.6.6".parse().unwrap());
        h.insert(X_FORWARDED_HOST, "evil".parse().unwrap());
        let local = Peer::new("127.0.0.1:5000".parse().unwrap(), &[]);
        set_forwarded(&mut h, &local, ForwardedHost::Name("a.com"));
        assert_eq!(h[&X_FORWARDED_FOR], "127.0.0.1");
        assert_eq!(h[&X_FORWARDED_HOST], "a.com");
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, "1.2.3.4".parse().unwrap());
        let proxy = Peer::new(
            "10.0.0.1:5000".parse().unwrap(),
            &[tether_model::file_config::Cidr::parse("10.0.0.0/8").unwrap()],
        );
        set_forwarded(&mut h, &proxy, ForwardedHost::Name("a.com"));
        assert_eq!(h[&X_FORWARDED_FOR], "1.2.3.4, 10.0.0.1");
    }
}
