//! Compaction: giving back the disk that deleted small blocks leave in
//! segment files. A delete punches a hole over the whole filesystem blocks
//! inside its record, which frees nearly all of a large record and almost
//! nothing of a 4 KiB one (its record straddles two filesystem blocks), so a
//! sealed segment whose dead bytes have become a large part of what it
//! takes on disk is rewritten (the worker, `upkeep/compact.rs`, decides): its live blocks are appended to the active
//! segment, and the old file removed.
//!
//! The index says what is live, never the segment file: a punched hole can
//! zero a record's header, so a file cannot be walked record by record once
//! something in it was deleted.
//!
//! Crash safety, in order: the moved blocks are appended and fsynced; only
//! then is each entry switched, by compare-and-swap under its key's lock (a
//! delete that came first wins, and its block is simply not moved), and sled
//! flushed; the old file is removed only once a walk of the index finds no
//! entry left in it. A crash at any point leaves each entry pointing at a
//! whole copy, and the old file in place until a later pass finishes.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::index::{IndexEntry, Location};
use super::segment_format::RECORD_HEADER_LEN;
use super::segments::Place;
use super::{lock, Store, StoreError, LOCK_STRIPES};
use crate::id::Id;

/// Bytes of blocks moved between two fsyncs.
const BATCH_BYTES: u64 = 4 << 20;

/// What one segment holds, and what it takes on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentUse {
    pub seg: u32,
    /// Bytes on disk (holes punched by deletes excluded).
    pub allocated: u64,
    /// Bytes of the records some index entry points at.
    pub live: u64,
    /// Whether it is the segment appends go to (never compacted).
    pub active: bool,
}

impl SegmentUse {
    /// Bytes on disk that hold no live record.
    pub fn dead(&self) -> u64 {
        self.allocated.saturating_sub(self.live)
    }
}

/// What compacting one segment did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Compacted {
    /// Blocks copied to the active segment, and their bytes.
    pub blocks_moved: u64,
    pub bytes_moved: u64,
    /// Whether the old file was removed (false: a pass was stopped, or an
    /// entry still points into it, such as a block whose bytes rotted).
    pub removed: bool,
    /// Bytes the removal gave back to the disk.
    pub bytes_freed: u64,
}

impl Store {
    /// Every segment's use, from one walk of the index.
    pub fn segment_use(&self) -> Result<Vec<SegmentUse>, StoreError> {
        let inner = &*self.inner;
        let mut live: BTreeMap<u32, u64> = BTreeMap::new();
        for item in inner.trees.index.iter() {
            let (_, value) = item.map_err(|e| StoreError::db(&inner.db_path, e))?;
            if let Some(IndexEntry {
                size,
                location: Location::Segment(place),
                ..
            }) = IndexEntry::decode(&value)
            {
                *live.entry(place.seg).or_default() += size + RECORD_HEADER_LEN;
            }
        }
        let active = inner.segments.active();
        Ok(inner
            .segments
            .allocated()?
            .into_iter()
            .map(|(seg, allocated)| SegmentUse {
                seg,
                allocated,
                live: live.get(&seg).copied().unwrap_or(0),
                active: seg == active,
            })
            .collect())
    }

    /// Moves the live blocks of sealed segment `seg` to the active one and
    /// removes it. `go` is called with the bytes moved after each durable
    /// batch; the pass stops (and can be run again later) when it says no.
    pub fn compact_segment(
        &self,
        seg: u32,
        go: &mut dyn FnMut(u64) -> bool,
    ) -> Result<Compacted, StoreError> {
        let inner = &*self.inner;
        if seg == inner.segments.active() {
            return Ok(Compacted::default());
        }
        self.reopen_if_closed()?;
        let mut done = Compacted::default();
        let mut live = self.entries_in(seg)?.into_iter().peekable();
        while live.peek().is_some() {
            // Copy a batch and make the copies durable.
            let mut batch = Vec::new();
            let mut bytes = 0u64;
            while bytes < BATCH_BYTES {
                let Some((key, raw, entry, place)) = live.next() else {
                    break;
                };
                let Ok(len) = u32::try_from(entry.size) else {
                    continue;
                };
                let Some(data) = inner.segments.read_block(place, &key, len)? else {
                    continue; // deleted since the walk
                };
                if Id::of_block(&data) != key {
                    tracing::warn!(key = %key, segment = seg, "a block's bytes in a segment do not match its key; left for scrub, not moved");
                    continue;
                }
                let to = inner.segments.append(&key, &data)?;
                bytes += entry.size;
                batch.push((
                    key,
                    raw,
                    IndexEntry {
                        location: Location::Segment(to),
                        ..entry
                    },
                ));
            }
            inner.segments.sync()?;
            // Switch each entry that still points at the old copy.
            for (key, old, new) in &batch {
                let _key_lock = lock(&inner.locks[usize::from(key.0[0]) % LOCK_STRIPES]);
                let swapped = inner
                    .trees
                    .index
                    .compare_and_swap(key.0, Some(old.as_slice()), Some(new.encode()))
                    .map_err(|e| StoreError::db(&inner.db_path, e))?;
                if swapped.is_ok() {
                    done.blocks_moved += 1;
                    done.bytes_moved += new.size;
                }
            }
            self.flush()?;
            inner.compaction_moved.fetch_add(bytes, Ordering::Relaxed);
            if !go(bytes) {
                return Ok(done);
            }
        }
        // Proof before removal: nothing points into it any more, and no put
        // has written a record to it that it has yet to index.
        let _no_staging = inner.staging.write().unwrap_or_else(|p| p.into_inner());
        if !self.entries_in(seg)?.is_empty() {
            return Ok(done);
        }
        done.bytes_freed = inner.segments.remove(seg)?;
        done.removed = true;
        Ok(done)
    }

    /// The entries pointing into segment `seg`: key, raw entry, entry, place.
    #[allow(clippy::type_complexity)]
    fn entries_in(&self, seg: u32) -> Result<Vec<(Id, Vec<u8>, IndexEntry, Place)>, StoreError> {
        let inner = &*self.inner;
        let mut out = Vec::new();
        for item in inner.trees.index.iter() {
            let (key, value) = item.map_err(|e| StoreError::db(&inner.db_path, e))?;
            let Ok(raw) = <[u8; 32]>::try_from(key.as_ref()) else {
                continue;
            };
            if let Some(entry) = IndexEntry::decode(&value) {
                if let Location::Segment(place) = entry.location {
                    if place.seg == seg {
                        out.push((Id(raw), value.to_vec(), entry, place));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Records what a compaction pass measured as dead in the segments.
    pub fn note_segment_dead(&self, bytes: u64) {
        self.inner
            .segment_reclaimable
            .store(bytes, Ordering::Relaxed);
    }

    /// Bytes of deleted segment records compaction has yet to give back.
    pub fn segment_reclaimable(&self) -> u64 {
        self.inner.segment_reclaimable.load(Ordering::Relaxed)
    }

    /// Bytes compaction has moved since the store opened.
    pub fn compaction_moved_bytes(&self) -> u64 {
        self.inner.compaction_moved.load(Ordering::Relaxed)
    }
}
