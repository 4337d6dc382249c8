//! The simulated network: virtual addresses mapped to nodes in this process,
//! and the faults between them (delay, which also reorders; loss;
//! duplication; a partition). Nothing here touches a socket.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;

use super::liar::{Liar, Verdict};
use crate::id::Id;
use crate::node::{FetchError, Node};

/// How long a block fetch to an address nobody answers at hangs before it
/// fails, as a TCP connect to a dead host would.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The fault settings.
#[derive(Clone, Debug)]
pub struct Faults {
    pub loss: f64,
    pub dup: f64,
    /// One-way delay bounds, in microseconds.
    pub delay_us: (u64, u64),
}

/// What a live address leads to.
#[derive(Clone)]
pub struct Endpoint {
    pub node: Node,
    /// Set for a hostile host, which answers requests itself.
    pub liar: Option<Arc<Liar>>,
}

/// What the network did, for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetCounters {
    /// Datagrams handed to the network by live nodes.
    pub sent: u64,
    /// Of those, lost to `--loss`.
    pub lost: u64,
    /// Of those, dropped between the two sides of a partition.
    pub cut: u64,
    /// Of those, delivered twice.
    pub duplicated: u64,
    /// Copies that arrived at a live node.
    pub delivered: u64,
    /// Copies that arrived where no node lives (any more).
    pub to_nobody: u64,
    /// Block fetches, and those that found nobody (dead or cut off).
    pub fetches: u64,
    pub fetches_failed: u64,
    /// Datagrams in flight now, and at most.
    pub in_flight: u64,
    pub max_in_flight: u64,
}

struct State {
    rng: StdRng,
    live: HashMap<SocketAddr, Endpoint>,
    /// Which side of a partition each address is on (kept across restarts).
    sides: HashMap<SocketAddr, bool>,
    partitioned: bool,
    counters: NetCounters,
}

/// The network every simulated node sends through.
pub struct Net {
    faults: Faults,
    state: Mutex<State>,
}

impl Net {
    /// A network with these faults, drawing from `rng`.
    pub fn new(faults: Faults, rng: StdRng) -> Arc<Net> {
        Arc::new(Net {
            faults,
            state: Mutex::new(State {
                rng,
                live: HashMap::new(),
                sides: HashMap::new(),
                partitioned: false,
                counters: NetCounters::default(),
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Datagrams to `addr` reach `endpoint` from now on.
    pub fn attach(&self, addr: SocketAddr, endpoint: Endpoint, side: bool) {
        let mut s = self.state();
        s.live.insert(addr, endpoint);
        s.sides.insert(addr, side);
    }

    /// Nobody answers at `addr` any more.
    pub fn detach(&self, addr: SocketAddr) {
        self.state().live.remove(&addr);
    }

    /// Splits the network in two, or heals it.
    pub fn set_partitioned(&self, on: bool) {
        self.state().partitioned = on;
    }

    /// Whether it is split now.
    pub fn partitioned(&self) -> bool {
        self.state().partitioned
    }

    /// What happened so far.
    pub fn counters(&self) -> NetCounters {
        self.state().counters.clone()
    }

    fn one_way(&self, rng: &mut StdRng) -> Duration {
        let (lo, hi) = self.faults.delay_us;
        Duration::from_micros(rng.gen_range(lo..=hi))
    }

    fn cut(s: &State, a: SocketAddr, b: SocketAddr) -> bool {
        s.partitioned && s.sides.get(&a) != s.sides.get(&b)
    }

    /// Sends one datagram from `from` to `to`: maybe lost, maybe twice, late.
    pub fn send(self: &Arc<Self>, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) {
        let delays = {
            let mut s = self.state();
            s.counters.sent += 1;
            if Self::cut(&s, from, to) {
                s.counters.cut += 1;
                return;
            }
            if s.rng.gen_bool(self.faults.loss) {
                s.counters.lost += 1;
                return;
            }
            let copies = if s.rng.gen_bool(self.faults.dup) {
                s.counters.duplicated += 1;
                2
            } else {
                1
            };
            s.counters.in_flight += copies;
            s.counters.max_in_flight = s.counters.max_in_flight.max(s.counters.in_flight);
            let mut delays = [Duration::ZERO; 2];
            for d in delays.iter_mut().take(copies as usize) {
                *d = self.one_way(&mut s.rng);
            }
            delays.into_iter().take(copies as usize).collect::<Vec<_>>()
        };
        let last = delays.len() - 1;
        let mut bytes = Some(bytes);
        for (i, delay) in delays.into_iter().enumerate() {
            let copy = if i == last {
                bytes.take().unwrap_or_default()
            } else {
                bytes.clone().unwrap_or_default()
            };
            let net = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                net.deliver(from, to, &copy);
            });
        }
    }

    fn deliver(self: &Arc<Self>, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        let endpoint = {
            let mut s = self.state();
            s.counters.in_flight -= 1;
            let endpoint = s.live.get(&to).cloned();
            match endpoint {
                Some(_) => s.counters.delivered += 1,
                None => s.counters.to_nobody += 1,
            }
            endpoint
        };
        let Some(endpoint) = endpoint else { return };
        if let Some(liar) = &endpoint.liar {
            if let Verdict::Reply(reply) = liar.answer(bytes) {
                self.send(to, from, reply);
                return;
            }
        }
        endpoint.node.handle_datagram(from, bytes);
    }

    /// Fetches block `key` from the node at `to` over the (simulated) block
    /// protocol, for the node at `from`. Does not check the hash.
    pub async fn fetch(
        self: Arc<Self>,
        from: SocketAddr,
        to: SocketAddr,
        key: Id,
        max_len: u64,
    ) -> Result<Vec<u8>, FetchError> {
        let rtt = {
            let mut s = self.state();
            self.one_way(&mut s.rng) + self.one_way(&mut s.rng)
        };
        tokio::time::sleep(rtt).await;
        let endpoint = {
            let mut s = self.state();
            s.counters.fetches += 1;
            let reachable = !Self::cut(&s, from, to);
            let endpoint = s.live.get(&to).cloned().filter(|_| reachable);
            if endpoint.is_none() {
                s.counters.fetches_failed += 1;
            }
            endpoint
        };
        let Some(endpoint) = endpoint else {
            tokio::time::sleep(CONNECT_TIMEOUT).await;
            return Err(FetchError::Io(format!("connect to {to} timed out")));
        };
        let data = match &endpoint.liar {
            Some(_) => Some(Liar::junk(&key)),
            None => endpoint
                .node
                .blocks()
                .get_for_serving(&key)
                .map_err(|e| FetchError::Io(e.to_string()))?,
        };
        match data {
            None => Err(FetchError::Absent),
            Some(d) if d.len() as u64 > max_len => Err(FetchError::TooLarge {
                len: d.len() as u64,
                max: max_len,
            }),
            Some(d) => Ok(d),
        }
    }
}
