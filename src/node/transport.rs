//! The two things the engine is given instead of sockets and clocks, so that a
//! simulation can run thousands of nodes in one process on a fake network.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use crate::id::Id;

/// A boxed future, as the traits below return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Why a block fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("the peer does not hold the block")]
    Absent,
    #[error("timed out")]
    Timeout,
    #[error("block of {len} bytes is over the {max}-byte limit")]
    TooLarge { len: u64, max: u64 },
    #[error("bad frame: {0}")]
    Frame(String),
    #[error("{0}")]
    Io(String),
}

/// How the engine reaches the network.
pub trait Transport: Send + Sync + 'static {
    /// Sends one datagram; delivery is best effort, as UDP is.
    fn send_datagram(&self, to: SocketAddr, bytes: &[u8]);
    /// Whether datagrams can reach `to` at all (a socket of one address
    /// family cannot send to the other): contacts it cannot are not asked.
    fn reaches(&self, to: SocketAddr) -> bool {
        let _ = to;
        true
    }
    /// Fetches the block `key` from the node at `from` over the block protocol,
    /// refusing one longer than `max_len`. Does not check the hash.
    fn fetch_block(
        &self,
        from: SocketAddr,
        key: Id,
        max_len: u64,
    ) -> BoxFuture<Result<Vec<u8>, FetchError>>;
}

/// How the engine reads time and waits.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since an arbitrary start, never going back.
    fn now_ms(&self) -> u64;
    /// Microseconds since the same start, for timing requests.
    fn now_us(&self) -> u64 {
        self.now_ms() * 1000
    }
    /// Milliseconds since the unix epoch, moving with `now_ms`: for times kept
    /// across restarts (an upkeep pass's start), which `now_ms` cannot be.
    fn unix_ms(&self) -> u64;
    /// Completes after `d`.
    fn sleep(&self, d: Duration) -> BoxFuture<()>;
    /// A random number, for request magics and refresh targets. Chance comes
    /// from the clock, like time, so that a simulation can seed both and a
    /// run repeats exactly; the real clock draws from the thread's RNG.
    fn random_u64(&self) -> u64 {
        rand::random()
    }
}

/// The real clock: tokio's, so tests may pause it. Its unix time is the
/// system's at the start plus tokio's time since, so it moves with a paused
/// clock too (and ignores the system clock being set while it runs).
#[derive(Debug)]
pub struct TokioClock {
    start: tokio::time::Instant,
    /// The unix time at `start`, in ms.
    start_unix_ms: u64,
}

impl TokioClock {
    /// A clock starting now.
    pub fn new() -> TokioClock {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        TokioClock::starting_at_unix_ms(unix)
    }

    /// A clock whose unix time reads `unix_ms` now: a test that pauses tokio
    /// time and restarts a node sets where the new process's clock starts.
    pub fn starting_at_unix_ms(unix_ms: u64) -> TokioClock {
        TokioClock {
            start: tokio::time::Instant::now(),
            start_unix_ms: unix_ms,
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock::new()
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn unix_ms(&self) -> u64 {
        self.start_unix_ms + self.now_ms()
    }

    fn sleep(&self, d: Duration) -> BoxFuture<()> {
        Box::pin(tokio::time::sleep(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn unix_time_moves_with_tokio_time() {
        let clock = TokioClock::starting_at_unix_ms(1_700_000_000_000);
        assert_eq!(clock.unix_ms(), 1_700_000_000_000);
        clock.sleep(Duration::from_secs(90)).await;
        assert_eq!(clock.unix_ms(), 1_700_000_090_000);
        assert_eq!(clock.now_ms(), 90_000);
    }
}
