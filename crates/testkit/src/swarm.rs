//! A real Swarm for tests: the engine made a one-node manager if it is in no swarm yet, an
//! attachable overlay network per test, services created by image id (so the engine tries no
//! pull) and labelled with the test's run id, and Tether itself run as a container on that
//! overlay (the test process cannot reach an overlay's addresses; a container on it can). All of
//! it is removed when the [`Swarm`] handle drops.
//!
//! Without an engine the tests skip loudly, as [`Engine::get`] does (and fail under `CI=true`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::docker::{docker, Engine, IMAGE, TEST_LABEL, WHOAMI_IMAGE};

/// One test's part of the swarm.
#[derive(Debug)]
pub struct Swarm {
    pub engine: Engine,
    /// The test's overlay network.
    pub network: String,
}

/// A started Tether container and its published ports.
#[derive(Debug, Clone)]
pub struct TetherContainer {
    pub name: String,
    pub web: SocketAddr,
    pub admin: SocketAddr,
    /// Where each of the `ports` [`Swarm::tether_with_ports`] was asked for is published.
    pub ports: Vec<SocketAddr>,
}

impl Swarm {
    /// The swarm (initialised if the engine is in none), with a fresh overlay network.
    pub async fn get(test: &str) -> Option<Swarm> {
        let engine = Engine::get(test).await?;
        ensure_swarm().await;
        let network = format!("{}-ov", engine.run);
        let label = format!("{TEST_LABEL}={}", engine.run);
        docker(&[
            "network",
            "create",
            "--driver",
            "overlay",
            "--attachable",
            "--label",
            &label,
            &network,
        ])
        .await
        .expect("docker network create --driver overlay");
        Some(Swarm { engine, network })
    }

    /// The id of an image (services are created by id: no pull is tried).
    pub async fn image_id(image: &str) -> String {
        docker(&["image", "inspect", "-f", "{{.Id}}", image])
            .await
            .unwrap_or_else(|e| panic!("image {image}: {e}"))
    }

    /// `docker service create` of whoami on this test's network (unless `args` name one),
    /// labelled for this test; `args` go before the image (`--label`, `--replicas`, `--env`,
    /// ...). Returns at once.
    pub async fn service(&self, name: &str, args: &[&str]) -> String {
        self.service_of(WHOAMI_IMAGE, name, args, &[]).await
    }

    /// [`Swarm::service`] of another image, with a command after it.
    pub async fn service_of(&self, image: &str, name: &str, args: &[&str], cmd: &[&str]) -> String {
        let full = format!("{}-{name}", self.engine.run);
        let label = self.engine.constraint();
        let image = Swarm::image_id(image).await;
        let mut all = vec![
            "service",
            "create",
            "--detach",
            "--quiet",
            "--no-resolve-image",
            "--name",
            &full,
            "--label",
            &label,
            "--container-label",
            &label,
            "--stop-grace-period",
            "5s",
        ];
        if !args.contains(&"--network") {
            all.extend_from_slice(&["--network", &self.network]);
        }
        // On the manager unless the test places it: a second node may be up (two-node tests),
        // and a test that does not ask for one should not depend on it.
        if !args.contains(&"--constraint") {
            all.extend_from_slice(&["--constraint", "node.role==manager"]);
        }
        all.extend_from_slice(args);
        all.push(&image);
        all.extend_from_slice(cmd);
        docker(&all)
            .await
            .unwrap_or_else(|e| panic!("docker service create {full}: {e}"));
        full
    }

