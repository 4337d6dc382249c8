//! The command line: every subcommand's flags, with their defaults in the help.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "dhtfs",
    version,
    about = "A storage node for a content-addressed block store on a Kademlia DHT"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a long-lived storage node.
    Node(NodeArgs),
    /// Store a file in the network, sealed; prints its capability (or, with --plain, its root key) as the last line.
    Put(PutArgs),
    /// Fetch a file from the network by its capability or root key (or the original's hash file).
    Get(GetArgs),
    /// Run N nodes in one process on consecutive ports, for trying things out.
    Devnet(DevnetArgs),
}

#[derive(clap::Args)]
pub struct NodeArgs {
    /// TOML file with any of the settings (see deploy/config/dhtfs.toml); flags win over it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where state lives [default: $STATE_DIRECTORY when set (systemd), else ./dhtfs-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// UDP (DHT) and TCP (blocks) address, one port for both [default: 0.0.0.0:7400].
    #[arg(long, value_name = "IP:PORT")]
    pub listen: Option<SocketAddr>,
    /// A peer to join through; repeatable. Without any, the node rejoins from its last routing snapshot.
    #[arg(long, value_name = "IP:PORT")]
    pub bootstrap: Vec<SocketAddr>,
    /// gRPC admin API address [default: 127.0.0.1:P+1, P the listen port, so 7401]. Set DHTFS_ADMIN_TOKEN to require a bearer token.
    #[arg(long, value_name = "IP:PORT")]
    pub admin: Option<SocketAddr>,
    /// Prometheus metrics address, served on GET /metrics [default: 127.0.0.1:P+2000, so 9400].
    #[arg(long, value_name = "IP:PORT")]
    pub metrics: Option<SocketAddr>,
    /// HTTP gateway address, serving GET /file/<root> and /block/<key> [default: 127.0.0.1:P+2, so 7402].
    #[arg(long, value_name = "IP:PORT")]
    pub gateway: Option<SocketAddr>,
    /// Serve no HTTP gateway (as gateway_enabled = false).
    #[arg(long, conflicts_with = "gateway")]
    pub no_gateway: bool,
    /// The IP to tell peers [default: the listen IP, or the one that routes to the first bootstrap peer].
    #[arg(long, value_name = "IP")]
    pub advertise_ip: Option<std::net::IpAddr>,
    /// Start even when most block files or segment files the index lists are missing (an unmounted disk?), dropping their entries.
    #[arg(long)]
    pub accept_data_loss: bool,
}

#[derive(clap::Args)]
pub struct PutArgs {
    /// The file to store.
    pub file: PathBuf,
    #[command(flatten)]
    pub peers: PeerArgs,
    /// Store whole chunks, each on this many nodes (with --ec: each stripe, the small block naming a chunk's shards) [default: 7; with neither flag, a file of 96 KiB or more on a network of 56 nodes or more is erasure-coded 24/56, anything else stored as 7 replicas].
    #[arg(long, value_name = "R")]
    pub replicas: Option<usize>,
    /// Erasure-code each chunk into N shards, any K of which rebuild it, each shard on --shard-copies nodes; --ec alone means 24/56, which stores about 2.4x the file where --replicas 7 stores 7x (docs/operators/erasure-coding.md).
    #[arg(long, value_name = "K/N", conflicts_with = "hashfile", num_args = 0..=1, default_missing_value = "24/56")]
    pub ec: Option<dhtfs::erasure::Code>,
    /// With --ec: nodes each shard is kept on.
    #[arg(long, default_value_t = dhtfs::stripe::SHARD_COPIES, requires = "ec", value_name = "COPIES")]
    pub shard_copies: usize,
    /// Bytes per block, 4096 to 1048576 (a sealed chunk holds 16 bytes less: its tag).
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    pub chunk_size: u64,
    /// Chunks stored at once.
    #[arg(long, default_value_t = 16)]
    pub parallel: usize,
    /// Also write the original DHTFileStore's hash file (`hash$size|...`) here; implies --plain, as the original's clients read chunks as they are.
    #[arg(long, value_name = "OUT", conflicts_with_all = ["secret_file", "shared_secret"])]
    pub hashfile: Option<PathBuf>,
    /// Store the file unsealed, readable by every node that holds it; prints its root key.
    #[arg(long, conflicts_with_all = ["secret_file", "shared_secret"])]
    pub plain: bool,
    /// The convergence secret sealing keys derive from; made (mode 0600) if absent [default: $XDG_CONFIG_HOME/dhtfs/convergence-secret, else ~/.config/dhtfs/convergence-secret].
    #[arg(long, value_name = "FILE", conflicts_with = "shared_secret")]
    pub secret_file: Option<PathBuf>,
    /// Seal under the network-wide secret instead: the same file put by anyone is stored once, but anyone can confirm a guess of its contents (docs/operators/confidential-files.md).
    #[arg(long)]
    pub shared_secret: bool,
    /// No progress and no summary.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(clap::Args)]
pub struct GetArgs {
    /// The capability or root key `dhtfs put` printed (or give --hashfile).
    pub root: Option<String>,
    /// Where to write the file (`OUT.part` until every chunk is verified).
    #[arg(short, long, value_name = "OUT")]
    pub out: PathBuf,
    /// Read the chunk list from an original DHTFileStore hash file instead of a root.
    #[arg(long, value_name = "FILE")]
    pub hashfile: Option<PathBuf>,
    #[command(flatten)]
    pub peers: PeerArgs,
    /// Chunks fetched at once.
    #[arg(long, default_value_t = 32)]
    pub parallel: usize,
    /// No progress and no summary.
    #[arg(long, short)]
    pub quiet: bool,
    /// Make OUT durable (fsync) before it gets its name; without it a crash
    /// can leave OUT.part (a rerun resumes it) or lose OUT's last writes.
    #[arg(long)]
    pub sync: bool,
}

#[derive(clap::Args)]
pub struct DevnetArgs {
    /// How many nodes.
    #[arg(long, default_value_t = 5)]
    pub nodes: u16,
    /// Node i listens on 127.0.0.1:BASE+i, its admin API on BASE+100+i, its metrics on BASE+200+i, its gateway on BASE+300+i.
    #[arg(long, default_value_t = 7400)]
    pub base_port: u16,
    /// Where the nodes keep their data (node0, node1, ...).
    #[arg(long, default_value = "./dhtfs-devnet")]
    pub dir: PathBuf,
}

/// Where a short-lived client joins the network.
#[derive(clap::Args)]
pub struct PeerArgs {
    /// A node to join through; repeatable [default: 127.0.0.1:7400, the local node].
    #[arg(long, value_name = "IP:PORT")]
    pub bootstrap: Vec<SocketAddr>,
}

impl PeerArgs {
    /// The bootstrap peers, or the local node.
    pub fn or_local(&self) -> Vec<SocketAddr> {
        if self.bootstrap.is_empty() {
            vec![SocketAddr::from(([127, 0, 0, 1], 7400))]
        } else {
            self.bootstrap.clone()
        }
    }
}
