//! Nothing acknowledged is lost across SIGKILL.
//!
//! The test plays an original DHTFileStore peer: its own UDP socket and TCP
//! block server on one port of 127.0.0.1. It sends raw `store_value` datagrams
//! to a real `dhtfs node` child process, which pulls each block from the test
//! over TCP and answers `"saved"`. Several times, the child is SIGKILLed while
//! dozens of stores are in flight; the node is then restarted on the same data
//! dir and port, every block ever answered `"saved"` is fetched back over raw
//! TCP and checked against its sha256, the node is stopped gracefully with
//! SIGTERM, and `Store::audit` must find the data dir clean.

mod common;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UdpSocket};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::timeout;

use common::fetch::try_fetch;
use common::process::{node_command, parse_listening};
use common::wire::{bind_pair, node_obj, reply};
use dhtfs::id::Id;

/// Kill/restart cycles.
const CYCLES: usize = 8;
/// Stores kept in flight at once.
const WINDOW: usize = 40;
/// A store refused as busy is sent again after this long.
const RETRY_DELAY: Duration = Duration::from_millis(15);
/// Longest a node may take to print its `listening` line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a node may take to exit after SIGKILL or SIGTERM.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest one cycle's store phase may run before the kill, whatever happens.
const FIRE_BACKSTOP: Duration = Duration::from_secs(4);
/// How long answers already on their way are still collected after a kill.
const DRAIN_AFTER_KILL: Duration = Duration::from_millis(300);
/// Longest one TCP fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(15);
/// Fetches run at once while verifying.
const VERIFY_PARALLEL: usize = 8;

type Key = [u8; 32];

fn sha256(data: &[u8]) -> Key {
    Sha256::digest(data).into()
}

/// Block sizes drawn from: inline in sled (up to 64 KiB, including exactly
/// 64 KiB), files (just over 64 KiB up to the 1 MiB chunk size), and empty.
fn random_size(rng: &mut StdRng) -> usize {
    match rng.gen_range(0..100) {
        0..=1 => 0,
        2..=26 => 100,
        27..=51 => 10 * 1024,
        52..=56 => 64 * 1024,
        57..=61 => 64 * 1024 + 1,
        62..=76 => 100 * 1024,
        77..=89 => rng.gen_range(200 * 1024..=600 * 1024),
        _ => 1 << 20,
    }
}

fn random_block(rng: &mut StdRng, size: usize) -> Vec<u8> {
    let mut data = vec![0u8; size];
    rng.fill_bytes(&mut data);
    data
}

// ---------------------------------------------------------------------------
// The node child process.

/// A running `dhtfs node`. The child is spawned with `kill_on_drop`, so a
/// panicking test never leaves it behind.
struct NodeProc {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl NodeProc {
    async fn start(dir: &Path, listen: SocketAddr) -> NodeProc {
        let mut child = Command::from(node_command(dir, listen, None))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn dhtfs node");
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
            let stderr = stderr.clone();
            tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut s = stderr.lock().unwrap();
                    s.push_str(&line);
                    s.push('\n');
                }
            });
        }
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = timeout(START_TIMEOUT, stdout.next_line()).await;
        let line = match first {
            Ok(Ok(Some(line))) => line,
            other => {
                // Let the stderr reader catch up before showing it.
                tokio::time::sleep(Duration::from_millis(200)).await;
                panic!(
                    "node on {} did not print its listening line ({other:?}); exit: {:?}; stderr:\n{}",
                    dir.display(),
                    child.try_wait(),
                    stderr.lock().unwrap()
                );
            }
        };
        // Keep reading stdout so the node never writes into a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        let (addr, _, _) = parse_listening(&line);
        if listen.port() != 0 {
            assert_eq!(addr, listen, "restarted node must keep its address");
        }
        NodeProc {
            child,
            addr,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGKILL, then reap.
    async fn kill(&mut self) {
        self.child.start_kill().expect("SIGKILL the node");
        timeout(EXIT_TIMEOUT, self.child.wait())
            .await
            .expect("node exits after SIGKILL")
            .expect("wait for node");
    }

    /// SIGTERM, then wait for a clean exit (status 0).
    async fn terminate(&mut self) {
        let pid = self.child.id().expect("node still running before SIGTERM");
        // SAFETY: plain kill(2) on our own child's pid, which is not yet reaped.
        let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "SIGTERM the node");
        let status = timeout(EXIT_TIMEOUT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("node did not exit within {EXIT_TIMEOUT:?} of SIGTERM"))
            .expect("wait for node");
        // Let the stderr reader see the last lines.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            status.success(),
            "node exited with {status} after SIGTERM; stderr:\n{}",
            self.stderr()
        );
    }
}

