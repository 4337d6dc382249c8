//! put and get throughput on a 5-node network in one process, against the
//! single-core sha256 rate of the same bytes (the work every byte needs).
//!
//! `cargo bench --bench throughput` (DHTFS_BENCH_MIB sets the file size,
//! default 256; DHTFS_BENCH_RUNS the runs per figure, default 3, medians shown).

use std::path::Path;
use std::time::Instant;

use dhtfs::config::Config;
use dhtfs::daemon::Daemon;
use dhtfs::files::{get, put, GetOptions, PutOptions};
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn sha256_rate(data: &[u8]) -> f64 {
    let started = Instant::now();
    for chunk in data.chunks(1 << 20) {
        std::hint::black_box(Sha256::digest(chunk));
    }
    data.len() as f64 / (1 << 20) as f64 / started.elapsed().as_secs_f64()
}

async fn start_nodes(dir: &Path, n: usize) -> Vec<Daemon> {
    let mut nodes: Vec<Daemon> = Vec::new();
    for i in 0..n {
        let cfg = Config {
            data_dir: dir.join(format!("node{i}")),
            listen: "127.0.0.1:0".parse().expect("addr"),
            admin: "127.0.0.1:0".parse().expect("addr"),
            metrics: "127.0.0.1:0".parse().expect("addr"),
            gateway_enabled: false,
            ..Config::default()
        };
        nodes.push(Daemon::start(&cfg).await.expect("node starts"));
    }
    let first = vec![nodes[0].local_addr.to_string()];
    for d in nodes.iter().skip(1) {
        d.join(&first).await.expect("joins");
    }
    nodes[0].node.refresh_buckets(0).await;
    nodes
}

fn main() {
    let mib = env_usize("DHTFS_BENCH_MIB", 256);
    let runs = env_usize("DHTFS_BENCH_RUNS", 3).max(1);
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut data = vec![0u8; mib << 20];
    rand::rngs::StdRng::seed_from_u64(1).fill_bytes(&mut data);
    let file = tmp.path().join("input");
    std::fs::write(&file, &data).expect("write input");
    let sha = median((0..runs).map(|_| sha256_rate(&data)).collect());
    drop(data);

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut puts = Vec::new();
        let mut gets = Vec::new();
        for run in 0..runs {
            // A fresh network each run, so every put stores everything anew.
            let dir = tmp.path().join(format!("net{run}"));
            let nodes = start_nodes(&dir, 5).await;
            let via = nodes[0].local_addr;
            let opts = PutOptions {
                bootstrap: vec![via],
                replicas: 3,
                quiet: true,
                ..PutOptions::new(file.clone())
            };
            let started = Instant::now();
            let report = put(&opts).await.expect("put");
            puts.push(mib as f64 / started.elapsed().as_secs_f64());
            let out = dir.join("output");
            let gopts = GetOptions {
                bootstrap: vec![nodes[4].local_addr],
                quiet: true,
                ..GetOptions::new(report.root, out.clone())
            };
            let started = Instant::now();
            get(&gopts).await.expect("get");
            gets.push(mib as f64 / started.elapsed().as_secs_f64());
            assert_eq!(std::fs::metadata(&out).expect("output").len(), (mib << 20) as u64);
            for d in nodes {
                d.shutdown().await;
            }
        }
        let (put_rate, get_rate) = (median(puts.clone()), median(gets.clone()));
        println!("throughput: {mib} MiB file, 5 nodes in one process, {runs} runs, medians");
        println!("  sha256 (one core)      {sha:8.1} MiB/s");
        println!(
            "  put --replicas 3       {put_rate:8.1} MiB/s  = {:.2} x sha256 (target 0.30)  runs {puts:.1?}",
            put_rate / sha
        );
        println!(
            "  get                    {get_rate:8.1} MiB/s  = {:.2} x sha256 (target 0.60)  runs {gets:.1?}",
            get_rate / sha
        );
    });
}
