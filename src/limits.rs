//! Rate limits as plain data: a token bucket, a bounded map of them keyed by
//! source, and a pacer for a background reader. Pure: the caller passes the
//! time in (milliseconds).

use std::collections::HashMap;
use std::hash::Hash;

/// A rate and a burst: `rate` tokens a second refill a bucket holding at most `burst`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub per_sec: f64,
    pub burst: f64,
}

impl Rate {
    /// `per_sec` a second with room for `burst` at once.
    pub fn new(per_sec: f64, burst: f64) -> Rate {
        Rate {
            per_sec: per_sec.max(0.0),
            burst: burst.max(1.0),
        }
    }
}

/// One token bucket, full when new.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenBucket {
    tokens: f64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(rate: Rate, now: u64) -> TokenBucket {
        TokenBucket {
            tokens: rate.burst,
            last_ms: now,
        }
    }

    /// Takes `cost` tokens if there are enough; refills first. A clock that
    /// goes back refills nothing.
    pub fn try_take(&mut self, rate: Rate, cost: f64, now: u64) -> bool {
        self.refill(rate, now);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }

    /// Whether the bucket has refilled to its burst by `now` (so forgetting
    /// it loses nothing).
    pub fn is_full(&self, rate: Rate, now: u64) -> bool {
        self.tokens_at(rate, now) >= rate.burst
    }

    /// The tokens the bucket holds at `now` (negative while in debt).
    pub fn tokens_at(&self, rate: Rate, now: u64) -> f64 {
        let mut b = *self;
        b.refill(rate, now);
        b.tokens
    }

    /// Reserves `cost` tokens, going into debt of at most `max_debt` tokens:
    /// the milliseconds until the reserved tokens have refilled (0: spend
    /// now), or `None`, charging nothing, when the debt would pass
    /// `max_debt`. Reservations are served in the order they were made.
    /// A clock that goes back neither refills nor lengthens the wait.
    pub fn reserve(&mut self, rate: Rate, cost: f64, max_debt: f64, now: u64) -> Option<u64> {
        self.refill(rate, now);
        let left = self.tokens - cost;
        if left >= 0.0 {
            self.tokens = left;
            return Some(0);
        }
        // With no refill a debt is never paid: refuse rather than wait forever.
        if left < -max_debt.max(0.0) || rate.per_sec <= 0.0 {
            return None;
        }
        self.tokens = left;
        Some(((-left * 1000.0 / rate.per_sec).ceil() as u64).max(1))
    }

    fn refill(&mut self, rate: Rate, now: u64) {
        let elapsed = now.saturating_sub(self.last_ms);
        self.tokens = (self.tokens + elapsed as f64 * rate.per_sec / 1000.0).min(rate.burst);
        self.last_ms = self.last_ms.max(now);
    }
}

/// One token bucket per source, at most `max_sources` of them. When the map
/// is full, buckets that have refilled (idle sources) are forgotten; if none
/// has, new sources share one overflow bucket, so a flood of spoofed sources
/// can neither grow the map nor get more than one source's rate between them.
#[derive(Clone, Debug)]
pub struct SourceLimiter<K> {
    rate: Rate,
    max_sources: usize,
    buckets: HashMap<K, TokenBucket>,
    overflow: TokenBucket,
}

impl<K: Hash + Eq + Clone> SourceLimiter<K> {
    /// A limiter giving every source `rate`, tracking at most `max_sources`.
    pub fn new(rate: Rate, max_sources: usize, now: u64) -> Self {
        SourceLimiter {
            rate,
            max_sources: max_sources.max(1),
            buckets: HashMap::new(),
            overflow: TokenBucket::new(rate, now),
        }
    }

    /// Whether `source` may spend `cost` now; if so it is charged.
    pub fn allow(&mut self, source: &K, cost: f64, now: u64) -> bool {
        let rate = self.rate;
        if let Some(bucket) = self.buckets.get_mut(source) {
            return bucket.try_take(rate, cost, now);
        }
        if self.buckets.len() >= self.max_sources {
            self.buckets.retain(|_, b| !b.is_full(rate, now));
        }
        if self.buckets.len() >= self.max_sources {
            return self.overflow.try_take(rate, cost, now);
        }
        let mut bucket = TokenBucket::new(rate, now);
        let allowed = bucket.try_take(rate, cost, now);
        self.buckets.insert(source.clone(), bucket);
        allowed
    }

    /// Sources tracked now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// Paces a background reader to `per_sec` units (bytes) a second: a read may
/// start once the bucket holds its cost, or a whole burst for a read larger
/// than the burst, and is then charged in full, so the bucket may go into
/// debt. The long-run average never exceeds the rate, and no more than one
/// burst (or one oversized read) goes at once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pacer {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    last_ms: u64,
}

impl Pacer {
    /// `per_sec` a second (at least 1) with a burst of one second's worth,
    /// full at `now`.
    pub fn new(per_sec: u64, now: u64) -> Pacer {
        let per_sec = per_sec.max(1) as f64;
        Pacer {
            per_sec,
            burst: per_sec,
            tokens: per_sec,
            last_ms: now,
        }
    }