// ---------------------------------------------------------------------------
// The test's own "original" peer: one UDP socket and one TCP block server on a
// single port.

/// An answer to one of our requests: the magic and `Ok(result)` or `Err(error)`.
type Answer = (u64, Result<Value, String>);

struct Peer {
    udp: Arc<UdpSocket>,
    addr: SocketAddr,
    id: Id,
    /// Every block generated in the current cycle, served over TCP.
    blocks: Arc<Mutex<HashMap<Key, Arc<Vec<u8>>>>>,
    answers: mpsc::UnboundedReceiver<Answer>,
}

impl Peer {
    async fn start(rng: &mut StdRng) -> Peer {
        let (udp, tcp) = bind_pair(Ipv4Addr::LOCALHOST.into()).await;
        let addr = udp.local_addr().unwrap();
        let mut id = Id([0u8; 32]);
        rng.fill_bytes(&mut id.0);
        let blocks: Arc<Mutex<HashMap<Key, Arc<Vec<u8>>>>> = Arc::default();
        let udp = Arc::new(udp);
        let (tx, answers) = mpsc::unbounded_channel();
        tokio::spawn(serve_tcp(tcp, blocks.clone()));
        tokio::spawn(serve_udp(udp.clone(), node_obj(&id, addr), tx));
        Peer {
            udp,
            addr,
            id,
            blocks,
            answers,
        }
    }

    async fn send_store(&self, node: SocketAddr, magic: u64, key: &Key) {
        let msg = json!({
            "magic": magic,
            "type": "store_value",
            "params": {"id": hex::encode(key)},
            "requester": node_obj(&self.id, self.addr),
        });
        self.udp
            .send_to(msg.to_string().as_bytes(), node)
            .await
            .expect("send store_value");
    }
}

/// The original's block server: one `<64 hex>\n` per connection, answered with
/// 4-byte little-endian length, `\n`, the bytes, then close; close without a
/// byte when the block is unknown.
async fn serve_tcp(listener: TcpListener, blocks: Arc<Mutex<HashMap<Key, Arc<Vec<u8>>>>>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let blocks = blocks.clone();
        tokio::spawn(async move {
            let mut line = Vec::with_capacity(66);
            let mut byte = [0u8; 1];
            let read_line = async {
                while line.len() < 130 {
                    match stream.read(&mut byte).await {
                        Ok(1) if byte[0] == b'\n' => return true,
                        Ok(1) => line.push(byte[0]),
                        _ => return false,
                    }
                }
                false
            };
            if !matches!(timeout(Duration::from_secs(10), read_line).await, Ok(true)) {
                return;
            }
            let text = String::from_utf8_lossy(&line);
            let Ok(raw) = hex::decode(text.trim_end_matches('\r')) else {
                return;
            };
            let Ok(key) = <Key>::try_from(raw.as_slice()) else {
                return;
            };
            let data = blocks.lock().unwrap().get(&key).cloned();
            if let Some(data) = data {
                let mut header = (data.len() as u32).to_le_bytes().to_vec();
                header.push(b'\n');
                let write = async {
                    stream.write_all(&header).await?;
                    stream.write_all(&data).await?;
                    stream.shutdown().await
                };
                let _ = timeout(Duration::from_secs(20), write).await;
            }
        });
    }
}

