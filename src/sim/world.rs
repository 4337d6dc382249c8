//! The population: every host that ever lived, with its store (its disk),
//! its current engine incarnation while up, and what the run recorded. Hosts
//! are kept in a `Vec` by index, so any walk over them is in a fixed order.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::rngs::StdRng;
use rand::Rng;

use super::clock::SimClock;
use super::config::SimConfig;
use super::failures::{Check, Failures};
use super::liar::Liar;
use super::net::{Endpoint, Faults, Net};
use super::record::{BlockRecord, LookupRecord};
use super::seeds::{self, Stream};
use super::store::MemStore;
use super::transport::SimTransport;
use crate::contact::Contact;
use crate::id::Id;
use crate::node::{Node, NodeConfig};
use crate::stats::Stats;
use crate::wire::RequestType;

/// Where a host is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Life {
    Up,
    /// Crashed; will restart on its store.
    Down,
    /// Left for good.
    Gone,
}

/// One simulated machine.
pub struct Host {
    pub id: Id,
    pub addr: SocketAddr,
    pub liar: bool,
    /// Its side of a partition.
    pub side: bool,
    /// Survives crashes, as a disk does.
    pub store: Arc<MemStore>,
    pub life: Life,
    /// The running engine, while up.
    pub node: Option<Node>,
    /// Cleared when this incarnation dies.
    pub alive: Arc<AtomicBool>,
    pub incarnation: u64,
    /// Its join finished (it may be asked to look up, store, bootstrap others).
    pub joined: bool,
    /// Its routing table when it crashed, for a restart that keeps it.
    pub snapshot: Vec<Contact>,
}

/// Counters summed over the incarnations that ended.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    pub timeouts: u64,
    pub requests: u64,
    pub stores_saved: u64,
    pub stores_bad_hash: u64,
    pub refused_pending_full: u64,
    pub unmatched: u64,
    /// Bytes repair fetched and stored.
    pub repair_bytes: u64,
}

impl Totals {
    /// Adds one incarnation's counters.
    pub fn add(&mut self, s: &Stats) {
        use crate::stats::Outcome;
        for kind in RequestType::ALL {
            self.timeouts += s.sent.get(kind, Outcome::Timeout);
            for o in Outcome::ALL {
                self.requests += s.sent.get(kind, o);
            }
        }
        self.stores_saved += Stats::get(&s.stores_saved);
        self.stores_bad_hash += Stats::get(&s.stores_bad_hash);
        self.refused_pending_full += Stats::get(&s.requests_refused_pending_full);
        self.unmatched += Stats::get(&s.responses_unmatched);
        self.repair_bytes += Stats::get(&s.repair_bytes_read) + Stats::get(&s.repair_bytes_written);
    }
}

/// Everything the run shares between its tasks.
pub struct World {
    pub cfg: SimConfig,
    pub node_cfg: NodeConfig,
    pub start: tokio::time::Instant,
    pub net: Arc<Net>,
    /// The scenario's choices.
    pub rng: StdRng,
    pub hosts: Vec<Host>,
    /// Every node id ever, to tell a made-up id.
    pub by_id: HashMap<Id, usize>,
    pub lookups: Vec<LookupRecord>,
    pub lookups_aborted: u64,
    pub blocks: Vec<BlockRecord>,
    /// Files put (see `files.rs`), and what they came to at the end.
    pub files: Vec<super::files::FileRecord>,
    pub files_outcome: super::files::FilesOutcome,
    /// Blocks the file puts begun so far make (chunks, or stripes and shards).
    pub file_blocks: usize,
    pub failures: Failures,
    pub retired: Totals,
    pub max_table: usize,
    pub max_pending: usize,
    pub max_tasks: usize,
    /// A partition happened and healed.
    pub healed: bool,
    /// Set when the run winds down: loops stop.
    pub stop: Arc<AtomicBool>,
}

/// The world, as every task holds it. Locked briefly, never across an await.
pub type Shared = Arc<Mutex<World>>;

/// Locks the world.
pub fn lock(shared: &Shared) -> MutexGuard<'_, World> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

