//! Rate limits as plain data: a token bucket, and a bounded map of them keyed
//! by source. Pure: the caller passes the time in (milliseconds).

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
        let mut b = *self;
        b.refill(rate, now);
        b.tokens >= rate.burst
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
}
