//! The TCP block server: reads key lines, answers with framed blocks, and keeps
//! the connection for the next key (our clients reuse it; the original's read
//! one block and close, which is just as fine). Bounded in line length,
//! connections (in all and per IP), the time a key line may take to arrive,
//! and idle time.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

use super::per_ip::PerIp;
use super::send_file::send_file;
use crate::stats::Stats;
use crate::store::{BlockStore, Serving};
use crate::wire::block_frame::{encode_header, parse_key_line, KeyLine, MAX_KEY_LINE};

/// Bounds on the block server.
#[derive(Clone, Debug)]
pub struct TcpLimits {
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// Connections served at once from one IP (loopback included: a
    /// devnet's nodes share 127.0.0.1, so this is sized for them).
    pub max_per_ip: usize,
    /// A connection waiting for the next key line is closed after this long.
    pub idle_timeout: Duration,
    /// A key line must be complete this soon after the connection opened,
    /// or after the line's first byte: a slow sender holds no slot for long.
    pub key_line_timeout: Duration,
    /// Writing one block may take at most this long.
    pub write_timeout: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            max_connections: 1024,
            max_per_ip: 256,
            idle_timeout: Duration::from_secs(30),
            key_line_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(60),
        }
    }
}

/// Serves blocks from `blocks` on `listener` until `shutdown` turns true, then
/// waits (up to the write timeout) for connections in flight to finish.
pub async fn serve_blocks(
    listener: TcpListener,
    blocks: Arc<dyn BlockStore>,
    stats: Arc<Stats>,
    limits: TcpLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_ip = PerIp::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let ip = crate::addr::canonical(peer.ip());
                let Some(ip_slot) = per_ip.take(ip, limits.max_per_ip) else {
                    Stats::inc(&stats.tcp_connections_refused_per_ip);
                    tracing::debug!(%peer, "tcp connection refused: at the per-IP cap");
                    continue;
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    Stats::inc(&stats.tcp_connections_refused);
                    tracing::debug!(%peer, "tcp connection refused: at the connection cap");
                    continue;
                };
                Stats::inc(&stats.tcp_connections);
                // A block goes out as a 5-byte header then its bytes: with
                // Nagle on, the second write waits for the header's ACK, which
                // the reader delays up to 40 ms (measured: a 4 KiB pull took
                // 44 ms, not 0.4).
                let _ = stream.set_nodelay(true);
                let (blocks, stats, limits) = (blocks.clone(), stats.clone(), limits.clone());
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    serve_connection(stream, blocks, &stats, &limits, stop).await;
                    drop(permit);
                    drop(ip_slot);
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(limits.write_timeout, slots.acquire_many(all)).await;
}

async fn serve_connection(
    mut stream: TcpStream,
    blocks: Arc<dyn BlockStore>,
    stats: &Stats,
    limits: &TcpLimits,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(MAX_KEY_LINE);
    let mut chunk = [0u8; MAX_KEY_LINE];
    // When the key line being read began: the connection's opening for the
    // first, the first byte for later ones (between them the idle timeout
    // applies). The whole line must arrive within the key-line timeout of it,
    // however the bytes trickle in.
    let mut line_began = Some(Instant::now());
    loop {
        // Read until a whole key line is buffered, within bounds and time.
        let (key, consumed) = loop {
            match parse_key_line(&buf) {
                KeyLine::Line { key, consumed } => break (key, consumed),
                KeyLine::TooLong => {
                    Stats::inc(&stats.tcp_bad_requests);
                    return;
                }
                KeyLine::Incomplete => {}
            }
            if line_began.is_none() && !buf.is_empty() {
                line_began = Some(Instant::now());
            }
            let wait = match line_began {
                Some(t) => limits.key_line_timeout.saturating_sub(t.elapsed()),
                None => limits.idle_timeout,
            };
            let room = MAX_KEY_LINE - buf.len();
            // Shutdown ends a connection only while it waits for a key: a
            // block being written is finished first.
            let read = tokio::select! {
                read = tokio::time::timeout(wait, stream.read(&mut chunk[..room])) => read,
                _ = stop.wait_for(|s| *s) => return,
            };
            match read {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Err(_) => {
                    if line_began.is_some() {
                        Stats::inc(&stats.tcp_slow_key_lines);
                    }
                    return;
                }
                Ok(Ok(n)) => {
                    Stats::add(&stats.tcp_bytes_received, n as u64);
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
        };
        buf.drain(..consumed);
        line_began = None;
        let Ok(key) = key else {
            Stats::inc(&stats.tcp_bad_requests);
            return;
        };
        let source = blocks.clone();
        let block = match tokio::task::spawn_blocking(move || source.serving(&key)).await {
            Ok(Ok(Some(block))) => block,
            Ok(Ok(None)) => {
                // Absent: close without a byte, as the original does.
                Stats::inc(&stats.tcp_blocks_absent);
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(key = %key, error = %e, "cannot read block to serve it");
                return;
            }
            Err(_) => return,
        };
        let Ok(len) = u32::try_from(block.len()) else {
            return;
        };
        let write = async {
            stream.write_all(&encode_header(len)).await?;
            match &block {
                Serving::Bytes(data) => stream.write_all(data).await?,
                Serving::File { file, at, len } => send_file(&stream, file, *at, *len).await?,
            }
            stream.flush().await
        };
        match tokio::time::timeout(limits.write_timeout, write).await {
            Ok(Ok(())) => {
                Stats::add(&stats.tcp_bytes_sent, block.len() + 5);
                Stats::inc(&stats.tcp_blocks_served);
                if matches!(block, Serving::File { .. }) {
                    Stats::inc(&stats.tcp_blocks_sendfile);
                }
            }
            _ => return,
        }
    }
}
