//! What Docker Flow Swarm Listener (DFSL) sends besides the proxy's own options. DFSL turns a
//! service's `com.df.*` labels into `reconfigure` calls: every label without its prefix (those
//! meant for its other consumers too, such as Docker Flow Monitor's), `serviceName`,
//! `replicas` for a replicated service, `distribute=true` unless the service says otherwise, and
//! `nodeInfo` where enabled. Node notifications carry the node's `id`, `hostname`, `address`,
//! `versionIndex`, `state`, `role` and `availability`.
//!
//! Each of these is accepted and ignored on purpose, for the reason [`ignored`] gives; any other
//! parameter Tether does not read stays refused by name.

/// Docker Flow Monitor's parameters (its alerts may be indexed: `alertName.1`).
const MONITOR: &[&str] = &[
    "alertName",
    "alertIf",
    "alertFor",
    "alertLabels",
    "alertAnnotations",
    "alertPersistent",
    "scrapePort",
    "scrapeNetwork",
    "scrapeType",
    "scrapeInterval",
    "scrapeTimeout",
    "metricsPath",
];

/// The parameters of DFSL's node notifications.
pub const NODE: &[&str] = &[
    "id",
    "hostname",
    "address",
    "versionIndex",
    "state",
    "role",
    "availability",
];

/// Why parameter (or `com.df.` label, without the prefix) `p` is accepted and ignored, when it
/// is one of DFSL's or its other consumers'.
pub fn ignored(p: &str) -> Option<&'static str> {
    let base = p.split_once('.').map_or(p, |(b, n)| {
        if n.chars().all(|c| c.is_ascii_digit()) {
            b
        } else {
            p
        }
    });
    match base {
        "notify" => Some("DFSL's opt-in label: the call itself is the notification"),
        "replicas" => Some("Tether reaches the service by its name (or each task with sessionType=sticky-server), however many replicas it has"),
        "nodeInfo" => Some("where the tasks run: Tether reaches them over the network it shares with the service"),
        "shortName" => Some("DFSL already stripped the stack prefix from serviceName; stripping it again would break names holding '_'"),
        b if MONITOR.contains(&b) => Some("Docker Flow Monitor's: DFSL sends every com.df.* label to each of its consumers"),
        _ => None,
    }
}

/// Is a call with these parameters a node notification (node parameters, no `serviceName`)?
pub fn is_node_notification<'a>(mut params: impl Iterator<Item = &'a str>) -> bool {
    let mut node = false;
    for p in params.by_ref() {
        if p == "serviceName" {
            return false;
        }
        node |= NODE.contains(&p);
    }
    node
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dfsls_own_and_its_other_consumers_parameters_are_ignored_with_a_reason() {
        for p in [
            "notify",
            "replicas",
            "nodeInfo",
            "shortName",
            "alertName",
            "alertIf.2",
            "scrapePort",
        ] {
            assert!(ignored(p).is_some(), "{p}");
        }
        for p in ["aclName", "alertName.x", "servicePath", "distribute"] {
            assert!(ignored(p).is_none(), "{p}");
        }
        assert!(is_node_notification(
            ["id", "hostname", "address"].into_iter()
        ));
        assert!(!is_node_notification(["serviceName", "id"].into_iter()));
        assert!(!is_node_notification(["notify"].into_iter()));
    }
}
