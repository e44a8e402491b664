//! `replace_path_regex`: when `regex` matches the path, the path becomes `replacement` with
//! `$1`, `${name}` expanded (the query is kept), and `X-Replaced-Path` carries the original, as
//! Traefik's `replacepathregex`.

use serde::Deserialize;

use super::Cx;
use crate::validate::ValidationError;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReplacePathRegex {
    pub regex: String,
    pub replacement: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    regex: String,
    replacement: String,
}

impl Raw {
    pub(super) fn convert(&self, cx: &Cx<'_>) -> Result<ReplacePathRegex, Vec<ValidationError>> {
        let base = cx.base;
        super::regex_field(format!("{base}.regex"), &self.regex)?;
        if self.replacement.bytes().any(|b| b.is_ascii_control()) {
            return Err(vec![ValidationError::new(
                format!("{base}.replacement"),
                "holds a control character",
            )]);
        }
        Ok(ReplacePathRegex {
            regex: self.regex.clone(),
            replacement: self.replacement.clone(),
        })
    }
}
