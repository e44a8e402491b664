//! `replace_path_regex`: when `regex` matches the path, the path becomes `replacement` with
//! `$1`, `${name}` expanded (the query is kept), and `X-Replaced-Path` carries the original, as
//! Traefik's `replacepathregex`.

use serde::Deserialize;

use super::Origin;
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
    pub(super) fn convert(
        &self,
        base: &str,
        _: Origin,
        _: &str,
    ) -> Result<ReplacePathRegex, Vec<ValidationError>> {
        super::regex(&self.regex)
            .map_err(|e| vec![ValidationError::new(format!("{base}.regex"), e)])?;
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
