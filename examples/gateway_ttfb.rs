//! The gateway's time to first byte and memory on a large file, measured (not
//! a test: it prints figures). Eight nodes in this process hold a file
//! (default 256 MiB, 1 MiB chunks, 2 replicas) and an 8 MiB one; a ninth
//! node, the real `dhtfs` binary in its own process, joins after the puts
//! (holding nothing, so every chunk comes over the network) and serves them
//! through its gateway: the small file first (the process's first request
//! ever), then, once its pooled connections expired, the large one five
//! times (the first on fresh connections).
//!
//! Printed: one chunk's fetch time (lookup, TCP fetch, verify; median of 16
//! chunks, fetched by an in-process node that does not hold them, back to
//! back and after an idle pause); for each request the time to the
//! response's head, to its first body byte (from the root manifest's copy of
//! the file's first 16 KiB, see `manifest.rs`) and to the first byte past it
//! (the first chunk's), and the total; the gateway process's RSS before and
//! its peak (VmHWM) after.
//!
//!     cargo build --release && cargo run --release --example gateway_ttfb [-- MIB]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dhtfs::config::Config;
use dhtfs::daemon::Daemon;
use dhtfs::files::{put, Fetcher, PutOptions};
use dhtfs::id::Id;
use dhtfs::manifest::HEAD_MAX;
use rand::{RngCore, SeedableRng};

const NODES: usize = 8;
const CHUNK: usize = 1 << 20;
/// The pause before each idle fetch, and before the gateway's first request.
const IDLE: Duration = Duration::from_secs(1);
/// Past the block client's 10 s keep of an idle connection.
const POOL_EXPIRY: Duration = Duration::from_secs(11);

fn config(dir: &Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        admin: "127.0.0.1:0".parse().expect("addr"),
        metrics: "127.0.0.1:0".parse().expect("addr"),
        gateway_enabled: false,
        republish_interval_secs: 0,
        verify_interval_secs: 0,
        handoff: false,
        min_free_bytes: 0,
        min_free_percent: 0,
        ..Config::default()
    }
}

/// A process's resident set now and at its peak, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// What one timed GET saw.
struct Timed {
    head_ms: f64,
    first_ms: f64,
    /// When the body passed the root's head: the first chunk's bytes.
    chunk_ms: f64,
    total_s: f64,
    body: u64,
}

