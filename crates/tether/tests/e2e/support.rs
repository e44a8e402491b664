//! Starting Tether from a TOML text in a temporary directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tether::app::{self, Instance};
use tether_testkit::{wait_until, Backend, Client, TempDir};

/// A shared affinity key, so tests do not write a generated one.
pub const KEY: &str = "[affinity]\nkey = \"test-key-test-key-test-key-test-key\"\n";
/// The usual entrypoint.
pub const WEB: &str = "[entrypoints]\nweb = \"127.0.0.1:0\"\n";

pub struct Proxy {
    pub instance: Instance,
    pub config: PathBuf,
    _dir: TempDir,
}

impl Proxy {
    /// Start Tether on `toml` (which must declare its entrypoints).
    pub async fn start(toml: &str) -> Proxy {
        let dir = TempDir::new("tether-e2e");
        let config = dir.path().join("tether.toml");
        std::fs::write(&config, toml).unwrap();
        let opts = app::Options::file(
            config.clone(),
            dir.path().to_path_buf(),
            Duration::from_secs(2),
        );
        let instance = app::start(opts)
            .await
            .unwrap_or_else(|e| panic!("start failed: {e:#}\n{toml}"));
        Proxy {
            instance,
            config,
            _dir: dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.instance.addr("web")
    }

    pub fn client(&self) -> Client {
        Client::new(self.addr())
    }

    pub fn version(&self) -> String {
        self.instance.control.status().version
    }

    /// Replace the file the way editors do (write aside, rename over) and wait until applied.
    pub async fn reload(&self, toml: &str) {
        let before = self.version();
        self.write(toml);
        wait_until(Duration::from_secs(5), || async {
            self.version() != before
        })
        .await;
    }

    pub fn write(&self, toml: &str) {
        let tmp = self.config.with_extension("tmp");
        std::fs::write(&tmp, toml).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }
}

/// `servers = [...]` for these backends, named after them.
pub fn servers(backends: &[&Backend]) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ name = \"{}\", url = \"{}\" }}", b.name, b.url()))
        .collect();
    format!("servers = [{}]", list.join(", "))
}

/// A config with one route `PathPrefix(/)` to service `web` with `extra` lines in the service.
pub fn one_service(backends: &[&Backend], extra: &str) -> String {
    format!(
        "{WEB}{KEY}\n[routes.web]\nrule = \"PathPrefix(`/`)\"\nservice = \"web\"\n\n[services.web]\n{}\n{extra}\n",
        servers(backends)
    )
}
