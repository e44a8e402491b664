//! Reading the file's tables one at a time, so that one bad key does not hide the rest: the text
//! is parsed once into a spanned tree, then each section, and each route and service on its own,
//! is read into its raw type. Every unknown key, wrong type or missing field is reported with its
//! line (and a suggestion for a likely misspelling); what could be read goes on to the checks of
//! `convert`, whose errors are added to these.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::raw::{RawConfig, S};
use super::{line_of, ConfigError};

/// The top-level keys and tables a file may hold.
const SECTIONS: &[&str] = &[
    "workers",
    "pin_workers",
    "entrypoints",
    "timeouts",
    "affinity",
    "forwarded",
    "admin",
    "swarm",
    "stats",
    "tls",
    "http",
    "limits",
    "routes",
    "services",
    "middlewares",
    "tcp",
    "acme",
];

/// What could be read, every error found, and the services and middlewares left out for their
/// errors.
pub(super) struct Read {
    pub raw: RawConfig,
    pub errors: Vec<ConfigError>,
    pub left_out_services: BTreeSet<String>,
    pub left_out_middlewares: BTreeSet<String>,
}

pub(super) fn read(src: &str) -> Result<Read, ConfigError> {
    let root = DeTable::parse(src).map_err(|e| error(src, &e, "syntax"))?;
    let mut out = Read {
        raw: RawConfig::default(),
        errors: Vec::new(),
        left_out_services: BTreeSet::new(),
        left_out_middlewares: BTreeSet::new(),
    };
    for (key, value) in root.into_inner() {
        let name = key.get_ref().to_string();
        let at = |m: String| ConfigError {
            line: Some(line_of(src, key.span().start)),
            // An empty key is named as it is written.
            field: if name.is_empty() {
                "\"\"".into()
            } else {
                name.clone()
            },
            message: m,
        };
        match name.as_str() {
            "entrypoints" => {
                out.raw.entrypoints = each(
                    src,
                    &mut out.errors,
                    value,
                    "entrypoints",
                    &mut BTreeSet::new(),
                )
            }
            "timeouts" => {
                out.raw.timeouts = one(src, &mut out.errors, value, "timeouts").unwrap_or_default()
            }
            "affinity" => {
                out.raw.affinity = one(src, &mut out.errors, value, "affinity").unwrap_or_default()
            }
            "forwarded" => {
                out.raw.forwarded =
                    one(src, &mut out.errors, value, "forwarded").unwrap_or_default()
            }
            "admin" => out.raw.admin = one(src, &mut out.errors, value, "admin"),
            "swarm" => out.raw.swarm = one(src, &mut out.errors, value, "swarm"),
            "stats" => out.raw.stats = one(src, &mut out.errors, value, "stats"),
            "tls" => out.raw.tls = one(src, &mut out.errors, value, "tls").unwrap_or_default(),
            "http" => out.raw.http = one(src, &mut out.errors, value, "http").unwrap_or_default(),
            "tcp" => out.raw.tcp = one(src, &mut out.errors, value, "tcp").unwrap_or_default(),
            "workers" => out.raw.workers = one(src, &mut out.errors, value, "workers"),
            "pin_workers" => out.raw.pin_workers = one(src, &mut out.errors, value, "pin_workers"),
            "limits" => {
                out.raw.limits = one(src, &mut out.errors, value, "limits").unwrap_or_default()
            }
            "routes" => {
                out.raw.routes = each(src, &mut out.errors, value, "routes", &mut BTreeSet::new())
            }
            "services" => {
                out.raw.services = each(
                    src,
                    &mut out.errors,
                    value,
                    "services",
                    &mut out.left_out_services,
                )
            }
            "acme" => {
                out.raw.acme = each(src, &mut out.errors, value, "acme", &mut BTreeSet::new())
            }
            "middlewares" => {
                out.raw.middlewares = each(
                    src,
                    &mut out.errors,
                    value,
                    "middlewares",
                    &mut out.left_out_middlewares,
                )
            }
            _ => out
                .errors
                .push(at(unknown(&name, SECTIONS, "unknown table"))),
        }
    }
    Ok(out)
}

/// One section read whole into its type.
fn one<T: DeserializeOwned>(
    src: &str,
    errors: &mut Vec<ConfigError>,
    value: Spanned<DeValue<'_>>,
    field: &str,
) -> Option<T> {
    match T::deserialize(ValueDeserializer::from(value)) {
        Ok(t) => Some(t),
        Err(e) => {
            errors.push(error(src, &e, field));
            None
        }
    }
}

/// A table of named entries (routes, services), each read on its own: a bad one is left out.
fn each<T: DeserializeOwned>(
    src: &str,
    errors: &mut Vec<ConfigError>,
    value: Spanned<DeValue<'_>>,
    section: &str,
    left_out: &mut BTreeSet<String>,
) -> BTreeMap<String, S<T>> {
    let span = value.span();
    let mut out = BTreeMap::new();
    let DeValue::Table(table) = value.into_inner() else {
        errors.push(ConfigError {
            line: Some(line_of(src, span.start)),
            field: section.into(),
            message: format!("expected a table of named {section}"),
        });
        return out;
    };
    for (name, entry) in table {
        let name = name.into_inner().to_string();
        let field = format!("{section}.{name}");
        match S::<T>::deserialize(ValueDeserializer::from(entry)) {
            Ok(t) => {
                out.insert(name, t);
            }
            Err(e) => {
                errors.push(error(src, &e, &field));
                left_out.insert(name);
            }
        }
    }
    out
}

/// A deserialisation error as a located config error, with a suggestion for an unknown key.
fn error(src: &str, e: &toml::de::Error, field: &str) -> ConfigError {
    ConfigError {
        line: e.span().map(|s| line_of(src, s.start)),
        field: field.into(),
        message: suggest(e.message().trim()),
    }
}

/// "unknown field `balence`, expected one of `servers`, `balance`, ..." with "; did you mean
/// `balance`?" when one of the expected names is close.
pub(crate) fn suggest(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((given, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    let names: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    match closest(given, &names) {
        Some(n) => format!("{message}; did you mean `{n}`?"),
        None => message.to_string(),
    }
}

fn unknown(given: &str, known: &[&str], what: &str) -> String {
    let list = known
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match closest(given, known) {
        Some(n) => format!("{what} `{given}`; did you mean `{n}`? (expected one of {list})"),
        None => format!("{what} `{given}`, expected one of {list}"),
    }
}

/// The known name closest to `given` by edit distance, if close enough to be a misspelling.
fn closest<'a>(given: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (distance(given, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4) && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspellings_get_a_suggestion() {
        assert_eq!(
            suggest("unknown field `balence`, expected one of `servers`, `balance`, `hash_on`"),
            "unknown field `balence`, expected one of `servers`, `balance`, `hash_on`; did you mean `balance`?"
        );
        assert_eq!(
            suggest("unknown field `zzz`, expected `address`"),
            "unknown field `zzz`, expected `address`"
        );
        assert_eq!(closest("servcies", SECTIONS), Some("services"));
        assert!(SECTIONS.contains(&"tls"));
        assert_eq!(closest("qqq", SECTIONS), None);
    }
}
