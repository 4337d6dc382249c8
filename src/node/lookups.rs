//! Drives the pure [`Lookup`] state machine over real requests, α at a time,
//! with a soft timeout per request (from the measured round trips) and the
//! lookup's deadline, and builds on it: finding a block's holders and
//! replicating a block.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinSet;

use super::Node;
use crate::contact::Contact;
use crate::id::Id;
use crate::lookup::{Bound, Lookup, LookupKind, LookupResult};
use crate::stats::Stats;
use crate::wire::message::FindValueResult;

/// A region a put places keys in is looked up again after this long, so
/// that nodes joined or gone since count.
const PLACEMENT_REGION_TTL_MS: u64 = 60_000;
/// Added to two soft timeouts: how long a region's completion waits for a
/// node's answer (see `complete_region`).
const QUIET_SLACK: Duration = Duration::from_millis(100);

/// What replicating one block achieved.
#[derive(Debug, Clone, Default)]
pub struct StoreReport {
    /// Nodes that answered "saved" (ourselves included when we are among the closest).
    pub saved: Vec<Contact>,
    /// Nodes that failed, with why.
    pub failed: Vec<(Contact, String)>,
}

enum Answer {
    Nodes(Vec<Contact>),
    Holder,
    Failed,
}

impl Node {
    /// Runs an iterative lookup for `target`.
    pub async fn lookup(&self, target: Id, kind: LookupKind) -> LookupResult {
        self.lookup_avoiding(target, kind, &HashSet::new()).await
    }

    /// Runs an iterative lookup that never asks, nor believes, the peers at
    /// `avoid` (say, peers that served bad bytes): they count as failed.
    pub async fn lookup_avoiding(
        &self,
        target: Id,
        kind: LookupKind,
        avoid: &HashSet<SocketAddr>,
    ) -> LookupResult {
        let cfg = self.inner.cfg.lookup.clone();
        self.lookup_with(target, kind, avoid, cfg).await
    }

    /// A find_node lookup for the `width` nodes closest to `target` rather
    /// than K, in plain XOR order: a republish sweep learns a whole keyspace
    /// region from one, which needs every node near the target (`region.rs`).
    pub async fn lookup_wide(&self, target: Id, width: usize) -> LookupResult {
        let mut cfg = self.inner.cfg.lookup.clone();
        // Short of `width` is a whole small network (`region_of`): past K
        // answers, a peer gone quiet is not waited for.
        cfg.wait_slow_below = cfg.k;
        cfg.k = width.max(cfg.k);
        cfg.spread = crate::spread::Spread::OFF;
        self.lookup_with(target, LookupKind::FindNode, &HashSet::new(), cfg)
            .await
    }

    /// The keyspace region around `key` and every node in it (see
    /// `region.rs`): a lookup for 3K nodes, widened twice at most (to 6K, then
    /// 12K) while the answer covers `key` alone, as when the side of the
    /// network holding `key` has fewer than K nodes. Returns the region and
    /// the lookup requests sent.
    pub async fn lookup_region(&self, key: Id) -> (crate::region::Region, usize) {
        let k = self.inner.cfg.lookup.k;
        let mut requests = 0;
        let mut width = 3 * k;
        loop {
            let found = self.lookup_wide(key, width).await;
            requests += found.contacted;
            let mut region = crate::region::region_of(&key, &found.closest, k, width);
            if !region.is_one_key() {
                let (members, asked) = self.complete_region(&region).await;
                requests += asked;
                let mut all = found.closest;
                let before = all.len();
                for m in members {
                    if !all.iter().any(|c| c.id == m.id) {
                        all.push(m);
                    }
                }
                if all.len() > before {
                    // The lookup missed some: cut the region again from all.
                    // A short answer that proves not to be the whole network
                    // after all is looked up wider.
                    if before < width && all.len() >= width && width < 12 * k {
                        width *= 2;
                        continue;
                    }
                    all.sort_by_key(|c| key.distance(&c.id));
                    region = crate::region::region_of(&key, &all, k, width);
                }
            }
            if !region.is_one_key() || width >= 12 * k {
                return (region, requests);
            }
            width *= 2;
        }
    }

