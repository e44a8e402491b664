//! `tether demo`: the first seed's setup on one machine, no Docker needed. Four whoami backends,
//! `/service1` sticky in HAProxy's prefix mode on the app's `connect.sid` cookie with `nocache`,
//! `/service2` round robin. The configuration is written to a file that Tether watches, so editing
//! it shows hot reload too.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tether_whoami::Whoami;
use tokio::net::TcpListener;

use crate::app::{self, Instance};

/// Backend names, as the seed's `docker service ps` would show replicas.
const BACKENDS: [(&str, &str); 4] = [
    ("service1", "service1-a"),
    ("service1", "service1-b"),
    ("service2", "service2-a"),
    ("service2", "service2-b"),
];

/// The demo's configuration for backends at `ports` (same order as [`BACKENDS`]).
pub fn config(listen: SocketAddr, ports: &[u16]) -> String {
    let server = |i: usize| {
        format!(
            "  {{ name = \"{}\", url = \"http://127.0.0.1:{}\" }},",
            BACKENDS[i].1, ports[i]
        )
    };
    format!(
        r#"# Tether demo: the first seed's setup (dockercloud/haproxy, COOKIE=connect.sid prefix nocache).
# Edit this file while the demo runs: Tether applies each valid change without dropping a request.

[entrypoints]
web = "{listen}"

[routes.service1]
rule = "PathPrefix(`/service1`)"
service = "service1"

[routes.service2]
rule = "PathPrefix(`/service2`)"
service = "service2"

# Sticky: the app's own session cookie carries the server key as a prefix (connect.sid=<key>~<id>);
# the app sees exactly its own id. Responses that set the cookie are marked not cacheable.
[services.service1]
servers = [
{}
{}
]
[services.service1.affinity]
mode = "prefix"
cookie = "connect.sid"
nocache = true

# Stateless: plain round robin.
[services.service2]
servers = [
{}
{}
]
"#,
        server(0),
        server(1),
        server(2),
        server(3)
    )
}

/// Start the backends and the proxy; returns the instance and where its configuration lives.
pub async fn start(listen: SocketAddr, state_dir: &Path) -> anyhow::Result<(Instance, PathBuf)> {
    let mut ports = Vec::new();
    for (_, name) in BACKENDS {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        ports.push(l.local_addr()?.port());
        tokio::spawn(tether_whoami::serve(l, Whoami::new(name), Arc::default()));
    }
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    let path = state_dir.join("demo.toml");
    std::fs::write(&path, config(listen, &ports))
        .with_context(|| format!("writing {}", path.display()))?;
    let instance = app::start(app::Options::file(
        path.clone(),
        state_dir.to_path_buf(),
        Duration::from_secs(5),
    ))
    .await?;
    Ok((instance, path))
}

/// What the demo prints: where it runs and the commands that show the difference.
pub fn instructions(addr: SocketAddr, config: &Path) -> String {
    // One jar per service: both seed apps name their session cookie connect.sid on the same host,
    // so a shared jar would let one service's cookie overwrite the other's.
    let jar = |svc: &str| {
        std::env::temp_dir()
            .join(format!("tether-demo-{svc}.cookies"))
            .display()
            .to_string()
    };
    let (j1, j2) = (jar("service1"), jar("service2"));
    format!(
        r#"Tether demo is running on http://{addr}
  configuration: {} (edit it: Tether reloads without dropping a request)

service1 is sticky (prefix mode on the app's connect.sid, nocache): one replica counts 1, 2, 3, 4
  rm -f {j1}; for i in 1 2 3 4; do curl -s -b {j1} -c {j1} http://{addr}/service1 | head -1; done

what service1's app receives: its own connect.sid, without Tether's prefix (the jar holds <key>~<id>)
  curl -s -b {j1} http://{addr}/service1 | grep -i '^cookie'; tail -1 {j1}

service2 is round robin: the replicas alternate and each visit starts a new session (always 1)
  rm -f {j2}; for i in 1 2 3 4; do curl -s -b {j2} -c {j2} http://{addr}/service2 | head -1; done

Press Ctrl-C to stop.
"#,
        config.display()
    )
}
