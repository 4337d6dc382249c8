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
//! Spread over prefixes ([`Spread`]): the k closest a lookup waits for and
//! returns take at most `per_prefix` of one /24 (IPv6 /64) before every
//! other prefix near the target has one, so a host holding a /24 near a key
//! gets one of its k places while other prefixes are near. Off, the order
//! is plain XOR distance.
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
use crate::spread::Spread;

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
    /// How the k closest spread over network prefixes.
    pub spread: Spread,
    /// Slow peers hold up the end only while the answer would be shorter
    /// than this without them; 0 is taken as k. A region's wide lookup asks
    /// for more nodes than a small network has, and would otherwise wait
    /// out each dead peer's whole timeout (seconds, on every put and get).
    pub wait_slow_below: usize,
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
            spread: Spread::OFF,
            wait_slow_below: 0,
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
    /// See [`LookupConfig::wait_slow_below`]; at most k.
    wait_slow_below: usize,
    alpha: usize,
    max_requests: usize,
    deadline: u64,
    spread: Spread,
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
            spread: cfg.spread,
            wait_slow_below: match cfg.wait_slow_below {
                0 => cfg.k.max(1),
                n => n.min(cfg.k.max(1)),
            },
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
        for distance in self.window(is_live, self.k) {
            if out.len() >= budget {
                break;
            }
            let Some(candidate) = self.candidates.get_mut(&distance) else {
                continue;
            };
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
        // Finished the Kademlia way, the window is the answer; ended
        // early, the best of those that answered.
        let window = self.window(is_live, self.k);
        let answered = |d: &Distance| self.candidates[d].state == State::Succeeded;
        let picked = match window.iter().all(answered) {
            true => window,
            false => self.window(|s| s == State::Succeeded, self.k),
        };
        let closest: Vec<&Candidate> = picked.iter().map(|d| &self.candidates[d]).collect();
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
        // The best ranked stay: a /24 naming many of its own near the
        // target cannot crowd out the other prefixes.
        let waiting: Vec<(Distance, SocketAddr)> = self
            .candidates
            .iter()
            .filter(|(_, c)| c.state == State::NotContacted)
            .map(|(d, c)| (*d, c.contact.addr))
            .collect();
        let addrs: Vec<SocketAddr> = waiting.iter().map(|w| w.1).collect();
        let excess: Vec<Distance> = self
            .spread
            .rank(&addrs)
            .into_iter()
            .skip(cap)
            .map(|i| waiting[i].0)
            .collect();
        for distance in &excess {
            if let Some(c) = self.candidates.remove(distance) {
                self.addrs.remove(&c.contact.addr);
            }
        }
    }

    /// The `k` candidates in a state `keep` takes that the spread rule
    /// picks, closest first, by their distance (their key).
    fn window(&self, keep: impl Fn(State) -> bool, k: usize) -> Vec<Distance> {
        let kept = self.candidates.iter().filter(|(_, c)| keep(c.state));
        if self.spread.per_prefix == 0 {
            // Plain XOR order: the first k, without ranking them all.
            return kept.take(k).map(|(d, _)| *d).collect();
        }
        let kept: Vec<(Distance, SocketAddr)> = kept.map(|(d, c)| (*d, c.contact.addr)).collect();
        let addrs: Vec<SocketAddr> = kept.iter().map(|c| c.1).collect();
        self.spread
            .pick(&addrs, k)
            .into_iter()
            .map(|i| kept[i].0)
            .collect()
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
        // would be short (under `wait_slow_below`): then they are waited for.
        let window: Vec<State> = self
            .window(is_live, self.k)
            .iter()
            .map(|d| self.candidates[d].state)
            .collect();
        let answered = window.iter().all(|s| *s == State::Succeeded);
        let settled = answered && (window.len() >= self.wait_slow_below || self.slow == 0);
        self.finished = found || settled;
        // Out of requests with none left to wait for: end with what we have.
        let spent = self.contacted >= self.max_requests && self.in_flight == 0 && self.slow == 0;
        if !self.finished && spent {
            self.end(Bound::Requests);
        }
    }
}

/// Asked, or to be asked: neither failed nor past its soft timeout.
fn is_live(s: State) -> bool {
    s != State::Failed && s != State::Slow
}

#[cfg(test)]
#[path = "lookup_tests.rs"]
mod tests;