/// Receives datagrams: answers to our requests go to `answers`; requests from
/// the node (a restarted node rejoins through its routing snapshot and may ping
/// us) are answered as the original would.
async fn serve_udp(udp: Arc<UdpSocket>, me: Value, answers: mpsc::UnboundedSender<Answer>) {
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = udp.recv_from(&mut buf).await else {
            continue;
        };
        let Ok(msg) = serde_json::from_slice::<Value>(&buf[..n]) else {
            continue;
        };
        let magic = msg.get("magic").and_then(Value::as_u64);
        if let Some(error) = msg.get("error") {
            if let Some(magic) = magic {
                let _ = answers.send((magic, Err(error.to_string())));
            }
            continue;
        }
        if msg.get("resp") == Some(&Value::Bool(true)) {
            if let (Some(magic), Some(result)) = (magic, msg.get("result")) {
                let _ = answers.send((magic, Ok(result.clone())));
            }
            continue;
        }
        let kind = msg.get("type").and_then(Value::as_str).unwrap_or("");
        let result = match kind {
            "ping_node" => me.clone(),
            "find_node" | "find_value" => json!([]),
            _ => continue,
        };
        let _ = udp.send_to(&reply(&msg, result), from).await;
    }
}

// ---------------------------------------------------------------------------
// One cycle's stores, with the kill in the middle.

/// When to SIGKILL the node.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// This long after the first store was sent.
    After(Duration),
    /// Once this many stores of the cycle were answered "saved".
    Saved(usize),
}

/// What was stored for verification: size and the cycle it was saved in.
#[derive(Clone, Copy, Debug)]
struct SavedInfo {
    size: usize,
    cycle: usize,
}

struct CycleOutcome {
    sent: usize,
    saved: usize,
    in_flight_at_kill: usize,
    saved_after_kill: usize,
    busy: usize,
}

async fn fire_and_kill(
    peer: &mut Peer,
    node: &mut NodeProc,
    rng: &mut StdRng,
    magic_next: &mut u64,
    cycle: usize,
    kill_at: KillAt,
    saved: &mut HashMap<Key, SavedInfo>,
) -> CycleOutcome {
    let node_addr = node.addr;
    let mut pending: HashMap<u64, Key> = HashMap::new();
    let mut retry: VecDeque<(Instant, Key)> = VecDeque::new();
    let mut out = CycleOutcome {
        sent: 0,
        saved: 0,
        in_flight_at_kill: 0,
        saved_after_kill: 0,
        busy: 0,
    };
    let mut errors = Vec::new();
    let start = Instant::now();
    let deadline = match kill_at {
        KillAt::After(d) => start + d,
        KillAt::Saved(_) => start + FIRE_BACKSTOP,
    };
    let mut first = true;
    loop {
        // Keep the window full: retries that are due first, then new blocks.
        while pending.len() < WINDOW {
            let now = Instant::now();
            let key = match retry.front() {
                Some((due, _)) if *due <= now => retry.pop_front().unwrap().1,
                _ => {
                    // The first block of every cycle is the empty block.
                    let size = if first { 0 } else { random_size(rng) };
                    first = false;
                    let data = random_block(rng, size);
                    let key = sha256(&data);
                    peer.blocks.lock().unwrap().insert(key, Arc::new(data));
                    key
                }
            };
            let magic = *magic_next;
            *magic_next += 1;
            peer.send_store(node_addr, magic, &key).await;
            pending.insert(magic, key);
            out.sent += 1;
        }
        let kill_now = tokio::select! {
            answer = peer.answers.recv() => {
                let (magic, result) = answer.expect("UDP task alive");
                if let Some(key) = pending.remove(&magic) {
                    match result {
                        Ok(Value::String(s)) if s == "saved" => {
                            let size = peer.blocks.lock().unwrap()[&key].len();
                            saved.entry(key).or_insert(SavedInfo { size, cycle });
                            out.saved += 1;
                        }
                        Err(text) if text.contains("busy") => {
                            out.busy += 1;
                            retry.push_back((Instant::now() + RETRY_DELAY, key));
                        }
                        other => errors.push(format!("{}: {other:?}", hex::encode(key))),
                    }
                }
                matches!(kill_at, KillAt::Saved(n) if out.saved >= n)
            }
            _ = tokio::time::sleep_until(deadline.into()) => true,
            // Wake up for retries that fall due.
            _ = tokio::time::sleep(RETRY_DELAY) => false,
        };
        if kill_now {
            break;
        }
    }
    out.in_flight_at_kill = pending.len();
    node.kill().await;
    // Answers the node sent before it died are acknowledgements too.
    let drain_until = Instant::now() + DRAIN_AFTER_KILL;
    while let Ok(Some((magic, result))) =
        tokio::time::timeout_at(drain_until.into(), peer.answers.recv()).await
    {
        if let Some(key) = pending.remove(&magic) {
            if matches!(&result, Ok(Value::String(s)) if s == "saved") {
                let size = peer.blocks.lock().unwrap()[&key].len();
                saved.entry(key).or_insert(SavedInfo { size, cycle });
                out.saved += 1;
                out.saved_after_kill += 1;
            }
        }
    }
    assert!(
        errors.is_empty(),
        "cycle {cycle}: stores refused for blocks the peer serves correctly:\n{}",
        errors.join("\n")
    );
    // The node is dead: nothing will pull these blocks any more.
    peer.blocks.lock().unwrap().clear();
    out
}

