//! Reading blocks: their bytes (checked on every read), whether one is held,
//! its meta, a listing in key order, and the index entry all of them start from.

use std::path::PathBuf;

use super::files;
use super::index::{IndexEntry, Location};
use super::page_cache::SEND_FROM_CACHE_AT;
use super::{BlockMeta, Serving, Store, StoreError};
use crate::id::Id;

impl Store {
    /// The block's bytes, checked against its key, or `None` if not held.
    pub fn get(&self, key: &Id) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(key, self.entry(key)?, true)
    }

    /// The block's bytes for sending to a peer: checked for size, not hashed,
    /// since every reader hashes what it receives (rot is then refused by the
    /// reader, which avoids this node, and found by Verify).
    pub fn get_for_serving(&self, key: &Id) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(key, self.entry(key)?, false)
    }

    /// What the block server sends: a large block whose bytes are all in the
    /// page cache as its range of a segment or its block file, for the
    /// kernel to send; any other as [`Store::get_for_serving`] reads it.
    pub fn serving(&self, key: &Id) -> Result<Option<Serving>, StoreError> {
        let entry = self.entry(key)?;
        if let Some(entry) = entry.filter(|e| e.size >= SEND_FROM_CACHE_AT) {
            let found = match entry.location {
                Location::Segment(place) => match u32::try_from(entry.size) {
                    Ok(len) => self
                        .inner
                        .segments
                        .resident_block(place, key, len)?
                        .map(|file| (file, place.at)),
                    Err(_) => None,
                },
                Location::File => {
                    resident_file(&files::block_path(&self.inner.dir, key), entry.size)
                        .map(|file| (file, 0))
                }
                Location::Inline => None,
            };
            if let Some((file, at)) = found {
                return Ok(Some(Serving::File {
                    file,
                    at,
                    len: entry.size,
                }));
            }
        }
        // The entry just read is the read's first: no second index lookup.
        Ok(self.read(key, entry, false)?.map(Serving::Bytes))
    }

    /// The block's bytes, starting from `first`, its index entry as just
    /// read (`None`: not held).
    fn read(
        &self,
        key: &Id,
        first: Option<IndexEntry>,
        check_hash: bool,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        // Compaction may move a small block between reading its entry and
        // its bytes: then its old place reads as another record, or its old
        // segment is gone, and the entry has changed. Read again from it.
        let mut tries = 0;
        let mut next = first;
        loop {
            let Some(entry) = next else {
                return Ok(None);
            };
            let moved = |read_entry: &IndexEntry| -> Result<bool, StoreError> {
                Ok(matches!(read_entry.location, Location::Segment(_))
                    && self.entry(key)?.is_some_and(|now| now != *read_entry))
            };
            match self.read_entry(key, entry, check_hash) {
                Ok(Some(data)) => return Ok(Some(data)),
                other if tries < 3 && moved(&entry)? => {
                    drop(other);
                    tries += 1;
                    next = self.entry(key)?;
                }
                other => return other,
            }
        }
    }

    fn read_entry(
        &self,
        key: &Id,
        entry: IndexEntry,
        check_hash: bool,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let inner = &*self.inner;
        let (data, path) = match entry.location {
            Location::Inline => {
                let value = inner
                    .trees
                    .inline
                    .get(key.0)
                    .map_err(|e| StoreError::db(&inner.db_path, e))?;
                (value.map(|v| v.to_vec()), inner.db_path.clone())
            }
            Location::Segment(place) => {
                let len = u32::try_from(entry.size).map_err(|_| {
                    StoreError::corrupt(
                        &inner.db_path,
                        format!("index entry of {key} is too long for a segment"),
                    )
                })?;
                let data = inner.segments.read_block(place, key, len)?;
                (data, inner.dir.join(super::segments::SEGMENTS_DIR))
            }
            Location::File => {
                let path = files::block_path(&inner.dir, key);
                match std::fs::read(&path) {
                    Ok(data) => (Some(data), path),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, path),
                    Err(e) => return Err(StoreError::io(&path, e)),
                }
            }
        };
        let Some(data) = data else {
            // A delete may have run between reading the entry and the bytes.
            if self.entry(key)?.is_none() {
                return Ok(None);
            }
            return Err(StoreError::corrupt(
                &path,
                format!("index has block {key} but its bytes are missing"),
            ));
        };
        // Checked on every read because open only checks sizes: never serve rot.
        if data.len() as u64 != entry.size || (check_hash && Id::of_block(&data) != *key) {
            return Err(StoreError::corrupt(
                &path,
                format!("bytes of block {key} do not match its key"),
            ));
        }
        Ok(Some(data))
    }

    /// True if the block is held durably (a put still in flight, or an
    /// unreadable index, counts as not held).
    pub fn contains(&self, key: &Id) -> bool {
        let index = &self.inner.trees.index;
        self.inner
            .in_flight
            .durable(key, || match index.contains_key(key.0) {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(error = %e, key = %key, "index lookup failed");
                    false
                }
            })
    }

    /// Size, location, origin and age of a held block.
    pub fn meta(&self, key: &Id) -> Result<Option<BlockMeta>, StoreError> {
        let Some(entry) = self.entry(key)? else {
            return Ok(None);
        };
        let record = self.record_or_default(key, &entry)?;
        Ok(Some(BlockMeta::new(entry, record)))
    }

    /// Where block `key`'s bytes lie on disk: a file and the offset of the
    /// first byte in it (a block file from 0, a segment record's data after
    /// its header); `None` for a block not held, or held inside sled.
    pub fn bytes_on_disk(&self, key: &Id) -> Result<Option<(PathBuf, u64)>, StoreError> {
        let Some(entry) = self.entry(key)? else {
            return Ok(None);
        };
        let dir = &self.inner.dir;
        Ok(match entry.location {
            Location::Inline => None,
            Location::Segment(place) => Some((super::segments::path_of(dir, place.seg), place.at)),
            Location::File => Some((files::block_path(dir, key), 0)),
        })
    }

    /// Up to `limit` blocks in key order, starting strictly after `after`.
    pub fn list(
        &self,
        after: Option<Id>,
        limit: usize,
    ) -> Result<Vec<(Id, BlockMeta)>, StoreError> {
        use std::ops::Bound;
        let inner = &*self.inner;
        let start = match after {
            Some(id) => Bound::Excluded(id.0.to_vec()),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for item in inner
            .trees
            .index
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
        {
            if out.len() >= limit {
                break;
            }
            let (key, value) = item.map_err(|e| StoreError::db(&inner.db_path, e))?;
            let id = <[u8; 32]>::try_from(key.as_ref()).ok().map(Id);
            let entry = IndexEntry::decode(&value);
            match (id, entry) {
                (Some(id), Some(entry)) => {
                    let record = self.record_or_default(&id, &entry)?;
                    out.push((id, BlockMeta::new(entry, record)));
                }
                _ => {
                    return Err(StoreError::corrupt(
                        &inner.db_path,
                        format!("index entry {} does not decode", hex::encode(&key)),
                    ))
                }
            }
        }
        Ok(out)
    }

    pub(super) fn entry(&self, key: &Id) -> Result<Option<IndexEntry>, StoreError> {
        let inner = &*self.inner;
        let Some(raw) = inner
            .trees
            .index
            .get(key.0)
            .map_err(|e| StoreError::db(&inner.db_path, e))?
        else {
            return Ok(None);
        };
        IndexEntry::decode(&raw).map(Some).ok_or_else(|| {
            StoreError::corrupt(
                &inner.db_path,
                format!("index entry of {key} does not decode"),
            )
        })
    }
}

/// The block file at `path` when it is `size` bytes long and all in the page
/// cache; `None` otherwise (the ordinary read then finds out why).
fn resident_file(path: &std::path::Path, size: u64) -> Option<std::sync::Arc<std::fs::File>> {
    let file = std::fs::File::open(path).ok()?;
    let whole = file.metadata().ok()?.len() == size;
    (whole && super::page_cache::resident(&file, 0, size)).then(|| std::sync::Arc::new(file))
}
