//! The plain public types of the store: its config, reports, outcomes, and the
//! [`BlockStore`] trait the protocol engine is written against.

use std::path::PathBuf;

use super::index::IndexEntry;
use super::records::{BlockRecord, Origin, Refresh};
use super::StoreError;
use crate::id::Id;

/// Tunables of a [`Store`](super::Store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Blocks up to this many bytes are appended to segment files (those
    /// stored before segments stay in sled); larger ones are files.
    pub inline_max: usize,
    /// sled page cache size in bytes.
    pub cache_bytes: u64,
    /// Largest block accepted, in bytes.
    pub max_block_size: usize,
    /// Most bytes this node will hold, each block charged its bookkeeping
    /// too (see `charge.rs`); `None` for no limit.
    pub quota_bytes: Option<u64>,
    /// Refuse blocks that would leave the data dir's disk with less free than
    /// this many bytes...
    pub min_free_bytes: u64,
    /// ...or this percentage of its size, whichever is larger (both 0: off).
    pub min_free_percent: u8,
    /// Open even when most block files are missing (an unmounted disk?),
    /// dropping their index entries; otherwise such an open is refused.
    pub accept_data_loss: bool,
    /// A segment file takes no more appends once it is this long.
    pub segment_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            // A node's default (`Config::inline_max`) is 1 MiB, every block:
            // the store's own stays at 64 KiB, the layout of every data dir
            // written before, so that its tests keep covering block files.
            inline_max: 64 * 1024,
            cache_bytes: 64 * 1024 * 1024,
            max_block_size: 1024 * 1024,
            quota_bytes: None,
            min_free_bytes: 1 << 30,
            min_free_percent: 5,
            accept_data_loss: false,
            segment_bytes: super::segments::ROLL_AT,
        }
    }
}

/// What [`Store::open`](super::Store::open) fixed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Leftover files removed from `tmp/`.
    pub temp_files_removed: u64,
    /// Index entries dropped because their bytes were missing or the wrong size.
    pub index_entries_dropped: u64,
    /// Files removed from `blocks/` that no index entry referred to.
    pub stray_files_removed: u64,
    /// Index entries with malformed keys and unreachable inline values removed.
    pub corrupt_entries_dropped: u64,
}

impl RepairReport {
    /// True when nothing needed fixing.
    pub fn is_clean(&self) -> bool {
        *self == RepairReport::default()
    }
}

/// What [`Store::audit`](super::Store::audit) found, without changing anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditReport {
    /// Index entries whose bytes are present and the right size.
    pub blocks: u64,
    /// Keys whose index entry has missing or wrong-sized bytes, or does not decode.
    pub index_without_bytes: Vec<Id>,
    /// Files under `blocks/` that no good index entry refers to.
    pub stray_files: Vec<PathBuf>,
    /// Entries in `tmp/`.
    pub temp_files: u64,
    /// Index entries with malformed keys plus inline values no index entry reaches.
    pub corrupt_entries: u64,
}

impl AuditReport {
    /// True when the dir is exactly as the write protocol leaves it without a crash.
    pub fn is_clean(&self) -> bool {
        self.index_without_bytes.is_empty()
            && self.stray_files.is_empty()
            && self.temp_files == 0
            && self.corrupt_entries == 0
    }
}

/// Result of a successful put.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// The block is new and now durable.
    Stored,
    /// The block was already held; nothing was written.
    AlreadyHad,
}

/// What the store knows about a block without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockMeta {
    /// Length in bytes.
    pub size: u64,
    /// True if the bytes live in a segment (or, stored before segments, in
    /// sled), false if in a file of their own.
    pub inline: bool,
    /// When it was stored, unix seconds.
    pub stored_at: u64,
    /// How it came: pinned here, or a replica held for the network.
    pub origin: Origin,
    /// When it was last stored to us again or republished by us, unix seconds.
    pub refreshed_at: u64,
    /// Which of the two that was.
    pub last_refresh: Refresh,
    /// Nodes the network should keep it on; 0 for its K.
    pub copies: u8,
}