// ---------------------------------------------------------------------------
// Verification.

/// Fetches `key` over raw TCP: Some(bytes) or None when the node closes
/// without a byte (absent).
async fn fetch(addr: SocketAddr, key: Key) -> Result<Option<Vec<u8>>, String> {
    timeout(FETCH_TIMEOUT, try_fetch(addr, &Id(key)))
        .await
        .map_err(|_| format!("timed out after {FETCH_TIMEOUT:?}"))?
}

/// Fetches every saved block from the node and checks its hash; returns a
/// description of each failure.
async fn verify_all(addr: SocketAddr, saved: &HashMap<Key, SavedInfo>) -> Vec<String> {
    let mut keys: Vec<(Key, SavedInfo)> = saved.iter().map(|(k, v)| (*k, *v)).collect();
    keys.sort_by_key(|(k, _)| *k);
    let mut failures = Vec::new();
    for chunk in keys.chunks(VERIFY_PARALLEL) {
        let mut set = tokio::task::JoinSet::new();
        for (key, info) in chunk.iter().copied() {
            set.spawn(async move { (key, info, fetch(addr, key).await) });
        }
        while let Some(joined) = set.join_next().await {
            let (key, info, result) = joined.expect("fetch task");
            let what = format!(
                "block {} ({} bytes, saved in cycle {})",
                hex::encode(key),
                info.size,
                info.cycle
            );
            match result {
                Ok(Some(data)) if sha256(&data) == key => {}
                Ok(Some(data)) => failures.push(format!(
                    "{what}: served {} bytes that hash to {}",
                    data.len(),
                    hex::encode(sha256(&data))
                )),
                Ok(None) => failures.push(format!("{what}: MISSING (node closed without a byte)")),
                Err(e) => failures.push(format!("{what}: fetch failed: {e}")),
            }
        }
    }
    failures
}

/// `text` without ANSI colour sequences (`ESC [ ... m`), which tracing writes
/// even into a pipe.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads `name=N` from the store's "repaired data dir" warning lines, summed.
fn repaired_count(stderr: &str, name: &str) -> u64 {
    let prefix = format!("{name}=");
    strip_ansi(stderr)
        .lines()
        .filter(|l| l.contains("repaired data dir"))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|w| w.strip_prefix(prefix.as_str()))
        .filter_map(|v| {
            v.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse::<u64>()
                .ok()
        })
        .sum()
}

