//! Unit tests of the routing table (kept apart to keep `table.rs` to its one idea).
use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::net::SocketAddr;

fn table(k: usize) -> RoutingTable {
    let cfg = RoutingConfig {
        k,
        replacement_cache: 2,
        max_failures: 3,
        ..RoutingConfig::default()
    };
    RoutingTable::new(Id::random(), cfg, 0)
}

fn at(id: Id, port: u16) -> Contact {
    Contact::new(id, SocketAddr::from(([10, 0, 0, 1], port)))
}

/// `n` contacts that all fall in bucket `index` of `t`.
fn in_bucket(t: &RoutingTable, index: usize, n: usize) -> Vec<Contact> {
    (0..n)
        .map(|i| at(t.local().random_in_bucket(index), 2000 + i as u16))
        .collect()
}

fn bucket_ids(t: &RoutingTable, index: usize) -> Vec<Id> {
    t.entries()
        .into_iter()
        .filter(|(i, _)| *i == index)
        .map(|(_, e)| e.contact.id)
        .collect()
}

#[test]
fn insert_into_empty_table() {
    let mut t = table(3);
    assert!(t.is_empty());
    let c = at(t.local().random_in_bucket(200), 1);
    assert_eq!(t.observe(c, Heard::Pong, 5), Observed::Inserted);
    assert_eq!(t.len(), 1);
    assert!(t.contains(&c.id));
    let e = t.get(&c.id).expect("inserted");
    assert_eq!((e.contact, e.last_seen, e.failures), (c, 5, 0));
    assert_eq!(t.entries(), vec![(200, e.clone())]);
    assert_eq!(t.closest(&c.id, 5), vec![c]);
}

#[test]
fn own_id_is_ignored() {
    let mut t = table(3);
    assert_eq!(
        t.observe(at(t.local(), 1), Heard::Pong, 1),
        Observed::Ignored
    );
    assert!(t.is_empty());
    assert!(!t.contains(&t.local()));
    assert!(!t.on_failure(&t.local(), 1));
    assert!(!t.remove(&t.local()));
}

#[test]
fn update_moves_to_most_recently_seen_and_resets_failures() {
    let mut t = table(3);
    let cs = in_bucket(&t, 100, 3);
    for (i, c) in cs.iter().enumerate() {
        t.observe(*c, Heard::Pong, i as u64);
    }
    assert!(!t.on_failure(&cs[0].id, 10));
    assert!(!t.on_failure(&cs[0].id, 11));
    assert_eq!(t.get(&cs[0].id).map(|e| e.failures), Some(2));
    // The same id at the same address is a refresh.
    assert_eq!(t.observe(cs[0], Heard::Request, 15), Observed::Updated);
    assert_eq!(t.get(&cs[0].id).map(|e| e.failures), Some(0));
    t.on_failure(&cs[0].id, 16);
    // A pong from a new address, once the old binding failed, moves it.
    let moved = at(cs[0].id, 9999);
    assert_eq!(t.observe(moved, Heard::Pong, 20), Observed::Inserted);
    let e = t.get(&cs[0].id).expect("still there");
    assert_eq!(
        (e.contact.addr, e.last_seen, e.failures),
        (moved.addr, 20, 0)
    );
    assert_eq!(bucket_ids(&t, 100), vec![cs[1].id, cs[2].id, cs[0].id]);
    assert_eq!(t.len(), 3);
}

