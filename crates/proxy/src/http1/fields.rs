//! Header fields in HTTP/1.1 heads. Read: found by `httparse`, kept as positions in the message
//! head, so that a header map is built only once the head is frozen (its values shared slices of
//! it rather than copies), or not at all: a server's response fields are written through to an
//! HTTP/1.1 client from these positions ([`Fields::write`]), leaving out the ones marked dropped
//! (hop-by-hop). Used for request heads ([`crate::front`]) and response heads ([`crate::upstream::exchange`]).
//! The positions are kept in one allocation of exactly the head's field count: nothing is zeroed
//! or copied for room a head does not use, and moving [`Fields`] moves three words and a mask.
//! Written: [`put`].

use std::ops::Range;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Fields that can be marked dropped (heads with more are refused before they get here).
pub const MAX_FIELDS: usize = 128;

/// A set of field indexes below [`MAX_FIELDS`] (bit `i`: field `i`). Two words rather than a
/// `u128`, whose 16-byte alignment would pass on to everything holding one: the allocator serves
/// such boxes (a request's head, a boxed future) on its slow path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mask([u64; 2]);

impl Mask {
    pub const NONE: Mask = Mask([0, 0]);

    /// The set of field `i` alone.
    pub fn of(i: usize) -> Mask {
        debug_assert!(i < MAX_FIELDS);
        let mut m = [0; 2];
        m[i / 64] = 1 << (i % 64);
        Mask(m)
    }

    pub fn contains(self, i: usize) -> bool {
        self.0[i / 64] >> (i % 64) & 1 != 0
    }

    /// Is any of `self` outside `other`?
    pub fn leaves(self, other: Mask) -> bool {
        self.0[0] & !other.0[0] != 0 || self.0[1] & !other.0[1] != 0
    }
}

impl std::ops::BitOr for Mask {
    type Output = Mask;

    fn bitor(self, o: Mask) -> Mask {
        Mask([self.0[0] | o.0[0], self.0[1] | o.0[1]])
    }
}

impl std::ops::BitOrAssign for Mask {
    fn bitor_assign(&mut self, o: Mask) {
        *self = *self | o;
    }
}

/// The field names Tether acts on, in requests or responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    Host,
    Cookie,
    ContentLength,
    TransferEncoding,
    Connection,
    Upgrade,
    Expect,
    Date,
    CacheControl,
    /// Hop-by-hop (RFC 9110 §7.6.1) besides the named ones: `TE`, `Trailer`, `Keep-Alive`,
    /// `Proxy-Connection`, `Proxy-Authenticate`, `Proxy-Authorization`.
    HopByHop,
    /// `X-Forwarded-For` and `Forwarded`: lists a trusted proxy's value is extended.
    ForwardedFor,
    /// `X-Real-IP`, `X-Forwarded-Host`, `X-Forwarded-Proto`, `X-Forwarded-Prefix`.
    Forwarding,
    Other,
}

/// Which known field `name` (any case) is. Names are told apart by length first, so most fields
/// cost one or two comparisons, eight bytes at a time ([`same_name`]).
pub fn known(name: &[u8]) -> Known {
    let is = |n: &str| same_name(name, n.as_bytes());
    match name.len() {
        2 if is("te") => Known::HopByHop,
        4 if is("host") => Known::Host,
        4 if is("date") => Known::Date,
        6 if is("cookie") => Known::Cookie,
        6 if is("expect") => Known::Expect,
        7 if is("upgrade") => Known::Upgrade,
        7 if is("trailer") => Known::HopByHop,
        9 if is("forwarded") => Known::ForwardedFor,
        9 if is("x-real-ip") => Known::Forwarding,
        10 if is("connection") => Known::Connection,
        10 if is("keep-alive") => Known::HopByHop,
        13 if is("cache-control") => Known::CacheControl,
        14 if is("http2-settings") => Known::HopByHop,
        14 if is("content-length") => Known::ContentLength,
        15 if is("x-forwarded-for") => Known::ForwardedFor,
        16 if is("x-forwarded-host") => Known::Forwarding,
        16 if is("proxy-connection") => Known::HopByHop,
        17 if is("x-forwarded-proto") => Known::Forwarding,
        17 if is("transfer-encoding") => Known::TransferEncoding,
        18 if is("x-forwarded-prefix") => Known::Forwarding,
        18 if is("proxy-authenticate") => Known::HopByHop,
        19 if is("proxy-authorization") => Known::HopByHop,
        9 | 15..=18 if name.contains(&b'_') && spoofs_forwarding(name) => Known::HopByHop,
        _ => Known::Other,
    }
}

