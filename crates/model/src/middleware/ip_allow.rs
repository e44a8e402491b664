//! `ip_allow`: only clients whose address is in one of `ranges` pass; any other is answered
//! `reject_status` (403 by default; 404 hides the route). The address is the one the admit
//! phase computed (the peer's, or the rightmost `X-Forwarded-For` entry that is not a trusted
//! proxy when the peer is one); with `depth` N > 0, the Nth `X-Forwarded-For` entry from the
//! right when the peer is a trusted proxy (Traefik's `ipStrategy.depth`), and a request whose
//! field has fewer entries is refused.

use serde::Deserialize;

use super::Cx;
use crate::file_config::Cidr;
use crate::validate::ValidationError;

/// The status a refused client gets by default.
pub const REJECT_STATUS: u16 = 403;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IpAllow {
    pub ranges: Vec<Cidr>,
    /// 0: the admitted address; N: the Nth `X-Forwarded-For` entry from the right, read only
    /// when the peer is a trusted proxy.
    pub depth: u32,
    /// 400 to 599.
    pub reject_status: u16,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    ranges: Vec<String>,
    depth: Option<u32>,
    reject_status: Option<u16>,
}

impl Raw {
    pub(super) fn convert(&self, cx: &Cx<'_>) -> Result<IpAllow, Vec<ValidationError>> {
        let base = cx.base;
        let mut errors = Vec::new();
        let mut ranges = Vec::new();
        for (i, r) in self.ranges.iter().enumerate() {
            match Cidr::parse(r) {
                Ok(c) => ranges.push(c),
                Err(e) => errors.push(ValidationError::new(format!("{base}.ranges[{i}]"), e)),
            }
        }
        if self.ranges.is_empty() {
            errors.push(ValidationError::new(
                format!("{base}.ranges"),
                "is empty: it would refuse every client",
            ));
        }
        let reject_status = self.reject_status.unwrap_or(REJECT_STATUS);
        if !(400..=599).contains(&reject_status) {
            errors.push(ValidationError::new(
                format!("{base}.reject_status"),
                format!("{reject_status}: expected a 4xx or 5xx status"),
            ));
        }
        if errors.is_empty() {
            Ok(IpAllow {
                ranges,
                depth: self.depth.unwrap_or(0),
                reject_status,
            })
        } else {
            Err(errors)
        }
    }
}