#[test]
fn one_address_one_vote() {
    let mut t = table(20);
    let a = at(t.local().random_in_bucket(200), 1);
    assert_eq!(t.observe(a, Heard::Request, 1), Observed::Inserted);
    assert!(!t.get(&a.id).unwrap().verified);
    // Many ids claimed at one address: only the first holds it.
    for b in 0..40 {
        let sybil = at(t.local().random_in_bucket(150 + b), 1);
        for how in [Heard::Request, Heard::Answer, Heard::Pong] {
            assert_eq!(t.observe(sybil, how, 2), Observed::Conflict { known: a });
        }
    }
    assert_eq!(t.len(), 1);
    // A known id claimed from another address moves nothing.
    let elsewhere = at(a.id, 2);
    for how in [Heard::Request, Heard::Answer, Heard::Pong] {
        assert_eq!(
            t.observe(elsewhere, how, 3),
            Observed::Conflict { known: a }
        );
    }
    assert_eq!(t.get(&a.id).unwrap().contact, a);
    // Once the old binding has failed, a pong from the new one moves it...
    t.on_failure(&a.id, 4);
    assert_eq!(
        t.observe(elsewhere, Heard::Request, 5),
        Observed::Conflict { known: a }
    );
    assert_eq!(t.observe(elsewhere, Heard::Pong, 5), Observed::Inserted);
    assert_eq!(t.get(&a.id).unwrap().contact, elsewhere);
    assert!(t.get(&a.id).unwrap().verified);
    // ...and likewise a new id takes over a failed address only by pong.
    let successor = at(t.local().random_in_bucket(100), 2);
    assert_eq!(
        t.observe(successor, Heard::Pong, 6),
        Observed::Conflict { known: elsewhere }
    );
    t.on_failure(&a.id, 7);
    assert_eq!(
        t.observe(successor, Heard::Answer, 8),
        Observed::Conflict { known: elsewhere }
    );
    assert_eq!(t.observe(successor, Heard::Pong, 8), Observed::Inserted);
    assert!(!t.contains(&a.id));
    assert_eq!(t.len(), 1);
}

#[test]
fn waiting_nodes_hold_no_address_against_an_entry() {
    let mut t = table(1);
    let first = at(t.local().random_in_bucket(80), 1);
    let second = at(t.local().random_in_bucket(80), 2);
    t.observe(first, Heard::Pong, 1);
    assert_eq!(
        t.observe(second, Heard::Request, 2),
        Observed::Pending { ping: first }
    );
    // Another id at the candidate's address replaces the candidate.
    let third = at(t.local().random_in_bucket(80), 2);
    assert_eq!(
        t.observe(third, Heard::Request, 3),
        Observed::Pending { ping: first }
    );
    t.on_ping_result(&first.id, false, 4);
    assert!(t.contains(&third.id) && !t.contains(&second.id));
}

#[test]
fn entries_that_become_verified_are_listed_once_as_newcomers() {
    let mut t = table(8);
    let a = at(t.local().random_in_bucket(200), 1);
    let b = at(t.local().random_in_bucket(201), 2);
    t.observe(a, Heard::Request, 1);
    t.observe(b, Heard::Pong, 1);
    assert_eq!(t.take_newcomers(), vec![b], "a pong verifies at once");
    t.on_check_result(&a.id, true, 2);
    t.observe(a, Heard::Request, 3);
    t.on_ping_result(&a.id, true, 4);
    assert_eq!(t.take_newcomers(), vec![a], "once, when it was checked");
    assert!(t.take_newcomers().is_empty());
    for i in 0..(NEWCOMERS_MAX as u16 + 10) {
        let id = t.local().random_in_bucket(usize::from(i % 256));
        t.observe(at(id, 2000 + i), Heard::Pong, 5);
    }
    assert_eq!(t.take_newcomers().len(), NEWCOMERS_MAX, "bounded");
}

#[test]
fn only_verified_healthy_entries_are_handed_out() {
    let mut t = table(20);
    let heard = at(t.local().random_in_bucket(255), 1);
    let answered = at(t.local().random_in_bucket(255), 2);
    let ponged = at(t.local().random_in_bucket(255), 3);
    let failing = at(t.local().random_in_bucket(255), 4);
    t.observe(heard, Heard::Request, 1);
    t.observe(answered, Heard::Answer, 1);
    t.observe(ponged, Heard::Pong, 1);
    t.observe(failing, Heard::Pong, 1);
    t.on_failure(&failing.id, 2);
    let target = Id::random();
    assert_eq!(t.closest(&target, 10).len(), 4);
    assert_eq!(t.closest_good(&target, 10), vec![ponged]);
    let mut waiting = t.unverified(10);
    waiting.sort_by_key(|c| c.addr);
    assert_eq!(waiting, vec![heard, answered]);
    // A check: a pong verifies, no pong removes.
    t.on_check_result(&heard.id, true, 3);
    t.on_check_result(&answered.id, false, 3);
    assert!(!t.contains(&answered.id));
    let mut good = t.closest_good(&target, 10);
    good.sort_by_key(|c| c.addr);
    assert_eq!(good, vec![heard, ponged]);
    // A failed check of a verified entry counts one failure, no more.
    t.on_check_result(&ponged.id, false, 4);
    assert_eq!(t.get(&ponged.id).map(|e| e.failures), Some(1));
}

