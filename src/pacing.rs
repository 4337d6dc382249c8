//! Sender-side pacing: how many requests this node may send each peer, so
//! that an honest node never runs into a peer's per-source limit (which
//! drops the excess unanswered, costing us a whole timeout per request).
//! A request over the budget is given a turn later instead: the caller waits
//! and then sends. Pure: the caller passes the time in (milliseconds).

use std::collections::HashMap;
use std::hash::Hash;

use crate::limits::{Rate, TokenBucket};

/// One token bucket per destination, at most `max_dests` of them, whose
/// debt is the queue of requests waiting for their turn.
#[derive(Clone, Debug)]
pub struct SendPacer<K> {
    rate: Rate,
    max_waiting: usize,
    max_dests: usize,
    buckets: HashMap<K, TokenBucket>,
}

impl<K: Hash + Eq + Clone> SendPacer<K> {
    /// A pacer giving every destination `rate`, with at most `max_waiting`
    /// requests waiting their turn for one destination, tracking at most
    /// `max_dests` destinations.
    pub fn new(rate: Rate, max_waiting: usize, max_dests: usize) -> Self {
        SendPacer {
            rate,
            max_waiting,
            max_dests: max_dests.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Takes the next turn to send one request to `dest`: how many ms to
    /// wait before sending (0: send now). `None`, taking nothing, when
    /// `max_waiting` requests already wait for `dest` or the turn would come
    /// later than `max_wait_ms` from now: the caller should fail at once.
    /// Turns are handed out in order; one not used is simply lost.
    pub fn take_turn(&mut self, dest: &K, max_wait_ms: u64, now: u64) -> Option<u64> {
        let rate = self.rate;
        let max_debt = self.max_waiting as f64;
        let bucket = self.bucket(dest, now);
        let mut trial = *bucket;
        let wait = trial.reserve(rate, 1.0, max_debt, now)?;
        if wait > max_wait_ms {
            return None;
        }
        *bucket = trial;
        Some(wait)
    }

    /// Takes a turn only if it is now and nobody is waiting: for a resend,
    /// which must go at its own time or not at all.
    pub fn try_now(&mut self, dest: &K, now: u64) -> bool {
        let rate = self.rate;
        self.bucket(dest, now).try_take(rate, 1.0, now)
    }

    /// Destinations tracked now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no destination is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// `dest`'s bucket, made room for when the map is full: destinations
    /// whose buckets refilled (idle ones) are forgotten first, then the one
    /// nearest to full, so a destination with requests waiting is the last
    /// to go.
    fn bucket(&mut self, dest: &K, now: u64) -> &mut TokenBucket {
        let rate = self.rate;
        if !self.buckets.contains_key(dest) && self.buckets.len() >= self.max_dests {
            self.buckets.retain(|_, b| !b.is_full(rate, now));
            if self.buckets.len() >= self.max_dests {
                let fullest = self
                    .buckets
                    .iter()
                    .max_by(|a, b| {
                        a.1.tokens_at(rate, now)
                            .total_cmp(&b.1.tokens_at(rate, now))
                    })
                    .map(|(k, _)| k.clone());
                if let Some(k) = fullest {
                    self.buckets.remove(&k);
                }
            }
        }
        self.buckets
            .entry(dest.clone())
            .or_insert_with(|| TokenBucket::new(rate, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `n` requests to `dest` at `now`, each at its turn; the sending times.
    fn turns(p: &mut SendPacer<u32>, dest: u32, n: usize, now: u64) -> Vec<u64> {
        (0..n)
            .map(|_| now + p.take_turn(&dest, u64::MAX, now).expect("a turn"))
            .collect()
    }

    #[test]
    fn a_burst_goes_at_once_and_the_rest_is_spread_at_the_rate() {
        let mut p = SendPacer::new(Rate::new(200.0, 800.0), 10_000, 100);
        let at = turns(&mut p, 1, 1_000, 0);
        assert!(at[..800].iter().all(|&t| t == 0));
        // 200/s: one turn every 5 ms after the burst, in order.
        assert_eq!(at[800], 5);
        assert_eq!(at[801], 10);
        assert_eq!(at[999], 1_000);
        assert!(at.windows(2).all(|w| w[0] <= w[1]));
        // What a receiver allowing exactly this rate and burst sees: nothing
        // over its budget, at any moment.
        let rate = Rate::new(200.0, 800.0);
        let mut receiver = TokenBucket::new(rate, 0);
        assert!(at.iter().all(|&t| receiver.try_take(rate, 1.0, t)));
        // Other destinations have their own budget.
        assert_eq!(p.take_turn(&2, u64::MAX, 0), Some(0));
    }

    #[test]
    fn waiting_is_bounded_by_count_and_by_the_callers_deadline() {
        let mut p = SendPacer::new(Rate::new(100.0, 10.0), 50, 100);
        assert_eq!(turns(&mut p, 1, 10, 0), vec![0; 10]);
        // 50 may wait (the last one 500 ms), the 51st is refused.
        assert_eq!(turns(&mut p, 1, 50, 0).last(), Some(&500));
        assert_eq!(p.take_turn(&1, u64::MAX, 0), None);
        // A refused turn took nothing: 10 ms later one more fits.
        assert_eq!(p.take_turn(&1, u64::MAX, 10), Some(500));
        // A caller that cannot wait that long is refused, and charged nothing.
        let mut p = SendPacer::new(Rate::new(100.0, 1.0), 50, 100);
        assert_eq!(p.take_turn(&1, 0, 0), Some(0));
        assert_eq!(p.take_turn(&1, 5, 0), None);
        assert_eq!(p.take_turn(&1, 10, 0), Some(10));
    }

    #[test]
    fn a_resend_goes_only_when_nobody_waits() {
        let mut p = SendPacer::new(Rate::new(100.0, 2.0), 50, 100);
        assert!(p.try_now(&1, 0));
        assert_eq!(p.take_turn(&1, u64::MAX, 0), Some(0));
        assert!(!p.try_now(&1, 0));
        assert_eq!(p.take_turn(&1, u64::MAX, 0), Some(10));
        // The waiting turn comes first: at 10 ms the token is its, not a resend's.
        assert!(!p.try_now(&1, 10));
        assert!(p.try_now(&1, 20));
    }

    #[test]
    fn the_map_stays_bounded_and_keeps_destinations_with_waiters() {
        let rate = Rate::new(100.0, 5.0);
        let mut p = SendPacer::new(rate, 1_000, 10);
        // Destination 0 is deep in debt: 20 waiting.
        turns(&mut p, 0, 25, 0);
        for d in 1..10_000 {
            assert_eq!(p.take_turn(&d, u64::MAX, 0), Some(0));
            assert!(p.len() <= 10);
        }
        // Still remembered: its next turn comes after the 20 waiting ones.
        assert_eq!(p.take_turn(&0, u64::MAX, 0), Some(210));
        // Idle destinations are forgotten once refilled.
        assert_eq!(p.take_turn(&20_000, u64::MAX, 60_000), Some(0));
        assert!(p.len() <= 2, "{}", p.len());
    }

    #[test]
    fn a_clock_going_back_does_no_harm() {
        let mut p = SendPacer::new(Rate::new(100.0, 2.0), 50, 100);
        assert_eq!(turns(&mut p, 1, 3, 1_000), vec![1_000, 1_000, 1_010]);
        // Back by a second: no refill, no panic, and the wait is the debt's
        // alone, not the second that went back.
        assert_eq!(p.take_turn(&1, u64::MAX, 0), Some(20));
        assert!(!p.try_now(&1, 0));
        assert_eq!(p.take_turn(&1, u64::MAX, 1_030), Some(0));
    }
}