    /// `docker run --rm` of `tether:dev` on this test's network with the engine's socket:
    /// `tether <args>`'s exit success, stdout and stderr.
    pub async fn tether_once(&self, args: &[&str]) -> (bool, String, String) {
        let mut all = vec![
            "run",
            "--rm",
            "--network",
            &self.network,
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock:ro",
            IMAGE,
        ];
        all.extend_from_slice(args);
        let out = tokio::process::Command::new("docker")
            .args(&all)
            .output()
            .await
            .expect("docker run");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Run Tether (`tether:dev`) as a container on this test's network, following the swarm
    /// (only this test's services), with `args` added to `tether run`. Published on loopback.
    pub async fn tether(
        &self,
        hint: &str,
        key_file: Option<&std::path::Path>,
        args: &[&str],
    ) -> TetherContainer {
        self.tether_with_ports(hint, key_file, args, &[]).await
    }

    /// [`Swarm::tether`], with these container ports published on loopback too (a TCP
    /// entrypoint's, say).
    pub async fn tether_with_ports(
        &self,
        hint: &str,
        key_file: Option<&std::path::Path>,
        args: &[&str],
        ports: &[u16],
    ) -> TetherContainer {
        let name = format!("{}-{hint}", self.engine.run);
        let label = self.engine.constraint();
        let mut all: Vec<String> = [
            "run",
            "-d",
            "--name",
            &name,
            "--label",
            &label,
            "--network",
            &self.network,
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock:ro",
            "-p",
            "127.0.0.1::80",
            "-p",
            "127.0.0.1::8081",
            "-e",
            "TETHER_ADMIN_TOKEN=test-token",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for p in ports {
            all.push("-p".into());
            all.push(format!("127.0.0.1::{p}"));
        }
        if let Some(k) = key_file {
            all.push("-v".into());
            all.push(format!("{}:/run/secrets/tether_key:ro", k.display()));
        }
        all.push(IMAGE.into());
        for a in [
            "run",
            "--swarm",
            "--listen",
            "0.0.0.0:80",
            "--admin",
            "0.0.0.0:8081",
            "--docker-constraint",
            &label,
        ] {
            all.push(a.into());
        }
        if key_file.is_some() {
            all.push("--key-file".into());
            all.push("/run/secrets/tether_key".into());
        }
        all.extend(args.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        docker(&refs)
            .await
            .unwrap_or_else(|e| panic!("docker run {name}: {e}"));
        let mut published_ports = Vec::new();
        for p in ports {
            published_ports.push(published(&name, &format!("{p}/tcp")).await);
        }
        TetherContainer {
            web: published(&name, "80/tcp").await,
            admin: published(&name, "8081/tcp").await,
            ports: published_ports,
            name,
        }
    }

    /// Every task of a service as `(slot, container id[..12], state, desired state)`.
    pub async fn tasks(&self, service: &str) -> Vec<(u64, String, String, String)> {
        let out = docker(&[
            "service",
            "ps",
            "--no-trunc",
            "--format",
            "{{.ID}}",
            service,
        ])
        .await
        .unwrap_or_default();
        let mut tasks = Vec::new();
        for id in out.split_whitespace() {
            let f = "{{.Slot}} {{.Status.ContainerStatus.ContainerID}} {{.Status.State}} {{.DesiredState}}";
            let Ok(line) = docker(&["inspect", "-f", f, id]).await else {
                continue;
            };
            let parts: Vec<&str> = line.split_whitespace().collect();
            if let [slot, cid, state, desired] = parts[..] {
                let cid = cid.get(..12).unwrap_or(cid).to_string();
                tasks.push((slot.parse().unwrap_or(0), cid, state.into(), desired.into()));
            }
        }
        tasks
    }

    /// Wait until `service` has `n` tasks running and none on its way.
    pub async fn converged(&self, service: &str, n: usize, deadline: Duration) {
        let end = Instant::now() + deadline;
        loop {
            let t = self.tasks(service).await;
            let running = t
                .iter()
                .filter(|t| t.2 == "running" && t.3 == "running")
                .count();
            let moving = t.iter().any(|t| (t.2 == "running") != (t.3 == "running"));
            if running == n && !moving {
                return;
            }
            assert!(
                Instant::now() < end,
                "{service}: not {n} tasks running within {deadline:?}: {t:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await; // poll interval; bounded by `deadline`
        }
    }

    /// The logs of a container (for a failing test's message).
    pub async fn logs(name: &str) -> String {
        crate::docker::output(&["logs", "--tail", "60", name]).await
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        let filter = format!("label={}", self.engine.constraint());
        let ids = std::process::Command::new("docker")
            .args(["service", "ls", "-q", "--filter", &filter])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = std::process::Command::new("docker")
                .args(["service", "rm"])
                .args(&ids)
                .output();
        }
        // The engine handle then removes the containers (tasks carry the label too) and the
        // network.
    }
}

/// The loopback address a container's port is published on.
async fn published(name: &str, port: &str) -> SocketAddr {
    let out = docker(&["port", name, port])
        .await
        .unwrap_or_else(|e| panic!("docker port {name} {port}: {e}"));
    out.lines()
        .find_map(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("docker port {name} {port}: {out}"))
}

/// Make the engine a one-node manager unless it is in a swarm already.
async fn ensure_swarm() {
    let state = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
        .await
        .unwrap_or_default();
    if state == "active" {
        return;
    }
    let status = tokio::process::Command::new("flock")
        .args([
            "/tmp/tether-swarm-init.lock",
            "sh",
            "-c",
            "[ \"$(docker info --format '{{.Swarm.LocalNodeState}}')\" = active ] || docker swarm init >/dev/null 2>&1 || docker swarm init --advertise-addr 127.0.0.1 >/dev/null",
        ])
        .status()
        .await
        .expect("flock");
    assert!(status.success(), "docker swarm init failed");
}

/// The second node of `two-node-swarm.sh` (a worker engine in a network namespace), brought up
/// if it is not.
#[derive(Debug)]
pub struct SecondNode {
    /// `unix:///tmp/node2/docker.sock`: the worker's own engine.
    pub socket: String,
}

impl SecondNode {
    /// Up, or `None` (after a loud message) without the script; under `CI=true` that fails.
    pub async fn up(test: &str) -> Option<SecondNode> {
        let script = std::env::var_os("TETHER_TWO_NODE_SWARM")
            .map(std::path::PathBuf::from)
            .into_iter()
            .chain([
                crate::docker::repo_root().join("../shared/two-node-swarm.sh"),
                "/work/shared/two-node-swarm.sh".into(),
            ])
            .find(|p| p.exists());
        let Some(script) = script else {
            let msg =
                format!("two-node-swarm.sh not found (set TETHER_TWO_NODE_SWARM): {test} needs it");
            crate::missing(&msg);
            return None;
        };
        // `-o`: the lock's descriptor is closed in the script, so node2's dockerd, which the
        // script leaves running, does not hold the lock for ever (the next `up` would wait on it).
        let out = tokio::process::Command::new("flock")
            .arg("-o")
            .arg("/tmp/tether-two-node.lock")
            .arg(&script)
            .arg("up")
            .output()
            .await
            .expect("two-node-swarm.sh");
        assert!(
            out.status.success(),
            "two-node-swarm.sh up: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = std::env::var("NODE2_DIR").unwrap_or_else(|_| "/tmp/node2".into());
        Some(SecondNode {
            socket: format!("unix://{dir}/docker.sock"),
        })
    }
}
