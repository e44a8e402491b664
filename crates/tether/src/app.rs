//! A running Tether: its sources (the configuration file, the Docker engine, the admin API's
//! store) followed, the control plane, the listeners, the admin API.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tether_control::Control;
use tether_model::file_config::{KeySource, Settings, Timeouts, TlsSettings};
use tether_providers::api::{ApiHandle, ApiSource};
use tether_providers::{docker, file, swarm, Event, FirstSync, Source};
use tether_proxy::front::tls::{self, certs, certs::CertStore};
use tether_proxy::{Listener, ProxyConfig};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use crate::store::StoreSpec;
use crate::upgrade::{self, Sockets};

/// How to start.
#[derive(Debug, Clone)]
pub struct Options {
    /// The configuration file; without it, settings are defaults and `listen` is the entrypoint.
    pub config: Option<PathBuf>,
    /// The `web` entrypoint when there is no configuration file.
    pub listen: SocketAddr,
    /// The affinity key file when there is no configuration file (else one is generated).
    pub key_file: Option<PathBuf>,
    /// Follow this Docker engine.
    pub docker: Option<DockerOptions>,
    /// Follow this Swarm manager (else the file's `[swarm]`, if any).
    pub swarm: Option<SwarmOptions>,
    pub state_dir: PathBuf,
    /// How long requests in flight may finish after shutdown is asked for, and how long a stopping
    /// container keeps the sessions pinned to it.
    pub drain: Duration,
    /// The admin API (its address overrides the file's `[admin] address`).
    pub admin: AdminOptions,
    /// The shared store of API changes; without it, they are kept in the state directory.
    pub store: Option<StoreSpec>,
    /// The access log: off (`None`), or a format and a target.
    pub access_log: Option<(
        tether_proxy::upstream::meter::Format,
        tether_proxy::upstream::meter::Target,
    )>,
    /// dockercloud/haproxy's `DEFAULT_SSL_CERT`: a default certificate given as PEM text.
    pub default_certificate: Option<PemText>,
    /// `--connect-timeout`: overrides the file's `[timeouts] connect`.
    pub connect_timeout: Option<Duration>,
    /// `--entrypoint NAME=ADDR[,tcp][,tls]`: added to the file's (or the default `web`), or
    /// replacing the one of that name.
    pub entrypoints: Vec<tether_model::file_config::EntrypointFlag>,
    /// `--stats-path /haproxy?stats`: the stats page on every traffic entrypoint.
    pub stats_path: Option<String>,
    /// `--workers N`: serving workers, over the file's `workers`.
    pub workers: Option<usize>,
    /// Serving workers when neither `--workers` nor the file's `workers` says: `tether run`
    /// gives the CPUs the process may use; [`Options::file`] 1 (serving on the caller's runtime).
    pub default_workers: usize,
}

/// PEM text holding a private key: never printed.
#[derive(Clone)]
pub struct PemText(pub String);

impl std::fmt::Debug for PemText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PemText({} bytes)", self.0.len())
    }
}

/// The admin API's settings.
#[derive(Debug, Clone, Default)]
pub struct AdminOptions {
    /// Listen here (else the file's `[admin] address`, else no admin API).
    pub address: Option<SocketAddr>,
    pub token: Option<String>,
    /// Docker Flow Proxy's endpoints.
    pub dfp: Option<tether_admin::DfpConfig>,
}

impl Options {
    /// Serve one configuration file.
    pub fn file(config: PathBuf, state_dir: PathBuf, drain: Duration) -> Options {
        Options {
            config: Some(config),
            listen: ([0, 0, 0, 0], 80).into(),
            key_file: None,
            docker: None,
            swarm: None,
            state_dir,
            drain,
            admin: AdminOptions::default(),
            store: None,
            access_log: None,
            default_certificate: None,
            connect_timeout: None,
            entrypoints: Vec::new(),
            stats_path: None,
            workers: None,
            default_workers: 1,
        }
    }
}

