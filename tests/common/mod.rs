//! Shared helpers for the integration tests: a `TestNet` of real nodes on
//! 127.0.0.1 with port 0, each with a real sled data dir in a temp dir, and
//! one module per other idea the tests share: `process` (node and tool
//! child processes), `http` (raw GETs), `metrics` (reading samples), `fetch`
//! (the raw TCP block fetch), `wire` (playing a peer by hand), `hostile`
//! (attackers), `put` (putting a file), `data` (random bytes and blocks),
//! `segments` (a data dir of mostly dead segment files),
//! `admin` (the admin API), `curl` (the real curl), `netns` (hosts in
//! network namespaces with real addresses, loss and capped links), and
//! `show_warnings` (the nodes' log in a failed test's output).
#![allow(dead_code)]

pub mod admin;
pub mod curl;
pub mod data;
pub mod fetch;
pub mod hostile;
pub mod http;
pub mod metrics;
pub mod netns;
pub mod process;
pub mod put;
pub mod segments;
pub mod wire;

use std::path::PathBuf;
use std::time::Duration;

use dhtfs::config::Config;
use dhtfs::contact::Contact;
use dhtfs::daemon::Daemon;
use dhtfs::id::Id;

/// Shows the nodes' warnings (or what `RUST_LOG` asks for) in the test's
/// output, which the test harness prints only when the test fails: why a
/// flaky test failed in CI is then in CI's log.
pub fn show_warnings() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("dhtfs=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A config for a test node in `dir`: loopback, OS-picked port.
pub fn test_config(dir: PathBuf) -> Config {
    Config {
        data_dir: dir,
        listen: "127.0.0.1:0".parse().unwrap(),
        admin: "127.0.0.1:0".parse().unwrap(),
        metrics: "127.0.0.1:0".parse().unwrap(),
        gateway: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    }
}

/// A loopback address whose port lies below the kernel's ephemeral range
/// and is free for TCP and UDP now. A node stopped and started again on it
/// then cannot find its port taken meanwhile by an outgoing connection or
/// by another test's bind to port 0, which the ephemeral range serves.
pub fn addr_for_restarts() -> std::net::SocketAddr {
    use rand::Rng;
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let from = low.saturating_sub(12_000).max(1024);
    assert!(
        from < low,
        "no ports below the ephemeral range (from {low})"
    );
    for _ in 0..1000 {
        let addr =
            std::net::SocketAddr::from(([127, 0, 0, 1], rand::thread_rng().gen_range(from..low)));
        if std::net::TcpListener::bind(addr).is_ok() && std::net::UdpSocket::bind(addr).is_ok() {
            return addr;
        }
    }
    panic!("no free loopback port between {from} and {low}");
}

/// N real nodes in this process.
pub struct TestNet {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Daemon>,
}

impl TestNet {
    /// Starts `n` nodes; every node after the first bootstraps from the first.
    pub async fn start(n: usize) -> TestNet {
        TestNet::start_with(n, |_| {}).await
    }

    /// Starts `n` nodes whose configs `tune` adjusts.
    pub async fn start_with(n: usize, tune: impl Fn(&mut Config)) -> TestNet {
        let mut net = TestNet {
            dir: tempfile::tempdir().unwrap(),
            nodes: Vec::new(),
        };
        net.grow(n, tune).await;
        // The first node learned of the others as they contacted it; let it
        // also refresh, as a real node does on its timer.
        net.nodes[0].node.refresh_buckets(0).await;
        net
    }

    /// Starts `n` more nodes, configs adjusted by `tune`, each joining
    /// through the first node (or, for the very first, alone).
    pub async fn grow(&mut self, n: usize, tune: impl Fn(&mut Config)) {
        for _ in 0..n {
            // Named by how many were ever started: a stopped node keeps its dir.
            let i = std::fs::read_dir(self.dir.path()).unwrap().count();
            let mut cfg = test_config(self.dir.path().join(format!("node{i}")));
            tune(&mut cfg);
            let daemon = Daemon::start(&cfg).await.expect("node starts");
            // Join one after another, as nodes of a real network arrive.
            if let Some(first) = self.nodes.first() {
                let first = first.local_addr.to_string();
                let answered = daemon.join(std::slice::from_ref(&first)).await.unwrap();
                assert_eq!(answered, 1, "bootstrap answered");
            }
            self.nodes.push(daemon);
        }
    }

    /// Every node's id and address.
    pub fn contacts(&self) -> Vec<Contact> {
        self.nodes.iter().map(|d| d.node.me()).collect()
    }

    /// The `k` ids closest to `target` among all nodes, closest first.
    pub fn true_closest(&self, target: &Id, k: usize) -> Vec<Id> {
        let mut ids: Vec<Id> = self.contacts().iter().map(|c| c.id).collect();
        ids.sort_by_key(|id| id.distance(target));
        ids.truncate(k);
        ids
    }

    /// Keys whose `k` closest live nodes do not all hold them, with how many do.
    pub fn misplaced(&self, keys: &std::collections::HashSet<Id>, k: usize) -> Vec<(Id, usize)> {
        let mut bad = Vec::new();
        for key in keys {
            let closest = self.true_closest(key, k);
            let holding = self
                .nodes
                .iter()
                .filter(|d| closest.contains(&d.node.me().id) && d.store.contains(key))
                .count();
            if holding < k {
                bad.push((*key, holding));
            }
        }
        bad
    }

    /// The data dirs, to restart nodes on.
    pub fn data_dirs(&self) -> Vec<PathBuf> {
        self.nodes.iter().map(|d| d.data_dir()).collect()
    }

    /// Stops every node gracefully, keeping the data dirs.
    pub async fn stop_all(&mut self) {
        for d in self.nodes.drain(..) {
            d.shutdown().await;
        }
    }
}

/// Flips byte `at` of block `key`'s bytes where `store` keeps them on disk
/// (a segment record or a block file), as rot would.
pub fn rot_on_disk(store: &dhtfs::store::Store, key: &Id, at: u64) {
    use std::os::unix::fs::FileExt;
    let (path, start) = store.bytes_on_disk(key).unwrap().expect("a block on disk");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, start + at).unwrap();
    byte[0] ^= 0xff;
    file.write_all_at(&byte, start + at).unwrap();
}

