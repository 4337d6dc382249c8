//! Migration 4: moves blocks kept as files under `blocks/` into segment
//! files, when they are no larger than the store's `inline_max` (a node's
//! default, 1 MiB, is every block). Before version 4 a node wrote every
//! block over 64 KiB as a file of its own: three fsyncs per put (the file,
//! its directory, sled's log) and an inode each, where a segment append
//! shares one group commit with its neighbours.
//!
//! In batches, each durable before the next, as migration 3: the batch's
//! files are read, checked against their keys and appended to the active
//! segment, which is fsynced; then their index entries are switched to the
//! segment and the segments' durable point recorded, in one flush; only
//! then are their files removed. A crash anywhere leaves either segment
//! records no entry points at (dead bytes, reclaimed by compaction) or
//! files no entry points at (removed by the open-time repair as strays),
//! never an entry without its bytes. A rerun moves whatever is still a
//! file, so the step resumes where a crash stopped it.
//!
//! A file that is missing, or whose bytes do not match its entry's size or
//! key, stays where it is: the open-time repair and scrub deal with it, and
//! moving rot would only hide it.

use super::Ctx;
use crate::id::Id;
use crate::store::files::{block_path, remove_block};
use crate::store::index::{IndexEntry, Location, INDEX_TREE, META_TREE, SEGMENTS_SYNCED_KEY};
use crate::store::segments::{Segments, Synced, ROLL_AT};
use crate::store::StoreError;

/// Bytes of blocks moved per batch (one segment fsync and one sled flush each).
const BATCH_BYTES: usize = 8 << 20;
/// Blocks moved per batch at most (one sled batch, one removal each).
const BATCH_BLOCKS: usize = 512;

/// Moves every block file of at most `ctx.inline_max` bytes its index entry
/// points at into segments.
pub(super) fn run(ctx: &Ctx) -> Result<(), StoreError> {
    let db_err = |e| StoreError::db(ctx.db_path, e);
    let meta = ctx.db.open_tree(META_TREE).map_err(db_err)?;
    let index = ctx.db.open_tree(INDEX_TREE).map_err(db_err)?;
    let synced = match meta.get(SEGMENTS_SYNCED_KEY).map_err(db_err)? {
        None => None,
        Some(raw) => Some(Synced::decode(&raw).ok_or_else(|| {
            StoreError::corrupt(ctx.db_path, "the segments' durable point does not decode")
        })?),
    };
    let (segments, _) = Segments::open(ctx.dir, synced, u64::from(u32::MAX), ROLL_AT)?;
    let (mut moved, mut left, mut kept, mut batches) = (0u64, 0u64, 0u64, 0u64);
    let mut batch: Vec<(sled::IVec, IndexEntry)> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut items = index.iter();
    loop {
        let item = items.next().transpose().map_err(db_err)?;
        let end = item.is_none();
        if let Some((key, raw)) = item {
            let entry = IndexEntry::decode(&raw);
            let id = <[u8; 32]>::try_from(key.as_ref()).ok().map(Id);
            match (id, entry) {
                (Some(id), Some(mut entry)) if entry.location == Location::File => {
                    if entry.size > ctx.inline_max {
                        kept += 1;
                    } else {
                        // Missing, unreadable, short or rotten: left for the
                        // repair and scrub, which say so.
                        let data = std::fs::read(block_path(ctx.dir, &id))
                            .ok()
                            .filter(|d| d.len() as u64 == entry.size && Id::of_block(d) == id);
                        match data {
                            Some(data) => {
                                entry.location = Location::Segment(segments.append(&id, &data)?);
                                batch_bytes += data.len();
                                batch.push((key, entry));
                            }
                            None => left += 1,
                        }
                    }
                }
                _ => {}
            }
        }
        let full = batch_bytes >= BATCH_BYTES || batch.len() >= BATCH_BLOCKS;
        if batch.is_empty() || !(end || full) {
            if end {
                break;
            }
            continue;
        }
        super::commit_to_segments(ctx, &segments, batch.iter().map(|(k, e)| (k, e)))?;
        for (key, _) in &batch {
            if let Ok(raw) = <[u8; 32]>::try_from(key.as_ref()) {
                let path = block_path(ctx.dir, &Id(raw));
                // One that stays is a stray the next open removes.
                if let Err(e) = remove_block(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove a block file moved into a segment");
                }
            }
        }
        moved += batch.len() as u64;
        batches += 1;
        batch.clear();
        batch_bytes = 0;
        #[cfg(test)]
        if super::crash_hook::mid_step_fires(4) {
            return Err(StoreError::corrupt(
                ctx.db_path,
                "test crash after a batch of migration 4",
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
        kept,
        batches,
        "moved block files into segments"
    );
    Ok(())
}