/// The Docker source.
#[derive(Debug, Clone)]
pub struct DockerOptions {
    pub endpoint: docker::Endpoint,
    /// Network to reach containers on when their labels name none.
    pub network: Option<String>,
    /// Only containers with this label and value are read.
    pub constraint: Option<(String, String)>,
    /// `--docker-self`: Tether's own container, found, named or none (decides which networks
    /// it reaches).
    pub self_spec: docker::whereabouts::SelfSpec,
    /// Where Tether's Docker secrets are, for `tether.tls.secret` (default `/run/secrets`).
    pub secrets_dir: Option<PathBuf>,
    /// dockercloud/haproxy's proxy-wide middlewares (`HTTP_BASIC_AUTH`, hashed already;
    /// `GZIP_COMPRESSION_TYPE`).
    pub dockercloud: tether_model::labels::dockercloud::ProxyWide,
    /// `--interlock-ext-name`: only containers of that Interlock extension (or of none).
    pub interlock_ext_name: Option<String>,
}

impl DockerOptions {
    /// The provider's configuration, for Tether's entrypoints and drain period. With a Swarm
    /// provider beside it, task containers are left to that one.
    pub fn config(
        &self,
        entrypoints: Vec<String>,
        tls_entrypoints: Vec<String>,
        tcp_entrypoints: Vec<String>,
        entrypoint_ports: Vec<(String, u16)>,
        drain: Duration,
        with_swarm: bool,
    ) -> docker::DockerConfig {
        docker::DockerConfig {
            endpoint: self.endpoint.clone(),
            settings: docker::Settings {
                entrypoints,
                tls_entrypoints,
                tcp_entrypoints,
                entrypoint_ports,
                own_networks: Vec::new(),
                host_networks: None,
                self_spec: self.self_spec.clone(),
                default_network: self.network.clone(),
                drain,
                constraint: self.constraint.clone(),
                skip_tasks: with_swarm,
                secrets_dir: self.secrets_dir.clone(),
                dockercloud: self.dockercloud.clone(),
                interlock_ext_name: self.interlock_ext_name.clone(),
                acme_resolvers: None,
            },
        }
    }
}

/// The Swarm source.
#[derive(Debug, Clone)]
pub struct SwarmOptions {
    pub endpoint: docker::Endpoint,
    /// Network to reach tasks on when a service names none and Tether shares none.
    pub network: Option<String>,
    /// Only services with this label and value are read.
    pub constraint: Option<(String, String)>,
    /// `--docker-self`, as for Docker.
    pub self_spec: docker::whereabouts::SelfSpec,
    /// The steady task poll.
    pub poll: Duration,
    /// Where Tether's Docker secrets are, for `tether.tls.secret` (default `/run/secrets`).
    pub secrets_dir: Option<PathBuf>,
    /// dockercloud/haproxy's proxy-wide middlewares (`HTTP_BASIC_AUTH`, hashed already;
    /// `GZIP_COMPRESSION_TYPE`).
    pub dockercloud: tether_model::labels::dockercloud::ProxyWide,
    /// `--interlock-ext-name`: only containers of that Interlock extension (or of none).
    pub interlock_ext_name: Option<String>,
}

impl SwarmOptions {
    /// From the file's `[swarm]`.
    pub fn from_file(s: &tether_model::file_config::SwarmSettings) -> anyhow::Result<SwarmOptions> {
        let endpoint = match &s.endpoint {
            Some(e) => docker::Endpoint::parse(e),
            None => docker::Endpoint::from_env(),
        }
        .map_err(|e| anyhow::anyhow!("swarm.endpoint: {e}"))?;
        Ok(SwarmOptions {
            endpoint,
            network: s.network.clone(),
            constraint: s.constraint.clone(),
            self_spec: Default::default(),
            poll: s.poll,
            secrets_dir: None,
            dockercloud: Default::default(),
            interlock_ext_name: None,
        })
    }

    /// The provider's configuration.
    pub fn config(
        &self,
        entrypoints: Vec<String>,
        tls_entrypoints: Vec<String>,
        tcp_entrypoints: Vec<String>,
        entrypoint_ports: Vec<(String, u16)>,
        drain: Duration,
        key_configured: bool,
    ) -> swarm::SwarmConfig {
        swarm::SwarmConfig {
            endpoint: self.endpoint.clone(),
            settings: swarm::Settings {
                entrypoints,
                tls_entrypoints,
                tcp_entrypoints,
                entrypoint_ports,
                own_networks: Vec::new(),
                host_networks: None,
                self_spec: self.self_spec.clone(),
                default_network: self.network.clone(),
                drain,
                constraint: self.constraint.clone(),
                secrets_dir: self.secrets_dir.clone(),
                dockercloud: self.dockercloud.clone(),
                interlock_ext_name: self.interlock_ext_name.clone(),
                acme_resolvers: None,
            },
            poll: self.poll,
            key_configured,
        }
    }
}