/// Is `name` a forwarding field spelt with `_` for `-` (`X_Forwarded_For`)? Servers that map
/// `-` to `_` (CGI, WSGI, Rack) would read it as the real one, so it never reaches them.
pub fn spoofs_forwarding(name: &[u8]) -> bool {
    const SPOOFED: [&[u8]; 5] = [
        b"x-forwarded-for",
        b"x-real-ip",
        b"x-forwarded-host",
        b"x-forwarded-proto",
        b"x-forwarded-prefix",
    ];
    SPOOFED.iter().any(|f| {
        f.len() == name.len()
            && f.iter()
                .zip(name)
                .all(|(&w, &b)| w == b.to_ascii_lowercase() || (w == b'-' && b == b'_'))
    })
}

/// Is `name` `lower` in any case? `lower` holds only lowercase letters, digits and `-`; `name` may
/// hold any byte but CR and the other controls `httparse` lets through neither in names nor in
/// values (a field name, or an element of a field's value). Setting bit 5 lowercases a letter, and
/// maps no byte but a letter's two cases onto a letter, none but `-` and CR onto `-`, and none but
/// a digit and a control (0x10..=0x19) onto a digit: so a word of eight bytes is compared at once.
fn same_name(name: &[u8], lower: &[u8]) -> bool {
    const CASE: u64 = u64::from_ne_bytes([0x20; 8]);
    debug_assert!(lower
        .iter()
        .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
    if name.len() != lower.len() {
        return false;
    }
    let word = |b: &[u8]| u64::from_ne_bytes(b.try_into().expect("a chunk of eight"));
    let (mut a, mut b) = (name.chunks_exact(8), lower.chunks_exact(8));
    if !(&mut a).zip(&mut b).all(|(x, y)| word(x) | CASE == word(y)) {
        return false;
    }
    a.remainder()
        .iter()
        .zip(b.remainder())
        .all(|(&x, &y)| x | 0x20 == y)
}

/// The span of `spans`' lines in `head` if each ends in CRLF and the next starts right after it.
fn contiguous_lines(head: &[u8], spans: &[(Span, Span)]) -> Option<Span> {
    let (first, _) = spans.first()?;
    let mut end = first.0;
    for &(name, value) in spans {
        let crlf = value.1 as usize..value.1 as usize + 2;
        if name.0 != end || head.get(crlf) != Some(b"\r\n") {
            return None;
        }
        end = value.1 + 2;
    }
    Some((first.0, end))
}

/// Start and end of a slice of a head.
pub type Span = (u32, u32);

/// Where a slice of `head` (a sub-slice of it, as `httparse` hands out) lies in it.
pub fn span(head: &[u8], part: &[u8]) -> Span {
    let start = (part.as_ptr() as usize - head.as_ptr() as usize) as u32;
    (start, start + part.len() as u32)
}

/// A span as a range for indexing.
pub fn range((start, end): Span) -> Range<usize> {
    start as usize..end as usize
}

/// Append the field `name: value` to a head being written.
pub fn put(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The positions of each field's name and value in a head.
#[derive(Debug)]
pub struct Fields {
    spans: Vec<(Span, Span)>,
    /// Where the field lines lie when they follow each other, each ending in CRLF (the usual
    /// head): written in one piece while none is left out.
    lines: Option<Span>,
    /// Field `i` in it: left out of [`Fields::write`] and [`Fields::to_map`].
    dropped: Mask,
}

impl Default for Fields {
    fn default() -> Self {
        Fields::new()
    }
}

/// A name or value the `http` types refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Name,
    Value,
}

impl Fields {
    /// No fields (nothing allocated); [`Fields::record`] fills it.
    pub fn new() -> Fields {
        Fields {
            spans: Vec::new(),
            lines: None,
            dropped: Mask::NONE,
        }
    }

    /// Record where each of `headers` (parsed out of `head`; at most [`MAX_FIELDS`]) lies.
    pub fn record(&mut self, head: &[u8], headers: &[httparse::Header<'_>]) {
        debug_assert!(headers.len() <= MAX_FIELDS);
        let at = |h: &httparse::Header<'_>| (span(head, h.name.as_bytes()), span(head, h.value));
        self.dropped = Mask::NONE;
        // Collected from an iterator of known length: one allocation of exactly that size.
        self.spans = headers.iter().map(at).collect();
        self.lines = contiguous_lines(head, &self.spans);
    }

    /// Each field's name and value, as slices of `head` (the bytes the positions were taken in),
    /// dropped ones included.
    pub fn iter<'h>(&'h self, head: &'h [u8]) -> impl Iterator<Item = (&'h [u8], &'h [u8])> {
        self.spans
            .iter()
            .map(|&(n, v)| (&head[range(n)], &head[range(v)]))
    }

    /// Leave the fields whose bits are set in `mask` (bit `i`: field `i`) out of what is written
    /// or mapped.
    pub fn drop_fields(&mut self, mask: Mask) {
        self.dropped |= mask;
    }

    /// Each field not dropped, its name and value as slices of `head`.
    pub fn kept_iter<'h>(&'h self, head: &'h [u8]) -> impl Iterator<Item = (&'h [u8], &'h [u8])> {
        self.kept()
            .map(|&(n, v)| (&head[range(n)], &head[range(v)]))
    }

    fn kept(&self) -> impl Iterator<Item = &(Span, Span)> {
        let dropped = self.dropped;
        self.spans
            .iter()
            .enumerate()
            .filter(move |(i, _)| !dropped.contains(*i))
            .map(|(_, s)| s)
    }

    /// Append the fields not dropped to a head being written. Runs of fields whose lines end in
    /// CRLF and follow each other in `head` are copied as they are, in one piece (the usual
    /// head: all of it); any other field is written as a `name: value` line.
    pub fn write(&self, head: &[u8], out: &mut Vec<u8>) {
        self.write_without(head, Mask::NONE, out);
    }

    /// [`Fields::write`], leaving out the fields whose bits are set in `also` as well.
    pub fn write_without(&self, head: &[u8], also: Mask, out: &mut Vec<u8>) {
        let dropped = self.dropped | also;
        if let (Some(lines), Mask::NONE) = (self.lines, dropped) {
            out.extend_from_slice(&head[range(lines)]);
            return;
        }
        let mut run: Option<Range<usize>> = None;
        for (i, &(name, value)) in self.spans.iter().enumerate() {
            if dropped.contains(i) {
                out.extend_from_slice(&head[run.take().unwrap_or_default()]);
                continue;
            }
            let end = value.1 as usize + 2;
            if head.get(value.1 as usize..end) != Some(b"\r\n") {
                out.extend_from_slice(&head[run.take().unwrap_or_default()]);
                put(out, &head[range(name)], &head[range(value)]);
                continue;
            }
            run = match run {
                Some(r) if r.end == name.0 as usize => Some(r.start..end),
                r => {
                    out.extend_from_slice(&head[r.unwrap_or_default()]);
                    Some(name.0 as usize..end)
                }
            };
        }
        out.extend_from_slice(&head[run.unwrap_or_default()]);
    }

    /// The header map of the fields not dropped, its values slices of `head` (the bytes the
    /// positions were taken in).
    pub fn to_map(&self, head: &Bytes) -> Result<HeaderMap, Refused> {
        let mut map = HeaderMap::with_capacity(self.spans.len());
        for &(name, value) in self.kept() {
            let name = HeaderName::from_bytes(&head[range(name)]).map_err(|_| Refused::Name)?;
            let value = HeaderValue::from_maybe_shared(head.slice(range(value)))
                .map_err(|_| Refused::Value)?;
            map.append(name, value);
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields_of(raw: &'static [u8]) -> (Fields, Bytes) {
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut slots);
        req.parse(raw).unwrap();
        let mut fields = Fields::new();
        fields.record(raw, req.headers);
        (fields, Bytes::from_static(raw))
    }

    #[test]
    fn names_are_known_in_any_case_and_nothing_else_passes_for_them() {
        assert_eq!(known(b"Content-Length"), Known::ContentLength);
        assert_eq!(known(b"X-FORWARDED-PROTO"), Known::Forwarding);
        assert_eq!(known(b"tE"), Known::HopByHop);
        assert_eq!(known(b"Content-Lengtx"), Known::Other);
        assert_eq!(known(b"Content_Length"), Known::Other);
        // Every byte against every letter and `-`: bit 5 confuses none but a letter's cases
        // (and CR with `-`, which no name or value holds).
        for l in (b'a'..=b'z').chain([b'-']) {
            for c in 0..=255u8 {
                if c == b'\r' {
                    continue;
                }
                let want = c.eq_ignore_ascii_case(&l);
                assert_eq!(same_name(&[c], &[l]), want, "{c:#x} against {}", l as char);
                let long = [c, b'a', b'b', b'c', b'd', b'e', b'f', b'g', b'h'];
                assert_eq!(
                    same_name(&long, &[l, b'a', b'b', b'c', b'd', b'e', b'f', b'g', b'h']),
                    want
                );
            }
        }
    }

    #[test]
    fn values_are_slices_of_the_head_and_repeated_names_are_kept() {
        let (f, head) = fields_of(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a: 2\r\n\r\n");
        let map = f.to_map(&head).unwrap();
        assert_eq!(map["host"], "a");
        let all: Vec<_> = map.get_all("x-a").iter().collect();
        assert_eq!(all, ["1", "2"]);
    }

    #[test]
    fn long_heads_keep_every_field() {
        let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..40 {
            raw.extend_from_slice(format!("x-{i}: {i}\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        let raw: &'static [u8] = raw.leak();
        let (f, head) = fields_of(raw);
        let map = f.to_map(&head).unwrap();
        assert_eq!(map.len(), 40);
        assert_eq!(map["x-39"], "39");
    }

    #[test]
    fn contiguous_lines_are_written_in_one_piece_until_one_is_left_out() {
        let raw: &[u8] = b"GET / HTTP/1.1\r\nA:1\r\nB:   2\r\nC: 3\r\n\r\n";
        let (mut f, head) = fields_of(raw);
        assert_eq!(f.lines, Some((16, 35)));
        let mut out = Vec::new();
        f.write(&head, &mut out);
        assert_eq!(out, b"A:1\r\nB:   2\r\nC: 3\r\n");
        let mut out = Vec::new();
        f.write_without(&head, Mask::of(2), &mut out);
        assert_eq!(out, b"A:1\r\nB:   2\r\n");
        f.drop_fields(Mask::of(0));
        let mut out = Vec::new();
        f.write(&head, &mut out);
        assert_eq!(out, b"B:   2\r\nC: 3\r\n");
        let (none, _) = fields_of(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(none.lines, None);
        let (bare_lf, _) = fields_of(b"GET / HTTP/1.1\r\nA: 1\nB: 2\r\n\r\n");
        assert_eq!(
            bare_lf.lines, None,
            "a line ending in LF alone is written anew"
        );
    }

    #[test]
    fn dropped_fields_are_neither_written_nor_mapped() {
        let (mut f, head) = fields_of(b"GET / HTTP/1.1\r\nA: 1\r\nB:  2 \r\nC: 3\r\n\r\n");
        f.drop_fields(Mask::of(1));
        let mut out = Vec::new();
        f.write(&head, &mut out);
        assert_eq!(out, b"A: 1\r\nC: 3\r\n");
        let map = f.to_map(&head).unwrap();
        assert_eq!(map.len(), 2);
        assert!(!map.contains_key("b"));
        assert_eq!(f.iter(&head).count(), 3, "iter shows every field");
        // Runs are copied as they came; a line ending in a bare LF is written anew.
        let (mut g, raw) =
            fields_of(b"GET / HTTP/1.1\r\nA:1\r\nB:   2\r\nC: 3\nD: 4\r\nE: 5\r\nF: 6\r\n\r\n");
        let mut out = Vec::new();
        g.write(&raw, &mut out);
        assert_eq!(out, b"A:1\r\nB:   2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\n");
        g.drop_fields(Mask::of(4));
        let mut out = Vec::new();
        g.write(&raw, &mut out);
        assert_eq!(out, b"A:1\r\nB:   2\r\nC: 3\r\nD: 4\r\nF: 6\r\n");
    }
}
