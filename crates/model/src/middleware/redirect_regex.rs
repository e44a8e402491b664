//! `redirect_regex`: when `regex` matches the request's URL (`http://host/path?query`), the
//! client is redirected to `replacement` with `$1`, `${name}` expanded, as Traefik's
//! `redirectregex`: 302 (or 307 for a method other than GET and HEAD), or with `permanent` 301
//! (308).

use serde::Deserialize;

use super::Cx;
use crate::validate::ValidationError;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedirectRegex {
    pub regex: String,
    pub replacement: String,
    pub permanent: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    regex: String,
    replacement: String,
    #[serde(default)]
    permanent: bool,
}

impl Raw {
    pub(super) fn convert(&self, cx: &Cx<'_>) -> Result<RedirectRegex, Vec<ValidationError>> {
        let base = cx.base;
        super::regex_field(format!("{base}.regex"), &self.regex)?;
        if self.replacement.is_empty()
            || self
                .replacement
                .bytes()
                .any(|b| b.is_ascii_control() || b == b' ')
        {
            return Err(vec![ValidationError::new(
                format!("{base}.replacement"),
                "must be a URL, without spaces or control characters",
            )]);
        }
        Ok(RedirectRegex {
            regex: self.regex.clone(),
            replacement: self.replacement.clone(),
            permanent: self.permanent,
        })
    }
}
