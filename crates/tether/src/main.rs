//! The `tether` command line.

use std::io::BufReader;
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tether::upgrade;

mod alloc;

#[global_allocator]
static ALLOC: alloc::Mimalloc = alloc::Mimalloc;

/// Tether: a reverse proxy and load balancer for containerised services.
///
/// Routes by host and path, balances across replicas (round robin, weights, least requests,
/// consistent hashing) and keeps each user's session on the replica that holds it. Routes come
/// from a TOML file that Tether watches, from the labels of Docker containers as they start and
/// stop, from a Swarm's services and tasks, and from the admin API (shared through etcd); every
/// change applies without dropping a connection.
#[derive(Debug, Parser)]
#[command(name = "tether", version, about, long_about, after_help = EXAMPLES)]
struct Cli {
    /// Log filter: a level (error, warn, info, debug, trace) or per-target list such as
    /// `info,tether_proxy=debug`. Overridden by RUST_LOG.
    #[arg(long, global = true, default_value = "info", env = "TETHER_LOG")]
    log: String,

    /// Operational log lines as text (default) or one JSON object per line.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "TETHER_LOG_FORMAT"
    )]
    log_format: LogFormat,

    /// Serving workers, each a thread with its own event loop, listening sockets (SO_REUSEPORT)
    /// and server connections. Default: the file's `workers`, else one per CPU this process may
    /// use (its affinity mask and CPU quota). With 1, serving and the control plane share one
    /// thread, the cheapest setting per request when a core is dedicated.
    #[arg(long, global = true, env = "TETHER_WORKERS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,

    #[command(subcommand)]
    command: Command,
}

const EXAMPLES: &str = "Examples:
  tether demo                                  # the sticky-session demo on 127.0.0.1:8080
  tether run --config examples/rules.toml      # serve a configuration, reloading it on change
  tether run --docker --listen 0.0.0.0:80      # route to labelled containers as they come and go
  tether run --swarm --listen 0.0.0.0:80 --key-file /run/secrets/tether_key
                                               # route to a Swarm's services (on a manager)
  tether run --listen 0.0.0.0:80 --admin 127.0.0.1:8081 --store etcd://etcd:2379/tether
                                               # start empty; routes come from the API (docs/api.md)
  tether check --config tether.toml --docker   # report configuration and label errors, start nothing
  tether check --swarm                         # what every Swarm service declares, and why not
  tether upgrade                               # replace the running Tether, no request failed
  tether whoami --listen 127.0.0.1:9001 --name web-1

Configuration reference: docs/configuration.md; container labels: docs/labels.md; admin API: docs/api.md";

// Parsed once at start: the size of the `run` variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the routes and services of a configuration file and/or of Docker containers, applying
    /// each change live.
    Run(RunArgs),
    /// Replace the running Tether with a new process (a new binary, say) without refusing or
    /// failing a request: the new one takes over every listening socket, the old one answers
    /// each kept-alive connection's next response with `Connection: close`, sends h2 clients
    /// GOAWAY, and exits once drained. SIGUSR2 to the running process does the same.
    Upgrade {
        /// The executable to start. Default: the running one's (as it was started).
        #[arg(long, value_name = "PATH")]
        binary: Option<PathBuf>,
        /// The running Tether's state directory (its control socket is there).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// The running Tether's control socket (default: <state-dir>/tether.sock).
        #[arg(long, value_name = "PATH", env = "TETHER_CONTROL_SOCKET")]
        control_socket: Option<PathBuf>,
        /// How long the new process may take to start serving.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Check a configuration file and/or the labels of running containers (or a Swarm's
    /// services); report every error (with its line, or its container and label) and start
    /// nothing. Takes `tether run`'s flags, so a run's command line with `check` in place of
    /// `run` checks what that run would serve.
    Check(RunArgs),
    /// Run the demo backend: it answers with its name, host, the request's headers and a
    /// per-session visit counter kept under the `connect.sid` cookie.
    Whoami {
        /// Listen address.
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: SocketAddr,
        /// Name shown in every answer. Default: the host name.
        #[arg(long)]
        name: Option<String>,
        /// Keep sessions as files in this directory instead of in memory: replicas that mount
        /// one directory share their sessions, as an application with a shared session store
        /// does, and a session outlives a task's replacement.
        #[arg(long, value_name = "DIR")]
        sessions: Option<PathBuf>,
        /// Check the whoami running beside this command (a container's HEALTHCHECK): GET
        /// /health on the address it listens on, which it keeps in
        /// $TETHER_STATE_DIR/whoami.listen; succeed on a 2xx answer.
        #[arg(long)]
        healthcheck: bool,
    },
    /// GET a URL and succeed on a 2xx answer: a HEALTHCHECK for images without curl.
    Probe {
        url: String,
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        timeout: Duration,
        /// Print the answer's body to stdout (read an admin API from inside a container).
        #[arg(long)]
        print: bool,
        /// Send the token in this file as `Authorization: Bearer` (the admin API's token, a
        /// Docker secret). Implies --print.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
    },
    /// Start Tether on 127.0.0.1:8080 with four whoami backends: /service1 sticky, /service2 round
    /// robin, two replicas each, and print the commands that show the difference.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
}

