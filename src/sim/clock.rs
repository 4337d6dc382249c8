//! The simulated clock: tokio's, paused. On a single-threaded runtime started
//! paused, tokio moves time straight to the next timer whenever every task is
//! idle, so simulated hours pass in seconds and nothing depends on how fast
//! the machine is. It also carries the node's seeded chance (magics, refresh
//! targets), so a run repeats exactly.

use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::RngCore;

use crate::node::{BoxFuture, Clock};

/// One node incarnation's clock and RNG.
pub struct SimClock {
    start: tokio::time::Instant,
    rng: Mutex<StdRng>,
}

impl SimClock {
    /// A clock reading from `start` (the run's start, shared by all nodes so
    /// their times compare), drawing chance from `rng`.
    pub fn new(start: tokio::time::Instant, rng: StdRng) -> SimClock {
        SimClock {
            start,
            rng: Mutex::new(rng),
        }
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// A fixed epoch (2026-01-01) plus simulated time, so a run repeats.
    fn unix_ms(&self) -> u64 {
        1_767_225_600_000 + self.now_ms()
    }

    fn sleep(&self, d: Duration) -> BoxFuture<()> {
        Box::pin(tokio::time::sleep(d))
    }

    fn random_u64(&self) -> u64 {
        self.rng
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .next_u64()
    }
}
