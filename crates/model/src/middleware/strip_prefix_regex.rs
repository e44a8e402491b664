//! `strip_prefix_regex`: the start of the path that the first of `regex` matches is removed, as
//! Traefik's `stripprefixregex` (`/api/v[0-9]+` strips `/api/v2` from `/api/v2/users`), and
//! `X-Forwarded-Prefix` tells the server what was removed.

use serde::Deserialize;

use super::Cx;
use crate::validate::ValidationError;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StripPrefixRegex {
    pub regex: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    regex: Vec<String>,
}

impl Raw {
    pub(super) fn convert(&self, cx: &Cx<'_>) -> Result<StripPrefixRegex, Vec<ValidationError>> {
        let base = cx.base;
        if self.regex.is_empty() {
            return Err(vec![ValidationError::new(
                format!("{base}.regex"),
                "is empty",
            )]);
        }
        let errors: Vec<ValidationError> = self
            .regex
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                super::regex(r)
                    .err()
                    .map(|e| ValidationError::new(format!("{base}.regex[{i}]"), e))
            })
            .collect();
        if errors.is_empty() {
            Ok(StripPrefixRegex {
                regex: self.regex.clone(),
            })
        } else {
            Err(errors)
        }
    }
}
