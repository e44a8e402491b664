//! `ip_allow`: a client whose address (the one the admit phase computed, or the
//! `X-Forwarded-For` entry at `depth` from a trusted proxy) is in none of the ranges is answered
//! the middleware's status (403 by default). A request from a trusted proxy without an entry at
//! that depth is refused too: an allow list that cannot tell the client lets nobody through.

use http::StatusCode;
use tether_model::file_config::Cidr;

use super::{source, Flow, Request};

#[derive(Debug)]
pub struct IpAllow {
    ranges: Box<[Cidr]>,
    depth: u32,
    reject: StatusCode,
}

impl IpAllow {
    pub fn new(d: &tether_model::middleware::IpAllow) -> IpAllow {
        IpAllow {
            ranges: d.ranges.clone().into(),
            depth: d.depth,
            // The model allows 400 to 599 only, each a valid status.
            reject: StatusCode::from_u16(d.reject_status).unwrap_or(StatusCode::FORBIDDEN),
        }
    }

    pub fn request(&self, r: &mut Request<'_, '_>) -> Flow {
        let allowed = source::at_depth(r, self.depth)
            .is_some_and(|ip| self.ranges.iter().any(|c| c.contains(ip)));
        if allowed {
            return Flow::Next;
        }
        // A 404 says what a request no route matches is told: the route is not given away.
        let detail = if self.reject == StatusCode::NOT_FOUND {
            crate::answer::NO_ROUTE
        } else {
            "your address is not allowed here"
        };
        Flow::answer(crate::answer::error(self.reject, detail))
    }
}
