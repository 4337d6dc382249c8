//! Writing blocks: puts (inline or as a file, durable before they answer,
//! nothing left of a failed one) and deletes, each under its key's lock.

use std::path::Path;
use std::sync::atomic::Ordering;

use super::charge::charge;
use super::files;
use super::in_flight::Marked;
use super::index::{IndexEntry, Location};
use super::segments::Place;
use super::space::Reservation;
use super::{lock, now_secs, BlockRecord, Origin, PutOutcome, Store, StoreError, LOCK_STRIPES};
use crate::id::Id;

/// One block for [`Store::put_many`]: its key, bytes, origin and the copies
/// the network should keep (0: its K).
#[derive(Clone, Copy, Debug)]
pub struct PutItem<'a> {
    pub key: Id,
    pub data: &'a [u8],
    pub origin: Origin,
    pub copies: u8,
}

/// A put whose bytes are written, not yet indexed nor durable: what the
/// batch's one index transaction and its flush settle.
struct Staged<'a> {
    key: Id,
    /// Its block file, when not in a segment.
    file: Option<std::path::PathBuf>,
    /// Its record in a segment, when in one.
    place: Option<Place>,
    /// Its index entry, encoded, and its record.
    entry: Vec<u8>,
    record: BlockRecord,
    size: u64,
    cost: u64,
    /// Its space and its place among the keys in flight, held to the flush.
    _reservation: Reservation<'a>,
    _in_flight: Marked<'a>,
}

/// The lock stripe of `key`.
fn stripe_of(key: &Id) -> usize {
    usize::from(key.0[0]) % LOCK_STRIPES
}

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
        let item = PutItem {
            key: *key,
            data,
            origin,
            copies,
        };
        self.put_many(std::slice::from_ref(&item))
            .pop()
            .unwrap_or_else(|| {
                Err(StoreError::corrupt(
                    &self.inner.db_path,
                    "put lost its result",
                ))
            })
    }

    /// Puts every item as [`Store::put_with`] does, under one flush: each
    /// result, in order, means what a lone put's would (`Stored` and
    /// `AlreadyHad` only once durable). A batch writer hands a run of
    /// PutBlocks here together, so they cost one flush and no thread each.
    pub fn put_many(&self, items: &[PutItem<'_>]) -> Vec<Result<PutOutcome, StoreError>> {
        let inner = &*self.inner;
        // Every key's lock, held through the flush, taken in one order so
        // that two batches cannot wait on each other (a lone put holds one).
        let mut stripes: Vec<usize> = items.iter().map(|i| stripe_of(&i.key)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let _key_locks: Vec<_> = stripes.iter().map(|&s| lock(&inner.locks[s])).collect();
        let mut staged: Vec<Staged<'_>> = Vec::new();
        // Held from the first byte written to the index transaction, so that
        // compaction removes no segment holding records not yet indexed.
        let staging = inner.staging.read().unwrap_or_else(|p| p.into_inner());
        let mut results: Vec<Result<PutOutcome, StoreError>> = items
            .iter()
            .map(|item| self.stage(item, &mut staged))
            .collect();
        if staged.is_empty() {
            return results;
        }
        // One transaction indexes the whole batch: sled rolls its log buffer
        // twice for every transaction (two log writes, each waited for on
        // its I/O thread), which cost more than the rest of a small put.
        // A key staged here and asked for again in the batch is no more
        // durable than its first put: each fails with it.
        let fail = |results: &mut Vec<Result<PutOutcome, StoreError>>, e: sled::Error| {
            for (i, item) in items.iter().enumerate() {
                if results[i].is_ok() && staged.iter().any(|s| s.key == item.key) {
                    results[i] = Err(StoreError::db(&inner.db_path, e.clone()));
                }
            }
        };
        if let Err(e) = self.insert_entries(&staged) {
            for s in &staged {
                self.undo_bytes(s);
            }
            drop(staging);
            fail(&mut results, e);
            return results;
        }
        drop(staging);
        if let Err(e) = self.sync() {
            for s in &staged {
                self.take_back(&s.key, s.file.as_deref());
            }
            fail(&mut results, e);
            return results;
        }
        for s in &staged {
            inner.blocks.fetch_add(1, Ordering::SeqCst);
            inner.bytes.fetch_add(s.size, Ordering::SeqCst);
            inner.charged.fetch_add(s.cost, Ordering::SeqCst);
        }
        results
    }

    /// Checks `item` and, unless its block is already held, writes its
    /// bytes and index entry, not yet durable, adding it to `staged`.
    /// Called under the item's key lock.
    fn stage<'a>(
        &'a self,
        item: &PutItem<'_>,
        staged: &mut Vec<Staged<'a>>,
    ) -> Result<PutOutcome, StoreError> {
        let inner = &*self.inner;
        let (key, data) = (&item.key, item.data);
        let size = data.len() as u64;
        self.check_size(size)?;
        let actual = Id::of_block(data);
        if actual != *key {
            return Err(StoreError::HashMismatch { key: *key, actual });
        }
        if let Some(first) = staged.iter_mut().find(|s| s.key == *key) {
            // Twice in one batch: written once, with what both asked for.
            if item.origin == Origin::Pinned {
                first.record.origin = Origin::Pinned;
            }
            first.record.copies = BlockRecord::merge_copies(first.record.copies, item.copies);
            return Ok(PutOutcome::AlreadyHad);
        }
        if let Some(entry) = self.entry(key)? {
            self.refresh_record(key, &entry, item.origin, Some(item.copies))?;
            return Ok(PutOutcome::AlreadyHad);
        }
        let small = data.len() <= inner.cfg.inline_max;
        let cost = charge(size, small);
        let reservation = self.reserve(cost)?;
        inner.floor.check(cost, true)?;
        let in_flight = inner.in_flight.mark(*key);
        self.reopen_if_closed()?;
        let now = now_secs();
        let record = BlockRecord {
            copies: item.copies,
            ..BlockRecord::new(item.origin, now)
        };
        let (location, place, file) = if small {
            let place = inner.segments.append(key, data)?;
            (Location::Segment(place), Some(place), None)
        } else {
            let path = files::write_block(&inner.dir, key, data)?;
            (Location::File, None, Some(path))
        };
        let entry = IndexEntry {
            size,
            location,
            stored_at: now,
        }
        .encode();
        staged.push(Staged {
            key: *key,
            file,
            place,
            entry,
            record,
            size,
            cost,
            _reservation: reservation,
            _in_flight: in_flight,
        });
        Ok(PutOutcome::Stored)
    }

    /// Gives back the bytes of a staged put that was never indexed.
    fn undo_bytes(&self, s: &Staged<'_>) {
        if let Some(place) = s.place {
            self.inner.segments.punch(place, s.size);
        }
        if let Some(path) = &s.file {
            let _ = files::remove_block(path);
        }
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

    /// Inserts the index entry and record of every staged put in one
    /// transaction: all or none.
    fn insert_entries(&self, staged: &[Staged<'_>]) -> Result<(), sled::Error> {
        use sled::transaction::{TransactionError, Transactional};
        let trees = &self.inner.trees;
        (&trees.index, &trees.records)
            .transaction(|(index, records)| {
                for s in staged {
                    index.insert(&s.key.0[..], &s.entry[..])?;
                    records.insert(&s.key.0[..], &s.record.encode()[..])?;
                }
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => e,
                TransactionError::Abort(()) => sled::Error::Unsupported("put aborted".into()),
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
        let _key_lock = lock(&inner.locks[stripe_of(key)]);
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