/// A started instance. Dropping it does not stop it; call [`Instance::shutdown`].
#[derive(Debug)]
pub struct Instance {
    /// Entrypoint names and the addresses actually bound (port 0 resolved).
    pub entrypoints: Vec<(String, SocketAddr)>,
    /// The admin API's bound address, when it runs.
    pub admin: Option<SocketAddr>,
    pub control: Arc<Control>,
    /// The API source, when there is one.
    pub api: Option<ApiHandle>,
    /// The access log, when one is on (SIGHUP reopens its file).
    pub access_log: Option<Arc<tether_proxy::upstream::meter::AccessLog>>,
    shutdown: watch::Sender<bool>,
    serving: JoinHandle<()>,
    /// Source followers and the admin server, stopped with the instance.
    following: Vec<JoinHandle<()>>,
    /// Copies of the listening sockets, for a successor to take over.
    handed: Sockets,
}

impl Instance {
    /// The bound address of an entrypoint.
    pub fn addr(&self, entrypoint: &str) -> SocketAddr {
        self.entrypoints
            .iter()
            .find(|(n, _)| n == entrypoint)
            .map(|e| e.1)
            .expect("no such entrypoint")
    }

    /// Copies of every listening socket (entrypoints and admin), to hand to a successor.
    pub fn sockets(&self) -> std::io::Result<Sockets> {
        self.handed.try_clone()
    }

    /// Stop accepting, let requests in flight finish (up to the drain period), then return.
    pub async fn shutdown(self) {
        // The copies kept for a successor would keep the sockets open: new connections must be
        // refused at once (after a takeover the successor holds copies of its own).
        drop(self.handed);
        let _ = self.shutdown.send(true);
        for f in &self.following {
            f.abort();
        }
        let _ = self.serving.await;
    }

    /// Wait until the instance stops by itself (it does not, unless its listeners fail).
    pub async fn wait(&mut self) {
        let _ = (&mut self.serving).await;
    }
}

/// Load the configuration, bind every entrypoint, start serving and following the sources.
pub async fn start(opts: Options) -> anyhow::Result<Instance> {
    start_with(opts, Sockets::default()).await
}

/// `--docker-self NAME`: a container of that name must run, or Tether does not start (it would
/// route over networks it is not on).
async fn check_docker_self(opts: &Options) -> anyhow::Result<()> {
    let named = [
        opts.docker.as_ref().map(|d| (&d.endpoint, &d.self_spec)),
        opts.swarm.as_ref().map(|s| (&s.endpoint, &s.self_spec)),
    ];
    for (endpoint, spec) in named.into_iter().flatten() {
        if let docker::whereabouts::SelfSpec::Named(_) = spec {
            let client = docker::Client::connect(endpoint.clone()).await?;
            let w = docker::whereabouts::find(&client, spec).await?;
            tracing::info!(networks = %w.networks.join(","), "--docker-self: Tether's container found");
            return Ok(());
        }
    }
    Ok(())
}

