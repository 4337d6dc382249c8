//! The TCP block server: reads key lines, answers with framed blocks, and keeps
//! the connection for the next key (our clients reuse it; the original's read
//! one block and close, which is just as fine). Bounded in line length,
//! connections and idle time.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::stats::Stats;
use crate::store::BlockStore;
use crate::wire::block_frame::{encode_header, parse_key_line, KeyLine, MAX_KEY_LINE};

/// Bounds on the block server.
#[derive(Clone, Debug)]
pub struct TcpLimits {
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// A connection with no complete key line for this long is closed.
    pub idle_timeout: Duration,
    /// Writing one block may take at most this long.
    pub write_timeout: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            max_connections: 256,
            idle_timeout: Duration::from_secs(30),
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
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    Stats::inc(&stats.tcp_connections_refused);
                    tracing::debug!(%peer, "tcp connection refused: at the connection cap");
                    continue;
                };
                Stats::inc(&stats.tcp_connections);
                let (blocks, stats, limits) = (blocks.clone(), stats.clone(), limits.clone());
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    serve_connection(stream, blocks, &stats, &limits, stop).await;
                    drop(permit);
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
            let room = MAX_KEY_LINE - buf.len();
            // Shutdown ends a connection only while it waits for a key: a
            // block being written is finished first.
            let read = tokio::select! {
                read = tokio::time::timeout(limits.idle_timeout, stream.read(&mut chunk[..room])) => read,
                _ = stop.wait_for(|s| *s) => return,
            };
            match read {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                Ok(Ok(n)) => {
                    Stats::add(&stats.tcp_bytes_received, n as u64);
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
        };
        buf.drain(..consumed);
        let Ok(key) = key else {
            Stats::inc(&stats.tcp_bad_requests);
            return;
        };
        let source = blocks.clone();
        let data = match tokio::task::spawn_blocking(move || source.get_for_serving(&key)).await {
            Ok(Ok(Some(data))) => data,
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
        let Ok(len) = u32::try_from(data.len()) else {
            return;
        };
        let write = async {
            stream.write_all(&encode_header(len)).await?;
            stream.write_all(&data).await?;
            stream.flush().await
        };
        match tokio::time::timeout(limits.write_timeout, write).await {
            Ok(Ok(())) => {
                Stats::add(&stats.tcp_bytes_sent, data.len() as u64 + 5);
                Stats::inc(&stats.tcp_blocks_served);
            }
            _ => return,
        }
    }
}