/// What `tether run` (and `tether check`) take.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The configuration file (TOML). See docs/configuration.md.
    #[arg(short, long, env = "TETHER_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    docker: DockerArgs,
    /// Without --config: the address of the `web` entrypoint.
    #[arg(long, default_value = "0.0.0.0:80", env = "TETHER_LISTEN")]
    listen: SocketAddr,
    /// Declare an entrypoint: `db=0.0.0.0:5432,tcp` (TCP routers), `websecure=0.0.0.0:443,tls`
    /// (HTTPS), `web=0.0.0.0:8080`. Repeatable; adds to the file's, or replaces the one of that
    /// name. A Docker Flow Proxy `srcPort` finds its entrypoint by port.
    #[arg(long = "entrypoint", value_name = "NAME=ADDR[,tcp][,tls]", value_parser = parse_entrypoint)]
    entrypoints: Vec<tether_model::file_config::EntrypointFlag>,
    /// Serve the stats page on every traffic entrypoint at this path, as HAProxy's `stats uri`
    /// (Interlock's /haproxy?stats): read-only, behind basic auth with the admin token as
    /// password. The file's [stats] path does the same.
    #[arg(long, value_name = "PATH", env = "TETHER_STATS_PATH")]
    stats_path: Option<String>,
    /// Without --config: a file holding the affinity key (at least 32 bytes), the same on every
    /// Tether replica (a Docker secret, say). Default: a key generated in the state directory.
    #[arg(long, env = "TETHER_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// Where state is kept (a generated affinity key). Default: $TETHER_STATE_DIR,
    /// /var/lib/tether as root, else ~/.local/state/tether.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// How long requests in flight may finish on SIGTERM or Ctrl-C, and how long a stopping or
    /// unhealthy container keeps the sessions pinned to it, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    drain: Duration,
    #[command(flatten)]
    admin: AdminArgs,
    /// The access log: one line per request with its route, service, server, status,
    /// duration, bytes and affinity outcome. Off by default.
    #[arg(long, value_enum, default_value = "off", env = "TETHER_ACCESS_LOG")]
    access_log: AccessLogFormat,
    /// Write the access log to this file (appended to, reopened on SIGHUP for log
    /// rotation) instead of stdout.
    #[arg(long, value_name = "PATH", env = "TETHER_ACCESS_LOG_FILE")]
    access_log_file: Option<PathBuf>,
    /// Take over the listening sockets of the Tether running on the control socket (no
    /// connection is refused or dropped), which then drains and exits. Without one running,
    /// start afresh. `tether upgrade` starts the successor this way.
    #[arg(long)]
    takeover: bool,
    /// The control socket `tether upgrade` and `--takeover` talk to. Default:
    /// <state-dir>/tether.sock.
    #[arg(long, value_name = "PATH", env = "TETHER_CONTROL_SOCKET")]
    control_socket: Option<PathBuf>,
    /// How long connecting to a server may take (TCP and, for https:// servers, TLS) before it
    /// is taken out of rotation for every request and the request goes to another server.
    /// Overrides [timeouts] connect; default 5s (HAProxy sets none and its examples use 5s;
    /// Traefik's dialTimeout is 30s; NGINX's proxy_connect_timeout 60s).
    #[arg(long, value_name = "DURATION", value_parser = parse_positive, env = "TETHER_CONNECT_TIMEOUT")]
    connect_timeout: Option<Duration>,
    /// dockercloud/haproxy's DEFAULT_SSL_CERT: the default certificate, its key and chain
    /// as PEM text (`\n` as two characters is read as a line break), served to clients
    /// naming no host or an unknown one. Needs a TLS entrypoint. [[tls.certificates]] with
    /// `default = true` is the file way.
    #[arg(
        long = "default-ssl-cert",
        value_name = "PEM",
        env = "DEFAULT_SSL_CERT",
        hide_env_values = true
    )]
    default_ssl_cert: Option<String>,
}

/// Operational log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Access-log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AccessLogFormat {
    Off,
    /// NCSA common log format, then Tether's fields as key=value.
    Common,
    Json,
}

/// The admin API and where its changes are kept.
#[derive(Debug, clap::Args)]
struct AdminArgs {
    /// Serve the admin API (docs/api.md) on this address, e.g. 127.0.0.1:8081; never a traffic
    /// port. Overrides the file's [admin] address. Off by default.
    #[arg(long, value_name = "ADDR", env = "TETHER_ADMIN")]
    admin: Option<SocketAddr>,
    /// A file holding the admin token (a Docker secret, say); wins over $TETHER_ADMIN_TOKEN.
    /// Every change needs it; so does every read when --admin is beyond loopback. Without a
    /// token the API is read-only and only starts on loopback.
    #[arg(long, value_name = "FILE", env = "TETHER_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// Keep API changes in etcd, shared by every replica: etcd://HOST:2379[,HOST:2379...]/PREFIX
    /// (endpoints tried in turn). Default: a state file in the state directory. Needs a build
    /// with the `etcd` feature (the Docker image has it).
    #[arg(long, value_name = "URL", env = "TETHER_STORE")]
    store: Option<String>,
    /// Serve Docker Flow Proxy's /v1/docker-flow-proxy/reconfigure and /remove on the admin
    /// listener, translated into API changes (they need the token like every change).
    #[arg(long, env = "TETHER_DFP_COMPAT")]
    dfp_compat: bool,
    /// Admit this source network to the two Docker Flow Proxy endpoints without the token, e.g.
    /// 10.0.0.0/8 (anyone there can then change routes through them). Repeatable.
    #[arg(long, value_name = "CIDR", requires = "dfp_compat")]
    dfp_compat_allow: Vec<String>,
}

