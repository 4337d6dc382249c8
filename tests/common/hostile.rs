//! Helpers for the attack tests: hostile hosts on other loopback addresses,
//! and a liar among them.

use std::net::{IpAddr, Ipv4Addr};

use dhtfs::contact::Contact;
use dhtfs::id::Id;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::wire::{bind_pair, block_frame, node_obj, reply, request};

/// Hostile loopback address 127.0.0.`last`.
pub fn hostile_ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
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

/// A peer on `ip` that introduces itself to `contacts`, says it holds every
/// key, and serves `junk_len` wrong bytes for any key asked of it.
pub async fn start_liar(
    ip: IpAddr,
    contacts: &[Contact],
    junk_len: usize,
) -> tokio::task::JoinHandle<()> {
    let (udp, tcp) = bind_pair(ip).await;
    let me = node_obj(&Id::random(), udp.local_addr().unwrap());
    // Introduce itself to everyone, as any node would.
    for (i, c) in contacts.iter().enumerate() {
        let ping = request(i as u64, "ping_node", json!({}), me.clone());
        udp.send_to(&ping, c.addr).await.unwrap();
    }
    tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = tcp.accept() => {
                    let Ok((mut conn, _)) = accepted else { continue };
                    tokio::spawn(async move {
                        let mut line = [0u8; 65];
                        while conn.read_exact(&mut line).await.is_ok() {
                            let junk = vec![0x5a; junk_len];
                            if conn.write_all(&block_frame(&junk)).await.is_err() { break; }
                        }
                    });
                }
                received = async {
                    let mut buf = vec![0u8; 65536];
                    let (n, from) = udp.recv_from(&mut buf).await.ok()?;
                    Some((buf[..n].to_vec(), from))
                } => {
                    let Some((bytes, from)) = received else { continue };
                    let Ok(msg) = serde_json::from_slice::<Value>(&bytes) else { continue };
                    if msg.get("resp").is_some() || msg.get("type").is_none() { continue; }
                    let result = match msg["type"].as_str() {
                        Some("find_node") => json!([]),
                        _ => me.clone(),
                    };
                    let _ = udp.send_to(&reply(&msg, result), from).await;
                }
            }
        }
    })
}
