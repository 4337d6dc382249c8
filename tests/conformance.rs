//! Conformance with the original DHTFileStore, written from WIRE-FACTS.md: the
//! test is an original peer, speaking raw JSON over UDP and raw TCP.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::fetch::tcp_fetch;
use common::test_config;
use common::wire::{bind_pair, block_frame, node_obj, reply};
use dhtfs::daemon::Daemon;
use dhtfs::id::Id;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

/// A peer as the original implements it: one port for UDP and TCP, blocks
/// served as `len (4 bytes LE) \n bytes`, closing without a byte when absent.
struct OriginalPeer {
    id: Id,
    udp: Arc<UdpSocket>,
    /// Datagrams that are not requests (answers and errors), in arrival order.
    inbox: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Value>>,
    addr: SocketAddr,
    /// What it serves for each key (a liar serves bytes that do not match).
    serves: Arc<Mutex<HashMap<Id, Vec<u8>>>>,
    /// How many block requests its TCP side received.
    pulls: Arc<Mutex<u32>>,
    /// How long its TCP side waits before answering a block request (ms).
    delay_ms: Arc<AtomicU64>,
}

impl OriginalPeer {
    async fn start() -> OriginalPeer {
        let (udp, tcp) = bind_pair([127, 0, 0, 1].into()).await;
        let addr = udp.local_addr().unwrap();
        let id = Id::random();
        let udp = Arc::new(udp);
        // Like an original node, it answers the pings a node sends to check
        // it, whenever they come; everything else goes to the test.
        let (tx, inbox) = tokio::sync::mpsc::unbounded_channel();
        let socket = udp.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let msg: Value = serde_json::from_slice(&buf[..n]).expect("the node sends JSON");
                if msg.get("resp").is_some() || msg.get("error").is_some() {
                    if tx.send(msg).is_err() {
                        return;
                    }
                    continue;
                }
                assert_eq!(
                    msg["type"],
                    json!("ping_node"),
                    "the node only pings: {msg}"
                );
                let _ = socket
                    .send_to(&reply(&msg, node_obj(&id, addr)), from)
                    .await;
            }
        });
        let serves: Arc<Mutex<HashMap<Id, Vec<u8>>>> = Arc::default();
        let pulls: Arc<Mutex<u32>> = Arc::default();
        let delay_ms: Arc<AtomicU64> = Arc::default();
        let (s, p, d) = (serves.clone(), pulls.clone(), delay_ms.clone());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = tcp.accept().await {
                let (s, p, d) = (s.clone(), p.clone(), d.clone());
                tokio::spawn(async move {
                    // The original reads one line and answers once.
                    let mut line = Vec::new();
                    let mut byte = [0u8; 1];
                    while conn.read_exact(&mut byte).await.is_ok() && byte[0] != b'\n' {
                        line.push(byte[0]);
                    }
                    *p.lock().unwrap() += 1;
                    let key = Id::from_hex(std::str::from_utf8(&line).unwrap_or("")).ok();
                    let data = key.and_then(|k| s.lock().unwrap().get(&k).cloned());
                    tokio::time::sleep(Duration::from_millis(d.load(Ordering::SeqCst))).await;
                    if let Some(data) = data {
                        let _ = conn.write_all(&block_frame(&data)).await;
                    }
                });
            }
        });
        OriginalPeer {
            id,
            udp,
            inbox: tokio::sync::Mutex::new(inbox),
            addr,
            serves,
            pulls,
            delay_ms,
        }
    }

    fn node_obj(&self) -> Value {
        node_obj(&self.id, self.addr)
    }

    fn request(&self, magic: u64, kind: &str, params: Value) -> Value {
        json!({"magic": magic, "type": kind, "params": params, "requester": self.node_obj()})
    }

    async fn send_raw(&self, to: SocketAddr, bytes: &[u8]) {
        self.udp.send_to(bytes, to).await.unwrap();
    }

    /// The next datagram that is not a request, or None within `wait`.
    async fn recv(&self, wait: Duration) -> Option<Value> {
        let mut inbox = self.inbox.lock().await;
        tokio::time::timeout(wait, inbox.recv()).await.ok()?
    }

    async fn call(&self, to: SocketAddr, msg: Value) -> Value {
        self.send_raw(to, msg.to_string().as_bytes()).await;
        self.recv(Duration::from_secs(25)).await.expect("an answer")
    }
}

async fn start_node(dir: &tempfile::TempDir) -> Daemon {
    Daemon::start(&test_config(dir.path().join("node")))
        .await
        .unwrap()
}

