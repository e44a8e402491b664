//! `ip_allow`: a client whose address (the one the admit phase computed) is in none of the
//! ranges is answered 403.

use http::StatusCode;
use tether_model::file_config::Cidr;

use super::{Flow, Request};

#[derive(Debug)]
pub struct IpAllow {
    ranges: Box<[Cidr]>,
}

impl IpAllow {
    pub fn new(d: &tether_model::middleware::IpAllow) -> IpAllow {
        IpAllow {
            ranges: d.ranges.clone().into(),
        }
    }

    pub fn request(&self, r: &mut Request<'_, '_>) -> Flow {
        if self.ranges.iter().any(|c| c.contains(r.client)) {
            Flow::Next
        } else {
            Flow::answer(crate::answer::error(
                StatusCode::FORBIDDEN,
                "your address is not allowed here",
            ))
        }
    }
}
