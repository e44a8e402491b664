//! The real Docker engine for tests: containers and networks labelled with one run id, removed when
//! the [`Engine`] handle drops; the `tether:dev` image built on first use.
//!
//! Without an engine the tests that need one print a loud SKIPPED line and pass, except under
//! `CI=true`, where a missing engine fails them.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::process::Command;

/// The image the Docker tests run (`docker/build-image.sh`).
pub const IMAGE: &str = "tether:dev";
/// `whoami` with a HEALTHCHECK (`tether probe`), built on [`IMAGE`].
pub const WHOAMI_IMAGE: &str = "tether-whoami:dev";
/// Debian's etcd in an image of its own, built by the same script (the shared store's recipe).
pub const ETCD_IMAGE: &str = "tether-etcd:dev";
/// Label carried by everything a test creates.
pub const TEST_LABEL: &str = "com.example.tether-test";

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A handle on the engine for one test.
#[derive(Debug)]
pub struct Engine {
    /// Unique to this test: names and the constraint label use it.
    pub run: String,
}

/// A started container.
#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    pub name: String,
}

impl Engine {
    /// The engine, with `tether:dev` built; `None` (after a loud message) when there is no engine.
    /// Under `CI=true` a missing engine is a failure.
    pub async fn get(test: &str) -> Option<Engine> {
        let ok = Command::new("docker")
            .args(["version", "--format", "{{.Server.Version}}"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success());
        if !ok {
            let msg =
                format!("no Docker engine reachable (docker version failed): {test} needs one");
            crate::missing(&msg);
            return None;
        }
        ensure_image().await;
        let run = format!(
            "t{}x{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        Some(Engine { run })
    }

    /// `docker <args>`; stdout trimmed, or stderr as the error.
    pub async fn docker(&self, args: &[&str]) -> Result<String, String> {
        docker(args).await
    }

    /// A fresh network, removed with the engine handle.
    pub async fn network(&self, hint: &str) -> String {
        let name = format!("{}-{hint}", self.run);
        let label = format!("{TEST_LABEL}={}", self.run);
        docker(&["network", "create", "--label", &label, &name])
            .await
            .expect("docker network create");
        name
    }

    /// `docker run -d` with this run's label; `args` go before the image, `cmd` after it.
    pub async fn run(&self, hint: &str, args: &[&str], cmd: &[&str]) -> Container {
        self.run_image(IMAGE, hint, args, cmd).await
    }

    /// [`Engine::run`] with another image.
    pub async fn run_image(
        &self,
        image: &str,
        hint: &str,
        args: &[&str],
        cmd: &[&str],
    ) -> Container {
        let name = format!("{}-{hint}", self.run);
        let label = format!("{TEST_LABEL}={}", self.run);
        let mut all = vec!["run", "-d", "--name", &name, "--label", &label];
        all.extend_from_slice(args);
        all.push(image);
        all.extend_from_slice(cmd);
        let id = docker(&all)
            .await
            .unwrap_or_else(|e| panic!("docker run {name}: {e}"));
        Container { id, name }
    }

    /// A whoami container answering as `hint`'s container name on port 8080.
    pub async fn whoami(&self, hint: &str, args: &[&str]) -> Container {
        let name = format!("{}-{hint}", self.run);
        self.run(hint, args, &["whoami", "--name", &name]).await
    }

    /// The container's address on a network.
    pub async fn ip(&self, c: &Container, network: &str) -> String {
        let f = format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}");
        docker(&["inspect", "-f", &f, &c.id])
            .await
            .expect("docker inspect")
    }

    /// The label that makes a Tether of this test see only this test's containers.
    pub fn constraint(&self) -> String {
        format!("{TEST_LABEL}={}", self.run)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let filter = format!("label={TEST_LABEL}={}", self.run);
        let ids = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&ids)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let nets = std::process::Command::new("docker")
            .args(["network", "ls", "-q", "--filter", &filter])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for n in nets.split_whitespace() {
            let _ = std::process::Command::new("docker")
                .args(["network", "rm", n])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `docker <args>`.
pub async fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .await
        .map_err(|e| format!("docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// `docker <args>`'s stdout and stderr together, whatever its exit (logs, for a test's eyes).
pub async fn output(args: &[&str]) -> String {
    Command::new("docker")
        .args(args)
        .output()
        .await
        .map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .unwrap_or_default()
}

/// The repository root (for scripts and examples).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// Build `tether:dev` unless it exists; concurrent test processes wait for one build.
async fn ensure_image() {
    let script = repo_root().join("docker/build-image.sh");
    let cmd = format!(
        "docker image inspect {IMAGE} {WHOAMI_IMAGE} {ETCD_IMAGE} >/dev/null 2>&1 || {}",
        script.display()
    );
    let status = Command::new("flock")
        .args(["/tmp/tether-dev-image.lock", "sh", "-c", &cmd])
        .status()
        .await
        .expect("flock");
    assert!(status.success(), "building {IMAGE} failed");
}
