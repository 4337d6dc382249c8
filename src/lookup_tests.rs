//! Unit tests of the lookup state machine (kept apart to keep `lookup.rs` to its one idea).
use super::*;
use std::net::SocketAddr;

const TARGET: Id = Id([0x5a; 32]);

/// A contact at distance `n` from `TARGET`, so tests can read order off `n`.
fn at(n: u16) -> Contact {
    let mut id = TARGET.0;
    id[30] ^= (n >> 8) as u8;
    id[31] ^= n as u8;
    Contact::new(Id(id), SocketAddr::from(([10, 0, 0, 1], n)))
}

fn ns(contacts: &[Contact]) -> Vec<u16> {
    contacts
        .iter()
        .map(|c| {
            let d = c.id.distance(&TARGET).0;
            u16::from_be_bytes([d[30], d[31]])
        })
        .collect()
}

fn lookup(kind: LookupKind, k: usize, alpha: usize, local: Option<u16>, seeds: &[u16]) -> Lookup {
    let cfg = LookupConfig {
        k,
        alpha,
        ..LookupConfig::default()
    };
    let seeds = seeds.iter().map(|&n| at(n)).collect();
    Lookup::new(TARGET, kind, cfg, local.map(at), seeds, 0)
}

fn ok(l: &mut Lookup, n: u16, closer: &[u16]) {
    l.on_success(&at(n).id, closer.iter().map(|&m| at(m)).collect());
}

#[test]
fn alpha_is_respected_and_closest_go_first() {
    let mut l = lookup(LookupKind::FindNode, 7, 3, None, &[9, 4, 1, 7, 2, 10, 3]);
    assert_eq!(l.target(), TARGET);
    assert_eq!(ns(&l.next_peers()), vec![1, 2, 3]);
    assert_eq!(l.in_flight(), 3);
    assert!(l.next_peers().is_empty(), "waiting on three answers");
    ok(&mut l, 2, &[]);
    assert_eq!(ns(&l.next_peers()), vec![4]);
    l.on_failure(&at(1).id);
    ok(&mut l, 3, &[]);
    assert_eq!(ns(&l.next_peers()), vec![7, 9]);
    assert_eq!(l.in_flight(), 3);
}

#[test]
fn finishes_once_the_k_closest_have_answered() {
    let mut l = lookup(LookupKind::FindNode, 3, 1, None, &[6, 5, 4, 3, 2, 1]);
    let mut asked = Vec::new();
    while !l.is_finished() {
        let next = l.next_peers();
        assert_eq!(next.len(), 1);
        asked.extend(ns(&next));
        ok(&mut l, asked[asked.len() - 1], &[]);
    }
    assert_eq!(asked, vec![1, 2, 3]);
    assert!(l.next_peers().is_empty());
    let r = l.result();
    assert_eq!(ns(&r.closest), vec![1, 2, 3]);
    assert_eq!((r.contacted, r.failed, r.hops), (3, 0, 1));
    assert!(r.holders.is_empty());
}

#[test]
fn closer_contacts_are_followed_and_hops_counted() {
    let mut l = lookup(LookupKind::FindNode, 2, 3, None, &[500, 400]);
    assert_eq!(ns(&l.next_peers()), vec![400, 500]);
    ok(&mut l, 400, &[300, 200, 400]);
    ok(&mut l, 500, &[300]);
    assert_eq!(ns(&l.next_peers()), vec![200, 300]);
    ok(&mut l, 300, &[1]);
    assert!(
        !l.is_finished(),
        "1 and 200 are the two closest, 1 not yet asked"
    );
    assert_eq!(ns(&l.next_peers()), vec![1]);
    // 200 (hop 2) now names 1 too: 1 keeps hop 3, the minimum seen.
    ok(&mut l, 200, &[1]);
    ok(&mut l, 1, &[]);
    assert!(l.is_finished());
    let r = l.result();
    assert_eq!(ns(&r.closest), vec![1, 200]);
    assert_eq!(r.hops, 3);
    assert_eq!(r.contacted, 5);
}

