//! Making writes durable: the flush every writer shares (`group_commit.rs`),
//! and the clean close that also records what the store holds (`summary.rs`).

use std::sync::atomic::Ordering;

use super::index::SEGMENTS_SYNCED_KEY;
use super::{summary, Store, StoreError};

/// A segment's error in the shape group commit passes on (its I/O error
/// kept, so a full disk is still named one).
fn as_sled(e: StoreError) -> sled::Error {
    sled::Error::Io(match e {
        StoreError::Io { source, .. } => source,
        StoreError::DiskFull { .. } => std::io::Error::from_raw_os_error(libc::ENOSPC),
        other => std::io::Error::other(other.to_string()),
    })
}

impl Store {
    /// Closes the store cleanly: makes every write durable and records what
    /// it holds, so that the next open need not walk every block
    /// (`summary.rs`). Call it once nothing else writes, as the daemon does
    /// at shutdown; a put or delete after it takes the record back first.
    pub fn close(&self) -> Result<(), StoreError> {
        let inner = &*self.inner;
        self.flush()?;
        let s = summary::Summary {
            blocks: self.block_count(),
            bytes: self.bytes_stored(),
            charged: self.charged_bytes(),
        };
        inner
            .trees
            .meta
            .insert(summary::SUMMARY_KEY, &s.encode()[..])
            .map_err(|e| StoreError::db(&inner.db_path, e))?;
        inner.closed.store(true, Ordering::SeqCst);
        self.flush()
    }

    /// Takes back the summary of a [`Store::close`] before the counts change.
    pub(super) fn reopen_if_closed(&self) -> Result<(), StoreError> {
        let inner = &*self.inner;
        if inner.closed.swap(false, Ordering::SeqCst) {
            inner
                .trees
                .meta
                .remove(summary::SUMMARY_KEY)
                .map_err(|e| StoreError::db(&inner.db_path, e))?;
            self.flush()?;
        }
        Ok(())
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.sync()
            .map_err(|e| StoreError::db(&self.inner.db_path, e))
    }

    /// Waits for a flush that started after this call, sharing it with
    /// every other writer waiting (`group_commit.rs`).
    ///
    /// One flush: sled first (every index entry written so far, and the
    /// segments' durable point as the previous flush left it), the
    /// segments' fdatasync last. sled makes its log durable with
    /// `sync_file_range`, which neither empties the disk's write cache nor
    /// writes the log file's size; the fdatasync after it does both (ext4
    /// sends the disk a cache flush and commits its journal), so what a
    /// flush answers for survives a power cut, not only a crash of the
    /// process. An entry past the recorded point is checked by the next
    /// open after a crash (`segments.rs`); every entry of this flush passes,
    /// since its bytes are synced before any of its puts is answered.
    pub(super) fn sync(&self) -> Result<(), sled::Error> {
        let inner = &*self.inner;
        inner.commit.flush(|| {
            let point = inner.segments.synced().encode();
            if inner.trees.meta.get(SEGMENTS_SYNCED_KEY)?.as_deref() != Some(&point[..]) {
                inner.trees.meta.insert(SEGMENTS_SYNCED_KEY, &point[..])?;
            }
            inner.db.flush()?;
            inner.segments.sync().map_err(as_sled)?;
            Ok(())
        })
    }
}
