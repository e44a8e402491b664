//! What the control plane tells about its sources: each one's version and state, and the inputs
//! rejected lately, each with its source and, where the message names one, the field at fault.

use std::collections::{BTreeMap, VecDeque};
use std::time::SystemTime;

/// How many rejected inputs are kept.
pub const HISTORY: usize = 100;

/// One source as the control plane last heard from it.
#[derive(Debug, Clone, Default)]
pub struct SourceStatus {
    /// The source's own version of its last applied state (file digest, Docker event time, etcd
    /// revision, API change count).
    pub version: String,
    pub routes: usize,
    pub services: usize,
    /// When its last update was applied.
    pub updated_at: Option<SystemTime>,
    /// Set while the source cannot reach its input (etcd down, the engine gone); its last state
    /// keeps serving.
    pub problem: Option<String>,
    /// Its input left out or refused since its last good update.
    pub errors: Vec<String>,
}

/// One rejected input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub at: SystemTime,
    pub source: String,
    /// The field or label at fault, when the message names one.
    pub field: Option<String>,
    pub message: String,
}

/// The last [`HISTORY`] rejections, newest last, and how many each source has had in all.
#[derive(Debug, Default)]
pub(crate) struct History(VecDeque<Rejection>, BTreeMap<String, u64>);

impl History {
    pub(crate) fn record(&mut self, source: &str, messages: &[String]) {
        *self.1.entry(source.to_string()).or_default() += messages.len() as u64;
        let at = SystemTime::now();
        for m in messages {
            if self.0.len() == HISTORY {
                self.0.pop_front();
            }
            self.0.push_back(Rejection {
                at,
                source: source.to_string(),
                field: field_of(m),
                message: m.clone(),
            });
        }
    }

    pub(crate) fn list(&self) -> Vec<Rejection> {
        self.0.iter().cloned().collect()
    }

    /// Rejected inputs per source since start.
    pub(crate) fn totals(&self) -> BTreeMap<String, u64> {
        self.1.clone()
    }
}

/// The field a message names: `routes.web.rule: column 5: ...`, `tether.toml:12: routes.web.rule:
/// ...`, `label tether.http.services.web.port="80a": ...`.
pub fn field_of(message: &str) -> Option<String> {
    if let Some(rest) = message.strip_prefix("label ") {
        let key = rest.split(['=', ':', ' ']).next()?;
        return (!key.is_empty()).then(|| key.to_string());
    }
    message
        .split(": ")
        .take(3)
        .find(|part| {
            part.contains('.')
                && !part.contains(':')
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-@[]\"".contains(&b))
        })
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_in_each_kind_of_message() {
        assert_eq!(
            field_of("routes.web.rule: column 5: unknown matcher").as_deref(),
            Some("routes.web.rule")
        );
        assert_eq!(
            field_of("tether.toml:12: services.a.servers[0].url: bad").as_deref(),
            Some("services.a.servers[0].url")
        );
        assert_eq!(
            field_of("label tether.http.services.web.port=\"80a\": not a port (container web-1)")
                .as_deref(),
            Some("tether.http.services.web.port")
        );
        assert_eq!(field_of("the engine is gone"), None);
    }

    #[test]
    fn the_history_keeps_the_newest() {
        let mut h = History::default();
        for i in 0..HISTORY + 5 {
            h.record("file", &[format!("error {i}")]);
        }
        let l = h.list();
        assert_eq!(l.len(), HISTORY);
        assert_eq!(l.last().unwrap().message, format!("error {}", HISTORY + 4));
    }
}
