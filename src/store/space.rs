//! Space accounting: what the store holds and is charged for, the checks a
//! block must pass before it is written (size, quota, free-space floor), and
//! the quota space a put reserves while it writes.

use std::sync::atomic::Ordering;

use super::charge::charge;
use super::{free_space, lock, pressure, Inner, Store, StoreError};

/// Quota space held for one put; given back when dropped.
pub(super) struct Reservation<'a> {
    inner: &'a Inner,
    size: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        *lock(&self.inner.reserved) -= self.size;
    }
}

impl Store {
    /// Number of blocks held.
    pub fn block_count(&self) -> u64 {
        self.inner.blocks.load(Ordering::SeqCst)
    }

    /// Total bytes of the blocks held (not counting sled or file system overhead).
    pub fn bytes_stored(&self) -> u64 {
        self.inner.bytes.load(Ordering::SeqCst)
    }

    /// What the blocks held are charged against the quota: their bytes plus
    /// their bookkeeping (see `charge.rs`).
    pub fn charged_bytes(&self) -> u64 {
        self.inner.charged.load(Ordering::SeqCst)
    }

    /// Bytes to free for the store to be back under its low-water marks, or
    /// 0 when it is under its high-water marks (see `pressure.rs`).
    pub fn space_wanted(&self, marks: pressure::Marks) -> u64 {
        let cfg = &self.inner.cfg;
        let disk = free_space::disk_space(&self.inner.dir).ok().map(|space| {
            let floor = free_space::floor_bytes(space, cfg.min_free_bytes, cfg.min_free_percent);
            // Dead segment bytes are as good as free: compaction gives them back.
            let available = space.available.saturating_add(self.segment_reclaimable());
            (available, floor)
        });
        pressure::bytes_wanted(self.charged_bytes(), cfg.quota_bytes, disk, marks)
    }

    /// Fails with TooLarge, QuotaExceeded or LowDisk if a block of `size` bytes
    /// would be refused now; for checking before a transfer starts.
    pub fn check_room(&self, size: u64) -> Result<(), StoreError> {
        self.check_size(size)?;
        let cost = charge(size, size <= self.inner.cfg.inline_max as u64);
        let reserved = *lock(&self.inner.reserved);
        self.check_quota(cost, reserved)?;
        self.inner.floor.check(cost, false)
    }

    pub(super) fn check_size(&self, size: u64) -> Result<(), StoreError> {
        let max = self.inner.cfg.max_block_size as u64;
        if size > max {
            return Err(StoreError::TooLarge { size, max });
        }
        Ok(())
    }

    /// `size` here is a block's charge, not its length.
    fn check_quota(&self, size: u64, reserved: u64) -> Result<(), StoreError> {
        let Some(quota) = self.inner.cfg.quota_bytes else {
            return Ok(());
        };
        let used = self.charged_bytes().saturating_add(reserved);
        if used.saturating_add(size) > quota {
            return Err(StoreError::QuotaExceeded { size, used, quota });
        }
        Ok(())
    }

    pub(super) fn reserve(&self, size: u64) -> Result<Reservation<'_>, StoreError> {
        let mut reserved = lock(&self.inner.reserved);
        self.check_quota(size, *reserved)?;
        *reserved += size;
        Ok(Reservation {
            inner: &self.inner,
            size,
        })
    }
}
