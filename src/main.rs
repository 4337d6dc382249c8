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
    /// Where state lives [default: ./dhtfs-data].
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
    eprintln!("dhtfs: error: {e:#}");
    ExitCode::FAILURE
}

async fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    let mut cfg = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(dir) = args.data_dir {
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
    wait_for_signal().await?;
    tracing::info!("shutting down");
    join.abort();
    daemon.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
