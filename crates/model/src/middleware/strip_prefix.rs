//! `strip_prefix`: the first of `prefixes` the path starts with is removed before the request
//! goes on (`/shop/cart` → `/cart`), and `X-Forwarded-Prefix` tells the server what was removed.
//! As Traefik's: a prefix matches whole segments or a plain string prefix alike, and an emptied
//! path becomes `/`.

use serde::Deserialize;

use super::{path_field, Cx};
use crate::validate::ValidationError;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StripPrefix {
    pub prefixes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    prefixes: Vec<String>,
}

impl Raw {
    pub(super) fn convert(&self, cx: &Cx<'_>) -> Result<StripPrefix, Vec<ValidationError>> {
        let base = cx.base;
        let errors: Vec<ValidationError> = self
            .prefixes
            .iter()
            .enumerate()
            .filter_map(|(i, p)| path_field(&format!("{base}.prefixes[{i}]"), p).err())
            .collect();
        if self.prefixes.is_empty() {
            return Err(vec![ValidationError::new(
                format!("{base}.prefixes"),
                "is empty",
            )]);
        }
        if errors.is_empty() {
            Ok(StripPrefix {
                prefixes: self.prefixes.clone(),
            })
        } else {
            Err(errors)
        }
    }
}
