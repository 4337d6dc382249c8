//! Republish: ask the K closest nodes of every stored block to store it, so
//! blocks stay on the nodes a lookup will reach as the network changes.

use tokio::task::JoinSet;

use super::Keys;
use crate::id::Id;
use crate::node::{Node, StoreReport};
use crate::stats::Stats;
use crate::store::{Store, StoreError};

/// Blocks republished at once.
const PARALLEL: usize = 8;

/// What one republish pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepublishReport {
    /// Blocks walked.
    pub blocks: u64,
    /// store_value requests sent to other nodes.
    pub stores_sent: u64,
    /// Of those, how many did not end in "saved".
    pub failures: u64,
}

/// Runs one pass over every stored block.
pub async fn republish_once(node: &Node, store: &Store) -> Result<RepublishReport, StoreError> {
    let stats = node.stats().clone();
    Stats::inc(&stats.republish_runs);
    let mut report = RepublishReport::default();
    let mut keys = Keys::new(store);
    let mut running = JoinSet::new();
    while let Some(key) = keys.next().await? {
        if running.len() >= PARALLEL {
            if let Some(Ok((key, r))) = running.join_next().await {
                add(&mut report, &stats, &r, node);
                mark_refreshed(store, key, &r, node).await;
            }
        }
        let node = node.clone();
        running.spawn(async move { (key, node.replicate(key).await) });
    }
    while let Some(joined) = running.join_next().await {
        if let Ok((key, r)) = joined {
            add(&mut report, &stats, &r, node);
            mark_refreshed(store, key, &r, node).await;
        }
    }
    Ok(report)
}

/// A block another node said "saved" to counts as refreshed in its record.
async fn mark_refreshed(store: &Store, key: Id, r: &StoreReport, node: &Node) {
    let me = node.me().id;
    if !r.saved.iter().any(|c| c.id != me) {
        return;
    }
    let s = store.clone();
    match tokio::task::spawn_blocking(move || {
        s.mark_refreshed(&key, crate::store::Refresh::Republished)
    })
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(key = %key, error = %e, "cannot record a republish"),
        Err(e) => tracing::warn!(key = %key, error = %e, "record task failed"),
    }
}

fn add(report: &mut RepublishReport, stats: &Stats, r: &StoreReport, node: &Node) {
    let me = node.me().id;
    let sent = r.saved.iter().filter(|c| c.id != me).count() + r.failed.len();
    report.blocks += 1;
    report.stores_sent += sent as u64;
    report.failures += r.failed.len() as u64;
    Stats::inc(&stats.republished_blocks);
    Stats::add(&stats.republish_stores_sent, sent as u64);
    Stats::add(&stats.republish_failures, r.failed.len() as u64);
}