#[test]
fn failed_peers_are_skipped_and_not_revived() {
    let mut l = lookup(LookupKind::FindNode, 3, 3, None, &[1, 2, 3, 4, 5]);
    assert_eq!(ns(&l.next_peers()), vec![1, 2, 3]);
    l.on_failure(&at(1).id);
    assert_eq!(ns(&l.next_peers()), vec![4]);
    ok(&mut l, 2, &[1]);
    ok(&mut l, 3, &[]);
    ok(&mut l, 4, &[]);
    assert!(l.is_finished());
    let r = l.result();
    assert_eq!(ns(&r.closest), vec![2, 3, 4]);
    assert_eq!((r.contacted, r.failed), (4, 1));
}

#[test]
fn all_failing_ends_with_nothing() {
    let mut l = lookup(LookupKind::FindNode, 3, 3, None, &[1, 2]);
    for c in l.next_peers() {
        l.on_failure(&c.id);
    }
    assert!(l.is_finished());
    assert_eq!(l.result().closest, vec![]);
    assert_eq!(l.result().failed, 2);
}

#[test]
fn find_value_stops_at_the_first_holder() {
    let mut l = lookup(LookupKind::FindValue, 7, 3, Some(9), &[1, 2, 3, 4]);
    assert_eq!(ns(&l.next_peers()), vec![1, 2, 3]);
    l.on_value(&at(2).id);
    assert!(l.is_finished());
    assert!(l.next_peers().is_empty());
    // Late answers change nothing.
    ok(&mut l, 1, &[0]);
    l.on_value(&at(3).id);
    l.on_failure(&at(3).id);
    let r = l.result();
    assert_eq!(ns(&r.holders), vec![2]);
    assert_eq!(ns(&r.closest), vec![2, 9]);
    assert_eq!((r.hops, r.contacted, r.failed), (1, 3, 0));
    assert_eq!(l.in_flight(), 2);
}

#[test]
fn find_value_without_holder_ends_like_find_node() {
    let mut l = lookup(LookupKind::FindValue, 2, 3, None, &[3, 1, 2]);
    for c in l.next_peers() {
        l.on_success(&c.id, vec![]);
    }
    assert!(l.is_finished());
    let r = l.result();
    assert!(r.holders.is_empty());
    assert_eq!(ns(&r.closest), vec![1, 2]);
}

#[test]
fn late_duplicate_and_unknown_answers_are_ignored() {
    let mut l = lookup(LookupKind::FindNode, 2, 1, None, &[1, 2, 3]);
    assert_eq!(ns(&l.next_peers()), vec![1]);
    // Never asked: neither 2's answer nor its failure counts.
    ok(&mut l, 2, &[0]);
    l.on_failure(&at(2).id);
    l.on_value(&at(2).id);
    ok(&mut l, 77, &[0]);
    assert_eq!(l.in_flight(), 1);
    ok(&mut l, 1, &[]);
    // A second answer, or a failure after the answer, is a duplicate.
    ok(&mut l, 1, &[0]);
    l.on_failure(&at(1).id);
    assert_eq!(ns(&l.next_peers()), vec![2]);
    ok(&mut l, 2, &[]);
    assert!(l.is_finished());
    let r = l.result();
    assert_eq!(ns(&r.closest), vec![1, 2]);
    assert_eq!((r.contacted, r.failed), (2, 0));
}

fn fresh(l: &Lookup) -> usize {
    l.candidates
        .values()
        .filter(|c| c.state == State::NotContacted)
        .count()
}

#[test]
fn candidates_are_bounded_but_keep_the_closest() {
    let mut l = lookup(LookupKind::FindNode, 7, 3, None, &[5000]);
    let seed = l.next_peers();
    let flood: Vec<u16> = (1..=3000).rev().collect();
    ok(&mut l, ns(&seed)[0], &flood);
    assert_eq!(fresh(&l), 4 * 7 + 3);
    assert_eq!(l.candidates.len(), 4 * 7 + 3 + 1);
    assert_eq!(ns(&l.next_peers()), vec![1, 2, 3]);
    // A farther flood cannot push out the closest.
    ok(&mut l, 1, &(4000..4500).collect::<Vec<_>>());
    assert_eq!(fresh(&l), 4 * 7 + 3);
    let has = |l: &Lookup, n| l.candidates.contains_key(&at(n).id.distance(&TARGET));
    assert!(has(&l, 31) && has(&l, 4002) && !has(&l, 4003));
}

