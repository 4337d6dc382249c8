//! Verify: re-hash every stored block; with repair, replace a corrupt copy by
//! a good one fetched from another holder.
//!
//! Nothing is deleted before its replacement is in hand: a copy that fails its
//! hash may be the last one anywhere (and a flaky read may have made it look
//! corrupt), while keeping it costs little, since every reader hashes what it
//! receives. A block that cannot be read at all (an I/O error) is skipped and
//! counted, not taken as corrupt, and the pass goes on to the next one.

use super::Keys;
use crate::id::Id;
use crate::node::{Node, Transfer};
use crate::stats::Stats;
use crate::store::{Origin, Store, StoreError};

/// Corrupt keys listed in a report at most.
const MAX_LISTED: usize = 100;

/// What one verify pass found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub checked: u64,
    pub corrupt: u64,
    pub repaired: u64,
    /// Blocks that could not be read (I/O error) and were skipped.
    pub unreadable: u64,
    /// Up to 100 corrupt keys.
    pub corrupt_keys: Vec<Id>,
}

/// What checking one block found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Checked {
    Good,
    /// Its bytes do not hash to its key; `repaired` when a good copy replaced them.
    Corrupt {
        repaired: bool,
    },
    /// It could not be read (an I/O error): skipped, not judged.
    Unreadable,
}

/// Runs one pass over every stored block.
pub async fn verify_once(
    node: &Node,
    store: &Store,
    repair: bool,
) -> Result<VerifyReport, StoreError> {
    Stats::inc(&node.stats().verify_runs);
    let mut report = VerifyReport::default();
    let mut keys = Keys::new(store);
    while let Some(key) = keys.next().await? {
        report.checked += 1;
        match check_block(node, store, key, repair).await {
            Checked::Good => {}
            Checked::Unreadable => report.unreadable += 1,
            Checked::Corrupt { repaired } => {
                report.corrupt += 1;
                report.repaired += u64::from(repaired);
                if report.corrupt_keys.len() < MAX_LISTED {
                    report.corrupt_keys.push(key);
                }
            }
        }
    }
    Ok(report)
}

/// Re-hashes one block and, with `repair`, replaces it when corrupt; counts
/// and logs what it found. Verify and the scrub worker both check this way.
pub(super) async fn check_block(node: &Node, store: &Store, key: Id, repair: bool) -> Checked {
    let stats = node.stats();
    let s = store.clone();
    let read = tokio::task::spawn_blocking(move || s.get(&key)).await;
    Stats::inc(&stats.verify_checked);
    let unreadable = match read {
        Ok(Ok(_)) => return Checked::Good,
        Ok(Err(StoreError::Corrupt { .. })) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(e) => Some(format!("read task failed: {e}")),
    };
    if let Some(error) = unreadable {
        Stats::inc(&stats.verify_unreadable);
        tracing::warn!(key = %key, %error, "verify: cannot read block; skipped");
        return Checked::Unreadable;
    }
    Stats::inc(&stats.verify_corrupt);
    tracing::warn!(key = %key, "verify: block is corrupt");
    let repaired = repair && repair_block(node, store, key).await;
    if repaired {
        Stats::inc(&stats.verify_repaired);
    }
    Checked::Corrupt { repaired }
}

/// Fetches a verified copy from another holder and only then swaps it in for
/// ours; false (our copy kept, for the next pass to retry) when no holder
/// could supply one or storing it failed.
async fn repair_block(node: &Node, store: &Store, key: Id) -> bool {
    let max = node.config().max_block_size;
    let data = match node.fetch_verified(key, max, &Transfer::new()).await {
        Ok(fetched) => fetched.data,
        Err(e) => {
            tracing::warn!(key = %key, why = %e, "verify: no holder could supply a good copy; keeping ours for now");
            return false;
        }
    };
    let s = store.clone();
    let swapped = tokio::task::spawn_blocking(move || {
        // The good copy keeps the block's origin: a repair never unpins.
        let origin = s.record(&key)?.map_or(Origin::Replica, |r| r.origin);
        s.delete(&key)?;
        s.put_as(&key, &data, origin)
    })
    .await;
    match swapped {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            tracing::warn!(key = %key, error = %e, "verify: cannot store the good copy");
            false
        }
        Err(e) => {
            tracing::warn!(key = %key, error = %e, "verify: repair task failed");
            false
        }
    }
}
