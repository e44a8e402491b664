//! Session affinity on the wire: reading the pin from the request's cookies, hiding Tether's part
//! from the application, and pinning the response.
//!
//! - `cookie` mode: Tether's own cookie (`tether_web=<sealed>`) is read and removed before the
//!   request reaches the server; a response that needs a pin gets `Set-Cookie` with the service's
//!   attributes.
//! - `prefix` mode (HAProxy's `cookie connect.sid prefix`): the client holds
//!   `connect.sid=<sealed>~<app value>`; the server sees `connect.sid=<app value>`; every
//!   `Set-Cookie: connect.sid=v` from the server leaves as `connect.sid=<sealed>~v`.

use std::fmt::Write as _;

use http::header::{self, HeaderMap, HeaderValue};
use tether_balance::Pin;
use tether_model::{AffinityMode, CookieAttrs};

pub use crate::headers::CookieEdit;
use crate::headers::ReadFields;
use crate::route::table::Sticky;

/// Separator between the server key and the application's value in prefix mode (as HAProxy).
const PREFIX_SEP: char = '~';

/// What the request said about affinity.
#[derive(Debug)]
pub struct RequestPin {
    pub pin: Pin,
    /// The request carried an affinity value (valid or not): with `Pin::None`, a forged one.
    pub presented: bool,
    /// Prefix mode: the application's own cookie value, to re-pin it if the server does not set it.
    pub app_value: Option<String>,
}

impl RequestPin {
    /// No pin, no application value.
    pub const NONE: RequestPin = RequestPin {
        pin: Pin::None,
        presented: false,
        app_value: None,
    };
}

/// Iterate `name=value` pairs over all Cookie fields (a pair without `=` has an empty value).
fn pairs<H: ReadFields + ?Sized>(h: &H) -> Pairs<'_, impl Iterator<Item = &[u8]>> {
    Pairs {
        values: h.values("cookie"),
        rest: &[],
    }
}

/// The pairs of Cookie field values, found by one scan of each value (no iterator adapters: a
/// request carrying the affinity cookie pays for this on every request).
struct Pairs<'a, I> {
    values: I,
    /// What is left of the value being read.
    rest: &'a [u8],
}

impl<'a, I: Iterator<Item = &'a [u8]>> Iterator for Pairs<'a, I> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.rest.is_empty() {
                self.rest = self.values.next()?;
                continue;
            }
            let end = self
                .rest
                .iter()
                .position(|&b| b == b';')
                .unwrap_or(self.rest.len());
            let kv = self.rest[..end].trim_ascii();
            self.rest = self.rest.get(end + 1..).unwrap_or(&[]);
            let (k, v) = match kv.iter().position(|&b| b == b'=') {
                Some(i) => (&kv[..i], &kv[i + 1..]),
                None => (kv, &[][..]),
            };
            if !k.is_empty() {
                return Some((k, v));
            }
        }
    }
}

/// The value of cookie `name`, if present (the first, over all Cookie fields), as it came.
pub fn cookie<'a, H: ReadFields + ?Sized>(h: &'a H, name: &str) -> Option<&'a [u8]> {
    pairs(h)
        .find(|(k, _)| *k == name.as_bytes())
        .map(|(_, v)| v)
}

/// The Cookie fields with `name` replaced by `value` (or removed when `None`).
fn rewrite<H: ReadFields + ?Sized>(h: &H, name: &str, value: Option<&str>) -> CookieEdit {
    let mut out = Vec::new();
    for (k, v) in pairs(h) {
        let v = if k == name.as_bytes() {
            match value {
                Some(nv) => nv.as_bytes(),
                None => continue,
            }
        } else {
            v
        };
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(k);
        out.push(b'=');
        out.extend_from_slice(v);
    }
    match HeaderValue::from_bytes(&out) {
        Ok(v) if !out.is_empty() => CookieEdit::Replace(v),
        _ => CookieEdit::Remove,
    }
}