impl AdminArgs {
    fn options(
        &self,
    ) -> anyhow::Result<(tether::app::AdminOptions, Option<tether::app::StoreSpec>)> {
        let token = match &self.admin_token_file {
            Some(f) => {
                let t = std::fs::read_to_string(f)
                    .map_err(|e| anyhow::anyhow!("--admin-token-file {}: {e}", f.display()))?;
                Some(t.trim().to_string())
            }
            None => std::env::var("TETHER_ADMIN_TOKEN")
                .ok()
                .map(|t| t.trim().to_string()),
        };
        let mut allow = Vec::new();
        for c in &self.dfp_compat_allow {
            allow.push(
                tether_model::file_config::Cidr::parse(c)
                    .map_err(|e| anyhow::anyhow!("--dfp-compat-allow: {e}"))?,
            );
        }
        let dfp = self.dfp_compat.then_some(tether_admin::DfpConfig {
            allow,
            ..Default::default()
        });
        let store = self
            .store
            .as_deref()
            .map(tether::app::StoreSpec::parse)
            .transpose()?;
        Ok((
            tether::app::AdminOptions {
                address: self.admin,
                token,
                dfp,
            },
            store,
        ))
    }
}

/// Where the Docker engine is.
#[derive(Debug, clap::Args)]
struct DockerArgs {
    /// Follow the Docker engine: its containers' labels become routes (docs/labels.md). The
    /// endpoint defaults to $DOCKER_HOST, else unix:///var/run/docker.sock. Tether only reads.
    #[arg(long, value_name = "ENDPOINT", num_args = 0..=1, default_missing_value = "")]
    docker: Option<String>,
    /// The network to reach containers on when their labels name none and Tether shares none
    /// with them.
    #[arg(long, value_name = "NAME", env = "TETHER_DOCKER_NETWORK")]
    docker_network: Option<String>,
    /// The container Tether runs in, which decides the networks it reaches: found from this
    /// process's own mounts and cgroup by default; a container name or id; or `none` for the
    /// host (which reaches this engine's local bridge networks, never an overlay). A name that
    /// no running container has is refused at start.
    #[arg(long, value_name = "NAME|none", env = "TETHER_DOCKER_SELF")]
    docker_self: Option<String>,
    /// Read only the containers (and Swarm services) carrying this label with this value, e.g.
    /// com.docker.compose.project=shop (several Tethers on one engine, each its own stack).
    #[arg(long, value_name = "LABEL=VALUE", env = "TETHER_DOCKER_CONSTRAINT")]
    docker_constraint: Option<String>,
    /// Where Tether's own Docker secrets are mounted: a container's `tether.tls.secret=NAME`
    /// label serves the certificate and key in DIR/NAME (docs/labels.md).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/run/secrets",
        env = "TETHER_SECRETS_DIR"
    )]
    secrets_dir: PathBuf,
    /// dockercloud/haproxy's HTTP_BASIC_AUTH: user:password,... (a comma in a password escaped
    /// as \,) that every dockercloud-dialect service asks for, unless it sets
    /// EXCLUDE_BASIC_AUTH. The passwords are hashed at start and never kept.
    #[arg(
        long,
        value_name = "USER:PASS,...",
        env = "HTTP_BASIC_AUTH",
        hide_env_values = true
    )]
    http_basic_auth: Option<String>,
    /// dockercloud/haproxy's HTTP_BASIC_AUTH_SECURE: user:hash,... (mkpasswd -m sha-512, or
    /// htpasswd -nB), as HTTP_BASIC_AUTH.
    #[arg(
        long,
        value_name = "USER:HASH,...",
        env = "HTTP_BASIC_AUTH_SECURE",
        hide_env_values = true
    )]
    http_basic_auth_secure: Option<String>,
    /// dockercloud/haproxy's GZIP_COMPRESSION_TYPE: the media types (space-separated) that
    /// every dockercloud-dialect service's responses are gzipped in, e.g. "text/html text/css".
    #[arg(long, value_name = "TYPES", env = "GZIP_COMPRESSION_TYPE")]
    gzip_compression_type: Option<String>,
    /// Interlock 1.x's extension name: only containers labelled interlock.ext.name=NAME (or
    /// with no such label) are read, as an Interlock extension of that name took them.
    #[arg(long, value_name = "NAME", env = "TETHER_INTERLOCK_EXT_NAME")]
    interlock_ext_name: Option<String>,
    /// Follow a Swarm manager: its services' labels (deploy.labels) and their containers'
    /// become routes, its tasks the servers (docs/swarm.md). Same endpoint rules as --docker;
    /// run Tether on a manager. With --docker too, task containers are left to this one.
    #[arg(long, value_name = "ENDPOINT", num_args = 0..=1, default_missing_value = "")]
    swarm: Option<String>,
    /// How often tasks are read when nothing is converging (service events and updates are
    /// followed faster, every 250 ms).
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = parse_poll, env = "TETHER_SWARM_POLL")]
    swarm_poll: Duration,
}

impl DockerArgs {
    fn options(&self) -> anyhow::Result<Option<tether::app::DockerOptions>> {
        let Some(ep) = &self.docker else {
            return Ok(None);
        };
        Ok(Some(tether::app::DockerOptions {
            endpoint: endpoint("--docker", ep)?,
            network: self.docker_network.clone(),
            constraint: self.constraint()?,
            self_spec: self.self_spec(),
            secrets_dir: Some(self.secrets_dir.clone()),
            dockercloud: self.dockercloud()?,
            interlock_ext_name: self.interlock_ext_name.clone(),
        }))
    }

