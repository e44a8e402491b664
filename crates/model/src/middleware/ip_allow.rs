//! `ip_allow`: only clients whose address is in one of `ranges` pass; any other gets 403. The
//! address is the one the admit phase computed (the peer's, or the rightmost `X-Forwarded-For`
//! entry that is not a trusted proxy when the peer is one).

use serde::Deserialize;

use super::Cx;
use crate::file_config::Cidr;
use crate::validate::ValidationError;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IpAllow {
    pub ranges: Vec<Cidr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    ranges: Vec<String>,
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
        if errors.is_empty() {
            Ok(IpAllow { ranges })
        } else {
            Err(errors)
        }
    }
}
