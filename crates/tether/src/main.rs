//! The `tether` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Tether: a reverse proxy and load balancer for containerised services.
///
/// Routes by host and path, balances across replicas (round robin, weights, least requests,
/// consistent hashing) and keeps each user's session on the replica that holds it. Configuration
/// is a TOML file that Tether watches and applies without dropping a connection.
#[derive(Debug, Parser)]
#[command(name = "tether", version, about, long_about, after_help = EXAMPLES)]
struct Cli {
    /// Log filter: a level (error, warn, info, debug, trace) or per-target list such as
    /// `info,tether_proxy=debug`. Overridden by RUST_LOG.
    #[arg(long, global = true, default_value = "info", env = "TETHER_LOG")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

const EXAMPLES: &str = "Examples:
  tether demo                                  # the sticky-session demo on 127.0.0.1:8080
  tether run --config examples/basic.toml      # serve a configuration, reloading it on change
  tether check --config tether.toml            # report configuration errors, start nothing
  tether whoami --listen 127.0.0.1:9001 --name web-1

Configuration reference: docs/configuration.md";

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the routes and services of a configuration file, applying each change to it live.
    Run {
        /// The configuration file (TOML). See docs/configuration.md.
        #[arg(short, long, env = "TETHER_CONFIG")]
        config: PathBuf,
        /// Where state is kept (a generated affinity key). Default: $TETHER_STATE_DIR,
        /// /var/lib/tether as root, else ~/.local/state/tether.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// On SIGTERM or Ctrl-C, how long requests in flight may finish, e.g. 10s.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        drain: Duration,
    },
    /// Check a configuration file and report every error with its line; start nothing.
    Check {
        #[arg(short, long, env = "TETHER_CONFIG")]
        config: PathBuf,
    },
    /// Run the demo backend: it answers with its name, host, the request's headers and a
    /// per-session visit counter kept under the `connect.sid` cookie.
    Whoami {
        /// Listen address.
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: SocketAddr,
        /// Name shown in every answer. Default: the host name.
        #[arg(long)]
        name: Option<String>,
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

fn parse_duration(s: &str) -> Result<Duration, String> {
    tether_model::duration::parse(s)
}

fn init_logging(filter: &str) {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_string());
    let targets: tracing_subscriber::filter::Targets = spec.parse().unwrap_or_else(|e| {
        eprintln!("tether: ignoring log filter {spec:?}: {e}");
        "info".parse().expect("valid filter")
    });
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(targets)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    if let Command::Check { config } = &cli.command {
        return check(config);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tether: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tether: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(config: &std::path::Path) -> ExitCode {
    match tether_providers::file::load(config) {
        Ok(cfg) => {
            println!(
                "{}: OK ({} entrypoints, {} routes, {} services)",
                config.display(),
                cfg.settings.entrypoints.len(),
                cfg.routes.len(),
                cfg.services.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            for m in e.messages() {
                eprintln!("{m}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Run {
            config,
            state_dir,
            drain,
        } => {
            let state_dir = state_dir.unwrap_or_else(tether::state_dir::default);
            let instance = tether::app::start(tether::app::Options {
                config,
                state_dir,
                drain,
            })
            .await?;
            shutdown_signal().await;
            tracing::info!("shutting down: draining requests in flight for up to {drain:?}");
            instance.shutdown().await;
            Ok(())
        }
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
        Command::Whoami { listen, name } => {
            let mut id = tether_whoami::Whoami::new("");
            id.name = name.unwrap_or_else(|| id.hostname.clone());
            tokio::select! {
                r = tether_whoami::run(listen, id) => r?,
                _ = shutdown_signal() => {}
            }
            Ok(())
        }
        Command::Check { .. } => unreachable!("handled before the runtime starts"),
    }
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