    /// The `n` (at most K) closest nodes of `key` for placing it, from the
    /// region spanning it: found in `regions` while fresh, else looked up
    /// (`lookup_region`) and kept there, so that a put of many keys (an
    /// erasure-coded file has n shards a chunk) pays a lookup a region, not
    /// a key. The spread rule, when on, picks among the region's nodes as
    /// it would among a lookup's. Misses wait for each other: the second
    /// finds the first's region.
    pub async fn closest_in_region(
        &self,
        key: Id,
        n: usize,
        regions: &tokio::sync::Mutex<crate::region::Regions>,
    ) -> Vec<Contact> {
        let mut kept = regions.lock().await;
        let now = self.inner.clock.now_ms();
        let region = match kept.covering(&key, now, PLACEMENT_REGION_TTL_MS) {
            Some(region) => region.clone(),
            None => {
                let (region, _) = self.lookup_region(key).await;
                kept.keep(region.clone(), now);
                region
            }
        };
        drop(kept);
        let spread = self.inner.cfg.lookup.spread;
        match spread.per_prefix {
            0 => crate::region::closest_of(&key, &region.nodes, n),
            _ => spread.closest_of(&key, &region.nodes, n),
        }
    }

    /// Every node of `region` that the lookup may have missed: a wide
    /// lookup hears of nodes only through replies of K contacts, each the
    /// K its sender knows closest to the target, so a node of the region
    /// far from the target can be in no reply (24 nodes, K = 7: 490 of
    /// 2000 blocks went to 6 of their 7 closest). Each member is asked for
    /// the nodes closest to itself, which its own neighbours are; a node
    /// heard of there counts once it answers the same question, and the
    /// rounds go on (4 at most) until nobody new turns up. Returns the
    /// members, ourselves left out, and the requests sent.
    async fn complete_region(&self, region: &crate::region::Region) -> (Vec<Contact>, usize) {
        const ROUNDS: usize = 4;
        let me = self.inner.me;
        let mut members: Vec<Contact> = region
            .nodes
            .iter()
            .filter(|c| c.id != me.id)
            .copied()
            .collect();
        let mut asked: HashSet<Id> = HashSet::from([me.id]);
        let mut to_ask: Vec<(Contact, bool)> = members.iter().map(|c| (*c, true)).collect();
        let mut requests = 0;
        for _ in 0..ROUNDS {
            if to_ask.is_empty() {
                break;
            }
            let mut running = JoinSet::new();
            // An answer later than this is not waited for: a peer gone
            // quiet would hold each round up for the whole request timeout
            // (with a departed peer in every table, a 64 MiB put ran at 0.08x).
            let quiet = 2 * self.soft_timeout() + QUIET_SLACK;
            let now = self.inner.clock.now_ms();
            for (c, member) in to_ask.drain(..) {
                // Nor is one that went quiet lately asked at all.
                if !asked.insert(c.id) || (!member && self.is_suspect(&c, now)) {
                    continue;
                }
                requests += 1;
                let node = self.clone();
                running.spawn(async move {
                    let late = node.inner.clock.sleep(quiet);
                    let answer = tokio::select! {
                        answer = node.find_node_rpc(&c, c.id) => answer.ok(),
                        _ = late => None,
                    };
                    (c, member, answer)
                });
            }
            while let Some(joined) = running.join_next().await {
                let Ok((c, member, answer)) = joined else {
                    continue;
                };
                let Some(nodes) = answer else {
                    continue;
                };
                // Heard of, it is a member only now that it answered.
                if !member && !members.iter().any(|m| m.id == c.id) {
                    members.push(c);
                }
                for n in nodes {
                    let new = region.spans(&n.id)
                        && !asked.contains(&n.id)
                        && !to_ask.iter().any(|(t, _)| t.id == n.id);
                    if new {
                        to_ask.push((n, false));
                    }
                }
            }
        }
        if region.nodes.iter().any(|c| c.id == me.id) {
            members.push(me);
        }
        (members, requests)
    }

