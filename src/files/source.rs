//! What a put serves while nodes pull from it: chunks read straight from the
//! source file by offset (no copy on disk), sealed again as they are pulled
//! when the file is sealed, and manifest blocks kept in memory. A get's
//! client serves nothing.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use crate::id::Id;
use crate::seal::{self, SealKey};
use crate::store::{resident, BlockStore, PutOutcome, Serving, StoreError, SEND_FROM_CACHE_AT};

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
    file: Arc<File>,
    path: PathBuf,
    chunks: RwLock<HashMap<Id, Located>>,
    extra: Mutex<HashMap<Id, Arc<Vec<u8>>>>,
    sealed: Mutex<VecDeque<(Id, Arc<Vec<u8>>)>>,
}

impl FileSource {
    /// Serves `chunks` (key → where, how sealed) out of `file`.
    pub fn new(file: File, path: PathBuf, chunks: HashMap<Id, Located>) -> FileSource {
        FileSource {
            file: Arc::new(file),
            path,
            chunks: RwLock::new(chunks),
            extra: Mutex::new(HashMap::new()),
            sealed: Mutex::new(VecDeque::new()),
        }
    }

    /// Serves one more chunk of the file: a put hands each over as soon as
    /// it is planned, while the nodes pull the earlier ones.
    pub fn locate(&self, key: Id, at: Located) {
        let mut chunks = self.chunks.write().unwrap_or_else(|p| p.into_inner());
        chunks.entry(key).or_insert(at);
    }

    /// Where chunk `key` is in the file, if it is one.
    fn chunk(&self, key: &Id) -> Option<Located> {
        let chunks = self.chunks.read().unwrap_or_else(|p| p.into_inner());
        chunks.get(key).copied()
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
        self.chunk(key).is_some() || self.extra.lock().is_ok_and(|e| e.contains_key(key))
    }

    fn get(&self, key: &Id) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(at) = self.chunk(key) {
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

    /// A plain chunk at least `SEND_FROM_CACHE_AT` long whose bytes are all
    /// in the page cache (as after the put read them to hash them) goes as
    /// its range of the file, for the kernel to send to each replica.
    fn serving(&self, key: &Id) -> Result<Option<Serving>, StoreError> {
        if let Some(at) = self.chunk(key) {
            if at.seal.is_none()
                && at.size >= SEND_FROM_CACHE_AT
                && resident(&self.file, at.offset, at.size)
            {
                return Ok(Some(Serving::File {
                    file: self.file.clone(),
                    at: at.offset,
                    len: at.size,
                }));
            }
        }
        Ok(self.get_for_serving(key)?.map(Serving::Bytes))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_plain_chunk_goes_as_its_range_of_the_file_and_a_sealed_or_short_one_as_bytes() {
        let mut file = tempfile::NamedTempFile::new_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let data: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 253) as u8).collect();
        file.write_all(&data).unwrap();
        let plain = |offset, size| Located {
            offset,
            size,
            seal: None,
            chunk_size: 1 << 20,
        };
        let (big, short, sealed) = (Id([1; 32]), Id([2; 32]), Id([3; 32]));
        let chunks = HashMap::from([
            (big, plain(1 << 20, 1 << 20)),
            (short, plain(5, 1000)),
            (
                sealed,
                Located {
                    seal: Some(SealKey([9; 32])),
                    ..plain(2 << 20, 1 << 20)
                },
            ),
        ]);
        let path = file.path().to_path_buf();
        let opened = File::open(&path).unwrap();
        assert!(
            crate::store::can_tell(&opened),
            "{}",
            crate::store::NEEDS_CACHESTAT
        );
        let source = FileSource::new(opened, path, chunks);
        match source.serving(&big).unwrap().unwrap() {
            Serving::File { at, len, .. } => assert_eq!((at, len), (1 << 20, 1 << 20)),
            other => panic!("a cached plain chunk is sent from the file: {other:?}"),
        }
        match source.serving(&short).unwrap().unwrap() {
            Serving::Bytes(b) => assert!(b == data[5..1005]),
            other => panic!("a short chunk is copied: {other:?}"),
        }
        match source.serving(&sealed).unwrap().unwrap() {
            Serving::Bytes(b) => assert_ne!(b[..64], data[2 << 20..(2 << 20) + 64], "sealed"),
            other => panic!("a sealed chunk is sealed in memory: {other:?}"),
        }
        assert!(source.serving(&Id([4; 32])).unwrap().is_none());
    }
}
