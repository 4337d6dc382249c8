//! Round-trip time estimate and the soft timeout it gives (after TCP's RTO,
//! RFC 6298, and libtorrent's lookups): a request that has not been answered
//! within the soft timeout stops holding up a lookup, which asks the next
//! peer, while its late answer is still taken until the hard timeout. Pure.

use std::time::Duration;

/// Smoothed RTT and its variation, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RttEstimator {
    srtt_us: f64,
    rttvar_us: f64,
    samples: u64,
}

impl Default for RttEstimator {
    fn default() -> Self {
        RttEstimator::new()
    }
}

impl RttEstimator {
    /// No samples yet.
    pub fn new() -> RttEstimator {
        RttEstimator {
            srtt_us: 0.0,
            rttvar_us: 0.0,
            samples: 0,
        }
    }

    /// Adds one measured round trip.
    pub fn sample(&mut self, rtt: Duration) {
        let r = rtt.as_micros() as f64;
        if self.samples == 0 {
            self.srtt_us = r;
            self.rttvar_us = r / 2.0;
        } else {
            self.rttvar_us = 0.75 * self.rttvar_us + 0.25 * (self.srtt_us - r).abs();
            self.srtt_us = 0.875 * self.srtt_us + 0.125 * r;
        }
        self.samples += 1;
    }

    /// The smoothed RTT, if any sample was taken.
    pub fn srtt(&self) -> Option<Duration> {
        (self.samples > 0).then(|| Duration::from_micros(self.srtt_us as u64))
    }

    /// `srtt + 4 * rttvar`, kept within `[min, hard]`; a quarter of `hard`
    /// until there is a sample (nothing is known of the network yet, but
    /// the first requests, a join's pings among them, must still be sent
    /// again when lost: with `hard` they never were, and one lost ping
    /// failed a put's join at 1% loss).
    pub fn soft_timeout(&self, min: Duration, hard: Duration) -> Duration {
        if self.samples == 0 {
            return (hard / 4).max(min).min(hard);
        }
        let t = Duration::from_micros((self.srtt_us + 4.0 * self.rttvar_us) as u64);
        t.max(min).min(hard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn no_sample_means_a_quarter_of_the_hard_timeout() {
        let e = RttEstimator::new();
        assert_eq!(e.srtt(), None);
        assert_eq!(e.soft_timeout(100 * MS, 2000 * MS), 500 * MS);
        assert_eq!(e.soft_timeout(800 * MS, 2000 * MS), 800 * MS);
        assert_eq!(e.soft_timeout(100 * MS, 50 * MS), 50 * MS);
    }

    #[test]
    fn steady_rtts_give_a_tight_timeout_within_bounds() {
        let mut e = RttEstimator::new();
        for _ in 0..50 {
            e.sample(80 * MS);
        }
        assert_eq!(e.srtt(), Some(80 * MS));
        let soft = e.soft_timeout(10 * MS, 2000 * MS);
        assert!(soft >= 80 * MS && soft < 90 * MS, "{soft:?}");
        // Loopback RTTs fall to the floor.
        let mut lo = RttEstimator::new();
        for _ in 0..50 {
            lo.sample(Duration::from_micros(200));
        }
        assert_eq!(lo.soft_timeout(100 * MS, 2000 * MS), 100 * MS);
    }

    #[test]
    fn jitter_widens_it_and_the_hard_timeout_caps_it() {
        let mut e = RttEstimator::new();
        for i in 0..50 {
            e.sample(if i % 2 == 0 { 50 * MS } else { 450 * MS });
        }
        let soft = e.soft_timeout(10 * MS, 2000 * MS);
        assert!(soft > 600 * MS, "{soft:?}");
        assert_eq!(e.soft_timeout(10 * MS, 300 * MS), 300 * MS);
    }
}
