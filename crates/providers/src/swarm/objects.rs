//! What Tether reads from the Swarm manager's list calls: `GET /services`, `GET /tasks`,
//! `GET /nodes` and `GET /networks`, reduced to the fields routing needs. Every field is
//! optional in the engine's JSON, so every one has a default here.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;

/// One entry of `GET /services`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Service {
    #[serde(rename = "ID")]
    pub id: String,
    pub version: Version,
    pub spec: ServiceSpec,
    pub endpoint: Endpoint,
    pub update_status: Option<UpdateStatus>,
}

/// The manager's store index at an object's last change: the same on every manager.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Version {
    pub index: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ServiceSpec {
    pub name: String,
    /// `deploy.labels` in a stack file, `--label` / `--label-add` on the command line.
    pub labels: BTreeMap<String, String>,
    pub task_template: TaskSpec,
    pub mode: Mode,
}

/// A task's specification (the service's template, or the copy each task keeps).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct TaskSpec {
    pub container_spec: ContainerSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ContainerSpec {
    pub image: String,
    /// `--hostname` (a template such as `{{.Node.Hostname}}` is the engine's to expand).
    pub hostname: String,
    /// `labels` of a stack file's service: the containers' labels.
    pub labels: BTreeMap<String, String>,
    pub env: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Mode {
    pub replicated: Option<Replicated>,
    pub global: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Replicated {
    pub replicas: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Endpoint {
    pub ports: Vec<Port>,
    #[serde(rename = "VirtualIPs")]
    pub virtual_ips: Vec<VirtualIp>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Port {
    pub protocol: String,
    pub target_port: u16,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct VirtualIp {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    pub addr: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct UpdateStatus {
    pub state: String,
}

impl Service {
    pub fn is_global(&self) -> bool {
        self.spec.mode.global.is_some()
    }

    /// Replicas asked for (`None` for a global service).
    pub fn replicas(&self) -> Option<u64> {
        self.spec.mode.replicated.as_ref().map(|r| r.replicas)
    }

    /// An update or rollback is under way: tasks are being replaced.
    pub fn is_updating(&self) -> bool {
        self.update_status.as_ref().is_some_and(|u| {
            matches!(
                u.state.as_str(),
                "updating" | "rollback_started" | "paused" | "rollback_paused"
            )
        })
    }

    /// TCP target ports the service publishes, sorted.
    pub fn target_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .endpoint
            .ports
            .iter()
            .filter(|p| p.protocol.is_empty() || p.protocol == "tcp")
            .map(|p| p.target_port)
            .filter(|&p| p > 0)
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }
}

/// One entry of `GET /tasks`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Task {
    #[serde(rename = "ID")]
    pub id: String,
    pub version: Version,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// Position in a replicated service (0 for a global one).
    pub slot: u64,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    /// The template as it was when this task was made (an update leaves old tasks their own).
    pub spec: TaskSpec,
    pub status: TaskStatus,
    pub desired_state: String,
    pub networks_attachments: Vec<Attachment>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct TaskStatus {
    pub state: String,
    /// When the task reached its state (RFC 3339, the manager's clock).
    pub timestamp: String,
}

impl TaskStatus {
    pub fn at(&self) -> Option<std::time::SystemTime> {
        humantime::parse_rfc3339(&self.timestamp).ok()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Attachment {
    pub network: AttachedNetwork,
    /// CIDR notation, e.g. `10.0.1.5/24`.
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AttachedNetwork {
    #[serde(rename = "ID")]
    pub id: String,
    pub spec: NetworkSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct NetworkSpec {
    pub name: String,
    /// The routing mesh's network (`ingress`): never a way to a task.
    pub ingress: bool,
}

impl Task {
    /// The task's address on each network it is attached to, the routing mesh's left out.
    pub fn addresses(&self) -> BTreeMap<String, IpAddr> {
        self.networks_attachments
            .iter()
            .filter(|a| !a.network.spec.ingress && a.network.spec.name != "ingress")
            .filter_map(|a| {
                let ip = a.addresses.iter().find_map(|c| ip_of(c))?;
                Some((a.network.spec.name.clone(), ip))
            })
            .collect()
    }
}

/// The address of `a.b.c.d/nn` (or of a bare address).
pub fn ip_of(cidr: &str) -> Option<IpAddr> {
    cidr.split('/').next()?.parse().ok()
}

/// `GET /info`, the part that says whether this engine is a Swarm manager.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Info {
    pub swarm: SwarmInfo,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SwarmInfo {
    /// `active`, `inactive`, `pending`, `error`, `locked`.
    pub local_node_state: String,
    pub control_available: bool,
    #[serde(rename = "NodeID")]
    pub node_id: String,
}

/// `GET /images/{name}/json`, the exposed ports.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Image {
    pub config: ImageConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ImageConfig {
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
}

impl Image {
    /// The TCP ports the image exposes, sorted.
    pub fn tcp_ports(&self) -> Vec<u16> {
        crate::docker::inspect::tcp_ports(
            self.config.exposed_ports.iter().flatten().map(|(k, _)| k),
        )
    }
}

/// One entry of `GET /nodes`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: String,
    pub status: NodeStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct NodeStatus {
    pub state: String,
}

/// One entry of `GET /networks`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Network {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Name")]
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_status_time_is_read_as_the_engine_writes_it() {
        let s: TaskStatus = serde_json::from_str(
            r#"{"State":"running","Timestamp":"2026-12-02T13:45:12.123456789Z"}"#,
        )
        .unwrap();
        let t = s.at().expect("a time");
        let d = t.duration_since(std::time::UNIX_EPOCH).unwrap();
        assert_eq!(d.as_secs(), 1_796_219_112);
        assert_eq!(d.subsec_nanos(), 123_456_789);
        assert_eq!(TaskStatus::default().at(), None);
    }

    #[test]
    fn a_task_reads_its_addresses_without_the_routing_mesh() {
        let t: Task = serde_json::from_str(
            r#"{"ID":"t1","ServiceID":"s1","Slot":2,"NodeID":"n1",
                "Status":{"State":"running"},"DesiredState":"running",
                "NetworksAttachments":[
                  {"Network":{"ID":"i","Spec":{"Name":"ingress","Ingress":true}},"Addresses":["10.0.0.5/24"]},
                  {"Network":{"ID":"w","Spec":{"Name":"web"}},"Addresses":["10.0.1.7/24"]}]}"#,
        )
        .unwrap();
        let a = t.addresses();
        assert_eq!(a.len(), 1);
        assert_eq!(a["web"].to_string(), "10.0.1.7");
        assert_eq!(t.slot, 2);
    }

    #[test]
    fn a_service_reads_its_mode_labels_and_ports() {
        let s: Service = serde_json::from_str(
            r#"{"ID":"s1","Spec":{"Name":"shop_web","Labels":{"traefik.port":"8000"},
                "TaskTemplate":{"ContainerSpec":{"Image":"sha256:ab","Env":["SERVICE_PORTS=8080"]}},
                "Mode":{"Replicated":{"Replicas":3}}},
                "Endpoint":{"Ports":[{"Protocol":"tcp","TargetPort":8080,"PublishedPort":30000}]},
                "UpdateStatus":{"State":"updating"}}"#,
        )
        .unwrap();
        assert_eq!(s.replicas(), Some(3));
        assert!(!s.is_global());
        assert!(s.is_updating());
        assert_eq!(s.target_ports(), vec![8080]);
        assert_eq!(s.spec.labels["traefik.port"], "8000");
    }
}
