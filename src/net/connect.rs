//! Opening a block connection on a path that loses packets. A lost SYN (or
//! SYN-ACK) is sent again only after the kernel's initial retransmission
//! timeout, 1 s on Linux: at 1% loss, one connection in fifty stalls a
//! fetch for a second, which a hedge to another holder cuts only once the
//! fetch is far behind. So a second connect goes out beside the first once
//! the first takes several times as long as connects to anyone have taken
//! lately, and the first to open wins (the other is dropped).

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::{select, Either};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// The wait before the second connect, before any connect was timed.
const FIRST_WAIT: Duration = Duration::from_millis(200);
/// The wait is never shorter (a busy peer's accept queue, a scheduler's
/// hiccup) nor longer (the kernel's own resend comes at 1 s).
const MIN_WAIT: Duration = Duration::from_millis(20);
const MAX_WAIT: Duration = Duration::from_millis(500);
/// The wait is this many times the smoothed connect time.
const WAIT_FACTOR: u32 = 4;

/// How long connects have taken lately: a smoothed mean (as TCP's SRTT,
/// gain 1/8) of the connects that opened without a second one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectTimer {
    smoothed_us: Option<u64>,
}

impl ConnectTimer {
    /// How long to wait for a connect before a second one goes out.
    pub fn wait(&self) -> Duration {
        match self.smoothed_us {
            None => FIRST_WAIT,
            Some(us) => (Duration::from_micros(us) * WAIT_FACTOR).clamp(MIN_WAIT, MAX_WAIT),
        }
    }

    /// A connect opened in `took`, with no second one beside it.
    pub fn record(&mut self, took: Duration) {
        let us = took.as_micros().min(u128::from(u64::MAX)) as u64;
        self.smoothed_us = Some(match self.smoothed_us {
            None => us,
            Some(s) => s - s / 8 + us / 8,
        });
    }
}

/// A connection to `to` (see the module docs), set up by `prepare` (buffer
/// sizes, say) before each connect; the timer learns from connects that
/// opened alone.
pub async fn connect_hedged(
    to: SocketAddr,
    timer: &Mutex<ConnectTimer>,
    prepare: impl Fn(&TcpSocket),
) -> std::io::Result<TcpStream> {
    let wait = timer.lock().map(|t| t.wait()).unwrap_or(FIRST_WAIT);
    let started = Instant::now();
    let first = Box::pin(connect_once(to, &prepare));
    let first = match select(first, Box::pin(tokio::time::sleep(wait))).await {
        Either::Left((result, _)) => {
            if result.is_ok() {
                if let Ok(mut t) = timer.lock() {
                    t.record(started.elapsed());
                }
            }
            return result;
        }
        Either::Right(((), first)) => first,
    };
    let second = Box::pin(connect_once(to, &prepare));
    // The first to open; one that fails waits for the other.
    match select(first, second).await {
        Either::Left((Ok(conn), _)) | Either::Right((Ok(conn), _)) => Ok(conn),
        Either::Left((Err(e), second)) => second.await.map_err(|_| e),
        Either::Right((Err(e), first)) => first.await.map_err(|_| e),
    }
}

async fn connect_once(to: SocketAddr, prepare: &impl Fn(&TcpSocket)) -> std::io::Result<TcpStream> {
    let socket = match to {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    prepare(&socket);
    socket.connect(to).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_follows_connect_times_within_its_bounds() {
        let mut t = ConnectTimer::default();
        assert_eq!(t.wait(), FIRST_WAIT, "nothing timed yet");
        t.record(Duration::from_micros(200));
        assert_eq!(t.wait(), MIN_WAIT, "a fast network still waits the floor");
        for _ in 0..64 {
            t.record(Duration::from_millis(30));
        }
        let wait = t.wait();
        assert!(
            wait > Duration::from_millis(110) && wait <= Duration::from_millis(120),
            "4 x 30 ms: {wait:?}"
        );
        for _ in 0..64 {
            t.record(Duration::from_secs(2));
        }
        assert_eq!(t.wait(), MAX_WAIT, "never past the kernel's own resend");
    }

    #[tokio::test]
    async fn opens_to_a_listener_and_fails_on_a_closed_port() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap();
        let timer = Mutex::new(ConnectTimer::default());
        let conn = connect_hedged(open, &timer, |_| {}).await.unwrap();
        assert_eq!(conn.peer_addr().unwrap(), open);
        assert!(timer.lock().unwrap().smoothed_us.is_some(), "timed");
        drop(listener);
        assert!(
            connect_hedged(open, &timer, |_| {}).await.is_err(),
            "refused"
        );
    }
}
