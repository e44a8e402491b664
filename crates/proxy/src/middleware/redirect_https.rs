//! `redirect_https` (a route field, run before the route's middlewares): a request over plain
//! HTTP is answered 308 (or 307) to its URL with the `https` scheme, the route's TLS port and the
//! same path and query. Both statuses keep the method and body (RFC 9110 §15.4.8-9).

use http::StatusCode;
use tether_model::{HttpsRedirect, RouteDecl};

use super::{Flow, Request};

#[derive(Debug)]
pub struct RedirectHttps {
    /// `:8443`, or empty for 443.
    port: Box<str>,
    /// 308 or 307.
    status: StatusCode,
}

impl RedirectHttps {
    pub fn new(h: &HttpsRedirect, r: &RouteDecl, tls_ports: &[(String, u16)]) -> RedirectHttps {
        RedirectHttps {
            port: https_port(h, r, tls_ports),
            status: if h.permanent {
                StatusCode::PERMANENT_REDIRECT
            } else {
                StatusCode::TEMPORARY_REDIRECT
            },
        }
    }

    pub fn request(&self, r: &mut Request<'_, '_>) -> Flow {
        if r.peer.https {
            return Flow::Next;
        }
        let host = r.host;
        if host.is_empty() {
            return Flow::answer(crate::answer::error(
                StatusCode::BAD_REQUEST,
                "this route redirects to https, which needs the request's Host",
            ));
        }
        let (port, target) = (&self.port, r.head.target());
        let url = if host.contains(':') && !host.starts_with('[') {
            format!("https://[{host}]{port}{target}")
        } else {
            format!("https://{host}{port}{target}")
        };
        Flow::answer(super::redirect(self.status, &url))
    }
}

/// The port part of a route's `https://` URL: the one it names, else that of the entrypoint it
/// names, else of its TLS entrypoint (the first of its own, else the first of all), left out when
/// it is 443 or there is none.
fn https_port(h: &HttpsRedirect, r: &RouteDecl, tls_ports: &[(String, u16)]) -> Box<str> {
    let own = tls_ports.iter().find(|(name, _)| match &h.entrypoint {
        Some(e) => e == name,
        None => r.entrypoints.contains(name),
    });
    let port = h
        .port
        .or_else(|| own.or(tls_ports.first()).map(|&(_, p)| p));
    match port {
        None | Some(443) => "".into(),
        Some(p) => format!(":{p}").into(),
    }
}