fn assert_response(resp: &Value, magic: u64, kind: &str) {
    assert_eq!(resp["magic"], json!(magic), "{resp}");
    assert_eq!(resp["type"], json!(kind), "{resp}");
    assert_eq!(resp["resp"], json!(true), "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_find_node_and_requester_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(&dir).await;
    let to = node.local_addr;
    let me = node.node.me();

    let peer = OriginalPeer::start().await;
    let resp = peer.call(to, peer.request(1, "ping_node", json!({}))).await;
    assert_response(&resp, 1, "ping_node");
    assert_eq!(resp["result"]["node_id"], json!(me.id.to_hex()));
    assert_eq!(resp["result"]["port"], json!(to.port()));
    assert_eq!(resp["result"]["ip"], json!("127.0.0.1"));

    // Ten more peers introduce themselves, one with the README's spelling.
    let mut others = Vec::new();
    for i in 0..10u64 {
        let p = OriginalPeer::start().await;
        let mut msg = p.request(100 + i, "ping_node", json!({}));
        if i == 0 {
            let obj = msg.as_object_mut().unwrap();
            let r = obj.remove("requester").unwrap();
            obj.insert("requestor".into(), r);
        }
        let resp = p.call(to, msg).await;
        assert_response(&resp, 100 + i, "ping_node");
        others.push(p);
    }

    // The node hands out only peers whose id it proved with a ping of its
    // own: each peer answers it, as an original node does.
    let target = Id::random();
    for _ in 0..100 {
        if node.node.table().closest_good(&target, 20).len() == 11 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(node.node.table().closest_good(&target, 20).len(), 11);

    // find_node: up to 7 nodes, closest to the target first, from its table.
    let resp = peer
        .call(
            to,
            peer.request(2, "find_node", json!({"id": target.to_hex()})),
        )
        .await;
    assert_response(&resp, 2, "find_node");
    let list = resp["result"].as_array().unwrap();
    assert_eq!(list.len(), 7);
    let got: Vec<Id> = list
        .iter()
        .map(|n| Id::from_hex(n["node_id"].as_str().unwrap()).unwrap())
        .collect();
    let mut want: Vec<Id> = others.iter().map(|p| p.id).collect();
    want.push(peer.id);
    want.sort_by_key(|id| id.distance(&target));
    // The asker itself is left out of the answer.
    want.retain(|id| *id != peer.id);
    want.truncate(7);
    assert_eq!(got, want);
    for n in list {
        assert_eq!(n["ip"], json!("127.0.0.1"));
        assert!(n["port"].as_u64().unwrap() > 0);
        let hex = n["node_id"].as_str().unwrap();
        assert_eq!(hex, hex.to_lowercase(), "ids go out lowercase");
    }

    // A short-lived client marks its requests `"ro": 1`: answered, not remembered.
    let client = OriginalPeer::start().await;
    let mut msg = client.request(4, "ping_node", json!({}));
    msg["ro"] = json!(1);
    let resp = client.call(to, msg).await;
    assert_response(&resp, 4, "ping_node");
    assert!(!node.node.table().contains(&client.id));
    assert!(node.node.table().contains(&peer.id));

    // Upper-case hex is accepted, as Python's bytes.fromhex does.
    let resp = peer
        .call(
            to,
            peer.request(
                3,
                "find_node",
                json!({"id": target.to_hex().to_uppercase()}),
            ),
        )
        .await;
    assert_response(&resp, 3, "find_node");
    node.shutdown().await;
}

/// A store_value sent again with the same magic (its answer lost, or only
/// late) while the node still pulls the block costs no second pull and gets
/// one answer; sent again after "saved", it is answered "saved" at once,
/// without a pull. Our own requester resends an unanswered store so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_value_sent_again_is_pulled_once_and_answered() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(&dir).await;
    let to = node.local_addr;
    let peer = OriginalPeer::start().await;
    let data = vec![5u8; 100_000];
    let key = Id::of_block(&data);
    peer.serves.lock().unwrap().insert(key, data);
    peer.delay_ms.store(600, Ordering::SeqCst);
    let msg = peer.request(21, "store_value", json!({"id": key.to_hex()}));
    for _ in 0..3 {
        peer.send_raw(to, msg.to_string().as_bytes()).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resp = peer.recv(Duration::from_secs(25)).await.expect("an answer");
    assert_response(&resp, 21, "store_value");
    assert_eq!(resp["result"], json!("saved"), "{resp}");
    assert_eq!(
        *peer.pulls.lock().unwrap(),
        1,
        "one pull for three copies of the request"
    );
    assert!(
        peer.recv(Duration::from_millis(800)).await.is_none(),
        "one answer for the copies that came while the store ran"
    );

    // Its answer lost, the request comes again: saved, and nothing pulled.
    peer.delay_ms.store(0, Ordering::SeqCst);
    let resp = peer.call(to, msg).await;
    assert_response(&resp, 21, "store_value");
    assert_eq!(resp["result"], json!("saved"), "{resp}");
    assert_eq!(*peer.pulls.lock().unwrap(), 1, "no second pull");
    assert!(node.store.contains(&key));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_by_pull_find_value_and_tcp_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(&dir).await;
    let to = node.local_addr;
    let me = node.node.me();
    let peer = OriginalPeer::start().await;

    // A block whose length, 266 = 0a 01 00 00, holds a newline byte.
    let data: Vec<u8> = (0..266u32).map(|i| i as u8).collect();
    let key = Id::of_block(&data);
    peer.serves.lock().unwrap().insert(key, data.clone());

    // find_value before: not held, so a list of nodes.
    let resp = peer
        .call(
            to,
            peer.request(10, "find_value", json!({"id": key.to_hex()})),
        )
        .await;
    assert_response(&resp, 10, "find_value");
    assert!(resp["result"].is_array(), "{resp}");

    // store_value: the node pulls from us over TCP, checks, stores, says saved.
    let resp = peer
        .call(
            to,
            peer.request(11, "store_value", json!({"id": key.to_hex()})),
        )
        .await;
    assert_response(&resp, 11, "store_value");
    assert_eq!(resp["result"], json!("saved"));
    assert_eq!(*peer.pulls.lock().unwrap(), 1, "pulled from the requester");

    // find_value after: the node's own object.
    let resp = peer
        .call(
            to,
            peer.request(12, "find_value", json!({"id": key.to_hex()})),
        )
        .await;
    assert_response(&resp, 12, "find_value");
    assert_eq!(resp["result"]["node_id"], json!(me.id.to_hex()));

    // TCP fetch: exact frame bytes.
    let mut conn = tokio::net::TcpStream::connect(to).await.unwrap();
    conn.write_all(format!("{key}\n").as_bytes()).await.unwrap();
    let mut frame = vec![0u8; 5 + data.len()];
    conn.read_exact(&mut frame).await.unwrap();
    assert_eq!(&frame[..5], &[0x0a, 0x01, 0x00, 0x00, b'\n']);
    assert_eq!(&frame[5..], &data[..]);
    // Our extension: the same connection takes another key line.
    conn.write_all(format!("{key}\n").as_bytes()).await.unwrap();
    conn.read_exact(&mut frame).await.unwrap();
    assert_eq!(&frame[5..], &data[..]);
    // An absent key: closed without a byte.
    let absent = Id::random();
    conn.write_all(format!("{absent}\n").as_bytes())
        .await
        .unwrap();
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    assert_eq!(tcp_fetch(to, &absent).await, None);

    // The empty block is a block like any other.
    let empty = Id::of_block(b"");
    peer.serves.lock().unwrap().insert(empty, Vec::new());
    let resp = peer
        .call(
            to,
            peer.request(13, "store_value", json!({"id": empty.to_hex()})),
        )
        .await;
    assert_eq!(resp["result"], json!("saved"), "{resp}");
    assert_eq!(tcp_fetch(to, &empty).await, Some(Vec::new()));

    // A liar: serves bytes that do not hash to the key. Error, nothing stored.
    let claimed = Id::of_block(b"the real bytes");
    peer.serves
        .lock()
        .unwrap()
        .insert(claimed, b"something else".to_vec());
    let resp = peer
        .call(
            to,
            peer.request(14, "store_value", json!({"id": claimed.to_hex()})),
        )
        .await;
    assert_eq!(resp["magic"], json!(14), "{resp}");
    assert!(
        resp["error"].as_str().unwrap().contains("do not hash"),
        "{resp}"
    );
    assert!(resp.get("resp").is_none());
    assert_eq!(tcp_fetch(to, &claimed).await, None);
    assert!(!node.store.contains(&claimed));

    // A peer that holds nothing: error, nothing stored.
    let missing = Id::random();
    let resp = peer
        .call(
            to,
            peer.request(15, "store_value", json!({"id": missing.to_hex()})),
        )
        .await;
    assert_eq!(resp["magic"], json!(15), "{resp}");
    assert!(resp["error"].as_str().is_some(), "{resp}");

    // Over the size limit (1 MiB): refused with a reason.
    let big = vec![7u8; (1 << 20) + 1];
    let big_key = Id::of_block(&big);
    peer.serves.lock().unwrap().insert(big_key, big);
    let resp = peer
        .call(
            to,
            peer.request(16, "store_value", json!({"id": big_key.to_hex()})),
        )
        .await;
    assert!(resp["error"].as_str().unwrap().contains("limit"), "{resp}");
    assert!(!node.store.contains(&big_key));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_datagrams_are_answered_or_dropped_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(&dir).await;
    let to = node.local_addr;
    let peer = OriginalPeer::start().await;
    let requester = peer.node_obj();

    let cases: Vec<(&str, Vec<u8>, Option<u64>)> = vec![
        ("not JSON", b"hello there".to_vec(), None),
        ("binary garbage", vec![0xff, 0xfe, 0x00, 0x80], None),
        ("JSON array", b"[1, 2, 3]".to_vec(), None),
        ("JSON string", b"\"ping_node\"".to_vec(), None),
        ("empty object", b"{}".to_vec(), None),
        ("missing type", json!({"magic": 21, "params": {}, "requester": requester}).to_string().into_bytes(), Some(21)),
        ("unknown type", json!({"magic": 22, "type": "dance", "params": {}, "requester": requester}).to_string().into_bytes(), Some(22)),
        ("type not a string", json!({"magic": 23, "type": 7, "params": {}, "requester": requester}).to_string().into_bytes(), Some(23)),
        ("bad hex id", json!({"magic": 24, "type": "find_node", "params": {"id": "xyz"}, "requester": requester}).to_string().into_bytes(), Some(24)),
        ("id missing", json!({"magic": 25, "type": "find_value", "params": {}, "requester": requester}).to_string().into_bytes(), Some(25)),
        ("params not an object", json!({"magic": 26, "type": "store_value", "params": "x", "requester": requester}).to_string().into_bytes(), Some(26)),
        ("no requester", json!({"magic": 27, "type": "ping_node", "params": {}}).to_string().into_bytes(), Some(27)),
        ("requester with bad port", json!({"magic": 28, "type": "ping_node", "params": {}, "requester": {"node_id": peer.id.to_hex(), "ip": "127.0.0.1", "port": 99999}}).to_string().into_bytes(), Some(28)),
        ("negative magic", json!({"magic": -5, "type": "ping_node", "params": {}, "requester": requester}).to_string().into_bytes(), None),
        ("deep nesting", format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(), None),
        ("big datagram", format!("{{\"magic\": 29, \"pad\": \"{}\"}}", "a".repeat(60_000)).into_bytes(), Some(29)),
    ];
    let mut magic = 1000;
    for (what, bytes, want_magic) in &cases {
        peer.send_raw(to, bytes).await;
        let reply = peer.recv(Duration::from_secs(2)).await;
        if let Some(reply) = reply {
            let error = reply["error"]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: {reply}"));
            assert!(!error.is_empty(), "{what}");
            assert!(reply.get("resp").is_none(), "{what}: {reply}");
            assert_eq!(
                reply.get("magic").and_then(Value::as_u64),
                *want_magic,
                "{what}: {reply}"
            );
        }
        // Still serving.
        magic += 1;
        let resp = peer
            .call(to, peer.request(magic, "ping_node", json!({})))
            .await;
        assert_response(&resp, magic, "ping_node");
    }

    // Responses and errors are never answered: no reflection loops.
    for quiet in [
        json!({"magic": 77, "type": "ping_node", "resp": true, "result": requester}),
        json!({"magic": 78, "resp": true}),
        json!({"error": "you are wrong"}),
        json!({"error": "you are wrong", "magic": 79}),
    ] {
        peer.send_raw(to, quiet.to_string().as_bytes()).await;
        assert_eq!(peer.recv(Duration::from_millis(300)).await, None, "{quiet}");
    }

    let stats = node.stats();
    assert!(dhtfs::stats::Stats::get(&stats.datagrams_malformed) >= cases.len() as u64);
    let resp = peer
        .call(to, peer.request(5000, "ping_node", json!({})))
        .await;
    assert_response(&resp, 5000, "ping_node");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_side_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(&dir).await;
    let to = node.local_addr;

    // A 100 KB line is refused at once: the node closes after reading a bit.
    let mut conn = tokio::net::TcpStream::connect(to).await.unwrap();
    let _ = conn.write_all(&vec![b'a'; 100_000]).await;
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(2), conn.read(&mut buf))
        .await
        .expect("closed at once, not after the idle timeout");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    // A key line that is not a key: closed without a byte.
    let mut conn = tokio::net::TcpStream::connect(to).await.unwrap();
    conn.write_all(b"not a key\n").await.unwrap();
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest).await;
    assert!(rest.is_empty());

    // The node still serves.
    let data = b"still here".to_vec();
    let key = Id::of_block(&data);
    node.store.put_verified(&key, &data).unwrap();
    assert_eq!(tcp_fetch(to, &key).await, Some(data));
    node.shutdown().await;
}