/// [`start`], listening on the sockets `inherited` from a running process where they match
/// (a takeover: [`crate::upgrade`]).
pub async fn start_with(opts: Options, mut inherited: Sockets) -> anyhow::Result<Instance> {
    let mut handed = Sockets::default();
    let admin_addr = opts.admin.address;
    if opts.config.is_none()
        && opts.docker.is_none()
        && opts.swarm.is_none()
        && admin_addr.is_none()
        && opts.store.is_none()
    {
        bail!("nothing to serve: give --config FILE, --docker, --swarm, --admin ADDR or --store URL (or several)");
    }
    check_docker_self(&opts).await?;
    let (watch, cfg) = match &opts.config {
        Some(path) => {
            let (watch, loaded) = file::FileWatch::start(path);
            let cfg = loaded?;
            if cfg.settings.entrypoints.is_empty() {
                bail!(
                    "{}: no entrypoints: add e.g. [entrypoints] web = \"0.0.0.0:80\"",
                    path.display()
                );
            }
            (Some(watch), Some(cfg))
        }
        None => (None, None),
    };
    let settings = match &cfg {
        Some(cfg) => cfg.settings.clone(),
        None => Settings {
            entrypoints: vec![("web".into(), opts.listen)],
            timeouts: Timeouts::default(),
            affinity_key: opts
                .key_file
                .clone()
                .map_or(KeySource::Generated, KeySource::File),
            trusted_proxies: Vec::new(),
            admin: None,
            merge_slashes: false,
            limits: Default::default(),
            swarm: None,
            stats: None,
            tls: Default::default(),
            tcp_entrypoints: Vec::new(),
            tcp: Default::default(),
            proxy_protocol: Default::default(),
            acme: Vec::new(),
            workers: None,
            pin_workers: false,
        },
    };
    let mut settings = settings;
    if let Some(p) = &opts.stats_path {
        // `--stats-path` wins over the file's `[stats] path`, on every traffic entrypoint.
        let path = tether_model::file_config::stats_path(p)
            .map_err(|e| anyhow::anyhow!("--stats-path: {e}"))?;
        settings.stats = Some(tether_model::file_config::StatsMount {
            path,
            entrypoints: Vec::new(),
        });
    }
    for e in &opts.entrypoints {
        settings.add_entrypoint(e);
    }
    let (acme_errors, acme_warnings) = tether_model::acme::check_settings(&settings);
    for w in acme_warnings {
        tracing::warn!("{w}");
    }
    if !acme_errors.is_empty() {
        anyhow::bail!("{}", acme_errors.join("; "));
    }
    if let Some(c) = opts.connect_timeout {
        settings.timeouts.connect = c;
    }
    // Before any table is compiled: every server's pool and every counter get a slot per worker.
    let workers = opts
        .workers
        .or(settings.workers)
        .unwrap_or(opts.default_workers)
        .max(1);
    if workers > 1 {
        tether_proxy::worker::set_count(workers);
    }
    let key_source = match (&settings.affinity_key, &opts.config) {
        // A relative key file is found beside the configuration file, wherever Tether runs from.
        (KeySource::File(p), Some(config)) if p.is_relative() => {
            KeySource::File(config.parent().unwrap_or(Path::new(".")).join(p))
        }
        (other, _) => other.clone(),
    };
    // The admin listener is checked before anything binds: no token beyond loopback is refused.
    let admin_addr = admin_addr.or(settings.admin);
    let api_store = if admin_addr.is_some() || opts.store.is_some() {
        let store = crate::store::open(opts.store.as_ref(), &opts.state_dir).await?;
        tracing::info!(store = %store.describe(), "API changes are kept in the {}", store.describe());
        Some(store)
    } else {
        None
    };
    let (key, key_origin) =
        crate::shared_key::at_start(&key_source, &opts.state_dir, api_store.as_ref()).await?;
    let auth = admin_addr
        .map(|a| tether_admin::Auth::new(a, opts.admin.token.clone()))
        .transpose()
        .context("--admin")?;
    let certificates = certificates(&settings.tls, opts.default_certificate.as_ref())?;
    // ACME's challenge answers, read by every entrypoint, when resolvers are declared.
    let challenges = (!settings.acme.is_empty()).then(tether_proxy::acme::Challenges::new);
    let (bound, entrypoints) = bind(
        &settings,
        certificates.as_ref(),
        challenges.as_ref(),
        workers,
        &mut inherited,
        &mut handed,
    )?;
    let names: Vec<String> = entrypoints.iter().map(|e| e.0.clone()).collect();
    let tls_ports: Vec<(String, u16)> = entrypoints
        .iter()
        .filter(|(name, _)| settings.tls.entrypoints.contains_key(name))
        .map(|(name, addr)| (name.clone(), addr.port()))
        .collect();
    let tls_names: Vec<String> = tls_ports.iter().map(|(n, _)| n.clone()).collect();
    // The ports entrypoints are bound on (a dialect naming the proxy's port finds them so).
    let ports: Vec<(String, u16)> = entrypoints
        .iter()
        .map(|(name, addr)| (name.clone(), addr.port()))
        .collect();
    let control = Control::new(
        names.clone(),
        tls_ports,
        settings.tcp_entrypoints.clone(),
        key,
    );
    // Where a `basic_auth` `users_file` named by a label or the API is read.
    let secrets_dir = opts
        .docker
        .as_ref()
        .and_then(|d| d.secrets_dir.clone())
        .or_else(|| opts.swarm.as_ref().and_then(|s| s.secrets_dir.clone()));
    if let Some(dir) = secrets_dir {
        control.set_secrets_dir(dir);
    }
    control.set_acme_resolvers(settings.acme.iter().map(|r| r.name.clone()).collect());
    if let Some(store) = &certificates {
        control.serve_certificates(store.clone());
    }
    if let (Some(c), Some(store)) = (&challenges, &certificates) {
        let acme_store =
            crate::store::acme(opts.store.as_ref(), &opts.state_dir, c.clone()).await?;
        tracing::info!(resolvers = settings.acme.len(), store = %acme_store.describe(), "ACME: ordering the certificates routes ask for");
        let acme = tether_acme::Acme::start(
            settings.acme.clone(),
            acme_store,
            store.clone(),
            control.acme_wanted(),
        );
        control.set_acme(acme);
    }

    let swarm = match (&opts.swarm, &settings.swarm) {
        (Some(s), _) => Some(s.clone()),
        (None, Some(f)) => Some(SwarmOptions::from_file(f)?),
        (None, None) => None,
    };
    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    if let (Some(watch), Some(cfg)) = (watch, cfg) {
        sources.push(Box::new(file::FileSource::new(watch, cfg)));
    }
    // Labels naming a resolver Tether does not have leave their container out.
    let acme_names: Vec<String> = settings.acme.iter().map(|r| r.name.clone()).collect();
    if let Some(d) = &opts.docker {
        let mut cfg = d.config(
            names.clone(),
            tls_names.clone(),
            settings.tcp_entrypoints.clone(),
            ports.clone(),
            opts.drain,
            swarm.is_some(),
        );
        cfg.settings.acme_resolvers = Some(acme_names.clone());
        sources.push(Box::new(docker::DockerSource(cfg)));
    }
    if let Some(s) = &swarm {
        let key_configured = key_origin != crate::shared_key::Origin::Generated;
        let mut cfg = s.config(
            names.clone(),
            tls_names.clone(),
            settings.tcp_entrypoints.clone(),
            ports.clone(),
            opts.drain,
            key_configured,
        );
        cfg.settings.acme_resolvers = Some(acme_names.clone());
        sources.push(Box::new(swarm::SwarmSource(cfg)));
    }
    let mut api = None;
    if let Some(store) = api_store {
        let (source, handle) = ApiSource::new(store, names.clone());
        crate::shared_key::follow_up(key_origin, &handle, &control);
        sources.push(Box::new(source));
        api = Some(handle);
    }
    let mut following = Vec::new();
    for source in sources {
        let source = Box::new(tether_providers::dns::Resolving(source));
        following.push(follow(source, control.clone()).await?);
    }

    following.push(tokio::spawn(tether_proxy::health::run(control.store())));
    let (shutdown, rx) = watch::channel(false);
    let counters: Arc<[tether_proxy::stats::EntrypointStats]> =
        names.iter().map(|_| Default::default()).collect();
    let access_log = match &opts.access_log {
        Some((format, target)) => Some(
            tether_proxy::upstream::meter::AccessLog::start(*format, target.clone())
                .context("--access-log-file")?,
        ),
        None => None,
    };
    let mut admin = None;
    if let (Some(addr), Some(auth)) = (admin_addr, auth) {
        let l = listen(upgrade::ADMIN, addr, 1, &mut inherited, &mut handed)
            .and_then(|mut s| TcpListener::from_std(s.swap_remove(0)))
            .with_context(|| format!("admin: cannot listen on {addr}"))?;
        let bound = l.local_addr()?;
        let read_only = if auth.has_token() {
            ""
        } else {
            " (read-only: no admin token configured)"
        };
        tracing::info!(addr = %bound, "admin API listening{read_only}");
        // A DFP `srcPort` finds its entrypoint as the labels' does.
        let dfp = opts.admin.dfp.clone().map(|d| tether_admin::DfpConfig {
            entrypoints: names.clone(),
            tls_entrypoints: tls_names.clone(),
            tcp_entrypoints: settings.tcp_entrypoints.clone(),
            entrypoint_ports: ports.clone(),
            ..d
        });
        let cfg = tether_admin::AdminConfig {
            dfp,
            entrypoints: counters.clone(),
            certificates: certificates.clone(),
        };
        let router = tether_admin::router(control.clone(), api.clone(), auth, &cfg);
        let mut stop = rx.clone();
        following.push(tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = tether_admin::serve(l, router, stopped).await {
                tracing::error!(error = %e, "admin API stopped");
            }
        }));
        admin = Some(bound);
    }
    let stats_page = match &settings.stats {
        None => None,
        Some(m) => {
            let Some(token) = opts.admin.token.clone() else {
                bail!("[stats] path = {:?}: the stats page on a traffic entrypoint is behind basic auth with the admin token as password: set --admin-token-file FILE or TETHER_ADMIN_TOKEN", m.path);
            };
            let indexes = m
                .entrypoints
                .iter()
                .filter_map(|n| names.iter().position(|e| e == n))
                .collect();
            tracing::info!(path = %m.path, entrypoints = ?m.entrypoints, "the stats page is served on traffic entrypoints (basic auth, the admin token as password)");
            Some(tether_proxy::stats::StatsMount {
                path: m.path.clone(),
                entrypoints: indexes,
                page: Arc::new(tether_admin::MountedStats::new(control.clone(), token)),
            })
        }
    };
    let proxy_cfg = ProxyConfig {
        timeouts: settings.timeouts,
        trusted_proxies: settings.trusted_proxies.clone(),
        merge_slashes: settings.merge_slashes,
        limits: settings.limits,
        access_log: access_log.clone(),
        entrypoints: counters,
        stats_page,
        pipe: tether_proxy::tcp::pipe::PipeConfig {
            buffer: settings.tcp.buffer,
            idle: settings.timeouts.tunnel,
        },
        hello_timeout: settings.tcp.hello_timeout,
        acme: challenges.clone(),
    };
    let admission = tether_proxy::Admission::new(settings.limits.connections_per_client);
    let serving = if workers == 1 {
        let listeners = bound
            .into_iter()
            .flat_map(Bound::into_listeners)
            .collect::<std::io::Result<Vec<_>>>()?;
        tokio::spawn(tether_proxy::serve(
            listeners,
            control.store(),
            proxy_cfg,
            rx,
            opts.drain,
            admission,
        ))
    } else {
        let serve = crate::workers::Serve {
            store: control.store(),
            cfg: proxy_cfg,
            shutdown: rx,
            drain: opts.drain,
            admission,
        };
        crate::workers::start(workers, settings.pin_workers, bound, serve)?
    };
    Ok(Instance {
        entrypoints,
        admin,
        access_log,
        control,
        api,
        shutdown,
        serving,
        following,
        handed,
    })
}

