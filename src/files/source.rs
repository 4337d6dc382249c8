//! What a put serves while nodes pull from it: chunks read straight from the
//! source file by offset (no copy on disk), sealed again as they are pulled
//! when the file is sealed, and manifest blocks kept in memory. A get's
//! client serves nothing.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::id::Id;
use crate::seal::{self, SealKey};
use crate::store::{BlockStore, PutOutcome, StoreError};

/// Sealed blocks kept after sealing, so that the replicas pulling one chunk
/// about together cost one sealing, not one each: a put has 16 chunks in
/// flight by default, so this holds them and some.
const SEALED_KEPT: usize = 48;

/// Where a chunk's bytes are in the file, and how to seal them.
#[derive(Clone, Copy, Debug)]
pub struct Located {
    pub offset: u64,
    pub size: u64,
    /// A sealed chunk's key, and the chunk size its padding follows.
    pub seal: Option<SealKey>,
    pub chunk_size: u64,
}

/// Chunks of one file, by key, and extra blocks held in memory.
pub struct FileSource {
    file: File,
    path: PathBuf,
    chunks: HashMap<Id, Located>,
    extra: Mutex<HashMap<Id, Arc<Vec<u8>>>>,
    sealed: Mutex<VecDeque<(Id, Arc<Vec<u8>>)>>,
}

impl FileSource {
    /// Serves `chunks` (key → where, how sealed) out of `file`.
    pub fn new(file: File, path: PathBuf, chunks: HashMap<Id, Located>) -> FileSource {
        FileSource {
            file,
            path,
            chunks,
            extra: Mutex::new(HashMap::new()),
            sealed: Mutex::new(VecDeque::new()),
        }
    }

    fn kept(&self, key: &Id) -> Option<Arc<Vec<u8>>> {
        let kept = self.sealed.lock().ok()?;
        kept.iter().find(|(k, _)| k == key).map(|(_, b)| b.clone())
    }

    fn keep(&self, key: Id, block: Arc<Vec<u8>>) {
        if let Ok(mut kept) = self.sealed.lock() {
            if kept.len() >= SEALED_KEPT {
                kept.pop_front();
            }
            kept.push_back((key, block));
        }
    }

    /// Adds a block served from memory (a manifest, a stripe, a shard).
    pub fn add(&self, key: Id, data: Vec<u8>) {
        if let Ok(mut extra) = self.extra.lock() {
            extra.insert(key, Arc::new(data));
        }
    }

    /// Stops serving a block added with [`FileSource::add`] (a shard stored).
    pub fn remove(&self, key: &Id) {
        if let Ok(mut extra) = self.extra.lock() {
            extra.remove(key);
        }
    }
}

fn read_only() -> StoreError {
    StoreError::Io {
        path: PathBuf::from("<put client>"),
        source: std::io::Error::other("a put client stores nothing"),
    }
}

impl BlockStore for FileSource {
    fn contains(&self, key: &Id) -> bool {
        self.chunks.contains_key(key) || self.extra.lock().is_ok_and(|e| e.contains_key(key))
    }

    fn get(&self, key: &Id) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(at) = self.chunks.get(key) {
            if let Some(block) = at.seal.and_then(|_| self.kept(key)) {
                return Ok(Some(block.as_ref().clone()));
            }
            let mut data = vec![0u8; at.size as usize];
            self.file
                .read_exact_at(&mut data, at.offset)
                .map_err(|source| StoreError::Io {
                    path: self.path.clone(),
                    source,
                })?;
            // Not hashed again: if the file changed since it was planned, the
            // node pulling it refuses the bytes and the put reports the chunk.
            let Some(seal_key) = at.seal else {
                return Ok(Some(data));
            };
            let block = seal::reseal_chunk(&seal_key, &data, at.chunk_size);
            self.keep(*key, Arc::new(block.clone()));
            return Ok(Some(block));
        }
        let extra = self.extra.lock().map_err(|_| read_only())?;
        Ok(extra.get(key).map(|d| d.as_ref().clone()))
    }

    fn put_verified(&self, _: &Id, _: &[u8]) -> Result<PutOutcome, StoreError> {
        Err(read_only())
    }

    fn check_room(&self, _: u64) -> Result<(), StoreError> {
        Err(read_only())
    }
}

/// Serves nothing and stores nothing: a get's client.
pub struct NoBlocks;

impl BlockStore for NoBlocks {
    fn contains(&self, _: &Id) -> bool {
        false
    }

    fn get(&self, _: &Id) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }

    fn put_verified(&self, _: &Id, _: &[u8]) -> Result<PutOutcome, StoreError> {
        Err(read_only())
    }

    fn check_room(&self, _: u64) -> Result<(), StoreError> {
        Err(read_only())
    }
}
