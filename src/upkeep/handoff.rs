//! Handoff, the Kademlia paper's rule for newcomers: when a node we did not
//! know proves its id (its first verified pong), it may be among the K closest
//! of keys we hold; we store those blocks to it at once, rather than leave
//! them out of its reach until the next republish.
//!
//! Which keys: those in the ranges next to the newcomer's id where it can be
//! among a key's K closest (`region::newcomer_ranges`), walked in key order;
//! a key we hold is handed over when, among the nodes we know near the
//! newcomer, it is among the key's K closest. Every holder does the same
//! rather than only the closest (the paper's saving), so a liar among them
//! cannot withhold a block and newcomers arriving together are all served;
//! the receiver answers a block it already holds without pulling it again.

use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::contact::Contact;
use crate::id::Id;
use crate::node::{Node, RequestError};
use crate::region::{closest_of, newcomer_ranges};
use crate::stats::Stats;
use crate::store::{Store, StoreError};

/// How often the newcomers noted by the routing table are taken.
const TICK: Duration = Duration::from_secs(2);
/// Keys walked for one newcomer at most.
const MAX_KEYS: usize = 100_000;
/// Blocks handed to one newcomer at most.
const MAX_BLOCKS: u64 = 10_000;
/// Stores in flight at once.
const PARALLEL: usize = 8;
/// A newcomer that let this many stores time out is handed nothing more:
/// it is gone, and each costs a whole store timeout. (One that answers with
/// an error, say busy or not responsible in its view, costs a round trip.)
const MAX_TIMEOUTS: u64 = 3;
/// Keys read per page.
const PAGE: usize = 256;
/// Nodes near the newcomer we judge by: this many times K of our table's.
const KNOWN_PER_K: usize = 8;

/// What handing blocks to one newcomer did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HandoffReport {
    /// Keys in the newcomer's region that were looked at.
    pub keys: u64,
    /// store_value requests sent to it, and how many did not end in "saved".
    pub stores: u64,
    pub failures: u64,
    /// Of those failures, how many went unanswered.
    pub timeouts: u64,
}

/// Takes newcomers every 2 s and hands them their blocks, until `stop`.
pub async fn run_handoff(node: Node, store: Store, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = node.clock().sleep(TICK) => {}
            _ = stop.changed() => return,
        }
        let newcomers = node.table().take_newcomers();
        for newcomer in newcomers {
            if *stop.borrow() {
                return;
            }
            let handed = tokio::select! {
                r = hand_off(&node, &store, newcomer) => r,
                _ = stop.changed() => return,
            };
            match handed {
                Ok(r) if r.stores > 0 => tracing::info!(
                    newcomer = %newcomer.addr,
                    stores = r.stores,
                    failures = r.failures,
                    "handed blocks to a newcomer"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "handoff: cannot read the store"),
            }
        }
    }
}

/// Stores to `newcomer` every held block it is now among the K closest of
/// (or, for a block kept on fewer copies, among that many closest).
pub async fn hand_off(
    node: &Node,
    store: &Store,
    newcomer: Contact,
) -> Result<HandoffReport, StoreError> {
    let stats = node.stats().clone();
    Stats::inc(&stats.handoff_newcomers);
    let k = node.config().lookup.k;
    let me = node.me();
    let mut known = node.table().closest_good(&newcomer.id, KNOWN_PER_K * k);
    if !known.iter().any(|c| c.id == newcomer.id) {
        known.push(newcomer);
    }
    if node.config().is_holder {
        known.push(me);
    }
    let mut report = HandoffReport::default();
    let mut running = JoinSet::new();
    'walk: for (first, last) in newcomer_ranges(&newcomer.id, &known, k) {
        let mut after = predecessor(&first);
        loop {
            let (s, from) = (store.clone(), after);
            let page = tokio::task::spawn_blocking(move || s.list(from, PAGE))
                .await
                .map_err(|e| StoreError::Io {
                    path: Default::default(),
                    source: std::io::Error::other(e.to_string()),
                })??;
            let full = page.len() == PAGE;
            for (key, meta) in page {
                if key > last {
                    continue 'walk;
                }
                after = Some(key);
                report.keys += 1;
                if report.keys > MAX_KEYS as u64 {
                    break 'walk;
                }
                // A shard is kept on fewer nodes than K: the newcomer takes
                // it only when among that many closest.
                if !closest_of(&key, &known, meta.record().copies_of(k))
                    .iter()
                    .any(|c| c.id == newcomer.id)
                {
                    continue;
                }
                while running.len() >= PARALLEL {
                    count(&mut running, &mut report, &stats).await;
                }
                if report.stores >= MAX_BLOCKS || report.timeouts >= MAX_TIMEOUTS {
                    break 'walk;
                }
                let node = node.clone();
                report.stores += 1;
                let copies = meta.copies;
                running.spawn(async move { node.store_copies_rpc(&newcomer, key, copies).await });
            }
            if !full {
                continue 'walk;
            }
        }
    }
    while !running.is_empty() {
        count(&mut running, &mut report, &stats).await;
    }
    Stats::add(&stats.handoff_stores, report.stores);
    Ok(report)
}

async fn count(
    running: &mut JoinSet<Result<(), RequestError>>,
    report: &mut HandoffReport,
    stats: &Stats,
) {
    let Some(joined) = running.join_next().await else {
        return;
    };
    match joined {
        Ok(Ok(())) => return,
        Ok(Err(RequestError::Timeout(_))) => report.timeouts += 1,
        _ => {}
    }
    report.failures += 1;
    Stats::inc(&stats.handoff_failures);
}

/// The key just before `id` (for a listing that starts at `id`); `None` for
/// the very first key.
fn predecessor(id: &Id) -> Option<Id> {
    let mut out = *id;
    for byte in out.0.iter_mut().rev() {
        if *byte > 0 {
            *byte -= 1;
            return Some(out);
        }
        *byte = 0xff;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_predecessor_borrows_across_bytes() {
        assert_eq!(predecessor(&Id([0; 32])), None);
        let mut one = [0u8; 32];
        one[31] = 1;
        assert_eq!(predecessor(&Id(one)), Some(Id([0; 32])));
        let mut x = [0u8; 32];
        x[30] = 1;
        let mut want = [0u8; 32];
        want[31] = 0xff;
        assert_eq!(predecessor(&Id(x)), Some(Id(want)));
    }
}
