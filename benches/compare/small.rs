//! Small blocks: PutBlock over the admin API from 32 clients at once; disk
//! bytes per stored byte; and, in child processes of this bench (so each
//! starts with a clean heap), a store's open time and RSS, and a node's idle RSS.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use dhtfs::admin::pb;
use dhtfs::admin::pb::admin_client::AdminClient;
use dhtfs::daemon::Daemon;
use dhtfs::id::Id;
use dhtfs::store::{Store, StoreConfig};
use rand::RngCore;

use crate::common::{bench_config, disk_bytes, ms, quantile, rss_kib};

/// Clients putting at once.
pub const CLIENTS: usize = 32;

/// PutBlocks a second of 4 KiB blocks to `node`'s admin API, `CLIENTS`
/// clients each with its own connection putting `per_client` blocks; and the
/// mean replicas each PutBlock saved (a failed store is not an error of the
/// bench: it is counted, and the first reason is told on stderr).
pub async fn putblock_rate(node: &Daemon, per_client: usize) -> (f64, f64) {
    let url = format!("http://{}", node.admin_addr);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(AdminClient::connect(url.clone()).await.expect("admin API"));
    }
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let (mut saved, mut failure, mut took) = (0, None, Vec::new());
                for _ in 0..per_client {
                    let began = Instant::now();
                    let mut data = vec![0u8; 4096];
                    rand::thread_rng().fill_bytes(&mut data);
                    let reply = c
                        .put_block(pb::PutBlockRequest { data })
                        .await
                        .expect("PutBlock")
                        .into_inner();
                    took.push(ms(began.elapsed()));
                    saved += reply.saved.len();
                    failure = failure.or(reply.failures.into_iter().next());
                }
                (saved, failure, took)
            })
        })
        .collect();
    let (mut saved, mut failure, mut took) = (0, None, Vec::new());
    for t in tasks {
        let (s, f, t) = t.await.expect("client task");
        saved += s;
        failure = failure.or(f);
        took.extend(t);
    }
    eprintln!(
        "compare: PutBlock latency median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        quantile(&took, 0.5),
        quantile(&took, 0.99),
        quantile(&took, 1.0)
    );
    let rate = (CLIENTS * per_client) as f64 / started.elapsed().as_secs_f64();
    if let Some(why) = failure {
        eprintln!("compare: a PutBlock store failed, e.g. {why}");
    }
    (rate, saved as f64 / (CLIENTS * per_client) as f64)
}

/// The median and p90 (ms) of `count` PutBlocks of `size` random bytes, one
/// after another from one client: the tail a reply's last segment waiting
/// for a delayed ACK would show (40 ms steps), which a rate hides.
pub async fn putblock_latency(node: &Daemon, size: usize, count: usize) -> (f64, f64) {
    let url = format!("http://{}", node.admin_addr);
    let mut client = AdminClient::connect(url).await.expect("admin API");
    let mut took = Vec::with_capacity(count);
    for _ in 0..count {
        let mut data = vec![0u8; size];
        rand::thread_rng().fill_bytes(&mut data);
        let began = Instant::now();
        client
            .put_block(pb::PutBlockRequest { data })
            .await
            .expect("PutBlock");
        took.push(ms(began.elapsed()));
    }
    (quantile(&took, 0.5), quantile(&took, 0.9))
}

/// Fills a store in `dir` with `count` random blocks of `size` bytes, each put
/// durable as a node's are, from 32 threads at once; returns disk bytes per
/// stored byte once they are all in.
pub fn fill_store(dir: &Path, count: usize, size: usize) -> f64 {
    let (store, _) = Store::open(dir, StoreConfig::default()).expect("open store");
    let threads = 32.min(count);
    std::thread::scope(|s| {
        for t in 0..threads {
            let store = store.clone();
            s.spawn(move || {
                let mut data = vec![0u8; size];
                for _ in (t..count).step_by(threads) {
                    rand::thread_rng().fill_bytes(&mut data);
                    store
                        .put_verified(&Id::of_block(&data), &data)
                        .expect("put");
                }
            });
        }
    });
    // Closed as a node closes it at shutdown.
    store.close().expect("close");
    assert_eq!(store.block_count(), count as u64, "every block stored");
    drop(store);
    disk_bytes(dir) as f64 / (count * size) as f64
}

