//! Helpers for the attack tests: hostile hosts on other loopback addresses,
//! and a liar among them.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
    start_liar_as(ip, Id::random(), contacts, junk_len).await
}

/// [`start_liar`] with id `id`: placed, for example, closer to a key than
/// any honest node.
pub async fn start_liar_as(
    ip: IpAddr,
    id: Id,
    contacts: &[Contact],
    junk_len: usize,
) -> tokio::task::JoinHandle<()> {
    start_holder(ip, id, contacts, Serve::Junk(junk_len), Arc::default()).await
}

/// A peer on `ip` that introduces itself to `contacts`, says it holds every
/// key, then promises 1 MiB for any key asked of it and sends 1 KB a second;
/// its id is `id`, and `asked` counts the keys asked of it.
pub async fn start_trickler(
    ip: IpAddr,
    id: Id,
    contacts: &[Contact],
    asked: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    start_holder(ip, id, contacts, Serve::Trickle, asked).await
}

/// A peer on `ip` that introduces itself to `contacts`, says it holds every
/// key, accepts every block connection and reads the key asked for, and
/// then never sends a byte.
pub async fn start_silent_holder(ip: IpAddr, contacts: &[Contact]) -> tokio::task::JoinHandle<()> {
    start_holder(ip, Id::random(), contacts, Serve::Silent, Arc::default()).await
}

/// A peer on `ip` with id `id` that introduces itself to `contacts`, says
/// it holds every key, and answers any key asked of it with `block`, except
/// the first ask, which it breaks off halfway through the block (a busy or
/// restarting honest holder); `asked` counts the keys asked of it.
pub async fn start_breaks_once(
    ip: IpAddr,
    id: Id,
    contacts: &[Contact],
    block: Vec<u8>,
    asked: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    start_holder(ip, id, contacts, Serve::BreaksOnce(Arc::new(block)), asked).await
}

/// What a hostile holder sends for a key asked of it.
#[derive(Clone)]
enum Serve {
    /// This many wrong bytes, at once.
    Junk(usize),
    /// A 1 MiB header, then 1 KB a second.
    Trickle,
    /// Nothing, until the reader gives up.
    Silent,
    /// Half this block's frame the first time, then the whole of it.
    BreaksOnce(Arc<Vec<u8>>),
}

async fn start_holder(
    ip: IpAddr,
    id: Id,
    contacts: &[Contact],
    serve: Serve,
    asked: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    let (udp, tcp) = bind_pair(ip).await;
    let me = node_obj(&id, udp.local_addr().unwrap());
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
                    let (asked, serve) = (asked.clone(), serve.clone());
                    tokio::spawn(async move {
                        let mut line = [0u8; 65];
                        while conn.read_exact(&mut line).await.is_ok() {
                            let before = asked.fetch_add(1, Ordering::Relaxed);
                            let ok = match &serve {
                                Serve::Junk(len) => {
                                    conn.write_all(&block_frame(&vec![0x5a; *len])).await.is_ok()
                                }
                                Serve::BreaksOnce(block) => {
                                    let frame = block_frame(block);
                                    let cut = if before == 0 { frame.len() / 2 } else { frame.len() };
                                    conn.write_all(&frame[..cut]).await.is_ok() && cut == frame.len()
                                }
                                Serve::Trickle => trickle(&mut conn).await,
                                Serve::Silent => {
                                    let mut rest = [0u8; 65];
                                    while matches!(conn.read(&mut rest).await, Ok(n) if n > 0) {}
                                    false
                                }
                            };
                            if !ok { break; }
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

/// Promises 1 MiB and sends 1 KB a second of it, until the reader goes
/// (false) or, after 1,024 s, the promise is kept with junk.
async fn trickle(conn: &mut tokio::net::TcpStream) -> bool {
    let mut out = (1u32 << 20).to_le_bytes().to_vec();
    out.push(b'\n');
    if conn.write_all(&out).await.is_err() {
        return false;
    }
    for _ in 0..1024 {
        if conn.write_all(&[0x5a; 1024]).await.is_err() {
            return false;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    true
}
