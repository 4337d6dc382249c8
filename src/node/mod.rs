//! The protocol engine: answers requests, matches responses to pending magics,
//! runs lookups and stores. It reaches the network only through a [`Transport`]
//! and time only through a [`Clock`], so a simulation can drive it.

mod checks;
mod fetch;
mod handlers;
mod lookups;
pub mod pending;
mod rpc;
mod shards;
mod store_value;
pub mod transport;
mod upkeep;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::addr::Source;
use crate::contact::Contact;
use crate::limits::{Rate, SourceLimiter, TokenBucket};
use crate::lookup::LookupConfig;
use crate::pacing::SendPacer;
use crate::routing::{RoutingConfig, RoutingTable};
use crate::rtt::RttEstimator;
use crate::stats::Stats;
use crate::store::BlockStore;

pub use fetch::{Fetched, Tally, Transfer, Unfetched};
pub use lookups::StoreReport;
pub use rpc::RequestError;
pub use shards::Shards;
pub use transport::{BoxFuture, Clock, FetchError, TokioClock, Transport};

/// The engine's knobs (the daemon fills them from the config file and flags).
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Bucket size, replacement cache and failure limit.
    pub routing: RoutingConfig,
    /// K (lookup width, nodes per answer, replicas) and α.
    pub lookup: LookupConfig,
    /// How long a DHT request waits for its answer.
    pub request_timeout: Duration,
    /// How long a store_value waits for "saved" (the receiver pulls the block first).
    pub store_timeout: Duration,
    /// How long a store_value pull may take.
    pub pull_timeout: Duration,
    /// Largest block accepted.
    pub max_block_size: u64,
    /// Most store_value pulls at once; more are refused as busy.
    pub max_concurrent_pulls: usize,
    /// Most requests of ours waiting for answers at once.
    pub max_pending: usize,
    /// Whether this node counts itself as a holder in lookups and asks to be
    /// remembered in routing tables (storage nodes do; a short-lived client
    /// marks its requests read-only instead).
    pub is_holder: bool,
    /// A bucket with no lookup in its range for this long is refreshed.
    pub bucket_refresh: Duration,
    /// The soft timeout of a lookup's request never falls below this.
    pub soft_timeout_min: Duration,
    /// Requests each source may send us (the IP on public addresses, the
    /// IP and port on local ones); more are dropped and counted.
    pub request_rate: Rate,
    /// Sources the request limiter tracks at once.
    pub max_rate_sources: usize,
    /// Pings checking unverified contacts and address conflicts.
    pub check_rate: Rate,
    /// Checks in flight at once.
    pub max_checks: usize,
    /// store_value pulls at once from one source.
    pub max_pulls_per_source: usize,
    /// A store_value is refused when we know at least `k + store_slack`
    /// nodes closer to its key than ourselves: we are not among its holders.
    pub store_slack: usize,
    /// Requests we send each peer, kept under the default `request_rate`
    /// so that we never meet a peer's limit; more wait their turn.
    pub send_rate: Rate,
    /// Requests that may wait their turn for one peer; more fail at once
    /// (busy), as do those whose turn would come after half their timeout.
    pub send_max_waiting: usize,
    /// store_values we have in flight to one peer at once, at most the
    /// default `max_pulls_per_source` (a peer refuses more as busy); more
    /// wait for a slot.
    pub send_stores_per_peer: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            routing: RoutingConfig::default(),
            lookup: LookupConfig::default(),
            request_timeout: Duration::from_secs(2),
            store_timeout: Duration::from_secs(30),
            pull_timeout: Duration::from_secs(20),
            max_block_size: 1 << 20,
            max_concurrent_pulls: 64,
            max_pending: 4096,
            is_holder: true,
            bucket_refresh: Duration::from_secs(3600),
            soft_timeout_min: Duration::from_millis(15),
            request_rate: Rate::new(250.0, 1000.0),
            max_rate_sources: 10_000,
            check_rate: Rate::new(20.0, 100.0),
            max_checks: 64,
            max_pulls_per_source: 16,
            store_slack: 7,
            send_rate: Rate::new(200.0, 800.0),
            send_max_waiting: 500,
            send_stores_per_peer: 16,
        }
    }
}

