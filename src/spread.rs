//! Spreading a lookup's closest nodes over network prefixes. Of the nodes
//! near a key, at most `per_prefix` of one /24 (IPv6 /64) come before any
//! node of a prefix not yet among them: a host holding a whole /24 near a
//! key gets one place of K, not K (as Storj picks one node per /24 for a
//! piece). Where fewer prefixes than K are near, the next of each prefix
//! fill the rest, closest first, so a small network still gets K.
//!
//! Each node's tier is how many closer nodes share its prefix, divided by
//! `per_prefix`; the K chosen are the lowest tiers, closest first within a
//! tier. With no two nodes of one prefix near the key (the common case on
//! the Internet) that is plain XOR order. Addresses where one IP is many
//! nodes (loopback, private) count only when `apply_to_local`, as the
//! routing table's per-prefix limits do. Pure: no I/O.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::addr::{is_local, prefix, Prefix};
use crate::contact::Contact;
use crate::id::Id;

/// The rule: how many of one prefix per tier (0: off, plain XOR order),
/// and whether local addresses count by prefix.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Spread {
    pub per_prefix: usize,
    pub apply_to_local: bool,
}

impl Spread {
    /// Plain XOR order.
    pub const OFF: Spread = Spread {
        per_prefix: 0,
        apply_to_local: false,
    };

    /// The prefix `addr` counts under, if any.
    fn group(&self, addr: SocketAddr) -> Option<Prefix> {
        if self.per_prefix == 0 || (!self.apply_to_local && is_local(addr.ip())) {
            return None;
        }
        Some(prefix(addr.ip()))
    }

    /// The tier of each of `addrs`, given closest first.
    fn tiers(&self, addrs: &[SocketAddr]) -> Vec<usize> {
        let mut seen: HashMap<Prefix, usize> = HashMap::new();
        addrs
            .iter()
            .map(|a| match self.group(*a) {
                None => 0,
                Some(p) => {
                    let before = seen.entry(p).or_insert(0);
                    *before += 1;
                    (*before - 1) / self.per_prefix
                }
            })
            .collect()
    }

    /// The positions in `addrs` (given closest first) in the order the rule
    /// ranks them: by tier, then closest first.
    pub fn rank(&self, addrs: &[SocketAddr]) -> Vec<usize> {
        let tiers = self.tiers(addrs);
        let mut order: Vec<usize> = (0..addrs.len()).collect();
        order.sort_by_key(|&i| (tiers[i], i));
        order
    }

    /// The positions of the `k` of `addrs` (closest first) the rule picks,
    /// in their own order (closest first).
    pub fn pick(&self, addrs: &[SocketAddr], k: usize) -> Vec<usize> {
        let mut picked = self.rank(addrs);
        picked.truncate(k);
        picked.sort_unstable();
        picked
    }

    /// `nodes` ranked for `key`: by tier, then closest first.
    pub fn ranked(&self, key: &Id, nodes: &[Contact]) -> Vec<Contact> {
        let mut sorted = nodes.to_vec();
        sorted.sort_by_key(|c| key.distance(&c.id));
        let addrs: Vec<SocketAddr> = sorted.iter().map(|c| c.addr).collect();
        self.rank(&addrs).into_iter().map(|i| sorted[i]).collect()
    }

    /// The `k` of `nodes` a lookup for `key` would return, closest first.
    pub fn closest_of(&self, key: &Id, nodes: &[Contact], k: usize) -> Vec<Contact> {
        let mut picked = self.ranked(key, nodes);
        picked.truncate(k);
        picked.sort_by_key(|c| key.distance(&c.id));
        picked
    }

    /// Whether `me` is among the `k` of `known` and `me` the rule picks for
    /// `key`.
    pub fn picks(&self, key: &Id, known: &[Contact], me: Contact, k: usize) -> bool {
        let mut all: Vec<Contact> = known.iter().filter(|c| c.id != me.id).copied().collect();
        all.push(me);
        self.ranked(key, &all).iter().take(k).any(|c| c.id == me.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ip: &str, port: u16) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), port)
    }

    const ON: Spread = Spread {
        per_prefix: 1,
        apply_to_local: false,
    };

    #[test]
    fn one_prefix_near_a_key_takes_one_place_while_others_are_near() {
        // Closest first: four of one /24, then three others.
        let addrs = [
            at("8.8.8.1", 1),
            at("8.8.8.2", 1),
            at("8.8.8.3", 1),
            at("8.8.8.4", 1),
            at("9.9.9.1", 1),
            at("7.7.7.1", 1),
            at("6.6.6.1", 1),
        ];
        assert_eq!(ON.pick(&addrs, 4), [0, 4, 5, 6]);
        // Short of prefixes, the next of each fill the rest, closest first.
        assert_eq!(ON.pick(&addrs, 6), [0, 1, 2, 4, 5, 6]);
        assert_eq!(ON.rank(&addrs), [0, 4, 5, 6, 1, 2, 3]);
        // Off, and two per prefix.
        assert_eq!(Spread::OFF.pick(&addrs, 4), [0, 1, 2, 3]);
        let two = Spread {
            per_prefix: 2,
            ..ON
        };
        assert_eq!(two.pick(&addrs, 4), [0, 1, 4, 5]);
    }

    #[test]
    fn local_addresses_count_only_when_asked() {
        let addrs = [at("10.0.1.2", 1), at("10.0.1.3", 1), at("10.0.2.2", 1)];
        assert_eq!(ON.pick(&addrs, 2), [0, 1]);
        let local = Spread {
            apply_to_local: true,
            ..ON
        };
        assert_eq!(local.pick(&addrs, 2), [0, 2]);
        // IPv6 counts by /64; a mapped IPv4 address as its IPv4 self.
        let v6 = [
            at("2001:db8:0:1::1", 1),
            at("2001:db8:0:1::2", 1),
            at("2001:db8:0:2::1", 1),
            at("::ffff:8.8.8.1", 1),
            at("8.8.8.9", 1),
        ];
        assert_eq!(ON.rank(&v6), [0, 2, 3, 1, 4]);
    }

    #[test]
    fn picks_and_closest_of_follow_the_rank() {
        let key = Id::of_block(b"key");
        // Ids ordered by their distance to the key: made, then sorted.
        let mut ids: Vec<Id> = (0..5u8).map(|i| Id::of_block(&[i])).collect();
        ids.sort_by_key(|id| key.distance(id));
        let nodes: Vec<Contact> = ids
            .iter()
            .zip(["8.8.8.1", "8.8.8.2", "8.8.8.3", "9.9.9.1", "7.7.7.1"])
            .map(|(id, ip)| Contact::new(*id, at(ip, 1)))
            .collect();
        let picked: Vec<Id> = ON
            .closest_of(&key, &nodes, 3)
            .iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(picked, [ids[0], ids[3], ids[4]]);
        // The second of the crowded /24 is not picked among 3; a node of a
        // fresh prefix, farther than all, is.
        assert!(!ON.picks(&key, &nodes, nodes[1], 3));
        assert!(ON.picks(&key, &nodes, nodes[4], 3));
        assert!(Spread::OFF.picks(&key, &nodes, nodes[1], 3));
        assert!(!Spread::OFF.picks(&key, &nodes, nodes[4], 3));
    }
}
