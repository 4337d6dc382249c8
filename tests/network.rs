//! Twenty real nodes on 127.0.0.1: lookups find the true closest, a block
//! stored through one node is found and fetched from every other, and all of
//! it survives a graceful stop and a restart with no bootstrap.

mod common;

use common::fetch::tcp_fetch;
use common::{addr_for_restarts, test_config, TestNet};
use dhtfs::daemon::Daemon;
use dhtfs::id::Id;
use dhtfs::lookup::LookupKind;

const NODES: usize = 20;
const K: usize = 7;

fn median(v: &mut [u32]) -> u32 {
    v.sort_unstable();
    v[v.len() / 2]
}

async fn check_lookups(net: &TestNet, keys: &[Id], label: &str) {
    let mut hops = Vec::new();
    for key in keys {
        let want = net.true_closest(key, K);
        for d in &net.nodes {
            let result = d.node.lookup(*key, LookupKind::FindNode).await;
            let got: Vec<Id> = result.closest.iter().map(|c| c.id).collect();
            assert_eq!(
                got,
                want,
                "{label}: node {} looking up {key}",
                d.node.me().id.short()
            );
            hops.push(result.hops);
        }
    }
    let max = *hops.iter().max().unwrap();
    println!(
        "{label}: {} lookups on {NODES} real nodes, 100% exact, hops median {} max {max}",
        hops.len(),
        median(&mut hops)
    );
}

async fn check_block(net: &TestNet, key: &Id, data: &[u8]) {
    for d in &net.nodes {
        let holders = d.node.find_holders(*key).await;
        assert!(
            !holders.is_empty(),
            "node {} finds a holder",
            d.node.me().id.short()
        );
        let got = tcp_fetch(holders[0].addr, key)
            .await
            .expect("holder serves it");
        assert_eq!(Id::of_block(&got), *key);
        assert_eq!(got, data);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_nodes_route_store_and_survive_restart() {
    // Ports no one else is handed meanwhile: each node comes back on its own.
    let mut net = TestNet::start_with(NODES, |cfg| cfg.listen = addr_for_restarts()).await;
    let keys: Vec<Id> = (0..50).map(|_| Id::random()).collect();
    check_lookups(&net, &keys, "before restart").await;

    // Store one block through node 3: it keeps it and replicates to the K closest.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let key = Id::of_block(&data);
    let origin = &net.nodes[3];
    origin.store.put_verified(&key, &data).unwrap();
    let report = origin.node.replicate(key).await;
    assert!(
        report.failed.is_empty(),
        "every store saved: {:?}",
        report.failed
    );
    let holders: Vec<Id> = report.saved.iter().map(|c| c.id).collect();
    let mut want = net.true_closest(&key, K);
    let mut got = holders.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want, "stored on the true K closest");
    check_block(&net, &key, &data).await;

    // Stop everyone gracefully, then restart on the same dirs with no bootstrap.
    let ids: Vec<Id> = net.contacts().iter().map(|c| c.id).collect();
    let dirs = net.data_dirs();
    let addrs: Vec<_> = net.nodes.iter().map(|d| d.local_addr).collect();
    net.stop_all().await;
    for (dir, addr) in dirs.into_iter().zip(addrs) {
        // A restarted node comes back on its port, as under systemd.
        let mut cfg = test_config(dir);
        cfg.listen = addr;
        let d = Daemon::start(&cfg).await.unwrap();
        net.nodes.push(d);
    }
    // Node ids are kept for life.
    let again: Vec<Id> = net.contacts().iter().map(|c| c.id).collect();
    assert_eq!(again, ids);
    // No bootstrap: each rejoins from its routing snapshot, all at once, as a
    // fleet restarting would.
    let joins = net.nodes.iter().map(|d| d.join(&[]));
    let answered: Vec<usize> = futures::future::join_all(joins)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(
        answered.iter().all(|&a| a > 0),
        "every node rejoined: {answered:?}"
    );
    check_lookups(&net, &keys, "after restart").await;
    check_block(&net, &key, &data).await;
    net.stop_all().await;
}

/// Both halves of a mended split dropped each other: node 0 dropped nodes 1
/// and 2 for failing, and they forgot node 0. A rejoin pings the entries it
/// dropped and looks around, and all three know each other again; a second
/// rejoin has nobody to ask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_dropped_its_peers_finds_them_again() {
    let mut net = TestNet::start_with(3, |c| c.rejoin_interval_secs = 0).await;
    let ids: Vec<Id> = net.nodes.iter().map(|d| d.node.me().id).collect();
    {
        let mut table = net.nodes[0].node.table();
        for id in &ids[1..] {
            for now in 0..3 {
                table.on_failure(id, now);
            }
            assert!(!table.contains(id));
        }
    }
    for d in &net.nodes[1..] {
        d.node.table().remove(&ids[0]);
    }
    let answered = net.nodes[0].node.rejoin(&[]).await;
    assert_eq!(answered, 2, "both dropped peers answered");
    for id in &ids[1..] {
        assert!(
            net.nodes[0].node.table().contains(id),
            "node 0 knows {id} again"
        );
    }
    for d in &net.nodes[1..] {
        assert!(
            d.node.table().contains(&ids[0]),
            "{} knows node 0 again",
            d.node.me().id
        );
    }
    assert_eq!(net.nodes[0].node.rejoin(&[]).await, 0, "nobody left to ask");
    net.stop_all().await;
}

