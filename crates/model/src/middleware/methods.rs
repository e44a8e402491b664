//! `methods`: requests whose method is not in `allow`, or is in `deny`, are answered 405 with an
//! `Allow` field, as Docker Flow Proxy's `allowedMethods` and `deniedMethods` do. An answer, not
//! a routing rule: the request is not passed to another route.

use serde::Deserialize;

use super::Cx;
use crate::validate::ValidationError;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Methods {
    /// Upper case. Empty: every method but those denied.
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
}

impl Raw {
    pub(super) fn convert(&self, cx: &Cx<'_>) -> Result<Methods, Vec<ValidationError>> {
        let base = cx.base;
        let mut errors = Vec::new();
        let mut list = |field: &str, v: &[String]| -> Vec<String> {
            v.iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    let m = m.trim().to_ascii_uppercase();
                    if !m.is_empty()
                        && m.bytes()
                            .all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'_')
                    {
                        Some(m)
                    } else {
                        errors.push(ValidationError::new(
                            format!("{base}.{field}[{i}]"),
                            format!("{m:?} is not a method"),
                        ));
                        None
                    }
                })
                .collect()
        };
        let allow = list("allow", &self.allow);
        let deny = list("deny", &self.deny);
        if allow.is_empty() && deny.is_empty() && errors.is_empty() {
            errors.push(ValidationError::new(base, "give `allow` or `deny`"));
        }
        if errors.is_empty() {
            Ok(Methods { allow, deny })
        } else {
            Err(errors)
        }
    }
}
