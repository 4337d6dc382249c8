//! Routing state survives a crash (issue 10, item 6).
//!
//! Five real `dhtfs node` processes, a `dhtfs put` of a 3 MiB file with 3
//! replicas (so a reader must be routed to the holders: no single node holds
//! every block), then SIGKILL of every node 3 s after the put, before the
//! flushed snapshot that follows a change (10 s) or the periodic one (5
//! minutes) could have run. Each node is
//! restarted on its data dir and address with no `--bootstrap`, one after
//! another, and `dhtfs get` of the root through one of them must read the file
//! back identical: the nodes rejoined from the table changes recorded in sled
//! as they happened, made durable by the put's own group commits.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::metrics::sample;
use common::process::{node_command, run_to_end, NodeProc, BIN};
use rand::RngCore;

const NODES: usize = 5;
/// Longest the tables may take to fill after the joins.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Every node is killed within this long of the first start.
const KILL_WITHIN: Duration = Duration::from_secs(60);
/// Longest a put or a get may run.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest a process may take to die after SIGKILL.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

struct Node {
    proc: NodeProc,
    addr: SocketAddr,
}

impl Node {
    /// Starts `dhtfs node` on `dir` at `listen`, joining through `bootstrap`
    /// (none: from its routing snapshot); returns once it printed its
    /// listening line.
    fn start(dir: &Path, listen: SocketAddr, bootstrap: Option<SocketAddr>) -> Node {
        Node::try_start(dir, listen, bootstrap).unwrap_or_else(|why| panic!("{why}"))
    }