/// Is cookie `name` all the request's Cookie field holds (one field, one pair)? Then taking it
/// out is removing the field.
fn is_all_of_cookie<H: ReadFields + ?Sized>(h: &H, name: &str) -> bool {
    let mut fields = h.values("cookie");
    match (fields.next(), fields.next()) {
        (Some(v), None) => v
            .trim_ascii()
            .strip_prefix(name.as_bytes())
            .is_some_and(|rest| rest.first() == Some(&b'=') && !rest.contains(&b';')),
        _ => false,
    }
}

/// Read the pin, and what is left of the request's Cookie fields once Tether's part is out.
pub fn read_request<H: ReadFields + ?Sized>(h: &H, sticky: &Sticky) -> (RequestPin, CookieEdit) {
    let none = |app_value| RequestPin {
        pin: Pin::None,
        presented: false,
        app_value,
    };
    match &sticky.policy.mode {
        AffinityMode::Cookie(attrs) => {
            let Some(v) = cookie(h, &attrs.name) else {
                return (none(None), CookieEdit::Keep);
            };
            let pin = sticky.index.pin(v);
            let edit = if is_all_of_cookie(h, &attrs.name) {
                CookieEdit::Remove
            } else {
                rewrite(h, &attrs.name, None)
            };
            let pinned = RequestPin {
                pin,
                presented: true,
                app_value: None,
            };
            (pinned, edit)
        }
        AffinityMode::Prefix { cookie: name } => {
            let Some(v) = cookie(h, name).and_then(|v| std::str::from_utf8(v).ok()) else {
                return (none(None), CookieEdit::Keep);
            };
            match v.split_once(PREFIX_SEP) {
                Some((key, app)) => {
                    let pin = sticky.index.pin(key);
                    let edit = rewrite(h, name, Some(app));
                    let pinned = RequestPin {
                        pin,
                        presented: true,
                        app_value: Some(app.to_string()),
                    };
                    (pinned, edit)
                }
                None => (none(Some(v.to_string())), CookieEdit::Keep),
            }
        }
    }
}

/// Does [`write_response`] read or change the server's own fields (so they must be in the header
/// map it is given), or only add its own? It rewrites the server's cookie in prefix mode, and it
/// merges `nocache` into a `Cache-Control` the server sent.
pub fn edits_server_fields(sticky: &Sticky, fresh: bool, server_has_cache_control: bool) -> bool {
    match sticky.policy.mode {
        AffinityMode::Prefix { .. } => true,
        AffinityMode::Cookie(_) => fresh && sticky.policy.nocache && server_has_cache_control,
    }
}

/// The fields that pin the response to server `idx`, when [`edits_server_fields`] says the
/// server's own fields are left as they are (cookie mode); `None` when nothing is to be added.
pub fn pin_fields(sticky: &Sticky, idx: usize, fresh: bool) -> Option<PinFields> {
    match &sticky.policy.mode {
        AffinityMode::Cookie(_) if fresh => Some(PinFields {
            set_cookie: sticky.set_cookie[idx].clone(),
            not_cacheable: sticky.policy.nocache,
        }),
        _ => None,
    }
}

/// Pin the response to server `idx`. `fresh`: the request was not validly pinned to `idx`.
pub fn write_response(
    h: &mut HeaderMap,
    sticky: &Sticky,
    idx: usize,
    fresh: bool,
    app_value: Option<&str>,
) {
    let set = match &sticky.policy.mode {
        AffinityMode::Cookie(_) => {
            if fresh {
                h.append(header::SET_COOKIE, sticky.set_cookie[idx].clone());
            }
            fresh
        }
        AffinityMode::Prefix { cookie: name } => {
            let key = sticky.index.value(idx);
            let mut set = prefix_set_cookies(h, name, key);
            if !set && fresh {
                if let Some(app) = app_value {
                    if let Ok(v) = HeaderValue::from_str(&format!(
                        "{name}={key}{PREFIX_SEP}{app}; Path=/; HttpOnly"
                    )) {
                        h.append(header::SET_COOKIE, v);
                        set = true;
                    }
                }
            }
            set
        }
    };
    if set && sticky.policy.nocache {
        mark_not_cacheable(h);
    }
}

