//! Tether replicas as real processes of the built binary, all following one etcd.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tether_testkit::{Admin, Backend, TempDir};

pub const TOKEN: &str = "replica-test-token";
const KEY: &str = "shared-affinity-key-shared-affinity-key";

/// One `tether run` process.
pub struct Replica {
    pub name: String,
    pub web: SocketAddr,
    pub admin: SocketAddr,
    /// The TLS entrypoint `websecure`, when started with [`Replica::start_tls`] or
    /// [`Replica::start_tcp`].
    pub websecure: Option<SocketAddr>,
    /// The TCP entrypoint `db`, when started with [`Replica::start_tcp`].
    pub db: Option<SocketAddr>,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    _dir: TempDir,
}

impl Replica {
    /// Start a replica on `store` (`etcd://...`), with Docker Flow Proxy's endpoints on.
    pub fn start(name: &str, store: &str) -> Replica {
        Replica::spawn(name, store, Layout::Plain, Some(KEY))
    }

    /// Start a replica on `store` with no key given (it takes the store's), or with a key file
    /// of its own holding `key`.
    pub fn start_with_key(name: &str, store: &str, key: Option<&str>) -> Replica {
        Replica::spawn(name, store, Layout::Plain, key)
    }

    /// Start a replica on `store` with a plain entrypoint `web` and a TLS one, `websecure`,
    /// holding no certificate of its own: those come from the store.
    pub fn start_tls(name: &str, store: &str) -> Replica {
        Replica::spawn(name, store, Layout::Tls, Some(KEY))
    }

    /// Start a replica on `store` with `web`, `websecure` (TLS, no certificate of its own) and
    /// a TCP entrypoint `db`.
    pub fn start_tcp(name: &str, store: &str) -> Replica {
        Replica::spawn(name, store, Layout::Tcp, Some(KEY))
    }

    /// [`Replica::start`] with more arguments to `tether run`.
    pub fn start_args(name: &str, store: &str, args: &[&str]) -> Replica {
        Replica::spawn_with(name, store, Layout::Plain, Some(KEY), args)
    }

    /// Start a replica on `store` with the configuration file `config`, which declares the
    /// entrypoints `web` and `websecure` (TLS).
    pub fn start_file(name: &str, store: &str, config: &str) -> Replica {
        Replica::spawn_with(
            name,
            store,
            Layout::File(config.to_string()),
            Some(KEY),
            &[],
        )
    }

    fn spawn(name: &str, store: &str, layout: Layout, key_text: Option<&str>) -> Replica {
        Replica::spawn_with(name, store, layout, key_text, &[])
    }

    fn spawn_with(
        name: &str,
        store: &str,
        layout: Layout,
        key_text: Option<&str>,
        args: &[&str],
    ) -> Replica {
        let dir = TempDir::new("tether-replica");
        let key = dir.path().join("affinity.key");
        std::fs::write(&key, key_text.unwrap_or_default()).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tether"));
        let tls = layout != Layout::Plain;
        if let Layout::File(text) = &layout {
            let config = dir.path().join("tether.toml");
            std::fs::write(&config, text).unwrap();
            cmd.arg("run").arg("--config").arg(&config);
        } else if tls {
            let db = if layout == Layout::Tcp {
                "db = { address = \"127.0.0.1:0\", protocol = \"tcp\" }\n"
            } else {
                ""
            };
            let config = dir.path().join("tether.toml");
            std::fs::write(
                &config,
                format!("[entrypoints]\nweb = \"127.0.0.1:0\"\nwebsecure = {{ address = \"127.0.0.1:0\", tls = true }}\n{db}[affinity]\nkey = \"{KEY}\"\n"),
            )
            .unwrap();
            cmd.arg("run").arg("--config").arg(&config);
        } else {
            cmd.args(["run", "--listen", "127.0.0.1:0"]);
            if key_text.is_some() {
                cmd.arg("--key-file").arg(&key);
            }
        }
        let mut child = cmd
            .args(["--admin", "127.0.0.1:0"])
            .args(["--store", store, "--dfp-compat", "--drain", "1s"])
            .args(args)
            .arg("--state-dir")
            .arg(dir.path())
            .env("TETHER_ADMIN_TOKEN", TOKEN)
            .env("TETHER_LOG", "info,tether_providers=debug")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tether starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let end = Instant::now() + Duration::from_secs(20);
        let (web, admin, websecure, db) = loop {
            let found = {
                let lines = log.lock().unwrap();
                let addr = |marker: &str| {
                    lines.iter().find(|l| l.contains(marker)).and_then(|l| {
                        l.split("addr=")
                            .nth(1)?
                            .split_whitespace()
                            .next()?
                            .parse()
                            .ok()
                    })
                };
                (
                    addr("listening entrypoint=web "),
                    addr("admin API listening"),
                    addr("listening entrypoint=websecure "),
                    addr("listening entrypoint=db "),
                )
            };
            if let (Some(w), Some(a), s, d) = found {
                if (s.is_some() || !tls) && (d.is_some() || layout != Layout::Tcp) {
                    break (w, a, s, d);
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{name} exited with {status}:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
            assert!(
                Instant::now() < end,
                "{name} did not start:\n{}",
                log.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        Replica {
            name: name.to_string(),
            web,
            admin,
            websecure,
            db,
            child,
            log,
            _dir: dir,
        }
    }

    pub fn api(&self) -> Admin {
        Admin::new(self.admin, Some(TOKEN))
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Which entrypoints a replica has.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Layout {
    /// The configuration file given, with `web` and `websecure`.
    File(String),
    /// `web` only.
    Plain,
    /// `web` and `websecure`.
    Tls,
    /// `web`, `websecure` and the TCP entrypoint `db`.
    Tcp,
}

/// Declare service `app` with `backend` as its one server, through `api`.
pub async fn put_app(api: &mut Admin, backend: &Backend) {
    let r = api
        .put(
            "/api/services/app",
            serde_json::json!({"servers": [{"name": backend.name, "url": backend.url()}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

/// Median and maximum of a set of durations.
pub fn median_max(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], *v.last().expect("not empty"))
}
