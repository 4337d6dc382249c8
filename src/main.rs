//! The `dhtfs` binary: parses flags, starts things, prints errors as one line.

use std::path::PathBuf;
use std::process::ExitCode;

mod cli;

use clap::Parser;
use cli::{Cli, Command, DevnetArgs, GetArgs, NodeArgs, PutArgs};
use dhtfs::config::{Config, GivenAddrs};
use dhtfs::daemon::Daemon;
use dhtfs::files::{GetOptions, PutOptions, Redundancy};

/// jemalloc, not the system's malloc: blocks move in buffers of up to a
/// megabyte, and glibc hands each back to the kernel and faults it in again
/// (8% of a 3-replica put's CPU, profiled), where jemalloc keeps freed pages
/// for reuse a while. Its large buffers are page-aligned, so a get writes
/// them to disk directly, without a copy into an aligned buffer.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(default_level(&cli.command))
            }),
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
            Command::Put(args) => run_put(args).await,
            Command::Get(args) => run_get(args).await,
            Command::Devnet(args) => run_devnet(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// Daemons log what they do; transfers print their own progress, so only
/// warnings from them.
fn default_level(command: &Command) -> &'static str {
    match command {
        Command::Node(_) | Command::Devnet(_) => "info",
        Command::Put(_) | Command::Get(_) => "warn",
    }
}

fn fail(e: anyhow::Error) -> ExitCode {
    // Our errors carry their cause in their own message; `{e:#}` would print it twice.
    eprintln!("dhtfs: error: {e}");
    ExitCode::FAILURE
}

async fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    let (mut cfg, in_file) = match &args.config {
        Some(path) => Config::load_noting_addrs(path)?,
        None => (Config::default(), GivenAddrs::default()),
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
    if let Some(gateway) = args.gateway {
        cfg.gateway = gateway;
    }
    if args.no_gateway {
        cfg.gateway_enabled = false;
    }
    let flags = GivenAddrs {
        admin: args.admin.is_some(),
        gateway: args.gateway.is_some(),
        metrics: args.metrics.is_some(),
    };
    cfg.follow_listen_port(flags.or(in_file))?;
    if let Ok(token) = std::env::var("DHTFS_ADMIN_TOKEN") {
        cfg.admin_token = Some(token);
    }
    if args.advertise_ip.is_some() {
        cfg.advertise_ip = args.advertise_ip;
    }
    if args.accept_data_loss {
        cfg.accept_data_loss = true;
    }
    cfg.validate()?;
    // Handlers first: a SIGTERM right after the listening line must still stop
    // the node gracefully.
    let signals = Signals::new()?;
    let daemon = Daemon::start(&cfg).await?;
    // Printed on stdout so scripts and tests can learn the port picked for :0.
    println!(
        "listening {} admin {} metrics {} id {} gateway {}",
        daemon.local_addr,
        daemon.admin_addr,
        daemon.metrics_addr,
        daemon.node.me().id,
        gateway_shown(daemon.gateway_addr)
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

async fn run_put(args: PutArgs) -> anyhow::Result<()> {
    let seal = if args.plain || args.hashfile.is_some() {
        None
    } else if args.shared_secret {
        Some(dhtfs::seal::SHARED_SECRET)
    } else {
        let (secret, path, made) =
            dhtfs::files::secret::load_or_create(args.secret_file.as_deref())?;
        if made && !args.quiet {
            eprintln!(
                "made a new convergence secret in {} (keep it: puts under it deduplicate; a capability opens its file without it)",
                path.display()
            );
        }
        Some(secret)
    };
    let opts = PutOptions {
        seal,
        bootstrap: args.peers.or_local(),
        file: args.file,
        replicas: args.replicas.unwrap_or(7),
        chunk_size: args.chunk_size,
        parallel: args.parallel,
        quiet: args.quiet,
        redundancy: match (args.ec, args.replicas, &args.hashfile) {
            (Some(code), _, _) => Redundancy::Coded(code),
            (None, Some(_), _) | (None, None, Some(_)) => Redundancy::Replicas,
            (None, None, None) => Redundancy::Auto(dhtfs::erasure::Code::DEFAULT),
        },
        shard_copies: args.shard_copies,
    };
    let report = dhtfs::files::put(&opts).await?;
    if let Some(path) = &args.hashfile {
        std::fs::write(path, dhtfs::manifest::format_hashfile(&report.chunks))
            .map_err(|e| anyhow::anyhow!("cannot write hash file {}: {e}", path.display()))?;
    }
    if !args.quiet {
        eprintln!("{}", report.summary);
    }
    // The last line on stdout names the file (capability or root), for scripts.
    println!("{}", report.file);
    Ok(())
}

async fn run_get(args: GetArgs) -> anyhow::Result<()> {
    let root = match (&args.root, &args.hashfile) {
        (Some(root), None) => Some(
            root.parse::<dhtfs::files::FileRef>()
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
        (None, Some(_)) => None,
        _ => anyhow::bail!("give either a ROOT key or --hashfile FILE"),
    };
    let opts = GetOptions {
        root,
        hashfile: args.hashfile.clone(),
        out: args.out.clone(),
        bootstrap: args.peers.or_local(),
        parallel: args.parallel,
        quiet: args.quiet,
        stop_after: None,
        sync: args.sync,
    };
    let report = dhtfs::files::get(&opts).await?;
    if !args.quiet {
        eprintln!("{}", report.summary);
    }
    Ok(())
}

async fn run_devnet(args: DevnetArgs) -> anyhow::Result<()> {
    let signals = Signals::new()?;
    std::fs::create_dir_all(&args.dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create {}: {e} (pass another --dir)",
            args.dir.display()
        )
    })?;
    let net = dhtfs::devnet::Devnet::start(args.nodes, args.base_port, &args.dir).await?;
    for (i, d) in net.nodes.iter().enumerate() {
        println!(
            "node {i} listening {} admin {} metrics {} id {} gateway {}",
            d.local_addr,
            d.admin_addr,
            d.metrics_addr,
            d.node.me().id,
            gateway_shown(d.gateway_addr)
        );
    }
    println!(
        "devnet up: try `dhtfs put FILE --bootstrap {}`; Ctrl-C stops it",
        net.nodes[0].local_addr
    );
    signals.wait().await;
    net.shutdown().await;
    Ok(())
}

/// The gateway's address, or `off`.
fn gateway_shown(addr: Option<std::net::SocketAddr>) -> String {
    addr.map_or_else(|| "off".to_string(), |a| a.to_string())
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
