//! Verify: re-hash every stored block; with repair, drop a corrupt copy and
//! fetch a good one from another holder.

use super::Keys;
use crate::id::Id;
use crate::node::Node;
use crate::stats::Stats;
use crate::store::{Store, StoreError};

/// Corrupt keys listed in a report at most.
const MAX_LISTED: usize = 100;

/// What one verify pass found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub checked: u64,
    pub corrupt: u64,
    pub repaired: u64,
    /// Up to 100 corrupt keys.
    pub corrupt_keys: Vec<Id>,
}

/// Runs one pass over every stored block.
pub async fn verify_once(
    node: &Node,
    store: &Store,
    repair: bool,
) -> Result<VerifyReport, StoreError> {
    let stats = node.stats().clone();
    Stats::inc(&stats.verify_runs);
    let mut report = VerifyReport::default();
    let mut keys = Keys::new(store);
    while let Some(key) = keys.next().await? {
        let s = store.clone();
        let read = tokio::task::spawn_blocking(move || s.get(&key)).await;
        report.checked += 1;
        Stats::inc(&stats.verify_checked);
        match read {
            Ok(Ok(_)) => continue,
            Ok(Err(StoreError::Corrupt { .. })) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => continue,
        }
        report.corrupt += 1;
        Stats::inc(&stats.verify_corrupt);
        tracing::warn!(key = %key, "verify: block is corrupt");
        if report.corrupt_keys.len() < MAX_LISTED {
            report.corrupt_keys.push(key);
        }
        if repair && repair_block(node, store, key).await? {
            report.repaired += 1;
            Stats::inc(&stats.verify_repaired);
        }
    }
    Ok(report)
}

/// Drops our copy and stores a verified one from another holder; false when
/// no holder could supply it (the bad copy is dropped all the same: serving
/// rot helps nobody, and republishing from a holder brings it back).
async fn repair_block(node: &Node, store: &Store, key: Id) -> Result<bool, StoreError> {
    let s = store.clone();
    let _ = tokio::task::spawn_blocking(move || s.delete(&key)).await;
    let Some(data) = node.fetch_remote(key).await else {
        tracing::warn!(key = %key, "verify: no holder could supply a good copy");
        return Ok(false);
    };
    let s = store.clone();
    match tokio::task::spawn_blocking(move || s.put_verified(&key, &data)).await {
        Ok(Ok(_)) => Ok(true),
        Ok(Err(e)) => Err(e),
        Err(_) => Ok(false),
    }
}
