//! An attack on shedding (issue 10, item 3): a Sybil host at 127.0.0.2
//! claims ids next to a block's key and says it holds every block, hoping a
//! full node drops its copy of a block that only one honest node holds
//! besides. One address, one vote: it counts once, so the copy stays; a
//! block three honest closer nodes hold is dropped in the same pass.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::data::random_block;
use common::hostile::{hostile_ip, near};
use common::wire::{node_obj, reply, request};
use common::TestNet;
use dhtfs::id::Id;
use dhtfs::store::Origin;
use dhtfs::upkeep::shed_once;
use serde_json::{json, Value};
use tokio::net::UdpSocket;

const K: usize = 3;

/// Answers pings with the id it claimed first to everyone (the binding a
/// table keeps, so a check of it passes), find_node with nothing, and
/// find_value with "I hold it", until aborted.
fn spawn_holder_liar(
    udp: Arc<UdpSocket>,
    claimed: Vec<Id>,
    claims: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let me = udp.local_addr().unwrap();
        let mut buf = vec![0u8; 65_536];
        loop {
            let Ok((n, from)) = udp.recv_from(&mut buf).await else {
                continue;
            };
            let Ok(msg) = serde_json::from_slice::<Value>(&buf[..n]) else {
                continue;
            };
            if msg.get("resp").is_some() {
                continue;
            }
            let result = match msg["type"].as_str() {
                Some("ping_node") => node_obj(&claimed[0], me),
                Some("find_value") => {
                    claims.fetch_add(1, Ordering::Relaxed);
                    node_obj(&claimed[0], me)
                }
                Some("find_node") => json!([]),
                _ => continue,
            };
            let _ = udp.send_to(&reply(&msg, result), from).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sybil_claiming_to_hold_cannot_make_a_full_node_drop_a_copy() {
    let net = TestNet::start_with(8, |cfg| {
        cfg.k = K;
        cfg.republish_interval_secs = 0;
        cfg.handoff = false;
    })
    .await;
    let x = &net.nodes[7];
    let me = x.node.me().id;
    // Two blocks x is not among the closest of: `lone` held by one honest
    // closer node, `spread` by its three closest.
    let mut rng = rand::thread_rng();
    let (mut lone, mut spread) = (random_block(4096, &mut rng), random_block(4096, &mut rng));
    while net.true_closest(&lone.0, K).contains(&me) {
        lone = random_block(4096, &mut rng);
    }
    while net.true_closest(&spread.0, K).contains(&me) {
        spread = random_block(4096, &mut rng);
    }
    let by_id = |id: &Id| net.nodes.iter().find(|d| d.node.me().id == *id).unwrap();
    let closest = net.true_closest(&lone.0, K);
    by_id(&closest[0])
        .store
        .put_as(&lone.0, &lone.1, Origin::Replica)
        .unwrap();
    for id in net.true_closest(&spread.0, K) {
        by_id(&id)
            .store
            .put_as(&spread.0, &spread.1, Origin::Replica)
            .unwrap();
    }
    for (key, data) in [&lone, &spread] {
        x.store.put_as(key, data, Origin::Replica).unwrap();
    }

    // The Sybil: 20 ids right next to the lone block's key, introduced to
    // every node; each node's checks prove one of them.
    let udp = Arc::new(UdpSocket::bind((hostile_ip(2), 0)).await.unwrap());
    let sybil_addr = udp.local_addr().unwrap();
    let claimed: Vec<Id> = (0..20).map(|_| near(&lone.0, 64)).collect();
    let claims = Arc::new(AtomicU64::new(0));
    let sybil = spawn_holder_liar(udp.clone(), claimed.clone(), claims.clone());
    for (i, id) in claimed.iter().enumerate() {
        let ping = request(
            i as u64 + 1,
            "ping_node",
            json!({}),
            node_obj(id, sybil_addr),
        );
        for d in &net.nodes {
            let _ = udp.send_to(&ping, d.local_addr).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sybil_entries = x
        .node
        .routing_contacts()
        .iter()
        .filter(|c| c.addr == sybil_addr)
        .count();

    let report = shed_once(&x.node, &x.store, u64::MAX).await.unwrap();
    let claims = claims.load(Ordering::Relaxed);
    println!(
        "hostile: holder liar at {sybil_addr} (20 ids next to a block's key, 'I hold it' to every \
         find_value): {sybil_entries} entry in the full node's table, {claims} holder claims; \
         shedding {report:?}; \
         lone copy kept: {}, spread copy dropped: {}",
        x.store.contains(&lone.0),
        !x.store.contains(&spread.0)
    );
    sybil.abort();
    assert_eq!(
        sybil_entries, 1,
        "one address, one table entry, and it got it"
    );
    assert!(
        x.store.contains(&lone.0),
        "one honest holder and one hostile address are two votes, not three"
    );
    assert!(report.few_holders >= 1, "{report:?}");
    assert!(
        !x.store.contains(&spread.0),
        "a block three honest closer nodes hold is dropped in the same pass"
    );
}