/// How often certificate files are looked at for a change.
const CERTIFICATE_CHECK: Duration = Duration::from_secs(1);

/// The certificates of the TLS entrypoints, loaded and checked (start fails, naming the file, if
/// one cannot serve), then followed for changes; `None` without a TLS entrypoint.
fn certificates(
    tls: &TlsSettings,
    default_pem: Option<&PemText>,
) -> anyhow::Result<Option<Arc<CertStore>>> {
    if tls.entrypoints.is_empty() {
        if default_pem.is_some() {
            bail!("DEFAULT_SSL_CERT is set, but no entrypoint terminates TLS: add one with `tls = true` (e.g. websecure = {{ address = \"0.0.0.0:443\", tls = true }})");
        }
        return Ok(None);
    }
    // Every file must serve at start: a typo stops Tether here, not at a client's handshake.
    certs::load_all(&tls.certificates).context("tls.certificates")?;
    let mut decls = certs::file_declarations(&tls.certificates);
    if let Some(pem) = default_pem {
        // dockercloud/haproxy's way: `\n` written as two characters; the default unless a
        // file is marked `default = true`.
        let text = pem.0.replace("\\n", "\n");
        let decl = tether_model::CertificateDecl {
            name: "DEFAULT_SSL_CERT".into(),
            origin: "env DEFAULT_SSL_CERT".into(),
            pem: tether_model::CertificatePem::Text {
                cert: text.clone(),
                key: text,
            },
            default: !tls.certificates.iter().any(|c| c.default),
        };
        certs::load_declared(&decl).context("DEFAULT_SSL_CERT")?;
        // Listed first: with no file marked default, it is the default.
        decls.insert(0, decl);
    }
    let store = Arc::new(CertStore::default());
    store.set_source(certs::FILE_SOURCE, decls);
    if tls.certificates.is_empty() && default_pem.is_none() {
        tracing::warn!("TLS: no [[tls.certificates]] in the configuration: handshakes fail until a certificate comes through the admin API (PUT /api/certificates/NAME) or a provider's label");
    }
    tokio::spawn(certs::follow(store.clone(), CERTIFICATE_CHECK));
    Ok(Some(store))
}

