//! The routing table proper: one bucket per bit of distance from our own id.

use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::contact::Contact;
use crate::id::{Distance, Id, ID_BITS, ID_LEN};

use super::bucket::{Bucket, Entry, Observed};
use super::RoutingConfig;

/// Known nodes, grouped by their distance from `local`.
#[derive(Clone, Debug)]
pub struct RoutingTable {
    local: Id,
    cfg: RoutingConfig,
    /// Indexed by `local.bucket_index(id)`.
    buckets: Vec<Bucket>,
    /// Entries that became verified, oldest first, until taken (handoff
    /// reads them); the oldest are dropped past [`NEWCOMERS_MAX`].
    newcomers: VecDeque<Contact>,
    /// Verified entries dropped for failing requests, newest last: asked
    /// again now and then, so that a network split in two finds itself
    /// again once the link between the halves is back (each half dropped
    /// the other, and nothing else would bring them back).
    departed: VecDeque<Contact>,
}

/// Newly verified entries kept until taken.
pub const NEWCOMERS_MAX: usize = 256;

/// Dropped entries remembered to be asked again.
pub const DEPARTED_MAX: usize = 64;

impl RoutingTable {
    /// An empty table for node `local`; a `k` of 0 is taken as 1 so buckets can hold anyone.
    pub fn new(local: Id, cfg: RoutingConfig, now: u64) -> Self {
        let k = cfg.k.max(1);
        let cfg = RoutingConfig { k, ..cfg };
        RoutingTable {
            local,
            cfg,
            buckets: (0..ID_BITS).map(|_| Bucket::new(now)).collect(),
            newcomers: VecDeque::new(),
            departed: VecDeque::new(),
        }
    }

    /// Our own id.
    pub fn local(&self) -> Id {
        self.local
    }

    /// A node was heard from, `how` saying what that proves.
    ///
    /// One address, one vote: the table holds at most one node per address
    /// (waiting nodes included). A known id at a new address, or a new id at
    /// a known address, changes nothing ([`Observed::Conflict`]) unless `how`
    /// is [`Heard::Pong`] (a ping of ours to that address returned that id)
    /// and the old binding has failed a request since it last answered; a
    /// waiting node's binding is not trusted yet and simply gives way.
    /// Newcomers must fit the per-IP and per-prefix limits.
    pub fn observe(&mut self, contact: Contact, how: Heard, now: u64) -> Observed {
        let was = self.is_verified(&contact.id);
        let observed = self.observe_inner(contact, how, now);
        self.note_if_newly_verified(&contact.id, was);
        observed
    }

    fn observe_inner(&mut self, contact: Contact, how: Heard, now: u64) -> Observed {
        let Some(index) = self.local.bucket_index(&contact.id) else {
            return Observed::Ignored;
        };
        let pong = how == Heard::Pong;
        if let Some(holder) = self.holder_of(contact.addr) {
            if holder.contact.id != contact.id {
                if holder.is_entry && !(pong && holder.failures > 0) {
                    return Observed::Conflict {
                        known: holder.contact,
                    };
                }
                self.remove(&holder.contact.id);
            }
        }
        if let Some(known) = self.binding_of(&contact.id) {
            if known.contact.addr != contact.addr {
                if known.is_entry && !(pong && known.failures > 0) {
                    return Observed::Conflict {
                        known: known.contact,
                    };
                }
                self.remove(&contact.id);
            }
        }
        let bucket = &self.buckets[index];
        let present = bucket.get(&contact.id).is_some()
            || bucket.waiting().any(|e| e.contact.id == contact.id);
        if !present {
            let limits = &self.cfg.ip_limits;
            let in_bucket = bucket.entries().iter().map(|e| e.contact.addr);
            let in_table = self
                .buckets
                .iter()
                .flat_map(|b| b.entries().iter().map(|e| e.contact.addr));
            if limits.check(contact.addr, in_bucket, in_table).is_err() {
                return Observed::Rejected;
            }
        }
        self.buckets[index].observe(contact, now, pong, &self.cfg)
    }

    /// A check of an unverified `id` ended: a pong with its id makes it
    /// verified; no pong (or another id) removes it, since it never proved
    /// the id it claimed. A verified entry only counts a failure.
    pub fn on_check_result(&mut self, id: &Id, ok: bool, now: u64) {
        if ok {
            self.on_ping_result(id, true, now);
        } else if self.get(id).is_some_and(|e| e.verified) {
            self.on_failure(id, now);
        } else {
            self.remove(id);
        }
    }

    /// Entries not yet verified, least recently seen first, up to `n`.
    pub fn unverified(&self, n: usize) -> Vec<Contact> {
        let mut found: Vec<&Entry> = self
            .buckets
            .iter()
            .flat_map(|b| b.entries().iter())
            .filter(|e| !e.verified)
            .collect();
        found.sort_by_key(|e| e.last_seen);
        found.into_iter().take(n).map(|e| e.contact).collect()
    }