    async fn lookup_with(
        &self,
        target: Id,
        kind: LookupKind,
        avoid: &HashSet<SocketAddr>,
        cfg: crate::lookup::LookupConfig,
    ) -> LookupResult {
        let now = self.inner.clock.now_ms();
        let seeds = {
            let mut table = self.table();
            table.touch(&target, now);
            // Avoided peers take no seat: were the k closest all liars a
            // transfer has caught, seeding only them would end every later
            // lookup at once, before it reached the honest nodes behind them.
            table.closest_where(&target, cfg.k, |e| !avoid.contains(&e.contact.addr))
        };
        let local = self.inner.cfg.is_holder.then_some(self.inner.me);
        let clock = self.inner.clock.clone();
        let mut lookup = Lookup::new(target, kind, cfg, local, seeds, now);
        let mut in_flight: JoinSet<(Id, Answer)> = JoinSet::new();
        // Soft deadlines (ms) of the requests not yet answered nor slow.
        let mut waiting: Vec<(u64, Id)> = Vec::new();
        loop {
            // Avoided peers fail at once and suspect ones go slow at once,
            // each freeing its slot for the next peer: ask until none is free.
            loop {
                let peers = lookup.next_peers();
                if peers.is_empty() {
                    break;
                }
                let (avoided, asked): (Vec<Contact>, Vec<Contact>) =
                    peers.into_iter().partition(|p| avoid.contains(&p.addr));
                for peer in &avoided {
                    lookup.on_failure(&peer.id);
                }
                let now = clock.now_ms();
                // Slow once a resend (after one soft timeout) went
                // unanswered too: one lost datagram is not a slow peer.
                let soft = 2 * self.soft_timeout().as_millis() as u64;
                let timeout = self.inner.cfg.request_timeout;
                let mut asks = Vec::with_capacity(asked.len());
                for peer in asked {
                    // The soft deadline starts when the request goes: a
                    // request waiting its turn (our pacing) is not a slow peer.
                    let turn = self.take_turn(peer.addr, timeout);
                    let wait = turn.as_ref().map_or(0, |w| w.as_millis() as u64);
                    // A peer that recently let a request of ours run past
                    // its soft timeout, or whose last request failed, is
                    // still asked but not waited for.
                    if self.is_suspect(&peer, now) {
                        lookup.on_slow(&peer.id);
                    } else {
                        waiting.push((now + wait + soft, peer.id));
                    }
                    asks.push((peer, turn));
                }
                self.spawn_asks(&mut in_flight, asks, target, kind);
            }
            if lookup.is_finished() {
                break;
            }
            let wake = waiting
                .iter()
                .map(|(at, _)| *at)
                .fold(lookup.deadline(), u64::min);
            let nap = Duration::from_millis(wake.saturating_sub(clock.now_ms()));
            tokio::select! {
                biased;
                joined = in_flight.join_next() => {
                    let Some(joined) = joined else { break };
                    let Ok((peer, answer)) = joined else { continue };
                    waiting.retain(|(_, id)| *id != peer);
                    match answer {
                        Answer::Nodes(nodes) => lookup.on_success(&peer, nodes),
                        Answer::Holder => lookup.on_value(&peer),
                        Answer::Failed => lookup.on_failure(&peer),
                    }
                }
                _ = clock.sleep(nap) => {
                    let now = clock.now_ms();
                    if lookup.tick(now) {
                        break;
                    }
                    let mut slow = Vec::new();
                    waiting.retain(|(at, id)| {
                        if *at <= now {
                            slow.push(*id);
                        }
                        *at > now
                    });
                    for id in slow {
                        lookup.on_slow(&id);
                        if let Some(addr) = lookup.address_of(&id) {
                            self.mark_suspect(addr, now);
                        }
                    }
                }
            }
        }
        // Requests still out finish on their own, within the hard timeout, so
        // that a dead peer is still charged its failure in the table.
        in_flight.detach_all();
        let result = lookup.result();
        let stats = &self.inner.stats;
        stats.observe_hops(result.hops);
        match result.bound {
            Some(Bound::Deadline) => Stats::inc(&stats.lookups_ended_deadline),
            Some(Bound::Requests) => Stats::inc(&stats.lookups_ended_requests),
            None => {}
        }
        result
    }

    /// Sends a lookup's request to each peer at its turn, answers into `in_flight`.
    fn spawn_asks(
        &self,
        in_flight: &mut JoinSet<(Id, Answer)>,
        asks: Vec<(Contact, super::rpc::Turn)>,
        target: Id,
        kind: LookupKind,
    ) {
        for (peer, turn) in asks {
            let node = self.clone();
            in_flight.spawn(async move {
                let answer = match kind {
                    LookupKind::FindNode => match node.find_node_at(&peer, target, turn).await {
                        Ok(nodes) => Answer::Nodes(nodes),
                        Err(_) => Answer::Failed,
                    },
                    LookupKind::FindValue => match node.find_value_at(&peer, target, turn).await {
                        Ok(FindValueResult::Closer(nodes)) => Answer::Nodes(nodes),
                        // A holder speaks for itself: the contact we reached, not
                        // whatever address it claims.
                        Ok(FindValueResult::Holder(_)) => Answer::Holder,
                        Err(_) => Answer::Failed,
                    },
                };
                (peer.id, answer)
            });
        }
    }

