//! The iterative Kademlia lookup as a pure state machine (after libp2p's
//! `query/peers/closest.rs`): the caller sends the requests [`Lookup::next_peers`]
//! asks for and reports each outcome; nothing here waits or keeps time, so
//! timeouts are the caller's to detect and report as failures.
//!
//! One address, one vote: a lookup keeps one candidate per address (the first
//! it heard of), so a host naming many made-up ids at its own address gets
//! one place among the results, not k.
//!
//! A peer that has not answered within the caller's soft timeout is marked
//! slow ([`Lookup::on_slow`]): it stops holding a slot of `alpha` and stops
//! holding up the end, unless the lookup would otherwise end with fewer than
//! k results; its answer is still taken until the caller gives up on it.
//!
//! Every lookup is bounded: at most `max_requests` requests, and it ends at
//! its deadline ([`Lookup::tick`]) with the best it has; [`LookupResult::bound`]
//! says which bound ended it.
//!
//! Hops count sequential round trips: a seed is hop 1, a contact first learned
//! from a peer at hop `h` is hop `h + 1` (the minimum over every peer that
//! named it), and our own node is hop 0. [`LookupResult::hops`] is the largest
//! hop among the peers in the result, so it is how many rounds a perfectly
//! parallel lookup would have needed to reach them all.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use crate::contact::Contact;
use crate::id::{Distance, Id};

/// What a lookup is after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupKind {
    /// The k nodes closest to the target.
    FindNode,
    /// Any node holding the target block; falls back to the k closest.
    FindValue,
}

/// Lookup width (`k`), parallelism (`alpha`) and bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupConfig {
    /// How many closest nodes to find; 0 is taken as 1.
    pub k: usize,
    /// Requests in flight at once; 0 is taken as 1.
    pub alpha: usize,
    /// Most requests one lookup sends; 0 is taken as 1.
    pub max_requests: usize,
    /// A lookup ends this long after it started, with what it has (ms).
    pub deadline_ms: u64,
}

impl Default for LookupConfig {
    fn default() -> Self {
        // An honest lookup on a million nodes takes ~log2(10^6)/log2(k) ≈ 7
        // rounds of alpha requests plus the k closest: some 30-60 requests and
        // well under a few seconds. The bounds sit far above that and only
        // stop a lookup that liars keep feeding with ever closer made-up ids.
        LookupConfig {
            k: 7,
            alpha: 3,
            max_requests: 300,
            deadline_ms: 10_000,
        }
    }
}

/// Which bound ended a lookup early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// It ran out of time.
    Deadline,
    /// It sent its most requests.
    Requests,
}

/// What a lookup found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LookupResult {
    /// Up to k peers that answered (ourselves included when given), closest first.
    pub closest: Vec<Contact>,
    /// Peers that said they hold the value, in the order they said so.
    pub holders: Vec<Contact>,
    /// Largest hop among `closest` and `holders` (see the module docs).
    pub hops: u32,
    /// Requests sent.
    pub contacted: usize,
    /// Requests that failed.
    pub failed: usize,
    /// Contacts ignored because another id already held their address.
    pub address_conflicts: usize,
    /// The bound that ended the lookup, if one did.
    pub bound: Option<Bound>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    NotContacted,
    Waiting,
    /// Asked, past the soft timeout: no longer holds a slot; may still answer.
    Slow,
    Succeeded,
    Failed,
}

#[derive(Clone, Debug)]
struct Candidate {
    contact: Contact,
    state: State,
    hop: u32,
}

/// One iterative lookup in progress.
#[derive(Clone, Debug)]
pub struct Lookup {
    target: Id,
    kind: LookupKind,
    k: usize,
    alpha: usize,
    max_requests: usize,
    deadline: u64,
    /// Failed peers stay so that hearing of them again does not revive them.
    candidates: BTreeMap<Distance, Candidate>,
    /// Which id holds each address among the candidates.
    addrs: HashMap<SocketAddr, Id>,
    holders: Vec<Candidate>,
    /// Requests waiting and not yet slow.
    in_flight: usize,
    /// Requests past their soft timeout, still unanswered.
    slow: usize,
    contacted: usize,
    failed: usize,
    address_conflicts: usize,
    bound: Option<Bound>,
    /// Latched, so late answers cannot reopen a lookup the caller has left.
    finished: bool,
}

