//! Writing blocks: puts (inline or as a file, durable before they answer,
//! nothing left of a failed one) and deletes, each under its key's lock.

use std::path::Path;
use std::sync::atomic::Ordering;

use super::charge::charge;
use super::files;
use super::index::{IndexEntry, Location};
use super::{lock, now_secs, BlockRecord, Origin, PutOutcome, Store, StoreError, LOCK_STRIPES};
use crate::id::Id;

impl Store {
    /// Stores `data` under `key` as a replica (another node's store_value):
    /// see [`Store::put_as`].
    pub fn put_verified(&self, key: &Id, data: &[u8]) -> Result<PutOutcome, StoreError> {
        self.put_as(key, data, Origin::Replica)
    }

    /// Stores `data` under `key` after checking its sha256, size, the quota and
    /// the free-space floor, with a record saying it came as `origin`; durable
    /// on disk before it returns Ok. On any error nothing of it is left: no
    /// temp file, no block file, no index entry, no record.
    ///
    /// A block already held is not written again: its record counts as
    /// refreshed now, and becomes pinned if `origin` is (a replica never
    /// unpins a block).
    pub fn put_as(&self, key: &Id, data: &[u8], origin: Origin) -> Result<PutOutcome, StoreError> {
        self.put_with(key, data, origin, 0)
    }

    /// [`Store::put_as`] of a block the network should keep on `copies`
    /// nodes (0: its K), which its record keeps. A block already held
    /// keeps the more of the two counts.
    pub fn put_with(
        &self,
        key: &Id,
        data: &[u8],
        origin: Origin,
        copies: u8,
    ) -> Result<PutOutcome, StoreError> {
        let inner = &*self.inner;
        let size = data.len() as u64;
        self.check_size(size)?;
        let actual = Id::of_block(data);
        if actual != *key {
            return Err(StoreError::HashMismatch { key: *key, actual });
        }
        // Held through the flush: a second put of this key waits here, and
        // sees the entry (AlreadyHad) only once it is durable.
        let _key_lock = lock(&inner.locks[usize::from(key.0[0]) % LOCK_STRIPES]);
        if let Some(entry) = self.entry(key)? {
            self.refresh_record(key, &entry, origin, Some(copies))?;
            return Ok(PutOutcome::AlreadyHad);
        }
        let small = data.len() <= inner.cfg.inline_max;
        let cost = charge(size, small);
        let _reservation = self.reserve(cost)?;
        inner.floor.check(cost, true)?;
        let _in_flight = inner.in_flight.mark(*key);
        self.reopen_if_closed()?;
        let now = now_secs();
        let record = BlockRecord {
            copies,
            ..BlockRecord::new(origin, now)
        }
        .encode();
        let file = if small {
            // Appended, then indexed; both durable at the flush below.
            let place = inner.segments.append(key, data)?;
            let entry = IndexEntry {
                size,
                location: Location::Segment(place),
                stored_at: now,
            }
            .encode();
            if let Err(e) = self.insert_entry(key, &entry, &record) {
                inner.segments.punch(place, size);
                return Err(e);
            }
            None
        } else {
            let entry = IndexEntry {
                size,
                location: Location::File,
                stored_at: now,
            }
            .encode();
            let path = files::write_block(&inner.dir, key, data)?;
            if let Err(e) = self.insert_entry(key, &entry, &record) {
                let _ = files::remove_block(&path);
                return Err(e);
            }
            Some(path)
        };
        if let Err(e) = self.sync() {
            self.take_back(key, file.as_deref());
            return Err(StoreError::db(&inner.db_path, e));
        }
        inner.blocks.fetch_add(1, Ordering::SeqCst);
        inner.bytes.fetch_add(size, Ordering::SeqCst);
        inner.charged.fetch_add(cost, Ordering::SeqCst);
        Ok(PutOutcome::Stored)
    }

    /// Undoes a put whose flush failed: its entry goes (whether or not some of
    /// it reached the disk; a durable leftover is dropped by the next open's
    /// repair, since its file is removed too).
    fn take_back(&self, key: &Id, file: Option<&Path>) {
        let trees = &self.inner.trees;
        let removed = trees
            .index
            .remove(key.0)
            .and_then(|_| trees.inline.remove(key.0))
            .and_then(|_| trees.records.remove(key.0));
        if let Err(e) = removed {
            tracing::warn!(key = %key, error = %e, "cannot take back a failed put's index entry");
        }
        if let Some(path) = file {
            if let Err(e) = files::remove_block(path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a failed put's file");
            }
        }
    }

