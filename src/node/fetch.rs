//! The one verified block fetch: a find_value lookup, then the holders and
//! the closest nodes in turn, each copy hash-checked; a fetch that falls far
//! behind is hedged to the next candidate and the first verified copy wins;
//! liars and slow peers are avoided for the rest of the transfer (slow ones
//! believed again only when a round found nobody else);
//! rounds repeat while they unmask liars, with a short backoff otherwise.
//! `get`, the gateway, pin, scrub and the simulation all fetch through here.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};

use super::{lock, BoxFuture, FetchError, Node};
use crate::hedge::{HedgeTimer, PeerMarks};
use crate::id::Id;
use crate::lookup::{LookupKind, LookupResult};
use crate::stats::Stats;

/// Lookups per block that unmask no liar before giving up on it.
const ROUNDS: u32 = 3;
/// Lookups per block at most, however many liars they unmask.
const MAX_ROUNDS: u32 = 16;
/// Peers remembered as liars, and as slow, by one transfer.
const MAX_MARKED: usize = 1024;
/// Copies of one block in flight at once: the first ask and two hedges.
const MAX_IN_FLIGHT: usize = 3;
/// One ask never runs longer than this (ms), however it trickles: the
/// block client's timeouts bound each read, not a whole block.
const ASK_MAX_MS: u64 = 30_000;
/// A transfer that asks by region asks this many of a key's closest nodes
/// before it looks the key up: a put placed the block on the closest.
const SEEDS: usize = 2;

/// What the fetches of one transfer (a file, a pin, a scrub pass) share:
/// the peers caught lying or being slow, and how long fetches take.
#[derive(Debug)]
pub struct Transfer {
    marks: Mutex<PeerMarks<SocketAddr>>,
    timer: Mutex<HedgeTimer>,
    /// Set once the transfer has nothing left to start: from then on its
    /// fetches hedge at the usual time, not far behind it.
    endgame: tokio::sync::watch::Sender<bool>,
    /// Set for a transfer of many blocks: the regions of the keyspace its
    /// blocks' closest nodes were found in (see `ask_by_region`).
    regions: std::sync::OnceLock<tokio::sync::Mutex<crate::region::Regions>>,
}

impl Default for Transfer {
    fn default() -> Self {
        Transfer::new()
    }
}

impl Transfer {
    /// A transfer with nothing known yet.
    pub fn new() -> Transfer {
        Transfer {
            marks: Mutex::new(PeerMarks::new(MAX_MARKED)),
            timer: Mutex::new(HedgeTimer::new()),
            endgame: tokio::sync::watch::Sender::new(false),
            regions: std::sync::OnceLock::new(),
        }
    }

    /// From now on each block is asked first of the closest nodes of its
    /// key, found in the region of the keyspace that spans it (looked up
    /// once a region and kept a while, `Node::closest_in_region`), and
    /// looked up on its own only when none of those has it. For transfers
    /// of many blocks: a find_value lookup a block was most of their
    /// requests (an erasure-coded chunk is n shards), and a region's lookup
    /// costs more than one block's.
    pub fn ask_by_region(&self) {
        let _ = self.regions.set(Default::default());
    }

    /// `peer` fell far behind: it is tried last, and kept out of lookups
    /// while the block may be had elsewhere, for the rest of the transfer.
    /// True when it was not known as slow.
    pub fn mark_slow(&self, peer: SocketAddr) -> bool {
        lock(&self.marks).slow(peer)
    }

    /// Every fetch of the transfer has started: the links have room, so a
    /// fetch running past the usual time is hedged at once (libtorrent's
    /// end game), running ones included.
    pub fn enter_endgame(&self) {
        self.endgame
            .send_if_modified(|on| !std::mem::replace(on, true));
    }
}

/// What one block's fetch met besides its bytes, for a transfer's totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Copies rejected: bytes that did not match the key.
    pub rejected: u64,
    /// Asks that timed out or broke off.
    pub retries: u64,
    /// Asks started because an earlier one fell far behind.
    pub hedged: u64,
    /// Waits before another round, after one that found nothing.
    pub backoffs: u64,
}

/// A verified block and where it came from.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub data: Vec<u8>,
    pub from: SocketAddr,
    pub tally: Tally,
}

/// What a fetch that met no holder says: nobody holds it when every
/// request of its lookup was answered; when some went unanswered, that the
/// network may be the cause (and a timeout, which callers report as one).
const NO_HOLDER: &str = "no node holds it";