#[test]
fn public_addresses_are_limited_per_ip_and_prefix() {
    let mut t = table(20);
    let public = |ip: [u8; 4], port: u16, bucket: usize, t: &RoutingTable| {
        Contact::new(
            t.local().random_in_bucket(bucket),
            SocketAddr::from((ip, port)),
        )
    };
    let a = public([1, 2, 3, 4], 1, 200, &t);
    assert_eq!(t.observe(a, Heard::Pong, 1), Observed::Inserted);
    // A second port of the same IP in the same bucket is refused...
    let b = public([1, 2, 3, 4], 2, 200, &t);
    assert_eq!(t.observe(b, Heard::Pong, 1), Observed::Rejected);
    // ...but fits another bucket, up to 2 per IP in the table.
    let c = public([1, 2, 3, 4], 3, 201, &t);
    assert_eq!(t.observe(c, Heard::Pong, 1), Observed::Inserted);
    let d = public([1, 2, 3, 4], 4, 202, &t);
    assert_eq!(t.observe(d, Heard::Pong, 1), Observed::Rejected);
    // Two per /24 in a bucket.
    let e = public([1, 2, 3, 5], 1, 200, &t);
    assert_eq!(t.observe(e, Heard::Pong, 1), Observed::Inserted);
    let f = public([1, 2, 3, 6], 1, 200, &t);
    assert_eq!(t.observe(f, Heard::Pong, 1), Observed::Rejected);
    // Eight per /24 in the table.
    for i in 0..6u8 {
        let g = public([1, 2, 3, 10 + i], 1, 190 - usize::from(i), &t);
        let want = if i < 5 {
            Observed::Inserted
        } else {
            Observed::Rejected
        };
        assert_eq!(t.observe(g, Heard::Pong, 1), want, "{i}");
    }
    assert_eq!(t.len(), 8);
    // Loopback is exempt by default (devnets share one IP).
    for port in 0..5 {
        let l = at(t.local().random_in_bucket(200), 100 + port);
        assert_eq!(t.observe(l, Heard::Pong, 1), Observed::Inserted);
    }
}

#[test]
fn full_bucket_challenges_the_least_recently_seen() {
    let mut t = table(2);
    let cs = in_bucket(&t, 50, 3);
    t.observe(cs[0], Heard::Pong, 1);
    t.observe(cs[1], Heard::Pong, 2);
    assert_eq!(
        t.observe(cs[2], Heard::Pong, 3),
        Observed::Pending { ping: cs[0] }
    );
    assert!(!t.contains(&cs[2].id));
    // Other buckets are unaffected.
    let other = at(t.local().random_in_bucket(51), 7);
    assert_eq!(t.observe(other, Heard::Pong, 4), Observed::Inserted);
}

#[test]
fn live_challenged_entry_stays_and_newcomer_is_cached() {
    let mut t = table(2);
    let cs = in_bucket(&t, 50, 4);
    t.observe(cs[0], Heard::Pong, 1);
    t.observe(cs[1], Heard::Pong, 2);
    t.observe(cs[2], Heard::Pong, 3);
    t.on_ping_result(&cs[0].id, true, 10);
    assert_eq!(bucket_ids(&t, 50), vec![cs[1].id, cs[0].id]);
    assert_eq!(t.get(&cs[0].id).map(|e| e.last_seen), Some(10));
    assert!(!t.contains(&cs[2].id));
    // The newcomer is in the cache: it fills the first slot that frees up.
    assert!(t.remove(&cs[1].id));
    assert_eq!(bucket_ids(&t, 50), vec![cs[0].id, cs[2].id]);
    // A resolved challenge lets the next newcomer challenge again.
    assert_eq!(
        t.observe(cs[3], Heard::Pong, 11),
        Observed::Pending { ping: cs[0] }
    );
}