/// An entrypoint's listening sockets, not yet given to a runtime: one per worker, or those a
/// running process handed over.
pub(crate) struct Bound {
    pub name: String,
    /// Its index among the entrypoints (the table's router that serves it).
    pub ep: usize,
    pub sockets: Vec<std::net::TcpListener>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub tcp: bool,
    pub proxy_protocol: Option<tether_model::file_config::AcceptProxy>,
}

impl Bound {
    /// Its sockets as listeners of the current runtime.
    pub fn into_listeners(self) -> impl Iterator<Item = std::io::Result<Listener>> {
        let Bound {
            name,
            ep,
            sockets,
            tls,
            tcp,
            proxy_protocol,
        } = self;
        sockets.into_iter().map(move |s| {
            Ok(Listener {
                name: name.clone(),
                ep,
                listener: TcpListener::from_std(s)?,
                tls: tls.clone(),
                tcp,
                proxy_protocol: proxy_protocol.clone(),
            })
        })
    }
}

/// Entrypoint names and the addresses bound (port 0 resolved).
type BoundAddrs = Vec<(String, SocketAddr)>;

/// Bind every entrypoint, `workers` sockets each; those with TLS options terminate TLS with the
/// certificates of `store`.
fn bind(
    settings: &Settings,
    store: Option<&Arc<CertStore>>,
    challenges: Option<&Arc<tether_proxy::acme::Challenges>>,
    workers: usize,
    inherited: &mut Sockets,
    handed: &mut Sockets,
) -> anyhow::Result<(Vec<Bound>, BoundAddrs)> {
    let mut bound = Vec::new();
    let mut entrypoints = Vec::new();
    for (ep, (name, addr)) in settings.entrypoints.iter().enumerate() {
        let tls = match (settings.tls.entrypoints.get(name), store) {
            (Some(opts), Some(store)) => Some(tls::acceptor(
                name,
                opts,
                store.clone(),
                challenges.cloned(),
            )?),
            _ => None,
        };
        let sockets = listen(
            &upgrade::entrypoint(name),
            *addr,
            workers,
            inherited,
            handed,
        )
        .with_context(|| format!("entrypoint {name}: cannot listen on {addr}"))?;
        let at = sockets[0].local_addr()?;
        let tcp = settings.tcp_entrypoints.contains(name);
        tracing::info!(entrypoint = %name, addr = %at, tls = tls.is_some(), protocol = if tcp { "tcp" } else { "http" }, sockets = sockets.len(), "listening");
        entrypoints.push((name.clone(), at));
        bound.push(Bound {
            name: name.clone(),
            ep,
            sockets,
            tls,
            tcp,
            proxy_protocol: settings.proxy_protocol.get(name).cloned(),
        });
    }
    Ok((bound, entrypoints))
}