    /// Inserts an index entry and its record in one transaction: both or
    /// neither.
    fn insert_entry(&self, key: &Id, entry: &[u8], record: &[u8]) -> Result<(), StoreError> {
        use sled::transaction::{TransactionError, Transactional};
        let trees = &self.inner.trees;
        (&trees.index, &trees.records)
            .transaction(|(index, records)| {
                index.insert(&key.0[..], entry)?;
                records.insert(&key.0[..], record)?;
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => StoreError::db(&self.inner.db_path, e),
                TransactionError::Abort(()) => {
                    StoreError::corrupt(&self.inner.db_path, "put aborted")
                }
            })
    }

    /// A held block was stored to us again (as `origin`): its record counts
    /// as refreshed now, and a pin sticks. Called under the key's lock. A
    /// missing or unreadable record (which only a damaged db can have) is
    /// rewritten from the index entry.
    fn refresh_record(
        &self,
        key: &Id,
        entry: &IndexEntry,
        origin: Origin,
        copies: Option<u8>,
    ) -> Result<(), StoreError> {
        let inner = &*self.inner;
        let old = self.record_raw(key)?;
        let mut record = old.unwrap_or_else(|| BlockRecord::new(Origin::Replica, entry.stored_at));
        let pinning = origin == Origin::Pinned && record.origin != Origin::Pinned;
        if pinning {
            record.origin = Origin::Pinned;
        }
        if let Some(copies) = copies {
            record.copies = BlockRecord::merge_copies(record.copies, copies);
        }
        record.refreshed_at = record.refreshed_at.max(now_secs());
        inner
            .trees
            .records
            .insert(key.0, &record.encode()[..])
            .map_err(|e| StoreError::db(&inner.db_path, e))?;
        // A pin is a promise to keep the block: durable before it is answered.
        // A refresh time is a hint, flushed with whatever comes next.
        if pinning || old.is_none() {
            self.flush()?;
        }
        Ok(())
    }

    /// Deletes a block; false if it was not held.
    pub fn delete(&self, key: &Id) -> Result<bool, StoreError> {
        self.delete_if(key, |_| true)
    }

    /// Deletes a block only while it is a replica, checked under the key's
    /// lock, so a pin landing meanwhile keeps it; false if it is not held or
    /// is pinned.
    pub fn delete_replica(&self, key: &Id) -> Result<bool, StoreError> {
        self.delete_if(key, |r| r.origin == Origin::Replica)
    }

    fn delete_if(&self, key: &Id, may: impl Fn(&BlockRecord) -> bool) -> Result<bool, StoreError> {
        use sled::transaction::{TransactionError, Transactional};
        let inner = &*self.inner;
        let _key_lock = lock(&inner.locks[usize::from(key.0[0]) % LOCK_STRIPES]);
        let Some(entry) = self.entry(key)? else {
            return Ok(false);
        };
        if !may(&self.record_or_default(key, &entry)?) {
            return Ok(false);
        }
        self.reopen_if_closed()?;
        let trees = &inner.trees;
        (&trees.index, &trees.inline, &trees.records)
            .transaction(|(index, inline, records)| {
                index.remove(&key.0[..])?;
                inline.remove(&key.0[..])?;
                records.remove(&key.0[..])?;
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => StoreError::db(&inner.db_path, e),
                TransactionError::Abort(()) => {
                    StoreError::corrupt(&inner.db_path, "delete aborted")
                }
            })?;
        inner.blocks.fetch_sub(1, Ordering::SeqCst);
        inner.bytes.fetch_sub(entry.size, Ordering::SeqCst);
        let cost = charge(entry.size, entry.is_small());
        inner.charged.fetch_sub(cost, Ordering::SeqCst);
        self.sync().map_err(|e| StoreError::db(&inner.db_path, e))?;
        // The entry is durably gone: its bytes can go.
        if let Location::Segment(place) = entry.location {
            inner.segments.punch(place, entry.size);
            inner.segment_reclaimable.fetch_add(
                entry.size + super::segment_format::RECORD_HEADER_LEN,
                Ordering::Relaxed,
            );
        }
        if entry.location == Location::File {
            let path = files::block_path(&inner.dir, key);
            if let Err(e) = files::remove_block(&path) {
                // The block is already gone from the index; the next open removes the file.
                tracing::warn!(path = %path.display(), error = %e, "cannot remove deleted block file");
            }
        }
        Ok(true)
    }
}