#[test]
fn dead_challenged_entry_is_replaced_by_the_newcomer() {
    let mut t = table(2);
    let cs = in_bucket(&t, 50, 3);
    t.observe(cs[0], Heard::Pong, 1);
    t.observe(cs[1], Heard::Pong, 2);
    t.observe(cs[2], Heard::Pong, 3);
    t.on_ping_result(&cs[0].id, false, 10);
    assert_eq!(bucket_ids(&t, 50), vec![cs[1].id, cs[2].id]);
    assert!(!t.contains(&cs[0].id));
    // Answering again after the fact changes nothing.
    t.on_ping_result(&cs[0].id, true, 11);
    t.on_ping_result(&cs[0].id, false, 11);
    assert_eq!(bucket_ids(&t, 50), vec![cs[1].id, cs[2].id]);
}

#[test]
fn newcomers_while_pending_are_cached_and_the_cache_is_bounded() {
    let mut t = table(2); // replacement cache of 2
    let cs = in_bucket(&t, 80, 6);
    t.observe(cs[0], Heard::Pong, 1);
    t.observe(cs[1], Heard::Pong, 2);
    assert_eq!(
        t.observe(cs[2], Heard::Pong, 3),
        Observed::Pending { ping: cs[0] }
    );
    for (i, c) in cs[3..].iter().enumerate() {
        assert_eq!(t.observe(*c, Heard::Pong, 4 + i as u64), Observed::Cached);
    }
    assert_eq!(t.len(), 2);
    // Only the two most recent (4 and 5) were kept, and the candidate 2
    // joining the cache then evicts 4: dropping both entries admits 2 and 5.
    t.on_ping_result(&cs[0].id, true, 10);
    for _ in 0..3 {
        t.on_failure(&cs[1].id, 11);
        t.on_failure(&cs[0].id, 11);
    }
    assert_eq!(bucket_ids(&t, 80), vec![cs[2].id, cs[5].id]);
    assert!(!t.contains(&cs[3].id) && !t.contains(&cs[4].id));
}

#[test]
fn a_dropped_verified_entry_is_remembered_until_it_is_back() {
    let mut t = table(2);
    let cs = in_bucket(&t, 10, 2);
    t.observe(cs[0], Heard::Pong, 1);
    t.observe(cs[1], Heard::Pong, 2);
    for now in 3..6 {
        t.on_failure(&cs[0].id, now);
    }
    assert!(!t.contains(&cs[0].id));
    assert!(!t.has_addr(cs[0].addr) && t.has_addr(cs[1].addr));
    assert_eq!(t.departed(), vec![cs[0]]);
    assert_eq!(t.departed(), vec![cs[0]], "kept while away");
    t.observe(cs[0], Heard::Pong, 7);
    assert!(t.departed().is_empty(), "forgotten once back");
}

#[test]
fn departed_entries_are_bounded() {
    let mut t = table(DEPARTED_MAX + 8);
    let cs = in_bucket(&t, 30, DEPARTED_MAX + 8);
    for (now, c) in cs.iter().enumerate() {
        t.observe(*c, Heard::Pong, now as u64);
    }
    for c in &cs {
        for now in 100..103 {
            t.on_failure(&c.id, now);
        }
    }
    let departed = t.departed();
    assert_eq!(departed.len(), DEPARTED_MAX);
    assert_eq!(departed.last(), cs.last(), "the newest kept");
}

