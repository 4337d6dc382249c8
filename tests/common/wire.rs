//! Speaking the wire by hand, for tests that play a peer: node objects,
//! request and answer datagrams, block frames, and the one port a peer
//! binds for both UDP and TCP.

use std::net::{IpAddr, SocketAddr};

use dhtfs::id::Id;
use serde_json::{json, Value};
use tokio::net::{TcpListener, UdpSocket};

/// A node object as the wire spells it.
pub fn node_obj(id: &Id, addr: SocketAddr) -> Value {
    json!({"node_id": id.to_hex(), "ip": addr.ip().to_string(), "port": addr.port()})
}

/// One request datagram.
pub fn request(magic: u64, kind: &str, params: Value, requester: Value) -> Vec<u8> {
    json!({"magic": magic, "type": kind, "params": params, "requester": requester})
        .to_string()
        .into_bytes()
}

/// The answer datagram to request `msg`, carrying `result`.
pub fn reply(msg: &Value, result: Value) -> Vec<u8> {
    json!({"magic": msg["magic"], "type": msg["type"], "resp": true, "result": result})
        .to_string()
        .into_bytes()
}

/// A block as the TCP side sends it: 4-byte little-endian length, `\n`, bytes.
pub fn block_frame(data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_le_bytes().to_vec();
    out.push(b'\n');
    out.extend_from_slice(data);
    out
}

/// UDP and TCP bound to one port on `ip`, as a peer's are.
pub async fn bind_pair(ip: IpAddr) -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind((ip, 0)).await.unwrap();
        let port = udp.local_addr().unwrap().port();
        if let Ok(tcp) = TcpListener::bind((ip, port)).await {
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP on {ip}");
}