    /// Restarts a node on its old address. Between the kill and the restart
    /// any outgoing connection on this machine (the other test's nodes, say)
    /// may have been given that port as its own ephemeral one; it is free
    /// again once that connection closes, so a taken port is waited out.
    fn restart(dir: &Path, listen: SocketAddr) -> Node {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match Node::try_start(dir, listen, None) {
                Ok(node) => return node,
                Err(why) if why.contains("Address already in use") && Instant::now() < deadline => {
                    eprintln!("port of {listen} taken by another socket; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(why) => panic!("{why}"),
            }
        }
    }

    fn try_start(
        dir: &Path,
        listen: SocketAddr,
        bootstrap: Option<SocketAddr>,
    ) -> Result<Node, String> {
        let mut cmd = node_command(dir, listen, bootstrap);
        cmd.env("RUST_LOG", "info,dhtfs::upkeep=debug");
        let proc = NodeProc::start(&mut cmd)?;
        let addr = proc.listen;
        if listen.port() != 0 {
            assert_eq!(addr, listen, "a restarted node keeps its address");
        }
        Ok(Node { proc, addr })
    }

    fn stderr(&self) -> String {
        self.proc.stderr()
    }

    /// The value of an unlabelled gauge on the node's /metrics.
    fn gauge(&self, name: &str) -> Option<f64> {
        let (_, body) = common::http::get(self.proc.metrics, "/metrics").ok()?;
        sample(&body, name)
    }

    /// Waits until the node's routing table holds `n` peers.
    fn wait_peers(&self, n: f64, deadline: Instant) {
        assert!(
            self.try_wait_peers(n, deadline),
            "node {} has {:?} peers, not {n}, in time; stderr:\n{}",
            self.addr,
            self.gauge("dhtfs_routing_table_peers"),
            self.stderr()
        );
    }

    /// Whether the node's routing table holds `n` peers by `deadline`.
    fn try_wait_peers(&self, n: f64, deadline: Instant) -> bool {
        loop {
            if self.gauge("dhtfs_routing_table_peers") == Some(n) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the node logged a routing snapshot of `n` peers.
    fn saved_snapshot_of(&self, n: usize) -> bool {
        self.stderr()
            .lines()
            .any(|l| l.contains("routing snapshot written") && l.contains(&format!("peers={n}")))
    }

    fn kill(&mut self) {
        self.proc.proc.signal(libc::SIGKILL);
        self.proc.proc.wait(EXIT_TIMEOUT, "a SIGKILLed node");
    }
}

/// Runs the `dhtfs` binary with `args` to its end, at most `TRANSFER_TIMEOUT`;
/// its stdout, or a failure with its stderr.
fn dhtfs(args: &[&str], what: &str) -> Result<String, String> {
    let done = run_to_end(Command::new(BIN).args(args), TRANSFER_TIMEOUT, what);
    if done.status.success() {
        Ok(done.stdout)
    } else {
        Err(format!(
            "{what} exited with {}; stderr:\n{}",
            done.status, done.stderr
        ))
    }
}

#[test]
fn every_node_sigkilled_and_restarted_without_bootstrap_still_serves_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (0..NODES)
        .map(|i| tmp.path().join(format!("node{i}")))
        .collect();
    let file = tmp.path().join("input.bin");
    let mut data = vec![0u8; 3 << 20];
    rand::thread_rng().fill_bytes(&mut data);
    std::fs::write(&file, &data).unwrap();

    // First life: node 0 alone, the others join through it.
    let started = Instant::now();
    let mut nodes: Vec<Node> = Vec::new();
    for dir in &dirs {
        let bootstrap = nodes.first().map(|n: &Node| n.addr);
        nodes.push(Node::start(dir, "127.0.0.1:0".parse().unwrap(), bootstrap));
    }
    let deadline = Instant::now() + JOIN_TIMEOUT;
    for n in &nodes {
        n.wait_peers((NODES - 1) as f64, deadline);
    }
    let entry = nodes[0].addr.to_string();
    let secret = tmp.path().join("convergence-secret");
    let put = dhtfs(
        &[
            "put",
            file.to_str().unwrap(),
            "--secret-file",
            secret.to_str().unwrap(),
            "--replicas",
            "3",
            "--chunk-size",
            "262144",
            "--quiet",
            "--bootstrap",
            &entry,
        ],
        "dhtfs put",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let root = put
        .lines()
        .last()
        .expect("put prints the root")
        .trim()
        .to_string();

    // Kill every node 3 s after the put said saved: sooner than the flushed
    // snapshot that follows a table change (10 s by default), so only the
    // changes recorded as they happened bring the tables back.
    std::thread::sleep(Duration::from_secs(3));
    let snapshots = nodes
        .iter()
        .filter(|n| n.saved_snapshot_of(NODES - 1))
        .count();
    for n in &mut nodes {
        n.kill();
    }
    let killed_after = started.elapsed();
    assert!(
        killed_after < KILL_WITHIN,
        "every node must die within {KILL_WITHIN:?} of the start (took {killed_after:?})"
    );
    eprintln!(
        "killed all {NODES} nodes {:.1} s after the first start; {snapshots} had logged a full snapshot",
        killed_after.as_secs_f64()
    );

    // Second life: the same dirs and addresses, no bootstrap, one at a time.
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    drop(nodes);
    let restarted = Instant::now();
    let mut nodes: Vec<Node> = Vec::new();
    for (dir, addr) in dirs.iter().zip(&addrs) {
        nodes.push(Node::restart(dir, *addr));
    }
    let deadline = Instant::now() + JOIN_TIMEOUT;
    let full = nodes
        .iter()
        .all(|n| n.try_wait_peers((NODES - 1) as f64, deadline));
    let peers: Vec<Option<f64>> = nodes
        .iter()
        .map(|n| n.gauge("dhtfs_routing_table_peers"))
        .collect();
    eprintln!(
        "after the restart: peers per node {peers:?}, {} {:.1} s after the first restart",
        if full {
            "all tables full"
        } else {
            "NOT all tables full"
        },
        restarted.elapsed().as_secs_f64()
    );
    // The nodes find each other again with no bootstrap: without the
    // changes recorded as they happened, every table came back empty (and
    // the get below could still succeed through one node's own blocks).
    assert!(
        full,
        "not every table came back full after the restart: peers per node {peers:?}"
    );
    let out = tmp.path().join("output.bin");
    let entry = nodes[0].addr.to_string();
    dhtfs(
        &[
            "get",
            &root,
            "-o",
            out.to_str().unwrap(),
            "--quiet",
            "--bootstrap",
            &entry,
        ],
        "dhtfs get",
    )
    .unwrap_or_else(|e| {
        let logs: Vec<String> = nodes
            .iter()
            .map(|n| format!("--- node {}:\n{}", n.addr, n.stderr()))
            .collect();
        panic!(
            "get after the restart failed (peers per node {peers:?}): {e}\n{}",
            logs.join("\n")
        )
    });
    let back = std::fs::read(&out).unwrap();
    assert!(back == data, "the file read back differs from the one put");
}

/// On start, a snapshot is a list of addresses to ping, not entries to
/// trust: only a contact that answers enters the table, under the id its
/// pong names, and only that pong marks it verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_contacts_enter_the_table_only_by_answering_a_ping() {
    use dhtfs::contact::Contact;
    use dhtfs::daemon::Daemon;
    use dhtfs::id::Id;

    let tmp = tempfile::tempdir().unwrap();
    let a = Daemon::start(&common::test_config(tmp.path().join("a")))
        .await
        .unwrap();
    let b = Daemon::start(&common::test_config(tmp.path().join("b")))
        .await
        .unwrap();
    let c = Daemon::start(&common::test_config(tmp.path().join("c")))
        .await
        .unwrap();
    // A peer that is gone: its address is bound but never answers.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dead = Contact::new(Id([0x11; 32]), silent.local_addr().unwrap());
    // C's address under an id C does not have (C's data dir was replaced, say).
    let stale = Contact::new(Id([0x22; 32]), c.local_addr);
    let snapshot = vec![b.node.me(), dead, stale];
    a.store.save_routing(&snapshot).unwrap();

    assert!(
        a.node.table().is_empty(),
        "nothing is trusted before the pings"
    );
    let answered = tokio::time::timeout(Duration::from_secs(30), a.join(&[]))
        .await
        .expect("join ends within its request timeouts")
        .unwrap();
    assert_eq!(answered, 2, "B and C answer, the silent address does not");

    let (b_id, c_id) = (b.node.me().id, c.node.me().id);
    let table = a.node.table().clone();
    let b_entry = table.get(&b_id).expect("B answered: it is in");
    assert!(b_entry.verified, "B's pong verified it");
    let c_entry = table
        .get(&c_id)
        .expect("C is in under the id its pong named");
    assert!(c_entry.verified);
    assert!(
        !table.contains(&dead.id),
        "a contact that never answered stays out"
    );
    assert!(
        !table.contains(&stale.id),
        "an id nobody answered for stays out"
    );
    // Whatever else A learned since (B and C answering its lookups), every
    // verified entry is a node that answered a ping.
    for (_, e) in table.entries() {
        assert!(
            [b_id, c_id].contains(&e.contact.id),
            "unexpected entry {:?}",
            e.contact
        );
    }
    for d in [a, b, c] {
        d.shutdown().await;
    }
}