    /// `HTTP_BASIC_AUTH`, `HTTP_BASIC_AUTH_SECURE` and `GZIP_COMPRESSION_TYPE` as the
    /// middlewares they ask for.
    fn dockercloud(&self) -> anyhow::Result<tether_model::labels::dockercloud::ProxyWide> {
        use tether_model::labels::dockercloud;
        Ok(dockercloud::ProxyWide {
            basic_auth: dockercloud::basic_auth(
                self.http_basic_auth.as_deref(),
                self.http_basic_auth_secure.as_deref(),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?,
            compress: dockercloud::gzip(self.gzip_compression_type.as_deref())
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        })
    }

    fn swarm_options(&self) -> anyhow::Result<Option<tether::app::SwarmOptions>> {
        let Some(ep) = &self.swarm else {
            return Ok(None);
        };
        Ok(Some(tether::app::SwarmOptions {
            endpoint: endpoint("--swarm", ep)?,
            network: self.docker_network.clone(),
            constraint: self.constraint()?,
            self_spec: self.self_spec(),
            poll: self.swarm_poll,
            secrets_dir: Some(self.secrets_dir.clone()),
            dockercloud: self.dockercloud()?,
            interlock_ext_name: self.interlock_ext_name.clone(),
        }))
    }

    fn self_spec(&self) -> tether_providers::docker::whereabouts::SelfSpec {
        tether_providers::docker::whereabouts::SelfSpec::parse(
            self.docker_self.as_deref().unwrap_or_default(),
        )
    }

    fn constraint(&self) -> anyhow::Result<Option<(String, String)>> {
        Ok(match self.docker_constraint.as_deref() {
            None | Some("") => None,
            Some(c) => match c.split_once('=') {
                Some((k, v)) if !k.is_empty() => Some((k.to_string(), v.to_string())),
                _ => anyhow::bail!("--docker-constraint {c:?}: expected LABEL=VALUE"),
            },
        })
    }
}

/// An engine endpoint given to `flag` (empty: `$DOCKER_HOST`, else the default socket).
fn endpoint(flag: &str, ep: &str) -> anyhow::Result<tether_providers::docker::Endpoint> {
    if ep.is_empty() {
        tether_providers::docker::Endpoint::from_env()
    } else {
        tether_providers::docker::Endpoint::parse(ep)
    }
    .map_err(|e| anyhow::anyhow!("{flag}: {e}"))
}

fn parse_poll(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if tether_model::file_config::SWARM_POLL_RANGE.contains(&d) {
        Ok(d)
    } else {
        Err(format!("{s:?}: expected between 50ms and 60s"))
    }
}

fn parse_entrypoint(s: &str) -> Result<tether_model::file_config::EntrypointFlag, String> {
    tether_model::file_config::EntrypointFlag::parse(s)
}

fn parse_positive(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be more than zero".into()),
        d => Ok(d),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    tether_model::duration::parse(s)
}

fn init_logging(filter: &str, format: LogFormat) {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_string());
    let targets: tracing_subscriber::filter::Targets = spec.parse().unwrap_or_else(|e| {
        eprintln!("tether: ignoring log filter {spec:?}: {e}");
        "info".parse().expect("valid filter")
    });
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let text = (format == LogFormat::Text).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
    });
    let json = (format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
    });
    tracing_subscriber::registry()
        .with(text)
        .with(json)
        .with(targets)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log, cli.log_format);
    // The control plane's runtime, and with one worker the serving one too; more workers each
    // run a runtime of their own (`tether::workers`).
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tether: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command, cli.workers.map(usize::from))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tether: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `tether check`: every error in the file, the containers' labels and the Swarm services'; fails
/// if there is one. "0 routes" always comes with the reasons.
async fn check(args: RunArgs) -> anyhow::Result<()> {
    let RunArgs {
        config,
        docker,
        key_file,
        admin,
        entrypoints: flags,
        listen,
        ..
    } = args;
    let swarm = docker.swarm_options()?;
    let docker_opts = docker.options()?;
    if config.is_none() && docker_opts.is_none() && swarm.is_none() && admin.store.is_none() {
        anyhow::bail!(
            "nothing to check: give --config FILE, --docker, --swarm, --store URL, or several"
        );
    }
    let mut failed = false;
    let mut entrypoints = vec!["web".to_string()];
    let mut tls_entrypoints = Vec::new();
    let mut tcp_entrypoints = Vec::new();
    let mut ports: Vec<(String, u16)> = vec![("web".into(), listen.port())];
    let mut key_configured = false;
    // The resolvers labels may name: the file's.
    let mut acme_names: Vec<String> = Vec::new();
    if let Some(config) = &config {
        match tether_providers::file::load(config) {
            Ok(cfg) => {
                println!(
                    "{}: OK ({} entrypoints, {} routes, {} services)",
                    config.display(),
                    cfg.settings.entrypoints.len(),
                    cfg.routes.len(),
                    cfg.services.len()
                );
                entrypoints = cfg
                    .settings
                    .entrypoints
                    .iter()
                    .map(|e| e.0.clone())
                    .collect();
                tls_entrypoints = cfg.settings.tls.entrypoints.keys().cloned().collect();
                tcp_entrypoints = cfg.settings.tcp_entrypoints.clone();
                acme_names = cfg.settings.acme.iter().map(|r| r.name.clone()).collect();
                ports = cfg
                    .settings
                    .entrypoints
                    .iter()
                    .map(|(n, a)| (n.clone(), a.port()))
                    .collect();
                key_configured = !matches!(
                    cfg.settings.affinity_key,
                    tether_model::file_config::KeySource::Generated
                );
                failed |= !check_certificates(&cfg.settings.tls, !cfg.settings.acme.is_empty());
                // ACME's challenges need their entrypoints, as `tether run` will have them.
                let mut settings = cfg.settings.clone();
                for f in &flags {
                    settings.add_entrypoint(f);
                }
                let (errors, warnings) = tether_model::acme::check_settings(&settings);
                for w in warnings {
                    println!("warning: {w}");
                }
                for e in &errors {
                    eprintln!("{}: {e}", config.display());
                }
                failed |= !errors.is_empty();
            }
            Err(e) => {
                for m in e.messages() {
                    eprintln!("{m}");
                }
                failed = true;
            }
        }
    }
    // --entrypoint adds to (or redeclares) the file's entrypoints, as `tether run` does.
    for f in &flags {
        if !entrypoints.contains(&f.name) {
            entrypoints.push(f.name.clone());
        }
        ports.retain(|(n, _)| n != &f.name);
        ports.push((f.name.clone(), f.addr.port()));
        tls_entrypoints.retain(|n| n != &f.name);
        tcp_entrypoints.retain(|n| n != &f.name);
        if f.tls {
            tls_entrypoints.push(f.name.clone());
        }
        if f.tcp {
            tcp_entrypoints.push(f.name.clone());
        }
    }
    // The engine is only asked with --docker or --swarm: a file's [swarm] is checked as text.
    // As `tether run` reads it: --key-file (or $TETHER_KEY_FILE), which must be a key.
    if let Some(k) = &key_file {
        let source = tether_model::file_config::KeySource::File(k.clone());
        match tether_control::key::load(&source, Path::new("/nonexistent")) {
            Ok(_) => key_configured = true,
            Err(e) => {
                eprintln!("--key-file: {e}");
                failed = true;
            }
        }
    }
    let (_, store) = admin.options()?;
    if let Some(spec) = &store {
        key_configured = true; // the replicas share the store's key, or report one that differs
        failed |= check_replica_keys(spec, key_file.as_deref()).await?;
    }
    if let Some(d) = &docker_opts {
        failed |= check_docker(
            d,
            (
                entrypoints.clone(),
                tls_entrypoints.clone(),
                tcp_entrypoints.clone(),
                ports.clone(),
            ),
            swarm.is_some(),
            &acme_names,
        )
        .await?;
    }
    if let Some(s) = &swarm {
        let kinds = (entrypoints, tls_entrypoints, tcp_entrypoints, ports);
        failed |= check_swarm(s, kinds, key_configured, &acme_names).await?;
    }
    if failed {
        anyhow::bail!("configuration has errors");
    }
    Ok(())
}

