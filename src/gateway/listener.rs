//! The gateway's accept side: connections are capped in all and per IP
//! (closed at accept when over, and counted), and each connection closes
//! once it has waited this long on the client, reading or writing (an idle
//! keep-alive, a stalled request, a client that stopped reading).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use super::metrics::GatewayMetrics;
use crate::net::{IpSlot, PerIp};

/// Bounds on the gateway's connections.
#[derive(Clone, Debug)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub max_per_ip: usize,
    pub idle_timeout: Duration,
}

/// A listener that hands axum only connections within the caps.
pub struct CappedListener {
    inner: TcpListener,
    limits: ConnLimits,
    slots: Arc<Semaphore>,
    per_ip: PerIp,
    metrics: GatewayMetrics,
}

impl CappedListener {
    pub fn new(inner: TcpListener, limits: ConnLimits, metrics: GatewayMetrics) -> CappedListener {
        CappedListener {
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            inner,
            limits,
            per_ip: PerIp::default(),
            metrics,
        }
    }
}

impl axum::serve::Listener for CappedListener {
    type Io = Guarded;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Guarded, SocketAddr) {
        loop {
            let (stream, peer) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "gateway accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let ip = crate::addr::canonical(peer.ip());
            let Some(ip_slot) = self.per_ip.take(ip, self.limits.max_per_ip.max(1)) else {
                self.metrics.refused("per_ip");
                tracing::debug!(%peer, "gateway connection refused: at the per-IP cap");
                continue;
            };
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                self.metrics.refused("cap");
                tracing::debug!(%peer, "gateway connection refused: at the connection cap");
                continue;
            };
            let _ = stream.set_nodelay(true);
            let guarded = Guarded {
                stream,
                idle: Box::pin(tokio::time::sleep(self.limits.idle_timeout)),
                timeout: self.limits.idle_timeout,
                _permit: permit,
                _ip: ip_slot,
            };
            return (guarded, peer);
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// One accepted connection: holds its slots until closed, and fails a read
/// or write that has waited on the client for the idle timeout.
pub struct Guarded {
    stream: TcpStream,
    idle: Pin<Box<Sleep>>,
    timeout: Duration,
    _permit: OwnedSemaphorePermit,
    _ip: IpSlot,
}

impl Guarded {
    /// Progress was made: the idle clock starts again.
    fn progressed(&mut self) {
        let deadline = Instant::now() + self.timeout;
        self.idle.as_mut().reset(deadline);
    }

    /// The client kept us waiting too long.
    fn check_idle<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.idle.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "gateway connection idle too long",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                self.progressed();
                Poll::Ready(r)
            }
            Poll::Pending => self.check_idle(cx),
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write(cx, buf) {
            Poll::Ready(r) => {
                self.progressed();
                Poll::Ready(r)
            }
            Poll::Pending => self.check_idle(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                self.progressed();
                Poll::Ready(r)
            }
            Poll::Pending => self.check_idle(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
