//! Keyspace regions: which keys one lookup's answer covers, so a republish
//! sweep can walk the stored keys in order and look up once per region
//! instead of once per key (kubo's "provide sweep" idea, made exact).
//!
//! Why one answer covers a whole region. Call the keys sharing a prefix `P`
//! region `P`, and `S` the nodes whose ids share it. For any key in region
//! `P`, every node of `S` is closer than every node outside it (XOR distance
//! orders first by the longest common prefix). So when `S` holds at least
//! `k` nodes and we know all of them, the `k` closest nodes of every key in
//! the region are the `k` of `S` closest to that key, found without a lookup.
//!
//! A lookup for a key `a` asking for `w > k` closest nodes tells us all of
//! `S` for any prefix of `a` longer than the common prefix of `a` and the
//! farthest node found: every node inside such a prefix is closer to `a`
//! than that farthest one, so the lookup found it. The region is the
//! shortest such prefix, if it holds `k` nodes; otherwise the answer is exact
//! for `a` alone. A `w` of 3k makes the second case rare.
//!
//! Pure: no clock, no network. Time comes in as numbers.

use crate::contact::Contact;
use crate::id::{Id, ID_LEN};

/// The keys one lookup's answer covers, and the nodes to pick from for them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    /// The first key of the region's prefix (keys before the lookup's target
    /// are covered too: the region is the whole prefix).
    pub first: Id,
    /// The last key covered (inclusive); keys from the lookup's target up
    /// to it are covered.
    pub end: Id,
    /// Every node whose id shares the region's prefix; the `k` closest of
    /// any key in the region are among them.
    pub nodes: Vec<Contact>,
}

impl Region {
    /// Whether `id` shares the region's prefix: a node with it belongs in
    /// `nodes`, a key with it is covered (`first..=end` is the prefix).
    pub fn spans(&self, id: &Id) -> bool {
        self.first <= *id && *id <= self.end
    }

    /// Whether the region is one key only (its lookup found fewer than k
    /// nodes sharing a prefix with it).
    pub fn is_one_key(&self) -> bool {
        self.first == self.end
    }
}

/// Regions a client keeps while it places many keys (a put's chunks and
/// shards): the region spanning a key names the closest nodes of every key
/// in it, so one lookup serves all the keys it spans while it is fresh.
#[derive(Clone, Debug, Default)]
pub struct Regions {
    /// Each region, with when it was looked up (ms).
    kept: Vec<(Region, u64)>,
}

/// Regions kept at most: the oldest goes first.
pub const REGIONS_KEPT: usize = 256;

impl Regions {
    /// The region spanning `key` looked up less than `ttl_ms` before `now`.
    pub fn covering(&self, key: &Id, now: u64, ttl_ms: u64) -> Option<&Region> {
        self.kept
            .iter()
            .find(|(r, at)| r.spans(key) && now.saturating_sub(*at) < ttl_ms)
            .map(|(r, _)| r)
    }

    /// Keeps `region`, looked up at `now`, in place of any it overlaps; a
    /// region of one key serves no other and is not kept.
    pub fn keep(&mut self, region: Region, now: u64) {
        if region.is_one_key() {
            return;
        }
        self.kept
            .retain(|(r, _)| r.end < region.first || region.end < r.first);
        if self.kept.len() >= REGIONS_KEPT {
            self.kept.remove(0);
        }
        self.kept.push((region, now));
    }
}

