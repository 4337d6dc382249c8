//! One k-bucket: the entries of one distance range, plus the nodes waiting for
//! a slot in it.
//!
//! Entries are ordered by when they were last heard from or admitted, the
//! front being the least recently seen and so the first to be challenged
//! when a newcomer wants in: long-lived nodes tend to stay alive, so a live
//! old entry is never evicted for a new one.

use crate::contact::Contact;
use crate::id::Id;

use super::RoutingConfig;

/// A node in the routing table, with what we know of its liveness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The node and the address it last spoke from.
    pub contact: Contact,
    /// When we last heard from it (ms).
    pub last_seen: u64,
    /// Requests to it that failed since it last answered.
    pub failures: u32,
    /// Whether a ping of ours to `contact.addr` returned `contact.id`: only
    /// then is it handed out to others (BEP 5's good node; until then it is
    /// questionable, since anyone can claim any id).
    pub verified: bool,
}

/// What [`RoutingTable::observe`](super::RoutingTable::observe) did with a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    /// Already present: now most recently seen, failures cleared, address updated.
    Updated,
    /// Added to a bucket that had room.
    Inserted,
    /// Bucket full: ping `ping` and report through `on_ping_result`; the newcomer waits.
    Pending {
        /// The bucket's least recently seen entry, which must prove it is alive.
        ping: Contact,
    },
    /// Bucket full and already challenging an entry: the newcomer went to the
    /// replacement cache (or, if it was the waiting candidate, stays so).
    Cached,
    /// Our own id, which never goes in the table.
    Ignored,
    /// Another node holds this id at another address, or this address with
    /// another id: nothing changed. One address gets one vote; a ping of ours
    /// to the new address that returns the id, once the old binding has
    /// failed, is what may move it.
    Conflict {
        /// The binding the table keeps.
        known: Contact,
    },
    /// Over the table's per-IP or per-prefix limit for public addresses.
    Rejected,
}

/// A newcomer waiting on the outcome of a ping to the bucket's oldest entry.
#[derive(Clone, Debug)]
struct PendingEviction {
    candidate: Entry,
    challenged: Id,
}

/// One distance range of the routing table.
#[derive(Clone, Debug)]
pub(super) struct Bucket {
    entries: Vec<Entry>,
    /// Most recent last, so the oldest is the one dropped when full.
    replacements: Vec<Entry>,
    pending: Option<PendingEviction>,
    last_touched: u64,
}

impl Bucket {
    /// An empty bucket, counted as touched at `now` so it is not refreshed at once.
    pub(super) fn new(now: u64) -> Bucket {
        Bucket {
            entries: Vec::new(),
            replacements: Vec::new(),
            pending: None,
            last_touched: now,
        }
    }

    /// Entries, least recently seen first.
    pub(super) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry for `id`, if it is in the bucket proper.
    pub(super) fn get(&self, id: &Id) -> Option<&Entry> {
        self.entries.iter().find(|e| e.contact.id == *id)
    }

    /// Nodes waiting for a slot: the eviction candidate and the replacement cache.
    pub(super) fn waiting(&self) -> impl Iterator<Item = &Entry> {
        self.pending
            .iter()
            .map(|p| &p.candidate)
            .chain(self.replacements.iter())
    }

    /// When a lookup or a node last showed activity in this range.
    pub(super) fn last_touched(&self) -> u64 {
        self.last_touched
    }

    /// Records activity in this range, postponing its refresh.
    pub(super) fn touch(&mut self, now: u64) {
        self.last_touched = now;
    }

    /// A node in this range was heard from.
    pub(super) fn observe(
        &mut self,
        contact: Contact,
        now: u64,
        verified: bool,
        cfg: &RoutingConfig,
    ) -> Observed {
        self.last_touched = now;
        let id = contact.id;
        if let Some(entry) = self.refresh(&id, now) {
            entry.contact = contact;
            entry.verified |= verified;
            // Hearing from the challenged entry answers the challenge.
            if self.challenged() == Some(id) {
                self.resolve(&id, true, now, cfg);
            }
            return Observed::Updated;
        }
        if let Some(p) = self
            .pending
            .as_mut()
            .filter(|p| p.candidate.contact.id == id)
        {
            p.candidate.contact = contact;
            p.candidate.last_seen = now;
            p.candidate.verified |= verified;
            return Observed::Cached;
        }
        let was_verified = self
            .replacements
            .iter()
            .any(|e| e.contact.id == id && e.verified);
        self.replacements.retain(|e| e.contact.id != id);
        let entry = Entry {
            contact,
            last_seen: now,
            failures: 0,
            verified: verified || was_verified,
        };
        if self.entries.len() < cfg.k {
            self.entries.push(entry);
            return Observed::Inserted;
        }
        if self.pending.is_none() {
            if let Some(oldest) = self.entries.first() {
                let ping = oldest.contact;
                self.pending = Some(PendingEviction {
                    candidate: entry,
                    challenged: ping.id,
                });
                return Observed::Pending { ping };
            }
        }
        self.cache(entry, cfg);
        Observed::Cached
    }