/// `--store`: the replicas following it, and whether they seal with one affinity key (the
/// store's, or `key_file`'s when given); true if they do not.
async fn check_replica_keys(
    spec: &tether::app::StoreSpec,
    key_file: Option<&Path>,
) -> anyhow::Result<bool> {
    let dir = std::env::temp_dir();
    let store = tether::store::open(Some(spec), &dir).await?;
    let mut snapshots = store.subscribe();
    let read = tokio::time::timeout(Duration::from_secs(5), snapshots.wait_for(Option::is_some))
        .await
        .map(|s| s.map(|s| s.clone()));
    let Ok(Ok(Some(snapshot))) = read else {
        eprintln!("{spec}: no answer within 5 s");
        return Ok(true);
    };
    let expected = match key_file {
        Some(k) => Some(
            tether_control::key::load(
                &tether_model::file_config::KeySource::File(k.to_path_buf()),
                &dir,
            )?
            .fingerprint(),
        ),
        None => snapshot
            .affinity_key
            .as_deref()
            .map(|k| tether_balance::AffinityKey::from_secret(k.trim().as_bytes()).fingerprint()),
    };
    let mut by_print: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
    for (id, r) in &snapshot.replicas {
        let f = r["fingerprint"].as_str().unwrap_or("?").to_string();
        by_print.entry(f).or_default().push(id);
    }
    println!(
        "{spec}: {} replicas following it, {} affinity keys among them",
        snapshot.replicas.len(),
        by_print.len()
    );
    // Every replica should hold the expected key (or, with none known, one and the same).
    let odd: Vec<String> = by_print
        .iter()
        .filter(|(f, _)| match &expected {
            Some(e) => e != *f,
            None => by_print.len() > 1,
        })
        .map(|(f, ids)| format!("{} (fingerprint {f})", ids.join(", ")))
        .collect();
    if !odd.is_empty() {
        eprintln!(
            "{spec}: replicas seal sticky cookies with another affinity key{}: {}. Give them all the same --key-file, or none, so that they share the store's",
            expected.map_or(String::new(), |e| format!(" than {e}")),
            odd.join("; ")
        );
        return Ok(true);
    }
    Ok(false)
}