/// The listening sockets named `base` (an entrypoint's, [`upgrade::entrypoint`], or the admin
/// API's) at `addr`, `want` of them: those a running process handed over (`inherited`) when they
/// listen there (any port, when `addr`'s is 0), and new ones beside them with `SO_REUSEPORT`.
/// Copies of all go into `handed`, for the next takeover, named `base`, `base#1`, ... Never
/// fewer than were handed over: a socket closed would lose the connections queued on it.
fn listen(
    base: &str,
    addr: SocketAddr,
    want: usize,
    inherited: &mut Sockets,
    handed: &mut Sockets,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    let base = base.to_string();
    let mut sockets = Vec::new();
    for fd in inherited.take_all(&base) {
        let l = std::net::TcpListener::from(fd);
        let at = l.local_addr()?;
        if at.ip() == addr.ip() && (addr.port() == 0 || addr.port() == at.port()) {
            tracing::info!(socket = %base, addr = %at, "taken over from the running process");
            sockets.push(l);
        } else {
            tracing::info!(socket = %base, was = %at, now = %addr, "the address changed: not taken over");
        }
    }
    if sockets.is_empty() {
        sockets.push(reuse_port_listener(addr)?);
    }
    let at = sockets[0].local_addr()?;
    while sockets.len() < want {
        if !sockets
            .iter()
            .all(|s| socket2::SockRef::from(s).reuse_port().unwrap_or(false))
        {
            tracing::warn!(socket = %base, sockets = sockets.len(), workers = want, "the running process's sockets have no SO_REUSEPORT: the workers share them until the next restart");
            break;
        }
        sockets.push(reuse_port_listener(at)?);
    }
    for (i, l) in sockets.iter().enumerate() {
        l.set_nonblocking(true)?;
        let n = if i == 0 {
            base.clone()
        } else {
            format!("{base}#{i}")
        };
        handed.0.push((n, l.as_fd().try_clone_to_owned()?));
    }
    Ok(sockets)
}