/// A dual-stack node on `[::]` knows peers of both families; a node on an
/// IPv4 address that hears of an IPv6 one from it leaves it alone (it could
/// only time out asking), and the dual-stack node knows the IPv4 node by
/// its IPv4 address, not the mapped one its socket reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv4_node_leaves_the_ipv6_contacts_it_hears_of_alone() {
    let dir = tempfile::tempdir().unwrap();
    let start = |name: &str, listen: &str| {
        let mut cfg = test_config(dir.path().join(name));
        cfg.listen = listen.parse().unwrap();
        async move { Daemon::start(&cfg).await.expect("node starts") }
    };
    let dual = start("dual", "[::]:0").await;
    let port = dual.local_addr.port();
    let v6 = start("v6", "[::1]:0").await;
    v6.join(&[format!("[::1]:{port}")]).await.unwrap();
    let v4 = start("v4", "127.0.0.1:0").await;
    v4.join(&[format!("127.0.0.1:{port}")]).await.unwrap();
    for _ in 0..4 {
        v4.node.find_closest(Id::random()).await;
        v6.node.find_closest(Id::random()).await;
    }
    let addrs = |d: &Daemon| -> Vec<std::net::SocketAddr> {
        d.node
            .table()
            .entries()
            .into_iter()
            .map(|(_, e)| e.contact.addr)
            .collect()
    };
    let (at_dual, at_v4) = (addrs(&dual), addrs(&v4));
    assert!(
        at_dual.contains(&v4.local_addr) && at_dual.contains(&v6.local_addr),
        "the dual-stack node knows both at their own addresses: {at_dual:?}"
    );
    assert!(
        at_v4.iter().all(|a| a.is_ipv4()),
        "the IPv4 node took IPv6 contacts: {at_v4:?}"
    );
    let failed = v4
        .node
        .stats()
        .datagrams_send_failed
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(failed, 0, "datagrams the IPv4 node could not send");
    for d in [dual, v6, v4] {
        d.shutdown().await;
    }
}

/// A fetch whose lookups go unanswered (its peers stopped, still in its
/// table) says that the network may be the cause, as a timeout, instead of
/// "no node holds it"; one whose lookups were all answered still says that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_that_hears_from_nobody_blames_the_network_not_the_block() {
    let mut net = TestNet::start_with(4, |c| c.request_timeout_ms = 300).await;
    let key = Id::of_block(b"held by nobody");
    // A fresh transfer each time: no peer marked slow by the one before.
    let fetch = |node: dhtfs::node::Node| async move {
        let transfer = dhtfs::node::Transfer::default();
        node.fetch_verified(key, 1 << 20, &transfer).await
    };
    let answered = fetch(net.nodes[0].node.clone())
        .await
        .expect_err("nobody holds it");
    assert_eq!(answered.why, "no node holds it");
    assert!(!answered.timed_out);
    for d in net.nodes.drain(1..) {
        d.shutdown().await;
    }
    let unanswered = fetch(net.nodes[0].node.clone())
        .await
        .expect_err("nobody answers");
    assert!(
        unanswered.why.contains("went unanswered") && unanswered.timed_out,
        "{}",
        unanswered.why
    );
    net.stop_all().await;
}
