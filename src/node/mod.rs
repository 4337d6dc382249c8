//! The protocol engine: answers requests, matches responses to pending magics,
//! runs lookups and stores. It reaches the network only through a [`Transport`]
//! and time only through a [`Clock`], so a simulation can drive it.

mod handlers;
mod lookups;
pub mod pending;
mod rpc;
mod store_value;
pub mod transport;
mod upkeep;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::contact::Contact;
use crate::lookup::LookupConfig;
use crate::routing::{RoutingConfig, RoutingTable};
use crate::stats::Stats;
use crate::store::BlockStore;

pub use lookups::StoreReport;
pub use rpc::RequestError;
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
            max_concurrent_pulls: 16,
            max_pending: 4096,
            is_holder: true,
            bucket_refresh: Duration::from_secs(3600),
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
}

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
        let table = RoutingTable::new(me.id, cfg.routing.clone(), clock.now_ms());
        Node {
            inner: Arc::new(Inner {
                me,
                pending: pending::Pending::new(cfg.max_pending),
                pulls: Semaphore::new(cfg.max_concurrent_pulls),
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
        // A panic while holding the lock leaves a table that is still a valid
        // structure (every method keeps its invariants before returning), so
        // recovering from poisoning is safe.
        self.inner
            .table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
