//! Migration 3: moves the bytes of small blocks from the `inline` tree into
//! segment files (`src/store/segments.rs`), where every small block is
//! written from version 3 on. sled's log keeps superseded pages of values
//! (1.98x the disk at 4 KiB), and an open after a crash read every inline
//! value; segments cost 1.11x and an open reads only their unsynced tail.
//!
//! In batches, each durable before the next: the batch's blocks are appended
//! to the active segment and fsynced; then their index entries are switched
//! to the segment and the segments' durable point recorded, in one flush;
//! only then are their inline values removed. A crash anywhere leaves either
//! segment records no entry points at (dead bytes, reclaimed by compaction)
//! or inline values no entry points at (dropped by the open-time repair),
//! never an entry without its bytes. A rerun moves whatever is still inline,
//! so the step resumes where a crash stopped it.
//!
//! A value whose bytes do not match its entry's size or key stays where it
//! is: moving rot would only hide it; the read refuses it and scrub finds it.

use super::Ctx;
use crate::id::Id;
use crate::store::index::{
    IndexEntry, Location, INDEX_TREE, INLINE_TREE, META_TREE, SEGMENTS_SYNCED_KEY,
};
use crate::store::segments::{Segments, Synced, ROLL_AT};
use crate::store::StoreError;

/// Bytes of blocks moved per batch (one segment fsync and one sled flush each).
const BATCH_BYTES: usize = 8 << 20;

/// Moves every inline value its index entry points at into segments.
pub(super) fn run(ctx: &Ctx) -> Result<(), StoreError> {
    let db_err = |e| StoreError::db(ctx.db_path, e);
    let meta = ctx.db.open_tree(META_TREE).map_err(db_err)?;
    let index = ctx.db.open_tree(INDEX_TREE).map_err(db_err)?;
    let inline = ctx.db.open_tree(INLINE_TREE).map_err(db_err)?;
    let synced = match meta.get(SEGMENTS_SYNCED_KEY).map_err(db_err)? {
        None => None,
        Some(raw) => Some(Synced::decode(&raw).ok_or_else(|| {
            StoreError::corrupt(ctx.db_path, "the segments' durable point does not decode")
        })?),
    };
    let (segments, _) = Segments::open(ctx.dir, synced, u64::from(u32::MAX), ROLL_AT)?;
    let (mut moved, mut left, mut batches) = (0u64, 0u64, 0u64);
    let mut batch: Vec<(sled::IVec, IndexEntry, sled::IVec)> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut items = inline.iter();
    loop {
        let item = items.next().transpose().map_err(db_err)?;
        let end = item.is_none();
        if let Some((key, value)) = item {
            let entry = index
                .get(&key)
                .map_err(db_err)?
                .and_then(|raw| IndexEntry::decode(&raw));
            let whole = <[u8; 32]>::try_from(key.as_ref())
                .ok()
                .map(Id)
                .filter(|id| {
                    entry.is_some_and(|e| {
                        e.location == Location::Inline && e.size == value.len() as u64
                    }) && Id::of_block(&value) == *id
                });
            match (whole, entry) {
                (Some(id), Some(mut entry)) => {
                    entry.location = Location::Segment(segments.append(&id, &value)?);
                    batch_bytes += value.len();
                    batch.push((key, entry, value));
                }
                // An orphan (the repair drops it) or rot (left for scrub).
                _ => left += 1,
            }
        }
        if batch.is_empty() || !(end || batch_bytes >= BATCH_BYTES) {
            if end {
                break;
            }
            continue;
        }
        super::commit_to_segments(ctx, &segments, batch.iter().map(|(k, e, _)| (k, e)))?;
        let mut values = sled::Batch::default();
        for (key, _, _) in &batch {
            values.remove(key.clone());
        }
        inline.apply_batch(values).map_err(db_err)?;
        moved += batch.len() as u64;
        batches += 1;
        batch.clear();
        batch_bytes = 0;
        #[cfg(test)]
        if super::crash_hook::mid_step_fires(3) {
            return Err(StoreError::corrupt(
                ctx.db_path,
                "test crash after a batch of migration 3",
            ));
        }
        if end {
            break;
        }
    }
    ctx.db.flush().map_err(db_err)?;
    tracing::info!(
        moved,
        left,
        batches,
        "moved small blocks from sled into segments"
    );
    Ok(())
}