    /// Whoever holds `addr` in the table, waiting nodes included.
    fn holder_of(&self, addr: SocketAddr) -> Option<Binding> {
        self.buckets.iter().find_map(|b| {
            let entry = b.entries().iter().find(|e| e.contact.addr == addr);
            let found = entry.map(|e| Binding::of(e, true));
            found.or_else(|| {
                b.waiting()
                    .find(|e| e.contact.addr == addr)
                    .map(|e| Binding::of(e, false))
            })
        })
    }

    /// Where `id` is bound, waiting nodes included.
    fn binding_of(&self, id: &Id) -> Option<Binding> {
        let bucket = self.bucket(id)?;
        if let Some(e) = bucket.get(id) {
            return Some(Binding::of(e, true));
        }
        bucket
            .waiting()
            .find(|e| e.contact.id == *id)
            .map(|e| Binding::of(e, false))
    }

    /// Settles the eviction challenge to `id` after [`Observed::Pending`]; if
    /// there is none, a live answer still refreshes `id` and a dead one is ignored.
    pub fn on_ping_result(&mut self, id: &Id, alive: bool, now: u64) {
        let was = self.is_verified(id);
        let cfg = &self.cfg;
        if let Some(bucket) = bucket_of(&mut self.buckets, &self.local, id) {
            bucket.on_ping_result(id, alive, now, cfg);
        }
        self.note_if_newly_verified(id, was);
    }

    /// Entries that became verified since the last call, oldest first (at
    /// most [`NEWCOMERS_MAX`]): nodes that may now be among the closest of
    /// keys we hold.
    pub fn take_newcomers(&mut self) -> Vec<Contact> {
        self.newcomers.drain(..).collect()
    }

    fn is_verified(&self, id: &Id) -> bool {
        self.get(id).is_some_and(|e| e.verified)
    }

    fn note_if_newly_verified(&mut self, id: &Id, was: bool) {
        if was {
            return;
        }
        if let Some(entry) = self.get(id).filter(|e| e.verified) {
            let contact = entry.contact;
            if self.newcomers.len() >= NEWCOMERS_MAX {
                self.newcomers.pop_front();
            }
            self.newcomers.push_back(contact);
        }
    }

    /// A request to `id` failed or timed out; true if that dropped it from the table.
    /// The time goes unused, as a failure says nothing about when `id` was last alive.
    pub fn on_failure(&mut self, id: &Id, _now: u64) -> bool {
        let verified = self.get(id).filter(|e| e.verified).map(|e| e.contact);
        let cfg = &self.cfg;
        let dropped = bucket_of(&mut self.buckets, &self.local, id)
            .is_some_and(|bucket| bucket.on_failure(id, cfg));
        if let Some(contact) = verified.filter(|_| dropped) {
            self.departed.retain(|c| c.addr != contact.addr);
            if self.departed.len() >= DEPARTED_MAX {
                self.departed.pop_front();
            }
            self.departed.push_back(contact);
        }
        dropped
    }

    /// Dropped entries (see [`DEPARTED_MAX`]) not back in the table, to ask
    /// again; those back are forgotten.
    pub fn departed(&mut self) -> Vec<Contact> {
        let back: Vec<SocketAddr> = self
            .departed
            .iter()
            .filter(|c| self.get(&c.id).is_some_and(|e| e.contact.addr == c.addr))
            .map(|c| c.addr)
            .collect();
        self.departed.retain(|c| !back.contains(&c.addr));
        self.departed.iter().copied().collect()
    }

    /// Whether some entry (waiting nodes aside) is at `addr`.
    pub fn has_addr(&self, addr: SocketAddr) -> bool {
        self.buckets
            .iter()
            .any(|b| b.entries().iter().any(|e| e.contact.addr == addr))
    }

    /// Forgets `id` (waiting nodes included); true if it was in the table.
    pub fn remove(&mut self, id: &Id) -> bool {
        let cfg = &self.cfg;
        bucket_of(&mut self.buckets, &self.local, id).is_some_and(|bucket| bucket.remove(id, cfg))
    }

    /// Up to `n` entries closest to `target` by XOR distance, closest first.
    pub fn closest(&self, target: &Id, n: usize) -> Vec<Contact> {
        self.closest_where(target, n, |_| true)
    }

    /// Up to `n` entries fit to hand out to others, closest to `target` first:
    /// verified, and whose last request did not fail (a dead peer in an
    /// answer costs the asker a timeout).
    pub fn closest_good(&self, target: &Id, n: usize) -> Vec<Contact> {
        self.closest_where(target, n, |e| e.verified && e.failures == 0)
    }

