//! `in_flight`: at most `amount` requests at once from one source (the client's address by
//! default, a request field's value, or the whole route); a request beyond is answered 429. A
//! request counts from its middleware's turn until its response's body has gone out. Traefik's
//! `inFlightReq`.

use serde::Deserialize;

use super::rate_limit::Source;
use super::Cx;
use crate::validate::ValidationError;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InFlight {
    pub amount: u32,
    pub by: Source,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    amount: u32,
    by: Option<String>,
    depth: Option<u32>,
}

impl Raw {
    pub(super) fn convert(&self, cx: &Cx<'_>) -> Result<InFlight, Vec<ValidationError>> {
        let base = cx.base;
        let mut errors = Vec::new();
        if self.amount == 0 {
            errors.push(ValidationError::new(
                format!("{base}.amount"),
                "is 0: no request would ever pass",
            ));
        }
        let by = Source::fields(self.by.as_deref(), self.depth, true, base, &mut errors);
        if errors.is_empty() {
            Ok(InFlight {
                amount: self.amount,
                by,
            })
        } else {
            Err(errors)
        }
    }
}
