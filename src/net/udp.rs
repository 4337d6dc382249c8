//! The UDP shell: a receive loop feeding the engine, and the real [`Transport`]
//! (datagrams out of the same socket, blocks through the TCP client).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::TcpClient;
use crate::addr::{canonical_addr, Reach};
use crate::id::Id;
use crate::node::{BoxFuture, FetchError, Node, Transport};
use crate::stats::Stats;

/// Longest a datagram waits for room in the socket's send buffer.
const SEND_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Datagrams out of the node's own UDP socket (so peers see our port), blocks
/// in through a pooled TCP client.
pub struct NetTransport {
    socket: Arc<UdpSocket>,
    client: TcpClient,
    stats: Arc<Stats>,
    /// Which families the socket sends to (both when dual-stack).
    reach: Reach,
}

impl NetTransport {
    /// A transport sending from `socket`.
    pub fn new(socket: Arc<UdpSocket>, client: TcpClient, stats: Arc<Stats>) -> NetTransport {
        // A socket that cannot say where it is bound reaches what it can;
        // a send it cannot make fails and is counted.
        let reach = socket.local_addr().map_or(Reach::Both, Reach::of);
        NetTransport {
            socket,
            client,
            stats,
            reach,
        }
    }
}

impl Transport for NetTransport {
    fn send_datagram(&self, to: SocketAddr, bytes: &[u8]) {
        let to = self.reach.destination(to);
        match self.socket.try_send_to(bytes, to) {
            Ok(_) => {}
            // tokio learns that a socket is writable only once it has
            // waited for it (a fresh socket, or a full send buffer): wait
            // in a task of its own rather than drop the datagram.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let (socket, stats, bytes) =
                    (self.socket.clone(), self.stats.clone(), bytes.to_vec());
                tokio::spawn(async move {
                    let sent = tokio::time::timeout(SEND_WAIT, socket.send_to(&bytes, to)).await;
                    if !matches!(sent, Ok(Ok(_))) {
                        Stats::inc(&stats.datagrams_send_failed);
                    }
                });
            }
            Err(e) => {
                Stats::inc(&self.stats.datagrams_send_failed);
                tracing::debug!(%to, error = %e, "datagram not sent");
            }
        }
    }

    fn reaches(&self, to: SocketAddr) -> bool {
        self.reach.allows(to)
    }

    fn fetch_block(
        &self,
        from: SocketAddr,
        key: Id,
        max_len: u64,
    ) -> BoxFuture<Result<Vec<u8>, FetchError>> {
        let client = self.client.clone();
        Box::pin(async move { client.fetch(from, key, max_len).await })
    }
}

/// Receives datagrams and hands each to the engine until `shutdown` turns true.
pub async fn run_udp(socket: Arc<UdpSocket>, node: Node, mut shutdown: watch::Receiver<bool>) {
    // Larger than any UDP payload, so nothing is ever truncated unseen.
    let mut buf = vec![0u8; 65_536];
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                // A dual-stack socket names an IPv4 peer by its mapped
                // address; the engine knows it by its IPv4 one.
                Ok((n, from)) => node.handle_datagram(canonical_addr(from), &buf[..n]),
                // ICMP errors from earlier sends surface here on some systems;
                // they say nothing about this socket's health.
                Err(e) => tracing::debug!(error = %e, "udp receive error"),
            },
            _ = shutdown.changed() => break,
        }
    }
}
