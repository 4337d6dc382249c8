//! The [`Transport`] one node incarnation sends through. A crashed
//! incarnation's tasks may still run for a while; its transport goes silent.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::net::Net;
use crate::id::Id;
use crate::node::{BoxFuture, FetchError, Transport};

/// One incarnation's way onto the simulated network.
pub struct SimTransport {
    net: Arc<Net>,
    me: SocketAddr,
    alive: Arc<AtomicBool>,
}

impl SimTransport {
    /// Sends from `me` while `alive` holds.
    pub fn new(net: Arc<Net>, me: SocketAddr, alive: Arc<AtomicBool>) -> SimTransport {
        SimTransport { net, me, alive }
    }
}

impl Transport for SimTransport {
    fn send_datagram(&self, to: SocketAddr, bytes: &[u8]) {
        if self.alive.load(Ordering::Relaxed) {
            self.net.send(self.me, to, bytes.to_vec());
        }
    }

    fn fetch_block(
        &self,
        from: SocketAddr,
        key: Id,
        max_len: u64,
    ) -> BoxFuture<Result<Vec<u8>, FetchError>> {
        if !self.alive.load(Ordering::Relaxed) {
            return Box::pin(async { Err(FetchError::Io("this node is down".into())) });
        }
        Box::pin(self.net.clone().fetch(self.me, from, key, max_len))
    }
}
