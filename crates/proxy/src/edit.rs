//! One model for edits to a message's header fields, honoured by every writer. A route's header
//! rules (the `headers` middleware, `basic_auth`'s removal of `Authorization`, `hsts`, the
//! security fields) are compiled once per table into [`FieldEdits`]: per field name, whether the
//! message's own fields of that name are dropped, and the values added. A request's edits
//! ([`RequestEdits`]) add what its middlewares worked out for it (a new path,
//! `X-Forwarded-Prefix`).
//!
//! The writers:
//! - a request head Tether's HTTP/1.1 server received is copied through with the dropped fields
//!   masked and the added ones written after ([`RequestEdits::mask`], [`RequestEdits::write`]);
//! - a request hyper parsed (h2, HTTP/1.1 handed over) has its header map edited
//!   ([`RequestEdits::apply`]);
//! - a response ([`crate::answer::Answer`]: a server's, or a local answer) has the server's
//!   fields of a dropped name marked dropped and the values added to Tether's own map
//!   ([`FieldEdits::apply_to_answer`]), which Tether's HTTP/1.1 writer and hyper both write.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::http1::fields::{Fields, Mask};

/// One edit, as a rule states it.
#[derive(Debug, Clone)]
pub enum Op {
    Remove(HeaderName),
    Set(HeaderName, HeaderValue),
    Add(HeaderName, HeaderValue),
}

/// What becomes of one field name.
#[derive(Debug, Clone)]
struct Entry {
    name: HeaderName,
    /// The message's own fields of this name are dropped.
    replace: bool,
    values: Vec<HeaderValue>,
    /// Only on messages of requests that came over TLS (`Strict-Transport-Security`).
    tls_only: bool,
}

/// A list of edits, normalised: at most one entry per name and condition, so that applying
/// them in any writer's order gives the same message.
#[derive(Debug, Clone, Default)]
pub struct FieldEdits {
    entries: Vec<Entry>,
}

impl FieldEdits {
    /// Add `op` after the edits already here; `tls_only`: it applies to requests over TLS only.
    pub fn push(&mut self, op: Op, tls_only: bool) {
        let name = match &op {
            Op::Remove(n) | Op::Set(n, _) | Op::Add(n, _) => n.clone(),
        };
        let i = match self
            .entries
            .iter()
            .position(|e| e.name == name && e.tls_only == tls_only)
        {
            Some(i) => i,
            None => {
                self.entries.push(Entry {
                    name,
                    replace: false,
                    values: Vec::new(),
                    tls_only,
                });
                self.entries.len() - 1
            }
        };
        let e = &mut self.entries[i];
        match op {
            Op::Remove(_) => {
                e.replace = true;
                e.values.clear();
            }
            Op::Set(_, v) => {
                e.replace = true;
                e.values = vec![v];
            }
            Op::Add(_, v) => e.values.push(v),
        }
    }

    /// Every edit of `other` after these.
    pub fn extend(&mut self, other: &FieldEdits) {
        for e in &other.entries {
            if e.replace {
                self.push(Op::Remove(e.name.clone()), e.tls_only);
            }
            for v in &e.values {
                self.push(Op::Add(e.name.clone(), v.clone()), e.tls_only);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn applicable(&self, https: bool) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(move |e| https || !e.tls_only)
    }

    /// Are a message's own fields named `name` dropped?
    pub fn drops(&self, name: &[u8], https: bool) -> bool {
        self.applicable(https)
            .any(|e| e.replace && e.name.as_str().as_bytes().eq_ignore_ascii_case(name))
    }

    /// The fields of `fields` (positions in `head`) that these drop.
    pub fn mask(&self, fields: &Fields, head: &[u8], https: bool) -> Mask {
        let mut m = Mask::NONE;
        if !self.applicable(https).any(|e| e.replace) {
            return m;
        }
        for (i, (name, _)) in fields.iter(head).enumerate() {
            if self.drops(name, https) {
                m |= Mask::of(i);
            }
        }
        m
    }

    /// Append the added fields to a head being written.
    pub fn write(&self, out: &mut Vec<u8>, https: bool) {
        for e in self.applicable(https) {
            for v in &e.values {
                crate::http1::fields::put(out, e.name.as_str().as_bytes(), v.as_bytes());
            }
        }
    }

    /// Edit a header map.
    pub fn apply(&self, map: &mut HeaderMap, https: bool) {
        for e in self.applicable(https) {
            if e.replace {
                map.remove(&e.name);
            }
            for v in &e.values {
                map.append(e.name.clone(), v.clone());
            }
        }
    }

    /// Edit a response on its way out: the server's own fields of a dropped name are left out,
    /// and Tether's map (written after them) gets the edits.
    pub fn apply_to_answer(&self, answer: &mut crate::answer::Answer, https: bool) {
        self.apply_to_response(&mut answer.parts.headers, answer.server.as_mut(), https);
    }

    /// [`FieldEdits::apply_to_answer`] on an answer's parts, before they are put together.
    pub fn apply_to_response(
        &self,
        headers: &mut HeaderMap,
        server: Option<&mut crate::http1::response::ServerFields>,
        https: bool,
    ) {
        if let Some(server) = server {
            server.drop_where(|name| self.drops(name, https));
        }
        self.apply(headers, https);
    }
}

/// What the request phase did to one request, for the writer that encodes it for the server.
#[derive(Debug, Default)]
pub struct RequestEdits<'t> {
    /// The route's static header rules.
    pub rules: Option<&'t FieldEdits>,
    /// The request went over TLS (for rules that apply only then).
    pub https: bool,
    /// A new path (origin-form, normalised), the query kept.
    pub path: Option<String>,
    /// Fields set for this request alone (`X-Forwarded-Prefix`, `X-Replaced-Path`).
    pub set: Vec<(HeaderName, HeaderValue)>,
}

impl RequestEdits<'_> {
    /// Does it change nothing (the common case, checked before anything else is looked at)?
    pub fn is_empty(&self) -> bool {
        self.rules.is_none() && self.path.is_none() && self.set.is_empty()
    }

