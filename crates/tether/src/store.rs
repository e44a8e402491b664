//! `--store`: where API changes are kept. `etcd://HOST:2379[,HOST:2379...]/PREFIX` shares them
//! with every replica (the cargo feature `etcd`); without it, a state file in the state directory.

use std::path::Path;

use anyhow::bail;
use tether_providers::api::{local::LocalStore, Store};

/// A parsed `--store` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    /// `host:port` of each etcd endpoint, tried in turn.
    pub endpoints: Vec<String>,
    /// Key prefix, without slashes at either end (default `tether`).
    pub prefix: String,
}

impl StoreSpec {
    pub fn parse(url: &str) -> anyhow::Result<StoreSpec> {
        let Some(rest) = url.strip_prefix("etcd://") else {
            bail!("--store {url:?}: expected etcd://HOST:2379[,HOST:2379...]/PREFIX");
        };
        let (hosts, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/');
        let mut endpoints = Vec::new();
        for h in hosts.split(',').map(str::trim) {
            let ok = match h.rsplit_once(':') {
                Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0),
                None => false,
            };
            if !ok {
                bail!("--store {url:?}: {h:?} is not HOST:PORT");
            }
            endpoints.push(h.to_string());
        }
        if prefix.contains("//") || prefix.contains(char::is_whitespace) {
            bail!("--store {url:?}: {prefix:?} is not a key prefix");
        }
        Ok(StoreSpec {
            endpoints,
            prefix: if prefix.is_empty() {
                "tether".into()
            } else {
                prefix.into()
            },
        })
    }
}

impl std::fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "etcd://{}/{}", self.endpoints.join(","), self.prefix)
    }
}

/// Open the store: etcd when `spec` is given, else the state file in `state_dir`.
pub async fn open(spec: Option<&StoreSpec>, state_dir: &Path) -> anyhow::Result<Store> {
    match spec {
        None => Ok(Store::Local(LocalStore::open(state_dir)?)),
        Some(spec) => etcd(spec).await,
    }
}

/// ACME's store: etcd's `/PREFIX/acme/` when `spec` is given (every replica orders once and
/// serves alike), else `state_dir/acme`.
pub async fn acme(
    spec: Option<&StoreSpec>,
    state_dir: &Path,
    challenges: std::sync::Arc<tether_proxy::acme::Challenges>,
) -> anyhow::Result<tether_acme::Store> {
    match spec {
        None => Ok(tether_acme::Store::Dir(tether_acme::DirStore::open(
            state_dir, challenges,
        )?)),
        Some(spec) => acme_etcd(spec, challenges).await,
    }
}

#[cfg(feature = "etcd")]
async fn acme_etcd(
    spec: &StoreSpec,
    challenges: std::sync::Arc<tether_proxy::acme::Challenges>,
) -> anyhow::Result<tether_acme::Store> {
    let s = tether_acme::store::etcd::EtcdStore::start(&spec.endpoints, &spec.prefix, challenges)
        .await?;
    Ok(tether_acme::Store::Etcd(Box::new(s)))
}

#[cfg(not(feature = "etcd"))]
async fn acme_etcd(
    spec: &StoreSpec,
    _challenges: std::sync::Arc<tether_proxy::acme::Challenges>,
) -> anyhow::Result<tether_acme::Store> {
    bail!("--store {spec}: this tether was built without etcd support")
}

#[cfg(feature = "etcd")]
async fn etcd(spec: &StoreSpec) -> anyhow::Result<Store> {
    let store =
        tether_providers::api::etcd::EtcdStore::start(spec.endpoints.clone(), spec.prefix.clone())
            .await?;
    Ok(Store::Etcd(Box::new(store)))
}

#[cfg(not(feature = "etcd"))]
async fn etcd(spec: &StoreSpec) -> anyhow::Result<Store> {
    bail!("--store {spec}: this tether was built without etcd support; build it with `cargo build --release --features etcd` (needs protoc, Debian's protobuf-compiler), or use the Docker image, which has it")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_parse() {
        let s = StoreSpec::parse("etcd://10.0.0.1:2379,etcd-2:2379/proxy").unwrap();
        assert_eq!(s.endpoints, ["10.0.0.1:2379", "etcd-2:2379"]);
        assert_eq!(s.prefix, "proxy");
        assert_eq!(StoreSpec::parse("etcd://e:2379").unwrap().prefix, "tether");
        assert!(StoreSpec::parse("consul://c:8500").is_err());
        assert!(StoreSpec::parse("etcd://e/p").is_err());
    }

    #[cfg(not(feature = "etcd"))]
    #[tokio::test]
    async fn without_the_feature_a_store_is_refused_with_how_to_build_it() {
        let spec = StoreSpec::parse("etcd://e:2379/p").unwrap();
        let e = open(Some(&spec), Path::new("/nonexistent"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("--features etcd"), "{e}");
    }
}
