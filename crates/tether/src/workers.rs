//! Serving workers (`workers = N`, N > 1): N threads, each a single-threaded tokio runtime with
//! its own I/O driver and timers, serving its own listening sockets (one per entrypoint, bound
//! with `SO_REUSEPORT` so that the kernel spreads new connections over the workers) and keeping
//! its own slot of every server's connection pool ([`tether_proxy::worker`]). The control plane
//! (the sources, the admin API, health checks, certificate reloads) stays on the thread that
//! started them, and a new routing table reaches every worker at once through the shared
//! `ArcSwap`. What must agree across workers is shared: server state, the retry budget,
//! connections per client, the rate and in-flight limits.

use std::time::Duration;

use anyhow::Context;
use tether_proxy::{Admission, ProxyConfig, TableStore};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::app::Bound;

/// What every worker serves with.
pub(crate) struct Serve {
    pub store: TableStore,
    pub cfg: ProxyConfig,
    pub shutdown: watch::Receiver<bool>,
    pub drain: Duration,
    /// Connections per client address, counted across the workers.
    pub admission: Admission,
}

/// Start `workers` workers over the entrypoints' sockets. With as many sockets as workers (or
/// more, handed over by a process with more workers), each worker takes its share; with fewer (a
/// predecessor without `SO_REUSEPORT`), the workers share them, each through a descriptor of
/// its own. The task returned ends when every worker has drained and stopped.
pub(crate) fn start(
    workers: usize,
    pin: bool,
    bound: Vec<Bound>,
    serve: Serve,
) -> anyhow::Result<JoinHandle<()>> {
    let cpus = if pin { allowed_cpus() } else { Vec::new() };
    if pin && cpus.is_empty() {
        tracing::warn!("pin_workers: the CPUs this process may use are unknown: not pinned");
    }
    // Each worker's sockets, with what its listeners need.
    let mut shares: Vec<Vec<Bound>> = (0..workers).map(|_| Vec::new()).collect();
    for b in bound {
        let n = b.sockets.len();
        let mut per: Vec<Vec<std::net::TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
        if n >= workers {
            for (i, s) in b.sockets.into_iter().enumerate() {
                per[i % workers].push(s);
            }
        } else {
            for (w, sockets) in per.iter_mut().enumerate() {
                sockets.push(
                    b.sockets[w % n].try_clone().with_context(|| {
                        format!("entrypoint {}: a socket for worker {w}", b.name)
                    })?,
                );
            }
        }
        for (w, sockets) in per.into_iter().enumerate() {
            shares[w].push(Bound {
                name: b.name.clone(),
                ep: b.ep,
                sockets,
                tls: b.tls.clone(),
                tcp: b.tcp,
                proxy_protocol: b.proxy_protocol.clone(),
            });
        }
    }
    let mut done = Vec::with_capacity(workers);
    for (i, share) in shares.into_iter().enumerate() {
        let (tx, rx) = oneshot::channel::<()>();
        done.push(rx);
        let cpu = cpus.get(i % cpus.len().max(1)).copied();
        let store = serve.store.clone();
        let cfg = serve.cfg.clone();
        let shutdown = serve.shutdown.clone();
        let drain = serve.drain;
        let admission = serve.admission.clone();
        std::thread::Builder::new()
            .name(format!("tether-worker-{i}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    pin_to(i, cpu);
                }
                tether_proxy::worker::enter(i);
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(worker = i, error = %e, "worker: cannot start its runtime");
                        return;
                    }
                };
                rt.block_on(async move {
                    let listeners = match share
                        .into_iter()
                        .flat_map(Bound::into_listeners)
                        .collect::<std::io::Result<Vec<_>>>()
                    {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(worker = i, error = %e, "worker: cannot take its sockets");
                            return;
                        }
                    };
                    tether_proxy::serve(listeners, store, cfg, shutdown, drain, admission).await;
                });
                // Tasks still left (none after a drain) end with the runtime, here.
                drop(rt);
                let _ = tx.send(());
            })
            .context("cannot start a worker thread")?;
    }
    tracing::info!(
        workers,
        pinned = !cpus.is_empty(),
        "serving on {workers} workers"
    );
    Ok(tokio::spawn(async move {
        for rx in done {
            // A worker that ended without a word (it panicked) has ended too.
            let _ = rx.await;
        }
    }))
}

/// The CPUs this process may run on (its affinity mask), in order.
fn allowed_cpus() -> Vec<usize> {
    match rustix::thread::sched_getaffinity(None) {
        Ok(set) => (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&c| set.is_set(c))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Run this thread (worker `i`) on `cpu` only.
fn pin_to(i: usize, cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    match rustix::thread::sched_setaffinity(None, &set) {
        Ok(()) => tracing::debug!(worker = i, cpu, "worker pinned"),
        Err(e) => tracing::warn!(worker = i, cpu, error = %e, "pin_workers: cannot pin the worker"),
    }
}