#[test]
fn contacted_peers_are_never_pruned() {
    // k = 1, alpha = 1: at most 5 fresh candidates.
    let mut l = lookup(LookupKind::FindNode, 1, 1, None, &[1000]);
    for n in (1..=10).rev() {
        let next = l.next_peers();
        ok(&mut l, ns(&next)[0], &[n * 10, n * 10 + 1, n * 10 + 2]);
    }
    let asked = l
        .candidates
        .values()
        .filter(|c| c.state == State::Succeeded);
    assert_eq!(asked.count(), 10);
    assert_eq!(fresh(&l), 5);
    assert_eq!(ns(&l.next_peers()), vec![10]);
}

#[test]
fn local_counts_as_answered_and_is_never_asked() {
    let mut l = lookup(LookupKind::FindNode, 3, 3, Some(2), &[2, 1, 3, 4]);
    assert_eq!(ns(&l.next_peers()), vec![1, 3]);
    ok(&mut l, 1, &[2, 2, 1, 5]);
    ok(&mut l, 3, &[2]);
    assert!(l.is_finished());
    let r = l.result();
    assert_eq!(ns(&r.closest), vec![1, 2, 3]);
    assert_eq!((r.hops, r.contacted), (1, 2));
}

#[test]
fn nothing_to_ask_finishes_at_once() {
    let mut l = lookup(LookupKind::FindNode, 7, 3, Some(4), &[]);
    assert!(l.is_finished());
    assert!(l.next_peers().is_empty());
    let r = l.result();
    assert_eq!(ns(&r.closest), vec![4]);
    assert_eq!((r.hops, r.contacted), (0, 0));

    let l = lookup(LookupKind::FindValue, 0, 0, None, &[]);
    assert!(l.is_finished());
    assert_eq!(l.result(), LookupResult::default());
}

#[test]
fn zero_sizes_are_taken_as_one() {
    let mut l = lookup(LookupKind::FindNode, 0, 0, None, &[2, 1]);
    assert_eq!(ns(&l.next_peers()), vec![1]);
    ok(&mut l, 1, &[]);
    assert!(l.is_finished());
    assert_eq!(ns(&l.result().closest), vec![1]);
}

/// A contact at distance `n` that claims the address of `at(port)`.
fn sybil(n: u16, port: u16) -> Contact {
    Contact::new(at(n).id, at(port).addr)
}

#[test]
fn one_address_holds_one_candidate() {
    let mut l = lookup(LookupKind::FindNode, 7, 3, None, &[500, 400]);
    assert_eq!(ns(&l.next_peers()), vec![400, 500]);
    // 500 names seven made-up ids at its own address, closer than anyone.
    let fakes: Vec<Contact> = (1..=7).map(|n| sybil(n, 500)).collect();
    l.on_success(&at(500).id, fakes);
    // ...and an honest peer names one of them, and a real node.
    l.on_success(&at(400).id, vec![sybil(2, 500), at(300)]);
    // Only 300 is new: every fake shares 500's address.
    assert_eq!(ns(&l.next_peers()), vec![300]);
    ok(&mut l, 300, &[]);
    assert!(l.is_finished());
    let r = l.result();
    assert_eq!(ns(&r.closest), vec![300, 400, 500]);
    assert_eq!(r.address_conflicts, 8);
    // The same id named at a second address is still one vote.
    let mut l = lookup(LookupKind::FindNode, 7, 3, None, &[9]);
    l.next_peers();
    ok(&mut l, 9, &[8]);
    assert_eq!(ns(&l.next_peers()), vec![8]);
    l.on_success(&at(8).id, vec![Contact::new(at(9).id, at(77).addr)]);
    assert!(l.next_peers().is_empty());
    assert_eq!(l.result().address_conflicts, 1);
}