/// Load every certificate a TLS entrypoint would serve, as start-up does; false if one cannot.
/// `acme`: resolvers are declared (certificates will come from them).
fn check_certificates(tls: &tether_model::file_config::TlsSettings, acme: bool) -> bool {
    let mut ok = true;
    if !tls.entrypoints.is_empty() && tls.certificates.is_empty() && acme {
        println!("note: no [[tls.certificates]]: TLS handshakes fail until ACME (or the admin API, or a label) gives the first certificate");
    } else if !tls.entrypoints.is_empty() && tls.certificates.is_empty() {
        println!("warning: TLS entrypoints without [[tls.certificates]]: handshakes fail until a certificate comes through the admin API (PUT /api/certificates/NAME) or a label (tether.tls.secret, SSL_CERT)");
    }
    for (i, files) in tls.certificates.iter().enumerate() {
        match tether_proxy::front::tls::certs::load(files) {
            Ok(l) => {
                let days = l
                    .not_after
                    .duration_since(std::time::SystemTime::now())
                    .map_or(0, |d| d.as_secs() / 86_400);
                println!(
                    "tls.certificates[{i}]: OK ({}; {}; expires in {days} days)",
                    l.names.join(", "),
                    files.cert_file.display()
                );
            }
            Err(e) => {
                eprintln!("tls.certificates[{i}]: {e}");
                ok = false;
            }
        }
    }
    ok
}

/// Tether's entrypoints as `tether check` knows them: every name, the TLS ones, the TCP ones, and
/// each one's port.
type Kinds = (Vec<String>, Vec<String>, Vec<String>, Vec<(String, u16)>);

/// The Docker provider's part of `tether check`; true if it found errors.
async fn check_docker(
    d: &tether::app::DockerOptions,
    (entrypoints, tls, tcp, ports): Kinds,
    with_swarm: bool,
    acme: &[String],
) -> anyhow::Result<bool> {
    let mut cfg = d.config(entrypoints, tls, tcp, ports, Duration::ZERO, with_swarm);
    cfg.settings.acme_resolvers = Some(acme.to_vec());
    let (update, running) = tether_providers::docker::snapshot(&cfg).await?;
    for e in &update.errors {
        eprintln!("docker: {e}");
    }
    println!(
        "docker {}: {running} containers running, {} routes and {} services from their labels{}",
        d.endpoint,
        update.routes.len(),
        update.services.len(),
        if update.errors.is_empty() {
            String::new()
        } else {
            format!(", {} errors", update.errors.len())
        }
    );
    if !with_swarm {
        let labelled =
            tether_providers::swarm::labelled_services(&d.endpoint, d.constraint.as_ref()).await;
        if !labelled.is_empty() {
            println!(
                "docker: note: {} Swarm services carry routing labels on the service itself (deploy.labels, --label-add): {}. The Docker provider reads containers only; add --swarm to read them",
                labelled.len(),
                labelled.join(", ")
            );
        }
    }
    let bad_certificate = !check_declared_certificates("docker", &update.certificates);
    Ok(!update.errors.is_empty() || bad_certificate)
}

/// Load each certificate that labels declare, as serving would; false if one cannot serve.
fn check_declared_certificates(provider: &str, decls: &[tether_model::CertificateDecl]) -> bool {
    let mut ok = true;
    for d in decls {
        match tether_proxy::front::tls::certs::load_declared(d) {
            Ok(l) => println!(
                "{provider}: certificate {} ({}): OK ({})",
                d.name,
                d.origin,
                l.names.join(", ")
            ),
            Err(e) => {
                eprintln!("{provider}: certificate {} ({}): {e}", d.name, d.origin);
                ok = false;
            }
        }
    }
    ok
}

/// The Swarm provider's part of `tether check`; true if it found errors.
async fn check_swarm(
    s: &tether::app::SwarmOptions,
    (entrypoints, tls, tcp, ports): Kinds,
    key_configured: bool,
    acme: &[String],
) -> anyhow::Result<bool> {
    let mut cfg = s.config(entrypoints, tls, tcp, ports, Duration::ZERO, key_configured);
    cfg.settings.acme_resolvers = Some(acme.to_vec());
    let (outcome, services) = tether_providers::swarm::snapshot(&cfg).await?;
    for e in &outcome.update.errors {
        eprintln!("swarm: {e}");
    }
    for n in &outcome.notes {
        println!("swarm: note: {n}");
    }
    println!(
        "swarm {}: {services} services, {} tasks in rotation, {} routes and {} services from their labels{}",
        s.endpoint,
        outcome.tasks,
        outcome.update.routes.len(),
        outcome.update.services.len(),
        if outcome.update.errors.is_empty() { String::new() } else { format!(", {} errors", outcome.update.errors.len()) }
    );
    let bad_certificate = !check_declared_certificates("swarm", &outcome.update.certificates);
    Ok(!outcome.update.errors.is_empty() || bad_certificate)
}

