//! The store of record: blocks, the node id and the routing snapshot on local disk.
//!
//! Layout of a data dir:
//! - `db/`: sled, with trees `meta` (node id, schema version), `index` (key → size,
//!   location, stored_at; a fixed 18-byte record, laid out in `index.rs`), `inline`
//!   (bytes of blocks up to `inline_max`), `routing` (the routing snapshot) and
//!   `records` (how each block came, when stored and refreshed; `records.rs`).
//! - `segments/<8 hex>.seg`: bytes of blocks up to `inline_max`, appended
//!   (`segments.rs`); `inline` holds those stored before segments existed.
//! - `blocks/ab/cd/<64 hex>`: bytes of larger blocks, one file each, named by key.
//! - `tmp/`: files being written; whatever is here at open is a crash leftover.
//!
//! Large blocks are files, not sled values, because sled 0.34.7 handles big values
//! badly: with 1 MiB values it measured 2.4x disk use after 1,000 writes and 4.1x
//! after deleting and rewriting half, ~1 GiB RSS, and a write rate falling from
//! 760 to 140 MiB/s, while one file per block stayed at 1.01x. Small blocks stay in
//! sled, where a file each would waste a disk block and an inode.
//!
//! Durability: nothing is acknowledged before it is on disk, and a crash at any
//! point leaves a state [`Store::open`] repairs.
//! - small put: append to the active segment, then one sled transaction over
//!   `index` and `records`, then a flush shared with the puts running at the
//!   same time (`group_commit.rs`): the segment's fsync, its durable point
//!   into `meta`, sled's flush. An open after a crash checks what lies past
//!   the durable point and drops entries whose bytes did not make it.
//! - file put: write `tmp/<random>`, fsync, rename into `blocks/`, fsync the
//!   directory (and any directory just created), then insert the index entry and
//!   its record in one transaction and flush. A crash before the insert leaves a
//!   stray file, never a dangling entry.
//! - delete: remove the index (and inline) entry and the record in one
//!   transaction and flush, then the file; a crash in between leaves a stray
//!   file, which the next open removes.
//!
//! Concurrency: puts and deletes of one key are serialized by a lock striped on
//! the key's first byte, so two puts of one key store it once and a delete cannot
//! interleave with a put; a second put of a key waits for the first one's flush
//! and only then answers `AlreadyHad`, and `contains` says no while a put of the
//! key is in flight (`in_flight.rs`). Quota space is reserved under a mutex
//! before writing, so concurrent puts cannot overshoot the quota; the quota
//! charges each block its bookkeeping too (`charge.rs`).
//!
//! Full disks: a put is refused before writing anything when it would take the
//! data dir's disk below the free-space floor (`free_space.rs`); a write that
//! fails anyway (ENOSPC, any I/O or sled error) removes its temp file and its
//! block file and takes its index entry back, so nothing half-stored remains.
//!
//! Where the [`Store`] methods live: `open.rs` (open, audit), `write.rs` (put,
//! a batch of puts under one flush, delete), `read.rs` (get, contains, meta, list), `space.rs` (counts, quota,
//! room checks), `durability.rs` (flush, close), `bookkeeping.rs` (records,
//! pins, upkeep progress), `snapshot.rs` (routing snapshot) and
//! `block_store.rs` (what the engine sees); `batch_writer.rs` queues puts
//! from many callers for one thread to write in batches.

pub mod batch_writer;
mod block_store;
mod bookkeeping;
mod charge;
mod compact;
mod durability;
mod error;
mod files;
mod free_space;
mod group_commit;
mod in_flight;
mod index;
mod migrate;
mod open;
mod page_cache;
mod pins;
pub mod pressure;
mod progress;
mod read;
mod records;
mod repair;
mod segment_format;
mod segments;
mod snapshot;
mod space;
mod summary;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_records;
#[cfg(test)]
mod tests_repair;
#[cfg(test)]
mod tests_segments;
#[cfg(test)]
mod tests_serving;
#[cfg(test)]
mod tests_space;
#[cfg(test)]
mod tests_summary;
mod types;
mod unmounted;
mod write;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::id::Id;

pub use batch_writer::{BatchWriter, Submitted};
pub use compact::{Compacted, SegmentUse};
pub use error::StoreError;
pub use free_space::{disk_space, DiskSpace};
pub use migrate::SCHEMA_VERSION;
#[cfg(test)]
pub(crate) use page_cache::NEEDS_CACHESTAT;
pub use page_cache::{can_tell, resident, SEND_FROM_CACHE_AT};
pub use pins::PinInfo;
pub use records::{copies_of, BlockRecord, Origin, Refresh};
pub use types::{
    AuditReport, BlockMeta, BlockStore, PutOutcome, RepairReport, Serving, StoreConfig,
};
pub use write::PutItem;

use free_space::DiskFloor;
use group_commit::GroupCommit;
use in_flight::InFlight;
use index::Trees;

/// Number of key-striped locks; 256 so the first key byte picks one directly.
const LOCK_STRIPES: usize = 256;

/// A handle to an open data dir; clones share it.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    db_path: PathBuf,
    cfg: StoreConfig,
    db: sled::Db,
    trees: Trees,
    node_id: Id,
    schema_version: u32,
    blocks: AtomicU64,
    bytes: AtomicU64,
    /// What the blocks held are charged against the quota (bytes plus bookkeeping).
    charged: AtomicU64,
    /// Charges of puts in flight that passed the quota check but are not yet counted.
    reserved: Mutex<u64>,
    locks: Vec<Mutex<()>>,
    in_flight: InFlight,
    /// Read-held by a batch of puts from its first append to its index
    /// transaction; write-held by compaction while it proves a segment
    /// unreferenced and removes it (so no record not yet indexed goes).
    staging: std::sync::RwLock<()>,
    floor: DiskFloor,
    /// Where concurrent writers share their flushes.
    commit: GroupCommit,
    /// The segment files small blocks are appended to.
    segments: segments::Segments,
    /// Bytes compaction moved since the open.
    compaction_moved: AtomicU64,
    /// Bytes of deleted records in segments that compaction will give back:
    /// counted as free by the shedding pressure, so shedding does not keep
    /// deleting while the disk waits for the next pass. Set by each pass.
    segment_reclaimable: AtomicU64,
    /// Set by [`Store::close`], whose summary a later put or delete takes back.
    closed: AtomicBool,
    /// Puts from the network, written in batches ([`Store::put_queued`]).
    writer: BatchWriter,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .field("node_id", &self.inner.node_id)
            .field("blocks", &self.block_count())
            .finish()
    }
}

/// Locks a mutex, ignoring poisoning: the data guarded is a counter or `()`.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
