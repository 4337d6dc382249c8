//! The Kademlia routing table: 256 k-buckets of contacts, kept fresh by the
//! least-recently-seen eviction rule (after libp2p's `kbucket`).
//!
//! Pure: the caller passes the time in as `now` (milliseconds) and performs
//! any ping the table asks for, reporting the outcome back.

mod admission;
mod bucket;
mod table;

pub use admission::{Breach, IpLimits};
pub use bucket::{Entry, Observed};
pub use table::{Heard, RoutingTable};

/// Sizes and limits of the routing table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutingConfig {
    /// Bucket size: entries kept per distance range.
    pub k: usize,
    /// Nodes remembered per bucket to take the place of entries that die.
    pub replacement_cache: usize,
    /// Consecutive failed requests before an entry is dropped.
    pub max_failures: u32,
    /// Per-IP and per-prefix limits on entries.
    pub ip_limits: IpLimits,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            k: 20,
            replacement_cache: 8,
            max_failures: 3,
            ip_limits: IpLimits::default(),
        }
    }
}

/// The acceptance test of routing and lookup together: lookups over 1,000
/// real routing tables, no sockets. It lives here, not in `lookup`, only to
/// keep that file short; the name keeps it under `cargo test lookup`.
#[cfg(test)]
mod lookup_sim {
    use super::*;
    use crate::contact::Contact;
    use crate::id::{Distance, Id};
    use crate::lookup::{Lookup, LookupConfig, LookupKind, LookupResult};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::collections::{HashMap, VecDeque};
    use std::net::SocketAddr;
    use std::sync::OnceLock;

    const NODES: usize = 1000;
    const LOOKUPS: usize = 250;

    struct Net {
        contacts: Vec<Contact>,
        index: HashMap<Id, usize>,
        tables: Vec<RoutingTable>,
    }

    /// Built once for both tests: filling the tables is most of the cost.
    fn net() -> &'static Net {
        static NET: OnceLock<Net> = OnceLock::new();
        NET.get_or_init(|| {
            let mut rng = StdRng::seed_from_u64(1);
            let contacts: Vec<Contact> = (0..NODES)
                .map(|i| {
                    let addr = SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 7000));
                    Contact::new(Id(rng.gen()), addr)
                })
                .collect();
            let index = contacts
                .iter()
                .enumerate()
                .map(|(i, c)| (c.id, i))
                .collect();
            let fill = |me: &Contact| {
                let mut table = RoutingTable::new(me.id, RoutingConfig::default(), 0);
                for c in &contacts {
                    if let Observed::Pending { ping } = table.observe(*c, Heard::Pong, 0) {
                        table.on_ping_result(&ping.id, true, 0);
                    }
                }
                table
            };
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let tables = std::thread::scope(|s| {
                let chunks = contacts.chunks(NODES.div_ceil(threads));
                let workers: Vec<_> = chunks
                    .map(|chunk| s.spawn(move || chunk.iter().map(fill).collect::<Vec<_>>()))
                    .collect();
                let filled = workers
                    .into_iter()
                    .map(|w| w.join().expect("filler panicked"));
                filled.flatten().collect()
            });
            Net {
                contacts,
                index,
                tables,
            }
        })
    }

    /// One lookup driven as the engine does, the oldest request answered
    /// first; a live peer replies with the `reply` closest it knows.
    fn run(net: &Net, origin: usize, target: Id, dead: &[bool], reply: usize) -> LookupResult {
        let seeds = net.tables[origin].closest(&target, 7);
        let me = Some(net.contacts[origin]);
        let cfg = LookupConfig::default();
        let mut lookup = Lookup::new(target, LookupKind::FindNode, cfg, me, seeds, 0);
        let mut queue = VecDeque::new();
        loop {
            queue.extend(lookup.next_peers());
            if lookup.is_finished() {
                return lookup.result();
            }
            let peer: Contact = queue.pop_front().expect("unfinished means in flight");
            let i = net.index[&peer.id];
            if dead[i] {
                lookup.on_failure(&peer.id);
            } else {
                lookup.on_success(&peer.id, net.tables[i].closest(&target, reply));
            }
        }
    }

    /// Runs the lookups and returns how many found exactly the 7 live nodes
    /// closest to their target.
    fn check(dead_share: f64, reply: usize) -> usize {
        let net = net();
        let mut rng = StdRng::seed_from_u64(2);
        let dead: Vec<bool> = (0..NODES).map(|_| rng.gen_bool(dead_share)).collect();
        let live: Vec<usize> = (0..NODES).filter(|&i| !dead[i]).collect();
        let (mut exact, mut hops) = (0, Vec::new());
        for n in 0..LOOKUPS {
            let origin = live[rng.gen_range(0..live.len())];
            // Some targets are node ids, as joins and refreshes look up.
            let target = match n % 10 {
                0 => net.contacts[rng.gen_range(0..NODES)].id,
                _ => Id(rng.gen()),
            };
            let mut want: Vec<(Distance, Id)> = live
                .iter()
                .map(|&i| (net.contacts[i].id.distance(&target), net.contacts[i].id))
                .collect();
            want.select_nth_unstable(7);
            want.truncate(7);
            want.sort_unstable();
            let want: Vec<Id> = want.into_iter().map(|(_, id)| id).collect();
            let result = run(net, origin, target, &dead, reply);
            let got: Vec<Id> = result.closest.iter().map(|c| c.id).collect();
            assert_eq!(got.len(), 7);
            assert!(got
                .windows(2)
                .all(|w| w[0].distance(&target) < w[1].distance(&target)));
            assert!(
                got.iter().all(|id| !dead[net.index[id]]),
                "a dead node in {got:?}"
            );
            exact += usize::from(got == want);
            hops.push(result.hops);
        }
        hops.sort_unstable();
        println!(
            "lookup {NODES} nodes, {}% dead, {reply}-contact replies: {LOOKUPS} lookups, \
             {}% exact, hops median {} max {}",
            dead_share * 100.0,
            exact * 100 / LOOKUPS,
            hops[LOOKUPS / 2],
            hops[LOOKUPS - 1],
        );
        exact
    }

    #[test]
    fn lookups_find_the_true_closest() {
        assert_eq!(check(0.0, 7), LOOKUPS);
    }

    #[test]
    fn lookups_route_around_a_tenth_dead() {
        // Replies of 7 from tables still listing the dead cannot carry the
        // 9th closest node, which is in the live top 7 whenever two of the 8
        // closer ones are dead: exactness needs longer replies.
        assert_eq!(check(0.1, 20), LOOKUPS);
        // With 7-contact replies the misses are exactly those; keep them rare.
        assert!(check(0.1, 7) * 100 >= LOOKUPS * 80);
    }
}
