//! `rate_limit`: a token bucket for each source of requests (the client's address by default,
//! or a request field's value). The bucket holds `burst` requests and refills at `average`
//! requests per `period`; a request that finds it empty is answered 429 with `Retry-After`.
//! Traefik's `ratelimit`, HAProxy's stick-table `http_req_rate`.
//!
//! The buckets are kept per replica and per route, in a table of `table_size` entries that
//! forgets the least recently seen source first, so memory is bounded however many addresses
//! arrive.

use serde::Deserialize;

use super::Cx;
use crate::validate::ValidationError;

/// What groups requests under one bucket or one count.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// The client's address as the admit phase computed it (`"client_ip"`). With `depth` N > 0,
    /// the Nth `X-Forwarded-For` entry from the right, read only when the peer is a trusted
    /// proxy (Traefik's `ipStrategy.depth`); otherwise the admitted address.
    ClientIp { depth: u32 },
    /// The first value of a request field (`"header:X-Api-Key"`, lower case here). A request
    /// without it is grouped by its client address.
    Header(String),
    /// Every request of the route alike (`"route"`; `in_flight` only).
    Route,
}

impl Source {
    /// Parse `by` (`client_ip`, `header:NAME`, and `route` when `route` is allowed).
    pub fn parse(by: &str, depth: u32, route: bool) -> Result<Source, String> {
        let expected = if route {
            "expected \"client_ip\", \"header:NAME\" or \"route\""
        } else {
            "expected \"client_ip\" or \"header:NAME\""
        };
        match by.split_once(':') {
            _ if by == "client_ip" => Ok(Source::ClientIp { depth }),
            _ if by == "route" && route => Ok(Source::Route),
            Some(("header", name)) => {
                if http_name(name) {
                    Ok(Source::Header(name.to_ascii_lowercase()))
                } else {
                    Err(format!("{name:?} is not a valid header name"))
                }
            }
            _ => Err(format!("{by:?}: {expected}")),
        }
    }

    /// The `by` and `depth` fields of a middleware at `base` (`by` defaults to `client_ip`;
    /// `route` allowed when `route` is), their errors pushed onto `errors`.
    pub(super) fn fields(
        by: Option<&str>,
        depth: Option<u32>,
        route: bool,
        base: &str,
        errors: &mut Vec<ValidationError>,
    ) -> Source {
        let depth = depth.unwrap_or(0);
        let by = Source::parse(by.unwrap_or("client_ip"), depth, route).unwrap_or_else(|e| {
            errors.push(ValidationError::new(format!("{base}.by"), e));
            Source::ClientIp { depth: 0 }
        });
        if depth > 0 && !matches!(by, Source::ClientIp { .. }) {
            errors.push(ValidationError::new(
                format!("{base}.depth"),
                "applies to by = \"client_ip\" only",
            ));
        }
        by
    }

    /// As written in the file.
    pub fn as_written(&self) -> String {
        match self {
            Source::ClientIp { .. } => "client_ip".into(),
            Source::Header(n) => format!("header:{n}"),
            Source::Route => "route".into(),
        }
    }
}

/// An HTTP field name: a token (RFC 9110 §5.1).
fn http_name(n: &str) -> bool {
    !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Entries of the bucket table by default (about 4 MiB when full).
pub const TABLE_SIZE: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// Requests per `period` (0: the bucket never refills, `burst` requests in all).
    pub average: u64,
    /// In milliseconds.
    pub period_ms: u64,
    /// The bucket's size: requests that may arrive at once.
    pub burst: u64,
    pub by: Source,
    pub table_size: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    average: u64,
    period: Option<String>,
    burst: Option<u64>,
    by: Option<String>,
    depth: Option<u32>,
    table_size: Option<usize>,
}

impl Raw {
    pub(super) fn convert(&self, cx: &Cx<'_>) -> Result<RateLimit, Vec<ValidationError>> {
        let base = cx.base;
        let mut errors = Vec::new();
        let period_ms = match self.period.as_deref().map(crate::duration::parse) {
            None => 1000,
            Some(Ok(d)) if d.as_millis() >= 1 && d.as_secs() <= 86_400 * 365 => {
                d.as_millis() as u64
            }
            Some(Ok(_)) => {
                errors.push(ValidationError::new(
                    format!("{base}.period"),
                    "must be between 1ms and 365d",
                ));
                1000
            }
            Some(Err(e)) => {
                errors.push(ValidationError::new(format!("{base}.period"), e));
                1000
            }
        };
        let burst = match self.burst {
            None if self.average == 0 => {
                errors.push(ValidationError::new(
                    format!("{base}.average"),
                    "is 0 and no burst is given: the bucket would never hold a request (give average > 0, or a burst for a fixed allowance)",
                ));
                1
            }
            None => 1,
            Some(0) => {
                errors.push(ValidationError::new(
                    format!("{base}.burst"),
                    "is 0: no request would ever pass",
                ));
                1
            }
            Some(b) => b,
        };
        let by = Source::fields(self.by.as_deref(), self.depth, false, base, &mut errors);
        let table_size = self.table_size.unwrap_or(TABLE_SIZE);
        if !(16..=16_777_216).contains(&table_size) {
            errors.push(ValidationError::new(
                format!("{base}.table_size"),
                "must be between 16 and 16777216 entries",
            ));
        }
        if errors.is_empty() {
            Ok(RateLimit {
                average: self.average,
                period_ms,
                burst,
                by,
                table_size,
            })
        } else {
            Err(errors)
        }
    }
}
