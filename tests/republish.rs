//! The republish sweep on real nodes (issue 10, items 4 and the acceptance
//! checks on republishing): blocks follow the network as it grows and loses
//! holders, a region lookup serves many blocks, and a block another node
//! just stored to us again is skipped.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::put::put_file;
use common::TestNet;
use dhtfs::files::{get, GetOptions};
use dhtfs::id::Id;
use dhtfs::stats::Outcome;
use dhtfs::store::{Origin, Refresh};
use dhtfs::upkeep::republish_once;
use dhtfs::wire::RequestType;
use rand::RngCore;

const CHUNK: u64 = 64 << 10;

/// The config of every node here: the scheduled sweep and handoff off, so
/// only the passes a test runs move any block.
fn quiet(k: usize) -> impl Fn(&mut dhtfs::config::Config) {
    move |cfg| {
        cfg.k = k;
        cfg.republish_interval_secs = 0;
        cfg.handoff = false;
    }
}

/// Every stored key of every node.
fn all_keys(net: &TestNet) -> HashSet<Id> {
    let mut keys = HashSet::new();
    for d in &net.nodes {
        for (key, _) in d.store.list(None, 1_000_000).unwrap() {
            keys.insert(key);
        }
    }
    keys
}

/// Every live node runs one full republish pass, one after another.
async fn republish_everywhere(net: &TestNet) {
    for d in &net.nodes {
        republish_once(&d.node, &d.store, None).await.unwrap();
    }
}

/// Lets every node check the contacts it heard of (a pinged contact is
/// handed out only once it answered), as the daemon's 1 s sweep does.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_follow_the_network_as_it_grows_and_loses_holders() {
    let k = 3;
    let mut net = TestNet::start_with(12, quiet(k)).await;
    let work = tempfile::tempdir().unwrap();
    let mut data = vec![0u8; 5 * CHUNK as usize + 1234];
    rand::thread_rng().fill_bytes(&mut data);
    let root = put_file(
        work.path(),
        "file.bin",
        &data,
        CHUNK,
        k,
        net.nodes[0].local_addr,
    )
    .await;
    let keys = all_keys(&net);
    assert!(keys.len() >= 7, "5+ chunks and a manifest: {}", keys.len());

    net.grow(12, quiet(k)).await;
    for d in &net.nodes {
        d.node.refresh_buckets(0).await;
    }
    settle().await;
    let before = net.misplaced(&keys, k);
    assert!(
        !before.is_empty(),
        "newcomers among the closest of some block"
    );
    eprintln!(
        "24 nodes: {} of {} blocks not on all of their {k} closest before republishing",
        before.len(),
        keys.len()
    );
    republish_everywhere(&net).await;
    let after = net.misplaced(&keys, k);
    assert!(after.is_empty(), "after every node's pass: {after:?}");

    // Two holders of the root go away.
    let holders: Vec<Id> = net.true_closest(&root, k);
    let mut gone = 0;
    let mut i = 0;
    while gone < 2 {
        if holders.contains(&net.nodes[i].node.me().id) && i != 0 {
            net.nodes.remove(i).shutdown().await;
            gone += 1;
        } else {
            i += 1;
        }
    }
    republish_everywhere(&net).await;
    let after = net.misplaced(&keys, k);
    assert!(after.is_empty(), "after the holders left: {after:?}");

    let out = work.path().join("back.bin");
    let opts = GetOptions {
        bootstrap: vec![net.nodes[net.nodes.len() - 1].local_addr],
        quiet: true,
        ..GetOptions::new(root, out.clone())
    };
    get(&opts).await.expect("the file reads back");
    assert!(std::fs::read(&out).unwrap() == data, "identical bytes");
    net.stop_all().await;
}

/// DHT lookup requests a node has sent (find_node and find_value).
fn lookup_requests(d: &dhtfs::daemon::Daemon) -> u64 {
    let sent = &d.stats().sent;
    [RequestType::FindNode, RequestType::FindValue]
        .into_iter()
        .flat_map(|t| Outcome::ALL.map(|o| sent.get(t, o)))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_blocks_cost_few_lookups_and_blocks_stored_again_are_skipped() {
    let k = 7;
    let net = TestNet::start_with(24, quiet(k)).await;
    settle().await;
    let a = &net.nodes[5];
    let mut keys = HashSet::new();
    let mut rng = rand::thread_rng();
    for _ in 0..2000 {
        let mut block = vec![0u8; 1024];
        rng.fill_bytes(&mut block);
        let key = Id::of_block(&block);
        a.store.put_as(&key, &block, Origin::Pinned).unwrap();
        keys.insert(key);
    }

    let sent_before = lookup_requests(a);
    let first = republish_once(&a.node, &a.store, None).await.unwrap();
    let sent = lookup_requests(a) - sent_before;
    let per_block = sent as f64 / 2000.0;
    eprintln!("first pass: {first:?}; {sent} lookup requests sent = {per_block:.3} per block");
    assert_eq!(first.blocks, 2000);
    assert!(per_block <= 0.5, "{per_block:.3} lookup requests per block");
    let bad = net.misplaced(&keys, k);
    assert!(
        bad.is_empty(),
        "{} blocks not on their {k} closest: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );

    // Every other node republishes what it now holds: a's copies of the
    // blocks it is among the closest of are stored to it again.
    for d in net
        .nodes
        .iter()
        .filter(|d| d.node.me().id != a.node.me().id)
    {
        republish_once(&d.node, &d.store, None).await.unwrap();
    }
    let again = keys
        .iter()
        .filter(|key| a.store.record(key).unwrap().unwrap().last_refresh == Refresh::StoredAgain)
        .count() as u64;
    let second = republish_once(&a.node, &a.store, Some(3600)).await.unwrap();
    eprintln!("second pass: {second:?}; {again} blocks were stored to it again");
    assert!(
        again > 100,
        "a is among the 7 closest of about 7/24 of the blocks"
    );
    assert_eq!(second.skipped, again);
    assert_eq!(second.blocks, 2000);
    assert!(bad.is_empty());
}