/// The `Set-Cookie` value that pins a client to the server whose sealed key is `value`.
pub(crate) fn inserted_cookie(a: &CookieAttrs, value: &str) -> HeaderValue {
    let mut s = format!("{}={value}; Path={}", a.name, a.path);
    if let Some(d) = &a.domain {
        let _ = write!(s, "; Domain={d}");
    }
    if let Some(m) = a.max_age {
        let _ = write!(s, "; Max-Age={}", m.as_secs());
    }
    if a.secure {
        s.push_str("; Secure");
    }
    if a.http_only {
        s.push_str("; HttpOnly");
    }
    if let Some(ss) = a.same_site {
        let _ = write!(s, "; SameSite={}", ss.as_str());
    }
    HeaderValue::from_str(&s).expect("cookie attributes are validated tokens")
}

/// Prefix every `Set-Cookie: name=...` with the server key; returns whether any was found.
fn prefix_set_cookies(h: &mut HeaderMap, name: &str, key: &str) -> bool {
    let is_ours = |v: &HeaderValue| {
        v.to_str()
            .ok()
            .and_then(|s| s.split_once('='))
            .is_some_and(|(k, _)| k.trim() == name)
    };
    if !h.get_all(header::SET_COOKIE).iter().any(is_ours) {
        return false;
    }
    let all: Vec<HeaderValue> = h.get_all(header::SET_COOKIE).iter().cloned().collect();
    h.remove(header::SET_COOKIE);
    for v in all {
        let v = match v.to_str().ok().and_then(|s| s.split_once('=')) {
            Some((k, rest)) if k.trim() == name => {
                HeaderValue::from_str(&format!("{name}={key}{PREFIX_SEP}{rest}")).unwrap_or(v)
            }
            _ => v,
        };
        h.append(header::SET_COOKIE, v);
    }
    true
}

/// `nocache`: a response that sets the affinity cookie must not be stored by shared caches,
/// or one user's pin would be served to others.
fn mark_not_cacheable(h: &mut HeaderMap) {
    const NOT_SHARED: &str = PinFields::NOT_SHARED;
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static(NOT_SHARED));
        return;
    }
    let existing = h
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if existing.contains("no-store") {
        return;
    }
    let kept: Vec<&str> = existing
        .split(',')
        .map(str::trim)
        .filter(|d| {
            !d.is_empty()
                && *d != "public"
                && !d.starts_with("s-maxage")
                && *d != "private"
                && !d.starts_with("no-cache")
        })
        .collect();
    let mut v = String::from(NOT_SHARED);
    for d in kept {
        let _ = write!(v, ", {d}");
    }
    if let Ok(v) = HeaderValue::from_str(&v) {
        h.insert(header::CACHE_CONTROL, v);
    }
}

/// What pins a client to its server in cookie mode: a `Set-Cookie`, and with `nocache` a
/// `Cache-Control` that keeps shared caches from storing it (the server sent none).
#[derive(Debug, Clone)]
pub struct PinFields {
    pub set_cookie: http::HeaderValue,
    pub not_cacheable: bool,
}

impl PinFields {
    /// The `Cache-Control` of a response that sets the affinity cookie.
    pub const NOT_SHARED: &'static str = "private, no-cache=\"set-cookie\"";

