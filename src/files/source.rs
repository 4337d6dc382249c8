//! What a put serves while nodes pull from it: chunks read straight from the
//! source file by offset (no copy in memory or on disk), and manifest blocks
//! kept in memory. A get's client serves nothing.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::id::Id;
use crate::store::{BlockStore, PutOutcome, StoreError};

/// Chunks of one file, by key, and extra blocks held in memory.
pub struct FileSource {
    file: File,
    path: PathBuf,
    chunks: HashMap<Id, (u64, u64)>,
    extra: Mutex<HashMap<Id, Arc<Vec<u8>>>>,
}

impl FileSource {
    /// Serves `chunks` (key → offset, size) out of `file`.
    pub fn new(file: File, path: PathBuf, chunks: HashMap<Id, (u64, u64)>) -> FileSource {
        FileSource {
            file,
            path,
            chunks,
            extra: Mutex::new(HashMap::new()),
        }
    }

    /// Adds a block served from memory (a manifest).
    pub fn add(&self, key: Id, data: Vec<u8>) {
        if let Ok(mut extra) = self.extra.lock() {
            extra.insert(key, Arc::new(data));
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
        if let Some(&(offset, size)) = self.chunks.get(key) {
            let mut data = vec![0u8; size as usize];
            self.file
                .read_exact_at(&mut data, offset)
                .map_err(|source| StoreError::Io {
                    path: self.path.clone(),
                    source,
                })?;
            // Not hashed again: if the file changed since it was planned, the
            // node pulling it refuses the bytes and the put reports the chunk.
            return Ok(Some(data));
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
