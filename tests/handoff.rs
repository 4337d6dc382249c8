//! Handoff on real nodes (issue 10, item 3): when nodes join, the holders of
//! blocks the newcomers are now among the K closest of store those blocks to
//! them at once, with no republish pass.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::data::random_bytes;
use common::put::put_file;
use common::TestNet;
use dhtfs::id::Id;

const CHUNK: u64 = 64 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newcomers_are_handed_the_blocks_they_are_now_closest_to() {
    let k = 3;
    // No republishing: only handoff can move a block.
    let quiet = move |cfg: &mut dhtfs::config::Config| {
        cfg.k = k;
        cfg.republish_interval_secs = 0;
    };
    let mut net = TestNet::start_with(10, quiet).await;
    let work = tempfile::tempdir().unwrap();
    let data = random_bytes(12 * CHUNK as usize, rand::random());
    put_file(
        work.path(),
        "file.bin",
        &data,
        CHUNK,
        k,
        net.nodes[0].local_addr,
    )
    .await;
    let keys: HashSet<Id> = net
        .nodes
        .iter()
        .flat_map(|d| d.store.list(None, 10_000).unwrap())
        .map(|(key, _)| key)
        .collect();
    assert_eq!(
        net.misplaced(&keys, k).len(),
        0,
        "the put reached the 3 closest"
    );
    let old: HashSet<Id> = net.contacts().iter().map(|c| c.id).collect();

    net.grow(10, quiet).await;
    // Keys with a newcomer among their closest: without handoff, these stay
    // short of a copy until a republish.
    let moved = keys
        .iter()
        .filter(|key| net.true_closest(key, k).iter().any(|id| !old.contains(id)))
        .count();
    assert!(
        moved >= 3,
        "{moved} of {} keys have a newcomer among their closest",
        keys.len()
    );

    let started = Instant::now();
    let mut left = net.misplaced(&keys, k).len();
    while left > 0 && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        left = net.misplaced(&keys, k).len();
    }
    let handed: u64 = net
        .nodes
        .iter()
        .map(|d| dhtfs::stats::Stats::get(&d.stats().handoff_stores))
        .sum();
    let failed: u64 = net
        .nodes
        .iter()
        .map(|d| dhtfs::stats::Stats::get(&d.stats().handoff_failures))
        .sum();
    eprintln!(
        "{moved} of {} keys gained a newcomer among their {k} closest; all placed after {:.1} s, {handed} handoff stores, {failed} failed",
        keys.len(),
        started.elapsed().as_secs_f64()
    );
    // On failure, say which key is short, who holds it, and which of its
    // holders know the missing node: handoff can only hand to a known node.
    let mut detail = Vec::new();
    for (key, holding) in net.misplaced(&keys, k) {
        let closest = net.true_closest(&key, k);
        for missing in closest.iter().filter(|id| {
            !net.nodes
                .iter()
                .any(|d| d.node.me().id == **id && d.store.contains(&key))
        }) {
            let knowers: Vec<String> = net
                .nodes
                .iter()
                .filter(|d| d.store.contains(&key))
                .map(|d| {
                    let knows = d.node.routing_contacts().iter().any(|c| c.id == *missing);
                    format!("{} knows it: {knows}", d.node.me().id.short())
                })
                .collect();
            detail.push(format!(
                "key {} on {holding} of its {k} closest; missing on {} (newcomer: {}); holders: {}",
                key.short(),
                missing.short(),
                !old.contains(missing),
                knowers.join(", ")
            ));
        }
    }
    assert_eq!(
        left,
        0,
        "every block on its {k} closest, by handoff alone: {}",
        detail.join("; ")
    );
    assert!(handed >= moved as u64);
    net.stop_all().await;
}
