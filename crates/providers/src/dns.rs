//! Services whose servers are found in DNS (`resolve = "tasks.go-demo:8080"`): every address of
//! the name is one server, named by its address (sealed in affinity cookies, never shown). This
//! wraps any [`Source`]: each of its updates has such services filled in before it goes on, and
//! the names are resolved again every [`REFRESH`]; when an address set changes, the source's last
//! update goes on again with the new servers. A name that fails to resolve keeps its last
//! addresses, with an error naming the service.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tether_model::{ProviderUpdate, Resolve, ServerAddr, ServerDecl};
use tokio::sync::mpsc;

use crate::source::{Event, FirstSync, Run, Source};

/// How often the names are resolved again.
pub const REFRESH: Duration = Duration::from_secs(3);
/// One lookup gives up after this.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// A source whose `resolve` services are filled from DNS.
pub struct Resolving(pub Box<dyn Source>);

impl Source for Resolving {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn first_sync(&self) -> FirstSync {
        self.0.first_sync()
    }

    fn run(self: Box<Self>, tx: mpsc::Sender<Event>) -> Run {
        Box::pin(async move {
            let (inner_tx, rx) = mpsc::channel(8);
            let inner = tokio::spawn(self.0.run(inner_tx));
            relay(rx, tx).await;
            inner.abort();
        })
    }
}

/// The addresses each name had at its last lookup.
type Found = BTreeMap<Resolve, Result<Vec<SocketAddr>, String>>;

async fn relay(mut rx: mpsc::Receiver<Event>, tx: mpsc::Sender<Event>) {
    let mut last: Option<ProviderUpdate> = None;
    let mut found: Found = BTreeMap::new();
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => ev,
                None => return,
            },
            _ = tick.tick(), if last.as_ref().is_some_and(has_names) => {
                let names = names(last.as_ref().expect("checked"));
                let fresh = lookup(&names, &found).await;
                if addresses(&fresh) == addresses(&found) {
                    continue;
                }
                found = fresh;
                let update = expand(last.clone().expect("checked"), &found);
                tracing::info!(provider = %update.provider, "dns: the servers of a resolved service changed");
                Event::Update { update, applied: None }
            }
        };
        let event = match event {
            Event::Update { update, applied } if has_names(&update) => {
                found = lookup(&names(&update), &found).await;
                last = Some(update.clone());
                Event::Update {
                    update: expand(update, &found),
                    applied,
                }
            }
            Event::Update { update, applied } => {
                last = None;
                Event::Update { update, applied }
            }
            other => other,
        };
        if tx.send(event).await.is_err() {
            return;
        }
    }
}

fn has_names(u: &ProviderUpdate) -> bool {
    u.services.iter().any(|s| s.resolve.is_some())
}

fn names(u: &ProviderUpdate) -> Vec<Resolve> {
    let mut v: Vec<Resolve> = u
        .services
        .iter()
        .filter_map(|s| s.resolve.clone())
        .collect();
    v.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
    v.dedup();
    v
}

fn addresses(f: &Found) -> BTreeMap<&Resolve, Option<&Vec<SocketAddr>>> {
    f.iter().map(|(k, v)| (k, v.as_ref().ok())).collect()
}

/// Look every name up; a failed lookup keeps the addresses found before, with its error.
async fn lookup(names: &[Resolve], before: &Found) -> Found {
    let mut out = BTreeMap::new();
    for r in names {
        let got = tokio::time::timeout(
            LOOKUP_TIMEOUT,
            tokio::net::lookup_host((r.host.as_str(), r.port)),
        )
        .await;
        let result = match got {
            Ok(Ok(addrs)) => {
                let mut v: Vec<SocketAddr> = addrs.collect();
                v.sort();
                v.dedup();
                Ok(v)
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {LOOKUP_TIMEOUT:?}")),
        };
        let result = match (result, before.get(r)) {
            (Err(e), Some(Ok(old))) => {
                tracing::warn!(name = %r, error = %e, "dns: lookup failed; keeping the last addresses");
                out.insert(r.clone(), Ok(old.clone()));
                continue;
            }
            (res, _) => res,
        };
        out.insert(r.clone(), result);
    }
    out
}

/// The update with each resolved service's servers filled in.
fn expand(mut u: ProviderUpdate, found: &Found) -> ProviderUpdate {
    for s in &mut u.services {
        let Some(r) = &s.resolve else { continue };
        match found.get(r) {
            Some(Ok(addrs)) => {
                s.servers = addrs
                    .iter()
                    .map(|a| ServerDecl {
                        name: a.to_string(),
                        addr: ServerAddr::Socket(*a),
                        weight: 1,
                        draining: false,
                        tls: None,
                        backup: false,
                    })
                    .collect();
            }
            Some(Err(e)) => u.errors.push(format!(
                "services.{}.resolve: cannot resolve {r}: {e} (no servers until it resolves)",
                s.name
            )),
            None => {}
        }
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_model::{BalanceAlgo, ServiceDecl};

    fn svc(resolve: &str) -> ProviderUpdate {
        ProviderUpdate {
            provider: "api".into(),
            services: vec![ServiceDecl {
                name: "s".into(),
                servers: Vec::new(),
                balance: BalanceAlgo::RoundRobin,
                affinity: None,
                resolve: Some(Resolve::parse(resolve).unwrap()),
                health: None,
                wait: Default::default(),
                protocol: Default::default(),
            }],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn every_address_of_a_name_is_a_server_and_a_failure_keeps_the_last() {
        let u = svc("localhost:8080");
        let found = lookup(&names(&u), &BTreeMap::new()).await;
        let out = expand(u, &found);
        let servers = &out.services[0].servers;
        assert!(!servers.is_empty());
        assert!(servers.iter().all(|s| s.name.ends_with(":8080")));

        let gone = svc("no-such-name.invalid:80");
        let found = lookup(&names(&gone), &BTreeMap::new()).await;
        let out = expand(gone.clone(), &found);
        assert!(out.services[0].servers.is_empty());
        assert!(
            out.errors[0].contains("services.s.resolve"),
            "{:?}",
            out.errors
        );
        // Known before: the old addresses stay.
        let before: Found = BTreeMap::from([(
            gone.services[0].resolve.clone().unwrap(),
            Ok(vec!["10.0.0.9:80".parse().unwrap()]),
        )]);
        let found = lookup(&names(&gone), &before).await;
        assert_eq!(expand(gone, &found).services[0].servers.len(), 1);
    }
}