    fn drops(&self, name: &[u8]) -> bool {
        self.rules.is_some_and(|r| r.drops(name, self.https))
            || self
                .set
                .iter()
                .any(|(n, _)| n.as_str().as_bytes().eq_ignore_ascii_case(name))
    }

    /// The received fields these drop.
    pub fn mask(&self, fields: &Fields, head: &[u8]) -> Mask {
        let mut m = Mask::NONE;
        for (i, (name, _)) in fields.iter(head).enumerate() {
            if self.drops(name) {
                m |= Mask::of(i);
            }
        }
        m
    }

    /// Does it drop the `Host` field (a rule sets `Host`)?
    pub fn replaces_host(&self) -> bool {
        self.drops(b"host")
    }

    /// Append the added fields to a head being written.
    pub fn write(&self, out: &mut Vec<u8>) {
        if let Some(r) = self.rules {
            r.write(out, self.https);
        }
        for (n, v) in &self.set {
            crate::http1::fields::put(out, n.as_str().as_bytes(), v.as_bytes());
        }
    }

    /// Edit a header map.
    pub fn apply(&self, map: &mut HeaderMap) {
        if let Some(r) = self.rules {
            r.apply(map, self.https);
        }
        for (n, v) in &self.set {
            map.insert(n.clone(), v.clone());
        }
    }

    /// The request target with the new path, when there is one: `path?query`.
    pub fn target(&self, old: &str) -> Option<String> {
        let path = self.path.as_ref()?;
        Some(match old.split_once('?') {
            Some((_, q)) => format!("{path}?{q}"),
            None => path.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &'static str) -> HeaderName {
        HeaderName::from_static(s)
    }
    fn value(s: &'static str) -> HeaderValue {
        HeaderValue::from_static(s)
    }

    #[test]
    fn edits_normalise_so_every_writer_agrees() {
        let mut e = FieldEdits::default();
        e.push(Op::Add(name("x-a"), value("1")), false);
        e.push(Op::Set(name("x-a"), value("2")), false);
        e.push(Op::Add(name("x-a"), value("3")), false);
        e.push(Op::Remove(name("x-gone")), false);
        e.push(
            Op::Set(name("strict-transport-security"), value("max-age=1")),
            true,
        );
        let mut map = HeaderMap::new();
        map.append("x-a", value("server"));
        map.append("x-gone", value("server"));
        map.append("x-kept", value("server"));
        e.apply(&mut map, false);
        assert_eq!(map.get_all("x-a").iter().collect::<Vec<_>>(), ["2", "3"]);
        assert!(!map.contains_key("x-gone"));
        assert!(!map.contains_key("strict-transport-security"), "TLS only");
        assert_eq!(map["x-kept"], "server");
        let mut out = Vec::new();
        e.write(&mut out, true);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "x-a: 2\r\nx-a: 3\r\nstrict-transport-security: max-age=1\r\n"
        );
        assert!(e.drops(b"X-A", false) && e.drops(b"x-gone", false));
        assert!(!e.drops(b"strict-transport-security", false));
        assert!(e.drops(b"strict-transport-security", true));
    }

    #[test]
    fn a_new_path_keeps_the_query() {
        let edits = RequestEdits {
            path: Some("/cart".into()),
            ..Default::default()
        };
        assert_eq!(edits.target("/shop/cart?id=1").unwrap(), "/cart?id=1");
        assert_eq!(edits.target("/shop/cart").unwrap(), "/cart");
        assert!(RequestEdits::default().is_empty());
    }
}