impl Lookup {
    /// Starts a lookup from `seeds`. `local`, when given, counts as a peer that
    /// already answered, so it can appear in the result: a storage node is a
    /// candidate holder itself. Our own contact is never returned by `next_peers`.
    /// `now` (ms) starts the deadline.
    pub fn new(
        target: Id,
        kind: LookupKind,
        cfg: LookupConfig,
        local: Option<Contact>,
        seeds: Vec<Contact>,
        now: u64,
    ) -> Self {
        let mut lookup = Lookup {
            target,
            kind,
            k: cfg.k.max(1),
            alpha: cfg.alpha.max(1),
            max_requests: cfg.max_requests.max(1),
            deadline: now.saturating_add(cfg.deadline_ms),
            candidates: BTreeMap::new(),
            addrs: HashMap::new(),
            holders: Vec::new(),
            in_flight: 0,
            slow: 0,
            contacted: 0,
            failed: 0,
            address_conflicts: 0,
            bound: None,
            finished: false,
        };
        if let Some(me) = local {
            let me = Candidate {
                contact: me,
                state: State::Succeeded,
                hop: 0,
            };
            lookup.addrs.insert(me.contact.addr, me.contact.id);
            lookup
                .candidates
                .insert(me.contact.id.distance(&target), me);
        }
        for seed in seeds {
            lookup.learn(seed, 1);
        }
        lookup.prune();
        lookup.update_finished();
        lookup
    }

    /// The id being looked up.
    pub fn target(&self) -> Id {
        self.target
    }

    /// Peers to contact now, marked in flight: the closest not yet contacted
    /// among the k closest live candidates, up to `alpha` minus those in flight.
    /// Empty when waiting on answers or finished.
    pub fn next_peers(&mut self) -> Vec<Contact> {
        if self.finished {
            return Vec::new();
        }
        let budget = self
            .alpha
            .saturating_sub(self.in_flight)
            .min(self.max_requests.saturating_sub(self.contacted));
        let mut out = Vec::new();
        let live = self
            .candidates
            .values_mut()
            .filter(|c| c.state != State::Failed && c.state != State::Slow);
        for candidate in live.take(self.k) {
            if out.len() >= budget {
                break;
            }
            if candidate.state == State::NotContacted {
                candidate.state = State::Waiting;
                out.push(candidate.contact);
            }
        }
        self.in_flight += out.len();
        self.contacted += out.len();
        self.update_finished();
        out
    }

    /// `peer` has not answered within the soft timeout: it frees its slot so
    /// the next peer can be asked, and no longer holds up the end unless the
    /// result would be short without it. Ignored unless `peer` is waiting.
    pub fn on_slow(&mut self, peer: &Id) {
        if self.finished {
            return;
        }
        let Some(c) = self.candidates.get_mut(&peer.distance(&self.target)) else {
            return;
        };
        if c.state == State::Waiting {
            c.state = State::Slow;
            self.in_flight -= 1;
            self.slow += 1;
            self.update_finished();
        }
    }

    /// Ends the lookup if `now` is past its deadline; true if that ended it.
    pub fn tick(&mut self, now: u64) -> bool {
        if !self.finished && now >= self.deadline {
            self.end(Bound::Deadline);
            return true;
        }
        false
    }

    /// The address of candidate `peer`, if it is one.
    pub fn address_of(&self, peer: &Id) -> Option<SocketAddr> {
        self.candidates
            .get(&peer.distance(&self.target))
            .map(|c| c.contact.addr)
    }

    /// When the lookup's deadline falls (ms, the clock `new` was given).
    pub fn deadline(&self) -> u64 {
        self.deadline
    }

    /// `peer` answered with `closer` contacts; duplicates, the peer itself and
    /// our own node among them are harmless. Ignored unless `peer` is in flight.
    pub fn on_success(&mut self, peer: &Id, closer: Vec<Contact>) {
        let Some(hop) = self.settle(peer, State::Succeeded).map(|c| c.hop) else {
            return;
        };
        for contact in closer {
            if contact.id != *peer {
                self.learn(contact, hop.saturating_add(1));
            }
        }
        self.prune();
        self.update_finished();
    }

    /// `peer` said it holds the value; for a `FindValue` lookup that ends it.
    /// Ignored unless `peer` is in flight.
    pub fn on_value(&mut self, peer: &Id) {
        let Some(holder) = self.settle(peer, State::Succeeded).cloned() else {
            return;
        };
        self.holders.push(holder);
        if self.kind == LookupKind::FindValue {
            self.finished = true;
        }
        self.update_finished();
    }

    /// `peer` timed out or errored. Ignored unless `peer` is in flight.
    pub fn on_failure(&mut self, peer: &Id) {
        if self.settle(peer, State::Failed).is_some() {
            self.failed += 1;
            self.update_finished();
        }
    }

