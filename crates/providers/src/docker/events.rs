//! The engine's events, reduced to what they mean for routing.

use std::collections::HashMap;

use serde::Deserialize;

/// One event of `GET /events`.
#[derive(Debug, Deserialize)]
pub struct Event {
    #[serde(rename = "Type", default)]
    pub kind: String,
    #[serde(rename = "Action", default)]
    pub action: String,
    #[serde(rename = "Actor", default)]
    pub actor: Actor,
    /// When the engine emitted it, in nanoseconds since the Unix epoch.
    #[serde(rename = "timeNano", default)]
    pub time_nano: i64,
}

#[derive(Debug, Default, Deserialize)]
pub struct Actor {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(rename = "Attributes", default)]
    pub attributes: HashMap<String, String>,
}

/// What an event asks the provider to do about a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// (Re)started: forget any earlier stop, then read it again.
    Started(String),
    /// Something about it changed (health, networks, name): read it again.
    Inspect(String),
    /// It is being stopped: take no new sessions, keep pinned ones until it is gone.
    Stopping(String),
    /// It is paused: it cannot answer, send nothing.
    Paused(String),
    /// It exited but still exists: no traffic; its routes stay, with no server, until it is
    /// removed or starts again.
    Stopped(String),
    /// It was removed.
    Gone(String),
    /// A network was created or removed: on the host, which networks it reaches may change.
    Networks,
    Ignore,
}

/// Signals after which a process is expected to exit (`docker stop` sends SIGTERM; others such
/// as SIGHUP often mean "reload" and leave the container serving).
const STOP_SIGNALS: &[&str] = &[
    "15", "9", "2", "3", "SIGTERM", "SIGKILL", "SIGINT", "SIGQUIT", "TERM", "KILL", "INT", "QUIT",
];

impl Event {
    pub fn change(&self) -> Change {
        let id = self.actor.id.clone();
        match self.kind.as_str() {
            "container" => {
                let verb = self.action.split(':').next().unwrap_or_default().trim();
                match verb {
                    "start" | "restart" => Change::Started(id),
                    "unpause" | "health_status" | "rename" | "update" => Change::Inspect(id),
                    "kill" => {
                        let sig = self.actor.attributes.get("signal").map(String::as_str);
                        if sig.is_some_and(|s| STOP_SIGNALS.contains(&s)) {
                            Change::Stopping(id)
                        } else {
                            Change::Ignore
                        }
                    }
                    "stop" => Change::Stopping(id),
                    "pause" => Change::Paused(id),
                    "die" => Change::Stopped(id),
                    "destroy" => Change::Gone(id),
                    _ => Change::Ignore,
                }
            }
            "network" => match self.action.as_str() {
                "connect" | "disconnect" => match self.actor.attributes.get("container") {
                    Some(c) => Change::Inspect(c.clone()),
                    None => Change::Ignore,
                },
                "create" | "destroy" => Change::Networks,
                _ => Change::Ignore,
            },
            _ => Change::Ignore,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(json: &str) -> Change {
        serde_json::from_str::<Event>(json).unwrap().change()
    }

    #[test]
    fn lifecycle_events_are_classified() {
        assert_eq!(
            ev(r#"{"Type":"container","Action":"start","Actor":{"ID":"a"}}"#),
            Change::Started("a".into())
        );
        assert_eq!(
            ev(
                r#"{"Type":"container","Action":"kill","Actor":{"ID":"a","Attributes":{"signal":"15"}}}"#
            ),
            Change::Stopping("a".into())
        );
        assert_eq!(
            ev(
                r#"{"Type":"container","Action":"kill","Actor":{"ID":"a","Attributes":{"signal":"1"}}}"#
            ),
            Change::Ignore
        );
        assert_eq!(
            ev(r#"{"Type":"container","Action":"health_status: unhealthy","Actor":{"ID":"a"}}"#),
            Change::Inspect("a".into())
        );
        assert_eq!(
            ev(r#"{"Type":"container","Action":"die","Actor":{"ID":"a"}}"#),
            Change::Stopped("a".into())
        );
        assert_eq!(
            ev(r#"{"Type":"container","Action":"destroy","Actor":{"ID":"a"}}"#),
            Change::Gone("a".into())
        );
        assert_eq!(
            ev(r#"{"Type":"network","Action":"create","Actor":{"ID":"n"}}"#),
            Change::Networks
        );
        assert_eq!(
            ev(
                r#"{"Type":"network","Action":"connect","Actor":{"ID":"n","Attributes":{"container":"c"}}}"#
            ),
            Change::Inspect("c".into())
        );
        assert_eq!(
            ev(r#"{"Type":"container","Action":"exec_start: sh","Actor":{"ID":"a"}}"#),
            Change::Ignore
        );
    }
}