/// Deletes every other block of the store in `dir`, then runs compaction
/// passes (unpaced) until none finds a segment worth rewriting; returns disk
/// bytes per live byte before and after the passes.
pub fn delete_half_and_compact(dir: &Path) -> (f64, f64) {
    let (store, _) = Store::open(dir, StoreConfig::default()).expect("open store");
    let mut after = None;
    let (mut live, mut n) = (0u64, 0u64);
    loop {
        let page = store.list(after, 1000).expect("list");
        let Some((last, _)) = page.last() else {
            break;
        };
        after = Some(*last);
        for (key, meta) in page {
            n += 1;
            if n % 2 == 0 {
                store.delete(&key).expect("delete");
            } else {
                live += meta.size;
            }
        }
    }
    let before = disk_bytes(dir) as f64 / live as f64;
    let stats = dhtfs::stats::Stats::default();
    let halt = std::sync::atomic::AtomicBool::new(false);
    while store
        .segment_use()
        .expect("segment use")
        .iter()
        .any(dhtfs::upkeep::worth_compacting)
    {
        dhtfs::upkeep::compaction_pass(&store, &stats, 0, &halt, &mut |_| {})
            .expect("compaction pass");
    }
    store.close().expect("close");
    drop(store);
    (before, disk_bytes(dir) as f64 / live as f64)
}

/// The env var that makes this bench a child doing one measurement.
pub const CHILD: &str = "DHTFS_BENCH_CHILD";

/// Runs this bench's binary as a child: `what` is `open DIR`, `idle` or
/// `idle-mainline`. Returns (ms, RSS KiB) it printed.
pub fn child(what: &str) -> (f64, f64) {
    let exe = std::env::current_exe().expect("own binary");
    for _ in 0..100 {
        let out = Command::new(&exe)
            .env(CHILD, what)
            .output()
            .expect("run child");
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(line) = text.lines().find_map(|l| l.strip_prefix("child ")) {
            let mut it = line.split(' ').map(|v| v.parse::<f64>().expect("number"));
            return (it.next().expect("ms"), it.next().expect("rss"));
        }
        let err = String::from_utf8_lossy(&out.stderr);
        // The parent's sled flusher may still hold the lock of a store just closed.
        assert!(err.contains("lock"), "child {what} failed: {err}");
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("child {what}: the store's lock was never released");
}

/// Runs this bench's binary as a child that opens the store in `dir` and is
/// SIGKILLed while it holds it open, as a node crashes: the next open of
/// `dir` finds no clean stop, in a process of its own.
pub fn crash_open(dir: &Path) {
    let exe = std::env::current_exe().expect("own binary");
    let status = Command::new(&exe)
        .env(CHILD, format!("killed-open {}", dir.display()))
        .status()
        .expect("run child");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the child was killed: {status}"
    );
}

/// In the child: does `what` and prints "child MS RSS_KIB".
pub fn run_child(what: &str) {
    let open = |dir: &str| {
        // The store just dropped may hold sled's lock a moment longer.
        for _ in 0..100 {
            match Store::open(Path::new(dir), StoreConfig::default()) {
                Err(e) if e.to_string().contains("lock") => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                other => return other.expect("open store").0,
            }
        }
        panic!("the store's lock was never released");
    };
    // Times one open and takes the RSS after it, then closes as a node's
    // shutdown does, so the next run finds a clean stop again.
    let timed_open = |dir: &str| {
        let started = Instant::now();
        let store = open(dir);
        let took = ms(started.elapsed());
        let rss = rss_kib();
        store.close().expect("close");
        (took, rss)
    };
    let (took, rss) = if let Some(dir) = what.strip_prefix("open ") {
        // After a clean stop: the summary `close` left is trusted.
        timed_open(dir)
    } else if let Some(dir) = what.strip_prefix("killed-open ") {
        // A crash: the store is open, and the process dies at once.
        let _store = open(dir);
        // SAFETY: kill on this process's own pid; nothing runs after it.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        unreachable!("SIGKILL ends the process");
    } else if what == "idle" {
        let tmp = tempfile::tempdir().expect("temp dir");
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let started = Instant::now();
            let d = Daemon::start(&bench_config(&tmp.path().join("node")))
                .await
                .expect("node starts");
            let took = ms(started.elapsed());
            tokio::time::sleep(Duration::from_secs(1)).await;
            let rss = rss_kib();
            d.shutdown().await;
            (took, rss)
        })
    } else if what == "idle-mainline" {
        let started = Instant::now();
        let dht = mainline::Dht::builder()
            .server_mode()
            .no_bootstrap()
            .bind_address(std::net::Ipv4Addr::LOCALHOST)
            .build()
            .expect("mainline node");
        let took = ms(started.elapsed());
        std::thread::sleep(Duration::from_secs(1));
        let rss = rss_kib();
        drop(dht);
        (took, rss)
    } else {
        panic!("unknown child {what}");
    };
    println!("child {took} {rss}");
}
