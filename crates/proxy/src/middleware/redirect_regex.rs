//! `redirect_regex`: when the regex matches the request's URL (`http://host/path?query`), the
//! client is redirected to the replacement with `$1`, `${name}` expanded: 302, or 307 for a
//! method other than GET and HEAD; with `permanent`, 301 or 308 (Traefik's statuses).

use http::{Method, StatusCode};

use super::{Flow, Request};

#[derive(Debug)]
pub struct RedirectRegex {
    regex: regex::Regex,
    replacement: String,
    permanent: bool,
}

impl RedirectRegex {
    pub fn new(d: &tether_model::middleware::RedirectRegex) -> Result<RedirectRegex, String> {
        Ok(RedirectRegex {
            regex: tether_model::middleware::regex(&d.regex)?,
            replacement: d.replacement.clone(),
            permanent: d.permanent,
        })
    }

    pub fn request(&self, r: &mut Request<'_, '_>) -> Flow {
        let url = super::url(r);
        if !self.regex.is_match(&url) {
            return Flow::Next;
        }
        let to = self.regex.replace_all(&url, self.replacement.as_str());
        if to == url {
            return Flow::Next; // already there: no loop
        }
        Flow::answer(super::redirect(
            status(r.head.method(), self.permanent),
            &to,
        ))
    }
}

/// Traefik's redirect statuses: 301/302 for GET and HEAD, 308/307 (which keep the method and
/// body) for the others.
pub(super) fn status(m: &Method, permanent: bool) -> StatusCode {
    let safe = *m == Method::GET || *m == Method::HEAD;
    match (permanent, safe) {
        (true, true) => StatusCode::MOVED_PERMANENTLY,
        (true, false) => StatusCode::PERMANENT_REDIRECT,
        (false, true) => StatusCode::FOUND,
        (false, false) => StatusCode::TEMPORARY_REDIRECT,
    }
}