#[test]
fn our_own_address_is_not_handed_to_another_id() {
    let mut l = lookup(LookupKind::FindNode, 3, 3, Some(50), &[60]);
    l.next_peers();
    l.on_success(&at(60).id, vec![sybil(1, 50)]);
    assert!(l.is_finished());
    assert_eq!(ns(&l.result().closest), vec![50, 60]);
}

#[test]
fn slow_peers_free_their_slot_and_do_not_hold_up_the_end() {
    let mut l = lookup(LookupKind::FindNode, 2, 1, None, &[1, 2, 3]);
    assert_eq!(ns(&l.next_peers()), vec![1]);
    assert!(l.next_peers().is_empty());
    l.on_slow(&at(1).id);
    assert_eq!((l.in_flight(), l.slow()), (0, 1));
    // The slot went to the next peer.
    assert_eq!(ns(&l.next_peers()), vec![2]);
    ok(&mut l, 2, &[]);
    assert_eq!(ns(&l.next_peers()), vec![3]);
    ok(&mut l, 3, &[]);
    // 2 and 3 fill k=2: the slow 1 is not waited for.
    assert!(l.is_finished());
    assert_eq!(ns(&l.result().closest), vec![2, 3]);
}

#[test]
fn a_wide_lookup_short_of_its_width_does_not_wait_for_a_slow_peer_past_enough() {
    // A region's lookup: 6 wanted, 3 live nodes and one gone quiet. With
    // `wait_slow_below` 2, the 3 answers are enough and the slow one is
    // not waited for; without it, the lookup waits out its timeout.
    let wide = |wait_slow_below| {
        let cfg = LookupConfig {
            k: 6,
            alpha: 4,
            wait_slow_below,
            ..LookupConfig::default()
        };
        let mut l = Lookup::new(
            TARGET,
            LookupKind::FindNode,
            cfg,
            None,
            vec![at(1), at(2), at(3), at(4)],
            0,
        );
        assert_eq!(ns(&l.next_peers()), vec![1, 2, 3, 4]);
        l.on_slow(&at(1).id);
        for n in 2..=4 {
            ok(&mut l, n, &[]);
        }
        l
    };
    let l = wide(2);
    assert!(l.is_finished(), "3 answers of at least 2: done");
    assert_eq!(ns(&l.result().closest), vec![2, 3, 4]);
    assert!(!wide(0).is_finished(), "0 is k: short of 6, it waits");
}

#[test]
fn a_slow_peer_is_waited_for_when_the_result_would_be_short_and_may_answer_late() {
    let mut l = lookup(LookupKind::FindNode, 3, 3, None, &[1, 2]);
    assert_eq!(ns(&l.next_peers()), vec![1, 2]);
    l.on_slow(&at(1).id);
    ok(&mut l, 2, &[]);
    assert!(
        !l.is_finished(),
        "only one answer of k=3: wait for the slow one"
    );
    // Its late answer counts, and may name more.
    ok(&mut l, 1, &[5]);
    assert_eq!(l.slow(), 0);
    assert_eq!(ns(&l.next_peers()), vec![5]);
    l.on_slow(&at(5).id);
    l.on_failure(&at(5).id);
    assert!(l.is_finished());
    assert_eq!(ns(&l.result().closest), vec![1, 2]);
    assert_eq!(l.result().failed, 1);
}

#[test]
fn the_request_cap_ends_an_endless_lookup() {
    let cfg = LookupConfig {
        k: 3,
        alpha: 3,
        max_requests: 10,
        deadline_ms: 1_000_000,
        ..LookupConfig::default()
    };
    let mut l = Lookup::new(TARGET, LookupKind::FindNode, cfg, None, vec![at(60_000)], 0);
    // A liar answers every request with three fresh, ever closer ids.
    let mut next = 59_999u16;
    let mut sent = 0;
    while !l.is_finished() {
        let peers = l.next_peers();
        assert!(!peers.is_empty() || l.is_finished());
        for p in peers {
            sent += 1;
            let closer: Vec<Contact> = (0..3).map(|i| at(next - i)).collect();
            next -= 3;
            l.on_success(&p.id, closer);
        }
    }
    assert_eq!(sent, 10);
    let r = l.result();
    assert_eq!(r.bound, Some(Bound::Requests));
    assert_eq!((r.contacted, r.closest.len()), (10, 3));
}