/// A listening socket at `addr` with `SO_REUSEADDR` and `SO_REUSEPORT`: other sockets of this
/// user may listen on the same port, and the kernel spreads new connections over them.
fn reuse_port_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    // tokio's default backlog.
    s.listen(1024)?;
    Ok(s.into())
}

/// Start a source and apply its first report as its policy says; then apply every later one.
async fn follow(source: Box<dyn Source>, control: Arc<Control>) -> anyhow::Result<JoinHandle<()>> {
    let (tx, mut rx) = mpsc::channel(8);
    let name = source.name().to_string();
    let policy = source.first_sync();
    let running = AbortOnDrop(tokio::spawn(source.run(tx)));
    let first = async {
        loop {
            match rx.recv().await {
                None => return Err(anyhow::anyhow!("{name}: stopped before its first report")),
                Some(Event::Invalid(errors)) => return Err(anyhow::anyhow!(errors.join("\n"))),
                Some(Event::Health(problem)) => {
                    if matches!(policy, FirstSync::Required) {
                        if let Some(p) = problem {
                            return Err(anyhow::anyhow!("{name}: {p}"));
                        }
                    }
                    control.set_problem(&name, problem);
                }
                Some(Event::Update { update, applied }) => {
                    let outcome = apply(&control, update).await;
                    let result = outcome
                        .clone()
                        .map_err(|errors| anyhow::anyhow!("{name}: {}", errors.join("; ")));
                    if let Some(ack) = applied {
                        let _ = ack.send(outcome);
                    }
                    return result.map(|_| ());
                }
            }
        }
    };
    match policy {
        FirstSync::Required => first.await?,
        FirstSync::Wait(d) => match tokio::time::timeout(d, first).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("{e:#}; serving without it until it reports"),
            Err(_) => {
                tracing::warn!(source = %name, "no answer from the source after {d:?}; serving without it until it answers")
            }
        },
    }
    Ok(tokio::spawn(async move {
        let _stop_with_us = running;
        while let Some(event) = rx.recv().await {
            match event {
                Event::Update { update, applied } => {
                    // Errors are logged and recorded by the control plane; the last good table stays.
                    let outcome = apply(&control, update).await;
                    if let Some(ack) = applied {
                        let _ = ack.send(outcome);
                    }
                }
                Event::Invalid(errors) => {
                    control.reject(&name, errors);
                }
                Event::Health(problem) => control.set_problem(&name, problem),
            }
        }
    }))
}

/// Compile and swap on a blocking thread: a table of 10,000 routes takes milliseconds to build,
/// and with `--workers 1` the serving thread must not wait for it. Errors are logged and
/// recorded by the control plane; the last good table keeps serving.
async fn apply(
    control: &Arc<Control>,
    update: tether_model::ProviderUpdate,
) -> tether_providers::Applied {
    let control = control.clone();
    match tokio::task::spawn_blocking(move || control.apply(update)).await {
        Ok(Ok(version)) => Ok(version),
        Ok(Err(rejected)) => Err(rejected.errors),
        Err(e) => {
            tracing::error!(error = %e, "applying a configuration change failed");
            Err(vec![format!("applying the change failed: {e}")])
        }
    }
}

/// Aborts a task when dropped (the source stops with its follower).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
