//! Sender-side pacing on real sockets: one node sends a peer far more
//! requests than the peer's per-source burst allows, and every one is
//! answered, because each waits its turn instead of being sent to be dropped.

mod common;

use std::sync::Arc;

use common::TestNet;
use dhtfs::contact::Contact;
use dhtfs::daemon::Daemon;
use dhtfs::id::Id;
use dhtfs::stats::{Outcome, Stats};
use dhtfs::wire::RequestType;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Requests in flight at once from the sender, as a busy honest node has.
const CONCURRENCY: usize = 64;

/// Sends `finds` find_nodes and `stores` store_values (4 KiB blocks the
/// sender holds) from `from` to `to`, `CONCURRENCY` at a time; the failures.
async fn flood(from: &Daemon, to: Contact, finds: usize, stores: usize) -> Vec<String> {
    let node = from.node.clone();
    let mut keys = Vec::new();
    for i in 0..stores {
        let data = format!("paced block {i} ").repeat(300).into_bytes();
        let key = Id::of_block(&data);
        node.blocks()
            .put_verified(&key, &data)
            .expect("stored locally");
        keys.push(key);
    }
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let mut running = JoinSet::new();
    for i in 0..finds + stores {
        let permit = slots.clone().acquire_owned().await.unwrap();
        let node = node.clone();
        let store = (i % 5 == 4).then(|| keys.pop()).flatten();
        running.spawn(async move {
            let _permit = permit;
            let result = match store {
                Some(key) => node.store_rpc(&to, key).await,
                None => node.find_node_rpc(&to, Id::random()).await.map(|_| ()),
            };
            result.map_err(|e| e.to_string())
        });
    }
    let mut failures = Vec::new();
    while let Some(done) = running.join_next().await {
        if let Err(e) = done.unwrap() {
            failures.push(e);
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sent_more_than_its_burst_answers_every_request() {
    // Every setting at its default: the receiver admits 250/s with a burst of
    // 1,000 per source, the sender keeps to 200/s and 800.
    let net = TestNet::start(2).await;
    let (sender, receiver) = (&net.nodes[0], &net.nodes[1]);
    let finds = 1_200;
    let stores = 300;
    let failures = flood(sender, receiver.node.me(), finds, stores).await;
    let s = sender.stats();
    let timeouts: u64 = [RequestType::FindNode, RequestType::StoreValue]
        .iter()
        .map(|&k| s.sent.get(k, Outcome::Timeout))
        .sum();
    println!(
        "{} requests: {} waited their turn, {} failed, {timeouts} timed out; \
         the receiver dropped {}, saved {}",
        finds + stores,
        Stats::get(&s.requests_paced),
        failures.len(),
        Stats::get(&receiver.stats().requests_limited),
        Stats::get(&receiver.stats().stores_saved),
    );
    assert!(
        failures.is_empty(),
        "{:?}",
        &failures[..failures.len().min(5)]
    );
    assert_eq!(timeouts, 0);
    assert_eq!(Stats::get(&receiver.stats().requests_limited), 0);
    assert!(Stats::get(&receiver.stats().stores_saved) >= stores as u64);
    assert_eq!(
        Stats::get(&receiver.stats().stores_refused),
        0,
        "no store refused as busy"
    );
    // It was pacing that kept them within the budget: many had to wait.
    assert!(Stats::get(&s.requests_paced) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_pacing_the_same_load_is_dropped() {
    // The control: the same number of finds from a sender that does not
    // pace meets the receiver's limit, so the test above means something.
    let net = TestNet::start_with(2, |cfg| {
        if cfg.data_dir.ends_with("node0") {
            cfg.send_requests_per_sec = 1_000_000;
            cfg.send_request_burst = 1_000_000;
        }
    })
    .await;
    let (sender, receiver) = (&net.nodes[0], &net.nodes[1]);
    let failures = flood(sender, receiver.node.me(), 1_500, 0).await;
    let dropped = Stats::get(&receiver.stats().requests_limited);
    println!(
        "unpaced: 1500 finds, {} failed, the receiver dropped {dropped}",
        failures.len()
    );
    assert!(dropped > 0);
    assert!(!failures.is_empty());
}
