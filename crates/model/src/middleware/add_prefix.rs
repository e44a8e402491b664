//! `add_prefix`: `prefix` is put before the path (`/cart` → `/shop/cart`).

use serde::Deserialize;

use super::{path_field, Cx};
use crate::validate::ValidationError;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AddPrefix {
    pub prefix: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    prefix: String,
}

impl Raw {
    pub(super) fn convert(&self, cx: &Cx<'_>) -> Result<AddPrefix, Vec<ValidationError>> {
        let base = cx.base;
        path_field(&format!("{base}.prefix"), &self.prefix).map_err(|e| vec![e])?;
        Ok(AddPrefix {
            prefix: self.prefix.trim_end_matches('/').to_string(),
        })
    }
}
