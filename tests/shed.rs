//! Pins and shedding on real nodes (issue 10, items 2 and 3): a node that
//! holds none of a file pins it and then holds every block pinned; once over
//! the quota's high-water mark it drops the replicas that K closer nodes
//! hold, never a pinned block, nor a replica it is still responsible for.

mod common;

use std::collections::HashSet;

use common::admin::{client, pin};
use common::data::random_bytes;
use common::put::put_file;
use common::TestNet;
use dhtfs::id::Id;
use dhtfs::store::pressure::Marks;
use dhtfs::store::{Origin, Store};
use dhtfs::upkeep::shed_once;

const CHUNK: u64 = 64 << 10;
const K: usize = 3;

fn quiet(cfg: &mut dhtfs::config::Config) {
    cfg.k = K;
    cfg.republish_interval_secs = 0;
}

fn held(store: &Store) -> HashSet<Id> {
    store
        .list(None, 100_000)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_drops_replicas_others_hold_but_never_a_pinned_block() {
    let mut net = TestNet::start_with(8, quiet).await;
    // The node under test: a quota it will fill past the 90% mark.
    let quota = 840 << 10;
    net.grow(1, |cfg| {
        quiet(cfg);
        cfg.quota_bytes = quota;
    })
    .await;
    for d in &net.nodes {
        d.node.refresh_buckets(0).await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let x = net.nodes.len() - 1;
    let work = tempfile::tempdir().unwrap();
    let via = net.nodes[0].local_addr;

    // A file x holds none of, pinned through its admin API.
    let pinned = random_bytes(4 * CHUNK as usize, rand::random());
    let pinned_root = put_file(work.path(), "pinned.bin", &pinned, CHUNK, K, via).await;
    let pinned: HashSet<Id> = net.nodes.iter().flat_map(|d| held(&d.store)).collect();
    assert_eq!(pinned.len(), 5, "4 chunks and the manifest");
    let mut c = client(net.nodes[x].admin_addr).await;
    pin(&mut c, pinned_root).await.expect("pin");
    for key in &pinned {
        let r = net.nodes[x].store.record(key).unwrap().expect("x holds it");
        assert_eq!(r.origin, Origin::Pinned);
    }

    // Another file stored on its 3 closest, and copies of its blocks on x as
    // replicas, as if x had been among their closest before others came.
    let replicas = random_bytes(8 * CHUNK as usize, rand::random());
    put_file(work.path(), "replicas.bin", &replicas, CHUNK, K, via).await;
    let all: HashSet<Id> = net.nodes.iter().flat_map(|d| held(&d.store)).collect();
    let replicas: Vec<Id> = all.difference(&pinned).copied().collect();
    assert_eq!(replicas.len(), 9, "8 chunks and the manifest");
    for key in &replicas {
        let holder = net.nodes[..x]
            .iter()
            .find(|d| d.store.contains(key))
            .unwrap();
        let data = holder.store.get(key).unwrap().unwrap();
        net.nodes[x]
            .store
            .put_as(key, &data, Origin::Replica)
            .unwrap();
    }
    let store = &net.nodes[x].store;
    let wanted = store.space_wanted(Marks::default());
    let charged = store.charged_bytes();
    assert!(wanted > 0, "charged {charged} of a {quota}-byte quota");

    let me = net.nodes[x].node.me().id;
    let responsible: HashSet<Id> = replicas
        .iter()
        .filter(|key| net.true_closest(key, K).contains(&me))
        .copied()
        .collect();
    let report = shed_once(&net.nodes[x].node, store, wanted).await.unwrap();
    eprintln!(
        "charged {charged} of {quota}: {wanted} bytes wanted; {report:?}; {} of {} replicas x is responsible for",
        responsible.len(),
        replicas.len()
    );
    assert!(report.dropped > 0);
    let now_held = held(store);
    for key in &pinned {
        assert!(now_held.contains(key), "a pinned block stays");
    }
    for key in &responsible {
        assert!(
            now_held.contains(key),
            "a replica x is among the closest of stays"
        );
    }
    for key in replicas.iter().filter(|k| !now_held.contains(*k)) {
        let holders = net.nodes[..x]
            .iter()
            .filter(|d| d.store.contains(key))
            .count();
        assert!(
            holders >= K,
            "a dropped block is still held {K} times: {holders}"
        );
    }
    let droppable: u64 = (replicas.len() - responsible.len()) as u64 * CHUNK;
    if droppable >= wanted + CHUNK {
        assert_eq!(
            store.space_wanted(Marks::default()),
            0,
            "back under the low-water mark"
        );
    }
    net.stop_all().await;
}
