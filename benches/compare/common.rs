//! What every part of the compare bench shares: sizes from the environment,
//! medians and p90s, the table's rows, RSS, disk use, and in-process nodes.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use dhtfs::config::Config;
use dhtfs::daemon::Daemon;

/// How big the bench runs; every size has an env var.
pub struct Sizes {
    /// Nodes of each lookup network (dhtfs and mainline alike).
    pub nodes: usize,
    /// Lookups per run, each of a new block.
    pub lookups: usize,
    /// The large file, MiB.
    pub mib: usize,
    /// Blocks of the store whose open time and RSS are measured.
    pub small_blocks: usize,
    /// PutBlocks per client per run, 32 clients at once.
    pub puts_per_client: usize,
    /// 1 MiB blocks of the store whose disk use is measured.
    pub big_blocks: usize,
    /// Runs of every figure; the table shows their medians.
    pub runs: usize,
    /// The parts to run (DHTFS_BENCH_ONLY, comma-separated: lookups, large,
    /// putblock, store; putblock-lone for PutBlock on a lone node only);
    /// every part when unset.
    pub only: Option<Vec<String>>,
}

impl Sizes {
    /// The env vars, each defaulting to the size, or to a tiny one
    /// under DHTFS_BENCH_TINY=1 (for tests/run: the bench must not rot).
    pub fn from_env() -> Sizes {
        let tiny = std::env::var("DHTFS_BENCH_TINY").is_ok_and(|v| v == "1");
        let pick = |name: &str, full: usize, small: usize| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(if tiny { small } else { full })
                .max(1)
        };
        Sizes {
            nodes: pick("DHTFS_BENCH_NODES", 100, 16).max(4),
            lookups: pick("DHTFS_BENCH_LOOKUPS", 50, 5),
            mib: pick("DHTFS_BENCH_MIB", 256, 4),
            small_blocks: pick("DHTFS_BENCH_SMALL_BLOCKS", 100_000, 500),
            puts_per_client: pick("DHTFS_BENCH_PUTS_PER_CLIENT", 10, 1),
            big_blocks: pick("DHTFS_BENCH_BIG_BLOCKS", 64, 4),
            runs: pick("DHTFS_BENCH_RUNS", 3, 1),
            only: std::env::var("DHTFS_BENCH_ONLY")
                .ok()
                .map(|v| v.split(',').map(|p| p.trim().to_string()).collect()),
        }
    }

    /// True if this run measures `part`.
    pub fn wants(&self, part: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|parts| parts.iter().any(|p| p == part))
    }
}

/// The middle value (the lower middle of an even count).
pub fn median(v: &[f64]) -> f64 {
    quantile(v, 0.5)
}

/// The value at or above fraction `q` of the sorted values.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

/// Milliseconds of `d`.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One line of the table: a figure, dhtfs's value, the anchor it is held
/// against, and dhtfs / anchor.
pub struct Row {
    pub figure: String,
    pub dhtfs: f64,
    pub anchor_name: String,
    pub anchor: f64,
    pub unit: &'static str,
}

impl Row {
    pub fn new(figure: impl Into<String>, dhtfs: f64, unit: &'static str) -> Row {
        Row {
            figure: figure.into(),
            dhtfs,
            anchor_name: String::new(),
            anchor: f64::NAN,
            unit,
        }
    }

    pub fn vs(mut self, name: impl Into<String>, anchor: f64) -> Row {
        self.anchor_name = name.into();
        self.anchor = anchor;
        self
    }
}

/// This process's resident set, KiB (VmRSS in /proc/self/status).
pub fn rss_kib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// Real allocation of everything under `path` (st_blocks * 512), bytes.
pub fn disk_bytes(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let mut total = meta.blocks() * 512;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            total += disk_bytes(&entry.path());
        }
    }
    total
}

/// The machine: cores and CPU model.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores, {model}")
}

/// A bench node's config in `dir`: loopback, OS-picked ports, and no
/// background jobs (republish, handoff, scrub) to disturb the timing.
pub fn bench_config(dir: &Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        admin: "127.0.0.1:0".parse().expect("addr"),
        metrics: "127.0.0.1:0".parse().expect("addr"),
        gateway_enabled: false,
        republish_interval_secs: 0,
        verify_interval_secs: 0,
        handoff: false,
        ..Config::default()
    }
}

/// `n` nodes in this process under `dir`, each joining through the first,
/// then every node refreshing its buckets once (as its timer would): a warm
/// network, as mainline's seeded Testnet is.
pub async fn start_net(dir: &Path, n: usize) -> Vec<Daemon> {
    let mut nodes: Vec<Daemon> = Vec::new();
    for i in 0..n {
        let daemon = Daemon::start(&bench_config(&dir.join(format!("node{i}"))))
            .await
            .expect("node starts");
        if let Some(first) = nodes.first() {
            let first = first.local_addr.to_string();
            daemon.join(&[first]).await.expect("joins");
        }
        nodes.push(daemon);
    }
    for chunk in nodes.chunks(8) {
        futures::future::join_all(chunk.iter().map(|d| d.node.refresh_buckets(0))).await;
    }
    nodes
}

/// Stops every node.
pub async fn stop_net(nodes: Vec<Daemon>) {
    for d in nodes {
        d.shutdown().await;
    }
}
