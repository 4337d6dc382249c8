//! The `dhtfs` binary: parses flags, starts things, prints errors as one line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dhtfs::config::Config;
use dhtfs::daemon::Daemon;

#[derive(Parser)]
#[command(
    name = "dhtfs",
    version,
    about = "A storage node for a content-addressed block store on a Kademlia DHT"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a long-lived storage node.
    Node(NodeArgs),
}

#[derive(clap::Args)]
struct NodeArgs {
    /// TOML file with any of the settings (see deploy/config/dhtfs.toml); flags win over it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where state lives [default: $STATE_DIRECTORY when set (systemd), else ./dhtfs-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// UDP (DHT) and TCP (blocks) address, one port for both [default: 0.0.0.0:7400].
    #[arg(long, value_name = "IP:PORT")]
    listen: Option<SocketAddr>,
    /// A peer to join through; repeatable. Without any, the node rejoins from its last routing snapshot.
    #[arg(long, value_name = "IP:PORT")]
    bootstrap: Vec<SocketAddr>,
    /// gRPC admin API address [default: 127.0.0.1:7401]. Set DHTFS_ADMIN_TOKEN to require a bearer token.
    #[arg(long, value_name = "IP:PORT")]
    admin: Option<SocketAddr>,
    /// Prometheus metrics address, served on GET /metrics [default: 127.0.0.1:9400].
    #[arg(long, value_name = "IP:PORT")]
    metrics: Option<SocketAddr>,
    /// The IP to tell peers [default: the listen IP, or the one that routes to the first bootstrap peer].
    #[arg(long, value_name = "IP")]
    advertise_ip: Option<std::net::IpAddr>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Node(args) => run_node(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn fail(e: anyhow::Error) -> ExitCode {
    // Our errors carry their cause in their own message; `{e:#}` would print it twice.
    eprintln!("dhtfs: error: {e}");
    ExitCode::FAILURE
}

async fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    let mut cfg = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    // Under systemd, StateDirectory= hands us the data dir; a flag still wins.
    if let Some(dir) = args.data_dir.or_else(state_directory) {
        cfg.data_dir = dir;
    }
    if let Some(listen) = args.listen {
        cfg.listen = listen;
    }
    if !args.bootstrap.is_empty() {
        cfg.bootstrap = args.bootstrap.iter().map(ToString::to_string).collect();
    }
    if let Some(admin) = args.admin {
        cfg.admin = admin;
    }
    if let Some(metrics) = args.metrics {
        cfg.metrics = metrics;
    }
    if let Ok(token) = std::env::var("DHTFS_ADMIN_TOKEN") {
        cfg.admin_token = Some(token);
    }
    if args.advertise_ip.is_some() {
        cfg.advertise_ip = args.advertise_ip;
    }
    cfg.validate()?;
    // Handlers first: a SIGTERM right after the listening line must still stop
    // the node gracefully.
    let signals = Signals::new()?;
    let daemon = Daemon::start(&cfg).await?;
    // Printed on stdout so scripts and tests can learn the port picked for :0.
    println!(
        "listening {} admin {} metrics {} id {}",
        daemon.local_addr,
        daemon.admin_addr,
        daemon.metrics_addr,
        daemon.node.me().id
    );
    let join = {
        let addrs = dhtfs::daemon::parse_bootstrap(&cfg.bootstrap)?;
        let (node, store) = (daemon.node.clone(), daemon.store.clone());
        tokio::spawn(async move { dhtfs::daemon::join_network(&node, &store, &addrs).await })
    };
    dhtfs::notify::ready(&format!("serving on {}", daemon.local_addr));
    let watchdog = dhtfs::notify::spawn_watchdog();
    signals.wait().await;
    tracing::info!("shutting down");
    dhtfs::notify::stopping();
    if let Some(w) = watchdog {
        w.abort();
    }
    join.abort();
    daemon.shutdown().await;
    Ok(())
}

/// The first directory in `$STATE_DIRECTORY`, as systemd sets it.
fn state_directory() -> Option<PathBuf> {
    let dirs = std::env::var_os("STATE_DIRECTORY")?;
    std::env::split_paths(&dirs)
        .next()
        .filter(|p| !p.as_os_str().is_empty())
}

/// SIGTERM and SIGINT, caught from the moment this exists.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
