//! Handoff, the Kademlia paper's rule for newcomers: when a node we did not
//! know proves its id (its first verified pong), it may be among the K closest
//! of keys we hold; we store those blocks to it at once, rather than leave
//! them out of its reach until the next republish.
//!
//! Which keys: the region around the newcomer's id that our table knows
//! fully (`region.rs`), walked in key order; a key we hold is handed over
//! when the newcomer is among its K closest. Every holder does the same
//! rather than only the closest (the paper's saving), so a liar among them
//! cannot withhold a block and newcomers arriving together are all served;
//! the receiver answers a block it already holds without pulling it again.

use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::contact::Contact;
use crate::id::Id;
use crate::node::Node;
use crate::region::{closest_of, region_of};
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
/// A newcomer that failed this many stores is handed nothing more: it is
/// gone, full or lying, and each failure may cost a whole store timeout.
const MAX_FAILURES: u64 = 3;
/// Keys read per page.
const PAGE: usize = 256;

/// What handing blocks to one newcomer did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HandoffReport {
    /// Keys in the newcomer's region that were looked at.
    pub keys: u64,
    /// store_value requests sent to it, and how many did not end in "saved".
    pub stores: u64,
    pub failures: u64,
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

/// Stores to `newcomer` every held block it is now among the K closest of.
pub async fn hand_off(
    node: &Node,
    store: &Store,
    newcomer: Contact,
) -> Result<HandoffReport, StoreError> {
    let stats = node.stats().clone();
    Stats::inc(&stats.handoff_newcomers);
    let k = node.config().lookup.k;
    let width = 3 * k;
    let me = node.me();
    let mut known = node.table().closest_good(&newcomer.id, width);
    if !known.iter().any(|c| c.id == newcomer.id) {
        known.push(newcomer);
    }
    if node.config().is_holder {
        known.push(me);
    }
    let known = closest_of(&newcomer.id, &known, width);
    let region = region_of(&newcomer.id, &known, k, width);
    let mut report = HandoffReport::default();
    if region.first == region.end {
        // Our table does not know the newcomer's neighbourhood well enough
        // to tell; the republish sweep will.
        return Ok(report);
    }
    // Whether we were among a key's K closest is judged without the newcomer.
    let old: Vec<Contact> = region
        .nodes
        .iter()
        .filter(|c| c.id != newcomer.id)
        .copied()
        .collect();
    let mut after = predecessor(&region.first);
    let mut running = JoinSet::new();
    'walk: while report.keys < MAX_KEYS as u64 {
        let (s, from) = (store.clone(), after);
        let page = tokio::task::spawn_blocking(move || s.list(from, PAGE))
            .await
            .map_err(|e| StoreError::Io {
                path: Default::default(),
                source: std::io::Error::other(e.to_string()),
            })??;
        let full = page.len() == PAGE;
        for (key, _) in page {
            if key > region.end {
                break 'walk;
            }
            after = Some(key);
            report.keys += 1;
            let ours = closest_of(&key, &old, k).iter().any(|c| c.id == me.id);
            let theirs = closest_of(&key, &region.nodes, k)
                .iter()
                .any(|c| c.id == newcomer.id);
            if !(ours && theirs) {
                continue;
            }
            while running.len() >= PARALLEL {
                count(&mut running, &mut report, &stats).await;
            }
            if report.stores >= MAX_BLOCKS || report.failures >= MAX_FAILURES {
                break 'walk;
            }
            let node = node.clone();
            report.stores += 1;
            running.spawn(async move { node.store_rpc(&newcomer, key).await.is_ok() });
        }
        if !full {
            break;
        }
    }
    while !running.is_empty() {
        count(&mut running, &mut report, &stats).await;
    }
    Stats::add(&stats.handoff_stores, report.stores);
    Ok(report)
}

async fn count(running: &mut JoinSet<bool>, report: &mut HandoffReport, stats: &Stats) {
    if let Some(joined) = running.join_next().await {
        if !joined.unwrap_or(false) {
            report.failures += 1;
            Stats::inc(&stats.handoff_failures);
        }
    }
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