#[test]
fn the_deadline_ends_a_lookup_with_the_best_it_has() {
    let cfg = LookupConfig {
        k: 3,
        alpha: 1,
        max_requests: 100,
        deadline_ms: 5_000,
        ..LookupConfig::default()
    };
    let mut l = Lookup::new(
        TARGET,
        LookupKind::FindNode,
        cfg,
        None,
        vec![at(9), at(8)],
        1_000,
    );
    assert_eq!(l.deadline(), 6_000);
    assert_eq!(ns(&l.next_peers()), vec![8]);
    ok(&mut l, 8, &[]);
    l.next_peers();
    assert!(!l.tick(5_999));
    assert!(l.tick(6_000));
    assert!(l.is_finished());
    assert!(!l.tick(7_000), "ends once");
    let r = l.result();
    assert_eq!(r.bound, Some(Bound::Deadline));
    assert_eq!(ns(&r.closest), vec![8]);
    // Late answers change nothing.
    ok(&mut l, 9, &[1]);
    assert_eq!(ns(&l.result().closest), vec![8]);
    // An honest lookup ends on its own with no bound.
    let mut l = lookup(LookupKind::FindNode, 1, 1, None, &[1]);
    l.next_peers();
    ok(&mut l, 1, &[]);
    assert_eq!(l.result().bound, None);
}

/// A contact at distance `n` from `TARGET` on public IP `ip`.
fn on(n: u16, ip: [u8; 4]) -> Contact {
    Contact::new(at(n).id, SocketAddr::from((ip, 7400)))
}

#[test]
fn a_crowded_prefix_takes_one_place_while_others_are_near() {
    // The four closest share 8.8.8.0/24; three more, farther, do not.
    let crowd = (1..=4).map(|n| on(n, [8, 8, 8, n as u8]));
    let others = [
        on(10, [9, 9, 9, 1]),
        on(11, [7, 7, 7, 1]),
        on(12, [6, 6, 6, 1]),
    ];
    let seeds: Vec<Contact> = crowd.chain(others).collect();
    let cfg = |per_prefix| LookupConfig {
        k: 4,
        alpha: 8,
        spread: crate::spread::Spread {
            per_prefix,
            apply_to_local: false,
        },
        ..LookupConfig::default()
    };
    let run = |per_prefix| {
        let mut l = Lookup::new(
            TARGET,
            LookupKind::FindNode,
            cfg(per_prefix),
            None,
            seeds.clone(),
            0,
        );
        let asked = l.next_peers();
        for p in &asked {
            l.on_success(&p.id, Vec::new());
        }
        assert!(l.is_finished());
        (ns(&asked), ns(&l.result().closest))
    };
    // Spread: the crowd's closest, then the three other prefixes; the rest
    // of the crowd is never asked.
    assert_eq!(run(1), (vec![1, 10, 11, 12], vec![1, 10, 11, 12]));
    // Off: plain XOR order, the crowd fills the result.
    assert_eq!(run(0), (vec![1, 2, 3, 4], vec![1, 2, 3, 4]));
}

#[test]
fn short_of_prefixes_the_next_of_each_fill_the_result() {
    let seeds = vec![
        on(1, [8, 8, 8, 1]),
        on(2, [8, 8, 8, 2]),
        on(3, [8, 8, 8, 3]),
        on(4, [9, 9, 9, 1]),
        on(5, [9, 9, 9, 2]),
    ];
    let cfg = LookupConfig {
        k: 4,
        alpha: 8,
        spread: crate::spread::Spread {
            per_prefix: 1,
            apply_to_local: false,
        },
        ..LookupConfig::default()
    };
    let mut l = Lookup::new(TARGET, LookupKind::FindNode, cfg, None, seeds, 0);
    for p in l.next_peers() {
        l.on_success(&p.id, Vec::new());
    }
    // Two prefixes: each one's first, then each one's second.
    assert_eq!(ns(&l.result().closest), [1, 2, 4, 5]);
}