/// GETs `path` over a raw HTTP/1.1 connection, timing the end of the head
/// and the first body byte (curl's time_starttransfer is the head's).
async fn timed_get(addr: SocketAddr, path: &str) -> Timed {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("request");
    let mut buf = vec![0u8; 256 << 10];
    let mut head = Vec::new();
    let (mut head_ms, mut first_ms, mut chunk_ms, mut body) = (None, None, None, 0u64);
    loop {
        let n = s.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        let mut fresh = &buf[..n];
        if head_ms.is_none() {
            head.extend_from_slice(fresh);
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            head_ms = Some(started.elapsed().as_secs_f64() * 1e3);
            let seen = head.len() - (end + 4);
            fresh = &buf[n - seen..n];
        }
        if !fresh.is_empty() && first_ms.is_none() {
            first_ms = Some(started.elapsed().as_secs_f64() * 1e3);
        }
        body += fresh.len() as u64;
        if body > HEAD_MAX as u64 && chunk_ms.is_none() {
            chunk_ms = Some(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    Timed {
        head_ms: head_ms.unwrap_or(f64::NAN),
        first_ms: first_ms.unwrap_or(f64::NAN),
        chunk_ms: chunk_ms.unwrap_or(f64::NAN),
        total_s: started.elapsed().as_secs_f64(),
        body,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(256);
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut nodes = Vec::new();
    for i in 0..NODES {
        let d = Daemon::start(&config(&tmp.path().join(format!("node{i}"))))
            .await
            .expect("node starts");
        if let Some(first) = nodes.first() {
            let first: &Daemon = first;
            d.join(&[first.local_addr.to_string()])
                .await
                .expect("joins");
        }
        nodes.push(d);
    }
    nodes[0].node.refresh_buckets(0).await;

    let mut data = vec![0u8; mib << 20];
    rand::rngs::StdRng::seed_from_u64(7).fill_bytes(&mut data);
    let file = tmp.path().join("big.bin");
    std::fs::write(&file, &data).expect("write the file");
    let started = Instant::now();
    let report = put(&PutOptions {
        bootstrap: vec![nodes[0].local_addr],
        quiet: true,
        replicas: 2,
        ..PutOptions::new(file.clone())
    })
    .await
    .expect("put");
    println!(
        "put {mib} MiB on {NODES} nodes (2 replicas) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let keys: Vec<Id> = data.chunks(CHUNK).map(Id::of_block).collect();
    // A second, small file: the gateway's very first request, so that the
    // large file's first request meets a process that has served before.
    let mut other = vec![0u8; 8 << 20];
    rand::rngs::StdRng::seed_from_u64(8).fill_bytes(&mut other);
    let other_file = tmp.path().join("other.bin");
    std::fs::write(&other_file, &other).expect("write the other file");
    let other_root = put(&PutOptions {
        bootstrap: vec![nodes[0].local_addr],
        quiet: true,
        replicas: 2,
        ..PutOptions::new(other_file)
    })
    .await
    .expect("put the other file")
    .root;

    // One chunk's fetch time, by a node that does not hold it.
    let fetcher_node = &nodes[NODES - 1];
    let fetcher = Fetcher::new(fetcher_node.node.clone());
    let mut times = Vec::new();
    for key in keys
        .iter()
        .filter(|k| !fetcher_node.store.contains(k))
        .take(16)
    {
        let t = Instant::now();
        fetcher.block(*key, CHUNK as u64).await.expect("chunk");
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let chunk_ms = median(times.clone());
    times.sort_by(f64::total_cmp);
    println!(
        "one chunk's fetch (lookup + 1 MiB over TCP + sha256), {} chunks back to back: median {chunk_ms:.2} ms, min {:.2}, max {:.2}",
        times.len(),
        times[0],
        times[times.len() - 1]
    );
    // The gateway's first request comes after an idle pause, and on this
    // kind of machine everything after a pause is slower (its threads and
    // CPUs wake): the same fetch after the same pause, for comparison.
    let mut idle_times = Vec::new();
    for key in keys
        .iter()
        .filter(|k| !fetcher_node.store.contains(k))
        .skip(16)
        .take(8)
    {
        tokio::time::sleep(IDLE).await;
        let t = Instant::now();
        fetcher.block(*key, CHUNK as u64).await.expect("chunk");
        idle_times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let idle_chunk_ms = median(idle_times);
    println!(
        "one chunk's fetch after {} ms idle, {} chunks: median {idle_chunk_ms:.2} ms",
        IDLE.as_millis(),
        8
    );

    // The gateway: the real binary, joining after the put.
    let bin = std::env::current_exe()
        .expect("exe")
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("dhtfs"))
        .expect("target dir");
    let gw_dir = tmp.path().join("gateway");
    let cfg_file = tmp.path().join("gateway.toml");
    std::fs::write(
        &cfg_file,
        "handoff = false\nrepublish_interval_secs = 0\nverify_interval_secs = 0\nmin_free_bytes = 0\nmin_free_percent = 0\n",
    )
    .expect("config");
    let mut child = Command::new(&bin)
        .args(["node", "--config"])
        .arg(&cfg_file)
        .arg("--data-dir")
        .arg(&gw_dir)
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--metrics", "127.0.0.1:0", "--gateway", "127.0.0.1:0"])
        .args(["--bootstrap", &nodes[0].local_addr.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo build --release` first)", bin.display()));
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    let gateway: SocketAddr = line
        .split_whitespace()
        .skip_while(|w| *w != "gateway")
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no gateway in {line:?}"));
    // The gateway joined; the first request comes after the same pause as
    // the idle fetches.
    tokio::time::sleep(IDLE).await;
    let (idle_rss, _) = rss_kib(child.id());

    // The process's first request: a cold process (its code, allocator and
    // routing table all met for the first time), on fresh connections.
    let cold = timed_get(gateway, &format!("/file/{other_root}")).await;
    assert_eq!(cold.body, other.len() as u64, "the whole other file");
    println!(
        "gateway's first request ever (another file, 8 MiB): first body byte after {:.2} ms ({:.2}x one chunk's fetch)",
        cold.first_ms,
        cold.first_ms / chunk_ms
    );
    // Its connections pooled for that file expire (the block client keeps
    // an idle one 10 s): the large file's first request opens fresh ones,
    // in a process that has served before, as a running gateway has.
    tokio::time::sleep(POOL_EXPIRY).await;

    let path = format!("/file/{}", report.root);
    let (mut ttfbs, mut past_head) = (Vec::new(), Vec::new());
    for run in 0..5 {
        let got = timed_get(gateway, &path).await;
        assert_eq!(got.body, data.len() as u64, "the whole file");
        let (rss, peak) = rss_kib(child.id());
        println!(
            "gateway GET {run}: headers after {:.2} ms, first body byte after {:.2} ms ({:.2}x one chunk's fetch), first byte past the root's head (the first chunk's) after {:.2} ms ({:.2}x), {mib} MiB in {:.2} s ({:.0} MiB/s); gateway RSS {} MiB now, peak {} MiB (idle before: {} MiB)",
            got.head_ms,
            got.first_ms,
            got.first_ms / chunk_ms,
            got.chunk_ms,
            got.chunk_ms / chunk_ms,
            got.total_s,
            mib as f64 / got.total_s,
            rss / 1024,
            peak / 1024,
            idle_rss / 1024
        );
        ttfbs.push(got.first_ms);
        past_head.push(got.chunk_ms);
    }
    let (first, median_ms) = (ttfbs[0], median(ttfbs));
    println!(
        "summary: chunk fetch median {chunk_ms:.2} ms ({idle_chunk_ms:.2} after idle); the process's first request ever: {:.2} ms = {:.2}x; the file's first request, on fresh connections: first body byte after {:.2} ms = {:.2}x ({:.2}x of the fetch after idle), first byte past the head after {:.2} ms = {:.2}x; median of 5 requests {:.2} ms = {:.2}x; gateway peak RSS {} MiB (idle {} MiB) for a {mib} MiB file",
        cold.first_ms,
        cold.first_ms / chunk_ms,
        first,
        first / chunk_ms,
        first / idle_chunk_ms,
        past_head[0],
        past_head[0] / chunk_ms,
        median_ms,
        median_ms / chunk_ms,
        rss_kib(child.id()).1 / 1024,
        idle_rss / 1024
    );
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let _ = child.wait();
    for d in nodes {
        d.shutdown().await;
    }
}