    /// Whether the lookup is over: the k closest live candidates have all
    /// answered, nobody is left to ask, or (`FindValue`) a holder is known.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Requests sent and not yet answered nor slow; once finished, their answers are ignored.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Requests past their soft timeout and not yet answered.
    pub fn slow(&self) -> usize {
        self.slow
    }

    /// What the lookup found so far; final once [`is_finished`](Self::is_finished).
    pub fn result(&self) -> LookupResult {
        let closest: Vec<&Candidate> = self
            .candidates
            .values()
            .filter(|c| c.state == State::Succeeded)
            .take(self.k)
            .collect();
        let hops = closest
            .iter()
            .copied()
            .chain(&self.holders)
            .map(|c| c.hop)
            .max()
            .unwrap_or(0);
        LookupResult {
            closest: closest.iter().map(|c| c.contact).collect(),
            holders: self.holders.iter().map(|c| c.contact).collect(),
            hops,
            contacted: self.contacted,
            failed: self.failed,
            address_conflicts: self.address_conflicts,
            bound: self.bound,
        }
    }

    fn end(&mut self, bound: Bound) {
        self.finished = true;
        self.bound = Some(bound);
    }

    /// Records the answer of an in-flight `peer`; `None` for anyone else, as
    /// late and duplicate answers must not count twice.
    fn settle(&mut self, peer: &Id, to: State) -> Option<&Candidate> {
        if self.finished {
            return None;
        }
        let candidate = self.candidates.get_mut(&peer.distance(&self.target))?;
        match candidate.state {
            State::Waiting => self.in_flight -= 1,
            State::Slow => self.slow -= 1,
            _ => return None,
        }
        candidate.state = to;
        Some(candidate)
    }

    fn learn(&mut self, contact: Contact, hop: u32) {
        match self.addrs.get(&contact.addr) {
            Some(id) if *id != contact.id => {
                self.address_conflicts += 1;
                return;
            }
            Some(_) => {}
            None => {
                // An id heard of at one address keeps it: the same id
                // named at a second address is the same vote, not two.
                if self
                    .candidates
                    .contains_key(&contact.id.distance(&self.target))
                {
                    self.address_conflicts += 1;
                    return;
                }
                self.addrs.insert(contact.addr, contact.id);
            }
        }
        self.candidates
            .entry(contact.id.distance(&self.target))
            .and_modify(|c| c.hop = c.hop.min(hop))
            .or_insert(Candidate {
                contact,
                state: State::NotContacted,
                hop,
            });
    }

    /// Caps the never-contacted candidates at `4k + alpha`, dropping the
    /// farthest, so a peer answering with thousands of contacts cannot grow
    /// the lookup without bound. The cap being at least k, the k closest are
    /// never dropped; contacted peers stay (so they are never asked twice)
    /// and are bounded by our own requests.
    fn prune(&mut self) {
        let cap = 4 * self.k + self.alpha;
        let excess: Vec<Distance> = self
            .candidates
            .iter()
            .filter(|(_, c)| c.state == State::NotContacted)
            .skip(cap)
            .map(|(d, _)| *d)
            .collect();
        for distance in &excess {
            if let Some(c) = self.candidates.remove(distance) {
                self.addrs.remove(&c.contact.addr);
            }
        }
    }

    fn update_finished(&mut self) {
        if self.finished {
            return;
        }
        let found = self.kind == LookupKind::FindValue && !self.holders.is_empty();
        // The Kademlia rule: once the k closest live candidates have all
        // answered, none of them knows anyone closer. Stragglers farther out
        // may still be in flight; as in Kademlia, they are not waited for.
        // Slow peers count as failed here, unless without them the result
        // would be short: then they are waited for.
        let window: Vec<State> = self
            .candidates
            .values()
            .filter(|c| c.state != State::Failed && c.state != State::Slow)
            .take(self.k)
            .map(|c| c.state)
            .collect();
        let answered = window.iter().all(|s| *s == State::Succeeded);
        let settled = answered && (window.len() >= self.k || self.slow == 0);
        self.finished = found || settled;
        // Out of requests with none left to wait for: end with what we have.
        let spent = self.contacted >= self.max_requests && self.in_flight == 0 && self.slow == 0;
        if !self.finished && spent {
            self.end(Bound::Requests);
        }
    }
}

#[cfg(test)]
mod tests {
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

    fn lookup(
        kind: LookupKind,
        k: usize,
        alpha: usize,
        local: Option<u16>,
        seeds: &[u16],
    ) -> Lookup {
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
}