fn no_holder_found(found: &LookupResult) -> (String, bool) {
    match found.failed {
        0 => (NO_HOLDER.into(), false),
        failed => (
            format!(
                "no node said it holds it, and {failed} of the lookup's {} requests went \
                 unanswered (a slow or lossy network, or peers gone)",
                found.contacted
            ),
            true,
        ),
    }
}

/// Why no node supplied a block.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{why}")]
pub struct Unfetched {
    /// What the last try met.
    pub why: String,
    /// The last try failed on a peer that timed out or broke off, rather than
    /// on nobody holding the block (or only liars).
    pub timed_out: bool,
    pub tally: Tally,
}

impl Node {
    /// Block `key` of at most `max` bytes from some other node, verified
    /// against its key. Never reads this node's own store: a scrub fetches
    /// the good copy of a block it holds corrupt.
    ///
    /// A round is a find_value lookup and asks of its candidates in turn
    /// (holders first, then the closest nodes): the next starts at once
    /// when an ask fails, and as a hedge, beside the running ones, when the
    /// newest falls far behind. With no candidate left to hedge to, a new
    /// lookup runs beside the asks, neither asking nor believing the peers
    /// already tried: a peer that says it holds every key and then stalls
    /// must not end every lookup at itself; in the transfer's end game its
    /// first new candidate is asked as soon as it is found. Lookups neither
    /// ask nor believe the transfer's liars, nor its slow peers until a
    /// lookup found nobody new, or no holder (then the next lookup runs at
    /// once). Rounds repeat while they unmask liars (a
    /// liar a fetch sharing the transfer caught a moment before counts),
    /// with a short backoff otherwise; after a round that found nothing, peers that timed out or
    /// broke off are asked again, as a busy honest holder may.
    pub async fn fetch_verified(
        &self,
        key: Id,
        max: u64,
        transfer: &Transfer,
    ) -> Result<Fetched, Unfetched> {
        let clock = self.inner.clock.clone();
        let floor_ms = 2 * self.soft_timeout().as_millis() as u64;
        // Far behind: a loser that ran this long is marked slow.
        let slow_ms = lock(&transfer.timer).hedge_after_ms(max, floor_ms);
        let mut endgame = transfer.endgame.subscribe();
        let hedge_for = |ended: bool| match ended {
            false => slow_ms,
            true => lock(&transfer.timer).endgame_after_ms(max, floor_ms),
        };
        let mut ended = *endgame.borrow_and_update();
        let mut hedge_ms = hedge_for(ended);
        let me = self.inner.me.addr;
        let mut tally = Tally::default();
        let mut last = (String::from(NO_HOLDER), false);
        // Whether `last` is what a peer did (bad bytes, a timeout), which
        // says more than what the last lookup found.
        let mut peer_said = false;
        // Peers asked for this block (running, or failed to deliver it).
        let mut tried: HashSet<SocketAddr> = HashSet::new();
        // Peers that timed out or broke off: asked again after a round
        // that found nobody else (a busy honest holder is not a liar).
        let mut broke: HashSet<SocketAddr> = HashSet::new();
        let mut queue: VecDeque<SocketAddr> = VecDeque::new();
        let mut running = FuturesUnordered::new();
        // Asks running, with when each started (ms).
        let mut started: Vec<(SocketAddr, u64)> = Vec::new();
        let mut lookup: Option<BoxFuture<LookupResult>> = None;
        // Asking by region: the key's closest nodes first, as a put placed
        // it; a lookup only once they have all failed to deliver it. The
        // transfer's liars and slow peers are left to the lookups' rules.
        if let Some(regions) = transfer.regions.get() {
            let seeds = self.closest_in_region(key, SEEDS, regions).await;
            let avoided = lock(&transfer.marks).avoided();
            queue.extend(
                seeds
                    .iter()
                    .map(|c| c.addr)
                    .filter(|a| *a != me && !avoided.contains(a)),
            );
        }
        // Whether the lookup running was a hedge (nobody was left to hedge
        // to): in the end game its first new candidate is then asked as
        // soon as it is found, not a whole hedge delay later. Not before:
        // on capped links that doubled a get's hedges (66 of 64 chunks,
        // against 33-38 without) for no gain.
        let mut hedge_lookup = false;
        // When the newest ask or lookup started: the hedge clock.
        let mut newest = clock.now_ms();
        // Lookups run; rounds that ended with nothing and no liar caught;
        // whether the round under way caught one.
        let (mut rounds, mut failed_rounds, mut caught) = (0u32, 0u32, false);
        // Slow peers are believed again once a lookup found nobody new or a
        // round failed: otherwise, while a trickler holds the only ask, the
        // hedges' lookups would skip a slow but honest holder until the
        // rounds ran out (CI saw a get fail so).
        let mut believe_slow = false;
        // Whether the running lookup keeps slow peers out.
        let mut skipping_slow = false;
        // Asks `peer` beside the asks running.
        macro_rules! hedge_to {
            ($peer:expr) => {{
                let peer = $peer;
                tally.hedged += 1;
                Stats::inc(&self.inner.stats.fetch_hedged);
                tried.insert(peer);
                running.push(self.ask(peer, key, max));
                newest = clock.now_ms();
                started.push((peer, newest));
            }};
        }
        loop {
            if lookup.is_none() && queue.is_empty() && running.is_empty() {
                if rounds > 0 && !caught {
                    failed_rounds += 1;
                }
                if failed_rounds >= ROUNDS || rounds >= MAX_ROUNDS {
                    return Err(Unfetched {
                        why: last.0,
                        timed_out: last.1,
                        tally,
                    });
                }
                if failed_rounds > 0 {
                    let backoff = Duration::from_millis(200 * u64::from(failed_rounds));
                    tally.backoffs += 1;
                    Stats::inc(&self.inner.stats.fetch_backoffs);
                    clock.sleep(backoff).await;
                    believe_slow = true;
                    for peer in broke.drain() {
                        tried.remove(&peer);
                    }
                }
                caught = false;
                rounds += 1;
                lookup = Some(self.holder_lookup(key, transfer, &tried, !believe_slow));
                skipping_slow = !believe_slow && lock(&transfer.marks).any_slow();
                hedge_lookup = false;
                newest = clock.now_ms();
            }
            if running.is_empty() {
                if let Some(peer) = queue.pop_front() {
                    tried.insert(peer);
                    running.push(self.ask(peer, key, max));
                    newest = clock.now_ms();
                    started.push((peer, newest));
                }
            }
            // Far behind: hedge to the next candidate, or look for more.
            let can_hedge = !running.is_empty()
                && running.len() < MAX_IN_FLIGHT
                && (!queue.is_empty() || (lookup.is_none() && rounds < MAX_ROUNDS));
            let hedge_in = (newest + hedge_ms).saturating_sub(clock.now_ms());
            tokio::select! {
                biased;
                Some((peer, result)) = running.next() => {
                    let began = started.iter().find(|s| s.0 == peer).map_or(0, |s| s.1);
                    started.retain(|s| s.0 != peer);
                    match result {
                        Ok(data) if Id::of_block(&data) == key => {
                            let now = clock.now_ms();
                            let took = now.saturating_sub(began);
                            lock(&transfer.timer).record(data.len() as u64, took * 1000);
                            // Whoever is still running fell far behind this copy.
                            for (loser, since) in started {
                                if now.saturating_sub(since) >= slow_ms {
                                    self.mark_slow(transfer, loser, key);
                                }
                            }
                            return Ok(Fetched { data, from: peer, tally });
                        }
                        Ok(_) => {
                            tally.rejected += 1;
                            Stats::inc(&self.inner.stats.fetch_rejected);
                            tracing::warn!(peer = %peer, key = %key, "peer sent bytes that do not match the key; avoiding it");
                            // Caught by this fetch, even if a fetch sharing the
                            // transfer caught it a moment before.
                            lock(&transfer.marks).liar(peer);
                            caught = true;
                            last = (format!("{peer} sent bad bytes"), false);
                            peer_said = true;
                        }
                        Err(FetchError::Absent) => {}
                        Err(e) => {
                            tally.retries += 1;
                            if matches!(e, FetchError::Timeout | FetchError::Io(_)) {
                                broke.insert(peer);
                            }
                            if e == FetchError::Timeout {
                                self.mark_slow(transfer, peer, key);
                            }
                            last = (format!("{peer}: {e}"), true);
                            peer_said = true;
                        }
                    }
                    // The ask that set the hedge clock ended without the
                    // block (a hedge to a node that does not hold it answers
                    // at once): the clock goes back to the newest ask still
                    // running, so one far behind is hedged again now, not a
                    // whole delay later for every such node queued.
                    if began == newest {
                        if let Some(since) = started.iter().map(|s| s.1).max() {
                            newest = since;
                        }
                    }
                }
                Some(found) = async { lookup.as_mut()?.await.into() }, if lookup.is_some() => {
                    lookup = None;
                    if found.holders.is_empty() && !peer_said {
                        last = no_holder_found(&found);
                    }
                    // The lookup kept the slow peers out and found no holder:
                    // they may be the only ones. Look again believing them,
                    // at once, rather than a failed round's backoff later
                    // (at 1% loss, a get whose every holder of one chunk had
                    // met a retransmission stall waited so).
                    let look_again = std::mem::take(&mut skipping_slow)
                        && found.holders.is_empty()
                        && !believe_slow;
                    let candidates = found.holders.iter().chain(&found.closest).map(|c| c.addr);
                    let marks = lock(&transfer.marks);
                    // The lookup neither asked nor believed the liars known
                    // when it began: any among its answers were caught since,
                    // by a fetch sharing this transfer. That is a liar this
                    // round met, not a round that found nothing: three such
                    // rounds could end a chunk's fetch in a gateway's
                    // read-ahead with its holder alive.
                    caught |= candidates.clone().any(|c| marks.is_liar(&c));
                    let fresh = marks.order(candidates, Some(me));
                    drop(marks);
                    let queued = queue.len();
                    for peer in fresh {
                        if !tried.contains(&peer) && !queue.contains(&peer) {
                            queue.push_back(peer);
                        }
                    }
                    believe_slow |= queue.len() == queued;
                    if look_again && rounds < MAX_ROUNDS {
                        believe_slow = true;
                        rounds += 1;
                        lookup = Some(self.holder_lookup(key, transfer, &tried, false));
                        hedge_lookup = false;
                    }
                    if std::mem::take(&mut hedge_lookup)
                        && ended
                        && !running.is_empty()
                        && running.len() < MAX_IN_FLIGHT
                    {
                        if let Some(peer) = queue.pop_front() {
                            hedge_to!(peer);
                        }
                    }
                }
                Ok(()) = endgame.changed(), if !ended => {
                    ended = true;
                    hedge_ms = hedge_for(true);
                }
                _ = clock.sleep(Duration::from_millis(hedge_in)), if can_hedge => {
                    newest = clock.now_ms();
                    match queue.pop_front() {
                        Some(peer) => hedge_to!(peer),
                        None => {
                            rounds += 1;
                            lookup = Some(self.holder_lookup(key, transfer, &tried, !believe_slow));
                            skipping_slow = !believe_slow && lock(&transfer.marks).any_slow();
                            hedge_lookup = true;
                        }
                    }
                }
            }
        }
    }

