//! Small-block latency on a loopback network of dhtfs nodes in this process:
//! a store to the K closest (what PutBlock does after its local put) and a
//! get (find_value, then fetching the block from a holder), each of a new
//! block from a node that does not hold it. Also the departed peer: a
//! short-lived peer that pinged every node, answered their checks, and left.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use dhtfs::contact::Contact;
use dhtfs::daemon::Daemon;
use dhtfs::id::Id;
use dhtfs::node::Transfer;
use dhtfs::routing::Heard;
use dhtfs::store::Origin;
use rand::{Rng, RngCore};
use serde_json::{json, Value};
use tokio::net::UdpSocket;

use crate::common::ms;

/// Latencies in ms, one per lookup.
#[derive(Default)]
pub struct Latencies {
    pub put: Vec<f64>,
    pub get: Vec<f64>,
}

/// Small blocks are 512 bytes: mainline's values must fit in 1000 bytes.
pub const SMALL: usize = 512;

/// `count` new blocks: each stored on a random node and replicated to the K
/// closest (timed), then fetched by a random node that does not hold it (timed).
pub async fn measure(nodes: &[Daemon], count: usize, into: &mut Latencies) {
    let mut rng = rand::thread_rng();
    for _ in 0..count {
        let mut data = vec![0u8; SMALL];
        rng.fill_bytes(&mut data);
        let key = Id::of_block(&data);
        let origin = &nodes[rng.gen_range(0..nodes.len())];
        let started = Instant::now();
        let store = origin.store.clone();
        tokio::task::spawn_blocking(move || store.put_as(&key, &data, Origin::Pinned))
            .await
            .expect("put task")
            .expect("local put");
        let report = origin.node.replicate(key).await;
        into.put.push(ms(started.elapsed()));
        assert!(!report.saved.is_empty(), "some node saved the block");
        let getter = loop {
            let d = &nodes[rng.gen_range(0..nodes.len())];
            if !d.store.contains(&key) {
                break d;
            }
        };
        let started = Instant::now();
        let max = getter.node.config().max_block_size;
        let got = getter.node.fetch_verified(key, max, &Transfer::new()).await;
        into.get.push(ms(started.elapsed()));
        assert!(got.is_ok(), "the block is found and fetched");
    }
}

/// Where the departed peer lives: its own loopback IP.
pub fn departed_ip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))
}

/// A peer at 127.0.0.3 pings every node once (so each puts it in its table
/// and checks it), answers pings for a second, and is gone, its socket
/// closed. A node whose bucket for it was full (it kept its old entries, as
/// Kademlia does) gets it by hand, in place of that bucket's least recently
/// seen entry, verified: as if it had arrived before the others, so it sits
/// in every table. Returns (tables it got into by pinging, tables it is in).
pub async fn depart(nodes: &[Daemon]) -> (usize, usize) {
    let udp = UdpSocket::bind((departed_ip(), 0))
        .await
        .expect("bind 127.0.0.3");
    let me = udp.local_addr().expect("addr");
    let id = Id::random();
    let obj = |addr: SocketAddr| json!({"node_id": id.to_hex(), "ip": addr.ip().to_string(), "port": addr.port()});
    for (i, d) in nodes.iter().enumerate() {
        let ping =
            json!({"magic": i as u64 + 1, "type": "ping_node", "params": {}, "requester": obj(me)});
        udp.send_to(ping.to_string().as_bytes(), d.local_addr)
            .await
            .expect("send ping");
    }
    let mut buf = vec![0u8; 65_536];
    let until = tokio::time::Instant::now() + Duration::from_secs(1);
    while let Ok(Ok((n, from))) = tokio::time::timeout_at(until, udp.recv_from(&mut buf)).await {
        let Ok(msg) = serde_json::from_slice::<Value>(&buf[..n]) else {
            continue;
        };
        if msg.get("resp").is_none() && msg["type"] == "ping_node" {
            let reply = json!({"magic": msg["magic"], "type": "ping_node", "resp": true, "result": obj(me)});
            let _ = udp.send_to(reply.to_string().as_bytes(), from).await;
        }
    }
    let holds = |d: &Daemon| d.node.table().contains(&id);
    let by_ping = nodes.iter().filter(|d| holds(d)).count();
    for d in nodes.iter().filter(|d| !holds(d)) {
        force_into_table(d, Contact::new(id, me));
    }
    drop(udp);
    (by_ping, nodes.iter().filter(|d| holds(d)).count())
}

/// Puts `ghost` into `d`'s table as a verified entry, evicting the least
/// recently seen entry of its bucket when that bucket is full.
fn force_into_table(d: &Daemon, ghost: Contact) {
    let now = d.node.clock().now_ms();
    let size = d.node.config().routing.k;
    let mut table = d.node.table();
    let Some(index) = table.local().bucket_index(&ghost.id) else {
        return;
    };
    let bucket: Vec<_> = table
        .entries()
        .into_iter()
        .filter(|(i, _)| *i == index)
        .map(|(_, e)| e)
        .collect();
    if bucket.len() >= size {
        if let Some(oldest) = bucket.iter().min_by_key(|e| e.last_seen) {
            table.remove(&oldest.contact.id);
        }
    }
    table.observe(ghost, Heard::Pong, now);
    table.on_ping_result(&ghost.id, true, now);
}