async fn run(cmd: Command, workers: Option<usize>) -> anyhow::Result<()> {
    match cmd {
        Command::Run(RunArgs {
            config,
            docker,
            listen,
            key_file,
            state_dir,
            drain,
            admin,
            access_log,
            access_log_file,
            takeover,
            control_socket,
            default_ssl_cert,
            connect_timeout,
            entrypoints,
            stats_path,
        }) => {
            let state_dir = state_dir.unwrap_or_else(tether::state_dir::default);
            let control_path =
                control_socket.unwrap_or_else(|| state_dir.join(upgrade::SOCKET_NAME));
            let (admin, store) = admin.options()?;
            use tether_proxy::upstream::meter::{Format, Target};
            let format = match access_log {
                AccessLogFormat::Off if access_log_file.is_some() => {
                    anyhow::bail!("--access-log-file needs --access-log common or json")
                }
                AccessLogFormat::Off => None,
                AccessLogFormat::Common => Some(Format::Common),
                AccessLogFormat::Json => Some(Format::Json),
            };
            let access_log =
                format.map(|f| (f, access_log_file.map_or(Target::Stdout, Target::File)));
            let mut handover = None;
            if takeover {
                let path = control_path.clone();
                handover = tokio::task::spawn_blocking(move || upgrade::take_over(&path)).await??;
                if handover.is_none() {
                    tracing::info!(socket = %control_path.display(), "--takeover: no Tether is running there; starting afresh");
                }
            }
            let inherited = handover
                .as_mut()
                .map(|h: &mut upgrade::Handover| std::mem::take(&mut h.sockets))
                .unwrap_or_default();
            let instance = tether::app::start_with(
                tether::app::Options {
                    config,
                    listen,
                    key_file,
                    swarm: docker.swarm_options()?,
                    docker: docker.options()?,
                    state_dir,
                    drain,
                    admin,
                    store,
                    access_log,
                    default_certificate: default_ssl_cert.map(tether::app::PemText),
                    connect_timeout,
                    entrypoints,
                    stats_path,
                    workers,
                    // One per CPU this process may use: its affinity mask and cgroup quota.
                    default_workers: std::thread::available_parallelism()
                        .map_or(1, std::num::NonZeroUsize::get),
                },
                inherited,
            )
            .await?;
            let took_over = handover.is_some();
            if let Some(h) = handover {
                let old = h.old_pid;
                match tokio::task::spawn_blocking(move || h.serving()).await? {
                    Ok(()) => tracing::info!(
                        old_pid = old,
                        "took over every listening socket; the old process drains and exits"
                    ),
                    Err(e) => tracing::warn!(
                        old_pid = old,
                        "the old process did not confirm the takeover: {e:#}"
                    ),
                }
            }
            #[cfg(unix)]
            if let Some(log) = instance.access_log.clone() {
                let mut hup =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        tracing::info!("SIGHUP: reopening the access log");
                        log.reopen();
                    }
                });
            }
            let control = match upgrade::ControlSocket::bind(&control_path) {
                Ok(c) => Some(c),
                Err(e) if e.to_string().contains("another Tether") => return Err(e),
                Err(e) => {
                    tracing::warn!("{e:#}; `tether upgrade` cannot reach this process");
                    None
                }
            };
            upgrade::notify_ready(took_over);
            match serve_until_replaced(&instance, control).await {
                Replaced::Signal => {
                    tracing::info!("shutting down: draining requests in flight for up to {drain:?}")
                }
                Replaced::TakenOver(pid) => tracing::info!(
                    new_pid = pid,
                    "taken over: draining requests in flight for up to {drain:?}, then exiting"
                ),
            }
            instance.shutdown().await;
            Ok(())
        }
        Command::Upgrade {
            binary,
            state_dir,
            control_socket,
            timeout,
        } => {
            let state_dir = state_dir.unwrap_or_else(tether::state_dir::default);
            let path = control_socket.unwrap_or_else(|| state_dir.join(upgrade::SOCKET_NAME));
            tokio::task::spawn_blocking(move || {
                upgrade::ask_upgrade(&path, binary.as_deref(), timeout)
            })
            .await?
        }
        Command::Check(args) => check(args).await,
        Command::Demo { listen, state_dir } => {
            let state_dir = state_dir.unwrap_or_else(tether::state_dir::default);
            let (instance, path) = tether::demo::start(listen, &state_dir).await?;
            println!(
                "{}",
                tether::demo::instructions(instance.addr("web"), &path)
            );
            shutdown_signal().await;
            instance.shutdown().await;
            Ok(())
        }
        Command::Whoami {
            healthcheck: true, ..
        } => {
            let addr = whoami_listen_file()
                .and_then(|f| std::fs::read_to_string(f).ok())
                .and_then(|s| s.trim().parse::<SocketAddr>().ok())
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
            let ip = match addr.ip() {
                std::net::IpAddr::V4(v) if v.is_unspecified() => {
                    std::net::Ipv4Addr::LOCALHOST.into()
                }
                std::net::IpAddr::V6(v) if v.is_unspecified() => {
                    std::net::Ipv6Addr::LOCALHOST.into()
                }
                ip => ip,
            };
            let url = format!("http://{}/health", SocketAddr::new(ip, addr.port()));
            let status = tether::probe::get(&url, Duration::from_secs(2)).await?;
            if !status.is_success() {
                anyhow::bail!("{url}: answered {status}");
            }
            Ok(())
        }
        Command::Whoami {
            listen,
            name,
            sessions,
            ..
        } => {
            // Where `--healthcheck` finds it (a container's HEALTHCHECK follows --listen).
            if let Some(f) = whoami_listen_file() {
                let _ = f.parent().map(std::fs::create_dir_all);
                if let Err(e) = std::fs::write(&f, listen.to_string()) {
                    tracing::warn!(file = %f.display(), error = %e, "whoami: cannot note the listen address for --healthcheck");
                }
            }
            let mut id = tether_whoami::Whoami::new("");
            id.name = name.unwrap_or_else(|| id.hostname.clone());
            id.sessions = sessions;
            // On SIGTERM (docker stop) it finishes the requests in progress before exiting.
            tether_whoami::run(listen, id, shutdown_signal()).await?;
            Ok(())
        }
        Command::Probe {
            url,
            timeout,
            print,
            token_file,
        } => {
            let token = token_file
                .map(|f| {
                    std::fs::read_to_string(&f)
                        .with_context(|| format!("--token-file {}", f.display()))
                })
                .transpose()?;
            let status = if print || token.is_some() {
                let (status, body) =
                    tether::probe::get_body(&url, timeout, token.as_deref()).await?;
                use std::io::Write as _;
                std::io::stdout().write_all(&body)?;
                status
            } else {
                tether::probe::get(&url, timeout).await?
            };
            if !status.is_success() {
                anyhow::bail!("{url}: answered {status}");
            }
            Ok(())
        }
    }
}