/// The region that `closest` covers: a lookup's answer for `start` (ourselves
/// included when we are a holder), asked for `width` nodes. An answer of
/// fewer than `width` is the whole network and covers every key.
pub fn region_of(start: &Id, closest: &[Contact], k: usize, width: usize) -> Region {
    let last = Id([0xff; ID_LEN]);
    if closest.len() < width.max(k) {
        return Region {
            first: Id([0; ID_LEN]),
            end: last,
            nodes: closest.to_vec(),
        };
    }
    let shared = |c: &Contact| start.distance(&c.id).leading_zeros();
    let farthest = closest.iter().map(shared).min().unwrap_or(0);
    let len = farthest + 1;
    let inside: Vec<Contact> = closest
        .iter()
        .filter(|c| shared(c) >= len)
        .copied()
        .collect();
    if inside.len() < k {
        return Region {
            first: *start,
            end: *start,
            nodes: closest_of(start, closest, k),
        };
    }
    let free = (ID_LEN * 8).saturating_sub(len);
    let (mut first, mut end) = (*start, *start);
    for bit in 0..free {
        first.0[ID_LEN - 1 - bit / 8] &= !(1 << (bit % 8));
        end.0[ID_LEN - 1 - bit / 8] |= 1 << (bit % 8);
    }
    Region {
        first,
        end,
        nodes: inside,
    }
}

/// The keys a newcomer may be among the `k` closest of, as ranges of key
/// order (first, last), from `known`: the nodes we know near it, the
/// newcomer among them or not.
///
/// A key sharing exactly `c` leading bits with the newcomer lies on the other
/// side at depth `c + 1`, and every node on that side is closer to it than the
/// newcomer. So only the sides holding fewer than `k` known nodes can hold
/// such keys; in a large network those are the few deepest, next to the
/// newcomer's id. Knowing too few nodes only widens the ranges.
pub fn newcomer_ranges(newcomer: &Id, known: &[Contact], k: usize) -> Vec<(Id, Id)> {
    const BITS: usize = ID_LEN * 8;
    let mut per_depth = [0usize; BITS];
    for c in known.iter().filter(|c| c.id != *newcomer) {
        per_depth[newcomer.distance(&c.id).leading_zeros().min(BITS - 1)] += 1;
    }
    let set = |id: &mut Id, bit: usize, on: bool| {
        // `bit` counts from the most significant end.
        let (byte, mask) = (bit / 8, 0x80u8 >> (bit % 8));
        if on {
            id.0[byte] |= mask;
        } else {
            id.0[byte] &= !mask;
        }
    };
    let mut ranges = vec![(*newcomer, *newcomer)];
    for c in (0..BITS).filter(|&c| per_depth[c] < k.max(1)) {
        let mut side = *newcomer;
        let flipped = side.0[c / 8] & (0x80 >> (c % 8)) == 0;
        set(&mut side, c, flipped);
        let (mut first, mut end) = (side, side);
        for bit in c + 1..BITS {
            set(&mut first, bit, false);
            set(&mut end, bit, true);
        }
        ranges.push((first, end));
    }
    ranges.sort();
    ranges
}

/// The `k` of `nodes` closest to `key`, closest first.
pub fn closest_of(key: &Id, nodes: &[Contact], k: usize) -> Vec<Contact> {
    let mut sorted = nodes.to_vec();
    sorted.sort_by_key(|c| key.distance(&c.id));
    sorted.truncate(k);
    sorted
}

/// Where `key` sits in the keyspace, from 0 (all zeros) to just under 1.
pub fn position(key: &Id) -> f64 {
    let mut top = [0u8; 8];
    top.copy_from_slice(&key.0[..8]);
    (u64::from_be_bytes(top) >> 11) as f64 / 2f64.powi(53)
}