/// A cheap-to-clone handle on one node's engine.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    me: Contact,
    cfg: NodeConfig,
    table: Mutex<RoutingTable>,
    pending: pending::Pending,
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    blocks: Arc<dyn BlockStore>,
    stats: Arc<Stats>,
    pulls: Semaphore,
    /// store_value pulls running, per source.
    pulls_by_source: Mutex<HashMap<Source, usize>>,
    /// Requests per source.
    limiter: Mutex<SourceLimiter<Source>>,
    /// Round trips of our requests, for soft timeouts.
    rtt: Mutex<RttEstimator>,
    /// Peers that let a request run past its soft timeout, until when (ms).
    suspects: Mutex<HashMap<SocketAddr, u64>>,
    /// Checks of contacts: the addresses being checked, and the budget.
    checks: Mutex<(HashSet<SocketAddr>, TokenBucket)>,
    /// Turns of our requests to each peer.
    pacer: Mutex<SendPacer<SocketAddr>>,
    /// store_values of ours in flight or waiting for a slot, per peer.
    store_slots: Mutex<HashMap<SocketAddr, rpc::PeerSlots>>,
    /// store_values being run, by requester and magic: a resent copy of
    /// one is answered by the running store.
    stores_running: Mutex<HashSet<(SocketAddr, u64)>>,
}

/// Peers whose sending budgets are tracked at once (idle ones are forgotten).
const MAX_PACED_PEERS: usize = 10_000;

impl Node {
    /// A node with identity `me` (its id and the address it advertises).
    pub fn new(
        me: Contact,
        cfg: NodeConfig,
        transport: Arc<dyn Transport>,
        clock: Arc<dyn Clock>,
        blocks: Arc<dyn BlockStore>,
        stats: Arc<Stats>,
    ) -> Node {
        let now = clock.now_ms();
        let table = RoutingTable::new(me.id, cfg.routing.clone(), now);
        Node {
            inner: Arc::new(Inner {
                me,
                pending: pending::Pending::new(cfg.max_pending),
                pulls: Semaphore::new(cfg.max_concurrent_pulls),
                pulls_by_source: Mutex::new(HashMap::new()),
                limiter: Mutex::new(SourceLimiter::new(
                    cfg.request_rate,
                    cfg.max_rate_sources,
                    now,
                )),
                rtt: Mutex::new(RttEstimator::new()),
                suspects: Mutex::new(HashMap::new()),
                checks: Mutex::new((HashSet::new(), TokenBucket::new(cfg.check_rate, now))),
                pacer: Mutex::new(SendPacer::new(
                    cfg.send_rate,
                    cfg.send_max_waiting,
                    MAX_PACED_PEERS,
                )),
                store_slots: Mutex::new(HashMap::new()),
                stores_running: Mutex::new(HashSet::new()),
                table: Mutex::new(table),
                cfg,
                transport,
                clock,
                blocks,
                stats,
            }),
        }
    }

    /// This node's id and advertised address.
    pub fn me(&self) -> Contact {
        self.inner.me
    }

    /// The engine's settings.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.cfg
    }

    /// The counters this node bumps.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.inner.stats
    }

    /// The block store this node serves from.
    pub fn blocks(&self) -> &Arc<dyn BlockStore> {
        &self.inner.blocks
    }

    /// The clock this node reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Locks the routing table. Held briefly, never across an await.
    pub fn table(&self) -> MutexGuard<'_, RoutingTable> {
        lock(&self.inner.table)
    }

    /// The soft timeout a lookup gives each request now.
    pub fn soft_timeout(&self) -> Duration {
        let cfg = &self.inner.cfg;
        lock(&self.inner.rtt).soft_timeout(cfg.soft_timeout_min, cfg.request_timeout)
    }

    /// Requests of ours waiting for answers.
    pub fn pending_requests(&self) -> usize {
        self.inner.pending.len()
    }

    /// Every contact in the routing table, for snapshots.
    pub fn routing_contacts(&self) -> Vec<Contact> {
        self.table()
            .entries()
            .into_iter()
            .map(|(_, e)| e.contact)
            .collect()
    }

    /// The address datagrams to `addr` are sent from matters not; this is the
    /// address peers see us at: used to tell our own address apart in
    /// bootstrap lists.
    pub fn is_me(&self, addr: SocketAddr) -> bool {
        addr == self.inner.me.addr
    }
}

/// Locks `m`. A panic while holding one of the engine's locks leaves a
/// structure that is still valid (every method keeps its invariants before
/// returning), so recovering from poisoning is safe.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
