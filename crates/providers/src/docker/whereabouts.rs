//! Where Tether runs, which decides which addresses it can reach: in a container, the networks
//! that container is attached to; on the host (or on the host's network), this engine's local
//! bridge networks and the host's own loopback. An overlay network is reachable only from a
//! container attached to it.
//!
//! The container is found from this process's own view, never from another container's: the
//! bind mounts the engine makes for a container's own `/etc/hostname`, `/etc/hosts` and
//! `/etc/resolv.conf` (their source is `/var/lib/docker/containers/<id>/...`), else the
//! process's own cgroup (`/docker/<id>`, `docker-<id>.scope`); the container found must carry
//! this host name too. A Swarm secret mounted for some other container shows in the host's mount
//! table under `/var/lib/docker/containers/<id>/mounts/secrets`, but never at `/etc/hostname`.
//! `--docker-self NAME|none` overrides the finding.

use serde::Deserialize;

use super::api::{ApiError, Client};
use super::inspect::Inspection;

/// `--docker-self`: find Tether's container, name it, or say there is none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SelfSpec {
    #[default]
    Detect,
    /// The container (name or id) Tether runs in.
    Named(String),
    /// Tether runs on the host.
    Host,
}

impl SelfSpec {
    pub fn parse(s: &str) -> SelfSpec {
        match s.trim() {
            "" => SelfSpec::Detect,
            "none" => SelfSpec::Host,
            name => SelfSpec::Named(name.to_string()),
        }
    }
}

/// Where Tether runs.
#[derive(Debug, Default)]
pub struct Whereabouts {
    /// Tether's container, when it runs in one.
    pub container: Option<Inspection>,
    /// The networks of that container (empty on the host; `host` for the host's network).
    pub networks: Vec<String>,
    /// On the host: the networks the host reaches (this engine's local bridge networks).
    pub host_networks: Option<Vec<String>>,
}

/// `GET /networks` entry.
#[derive(Debug, Deserialize)]
struct NetworkEntry {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Driver", default)]
    driver: String,
    #[serde(rename = "Scope", default)]
    scope: String,
}

/// Find where Tether runs, as `spec` says.
pub async fn find(client: &Client, spec: &SelfSpec) -> Result<Whereabouts, ApiError> {
    let container = match spec {
        SelfSpec::Host => None,
        SelfSpec::Named(name) => {
            let not_self = || ApiError::NotSelf { name: name.clone() };
            match client
                .get::<Inspection>(&format!("/containers/{name}/json"))
                .await
            {
                Ok(i) if i.state.running => Some(i),
                Ok(_) => return Err(not_self()),
                Err(e) if e.is_not_found() => return Err(not_self()),
                Err(e) => return Err(e),
            }
        }
        SelfSpec::Detect => detect(client).await,
    };
    let networks: Vec<String> = container
        .as_ref()
        .map(|c| {
            let mut n = c.network_names();
            if c.host_config.network_mode == "host" {
                n = vec!["host".into()];
            }
            n
        })
        .unwrap_or_default();
    let host_networks = if networks.is_empty() || networks == ["host"] {
        Some(local_bridges(client).await?)
    } else {
        None
    };
    Ok(Whereabouts {
        container,
        networks,
        host_networks,
    })
}

/// This engine's local bridge networks: those the host reaches.
pub async fn local_bridges(client: &Client) -> Result<Vec<String>, ApiError> {
    let all: Vec<NetworkEntry> = client.get("/networks").await?;
    let mut names: Vec<String> = all
        .into_iter()
        .filter(|n| n.driver == "bridge" && n.scope == "local")
        .map(|n| n.name)
        .collect();
    names.sort();
    Ok(names)
}

/// The container this process runs in, found from its own mounts or cgroup and confirmed by
/// its host name; `None` on a host.
async fn detect(client: &Client) -> Option<Inspection> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let id = container_id(&mountinfo, &cgroup)?;
    let i = client
        .get::<Inspection>(&format!("/containers/{id}/json"))
        .await
        .ok()?;
    let me = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let me = me.trim();
    // On the host's network a container has the host's name; otherwise its own.
    if !i.config.hostname.is_empty()
        && i.config.hostname != me
        && i.host_config.network_mode != "host"
    {
        tracing::warn!(container = %i.name, hostname = %me, "docker: found container {id:.12} in this process's mounts, but its host name is not this one's: taken as running on the host (set --docker-self)");
        return None;
    }
    Some(i)
}

/// The files the engine bind-mounts into each container from its own directory.
const OWN_FILES: [&str; 3] = ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"];

/// The id of the container whose own files this process sees at `/etc/hostname` (and the other
/// two), else the one its cgroup names.
pub fn container_id(mountinfo: &str, cgroup: &str) -> Option<String> {
    mountinfo
        .lines()
        .find_map(|l| {
            // id parent major:minor root mount-point options ...
            let mut f = l.split_whitespace();
            let root = f.nth(3)?;
            let point = f.next()?;
            if !OWN_FILES.contains(&point) {
                return None;
            }
            id_after(root, "/containers/")
        })
        .or_else(|| {
            cgroup.lines().find_map(|l| {
                let path = l.splitn(3, ':').nth(2)?;
                id_after(path, "/docker/").or_else(|| id_after(path, "docker-"))
            })
        })
}

/// The 64-hex-digit id right after `marker` in `s`.
fn id_after(s: &str, marker: &str) -> Option<String> {
    let i = s.find(marker)?;
    let id: String = s[i + marker.len()..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    (id.len() == 64).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "3f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8";
    const OTHER: &str = "aa11bb22cc33dd44ee55ff6677889900aa11bb22cc33dd44ee55ff6677889900";

    #[test]
    fn a_container_is_found_from_its_own_hostname_mount() {
        let mountinfo = format!(
            "1 0 0:1 / / rw - overlay overlay rw\n\
             2 1 8:1 /var/lib/docker/containers/{ME}/resolv.conf /etc/resolv.conf rw - ext4 /dev/vda rw\n\
             3 1 8:1 /var/lib/docker/containers/{ME}/hostname /etc/hostname rw - ext4 /dev/vda rw\n"
        );
        assert_eq!(container_id(&mountinfo, "0::/\n").as_deref(), Some(ME));
    }

    #[test]
    fn another_containers_secret_mount_on_the_host_is_not_this_process() {
        // What a host sees while a Swarm task with a secret runs.
        let mountinfo = format!(
            "1 0 8:1 / / rw - ext4 /dev/vda rw\n\
             7 1 0:50 / /var/lib/docker/containers/{OTHER}/mounts/secrets rw - tmpfs tmpfs rw\n\
             8 1 0:51 / /run/docker/netns/abc rw - nsfs nsfs rw\n"
        );
        assert_eq!(
            container_id(&mountinfo, "0::/user.slice/session-1.scope\n"),
            None
        );
    }

    #[test]
    fn the_cgroup_names_the_container_when_no_mount_does() {
        let v1 = format!("12:memory:/docker/{ME}\n");
        assert_eq!(container_id("", &v1).as_deref(), Some(ME));
        let systemd = format!("0::/system.slice/docker-{ME}.scope\n");
        assert_eq!(container_id("", &systemd).as_deref(), Some(ME));
    }

    #[test]
    fn docker_self_is_parsed() {
        assert_eq!(SelfSpec::parse("none"), SelfSpec::Host);
        assert_eq!(SelfSpec::parse(""), SelfSpec::Detect);
        assert_eq!(
            SelfSpec::parse("proxy-1"),
            SelfSpec::Named("proxy-1".into())
        );
    }
}
