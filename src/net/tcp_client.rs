//! The block-fetch client, with connection reuse: after a block, our server
//! waits for the next key line on the same connection, so a connection is kept
//! in a small bounded pool for the next fetch from that peer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::id::Id;
use crate::node::FetchError;
use crate::stats::Stats;
use crate::wire::block_frame::{encode_key_line, parse_header, HEADER_LEN};

/// Idle connections kept per peer.
const IDLE_PER_PEER: usize = 4;
/// Idle connections kept in all.
const IDLE_TOTAL: usize = 256;

/// A cloneable block-fetch client.
#[derive(Clone)]
pub struct TcpClient {
    idle: Arc<Mutex<HashMap<SocketAddr, Vec<TcpStream>>>>,
    timeout: Duration,
    stats: Arc<Stats>,
}

impl TcpClient {
    /// A client whose connects and reads each time out after `timeout`.
    pub fn new(timeout: Duration, stats: Arc<Stats>) -> TcpClient {
        TcpClient {
            idle: Arc::new(Mutex::new(HashMap::new())),
            timeout,
            stats,
        }
    }

    /// Fetches block `key` from `from`, refusing one longer than `max_len`.
    /// Does not check the hash: the caller does, before keeping the bytes.
    pub async fn fetch(
        &self,
        from: SocketAddr,
        key: Id,
        max_len: u64,
    ) -> Result<Vec<u8>, FetchError> {
        if let Some(conn) = self.take_idle(from) {
            match self.fetch_on(conn, from, key, max_len).await {
                // A pooled connection the peer has since closed looks like
                // "absent" or an I/O error: ask once more on a fresh one.
                Err(FetchError::Absent) | Err(FetchError::Io(_)) => {}
                other => return other,
            }
        }
        let conn = tokio::time::timeout(self.timeout, TcpStream::connect(from))
            .await
            .map_err(|_| FetchError::Timeout)?
            .map_err(|e| FetchError::Io(e.to_string()))?;
        let _ = conn.set_nodelay(true);
        self.fetch_on(conn, from, key, max_len).await
    }

    async fn fetch_on(
        &self,
        mut conn: TcpStream,
        from: SocketAddr,
        key: Id,
        max_len: u64,
    ) -> Result<Vec<u8>, FetchError> {
        let io = |e: std::io::Error| FetchError::Io(e.to_string());
        let line = encode_key_line(&key);
        self.timed(conn.write_all(&line)).await?.map_err(io)?;
        let mut header = [0u8; HEADER_LEN];
        let first = self.timed(conn.read(&mut header[..1])).await?.map_err(io)?;
        if first == 0 {
            return Err(FetchError::Absent);
        }
        self.timed(conn.read_exact(&mut header[1..]))
            .await?
            .map_err(io)?;
        let len = parse_header(&header, max_len).map_err(|e| match e {
            crate::wire::block_frame::FrameError::TooLarge { len, max } => {
                FetchError::TooLarge { len, max }
            }
            other => FetchError::Frame(other.to_string()),
        })?;
        let mut data = vec![0u8; len as usize];
        self.timed(conn.read_exact(&mut data)).await?.map_err(io)?;
        Stats::add(
            &self.stats.tcp_bytes_received,
            data.len() as u64 + HEADER_LEN as u64,
        );
        Stats::add(&self.stats.tcp_bytes_sent, line.len() as u64);
        self.put_idle(from, conn);
        Ok(data)
    }

    async fn timed<T>(&self, f: impl std::future::Future<Output = T>) -> Result<T, FetchError> {
        tokio::time::timeout(self.timeout, f)
            .await
            .map_err(|_| FetchError::Timeout)
    }

    fn take_idle(&self, addr: SocketAddr) -> Option<TcpStream> {
        let mut idle = self.idle.lock().ok()?;
        let conns = idle.get_mut(&addr)?;
        let conn = conns.pop();
        if conns.is_empty() {
            idle.remove(&addr);
        }
        conn
    }

    fn put_idle(&self, addr: SocketAddr, conn: TcpStream) {
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        let total: usize = idle.values().map(Vec::len).sum();
        let conns = idle.entry(addr).or_default();
        if conns.len() < IDLE_PER_PEER && total < IDLE_TOTAL {
            conns.push(conn);
        }
    }
}
