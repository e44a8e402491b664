//! `redirect_scheme`: a request whose scheme is not the one given is redirected to the same URL
//! with it, and the port given (none: the scheme's default), with Traefik's statuses.

use super::{Flow, Request};

#[derive(Debug)]
pub struct RedirectScheme {
    https: bool,
    /// `:8443`, or empty.
    port: String,
    permanent: bool,
}

impl RedirectScheme {
    pub fn new(d: &tether_model::middleware::RedirectScheme) -> RedirectScheme {
        let https = d.scheme == "https";
        RedirectScheme {
            port: match d.port {
                Some(443) if https => String::new(),
                Some(80) if !https => String::new(),
                Some(p) => format!(":{p}"),
                None => String::new(),
            },
            https,
            permanent: d.permanent,
        }
    }

    pub fn request(&self, r: &mut Request<'_, '_>) -> Flow {
        if r.peer.https == self.https {
            return Flow::Next;
        }
        if r.host.is_empty() {
            return Flow::answer(crate::answer::error(
                http::StatusCode::BAD_REQUEST,
                "this route redirects to another scheme, which needs the request's Host",
            ));
        }
        let scheme = if self.https { "https" } else { "http" };
        let host = if r.host.contains(':') && !r.host.starts_with('[') {
            format!("[{}]", r.host)
        } else {
            r.host.to_string()
        };
        let url = format!("{scheme}://{host}{}{}", self.port, r.head.target());
        let status = super::redirect_regex::status(r.head.method(), self.permanent);
        Flow::answer(super::redirect(status, &url))
    }
}
