//! Helpers for the attack tests: hostile hosts on other loopback addresses
//! and the raw datagrams they send.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use dhtfs::id::Id;
use serde_json::{json, Value};

/// Hostile loopback address 127.0.0.`last`.
pub fn hostile_ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

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

/// `target` with its lowest `bits` bits random: closer to it than any honest
/// node of a small network (which shares only a few top bits with it).
pub fn near(target: &Id, bits: usize) -> Id {
    let mut id = target.0;
    let noise = Id::random().0;
    for bit in (256 - bits)..256 {
        let (byte, mask) = (bit / 8, 0x80u8 >> (bit % 8));
        id[byte] = (id[byte] & !mask) | (noise[byte] & mask);
    }
    Id(id)
}
