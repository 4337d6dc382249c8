//! The scheduled republish sweep with an injected clock (tokio's, paused):
//! a pass spreads over the interval by keyspace position, and a restart
//! resumes it where it stopped, keeping the pass's start, so keys that fell
//! due while the node was down are caught up at once and none is done twice.
//!
//! A lone node: its lookups answer at once with itself, so what is measured
//! is only when the sweep reaches each key.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dhtfs::config::Config;
use dhtfs::contact::Contact;
use dhtfs::id::Id;
use dhtfs::net::{NetTransport, TcpClient};
use dhtfs::node::{Node, TokioClock};
use dhtfs::region::due_ms;
use dhtfs::stats::Stats;
use dhtfs::store::{Origin, Store};
use dhtfs::upkeep::{run_sweep, sweep_progress};
use rand::RngCore;
use tokio::sync::watch;

const INTERVAL: Duration = Duration::from_secs(3600);
const BLOCKS: usize = 400;
/// The unix time the first run's clock starts at, ms.
const T0: u64 = 1_800_000_000_000;

fn open(dir: &Path) -> Store {
    let cfg = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    common::retry_while_locked(|| Store::open(dir, cfg.store_config())).0
}

/// A node alone on a real loopback socket, its clock reading `unix_ms` now.
async fn lone_node(store: &Store, unix_ms: u64) -> Node {
    let udp = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let stats = Arc::new(Stats::default());
    let client = TcpClient::new(Duration::from_secs(5), stats.clone());
    let me = Contact::new(store.node_id(), udp.local_addr().unwrap());
    Node::new(
        me,
        Config::default().node_config(),
        Arc::new(NetTransport::new(udp, client, stats.clone())),
        Arc::new(TokioClock::starting_at_unix_ms(unix_ms)),
        Arc::new(store.clone()),
        stats,
    )
}

fn visited(node: &Node) -> u64 {
    Stats::get(&node.stats().republished_blocks)
}

#[tokio::test(start_paused = true)]
async fn the_sweep_spreads_over_the_interval_and_resumes_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let mut keys = Vec::new();
    for _ in 0..BLOCKS {
        let mut block = vec![0u8; 512];
        rand::thread_rng().fill_bytes(&mut block);
        let key = Id::of_block(&block);
        store.put_as(&key, &block, Origin::Pinned).unwrap();
        keys.push(key);
    }
    // Keys due by `ms` into the pass.
    let due_by = |ms: u64| {
        keys.iter()
            .filter(|k| due_ms(k, T0, 3_600_000) <= T0 + ms)
            .count() as u64
    };

    let node = lone_node(&store, T0).await;
    let (stop, stopped) = watch::channel(false);
    let sweep = tokio::spawn(run_sweep(node.clone(), store.clone(), INTERVAL, stopped));
    // Every 6 minutes of the first half hour, the sweep has reached exactly
    // the keys due by then: a tenth of the pass each time, not all at once.
    for step in 1..=5u64 {
        tokio::time::sleep(Duration::from_secs(360)).await;
        let (got, want) = (visited(&node), due_by(step * 360_000));
        assert!(
            got.abs_diff(want) <= 1,
            "after {} min: {got} blocks republished, {want} due",
            step * 6
        );
        assert!(got < BLOCKS as u64 * 6 / 10, "spread, not a burst: {got}");
    }
    let first_run = visited(&node);
    stop.send(true).unwrap();
    sweep.await.unwrap();
    let saved = sweep_progress(&store).expect("progress saved");
    assert_eq!(saved.pass_started_unix_ms, T0);
    assert_eq!(saved.pass.blocks, first_run);
    drop(node);
    drop(store);

    // Down for ten minutes; a restarted process's clock starts at 40 min.
    let store = open(tmp.path());
    let node = lone_node(&store, T0 + 40 * 60_000).await;
    let (stop, stopped) = watch::channel(false);
    let sweep = tokio::spawn(run_sweep(node.clone(), store.clone(), INTERVAL, stopped));
    tokio::time::sleep(Duration::from_millis(10)).await;
    // The keys that fell due while it was down are caught up at once...
    let caught_up = visited(&node);
    assert_eq!(
        first_run + caught_up,
        due_by(40 * 60_000),
        "caught up at restart"
    );
    // ...and the rest of the pass keeps its pace and ends with the interval.
    tokio::time::sleep(Duration::from_secs(10 * 60)).await;
    assert!((first_run + visited(&node)).abs_diff(due_by(50 * 60_000)) <= 1);
    // At 61 minutes the pass is over and the next one a minute in.
    tokio::time::sleep(Duration::from_secs(11 * 60)).await;
    let done = sweep_progress(&store).unwrap();
    assert_eq!(done.passes, 1);
    assert_eq!(done.last_pass.blocks, BLOCKS as u64, "none missed");
    let this_run_in_first_pass = visited(&node) - done.pass.blocks;
    assert_eq!(
        first_run + this_run_in_first_pass,
        BLOCKS as u64,
        "none twice"
    );
    assert!(
        done.pass.blocks.abs_diff(due_by(60_000)) <= 1,
        "the next pass keeps the pace"
    );
    assert_eq!(
        done.pass_started_unix_ms,
        T0 + 3_600_000,
        "the next pass an interval after the first"
    );
    stop.send(true).unwrap();
    sweep.await.unwrap();
}
