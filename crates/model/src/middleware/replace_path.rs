//! `replace_path`: the path becomes `path` (the query is kept), and `X-Replaced-Path` carries
//! the original, as Traefik's `replacepath`.

use serde::Deserialize;

use super::{path_field, Cx};
use crate::validate::ValidationError;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReplacePath {
    pub path: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    path: String,
}

impl Raw {
    pub(super) fn convert(&self, cx: &Cx<'_>) -> Result<ReplacePath, Vec<ValidationError>> {
        let base = cx.base;
        path_field(&format!("{base}.path"), &self.path).map_err(|e| vec![e])?;
        Ok(ReplacePath {
            path: self.path.clone(),
        })
    }
}
