//! What the store keeps about its blocks beside their bytes: each block's
//! record (how it came, when it was stored and refreshed), the pinned roots,
//! and where the upkeep jobs stand. The bytes and index are `read.rs`'s and `write.rs`'s.

use super::index::IndexEntry;
use super::{lock, pins, progress, BlockRecord, Origin, PinInfo, Refresh, Store, StoreError};
use super::{now_secs, LOCK_STRIPES};
use crate::id::Id;

impl Store {
    /// The record of a held block, as stored (None when absent or unreadable).
    pub(super) fn record_raw(&self, key: &Id) -> Result<Option<BlockRecord>, StoreError> {
        let inner = &*self.inner;
        let raw = inner
            .trees
            .records
            .get(key.0)
            .map_err(|e| StoreError::db(&inner.db_path, e))?;
        Ok(raw.and_then(|v| BlockRecord::decode(&v)))
    }

    /// How a held block came and when it was stored and refreshed; `None` if
    /// the block is not held.
    pub fn record(&self, key: &Id) -> Result<Option<BlockRecord>, StoreError> {
        let Some(entry) = self.entry(key)? else {
            return Ok(None);
        };
        Ok(Some(self.record_or_default(key, &entry)?))
    }

    /// The record of a block whose index entry is `entry`; one the db lacks
    /// (only a damaged db can) reads as a replica stored with the entry.
    pub(super) fn record_or_default(
        &self,
        key: &Id,
        entry: &IndexEntry,
    ) -> Result<BlockRecord, StoreError> {
        Ok(self
            .record_raw(key)?
            .unwrap_or_else(|| BlockRecord::new(Origin::Replica, entry.stored_at)))
    }

    /// Sets a held block's origin (a pin, an unpin), keeping its times;
    /// false if it is not held. Not flushed: call [`Store::flush`] after a
    /// batch of them.
    pub fn set_origin(&self, key: &Id, origin: Origin) -> Result<bool, StoreError> {
        let inner = &*self.inner;
        let _key_lock = lock(&inner.locks[usize::from(key.0[0]) % LOCK_STRIPES]);
        let Some(entry) = self.entry(key)? else {
            return Ok(false);
        };
        let mut record = self.record_or_default(key, &entry)?;
        record.origin = origin;
        inner
            .trees
            .records
            .insert(key.0, &record.encode()[..])
            .map_err(|e| StoreError::db(&inner.db_path, e))?;
        Ok(true)
    }

    /// Records `root` as pinned, durably.
    pub fn add_pin(&self, root: &Id, info: &PinInfo) -> Result<(), StoreError> {
        let inner = &*self.inner;
        pins::add(&inner.trees.pins, &inner.db_path, root, info)?;
        self.flush()
    }

    /// Lists `blocks` as held for the sealed pin of `root` (not flushed: the
    /// pin's own flush makes them durable).
    pub fn add_pin_blocks(&self, root: &Id, blocks: &[Id]) -> Result<(), StoreError> {
        let inner = &*self.inner;
        pins::add_blocks(&inner.trees.pin_blocks, &inner.db_path, root, blocks)
    }

    /// The blocks listed for the sealed pin of `root`.
    pub fn pin_blocks(&self, root: &Id) -> Result<Vec<Id>, StoreError> {
        let inner = &*self.inner;
        pins::blocks(&inner.trees.pin_blocks, &inner.db_path, root)
    }

    /// Forgets the pin of `root` and its block list, durably; false if there
    /// was no pin.
    pub fn remove_pin(&self, root: &Id) -> Result<bool, StoreError> {
        let inner = &*self.inner;
        pins::remove_blocks(&inner.trees.pin_blocks, &inner.db_path, root)?;
        let removed = inner
            .trees
            .pins
            .remove(root.0)
            .map_err(|e| StoreError::db(&inner.db_path, e))?
            .is_some();
        self.flush()?;
        Ok(removed)
    }

    /// Saves where upkeep job `job` stands (not flushed; see `progress.rs`).
    pub fn save_progress<T: serde::Serialize>(
        &self,
        job: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        progress::save(&self.inner.trees.upkeep, &self.inner.db_path, job, value)
    }

    /// Where upkeep job `job` stood when last saved.
    pub fn load_progress<T: serde::de::DeserializeOwned>(
        &self,
        job: &str,
    ) -> Result<Option<T>, StoreError> {
        progress::load(&self.inner.trees.upkeep, &self.inner.db_path, job)
    }

    /// Every pinned root, in key order.
    pub fn pins(&self) -> Result<Vec<(Id, PinInfo)>, StoreError> {
        pins::list(&self.inner.trees.pins, &self.inner.db_path)
    }

    /// Marks a held block refreshed now, by `how`; false if it is not held.
    /// Not flushed: a refresh time is a hint.
    pub fn mark_refreshed(&self, key: &Id, how: Refresh) -> Result<bool, StoreError> {
        let inner = &*self.inner;
        let now = now_secs();
        // Atomic per key, and never brings back the record of a deleted block.
        let updated = inner
            .trees
            .records
            .update_and_fetch(key.0, |old| {
                let mut r = BlockRecord::decode(old?)?;
                r.refreshed_at = r.refreshed_at.max(now);
                r.last_refresh = how;
                Some(r.encode().to_vec())
            })
            .map_err(|e| StoreError::db(&inner.db_path, e))?;
        Ok(updated.is_some())
    }

    /// How many held blocks were last refreshed (stored here, stored to us
    /// again, or republished by us) before `cutoff`, unix seconds. One pass
    /// over the records; a record that does not decode counts as refreshed
    /// never.
    pub fn count_refreshed_before(&self, cutoff: u64) -> Result<u64, StoreError> {
        let inner = &*self.inner;
        let mut n = 0;
        for item in inner.trees.records.iter() {
            let (_, value) = item.map_err(|e| StoreError::db(&inner.db_path, e))?;
            if BlockRecord::decode(&value).is_none_or(|r| r.refreshed_at < cutoff) {
                n += 1;
            }
        }
        Ok(n)
    }
}
