//! Each host's own schedule, as the daemon's (src/upkeep/schedule.rs): every
//! minute refresh stale buckets, every hour republish every held block and,
//! when the run repairs, check the stripes it is the closest holder of. A
//! liar also asks others to store made-up keys, for which it serves junk.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::liar::Liar;
use super::store::MemStore;
use super::world::{lock, Shared};
use crate::node::Node;
use crate::wire::message::encode_request;
use crate::wire::{Request, RequestBody};

/// How often the schedule wakes (the daemon's tick with default settings).
const TICK: Duration = Duration::from_secs(60);
/// Republish interval (the daemon's default).
const REPUBLISH: Duration = Duration::from_secs(3600);
/// Repair interval, when the run repairs (the daemon's default).
const REPAIR: Duration = Duration::from_secs(3600);
/// A liar asks for a store this often.
const SPAM: Duration = Duration::from_secs(600);

/// Runs host `index`'s schedule until its incarnation dies or the run stops.
pub async fn run(
    shared: Shared,
    index: usize,
    node: Node,
    alive: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    let (store, liar, repair) = {
        let w = lock(&shared);
        let host = &w.hosts[index];
        (host.store.clone(), host.liar, w.cfg.repair)
    };
    let mut backoff = crate::upkeep::Backoff::default();
    let clock = node.clock().clone();
    let refresh_age = node.config().bucket_refresh.as_millis() as u64;
    // Hosts start their schedules at different moments, as real ones do.
    let offset = clock.random_u64() % TICK.as_millis() as u64;
    clock.sleep(Duration::from_millis(offset)).await;
    let mut last_republish = clock.now_ms();
    let mut last_repair = clock.now_ms();
    let mut last_spam = clock.now_ms();
    let mut spam_n = 0u64;
    loop {
        clock.sleep(TICK).await;
        if !alive.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed) {
            return;
        }
        node.refresh_buckets(refresh_age).await;
        let now = clock.now_ms();
        if now - last_republish >= REPUBLISH.as_millis() as u64 && !liar {
            last_republish = now;
            republish(&node, &store).await;
        }
        if repair && !liar && now - last_repair >= REPAIR.as_millis() as u64 {
            last_repair = now;
            crate::upkeep::repair_keys(&node, store.keys(), &mut backoff).await;
        }
        if liar && now - last_spam >= SPAM.as_millis() as u64 {
            last_spam = now;
            spam_n += 1;
            ask_to_store_junk(&shared, &node, spam_n);
        }
    }
}

/// One republish pass over every held block, with the daemon's own walk
/// (src/upkeep/republish.rs): keys in keyspace order, a lookup per region.
pub async fn republish(node: &Node, store: &MemStore) {
    crate::upkeep::republish_keys(node, store.keys_with_copies()).await;
}

/// A liar asks a few peers of its table to store a made-up key.
fn ask_to_store_junk(shared: &Shared, node: &Node, n: u64) {
    let contacts = node.routing_contacts();
    if contacts.is_empty() {
        return;
    }
    let net = lock(shared).net.clone();
    let key = Liar::bogus_key(&node.me().id, n);
    for _ in 0..3 {
        let to = contacts[(node.clock().random_u64() % contacts.len() as u64) as usize];
        let req = Request {
            magic: node.clock().random_u64() & u64::from(u32::MAX),
            body: RequestBody::StoreValue(key, 0),
            requester: node.me(),
            read_only: false,
        };
        net.send(node.me().addr, to.addr, encode_request(&req));
    }
}