    /// Each field, name and value.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, &[u8])> {
        let cache = self
            .not_cacheable
            .then_some(("cache-control", Self::NOT_SHARED.as_bytes()));
        std::iter::once(("set-cookie", self.set_cookie.as_bytes())).chain(cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_balance::{AffinityKey, StickyIndex};
    use tether_model::{AffinityPolicy, OnMissing};

    fn sticky(mode: AffinityMode) -> Sticky {
        let key = AffinityKey::from_secret(b"test key test key test key test key");
        Sticky::new(
            AffinityPolicy {
                mode,
                nocache: true,
                on_missing: OnMissing::Rebalance,
            },
            StickyIndex::new(&key, "web", &[("a", 1), ("b", 1)]),
        )
    }

    #[test]
    fn cookie_pairs_are_read_across_fields_and_odd_spacing() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1;;  b=2 ; =x; c".parse().unwrap());
        h.append(header::COOKIE, "".parse().unwrap());
        h.append(header::COOKIE, "d=4=4".parse().unwrap());
        let all: Vec<_> = pairs(&h).collect();
        let want: [(&[u8], &[u8]); 4] = [(b"a", b"1"), (b"b", b"2"), (b"c", b""), (b"d", b"4=4")];
        assert_eq!(all, want);
        assert_eq!(cookie(&h, "d"), Some(&b"4=4"[..]));
        assert_eq!(cookie(&h, "x"), None);
    }

    #[test]
    fn prefix_mode_round_trip_shows_the_app_its_own_value() {
        let s = sticky(AffinityMode::Prefix {
            cookie: "connect.sid".into(),
        });
        let mut resp = HeaderMap::new();
        resp.append(
            header::SET_COOKIE,
            "connect.sid=s%3Aabc; Path=/; HttpOnly".parse().unwrap(),
        );
        resp.insert(header::CACHE_CONTROL, "public, max-age=60".parse().unwrap());
        write_response(&mut resp, &s, 1, true, None);
        let set = resp[header::SET_COOKIE].to_str().unwrap().to_string();
        let key = s.index.value(1);
        assert_eq!(set, format!("connect.sid={key}~s%3Aabc; Path=/; HttpOnly"));
        assert_eq!(
            resp[header::CACHE_CONTROL],
            "private, no-cache=\"set-cookie\", max-age=60"
        );

        let mut req = HeaderMap::new();
        req.insert(
            header::COOKIE,
            format!("a=1; connect.sid={key}~s%3Aabc; b=2")
                .parse()
                .unwrap(),
        );
        let (pin, edit) = read_request(&req, &s);
        edit.apply(&mut req);
        assert_eq!(pin.pin, Pin::Server(1));
        assert_eq!(req[header::COOKIE], "a=1; connect.sid=s%3Aabc; b=2");
    }

    #[test]
    fn cookie_mode_hides_its_cookie_and_sets_attributes() {
        let mut attrs = CookieAttrs::for_service("web");
        attrs.secure = true;
        attrs.max_age = Some(std::time::Duration::from_secs(60));
        let s = sticky(AffinityMode::Cookie(attrs));
        let mut resp = HeaderMap::new();
        write_response(&mut resp, &s, 0, true, None);
        let v = resp[header::SET_COOKIE].to_str().unwrap();
        assert!(
            v.starts_with(&format!(
                "tether_web={}; Path=/; Max-Age=60; Secure; HttpOnly; SameSite=Lax",
                s.index.value(0)
            )),
            "{v}"
        );
        let mut req = HeaderMap::new();
        req.insert(
            header::COOKIE,
            format!("tether_web={}", s.index.value(0)).parse().unwrap(),
        );
        let (pin, edit) = read_request(&req, &s);
        assert_eq!((pin.pin, &edit), (Pin::Server(0), &CookieEdit::Remove));
        edit.apply(&mut req);
        assert!(!req.contains_key(header::COOKIE));
        let mut req = HeaderMap::new();
        req.insert(
            header::COOKIE,
            format!("a=1; tether_web={}; tether_webx=2", s.index.value(0))
                .parse()
                .unwrap(),
        );
        let (pin, edit) = read_request(&req, &s);
        assert_eq!(pin.pin, Pin::Server(0));
        edit.apply(&mut req);
        assert_eq!(req[header::COOKIE], "a=1; tether_webx=2", "the others stay");
        let mut resp = HeaderMap::new();
        write_response(&mut resp, &s, 0, false, None);
        assert!(
            resp.is_empty(),
            "an already pinned session gets no new cookie"
        );
    }
}
