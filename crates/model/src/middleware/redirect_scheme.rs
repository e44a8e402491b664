//! `redirect_scheme`: a request whose scheme is not `scheme` is redirected to the same URL with
//! it (and `port`, when given; else none, the scheme's default), as Traefik's `redirectscheme`:
//! 302 (307 for a method other than GET and HEAD), or with `permanent` 301 (308).

use serde::Deserialize;

use super::Cx;
use crate::validate::ValidationError;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedirectScheme {
    /// `http` or `https`.
    pub scheme: String,
    pub port: Option<u16>,
    pub permanent: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    scheme: Option<String>,
    port: Option<i64>,
    #[serde(default)]
    permanent: bool,
}

impl Raw {
    pub(super) fn convert(&self, cx: &Cx<'_>) -> Result<RedirectScheme, Vec<ValidationError>> {
        let base = cx.base;
        let scheme = self
            .scheme
            .as_deref()
            .unwrap_or("https")
            .to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(vec![ValidationError::new(
                format!("{base}.scheme"),
                format!("{scheme:?}: expected \"https\" or \"http\""),
            )]);
        }
        let port = match self.port {
            None => None,
            Some(p @ 1..=65535) => Some(p as u16),
            Some(p) => {
                return Err(vec![ValidationError::new(
                    format!("{base}.port"),
                    format!("{p} is not a port number"),
                )])
            }
        };
        Ok(RedirectScheme {
            scheme,
            port,
            permanent: self.permanent,
        })
    }
}
