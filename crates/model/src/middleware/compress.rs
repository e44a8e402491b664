//! `compress`: responses compressed on the way out, in the encoding the client prefers among
//! `encodings` (its `Accept-Encoding` q-values; ties go to the order of `encodings`). Streamed:
//! a response is never held whole. Skipped for responses already encoded, partial (`206`,
//! `Content-Range`), bodiless (`HEAD`, 1xx, 204, 304), of an excluded type (or, with
//! `include_types`, of a type not listed), shorter than `min_size`, or that set a cookie (unless
//! `compress_with_cookies`: compressing secrets beside what an attacker chooses is what BREACH
//! exploits). Traefik's `compress`, NGINX's `gzip`, Caddy's `encode`.

use serde::Deserialize;

use super::Cx;
use crate::validate::ValidationError;

/// A content coding Tether can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Zstd,
    Br,
    Gzip,
}

impl Encoding {
    pub const ALL: [Encoding; 3] = [Encoding::Zstd, Encoding::Br, Encoding::Gzip];

    /// Its token in `Accept-Encoding` and `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Zstd => "zstd",
            Encoding::Br => "br",
            Encoding::Gzip => "gzip",
        }
    }

    pub fn parse(s: &str) -> Option<Encoding> {
        Encoding::ALL
            .into_iter()
            .find(|e| e.token().eq_ignore_ascii_case(s.trim()))
    }

    /// The level used when none is given: fast enough to compress on the fly.
    pub fn default_level(self) -> u32 {
        match self {
            Encoding::Zstd => 3,
            Encoding::Br => 4,
            Encoding::Gzip => 6,
        }
    }

    /// The levels the codec has.
    pub fn levels(self) -> std::ops::RangeInclusive<u32> {
        match self {
            Encoding::Zstd => 1..=19,
            Encoding::Br => 0..=11,
            Encoding::Gzip => 1..=9,
        }
    }
}

/// Types not compressed by default: already compressed (images but SVG, audio, video, fonts,
/// archives), and event streams (each event must go out as it comes).
pub const EXCLUDE_TYPES: &[&str] = &[
    "image/*",
    "audio/*",
    "video/*",
    "font/*",
    "application/zip",
    "application/gzip",
    "application/x-gzip",
    "application/zstd",
    "application/x-bzip2",
    "application/x-xz",
    "application/x-7z-compressed",
    "application/vnd.rar",
    "application/x-rar-compressed",
    "application/font-woff",
    "application/octet-stream",
    "text/event-stream",
];

/// Default `min_size`: below it, compressing saves less than it costs.
pub const MIN_SIZE: u64 = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Compress {
    /// In Tether's order of preference.
    pub encodings: Vec<Encoding>,
    pub min_size: u64,
    /// The level of each encoding in `encodings`, in the same order.
    pub levels: Vec<u32>,
    /// Media types (lower case, without parameters); `type/*` names a family.
    pub exclude_types: Vec<String>,
    /// When not empty, only these types are compressed (and `exclude_types` is not used).
    pub include_types: Vec<String>,
    pub compress_with_cookies: bool,
}

impl Compress {
    /// The level of `e`.
    pub fn level(&self, e: Encoding) -> u32 {
        self.encodings
            .iter()
            .position(|x| *x == e)
            .map_or(e.default_level(), |i| self.levels[i])
    }

    /// May a response of media type `t` (lower case, no parameters) be compressed?
    pub fn compresses_type(&self, t: &str) -> bool {
        let matches = |list: &[String]| {
            list.iter().any(|p| match p.strip_suffix("/*") {
                // An image family excludes every image but SVG, which is text.
                Some(family) => {
                    t.split_once('/').is_some_and(|(f, _)| f == family) && t != "image/svg+xml"
                }
                None => p == t,
            })
        };
        if self.include_types.is_empty() {
            !matches(&self.exclude_types)
        } else {
            matches(&self.include_types)
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    encodings: Option<Vec<String>>,
    min_size: Option<u64>,
    #[serde(default)]
    level: std::collections::BTreeMap<String, u32>,
    exclude_types: Option<Vec<String>>,
    #[serde(default)]
    include_types: Vec<String>,
    #[serde(default)]
    compress_with_cookies: bool,
}

/// A media type as the lists hold it, or why it is not one.
fn media_type(t: &str) -> Result<String, String> {
    let t = t.trim().to_ascii_lowercase();
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match t.split_once('/') {
        Some((a, "*")) if token(a) => Ok(t),
        Some((a, b)) if token(a) && token(b) => Ok(t),
        _ => Err(format!(
            "{t:?} is not a media type (type/subtype, or type/*)"
        )),
    }
}

impl Raw {
    pub(super) fn convert(&self, cx: &Cx<'_>) -> Result<Compress, Vec<ValidationError>> {
        let base = cx.base;
        let mut errors = Vec::new();
        let known = || {
            Encoding::ALL
                .iter()
                .map(|e| e.token())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut encodings = Vec::new();
        match &self.encodings {
            None => encodings.extend(Encoding::ALL),
            Some(list) => {
                for (i, e) in list.iter().enumerate() {
                    match Encoding::parse(e) {
                        Some(e) if !encodings.contains(&e) => encodings.push(e),
                        Some(_) => errors.push(ValidationError::new(
                            format!("{base}.encodings[{i}]"),
                            format!("{e:?} is listed twice"),
                        )),
                        None => errors.push(ValidationError::new(
                            format!("{base}.encodings[{i}]"),
                            format!("unknown encoding {e:?}: Tether writes {}", known()),
                        )),
                    }
                }
                if list.is_empty() {
                    errors.push(ValidationError::new(
                        format!("{base}.encodings"),
                        format!("is empty: give one or more of {}", known()),
                    ));
                }
            }
        }
        for (name, level) in &self.level {
            match Encoding::parse(name) {
                Some(e) if !e.levels().contains(level) => errors.push(ValidationError::new(
                    format!("{base}.level.{name}"),
                    format!(
                        "{level} is out of {}'s range {}..={}",
                        e.token(),
                        e.levels().start(),
                        e.levels().end()
                    ),
                )),
                Some(_) => {}
                None => errors.push(ValidationError::new(
                    format!("{base}.level.{name}"),
                    format!("unknown encoding {name:?}: Tether writes {}", known()),
                )),
            }
        }
        let levels = encodings
            .iter()
            .map(|e| {
                self.level
                    .iter()
                    .find(|(n, _)| Encoding::parse(n) == Some(*e))
                    .map_or(e.default_level(), |(_, l)| *l)
            })
            .collect();
        let mut types = |field: &str, list: &[String]| -> Vec<String> {
            list.iter()
                .enumerate()
                .filter_map(|(i, t)| {
                    media_type(t)
                        .map_err(|e| {
                            errors.push(ValidationError::new(format!("{base}.{field}[{i}]"), e))
                        })
                        .ok()
                })
                .collect()
        };
        let exclude_types = match &self.exclude_types {
            Some(list) => types("exclude_types", list),
            None => EXCLUDE_TYPES.iter().map(|t| t.to_string()).collect(),
        };
        let include_types = types("include_types", &self.include_types);
        if self.exclude_types.is_some() && !include_types.is_empty() {
            errors.push(ValidationError::new(
                format!("{base}.include_types"),
                "give include_types or exclude_types, not both",
            ));
        }
        if errors.is_empty() {
            Ok(Compress {
                encodings,
                min_size: self.min_size.unwrap_or(MIN_SIZE),
                levels,
                exclude_types,
                include_types,
                compress_with_cookies: self.compress_with_cookies,
            })
        } else {
            Err(errors)
        }
    }
}