/// `$TETHER_STATE_DIR/whoami.listen`, when that variable is set (as in the image).
fn whoami_listen_file() -> Option<PathBuf> {
    std::env::var_os("TETHER_STATE_DIR").map(|d| PathBuf::from(d).join("whoami.listen"))
}

/// How a running `tether run` ended.
enum Replaced {
    /// SIGTERM or Ctrl-C.
    Signal,
    /// A successor (this pid) took its sockets over.
    TakenOver(u32),
}

/// Serve until a signal, or until a successor took the sockets over; meanwhile answer the
/// control socket (`tether upgrade`, a `--takeover`) and SIGUSR2 (an upgrade).
async fn serve_until_replaced(
    instance: &tether::app::Instance,
    mut control: Option<upgrade::ControlSocket>,
) -> Replaced {
    // As started: the path of the executable (before a package upgrade replaces the file) and
    // the arguments, which the successor gets too.
    let exe = std::env::current_exe().ok();
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let mut usr2 =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2()).ok();
    let stop = shutdown_signal();
    tokio::pin!(stop);
    // The successor being started, and the `tether upgrade` client waiting to hear of it.
    let mut pending: Option<(tokio::process::Child, Option<BufReader<UnixStream>>)> = None;
    loop {
        let asked = async {
            match &control {
                Some(c) => c.next().await,
                None => std::future::pending().await,
            }
        };
        let successor_exited = async {
            match pending.as_mut() {
                Some((child, _)) => child.wait().await,
                None => std::future::pending().await,
            }
        };
        let usr2_received = async {
            match usr2.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut stop => return Replaced::Signal,
            Some(()) = usr2_received => {
                tracing::info!("SIGUSR2: starting a successor to take over");
                if pending.is_none() {
                    match start_successor(exe.as_deref(), None, &args) {
                        Ok(child) => pending = Some((child, None)),
                        Err(e) => tracing::error!("upgrade: {e:#}; still serving"),
                    }
                }
            }
            status = successor_exited => {
                let why = match status {
                    Ok(s) => format!("the new process exited ({s}) before taking over"),
                    Err(e) => format!("the new process: {e}"),
                };
                tracing::error!("upgrade: {why}; still serving");
                if let Some((_, Some(mut client))) = pending.take() {
                    upgrade::tell(&mut client, &format!("FAILED {why}"));
                }
            }
            asked = asked => match asked {
                upgrade::Asked::Upgrade { mut stream, binary } => {
                    if pending.is_some() {
                        upgrade::tell(&mut stream, "FAILED an upgrade is under way already");
                        continue;
                    }
                    match start_successor(exe.as_deref(), binary.as_deref(), &args) {
                        Ok(child) => {
                            let pid = child.id().unwrap_or(0);
                            tracing::info!(pid, "upgrade: started the successor");
                            upgrade::tell(&mut stream, &format!("STARTED {pid}"));
                            pending = Some((child, Some(stream)));
                        }
                        Err(e) => upgrade::tell(&mut stream, &format!("FAILED {e:#}")),
                    }
                }
                upgrade::Asked::Takeover { stream, pid } => {
                    let Some(c) = control.take() else { continue };
                    let sockets = match instance.sockets() {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::error!("takeover by process {pid}: {e}; still serving");
                            control = Some(c);
                            continue;
                        }
                    };
                    tracing::info!(pid, "handing the listening sockets over to process {pid}");
                    match c.hand_over(stream, sockets).await {
                        Ok(()) => {
                            if let Some((_, Some(mut client))) = pending.take() {
                                upgrade::tell(&mut client, "DONE");
                            }
                            return Replaced::TakenOver(pid);
                        }
                        Err((c, e)) => {
                            tracing::error!("takeover by process {pid} failed: {e:#}; still serving");
                            control = Some(c);
                        }
                    }
                }
            },
        }
    }
}

/// Start `binary` (default: this executable) with these arguments and `--takeover`; its output
/// goes where this process's goes.
fn start_successor(
    exe: Option<&Path>,
    binary: Option<&Path>,
    args: &[std::ffi::OsString],
) -> anyhow::Result<tokio::process::Child> {
    let program = binary.or(exe).ok_or_else(|| {
        anyhow::anyhow!("the running executable's path is unknown: give --binary")
    })?;
    let mut args = args.to_vec();
    if !args.iter().any(|a| a == "--takeover") {
        // After `run` (global options may come before it).
        let at = args
            .iter()
            .position(|a| a == "run")
            .map_or(args.len(), |i| i + 1);
        args.insert(at, "--takeover".into());
    }
    tokio::process::Command::new(program)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(false)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending::<()>().await,
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
