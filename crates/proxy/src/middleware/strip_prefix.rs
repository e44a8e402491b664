//! `strip_prefix`: the first prefix the path starts with is removed (`/shop/cart` → `/cart`,
//! `/shop` → `/`), and `X-Forwarded-Prefix` carries it: appended to a trusted proxy's own
//! `X-Forwarded-Prefix`, replacing anyone else's.

use super::{Flow, Request};

#[derive(Debug)]
pub struct StripPrefix {
    prefixes: Box<[String]>,
}

impl StripPrefix {
    pub fn new(d: &tether_model::middleware::StripPrefix) -> StripPrefix {
        StripPrefix {
            prefixes: d.prefixes.clone().into(),
        }
    }

    pub fn request(&self, r: &mut Request<'_, '_>) -> Flow {
        let path = r.path();
        let Some(prefix) = self.prefixes.iter().find(|p| path.starts_with(p.as_str())) else {
            return Flow::Next;
        };
        let rest = path[prefix.len()..].to_string();
        strip(r, prefix.trim_end_matches('/'), &rest)
    }
}

/// Give the request path `rest` and say that `prefix` was removed.
pub(super) fn strip(r: &mut Request<'_, '_>, prefix: &str, rest: &str) -> Flow {
    let forwarded = match r.head.first_value("x-forwarded-prefix") {
        Some(theirs) if r.peer.trusted => {
            format!(
                "{}{prefix}",
                String::from_utf8_lossy(theirs).trim_end_matches('/')
            )
        }
        _ => prefix.to_string(),
    };
    if let Err(answer) = r.rewrite(rest) {
        return answer;
    }
    r.set("x-forwarded-prefix", &forwarded);
    Flow::Next
}

use crate::headers::ReadFields as _;
