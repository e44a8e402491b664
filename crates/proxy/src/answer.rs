//! A response on its way to the client: status and the fields Tether sets in a header map, the
//! server's own fields as they arrived ([`ServerFields`]), and the body. Tether's HTTP/1.1 server
//! ([`crate::front`]) writes the server's fields straight through; hyper (h2c, and HTTP/1.1
//! connections handed over to it) gets a [`Response`] whose map holds both.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::http1::response::ServerFields;
pub use crate::route::sticky::PinFields;
use crate::upstream::body::ProxyBody;

/// A response, as the handler hands it to whichever server writes it.
pub struct Answer {
    /// Status, and the header fields Tether sets (every field when there is no `server`).
    pub parts: http::response::Parts,
    /// The server's own fields, written before `parts.headers`.
    pub server: Option<ServerFields>,
    /// The affinity cookie's fields, when they go beside the server's untouched ones (written
    /// last; no header map is made for them).
    pub pin: Option<PinFields>,
    pub body: ProxyBody,
}

impl From<Response<ProxyBody>> for Answer {
    fn from(r: Response<ProxyBody>) -> Answer {
        let (parts, body) = r.into_parts();
        Answer {
            parts,
            server: None,
            pin: None,
            body,
        }
    }
}

impl Answer {
    /// The response with every field in its header map: the server's first, then Tether's.
    pub fn into_response(self) -> Response<ProxyBody> {
        let Answer {
            mut parts,
            server,
            pin,
            body,
        } = self;
        if let Some(pin) = pin {
            parts.headers.append(header::SET_COOKIE, pin.set_cookie);
            if pin.not_cacheable {
                parts.headers.insert(
                    header::CACHE_CONTROL,
                    http::HeaderValue::from_static(PinFields::NOT_SHARED),
                );
            }
        }
        if let Some(server) = server {
            let mut map = match server.to_map() {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "server response refused");
                    return error(StatusCode::BAD_GATEWAY, &e.to_string());
                }
            };
            let mut name = None;
            for (n, v) in parts.headers {
                name = n.or(name);
                if let Some(n) = &name {
                    map.append(n.clone(), v);
                }
            }
            parts.headers = map;
        }
        Response::from_parts(parts, body)
    }

    /// Has the response a `Date` field?
    pub fn has_date(&self) -> bool {
        self.parts.headers.contains_key(header::DATE)
            || self.server.as_ref().is_some_and(|s| s.has_date)
    }

    /// The Content-Length it declares, if any.
    pub fn content_length(&self) -> Option<u64> {
        match self.parts.headers.get(header::CONTENT_LENGTH) {
            Some(v) => crate::http1::response::digits(v.as_bytes()),
            None => self.server.as_ref().and_then(|s| s.content_length),
        }
    }
}

/// What a request that no route matches is told (404).
pub const NO_ROUTE: &str = "no route matches this request";

/// A short plain-text answer from Tether itself.
pub fn error(status: StatusCode, detail: &str) -> Response<ProxyBody> {
    let reason = status.canonical_reason().unwrap_or("");
    let mut r = Response::new(ProxyBody::full(format!(
        "{} {reason}: {detail}\n",
        status.as_u16()
    )));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_of_tethers_own_keeps_its_fields() {
        let r = error(StatusCode::NOT_FOUND, "none");
        let a = Answer::from(r);
        assert!(!a.has_date());
        let r = a.into_response();
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    }

    #[test]
    fn pin_fields_reach_a_header_map_and_the_wire_alike() {
        let pin = PinFields {
            set_cookie: http::HeaderValue::from_static("SRV=x; Path=/"),
            not_cacheable: true,
        };
        let fields: Vec<_> = pin.fields().collect();
        assert_eq!(
            fields,
            [
                ("set-cookie", &b"SRV=x; Path=/"[..]),
                ("cache-control", PinFields::NOT_SHARED.as_bytes())
            ]
        );
        let mut a = Answer::from(Response::new(ProxyBody::empty()));
        a.pin = Some(pin);
        let r = a.into_response();
        assert_eq!(r.headers()[header::SET_COOKIE], "SRV=x; Path=/");
        assert_eq!(r.headers()[header::CACHE_CONTROL], PinFields::NOT_SHARED);
    }
}