impl World {
    /// An empty world for `cfg`, its clock starting at `start`.
    pub fn new(cfg: SimConfig, start: tokio::time::Instant) -> World {
        let faults = Faults {
            loss: cfg.loss,
            dup: cfg.dup,
            delay_us: (cfg.delay_ms.0 * 1000, cfg.delay_ms.1 * 1000),
        };
        let net = Net::new(faults, seeds::rng(cfg.seed, Stream::Net, 0));
        World {
            rng: seeds::rng(cfg.seed, Stream::World, 0),
            failures: Failures::new(cfg.seed),
            node_cfg: NodeConfig::default(),
            cfg,
            start,
            net,
            hosts: Vec::new(),
            by_id: HashMap::new(),
            lookups: Vec::new(),
            lookups_aborted: 0,
            blocks: Vec::new(),
            files: Vec::new(),
            files_outcome: Default::default(),
            file_blocks: 0,
            retired: Totals::default(),
            max_table: 0,
            max_pending: 0,
            max_tasks: 0,
            healed: false,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Simulated milliseconds since the start.
    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Whether the run is winding down.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Adds a new host (a fresh id and address), down until booted.
    pub fn add_host(&mut self, liar: bool) -> usize {
        let index = self.hosts.len();
        let id = loop {
            let id = Id(self.rng.gen());
            if !self.by_id.contains_key(&id) {
                break id;
            }
        };
        // Public-looking virtual addresses in 11.0.0.0/8, port 7400; never a
        // socket. Scattered over the /24s as Internet hosts are (an odd
        // multiplier permutes 24 bits), so the per-prefix limits of the
        // routing table see one node per /24, not 256.
        let n = (index as u32 + 1).wrapping_mul(2_654_435_761) & 0x00ff_ffff;
        let addr = SocketAddr::from(([11, (n >> 16) as u8, (n >> 8) as u8, n as u8], 7400));
        let side = self.rng.gen();
        self.by_id.insert(id, index);
        self.hosts.push(Host {
            id,
            addr,
            liar,
            side,
            store: Arc::new(MemStore::new(self.cfg.bug)),
            life: Life::Down,
            node: None,
            alive: Arc::new(AtomicBool::new(false)),
            incarnation: 0,
            joined: false,
            snapshot: Vec::new(),
        });
        index
    }

    /// Starts a new engine incarnation of host `index` on its store.
    pub fn boot(&mut self, index: usize) -> Node {
        let seed = self.cfg.seed;
        let (node_cfg, start, net) = (self.node_cfg.clone(), self.start, self.net.clone());
        let host = &mut self.hosts[index];
        host.incarnation += 1;
        let alive = Arc::new(AtomicBool::new(true));
        let me = Contact::new(host.id, host.addr);
        let rng = seeds::rng(
            seed,
            Stream::Node,
            ((index as u64) << 20) | host.incarnation,
        );
        let k = node_cfg.lookup.k;
        let node = Node::new(
            me,
            node_cfg,
            Arc::new(SimTransport::new(net.clone(), host.addr, alive.clone())),
            Arc::new(SimClock::new(start, rng)),
            host.store.clone(),
            Arc::new(Stats::default()),
        );
        let liar = host.liar.then(|| Arc::new(Liar::new(me, k)));
        net.attach(
            host.addr,
            Endpoint {
                node: node.clone(),
                liar,
            },
            host.side,
        );
        host.alive = alive;
        host.node = Some(node.clone());
        host.life = Life::Up;
        host.joined = false;
        node
    }

    /// Host `index` crashes: its engine stops, its store stays.
    pub fn crash(&mut self, index: usize) {
        let host = &mut self.hosts[index];
        host.alive.store(false, Ordering::Relaxed);
        self.net.detach(host.addr);
        if let Some(node) = host.node.take() {
            host.snapshot = node.routing_contacts();
            self.retired.add(node.stats());
        }
        host.life = Life::Down;
        host.joined = false;
    }

    /// Host `index` leaves for good, with its store.
    pub fn leave(&mut self, index: usize) {
        self.crash(index);
        let host = &mut self.hosts[index];
        host.life = Life::Gone;
        host.snapshot = Vec::new();
        host.store = Arc::new(MemStore::new(None));
    }

    /// Every up honest host's engine and store, in host order.
    pub fn up_honest(&self) -> Vec<(Node, Arc<MemStore>)> {
        self.hosts
            .iter()
            .filter(|h| h.life == Life::Up && !h.liar)
            .filter_map(|h| Some((h.node.clone()?, h.store.clone())))
            .collect()
    }

    /// A random up host passing `keep`, if any.
    pub fn pick(&mut self, keep: impl Fn(&Host) -> bool) -> Option<usize> {
        let eligible: Vec<usize> = (0..self.hosts.len())
            .filter(|&i| self.hosts[i].life == Life::Up && keep(&self.hosts[i]))
            .collect();
        if eligible.is_empty() {
            return None;
        }
        Some(eligible[self.rng.gen_range(0..eligible.len())])
    }

    /// A random up, joined, honest host: who stores, looks up, bootstraps.
    pub fn pick_honest(&mut self) -> Option<usize> {
        self.pick(|h| h.joined && !h.liar)
    }

    /// Records a broken invariant.
    pub fn fail(&mut self, check: Check, what: String) {
        let now = self.now_ms();
        self.failures.record(now, check, what);
    }
}

impl World {
    /// A node for host `index` to join through: a random honest joined one.
    pub fn pick_bootstrap(&mut self, index: usize) -> Option<Contact> {
        self.pick_honest()
            .filter(|&i| i != index)
            .map(|i| Contact::new(self.hosts[i].id, self.hosts[i].addr))
    }
}
