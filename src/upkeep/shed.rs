//! Shedding: when the node wants space back (over the high-water mark of its
//! quota or near its free-space floor, see `store/pressure.rs`), it drops
//! replicas it is no longer responsible for, so it keeps taking the blocks it
//! is responsible for instead of refusing them.
//!
//! A replica goes only when all of this holds, checked in order from the
//! cheapest: it is a replica (never a pinned block); our table knows K good
//! nodes closer to its key than us; a lookup finds K live nodes closer than
//! us (we are not among the closest it can find); and at least K of those,
//! each at its own address, answer find_value saying they hold it. The delete
//! re-checks the origin under the key's lock, so a pin landing meanwhile
//! keeps the block.

use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use super::Keys;
use crate::id::Id;
use crate::lookup::LookupKind;
use crate::node::Node;
use crate::stats::Stats;
use crate::store::pressure::Marks;
use crate::store::{Origin, Store, StoreError};

/// How often the worker checks whether space is wanted.
const TICK: Duration = Duration::from_secs(30);

/// What one shedding pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ShedReport {
    /// Replicas looked at.
    pub checked: u64,
    /// Replicas dropped, and their bytes.
    pub dropped: u64,
    pub dropped_bytes: u64,
    /// Kept: we are still among their K closest.
    pub responsible: u64,
    /// Kept: fewer than K closer nodes said they hold them.
    pub few_holders: u64,
}

/// Every 30 s, sheds replicas while the store wants space, until `stop`.
pub async fn run_shed(node: Node, store: Store, marks: Marks, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = node.clock().sleep(TICK) => {}
            _ = stop.changed() => return,
        }
        let s = store.clone();
        let wanted = tokio::task::spawn_blocking(move || s.space_wanted(marks))
            .await
            .unwrap_or(0);
        Stats::set(&node.stats().space_wanted_bytes, wanted);
        if wanted == 0 {
            continue;
        }
        let run = shed_once(&node, &store, wanted);
        let report = tokio::select! {
            r = run => r,
            _ = stop.changed() => return,
        };
        match report {
            Ok(r) => tracing::info!(
                wanted,
                dropped = r.dropped,
                dropped_bytes = r.dropped_bytes,
                checked = r.checked,
                "space wanted: dropped replicas held by closer nodes"
            ),
            Err(e) => tracing::warn!(error = %e, "shedding: cannot read the store"),
        }
    }
}

/// One pass over the replicas, dropping those others hold until `wanted`
/// bytes are freed.
pub async fn shed_once(node: &Node, store: &Store, wanted: u64) -> Result<ShedReport, StoreError> {
    let stats = node.stats().clone();
    let mut report = ShedReport::default();
    let mut keys = Keys::new(store);
    while report.dropped_bytes < wanted {
        let Some((key, meta)) = keys.next_with_meta().await? else {
            break;
        };
        let copies = meta.record().copies_of(node.config().lookup.k);
        if meta.origin != Origin::Replica || !plainly_not_ours(node, &key, copies) {
            continue;
        }
        report.checked += 1;
        match confirm(node, key, copies).await {
            Verdict::Responsible => report.responsible += 1,
            Verdict::FewHolders => report.few_holders += 1,
            Verdict::HeldByCloser => {
                let s = store.clone();
                let deleted = tokio::task::spawn_blocking(move || s.delete_replica(&key)).await;
                match deleted {
                    Ok(Ok(true)) => {
                        report.dropped += 1;
                        report.dropped_bytes += meta.size;
                        Stats::inc(&stats.shed_blocks);
                        Stats::add(&stats.shed_bytes, meta.size);
                    }
                    Ok(Ok(false)) => {}
                    Ok(Err(e)) => tracing::warn!(key = %key, error = %e, "cannot drop a replica"),
                    Err(e) => tracing::warn!(key = %key, error = %e, "drop task failed"),
                }
            }
        }
    }
    Ok(report)
}

enum Verdict {
    Responsible,
    FewHolders,
    HeldByCloser,
}

/// Whether our table alone already knows `k` good nodes closer to `key`
/// than us (the block's copies: K, or fewer for a shard): the check that
/// costs nothing, before any request.
fn plainly_not_ours(node: &Node, key: &Id, k: usize) -> bool {
    let ours = node.me().id.distance(key);
    let known = node.table().closest_good(key, k);
    known.len() >= k && known.iter().all(|c| c.id.distance(key) < ours)
}

/// A lookup for the K closest live nodes, then find_value to each of the
/// closer ones: at least `k` (the block's copies) must hold it.
async fn confirm(node: &Node, key: Id, k: usize) -> Verdict {
    let lookup_k = node.config().lookup.k;
    let me = node.me();
    let found = node.lookup(key, LookupKind::FindNode).await;
    if found.closest.iter().take(k).any(|c| c.id == me.id) || found.closest.len() < lookup_k {
        return Verdict::Responsible;
    }
    // Picked by the rule that spreads a lookup's closest over prefixes:
    // where a put places it.
    if node
        .config()
        .lookup
        .spread
        .picks(&key, &found.closest, me, k)
    {
        return Verdict::Responsible;
    }
    let ours = me.id.distance(&key);
    let closer: Vec<_> = found
        .closest
        .into_iter()
        .filter(|c| c.id.distance(&key) < ours && c.addr != me.addr)
        .collect();
    // One address, one vote: the lookup keeps one candidate per address.
    let holders = node.holders_among(key, &closer).await;
    if holders.len() >= k {
        Verdict::HeldByCloser
    } else {
        Verdict::FewHolders
    }
}