/// The `len` bytes `store` keeps on disk for block `key`, read raw (no check).
pub fn bytes_on_disk(store: &dhtfs::store::Store, key: &Id, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let (path, start) = store.bytes_on_disk(key).unwrap().expect("a block on disk");
    let mut bytes = vec![0u8; len];
    std::fs::File::open(&path)
        .unwrap()
        .read_exact_at(&mut bytes, start)
        .unwrap();
    bytes
}

/// Where a node with data dir `dir` keeps block `key` as a file of its own
/// (a block over inline_max) on disk.
pub fn block_file(dir: &std::path::Path, key: &Id) -> PathBuf {
    let hex = key.to_hex();
    dir.join("blocks")
        .join(&hex[0..2])
        .join(&hex[2..4])
        .join(&hex)
}

/// The path of a tool the tests need, or a loud failure saying how to get it.
pub fn require_tool(name: &str, install: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("`{name}` is not installed, and this test needs the real one: {install} (tests/run does it)");
}

/// A file under the repository's deploy/ directory.
pub fn deploy(path: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

/// A file's text, or a failure naming it.
pub fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Runs `f` (an open of a data dir) until it stops failing on sled's lock:
/// the flusher thread of a store this process just dropped may hold the lock
/// for a moment. Bounded; any other error panics.
pub fn retry_while_locked<T, E: std::fmt::Display>(mut f: impl FnMut() -> Result<T, E>) -> T {
    for _ in 0..100 {
        match f() {
            Ok(v) => return v,
            Err(e) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("open: {e}"),
        }
    }
    panic!("sled's lock was never released");
}