/// When a sweep that started at `start_ms` and spreads over `interval_ms`
/// should reach `key`: its share of the interval, by keyspace position. Keys
/// are hashes, so they spread evenly and so does the work.
pub fn due_ms(key: &Id, start_ms: u64, interval_ms: u64) -> u64 {
    start_ms + (position(key) * interval_ms as f64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngCore, SeedableRng};

    fn random_id(rng: &mut StdRng) -> Id {
        let mut b = [0u8; ID_LEN];
        rng.fill_bytes(&mut b);
        Id(b)
    }

    #[test]
    fn a_region_spans_exactly_the_ids_of_its_prefix() {
        let mut rng = StdRng::seed_from_u64(11);
        let start = random_id(&mut rng);
        // 40 nodes: the answer of 21 makes a region of some prefix.
        let ids: Vec<Id> = (0..40).map(|_| random_id(&mut rng)).collect();
        let mut all = contacts(&ids);
        all.sort_by_key(|c| start.distance(&c.id));
        let region = region_of(&start, &all[..21], 7, 21);
        assert!(!region.is_one_key());
        let len = start
            .distance(&region.first)
            .leading_zeros()
            .min(start.distance(&region.end).leading_zeros());
        for c in &all {
            let shares = start.distance(&c.id).leading_zeros() >= len;
            assert_eq!(region.spans(&c.id), shares, "{:?}", c.id);
        }
        for n in &region.nodes {
            assert!(region.spans(&n.id));
        }
        let one = Region {
            first: start,
            end: start,
            nodes: Vec::new(),
        };
        assert!(one.is_one_key() && one.spans(&start));
    }

    #[test]
    fn kept_regions_serve_the_keys_they_span_while_fresh() {
        let mut rng = StdRng::seed_from_u64(12);
        let ids: Vec<Id> = (0..40).map(|_| random_id(&mut rng)).collect();
        let start = random_id(&mut rng);
        let mut all = contacts(&ids);
        all.sort_by_key(|c| start.distance(&c.id));
        let region = region_of(&start, &all[..21], 7, 21);
        let mut kept = Regions::default();
        kept.keep(region.clone(), 1_000);
        assert_eq!(kept.covering(&start, 1_500, 60_000), Some(&region));
        assert_eq!(kept.covering(&region.end, 1_500, 60_000), Some(&region));
        assert_eq!(kept.covering(&start, 61_000, 60_000), None, "stale");
        let outside = Id(region.end.0.map(|b| !b));
        assert!(!region.spans(&outside));
        assert_eq!(kept.covering(&outside, 1_500, 60_000), None);
        // A newer look at the same prefix replaces the old one.
        kept.keep(region.clone(), 2_000);
        assert_eq!(kept.kept.len(), 1);
        assert_eq!(kept.covering(&start, 61_500, 60_000), Some(&region));
        // One key alone is not kept.
        kept.keep(
            Region {
                first: outside,
                end: outside,
                nodes: all[..7].to_vec(),
            },
            2_000,
        );
        assert_eq!(kept.covering(&outside, 2_000, 60_000), None);
    }

    fn contacts(ids: &[Id]) -> Vec<Contact> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| Contact::new(*id, format!("127.0.0.1:{}", 1000 + i).parse().unwrap()))
            .collect()
    }

    fn id_with(first: u8, last: u8) -> Id {
        let mut b = [0u8; ID_LEN];
        b[0] = first;
        b[ID_LEN - 1] = last;
        Id(b)
    }

    #[test]
    fn a_small_network_covers_every_key() {
        let nodes = contacts(&[id_with(1, 0), id_with(2, 0)]);
        let r = region_of(&id_with(0, 0), &nodes, 3, 9);
        assert_eq!(r.end, Id([0xff; ID_LEN]));
        assert_eq!(r.nodes.len(), 2);
    }

    #[test]
    fn the_region_is_the_prefix_just_below_the_farthest() {
        // From 0x00..: the farthest of width 3 is 0x80.. (no shared bit), so
        // the region is the keys starting with a 0 bit, holding 2 nodes.
        let nodes = contacts(&[id_with(0x01, 0), id_with(0x05, 0), id_with(0x80, 0)]);
        let r = region_of(&id_with(0, 0), &nodes, 2, 3);
        let mut want = [0xffu8; ID_LEN];
        want[0] = 0x7f;
        assert_eq!(r.end, Id(want));
        assert_eq!(r.first, Id([0; ID_LEN]));
        assert_eq!(r.nodes.len(), 2);
        // With k = 3 the prefix holds too few: the answer covers its target only.
        let r = region_of(&id_with(0, 0), &nodes, 3, 3);
        assert_eq!(r.end, id_with(0, 0));
    }

    /// The claim of the module doc, checked by brute force: for every key in
    /// a region, its k closest among all nodes are the k closest of the
    /// region's nodes.
    #[test]
    fn every_key_in_a_region_gets_its_true_k_closest() {
        let mut rng = StdRng::seed_from_u64(7);
        for trial in 0..300 {
            let n = 3 + trial % 60;
            let k = 1 + trial % 8;
            let width = 3 * k;
            let all = contacts(&(0..n).map(|_| random_id(&mut rng)).collect::<Vec<_>>());
            let start = random_id(&mut rng);
            let r = region_of(&start, &closest_of(&start, &all, width), k, width);
            assert!(r.first <= start && start <= r.end);
            for i in 0..20 {
                // A random key from start to end: start's bits above the
                // first bit where they differ, random ones below it.
                let noise = random_id(&mut rng);
                let free = ID_LEN * 8 - start.distance(&r.end).leading_zeros();
                let mut key = start;
                for bit in 0..free {
                    let (byte, m) = (ID_LEN - 1 - bit / 8, 1u8 << (bit % 8));
                    key.0[byte] = (key.0[byte] & !m) | (noise.0[byte] & m);
                }
                if i == 0 {
                    key = r.end;
                } else if i == 1 {
                    key = r.first;
                }
                if key < r.first || key > r.end {
                    continue;
                }
                assert_eq!(
                    closest_of(&key, &r.nodes, k),
                    closest_of(&key, &all, k),
                    "trial {trial}: key {key:?}"
                );
            }
        }
    }

    /// Every key the newcomer is among the k closest of lies in one of its
    /// ranges, checked by brute force; and in a large network the ranges
    /// are a small part of the keyspace.
    #[test]
    fn newcomer_ranges_hold_every_key_it_is_closest_to() {
        let mut rng = StdRng::seed_from_u64(11);
        for trial in 0..200 {
            let n = 2 + trial % 80;
            let k = 1 + trial % 7;
            let all = contacts(&(0..n).map(|_| random_id(&mut rng)).collect::<Vec<_>>());
            let newcomer = all[0].id;
            let ranges = newcomer_ranges(&newcomer, &all, k);
            let inside = |key: &Id| ranges.iter().any(|(a, b)| a <= key && key <= b);
            for _ in 0..300 {
                let key = random_id(&mut rng);
                if closest_of(&key, &all, k).iter().any(|c| c.id == newcomer) {
                    assert!(inside(&key), "trial {trial}: {key:?} outside");
                }
            }
            if n >= 60 && k <= 2 {
                let share = ranges
                    .iter()
                    .map(|(a, b)| position(b) - position(a))
                    .sum::<f64>();
                assert!(share < 0.5, "trial {trial}: {share} of the keyspace");
            }
        }
    }

    #[test]
    fn regions_are_wide_enough_to_save_lookups() {
        // 24 nodes, k = 7, width 21; and 1,000 nodes, k = 7: a sweep over
        // 2,000 keys needs a few regions per k nodes, not one per key.
        for (n, most) in [(24usize, 6), (1000, 200)] {
            let mut rng = StdRng::seed_from_u64(3);
            let all = contacts(&(0..n).map(|_| random_id(&mut rng)).collect::<Vec<_>>());
            let mut keys: Vec<Id> = (0..2000).map(|_| random_id(&mut rng)).collect();
            keys.sort();
            let mut regions = 0;
            let mut end: Option<Id> = None;
            for key in &keys {
                if end.is_some_and(|e| *key <= e) {
                    continue;
                }
                regions += 1;
                end = Some(region_of(key, &closest_of(key, &all, 21), 7, 21).end);
            }
            assert!(regions <= most, "{regions} regions for {n} nodes");
        }
    }

    #[test]
    fn due_times_spread_by_position() {
        assert_eq!(due_ms(&id_with(0, 0), 1_000, 3_600_000), 1_000);
        assert_eq!(due_ms(&id_with(0x80, 0), 1_000, 3_600_000), 1_801_000);
        let last = Id([0xff; ID_LEN]);
        assert!(due_ms(&last, 0, 3_600_000) < 3_600_000);
        assert!(position(&last) < 1.0);
    }
}
