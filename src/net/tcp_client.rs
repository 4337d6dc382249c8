//! The block-fetch client, with connection reuse: after a block, our server
//! waits for the next key line on the same connection, so a connection is kept
//! in a small bounded pool for the next fetch from that peer, for a while.
//!
//! A peer must accept the connection and send the first byte of its answer
//! within a short deadline (a black hole that accepts and never answers ties
//! up a pull for seconds, not the whole pull timeout); the rest of the block
//! then has the full timeout per read.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::connect::{connect_hedged, ConnectTimer};
use crate::id::Id;
use crate::node::FetchError;
use crate::stats::Stats;
use crate::wire::block_frame::{encode_key_line, parse_header, HEADER_LEN};

/// Idle connections kept per peer.
const IDLE_PER_PEER: usize = 4;
/// Idle connections kept in all.
const IDLE_TOTAL: usize = 256;
/// An idle connection is dropped after this long, well before our server's
/// 30 s idle timeout closes its end.
const IDLE_MAX: Duration = Duration::from_secs(10);
/// Longest wait for a connection to open, and for the first byte of an answer.
const START_DEADLINE: Duration = Duration::from_secs(5);
/// The receive buffer asked for before connecting: room for a whole chunk
/// and its header. A fresh connection's window otherwise starts at the
/// kernel's default (128 KiB here) and grows only as data is read, so the
/// first megabyte on a new connection takes round trips a warm one does
/// not. A block is one request and one answer, so a window past the largest
/// block never helps.
const RECV_BUFFER: u32 = 2 << 20;

/// Whether the kernel grants `RECV_BUFFER`. A buffer set by hand turns the
/// kernel's autotuning off, and the kernel caps it at `net.core.rmem_max`
/// (208 KiB on a stock kernel): below a chunk, autotuning does better on a
/// long path, so the buffer is then left to the kernel.
fn recv_buffer_granted() -> bool {
    static GRANTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *GRANTED.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .is_some_and(|max| max >= u64::from(RECV_BUFFER))
    })
}

/// A new connection to `to` (a second connect beside a slow first, see
/// `connect.rs`), with the receive buffer set and Nagle off.
async fn connect(to: SocketAddr, timer: &Mutex<ConnectTimer>) -> std::io::Result<TcpStream> {
    let conn = connect_hedged(to, timer, |socket| {
        if recv_buffer_granted() {
            // Best effort: a kernel that refuses leaves its default.
            let _ = socket.set_recv_buffer_size(RECV_BUFFER);
        }
    })
    .await?;
    let _ = conn.set_nodelay(true);
    Ok(conn)
}

type Pool = HashMap<SocketAddr, Vec<(Instant, TcpStream)>>;

/// A cloneable block-fetch client.
#[derive(Clone)]
pub struct TcpClient {
    idle: Arc<Mutex<Pool>>,
    timeout: Duration,
    start: Duration,
    stats: Arc<Stats>,
    connects: Arc<Mutex<ConnectTimer>>,
}

impl TcpClient {
    /// A client whose reads each time out after `timeout`; connecting and
    /// the first byte of an answer get at most 5 s of that.
    pub fn new(timeout: Duration, stats: Arc<Stats>) -> TcpClient {
        TcpClient {
            idle: Arc::new(Mutex::new(HashMap::new())),
            timeout,
            start: timeout.min(START_DEADLINE),
            stats,
            connects: Arc::default(),
        }
    }

    /// Idle connections pooled now.
    pub fn idle_connections(&self) -> usize {
        self.idle
            .lock()
            .map(|p| p.values().map(Vec::len).sum())
            .unwrap_or(0)
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
        let conn = tokio::time::timeout(self.start, connect(from, &self.connects))
            .await
            .map_err(|_| FetchError::Timeout)?
            .map_err(|e| FetchError::Io(e.to_string()))?;
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
        let first = tokio::time::timeout(self.start, conn.read(&mut header[..1]))
            .await
            .map_err(|_| FetchError::Timeout)?
            .map_err(io)?;
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
        // Read into the buffer's spare room, not zeroed first (a megabyte
        // a chunk, on every fetch).
        let want = len as usize;
        let mut data: Vec<u8> = Vec::with_capacity(want);
        let body = async {
            while data.len() < want {
                let mut rest = (&mut conn).take((want - data.len()) as u64);
                if rest.read_buf(&mut data).await? == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
                }
            }
            Ok(())
        };
        self.timed(body).await?.map_err(io)?;
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
        conns.retain(|(since, _)| since.elapsed() < IDLE_MAX);
        let conn = conns.pop().map(|(_, c)| c);
        if conns.is_empty() {
            idle.remove(&addr);
        }
        conn
    }

    fn put_idle(&self, addr: SocketAddr, conn: TcpStream) {
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        // Only what is pooled has an entry; stale connections go first.
        idle.retain(|_, conns| {
            conns.retain(|(since, _)| since.elapsed() < IDLE_MAX);
            !conns.is_empty()
        });
        let total: usize = idle.values().map(Vec::len).sum();
        let held = idle.get(&addr).map_or(0, Vec::len);
        if held < IDLE_PER_PEER && total < IDLE_TOTAL {
            idle.entry(addr).or_default().push((Instant::now(), conn));
        }
    }
}