    /// The outcome of the ping asked for by [`Observed::Pending`].
    pub(super) fn on_ping_result(&mut self, id: &Id, alive: bool, now: u64, cfg: &RoutingConfig) {
        if self.challenged() == Some(*id) {
            self.resolve(id, alive, now, cfg);
        } else if alive {
            // Not a challenge we know (already resolved, or never issued): an
            // answer is still proof of life.
            if let Some(entry) = self.refresh(id, now) {
                entry.verified = true;
            }
        }
    }

    /// A request to `id` failed; true if that dropped it from the bucket.
    pub(super) fn on_failure(&mut self, id: &Id, cfg: &RoutingConfig) -> bool {
        if self.challenged() == Some(*id) {
            self.replace_challenged(cfg);
            return true;
        }
        let Some(pos) = self.position(id) else {
            return false;
        };
        let entry = &mut self.entries[pos];
        entry.failures = entry.failures.saturating_add(1);
        if entry.failures < cfg.max_failures {
            return false;
        }
        self.entries.remove(pos);
        self.fill(cfg);
        true
    }

    /// Forgets `id` wherever it is; true if it was an entry of the bucket proper.
    pub(super) fn remove(&mut self, id: &Id, cfg: &RoutingConfig) -> bool {
        if self.challenged() == Some(*id) {
            self.replace_challenged(cfg);
            return true;
        }
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.candidate.contact.id == *id)
        {
            self.pending = None;
        }
        self.replacements.retain(|e| e.contact.id != *id);
        let Some(pos) = self.position(id) else {
            return false;
        };
        self.entries.remove(pos);
        self.fill(cfg);
        true
    }

    fn position(&self, id: &Id) -> Option<usize> {
        self.entries.iter().position(|e| e.contact.id == *id)
    }

    fn challenged(&self) -> Option<Id> {
        self.pending.as_ref().map(|p| p.challenged)
    }

    /// Moves `id` to most recently seen as proven alive at `now`.
    fn refresh(&mut self, id: &Id, now: u64) -> Option<&mut Entry> {
        let pos = self.position(id)?;
        let mut entry = self.entries.remove(pos);
        entry.last_seen = now;
        entry.failures = 0;
        self.entries.push(entry);
        self.entries.last_mut()
    }

    /// Settles the pending eviction that challenged `id`.
    fn resolve(&mut self, id: &Id, alive: bool, now: u64, cfg: &RoutingConfig) {
        if !alive {
            self.replace_challenged(cfg);
        } else if let Some(pending) = self.pending.take() {
            if let Some(entry) = self.refresh(id, now) {
                entry.verified = true;
            }
            self.cache(pending.candidate, cfg);
        }
    }

    /// The challenged entry is dead: its candidate takes its slot.
    fn replace_challenged(&mut self, cfg: &RoutingConfig) {
        if let Some(pending) = self.pending.take() {
            self.entries.retain(|e| e.contact.id != pending.challenged);
            self.entries.push(pending.candidate);
            self.fill(cfg);
        }
    }

    /// Adds to the replacement cache as its most recent member.
    fn cache(&mut self, entry: Entry, cfg: &RoutingConfig) {
        self.replacements
            .retain(|e| e.contact.id != entry.contact.id);
        if cfg.replacement_cache == 0 {
            return;
        }
        self.replacements.push(entry);
        if self.replacements.len() > cfg.replacement_cache {
            let excess = self.replacements.len() - cfg.replacement_cache;
            self.replacements.drain(..excess);
        }
    }

    /// Gives free slots to waiting nodes, the most recently seen first since
    /// they are the likeliest to still be alive.
    fn fill(&mut self, cfg: &RoutingConfig) {
        while self.entries.len() < cfg.k {
            if let Some(entry) = self.replacements.pop() {
                self.entries.push(entry);
            } else if let Some(pending) = self.pending.take() {
                // The challenge no longer matters: there is room for both.
                self.entries.push(pending.candidate);
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn cfg(k: usize, cache: usize) -> RoutingConfig {
        RoutingConfig {
            k,
            replacement_cache: cache,
            max_failures: 2,
            ..RoutingConfig::default()
        }
    }

    fn contact(n: u8) -> Contact {
        let mut id = [0u8; 32];
        id[0] = 0x80;
        id[31] = n;
        Contact::new(Id(id), SocketAddr::from(([127, 0, 0, 1], 1000 + n as u16)))
    }

    fn ids(entries: &[Entry]) -> Vec<u8> {
        entries.iter().map(|e| e.contact.id.0[31]).collect()
    }

    #[test]
    fn cache_keeps_the_most_recent_and_dedupes() {
        let cfg = cfg(1, 2);
        let mut b = Bucket::new(0);
        assert_eq!(b.observe(contact(1), 1, false, &cfg), Observed::Inserted);
        assert!(matches!(
            b.observe(contact(2), 2, false, &cfg),
            Observed::Pending { .. }
        ));
        for (n, t) in [(3, 3), (4, 4), (3, 5), (5, 6)] {
            assert_eq!(b.observe(contact(n), t, false, &cfg), Observed::Cached);
        }
        // 3 was re-observed after 4, so 4 is the oldest and went first.
        assert_eq!(ids(&b.replacements), vec![3, 5]);
        assert_eq!(b.replacements[0].last_seen, 5);
    }

    #[test]
    fn candidate_observed_again_stays_candidate() {
        let cfg = cfg(1, 2);
        let mut b = Bucket::new(0);
        b.observe(contact(1), 1, false, &cfg);
        b.observe(contact(2), 2, false, &cfg);
        assert_eq!(b.observe(contact(2), 3, false, &cfg), Observed::Cached);
        assert!(b.replacements.is_empty());
        b.on_ping_result(&contact(1).id, false, 4, &cfg);
        assert_eq!(ids(&b.entries), vec![2]);
        assert_eq!(b.entries[0].last_seen, 3);
    }

    #[test]
    fn hearing_from_the_challenged_entry_settles_the_challenge() {
        let cfg = cfg(2, 2);
        let mut b = Bucket::new(0);
        b.observe(contact(1), 1, false, &cfg);
        b.observe(contact(2), 2, false, &cfg);
        assert_eq!(
            b.observe(contact(3), 3, false, &cfg),
            Observed::Pending { ping: contact(1) }
        );
        assert_eq!(b.observe(contact(1), 4, false, &cfg), Observed::Updated);
        assert!(b.pending.is_none());
        assert_eq!(ids(&b.entries), vec![2, 1]);
        assert_eq!(ids(&b.replacements), vec![3]);
        // The late pong is harmless.
        b.on_ping_result(&contact(1).id, true, 5, &cfg);
        assert_eq!(ids(&b.entries), vec![2, 1]);
        // And a new newcomer challenges the new oldest.
        assert_eq!(
            b.observe(contact(4), 6, false, &cfg),
            Observed::Pending { ping: contact(2) }
        );
    }

    #[test]
    fn a_freed_slot_goes_to_the_candidate_when_the_cache_is_empty() {
        let cfg = cfg(2, 0);
        let mut b = Bucket::new(0);
        b.observe(contact(1), 1, false, &cfg);
        b.observe(contact(2), 2, false, &cfg);
        b.observe(contact(3), 3, false, &cfg);
        assert_eq!(b.observe(contact(4), 4, false, &cfg), Observed::Cached);
        assert!(
            b.replacements.is_empty(),
            "a zero-sized cache holds nothing"
        );
        assert!(b.remove(&contact(2).id, &cfg));
        assert_eq!(ids(&b.entries), vec![1, 3]);
        assert!(b.pending.is_none());
        // The ping to 1 was overtaken; its answer only refreshes 1.
        b.on_ping_result(&contact(1).id, true, 6, &cfg);
        assert_eq!(ids(&b.entries), vec![3, 1]);
    }

    #[test]
    fn removing_waiting_nodes_is_quiet() {
        let cfg = cfg(1, 4);
        let mut b = Bucket::new(0);
        b.observe(contact(1), 1, false, &cfg);
        b.observe(contact(2), 2, false, &cfg);
        b.observe(contact(3), 3, false, &cfg);
        assert!(!b.remove(&contact(3).id, &cfg));
        assert!(!b.remove(&contact(2).id, &cfg));
        assert!(b.pending.is_none() && b.replacements.is_empty());
        assert_eq!(ids(&b.entries), vec![1]);
        // Removing the challenged entry admits the candidate.
        b.observe(contact(5), 5, false, &cfg);
        assert!(b.remove(&contact(1).id, &cfg));
        assert_eq!(ids(&b.entries), vec![5]);
    }
}