    /// Up to `n` entries passing `keep`, closest to `target` first.
    pub fn closest_where(
        &self,
        target: &Id,
        n: usize,
        keep: impl Fn(&Entry) -> bool,
    ) -> Vec<Contact> {
        let mut found: Vec<(Distance, Contact)> = Vec::new();
        // Buckets come nearest first and never overlap in distance, so once
        // n entries are in hand no later bucket can hold a closer one.
        for i in buckets_by_distance(&self.local, target) {
            if found.len() >= n {
                break;
            }
            let entries = self.buckets[i].entries().iter().filter(|e| keep(e));
            found.extend(entries.map(|e| (e.contact.id.distance(target), e.contact)));
        }
        found.sort_unstable_by_key(|(d, _)| *d);
        found.truncate(n);
        found.into_iter().map(|(_, c)| c).collect()
    }

    /// Whether `id` is an entry (waiting nodes do not count).
    pub fn contains(&self, id: &Id) -> bool {
        self.get(id).is_some()
    }

    /// The entry for `id`, if any.
    pub fn get(&self, id: &Id) -> Option<&Entry> {
        self.bucket(id).and_then(|b| b.get(id))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.entries().len()).sum()
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.buckets.iter().all(|b| b.entries().is_empty())
    }

    /// Every entry with its bucket index, by bucket then least recently seen first.
    pub fn entries(&self) -> Vec<(usize, Entry)> {
        self.buckets
            .iter()
            .enumerate()
            .flat_map(|(i, b)| b.entries().iter().map(move |e| (i, e.clone())))
            .collect()
    }

    /// Buckets not touched for at least `max_age` ms, from the bucket of our
    /// nearest known peer up to 255.
    ///
    /// Buckets below the nearest peer's cover ranges so small (half the
    /// keyspace each step down) that they are almost surely empty; refreshing
    /// them would cost a lookup each for nothing. Empty buckets above it are
    /// still refreshed, since a lookup there may find peers. An empty table
    /// has nothing to refresh: that is the bootstrap's job.
    pub fn buckets_to_refresh(&self, now: u64, max_age: u64) -> Vec<usize> {
        let Some(nearest) = self.buckets.iter().position(|b| !b.entries().is_empty()) else {
            return Vec::new();
        };
        (nearest..ID_BITS)
            .filter(|&i| now.saturating_sub(self.buckets[i].last_touched()) >= max_age)
            .collect()
    }

    /// Records a lookup in bucket `index`'s range; out-of-range indices are ignored.
    pub fn touch_bucket(&mut self, index: usize, now: u64) {
        if let Some(bucket) = self.buckets.get_mut(index) {
            bucket.touch(now);
        }
    }

    /// Records a lookup for `target`; our own id falls in no bucket and touches none.
    pub fn touch(&mut self, target: &Id, now: u64) {
        if let Some(bucket) = bucket_of(&mut self.buckets, &self.local, target) {
            bucket.touch(now);
        }
    }

    fn bucket(&self, id: &Id) -> Option<&Bucket> {
        self.local
            .bucket_index(id)
            .and_then(|i| self.buckets.get(i))
    }
}

/// What the table knows of a binding of an id to an address.
struct Binding {
    contact: Contact,
    /// An entry proper (not a node waiting for a slot).
    is_entry: bool,
    failures: u32,
}

impl Binding {
    fn of(e: &Entry, is_entry: bool) -> Binding {
        Binding {
            contact: e.contact,
            is_entry,
            failures: e.failures,
        }
    }
}

/// How a node was heard from, which decides what it proves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heard {
    /// It sent us a request (its claimed id is unproven).
    Request,
    /// It answered a request of ours at this address (alive, id unproven:
    /// only a ping's answer carries the responder's id).
    Answer,
    /// A ping of ours to this address returned this id.
    Pong,
}

/// Bucket indices ordered by the distance of their contents from `target`.
///
/// With `d = local ^ target` and `b` its top bit (the target's own bucket),
/// an entry of bucket `i` is at distance `d ^ x`, where `x < 2^(i+1)` has bit
/// `i` set. So bucket `b` is nearest (below `2^b`); then the buckets under
/// `b` where `d` has a 1 (that bit cancels), highest first; then those where
/// `d` has a 0, lowest first; then the buckets above `b`, lowest first.
fn buckets_by_distance(local: &Id, target: &Id) -> impl Iterator<Item = usize> {
    let d = local.distance(target);
    let bit = move |i: usize| (d.0[ID_LEN - 1 - i / 8] >> (i % 8)) & 1 == 1;
    let top = local.bucket_index(target);
    let below = top.unwrap_or(ID_BITS);
    let above = top.map_or(ID_BITS, |b| b + 1);
    top.into_iter()
        .chain((0..below).rev().filter(move |&i| bit(i)))
        .chain((0..below).filter(move |&i| !bit(i)))
        .chain(above..ID_BITS)
}

/// The bucket `id` falls in; a free function so the caller can still borrow the config.
fn bucket_of<'a>(buckets: &'a mut [Bucket], local: &Id, id: &Id) -> Option<&'a mut Bucket> {
    local.bucket_index(id).and_then(|i| buckets.get_mut(i))
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
