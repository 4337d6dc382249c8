//! When to hedge a block fetch, and which peers one transfer avoids. Pure:
//! durations and sizes come in, no clock is read.
//!
//! A fetch that falls far behind what this transfer's fetches usually take
//! is hedged: the same block is asked of the next holder while the first
//! keeps going, and the first copy that verifies wins (after "The Tail at
//! Scale", Dean and Barroso, and libtorrent's end-game mode). A peer that
//! lost such a race is slow: it is tried only after every other candidate
//! for the rest of the transfer. A peer that sent bytes not matching the key
//! is a liar: never asked again in the transfer, nor believed in its lookups.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

/// Fetch times remembered, the newest kept.
const WINDOW: usize = 32;
/// A fetch is far behind at this many times the usual time for its size.
const FACTOR: u64 = 4;
/// In a transfer's end game (nothing left to start, so the links have room)
/// a fetch is hedged once it runs past the usual time for its size: one
/// stalled fetch (a lost segment's retransmission timeout, a holder gone
/// quiet) would otherwise be all the transfer waits for.
const ENDGAME_FACTOR: u64 = 1;
/// Bytes that stand for a fetch's fixed cost (connection, request, first
/// byte), so that a small block's time predicts a large one's and back.
const FIXED_BYTES: u64 = 64 << 10;
/// Before any fetch of this transfer finished, a fetch is expected to move
/// at least this many bytes a second (8 MiB/s): a 1 MiB block is hedged
/// after about 0.5 s plus the floor.
const FIRST_RATE: u64 = 8 << 20;
/// Hedge no sooner than this (ms), however fast fetches were.
const MIN_MS: u64 = 20;
/// Hedge no later than this (ms), however slow fetches were.
const MAX_MS: u64 = 10_000;

/// How long this transfer's fetches take, and so when one is far behind.
#[derive(Clone, Debug, Default)]
pub struct HedgeTimer {
    /// Microseconds per byte (fixed cost included) of the latest fetches,
    /// scaled by 1,000,000 to keep integers.
    pace: VecDeque<u64>,
}

impl HedgeTimer {
    /// No fetch seen yet.
    pub fn new() -> HedgeTimer {
        HedgeTimer::default()
    }

    /// A fetch of `size` bytes took `us` microseconds, start to verified.
    pub fn record(&mut self, size: u64, us: u64) {
        if self.pace.len() == WINDOW {
            self.pace.pop_front();
        }
        self.pace
            .push_back(us.saturating_mul(1_000_000) / (size + FIXED_BYTES));
    }

    /// After how many ms a fetch of `size` bytes is far behind, with
    /// `floor_ms` the least (twice the network's soft timeout, say).
    pub fn hedge_after_ms(&self, size: u64, floor_ms: u64) -> u64 {
        self.after_ms(size, floor_ms, FACTOR)
    }

    /// [`hedge_after_ms`](Self::hedge_after_ms) in the transfer's end game.
    pub fn endgame_after_ms(&self, size: u64, floor_ms: u64) -> u64 {
        self.after_ms(size, floor_ms, ENDGAME_FACTOR)
    }

    fn after_ms(&self, size: u64, floor_ms: u64, factor: u64) -> u64 {
        let expected_us = if self.pace.is_empty() {
            floor_ms * 1000 + size.saturating_mul(1_000_000) / FIRST_RATE
        } else {
            let mut p: Vec<u64> = self.pace.iter().copied().collect();
            p.sort_unstable();
            let median = p[p.len() / 2];
            median.saturating_mul(size + FIXED_BYTES) / 1_000_000
        };
        let ms = (factor * expected_us).div_ceil(1000);
        ms.max(floor_ms).clamp(MIN_MS, MAX_MS)
    }
}

/// Peers one transfer caught lying or being slow, each set bounded: past
/// its bound a set starts over (a liar met again is caught again, since its
/// bytes are still checked; a slow peer again loses a race).
#[derive(Clone, Debug)]
pub struct PeerMarks<A> {
    liars: HashSet<A>,
    slow: HashSet<A>,
    max: usize,
}

impl<A: Copy + Eq + Hash> PeerMarks<A> {
    /// No peer marked; each set holds at most `max`.
    pub fn new(max: usize) -> PeerMarks<A> {
        PeerMarks {
            liars: HashSet::new(),
            slow: HashSet::new(),
            max: max.max(1),
        }
    }

    /// `peer` sent bytes not matching the key; true when it was not known.
    pub fn liar(&mut self, peer: A) -> bool {
        if self.liars.len() >= self.max {
            self.liars.clear();
        }
        self.slow.remove(&peer);
        self.liars.insert(peer)
    }

    /// `peer` fell far behind and another holder's copy won; true when it
    /// was not known.
    pub fn slow(&mut self, peer: A) -> bool {
        if self.liars.contains(&peer) {
            return false;
        }
        if self.slow.len() >= self.max {
            self.slow.clear();
        }
        self.slow.insert(peer)
    }

