//! The compiled TCP routers of a table: one [`TcpRouter`] per entrypoint, each router placed
//! as [`tether_model::validate::tcp`] says (which also refuses what cannot be served).

use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

use tether_model::validate::tcp::{placed, Entrypoints};

use crate::route::table::CompileInput;
use crate::tcp::router::{TcpRoute, TcpRouter};

/// The entrypoints of `input`, by kind.
pub fn entrypoints<'a>(input: &'a CompileInput<'_>, tls: &'a [String]) -> Entrypoints<'a> {
    Entrypoints {
        names: input.entrypoints,
        tls,
        tcp: input.tcp_entrypoints,
    }
}

/// The names of `input`'s TLS entrypoints.
pub fn tls_names(input: &CompileInput<'_>) -> Vec<String> {
    input.tls_ports.iter().map(|(n, _)| n.clone()).collect()
}

/// One [`TcpRouter`] per entrypoint; `services` gives each service's index in the table.
pub fn compile(input: &CompileInput<'_>, services: &HashMap<&str, usize>) -> Vec<TcpRouter> {
    let tls = tls_names(input);
    let eps = entrypoints(input, &tls);
    let mut per_ep: Vec<Vec<Arc<TcpRoute>>> = vec![Vec::new(); input.entrypoints.len()];
    for r in input.tcp_routes {
        let route = Arc::new(TcpRoute {
            name: r.name.clone(),
            rule: r.rule.clone(),
            rule_text: r.rule_text.clone(),
            priority: r.priority,
            service: services[r.service.as_str()],
            passthrough: r.passthrough,
        });
        for i in placed(r, &eps) {
            per_ep[i].push(route.clone());
        }
    }
    per_ep.into_iter().map(TcpRouter::new).collect()
}
