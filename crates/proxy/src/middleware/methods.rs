//! `methods`: a request whose method is not allowed is answered 405 with `Allow`, as Docker
//! Flow Proxy's `allowedMethods`/`deniedMethods` do.

use http::header::{HeaderValue, ALLOW};
use http::StatusCode;

use super::{Flow, Request};

#[derive(Debug)]
pub struct Methods {
    allow: Box<[String]>,
    deny: Box<[String]>,
    /// The `Allow` field of a 405, when the allowed methods are listed.
    allow_field: Option<HeaderValue>,
}

impl Methods {
    pub fn new(d: &tether_model::middleware::Methods) -> Methods {
        Methods {
            allow_field: (!d.allow.is_empty())
                .then(|| HeaderValue::from_str(&d.allow.join(", ")).ok())
                .flatten(),
            allow: d.allow.clone().into(),
            deny: d.deny.clone().into(),
        }
    }

    pub fn request(&self, r: &mut Request<'_, '_>) -> Flow {
        let m = r.head.method().as_str();
        let allowed = (self.allow.is_empty() || self.allow.iter().any(|a| a == m))
            && !self.deny.iter().any(|d| d == m);
        if allowed {
            return Flow::Next;
        }
        let mut resp = crate::answer::error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{m} is not allowed here"),
        );
        if let Some(v) = &self.allow_field {
            resp.headers_mut().insert(ALLOW, v.clone());
        }
        Flow::answer(resp)
    }
}