    /// Whether any peer is marked slow.
    pub fn any_slow(&self) -> bool {
        !self.slow.is_empty()
    }

    /// Whether `peer` was caught lying.
    pub fn is_liar(&self, peer: &A) -> bool {
        self.liars.contains(peer)
    }

    /// The liars, for a lookup to neither ask nor believe.
    pub fn liars(&self) -> HashSet<A> {
        self.liars.clone()
    }

    /// The liars and the slow peers: whom a lookup neither asks nor
    /// believes while the block may be had elsewhere.
    pub fn avoided(&self) -> HashSet<A> {
        self.liars.union(&self.slow).copied().collect()
    }

    /// `candidates` in the order to try them: each once, liars and `me`
    /// dropped, slow peers after all others, otherwise in the given order
    /// (holders first, then the closest nodes).
    pub fn order(&self, candidates: impl IntoIterator<Item = A>, me: Option<A>) -> Vec<A> {
        let mut seen = HashSet::new();
        let (mut fast, mut slow) = (Vec::new(), Vec::new());
        for c in candidates {
            if Some(c) == me || self.liars.contains(&c) || !seen.insert(c) {
                continue;
            }
            if self.slow.contains(&c) {
                slow.push(c);
            } else {
                fast.push(c);
            }
        }
        fast.extend(slow);
        fast
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_any_fetch_a_chunk_gets_the_floor_plus_time_at_the_first_rate() {
        let t = HedgeTimer::new();
        // 4 x (30 ms + 1 MiB at 8 MiB/s = 125 ms) = 620 ms.
        assert_eq!(t.hedge_after_ms(1 << 20, 30), 620);
        assert_eq!(t.hedge_after_ms(0, 30), 120);
    }

    #[test]
    fn the_delay_follows_the_median_fetch_scaled_by_size() {
        let mut t = HedgeTimer::new();
        // 1 MiB chunks in 2 ms each, one straggler at 900 ms.
        for _ in 0..9 {
            t.record(1 << 20, 2_000);
        }
        t.record(1 << 20, 900_000);
        assert_eq!(
            t.hedge_after_ms(1 << 20, 1),
            MIN_MS,
            "4 x 2 ms, under the least"
        );
        for _ in 0..WINDOW {
            t.record(1 << 20, 100_000);
        }
        assert_eq!(t.hedge_after_ms(1 << 20, 1), 400);
        // A 64 KiB block: 4 x 100 ms x (64 + 64) / (1024 + 64) KiB.
        assert_eq!(t.hedge_after_ms(64 << 10, 1), 48);
        assert_eq!(t.hedge_after_ms(1 << 20, 900), 900, "never under the floor");
    }

    #[test]
    fn the_end_game_hedges_at_the_usual_time_not_four_times_it() {
        let mut t = HedgeTimer::new();
        for _ in 0..WINDOW {
            t.record(1 << 20, 100_000);
        }
        assert_eq!(t.hedge_after_ms(1 << 20, 1), 400);
        assert_eq!(t.endgame_after_ms(1 << 20, 1), 100);
        // The floor and the bounds hold in the end game too.
        assert_eq!(t.endgame_after_ms(1 << 20, 250), 250);
        assert_eq!(t.endgame_after_ms(0, 1), MIN_MS);
        // Before any fetch: the floor plus 1 MiB at the first rate, once.
        assert_eq!(HedgeTimer::new().endgame_after_ms(1 << 20, 30), 155);
    }

    #[test]
    fn the_delay_is_bounded_above() {
        let mut t = HedgeTimer::new();
        t.record(0, 3_600_000_000);
        assert_eq!(t.hedge_after_ms(1 << 20, 1), MAX_MS);
    }

    #[test]
    fn liars_are_dropped_slow_peers_go_last_and_me_never_comes() {
        let mut m = PeerMarks::new(8);
        assert!(!m.any_slow());
        assert!(m.slow(2));
        assert!(!m.slow(2));
        assert!(m.any_slow());
        assert!(m.liar(4));
        assert!(!m.slow(4), "a liar is not merely slow");
        assert_eq!(m.order([1, 2, 3, 4, 5, 3, 0], Some(0)), vec![1, 3, 5, 2]);
        assert!(m.liars().contains(&4) && m.is_liar(&4));
        assert_eq!(m.avoided(), HashSet::from([2, 4]));
        // A slow peer caught lying becomes a liar.
        assert!(m.liar(2));
        assert_eq!(m.order([2, 1], None), vec![1]);
    }

    #[test]
    fn each_set_is_bounded() {
        let mut m = PeerMarks::new(3);
        for p in 0..10 {
            m.liar(p);
            m.slow(100 + p);
        }
        assert!(m.liars().len() <= 3);
        assert!(m.slow.len() <= 3);
    }
}