#[test]
fn max_failures_drops_the_entry_and_promotes_a_replacement() {
    let mut t = table(2);
    let cs = in_bucket(&t, 10, 5);
    t.observe(cs[0], Heard::Pong, 1);
    t.observe(cs[1], Heard::Pong, 2);
    t.observe(cs[2], Heard::Pong, 3); // pending on cs[0]
    t.observe(cs[3], Heard::Pong, 4); // cached
    t.observe(cs[4], Heard::Pong, 5); // cached, most recent
    assert!(!t.on_failure(&cs[1].id, 6));
    assert!(!t.on_failure(&cs[1].id, 7));
    assert!(t.on_failure(&cs[1].id, 8));
    assert!(!t.contains(&cs[1].id));
    assert_eq!(bucket_ids(&t, 10), vec![cs[0].id, cs[4].id]);
    // A failed request to the challenged entry counts as a failed ping.
    assert!(t.on_failure(&cs[0].id, 9));
    assert_eq!(bucket_ids(&t, 10), vec![cs[4].id, cs[2].id]);
    // No more waiting nodes: the next removal leaves a hole.
    assert!(t.remove(&cs[4].id));
    assert!(t.remove(&cs[2].id));
    assert!(t.contains(&cs[3].id));
    assert_eq!(t.len(), 1);
    assert!(!t.on_failure(&Id::random(), 10));
}

#[test]
fn closest_matches_brute_force() {
    let mut rng = StdRng::seed_from_u64(7);
    for round in 0..20 {
        let cfg = RoutingConfig {
            k: 1 + round % 5,
            ..RoutingConfig::default()
        };
        let mut t = RoutingTable::new(Id(rng.gen()), cfg, 0);
        for i in 0..300u16 {
            // Uniform ids crowd the top buckets: spread some over them all.
            let id = match i % 2 {
                0 => t.local().random_in_bucket(rng.gen_range(0..256)),
                _ => Id(rng.gen()),
            };
            if let Observed::Pending { ping } = t.observe(at(id, i), Heard::Pong, u64::from(i)) {
                t.on_ping_result(&ping.id, rng.gen::<bool>(), u64::from(i));
            }
        }
        let all: Vec<Contact> = t.entries().into_iter().map(|(_, e)| e.contact).collect();
        assert_eq!(all.len(), t.len());
        for _ in 0..50 {
            let target = match rng.gen_range(0..4) {
                0 => Id(rng.gen()),
                1 => all[rng.gen_range(0..all.len())].id,
                2 => t.local().random_in_bucket(rng.gen_range(0..256)),
                _ => t.local(),
            };
            let n = match rng.gen::<bool>() {
                true => rng.gen_range(0..10),
                false => rng.gen_range(0..all.len() + 3),
            };
            let mut want = all.clone();
            want.sort_by_key(|c| c.id.distance(&target));
            want.truncate(n);
            assert_eq!(t.closest(&target, n), want);
        }
    }
}

#[test]
fn buckets_to_refresh_respects_max_age_and_touch() {
    let mut t = table(3);
    assert!(
        t.buckets_to_refresh(1_000_000, 10).is_empty(),
        "empty table"
    );
    t.observe(at(t.local().random_in_bucket(250), 1), Heard::Pong, 100);
    t.observe(at(t.local().random_in_bucket(252), 2), Heard::Pong, 100);
    // Nearest peer is in bucket 250: only 250..=255 are candidates.
    assert!(t.buckets_to_refresh(50, 60).is_empty());
    assert_eq!(t.buckets_to_refresh(60, 60), vec![251, 253, 254, 255]);
    assert_eq!(
        t.buckets_to_refresh(160, 60),
        (250..256).collect::<Vec<_>>()
    );
    t.touch_bucket(255, 150);
    t.touch(&t.local().random_in_bucket(251), 150);
    t.touch(&t.local(), 150);
    t.touch_bucket(256, 150);
    assert_eq!(t.buckets_to_refresh(160, 60), vec![250, 252, 253, 254]);
    // A nearer peer widens the range down to its bucket.
    t.observe(at(t.local().random_in_bucket(240), 3), Heard::Pong, 200);
    assert_eq!(
        t.buckets_to_refresh(259, 60),
        (241..256).collect::<Vec<_>>()
    );
}
