//! The deterministic simulation of a dhtfs network (see `src/sim/`):
//!
//!     cargo run --release --example simulate -- --nodes 10000 --seed 11 \
//!         --churn 0.2 --loss 0.05 --liars 0.05 --lookups 1000
//!
//! Prints a progress line now and then on stderr, a table of figures, and as
//! the very last line `key=value` pairs; all but `wall_s` repeat exactly for
//! the same flags and seed. Exits 1 when an invariant failed.

use clap::Parser;
use dhtfs::sim::{self, Bug, SimConfig};

/// Runs N dhtfs engines on a simulated network and measures them.
#[derive(Parser, Debug)]
#[command(name = "simulate")]
struct Flags {
    /// Nodes at any time (those that leave are replaced).
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Seeds every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Lookups measured after warm-up.
    #[arg(long, default_value_t = 500)]
    lookups: usize,
    /// Blocks stored during the run, each then fetched after the network heals.
    #[arg(long, default_value_t = 100)]
    blocks: usize,
    /// Simulated time, in hours.
    #[arg(long, default_value_t = 2.0)]
    sim_hours: f64,
    /// Fraction of the nodes replaced per simulated hour (leave for good, or
    /// crash and restart on their store with or without their routing table).
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// Chance that a datagram is lost.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Chance that a datagram is delivered twice.
    #[arg(long, default_value_t = 0.0)]
    dup: f64,
    /// One-way delay of a datagram, uniform in A-B milliseconds (reorders too).
    #[arg(long, default_value = "10-100", value_parser = parse_range)]
    delay_ms: (u64, u64),
    /// Split the network in two from 35% to 60% of the run, then heal.
    #[arg(long)]
    partition: bool,
    /// Fraction of the nodes that lie (made-up ids, fake "saved", junk bytes).
    #[arg(long, default_value_t = 0.0)]
    liars: f64,
    /// Files put of each kind, erasure-coded and replicated (issue 17).
    #[arg(long, default_value_t = 0)]
    files: usize,
    /// Chunks per file.
    #[arg(long, default_value_t = 4)]
    file_chunks: usize,
    /// Bytes per chunk.
    #[arg(long, default_value_t = 16 << 10)]
    chunk_bytes: usize,
    /// The erasure-coded files' code, K/N (each shard on one node).
    #[arg(long, default_value_t = dhtfs::stripe::DEFAULT_CODE)]
    ec: dhtfs::erasure::Code,
    /// Hosts run the daemon's repair of erasure-coded chunks (hourly).
    #[arg(long)]
    repair: bool,
    /// At the end, kill this share of the nodes at once, then read every file.
    #[arg(long, default_value_t = 0.0)]
    mass_kill: f64,
    /// Inject a bug into the simulation's own store, to see the checks catch
    /// it: skip-hash-check or forget-blocks.
    #[arg(long, value_parser = parse_bug)]
    inject_bug: Option<Bug>,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("'{s}' is not A-B, e.g. 10-100"))?;
    let num = |x: &str| {
        x.trim()
            .parse::<u64>()
            .map_err(|_| format!("'{x}' in '{s}' is not a number of milliseconds"))
    };
    Ok((num(a)?, num(b)?))
}

fn parse_bug(s: &str) -> Result<Bug, String> {
    match s {
        "skip-hash-check" => Ok(Bug::StoreSkipsHashCheck),
        "forget-blocks" => Ok(Bug::StoreForgets),
        _ => Err(format!(
            "unknown bug '{s}': use skip-hash-check or forget-blocks"
        )),
    }
}

/// Peak resident memory of this process, from /proc (Linux).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() {
    let f = Flags::parse();
    let cfg = SimConfig {
        nodes: f.nodes,
        seed: f.seed,
        lookups: f.lookups,
        blocks: f.blocks,
        sim_hours: f.sim_hours,
        churn: f.churn,
        loss: f.loss,
        dup: f.dup,
        delay_ms: f.delay_ms,
        partition: f.partition,
        liars: f.liars,
        files: f.files,
        file_chunks: f.file_chunks,
        chunk_bytes: f.chunk_bytes,
        ec: f.ec,
        repair: f.repair,
        mass_kill: f.mass_kill,
        bug: f.inject_bug,
        progress: !f.quiet,
    };
    if let Err(e) = cfg.validate() {
        eprintln!("simulate: {e}");
        std::process::exit(2);
    }
    let report = sim::run(&cfg);
    print!("{}", report.table());
    if let Some(mb) = peak_rss_mb() {
        println!("  peak memory (VmHWM)  {mb:.0} MiB");
    }
    for line in &report.failure_lines {
        println!("{line}");
    }
    println!("{}", report.last_line());
    if report.failures > 0 {
        std::process::exit(1);
    }
}