    /// The K nodes closest to `target` in the network.
    pub async fn find_closest(&self, target: Id) -> Vec<Contact> {
        self.lookup(target, LookupKind::FindNode).await.closest
    }

    /// Nodes that hold block `key` (ourselves first when we do).
    pub async fn find_holders(&self, key: Id) -> Vec<Contact> {
        if self.inner.cfg.is_holder && self.inner.blocks.contains(&key) {
            return vec![self.inner.me];
        }
        self.lookup(key, LookupKind::FindValue).await.holders
    }

    /// Asks the K nodes closest to `key` to store it (they pull it from us, so
    /// we must be able to serve it). We count ourselves as saved when we are
    /// among the closest and hold it.
    pub async fn replicate(&self, key: Id) -> StoreReport {
        let closest = self.find_closest(key).await;
        self.store_to(key, closest, 0).await
    }

    /// Which of `peers` say they hold block `key` (a find_value answered
    /// with the value), asked all at once.
    pub async fn holders_among(&self, key: Id, peers: &[Contact]) -> Vec<Contact> {
        let mut asks = JoinSet::new();
        for peer in peers.iter().copied() {
            let node = self.clone();
            asks.spawn(async move { (peer, node.find_value_rpc(&peer, key).await) });
        }
        let mut holders = Vec::new();
        while let Some(joined) = asks.join_next().await {
            if let Ok((peer, Ok(FindValueResult::Holder(_)))) = joined {
                holders.push(peer);
            }
        }
        holders
    }

    /// Asks each of `targets` to store block `key`, to be kept on `copies`
    /// nodes (0: K), as [`Node::replicate`] does after its lookup.
    pub async fn store_to(&self, key: Id, targets: Vec<Contact>, copies: u8) -> StoreReport {
        let closest = targets;
        let mut report = StoreReport::default();
        let mut stores = JoinSet::new();
        for contact in closest {
            if contact.id == self.inner.me.id {
                if self.inner.blocks.contains(&key) {
                    report.saved.push(contact);
                }
                continue;
            }
            let node = self.clone();
            stores.spawn(async move {
                let r = node.store_copies_rpc(&contact, key, copies).await;
                (contact, r)
            });
        }
        while let Some(joined) = stores.join_next().await {
            match joined {
                Ok((contact, Ok(()))) => report.saved.push(contact),
                Ok((contact, Err(e))) => report.failed.push((contact, e.to_string())),
                Err(e) => tracing::warn!(error = %e, "store task failed"),
            }
        }
        report
    }
}

impl Node {
    /// Whether `peer` should be asked without being waited for: a request
    /// to it recently ran past its soft timeout unanswered, or its last
    /// request failed. A dead peer then costs a lookup nothing.
    fn is_suspect(&self, peer: &Contact, now: u64) -> bool {
        let suspects = super::lock(&self.inner.suspects);
        if suspects.get(&peer.addr).is_some_and(|until| *until > now) {
            return true;
        }
        drop(suspects);
        self.table().get(&peer.id).is_some_and(|e| e.failures > 0)
    }

    /// `addr` let a request run past its soft timeout: suspect it for a
    /// minute, or until it answers anything.
    fn mark_suspect(&self, addr: SocketAddr, now: u64) {
        let mut suspects = super::lock(&self.inner.suspects);
        if suspects.len() >= SUSPECTS_MAX {
            suspects.retain(|_, until| *until > now);
        }
        if suspects.len() < SUSPECTS_MAX {
            suspects.insert(addr, now + SUSPECT_MS);
        }
    }

    /// `addr` answered: no longer suspect.
    pub(super) fn clear_suspect(&self, addr: &SocketAddr) {
        let mut suspects = super::lock(&self.inner.suspects);
        if !suspects.is_empty() {
            suspects.remove(addr);
        }
    }
}

/// How long a peer stays suspect after a request ran past its soft timeout.
const SUSPECT_MS: u64 = 60_000;
/// Suspects remembered at once.
const SUSPECTS_MAX: usize = 4096;
