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
        let mut opts = app::Options::file(
            config.clone(),
            dir.path().to_path_buf(),
            Duration::from_secs(2),
        );
        // CI's second pass runs every test with four serving workers.
        opts.workers = std::env::var("TETHER_WORKERS")
            .ok()
            .and_then(|w| w.parse().ok());
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

    /// Wait until the status holds a refusal that `matches` (the table does not change).
    pub async fn refused(&self, matches: impl Fn(&str) -> bool) {
        tether_testkit::wait_for("the refusal", Duration::from_secs(5), || async {
            self.instance
                .control
                .status()
                .errors
                .values()
                .flatten()
                .any(|e| matches(e))
        })
        .await;
    }

    pub fn write(&self, toml: &str) {
        let tmp = self.config.with_extension("tmp");
        std::fs::write(&tmp, toml).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }
}

/// Tether started on `toml` (written in `dir`) with the admin API on a free loopback port and no
/// token, and a client of that API.
pub async fn with_admin(toml: &str, dir: &TempDir) -> (Instance, tether_testkit::Admin) {
    let path = dir.path().join("tether.toml");
    std::fs::write(&path, toml).unwrap();
    let mut opts = app::Options::file(path, dir.path().to_path_buf(), Duration::from_secs(1));
    opts.admin = app::AdminOptions {
        address: Some("127.0.0.1:0".parse().unwrap()),
        token: None,
        dfp: None,
    };
    let i = app::start(opts).await.expect("start");
    let admin = tether_testkit::Admin::new(i.admin.expect("admin"), None);
    (i, admin)
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

/// A `tether run` process of the built binary, its log (stderr) gathered as it comes: the
/// addresses it listens on are read from it.
pub struct Running {
    pub child: tokio::process::Child,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Running {
    /// Start `tether` with `args` and `envs` (and `RUST_LOG=info`), its output piped to the log.
    pub fn spawn(args: &[&std::ffi::OsStr], envs: &[(&str, &std::ffi::OsStr)]) -> Running {
        Running::spawn_without(args, envs, &[])
    }

    /// [`Running::spawn`], without the variables `remove` of the test's own environment (a test
    /// whose file sets `workers` must not have CI's `TETHER_WORKERS` override it).
    pub fn spawn_without(
        args: &[&std::ffi::OsStr],
        envs: &[(&str, &std::ffi::OsStr)],
        remove: &[&str],
    ) -> Running {
        use tokio::io::AsyncBufReadExt;
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tether"));
        for r in remove {
            command.env_remove(r);
        }
        let mut child = command
            .args(args)
            .envs(envs.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("tether starts");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = log.clone();
        let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("piped")).lines();
        // Read to the end (a successor started by this process writes here too), so that it
        // never blocks on a full pipe.
        tokio::spawn(async move {
            while let Ok(Some(l)) = lines.next_line().await {
                sink.lock().unwrap().push(l);
            }
        });
        Running { child, log }
    }

    /// `tether run` with `config` and its state in `dir`, without the variables `remove` of the
    /// test's own environment.
    pub fn run(dir: &TempDir, config: &std::path::Path, remove: &[&str]) -> Running {
        Running::spawn_without(
            &[
                "run".as_ref(),
                "--state-dir".as_ref(),
                dir.path().as_os_str(),
                "--config".as_ref(),
                config.as_os_str(),
            ],
            &[],
            remove,
        )
    }

    /// The address on the first log line holding `marker` (`listening entrypoint=web`,
    /// `admin API listening`), once it is written.
    pub async fn addr(&mut self, marker: &str) -> SocketAddr {
        let what = format!("{marker:?} in the log");
        tether_testkit::wait_for_value(&what, Duration::from_secs(20), || {
            let found = self.log.lock().unwrap().iter().find_map(|l| {
                l.contains(marker)
                    .then(|| {
                        l.split("addr=")
                            .nth(1)?
                            .split_whitespace()
                            .next()?
                            .parse()
                            .ok()
                    })
                    .flatten()
            });
            if found.is_none() {
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!("tether exited with {status}:\n{}", self.log());
                }
            }
            std::future::ready(found.ok_or_else(|| self.log()))
        })
        .await
    }

    /// Has a line holding `text` been written?
    pub fn said(&self, text: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(text))
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

/// `tether.toml` in `dir`: entrypoint `web` on a free port routing everything to `backend`,
/// after the top-level keys `top` (`workers = 2\n`, ...). Its path.
pub fn write_config(dir: &TempDir, backend: &Backend, top: &str) -> PathBuf {
    let config = dir.path().join("tether.toml");
    std::fs::write(
        &config,
        format!(
            "{top}[entrypoints]\nweb = \"127.0.0.1:0\"\n[affinity]\nkey = \"{}\"\n\
             [routes.app]\nrule = \"PathPrefix(`/`)\"\nservice = \"app\"\n\
             [services.app]\nservers = [{{ name = \"app\", url = \"{}\" }}]\n",
            "k".repeat(40),
            backend.url()
        ),
    )
    .unwrap();
    config
}