    /// How long to wait before a read of `cost`; zero means read now, and
    /// the read is charged. Ask again after waiting.
    pub fn wait_ms(&mut self, cost: u64, now: u64) -> u64 {
        let elapsed = now.saturating_sub(self.last_ms);
        self.tokens = (self.tokens + elapsed as f64 * self.per_sec / 1000.0).min(self.burst);
        self.last_ms = self.last_ms.max(now);
        let cost = cost as f64;
        let need = cost.min(self.burst);
        if self.tokens >= need {
            self.tokens -= cost;
            return 0;
        }
        (((need - self.tokens) * 1000.0 / self.per_sec).ceil() as u64).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_the_burst_then_the_rate() {
        let rate = Rate::new(10.0, 5.0);
        let mut b = TokenBucket::new(rate, 0);
        assert_eq!((0..8).filter(|_| b.try_take(rate, 1.0, 0)).count(), 5);
        // 100 ms refill one token at 10/s.
        assert!(!b.try_take(rate, 1.0, 99));
        assert!(b.try_take(rate, 1.0, 100));
        assert!(!b.try_take(rate, 1.0, 100));
        // A long pause refills only up to the burst.
        assert_eq!((0..20).filter(|_| b.try_take(rate, 1.0, 60_000)).count(), 5);
        // A clock going back neither refills nor panics.
        assert!(!b.try_take(rate, 1.0, 10));
        assert!(b.is_full(rate, 70_000));
    }

    #[test]
    fn sustained_rate_matches_the_setting() {
        let rate = Rate::new(50.0, 10.0);
        let mut b = TokenBucket::new(rate, 0);
        // One attempt a millisecond for 10 s: burst + 50/s * 10 s.
        let allowed = (0..10_000u64).filter(|&t| b.try_take(rate, 1.0, t)).count();
        assert!((505..=511).contains(&allowed), "{allowed}");
    }

    #[test]
    fn sources_are_limited_separately() {
        let mut l = SourceLimiter::new(Rate::new(1.0, 2.0), 10, 0);
        assert!(l.allow(&"a", 1.0, 0));
        assert!(l.allow(&"a", 1.0, 0));
        assert!(!l.allow(&"a", 1.0, 0));
        assert!(l.allow(&"b", 1.0, 0));
        assert!(l.allow(&"a", 1.0, 1000));
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn the_map_is_bounded_and_forgets_idle_sources_first() {
        let rate = Rate::new(1.0, 1.0);
        let mut l = SourceLimiter::new(rate, 3, 0);
        for s in 0..3 {
            assert!(l.allow(&s, 1.0, 0));
        }
        // Full of busy sources: newcomers share the overflow bucket.
        assert!(l.allow(&100, 1.0, 0));
        assert!(!l.allow(&101, 1.0, 0));
        assert!(!l.allow(&102, 1.0, 0));
        assert_eq!(l.len(), 3);
        // Once the old sources have refilled they are forgotten for new ones.
        assert!(l.allow(&103, 1.0, 5_000));
        assert_eq!(l.len(), 1);
        for s in 0..1000 {
            l.allow(&(1000 + s), 1.0, 5_000);
        }
        assert!(l.len() <= 3);
    }

    /// Reads `n` blocks of `size`, sleeping as told; when the last one began.
    fn pace(p: &mut Pacer, n: usize, size: u64) -> u64 {
        let mut now = 0;
        for _ in 0..n {
            loop {
                match p.wait_ms(size, now) {
                    0 => break,
                    w => now += w,
                }
            }
        }
        now
    }

    #[test]
    fn pacer_lets_a_burst_go_then_holds_the_rate() {
        // 40 reads of 256 KiB at 1 MiB/s: 4 at once, then 4 a second.
        let mut p = Pacer::new(1 << 20, 0);
        assert_eq!(pace(&mut p, 40, 256 << 10), 9_000);
        // Having just spent, the next read waits its own cost's worth.
        assert_eq!(p.wait_ms(256 << 10, 9_000), 250);
    }

    #[test]
    fn pacer_lets_a_read_larger_than_the_burst_through_and_pays_it_off() {
        // 3 MiB reads at 1 MiB/s: each waits for a full bucket, then leaves a
        // 2 MiB debt, so one goes every 3 s.
        let mut p = Pacer::new(1 << 20, 0);
        assert_eq!(pace(&mut p, 4, 3 << 20), 9_000);
    }

    #[test]
    fn pacer_never_saves_more_than_a_burst_and_ignores_a_clock_going_back() {
        let mut p = Pacer::new(1_000, 0);
        // An hour idle buys one second's worth, not an hour's.
        assert_eq!(p.wait_ms(1_000, 3_600_000), 0);
        assert!(p.wait_ms(1_000, 3_600_000) > 0);
        assert_eq!(
            p.wait_ms(500, 10),
            500,
            "a clock going back refills nothing"
        );
        assert_eq!(p.wait_ms(500, 3_600_500), 0);
    }
}
