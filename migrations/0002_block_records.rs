//! Migration 2: gives every block held a record (`src/store/records.rs`) in
//! the new `records` tree: origin replica (a version 1 dir did not tell what
//! it chose to keep from what it held for others, and a replica is the
//! cautious guess only in that nothing is pinned that nobody pinned), stored
//! and refreshed at the index entry's stored time.
//!
//! Safe to run twice, and to run again after a crash part-way: a block that
//! already has a record keeps it, so a rerun only fills in the ones still
//! missing. Index entries that do not decode are left alone: the open-time
//! repair that follows drops them. The records are flushed before the step
//! returns, so the version bump after it never reaches the disk first.

use super::Ctx;
use crate::store::index::{IndexEntry, INDEX_TREE};
use crate::store::records::{BlockRecord, Origin, RECORDS_TREE};
use crate::store::StoreError;

/// Records written per sled batch.
const BATCH: usize = 10_000;

/// Creates `records` and writes a record for every index entry without one.
pub(super) fn run(ctx: &Ctx) -> Result<(), StoreError> {
    let db_err = |e| StoreError::db(ctx.db_path, e);
    let index = ctx.db.open_tree(INDEX_TREE).map_err(db_err)?;
    let records = ctx.db.open_tree(RECORDS_TREE).map_err(db_err)?;
    let mut batch = sled::Batch::default();
    let (mut pending, mut written) = (0usize, 0u64);
    for item in index.iter() {
        let (key, value) = item.map_err(db_err)?;
        let Some(entry) = IndexEntry::decode(&value) else {
            continue;
        };
        if key.len() != 32 || records.contains_key(&key).map_err(db_err)? {
            continue;
        }
        let record = BlockRecord::new(Origin::Replica, entry.stored_at);
        batch.insert(key, &record.encode()[..]);
        pending += 1;
        if pending == BATCH {
            records
                .apply_batch(std::mem::take(&mut batch))
                .map_err(db_err)?;
            written += pending as u64;
            pending = 0;
        }
    }
    records.apply_batch(batch).map_err(db_err)?;
    written += pending as u64;
    records.flush().map_err(db_err)?;
    tracing::info!(records = written, "gave every stored block a record");
    Ok(())
}