impl BlockMeta {
    pub(crate) fn new(e: IndexEntry, r: BlockRecord) -> BlockMeta {
        BlockMeta {
            size: e.size,
            inline: e.is_small(),
            stored_at: e.stored_at,
            origin: r.origin,
            refreshed_at: r.refreshed_at,
            last_refresh: r.last_refresh,
            copies: r.copies,
        }
    }

    /// The record part of it, for [`BlockRecord::stored_again_within`].
    pub fn record(&self) -> BlockRecord {
        BlockRecord {
            origin: self.origin,
            stored_at: self.stored_at,
            refreshed_at: self.refreshed_at,
            last_refresh: self.last_refresh,
            copies: self.copies,
        }
    }
}

/// A block as the block server sends it.
#[derive(Debug)]
pub enum Serving {
    /// Its bytes, in memory.
    Bytes(Vec<u8>),
    /// `len` bytes of `file` from `at`, all in the page cache when looked
    /// at: sent by the kernel (sendfile), not copied through this process.
    File {
        file: std::sync::Arc<std::fs::File>,
        at: u64,
        len: u64,
    },
}

impl Serving {
    /// The block's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Serving::Bytes(data) => data.len() as u64,
            Serving::File { len, .. } => *len,
        }
    }

    /// True for an empty block.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the protocol engine needs from block storage (also implemented later by an
/// in-memory store for simulation).
/// A put handed to a store's writer, resolved once it is durable.
pub type PendingPut =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<PutOutcome, StoreError>> + Send>>;

pub trait BlockStore: Send + Sync + 'static {
    /// True if the block is held.
    fn contains(&self, key: &Id) -> bool;
    /// The block's bytes, if held, checked against the key.
    fn get(&self, key: &Id) -> Result<Option<Vec<u8>>, StoreError>;
    /// The block's bytes for sending to a peer, who checks them itself; a
    /// store may skip hashing here.
    fn get_for_serving(&self, key: &Id) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(key)
    }
    /// What the block server sends for `key`: its bytes as
    /// [`get_for_serving`](Self::get_for_serving) gives them, or, from a
    /// store that can tell its bytes are in the page cache, where they lie
    /// in a file, for the kernel to send.
    fn serving(&self, key: &Id) -> Result<Option<Serving>, StoreError> {
        Ok(self.get_for_serving(key)?.map(Serving::Bytes))
    }
    /// Stores `data` under `key` after checking that it hashes to `key`.
    fn put_verified(&self, key: &Id, data: &[u8]) -> Result<PutOutcome, StoreError>;
    /// [`put_verified`](Self::put_verified) of a block the network should
    /// keep on `copies` nodes (0: its K); a store that keeps no records
    /// keeps no count.
    fn put_copies(&self, key: &Id, data: &[u8], copies: u8) -> Result<PutOutcome, StoreError> {
        let _ = copies;
        self.put_verified(key, data)
    }
    /// [`put_copies`](Self::put_copies) of bytes the caller gives up,
    /// awaited rather than blocked on: a store whose puts block on I/O
    /// hands them to a writer of its own and must override this; the
    /// default puts at once, on the caller's thread.
    fn put_copies_queued(&self, key: Id, data: Vec<u8>, copies: u8) -> PendingPut {
        Box::pin(std::future::ready(self.put_copies(&key, &data, copies)))
    }
    /// Whether a block of `size` bytes would be accepted now.
    fn check_room(&self, size: u64) -> Result<(), StoreError>;
    /// Whether `put_verified` may block on I/O, and so must run off the async
    /// runtime; an in-memory store answers false and is called inline.
    fn puts_may_block(&self) -> bool {
        true
    }
    /// Drops a block held for the network (never a pinned one); false when
    /// it was not held, or is pinned, or this store drops nothing.
    fn drop_replica(&self, _key: &Id) -> Result<bool, StoreError> {
        Ok(false)
    }
    /// A block already held was stored to us again (a store_value for it):
    /// a store that keeps records counts it as refreshed.
    fn stored_again(&self, _key: &Id) {}
}