fn assert_no_panic(node: &NodeProc, when: &str) {
    let stderr = node.stderr();
    assert!(
        !stderr.contains("panicked"),
        "node panicked ({when}); stderr:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_blocks_survive_sigkill() {
    let began = Instant::now();
    let seed = std::env::var("DHTFS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("crash: seed {seed} (set DHTFS_CRASH_SEED to replay)");
    let mut rng = StdRng::seed_from_u64(seed);

    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("node");
    let mut peer = Peer::start(&mut rng).await;
    let mut magic_next: u64 = rng.gen_range(1..1u64 << 31);
    let mut saved: HashMap<Key, SavedInfo> = HashMap::new();
    // A port no one else is handed meanwhile: the node comes back on it.
    let mut listen: SocketAddr = common::addr_for_restarts();
    let (mut total_sent, mut total_answers, mut total_busy) = (0, 0, 0);
    let mut entries_dropped = 0;
    let mut strays_removed = 0;
    let mut temps_removed = 0;
    let mut kills = 0;

    for cycle in 0..CYCLES {
        let mut node = NodeProc::start(&dir, listen).await;
        listen = node.addr;
        let kill_at = if cycle % 2 == 0 {
            KillAt::After(Duration::from_millis(rng.gen_range(50..=400)))
        } else {
            KillAt::Saved(rng.gen_range(5..=60))
        };
        let out = fire_and_kill(
            &mut peer,
            &mut node,
            &mut rng,
            &mut magic_next,
            cycle,
            kill_at,
            &mut saved,
        )
        .await;
        kills += 1;
        assert_no_panic(&node, "before the kill");
        assert!(
            out.in_flight_at_kill > 0,
            "cycle {cycle}: the kill must hit stores in flight"
        );
        total_sent += out.sent;
        total_answers += out.saved;
        total_busy += out.busy;

        // Restart on the same dir and port; its open repairs what the kill left.
        let mut node = NodeProc::start(&dir, listen).await;
        let failures = verify_all(node.addr, &saved).await;
        assert!(
            failures.is_empty(),
            "cycle {cycle}: {} of {} saved blocks not served intact after restart (seed {seed}):\n{}\nnode stderr:\n{}",
            failures.len(),
            saved.len(),
            failures.join("\n"),
            node.stderr()
        );
        // A graceful stop after the restart's repair leaves nothing behind, so
        // the audit can demand a fully clean dir, temp files included.
        node.terminate().await;
        assert_no_panic(&node, "after restart");
        let stderr = node.stderr();
        let dropped = repaired_count(&stderr, "index_entries_dropped")
            + repaired_count(&stderr, "corrupt_entries_dropped");
        assert_eq!(
            dropped, 0,
            "cycle {cycle}: the restart dropped index entries: a kill left an entry \
             without its bytes, which the write protocol must never do; stderr:\n{stderr}"
        );
        entries_dropped += dropped;
        strays_removed += repaired_count(&stderr, "stray_files_removed");
        temps_removed += repaired_count(&stderr, "temp_files_removed");

        let audit_dir = dir.clone();
        let audit = tokio::task::spawn_blocking(move || dhtfs::store::Store::audit(&audit_dir))
            .await
            .unwrap()
            .expect("audit the data dir");
        assert!(
            audit.is_clean(),
            "cycle {cycle}: data dir not clean after restart + SIGTERM: {audit:?}"
        );
        assert!(
            audit.blocks >= saved.len() as u64,
            "cycle {cycle}: audit counts {} blocks, fewer than the {} saved",
            audit.blocks,
            saved.len()
        );
        println!(
            "crash: cycle {cycle}: kill at {kill_at:?}: sent {}, saved {} ({} answered after the kill), \
             busy {}, {} in flight at the kill; {} distinct blocks saved so far all verified; audit {} blocks clean",
            out.sent,
            out.saved,
            out.saved_after_kill,
            out.busy,
            out.in_flight_at_kill,
            saved.len(),
            audit.blocks
        );
    }

    let distinct: HashSet<&Key> = saved.keys().collect();
    let files = saved.values().filter(|i| i.size > 64 * 1024).count();
    println!(
        "crash: {kills} kills, {total_answers} stores saved ({} distinct blocks: {} inline, {files} files, \
         of {total_sent} sent, {total_busy} busy retries), all {} present and verified after restart; \
         restarts removed {temps_removed} temp and {strays_removed} stray files, dropped {entries_dropped} \
         index entries; {:.1}s",
        distinct.len(),
        distinct.len() - files,
        distinct.len(),
        began.elapsed().as_secs_f64()
    );
    assert!(
        saved.len() >= CYCLES,
        "too few stores were saved ({}) for the test to mean anything",
        saved.len()
    );
}
