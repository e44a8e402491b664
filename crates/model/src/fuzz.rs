//! Entry points for the fuzz targets (`fuzz/`) and their corpus replay: each reads arbitrary
//! bytes as one input of a parser the outside world feeds, and checks what must hold of any input.

use std::collections::BTreeMap;

use crate::file_config;
use crate::labels::{self, Container, Context};
use crate::rule::Rule;

/// A routing rule: parses, or fails with a message.
pub fn rule(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for parsed in [Rule::parse(text), Rule::parse_tcp(text)] {
        if let Err(e) = parsed {
            assert!(!e.to_string().is_empty());
        }
    }
}

/// A whole `tether.toml`: every error names a field; a file that parses has valid names.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match file_config::parse(text) {
        Ok(cfg) => {
            for r in &cfg.routes {
                assert!(crate::validate::is_name(&r.name), "{:?}", r.name);
            }
        }
        Err(errors) => {
            assert!(!errors.0.is_empty());
            assert!(errors.0.iter().all(|e| !e.field.is_empty()));
        }
    }
}

/// A container's labels and environment, one `KEY=VALUE` a line (lines starting `env:` are
/// variables), read in whichever dialect they are in.
pub fn labels(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut labels = BTreeMap::new();
    let mut env = BTreeMap::new();
    for line in text.lines() {
        let (target, line) = match line.strip_prefix("env:") {
            Some(rest) => (&mut env, rest),
            None => (&mut labels, line),
        };
        if let Some((k, v)) = line.split_once('=') {
            target.insert(k.to_string(), v.to_string());
        }
    }
    let c = Container {
        name: "fuzz-1".into(),
        group: "fuzz".into(),
        labels,
        env,
        networks: BTreeMap::from([("net".to_string(), [10, 0, 0, 2].into())]),
        exposed_ports: vec![80],
        host_network: false,
        hostname: String::new(),
        domainname: String::new(),
        kind: Default::default(),
    };
    let entrypoints = vec!["web".to_string(), "websecure".to_string()];
    let cx = Context {
        entrypoints: &entrypoints,
        tls_entrypoints: &entrypoints[1..],
        tcp_entrypoints: &[],
        entrypoint_ports: &[],
        own_networks: &[],
        host_networks: None,
        default_network: None,
        secrets_dir: None,
        dockercloud: None,
        interlock_ext_name: None,
        acme_resolvers: None,
    };
    if let Some(Err(errors)) = labels::declare(&c, &cx) {
        assert!(!errors.is_empty());
    }
}