    /// A find_value lookup for `key` that neither asks nor believes this
    /// transfer's liars, the peers in `tried`, and, with `skip_slow`, its
    /// slow peers.
    fn holder_lookup(
        &self,
        key: Id,
        transfer: &Transfer,
        tried: &HashSet<SocketAddr>,
        skip_slow: bool,
    ) -> BoxFuture<LookupResult> {
        let marks = lock(&transfer.marks);
        let mut avoid = if skip_slow {
            marks.avoided()
        } else {
            marks.liars()
        };
        drop(marks);
        avoid.extend(tried);
        let node = self.clone();
        Box::pin(async move {
            node.lookup_avoiding(key, LookupKind::FindValue, &avoid)
                .await
        })
    }

    /// `peer` fell far behind on `key`: it is tried last from now on.
    fn mark_slow(&self, transfer: &Transfer, peer: SocketAddr, key: Id) {
        if transfer.mark_slow(peer) {
            Stats::inc(&self.inner.stats.fetch_slow_peers);
            tracing::debug!(peer = %peer, key = %key, "peer fell far behind; trying it last from now on");
        }
    }

    /// One ask of `peer` for the block, bounded by [`ASK_MAX_MS`].
    fn ask(
        &self,
        peer: SocketAddr,
        key: Id,
        max: u64,
    ) -> impl std::future::Future<Output = (SocketAddr, Result<Vec<u8>, FetchError>)> {
        let fetch = self.inner.transport.fetch_block(peer, key, max);
        let limit = self.inner.clock.sleep(Duration::from_millis(ASK_MAX_MS));
        async move {
            let result = tokio::select! {
                r = fetch => r,
                _ = limit => Err(FetchError::Timeout),
            };
            (peer, result)
        }
    }
}
