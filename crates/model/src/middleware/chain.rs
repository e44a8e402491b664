//! `chain`: several middlewares under one name, run in order where the chain is named, as
//! Traefik's `chain`. A chain that names itself, directly or through another, is refused.

use serde::Deserialize;

use super::Cx;
use crate::validate::ValidationError;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Chain {
    /// Qualified references.
    pub middlewares: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    middlewares: Vec<String>,
}

impl Raw {
    pub(super) fn convert(&self, cx: &Cx<'_>) -> Result<Chain, Vec<ValidationError>> {
        let base = cx.base;
        let provider = cx.provider;
        if self.middlewares.is_empty() {
            return Err(vec![ValidationError::new(
                format!("{base}.middlewares"),
                "is empty",
            )]);
        }
        Ok(Chain {
            middlewares: self
                .middlewares
                .iter()
                .map(|m| super::qualify(m.trim(), provider))
                .collect(),
        })
    }
}
