//! What Tether reads from `GET /containers/{id}/json`, turned into the model's [`Container`].

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use serde::Deserialize;
use tether_model::labels::Container;

/// `GET /containers/json` entry: only the id is used, the rest comes from the inspection.
#[derive(Debug, Deserialize)]
pub struct Listed {
    #[serde(rename = "Id")]
    pub id: String,
}

/// The parts of an inspection Tether uses.
#[derive(Debug, Deserialize)]
pub struct Inspection {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Name", default)]
    pub name: String,
    #[serde(rename = "State")]
    pub state: State,
    #[serde(rename = "Config")]
    pub config: Config,
    #[serde(rename = "HostConfig", default)]
    pub host_config: HostConfig,
    #[serde(rename = "NetworkSettings", default)]
    pub network_settings: NetworkSettings,
}

#[derive(Debug, Deserialize)]
pub struct State {
    #[serde(rename = "Running", default)]
    pub running: bool,
    #[serde(rename = "Paused", default)]
    pub paused: bool,
    #[serde(rename = "Restarting", default)]
    pub restarting: bool,
    #[serde(rename = "Health")]
    pub health: Option<Health>,
}

#[derive(Debug, Deserialize)]
pub struct Health {
    #[serde(rename = "Status", default)]
    pub status: String,
}

#[derive(Debug, Deserialize)]
pub struct Config {
    #[serde(rename = "Hostname", default)]
    pub hostname: String,
    #[serde(rename = "Domainname", default)]
    pub domainname: String,
    #[serde(rename = "Labels", default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    #[serde(rename = "ExposedPorts", default)]
    pub exposed_ports: Option<HashMap<String, serde_json::Value>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct HostConfig {
    #[serde(rename = "NetworkMode", default)]
    pub network_mode: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct NetworkSettings {
    #[serde(rename = "Networks", default)]
    pub networks: Option<BTreeMap<String, Endpoint>>,
}

#[derive(Debug, Deserialize)]
pub struct Endpoint {
    #[serde(rename = "IPAddress", default)]
    pub ip_address: String,
    #[serde(rename = "GlobalIPv6Address", default)]
    pub ipv6_address: String,
}

/// The TCP ports among `ExposedPorts` keys (`8080/tcp`, `53/udp`, `8080`), sorted, once each.
pub fn tcp_ports<'a>(keys: impl Iterator<Item = &'a String>) -> Vec<u16> {
    let mut ports: Vec<u16> = keys
        .filter_map(|k| match k.split_once('/') {
            Some((port, "tcp")) | Some((port, "")) => port.parse().ok(),
            None => k.parse().ok(),
            Some(_) => None,
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// Health as Tether acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    /// No HEALTHCHECK: running means ready.
    None,
    Starting,
    Healthy,
    Unhealthy,
}

impl Inspection {
    pub fn health(&self) -> HealthState {
        match self.state.health.as_ref().map(|h| h.status.as_str()) {
            None | Some("none") | Some("") => HealthState::None,
            Some("starting") => HealthState::Starting,
            Some("healthy") => HealthState::Healthy,
            Some(_) => HealthState::Unhealthy,
        }
    }

    /// Running and not restarting (a paused container is still "running").
    pub fn is_up(&self) -> bool {
        self.state.running && !self.state.restarting
    }

    /// The model's view of the container.
    pub fn container(&self) -> Container {
        let labels = self.config.labels.clone().unwrap_or_default();
        let name = self.name.trim_start_matches('/').to_string();
        let group = labels
            .get("com.docker.swarm.service.name")
            .or_else(|| labels.get("com.docker.compose.service"))
            .cloned()
            .unwrap_or_else(|| name.clone());
        let env = self
            .config
            .env
            .iter()
            .flatten()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let exposed_ports = tcp_ports(self.config.exposed_ports.iter().flatten().map(|(k, _)| k));
        let networks = self
            .network_settings
            .networks
            .iter()
            .flatten()
            .filter_map(|(n, e)| {
                let ip = [&e.ip_address, &e.ipv6_address]
                    .into_iter()
                    .find_map(|a| a.parse::<IpAddr>().ok())?;
                Some((n.clone(), ip))
            })
            .collect();
        Container {
            name,
            group,
            labels,
            env,
            networks,
            exposed_ports,
            host_network: self.host_config.network_mode == "host",
            hostname: self.config.hostname.clone(),
            domainname: self.config.domainname.clone(),
            kind: Default::default(),
        }
    }

    /// The networks of this container (for Tether's own container).
    pub fn network_names(&self) -> Vec<String> {
        self.network_settings
            .networks
            .iter()
            .flatten()
            .map(|(n, _)| n.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inspection_becomes_a_container() {
        let json = r#"{
            "Id": "abc", "Name": "/shop-web-1",
            "State": {"Running": true, "Paused": false, "Health": {"Status": "healthy"}},
            "Config": {"Labels": {"com.docker.compose.service": "web", "tether.enable": "true"},
                       "Env": ["PATH=/bin", "X=a=b"], "ExposedPorts": {"8080/tcp": {}, "53/udp": {}}},
            "HostConfig": {"NetworkMode": "shop_default"},
            "NetworkSettings": {"Networks": {"shop_default": {"IPAddress": "172.19.0.3"},
                                             "none": {"IPAddress": ""}}}
        }"#;
        let i: Inspection = serde_json::from_str(json).unwrap();
        assert_eq!(i.health(), HealthState::Healthy);
        let c = i.container();
        assert_eq!(c.name, "shop-web-1");
        assert_eq!(c.group, "web");
        assert_eq!(c.env["X"], "a=b");
        assert_eq!(c.exposed_ports, vec![8080]);
        assert_eq!(c.networks.len(), 1);
        assert_eq!(c.networks["shop_default"].to_string(), "172.19.0.3");
    }
}
