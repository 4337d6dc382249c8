//! Segment files: block bytes appended to a few large files
//! (`segments/<8 hex>.seg`, laid out in `segment_format.rs`), so that many
//! puts share one fsync and a small block costs no file, inode or sled value.
//!
//! Durability: [`Segments::sync`] makes every append before it durable and
//! returns the point it reached (the active segment and its length), which
//! the store records in sled with the next flush's index entries (sled is
//! flushed before the segment's fsync, see `durability.rs`). A
//! segment is fsynced when a newer one takes over (sealed), so every segment
//! before the recorded one is durable whole. At open, only what lies past
//! the recorded point is read: its whole records are kept, and the first
//! record that is not whole ends the segment (the file is cut there).
//! Nothing before the recorded point is read, so an open after a crash
//! costs what was unsynced, not what is stored.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::files::ensure_dir;
use super::lock;
use super::segment_format::{
    file_header, parse_file_header, record_end, record_header, scan, Found, FILE_HEADER_LEN,
    RECORD_HEADER_LEN,
};
use super::StoreError;
use crate::id::Id;

/// Subdirectory of the data dir holding segment files.
pub(crate) const SEGMENTS_DIR: &str = "segments";
/// A segment takes no more appends once it is this long.
pub(crate) const ROLL_AT: u64 = 64 << 20;
/// Segment files kept open for reads; past this, the cache starts over.
const OPEN_READERS: usize = 256;

/// Where a block's bytes are: a segment and the offset of its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Place {
    pub seg: u32,
    pub at: u64,
}

/// How far the segments were durable at a sync: every segment before
/// `seg` whole, and `seg` up to `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Synced {
    pub seg: u32,
    pub len: u64,
}

impl Synced {
    /// 12 bytes: the segment then the length, big-endian.
    pub fn encode(&self) -> [u8; 12] {
        let mut out = [0u8; 12];
        out[0..4].copy_from_slice(&self.seg.to_be_bytes());
        out[4..12].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Synced> {
        let bytes: &[u8; 12] = bytes.try_into().ok()?;
        Some(Synced {
            seg: u32::from_be_bytes(bytes[0..4].try_into().ok()?),
            len: u64::from_be_bytes(bytes[4..12].try_into().ok()?),
        })
    }
}

/// What an open found past the last durable point.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// The durable point it started from.
    pub synced: Option<Synced>,
    /// Whole records past the durable point: (segment, offset of the
    /// block's bytes) → (key, length).
    pub tail: BTreeMap<(u32, u64), (Id, u32)>,
    /// Bytes cut off as torn tails.
    pub bytes_cut: u64,
    /// Segment files created after the durable point and removed because
    /// not even their header was whole.
    pub files_removed: u64,
    /// Each segment's length after the open: no whole record ends past it.
    pub lens: BTreeMap<u32, u64>,
}

impl Recovered {
    /// Whether block `key` of `size` bytes is whole at `place`, as far as an
    /// open can tell without reading what was durable: before the durable
    /// point it is if the segment is long enough; past it, only if the scan
    /// found its record there.
    pub fn holds(&self, place: Place, key: &Id, size: u64) -> bool {
        let Some(&len) = self.lens.get(&place.seg) else {
            return false;
        };
        let end = place.at.saturating_add(size);
        if place.at < FILE_HEADER_LEN + RECORD_HEADER_LEN || end > len {
            return false;
        }
        let durable = self
            .synced
            .is_some_and(|s| place.seg < s.seg || (place.seg == s.seg && end <= s.len));
        durable
            || self
                .tail
                .get(&(place.seg, place.at))
                .is_some_and(|&(k, l)| k == *key && u64::from(l) == size)
    }

    /// Whether the open found anything past the durable point.
    pub fn is_clean(&self) -> bool {
        self.tail.is_empty() && self.bytes_cut == 0 && self.files_removed == 0
    }
}

/// A record at least this long has its writeback started as soon as it is
/// appended (see [`Segments::append`]).
const EARLY_WRITEBACK: usize = 256 << 10;

struct Active {
    id: u32,
    file: Arc<File>,
    len: u64,
    /// How much of it the last sync covered.
    synced: u64,
}

/// The segment files of one data dir.
pub(crate) struct Segments {
    dir: PathBuf,
    /// A segment takes no more appends once it is this long.
    roll_at: u64,
    active: Mutex<Active>,
    readers: Mutex<HashMap<u32, Arc<File>>>,
}

fn name(id: u32) -> String {
    format!("{id:08x}.seg")
}

/// The file of segment `id` in data dir `data_dir`.
pub(crate) fn path_of(data_dir: &Path, id: u32) -> PathBuf {
    data_dir.join(SEGMENTS_DIR).join(name(id))
}

fn parse_name(name: &str) -> Option<u32> {
    let hex = name.strip_suffix(".seg")?;
    if hex.len() != 8 || hex.bytes().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

impl Segments {
    /// Opens (creating if missing) the segments under `data_dir`, given the
    /// durable point the store recorded last (`None`: none yet). Records
    /// past it are scanned (blocks of at most `max_block` bytes): whole ones
    /// are returned, a torn tail is cut off.
    pub fn open(
        data_dir: &Path,
        synced: Option<Synced>,
        max_block: u64,
        roll_at: u64,
    ) -> Result<(Segments, Recovered), StoreError> {
        let dir = data_dir.join(SEGMENTS_DIR);
        ensure_dir(&dir)?;
        let mut recovered = recover(&dir, synced, max_block, true)?;
        let active = match recovered.lens.last_key_value() {
            Some((&id, &len)) => {
                let path = dir.join(name(id));
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(|e| StoreError::io(&path, e))?;
                Active {
                    id,
                    file: Arc::new(file),
                    len,
                    synced: len,
                }
            }
            None => create(&dir, synced.map_or(1, |s| s.seg + 1))?,
        };
        recovered.lens.insert(active.id, active.len);
        let segments = Segments {
            dir,
            roll_at,
            active: Mutex::new(active),
            readers: Mutex::new(HashMap::new()),
        };
        Ok((segments, recovered))
    }

    /// What [`Segments::open`] would find, changing nothing (an audit).
    pub fn inspect(
        data_dir: &Path,
        synced: Option<Synced>,
        max_block: u64,
    ) -> Result<Recovered, StoreError> {
        let dir = data_dir.join(SEGMENTS_DIR);
        if !dir.is_dir() {
            return Ok(Recovered::default());
        }
        recover(&dir, synced, max_block, false)
    }

    /// Appends block `data` under `key`, not yet durable (see [`Segments::sync`]).
    pub fn append(&self, key: &Id, data: &[u8]) -> Result<Place, StoreError> {
        let len = u32::try_from(data.len()).map_err(|_| StoreError::TooLarge {
            size: data.len() as u64,
            max: u64::from(u32::MAX),
        })?;
        let mut active = lock(&self.active);
        if active.len > FILE_HEADER_LEN && record_end(active.len, len) > self.roll_at {
            self.roll(&mut active)?;
        }
        let at = active.len;
        let path = self.dir.join(name(active.id));
        let written = active
            .file
            .write_all_at(&record_header(key, len), at)
            .and_then(|()| active.file.write_all_at(data, at + RECORD_HEADER_LEN));
        if let Err(e) = written {
            // What was written of it is cut off (or overwritten by the next
            // append): a scan would stop there anyway.
            let _ = active.file.set_len(at);
            return Err(StoreError::io(&path, e));
        }
        active.len = record_end(at, len);
        let place = Place {
            seg: active.id,
            at: at + RECORD_HEADER_LEN,
        };
        let file = active.file.clone();
        drop(active);
        // A large record's pages go to the disk now, while the CPU hashes
        // and receives the next blocks, rather than all at the group
        // commit's fdatasync with the CPU waiting (a put of 256 MiB with 3
        // replicas on 8 nodes: 1.09-1.21 s before, 0.94-1.09 s after).
        // SYNC_FILE_RANGE_WRITE only starts it: durability is still the
        // fdatasync's, and an error here is the fdatasync's to report.
        if data.len() >= EARLY_WRITEBACK {
            use std::os::fd::AsRawFd;
            // SAFETY: a plain syscall on a descriptor `file` keeps open.
            unsafe {
                libc::sync_file_range(
                    file.as_raw_fd(),
                    at as i64,
                    (RECORD_HEADER_LEN + u64::from(len)) as i64,
                    libc::SYNC_FILE_RANGE_WRITE,
                )
            };
        }
        Ok(place)
    }

    /// Makes every append that returned before this call durable; returns the
    /// point reached, for the store to record.
    pub fn sync(&self) -> Result<Synced, StoreError> {
        let (id, file, len, synced) = {
            let active = lock(&self.active);
            (active.id, active.file.clone(), active.len, active.synced)
        };
        if len > synced {
            file.sync_data()
                .map_err(|e| StoreError::io(&self.dir.join(name(id)), e))?;
            let mut active = lock(&self.active);
            if active.id == id {
                active.synced = active.synced.max(len);
            }
        }
        Ok(Synced { seg: id, len })
    }

    /// The point the last [`Segments::sync`] made durable (or a roll, or the
    /// open): never past what is durable.
    pub fn synced(&self) -> Synced {
        let active = lock(&self.active);
        Synced {
            seg: active.id,
            len: active.synced,
        }
    }

    /// Gives the disk back the whole filesystem blocks inside the record of
    /// the `len`-byte block at `place` (its bytes stay readable as zeros):
    /// for a block whose index entry is gone and durably so. Best effort; a
    /// hole not punched is dead bytes until compaction.
    pub fn punch(&self, place: Place, len: u64) {
        const FS_BLOCK: u64 = 4096;
        let start = (place.at - RECORD_HEADER_LEN).div_ceil(FS_BLOCK) * FS_BLOCK;
        let end = (place.at + len) / FS_BLOCK * FS_BLOCK;
        if end <= start {
            return;
        }
        let path = self.dir.join(name(place.seg));
        let Ok(file) = self.reader_rw(place.seg, &path) else {
            return;
        };
        punch_hole(&file, start, end - start);
    }

    /// Seals the active segment (fsynced whole) and starts the next.
    fn roll(&self, active: &mut Active) -> Result<(), StoreError> {
        active
            .file
            .sync_data()
            .map_err(|e| StoreError::io(&self.dir.join(name(active.id)), e))?;
        *active = create(&self.dir, active.id + 1)?;
        Ok(())
    }

    /// The `len` bytes at `place` if the record there is block `key`'s;
    /// `None` if it is not (its hole was punched: the block was deleted
    /// after its entry was read).
    pub fn read_block(
        &self,
        place: Place,
        key: &Id,
        len: u32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.dir.join(name(place.seg));
        let file = self.reader(place.seg, &path)?;
        let header_at = place.at.checked_sub(RECORD_HEADER_LEN).ok_or_else(|| {
            StoreError::corrupt(&path, "an index entry points into a segment's header")
        })?;
        let mut out = vec![0u8; RECORD_HEADER_LEN as usize + len as usize];
        file.read_exact_at(&mut out, header_at)
            .map_err(|e| StoreError::io(&path, e))?;
        if out[..RECORD_HEADER_LEN as usize] != record_header(key, len) {
            return Ok(None);
        }
        out.drain(..RECORD_HEADER_LEN as usize);
        Ok(Some(out))
    }

    /// The file holding the `len` bytes at `place` when the record there is
    /// block `key`'s and its bytes are all in the page cache now (for the
    /// kernel to send them from there); `None` otherwise, when the caller
    /// reads them the ordinary way.
    pub fn resident_block(
        &self,
        place: Place,
        key: &Id,
        len: u32,
    ) -> Result<Option<Arc<File>>, StoreError> {
        let path = self.dir.join(name(place.seg));
        let file = self.reader(place.seg, &path)?;
        let Some(header_at) = place.at.checked_sub(RECORD_HEADER_LEN) else {
            return Ok(None);
        };
        let mut header = [0u8; RECORD_HEADER_LEN as usize];
        if file.read_exact_at(&mut header, header_at).is_err()
            || header != record_header(key, len)
            || !super::page_cache::resident(&file, place.at, u64::from(len))
        {
            return Ok(None);
        }
        Ok(Some(file))
    }

    /// The `len` bytes at `place`.
    #[cfg(test)]
    pub fn read(&self, place: Place, len: u32) -> Result<Vec<u8>, StoreError> {
        let path = self.dir.join(name(place.seg));
        let file = self.reader(place.seg, &path)?;
        let mut out = vec![0u8; len as usize];
        file.read_exact_at(&mut out, place.at)
            .map_err(|e| StoreError::io(&path, e))?;
        Ok(out)
    }

    fn reader_rw(&self, id: u32, path: &Path) -> Result<Arc<File>, StoreError> {
        {
            let active = lock(&self.active);
            if active.id == id {
                return Ok(active.file.clone());
            }
        }
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| StoreError::io(path, e))?;
        Ok(Arc::new(file))
    }

    fn reader(&self, id: u32, path: &Path) -> Result<Arc<File>, StoreError> {
        {
            let active = lock(&self.active);
            if active.id == id {
                return Ok(active.file.clone());
            }
        }
        let mut readers = lock(&self.readers);
        if let Some(f) = readers.get(&id) {
            return Ok(f.clone());
        }
        let file = Arc::new(File::open(path).map_err(|e| StoreError::io(path, e))?);
        if readers.len() >= OPEN_READERS {
            readers.clear();
        }
        readers.insert(id, file.clone());
        Ok(file)
    }

    /// The active segment (the one appends go to).
    pub fn active(&self) -> u32 {
        lock(&self.active).id
    }

    /// Every segment and the bytes it takes on disk (punched holes excluded).
    pub fn allocated(&self) -> Result<Vec<(u32, u64)>, StoreError> {
        use std::os::unix::fs::MetadataExt;
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| StoreError::io(&self.dir, e))? {
            let entry = entry.map_err(|e| StoreError::io(&self.dir, e))?;
            let Some(id) = entry.file_name().to_str().and_then(parse_name) else {
                continue;
            };
            let meta = entry
                .metadata()
                .map_err(|e| StoreError::io(&entry.path(), e))?;
            out.push((id, meta.blocks() * 512));
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Removes sealed segment `id` (the caller proved nothing points into
    /// it), durably; returns the bytes it took on disk.
    pub fn remove(&self, id: u32) -> Result<u64, StoreError> {
        use std::os::unix::fs::MetadataExt;
        let active = lock(&self.active);
        if active.id == id {
            return Ok(0);
        }
        let path = self.dir.join(name(id));
        let freed = fs::metadata(&path)
            .map_err(|e| StoreError::io(&path, e))?
            .blocks()
            * 512;
        lock(&self.readers).remove(&id);
        fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StoreError::io(&self.dir, e))?;
        drop(active);
        Ok(freed)
    }
}

/// Creates segment `id`: its header written and durable, and its directory
/// entry too.
fn create(dir: &Path, id: u32) -> Result<Active, StoreError> {
    let path = dir.join(name(id));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| StoreError::io(&path, e))?;
    file.write_all(&file_header(id))
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::io(&path, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))?;
    Ok(Active {
        id,
        file: Arc::new(file),
        len: FILE_HEADER_LEN,
        synced: FILE_HEADER_LEN,
    })
}

#[cfg(target_os = "linux")]
fn punch_hole(file: &File, at: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(at), Ok(len)) = (libc::off_t::try_from(at), libc::off_t::try_from(len)) else {
        return;
    };
    // SAFETY: fallocate on an fd we own, over a range of the file.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            at,
            len,
        )
    };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot punch a hole in a segment");
    }
}

#[cfg(not(target_os = "linux"))]
fn punch_hole(_file: &File, _at: u64, _len: u64) {}

/// Scans every segment past `synced` in `dir`, cutting torn tails and
/// removing files born after it whose header is not whole when `fix`.
fn recover(
    dir: &Path,
    synced: Option<Synced>,
    max_block: u64,
    fix: bool,
) -> Result<Recovered, StoreError> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        // Other names are not ours to judge: left alone.
        if let Some(id) = entry.file_name().to_str().and_then(parse_name) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    let mut recovered = Recovered {
        synced,
        ..Recovered::default()
    };
    for id in ids {
        let path = dir.join(name(id));
        // Before the durable point: whole, and not read.
        let from = match synced {
            Some(s) if id < s.seg => None,
            Some(s) if id == s.seg => Some(s.len),
            _ => Some(FILE_HEADER_LEN),
        };
        let Some(from) = from else {
            let len = fs::metadata(&path)
                .map_err(|e| StoreError::io(&path, e))?
                .len();
            recovered.lens.insert(id, len);
            continue;
        };
        let durable = synced.is_some_and(|s| id <= s.seg);
        match recover_tail(&path, id, from, max_block, durable, fix)? {
            Some((found, len, cut)) => {
                recovered.bytes_cut += cut;
                recovered
                    .tail
                    .extend(found.into_iter().map(|f| ((id, f.data_at), (f.key, f.len))));
                recovered.lens.insert(id, len);
            }
            None => {
                if fix {
                    fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
                }
                recovered.files_removed += 1;
            }
        }
    }
    Ok(recovered)
}

/// Scans segment `id` from `from` to its end and cuts off a torn tail.
/// `durable`: the file holds acknowledged bytes up to `from`, so a missing
/// or damaged header, or a file shorter than `from`, is corruption; if not,
/// such a file held nothing acknowledged and `None` says to remove it.
fn recover_tail(
    path: &Path,
    id: u32,
    from: u64,
    max_block: u64,
    durable: bool,
    fix: bool,
) -> Result<Option<(Vec<Found>, u64, u64)>, StoreError> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(fix)
        .open(path)
        .map_err(|e| StoreError::io(path, e))?;
    let len = file.metadata().map_err(|e| StoreError::io(path, e))?.len();
    let mut header = [0u8; FILE_HEADER_LEN as usize];
    let header_ok =
        file.read_exact_at(&mut header, 0).is_ok() && parse_file_header(&header) == Some(id);
    if !header_ok || len < from {
        if durable {
            let what = match header_ok {
                false => "a segment's header is damaged".to_string(),
                true => format!("a segment is {len} bytes, shorter than the {from} made durable"),
            };
            return Err(StoreError::corrupt(path, what));
        }
        return Ok(None);
    }
    // The tail is what was appended since the last sync: small, read whole.
    let mut tail = Vec::with_capacity((len - from) as usize);
    file.seek(SeekFrom::Start(from))
        .and_then(|_| file.read_to_end(&mut tail))
        .map_err(|e| StoreError::io(path, e))?;
    let (found, end) = scan(&tail, from, max_block);
    if fix && end < len {
        file.set_len(end)
            .and_then(|()| file.sync_all())
            .map_err(|e| StoreError::io(path, e))?;
    }
    Ok(Some((found, end, len - end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 1 << 20;

    fn block(i: u32, len: usize) -> (Id, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|j| (i as usize * 31 + j) as u8).collect();
        (Id::of_block(&data), data)
    }

    #[test]
    fn appended_blocks_read_back_and_survive_a_clean_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let (s, rec) = Segments::open(tmp.path(), None, MAX, 1 << 20).unwrap();
        assert!(rec.tail.is_empty());
        let blocks: Vec<_> = (0..50).map(|i| block(i, 100 + i as usize * 7)).collect();
        let places: Vec<Place> = blocks
            .iter()
            .map(|(k, d)| s.append(k, d).unwrap())
            .collect();
        let synced = s.sync().unwrap();
        for ((_, d), p) in blocks.iter().zip(&places) {
            assert_eq!(&s.read(*p, d.len() as u32).unwrap(), d);
        }
        drop(s);
        let (s, rec) = Segments::open(tmp.path(), Some(synced), MAX, 1 << 20).unwrap();
        assert!(rec.tail.is_empty(), "nothing past the durable point");
        assert_eq!(rec.bytes_cut, 0);
        for ((_, d), p) in blocks.iter().zip(&places) {
            assert_eq!(&s.read(*p, d.len() as u32).unwrap(), d);
        }
    }

    #[test]
    fn a_full_segment_rolls_over_and_the_old_one_is_sealed() {
        let tmp = tempfile::tempdir().unwrap();
        let (s, _) = Segments::open(tmp.path(), None, MAX, 4096).unwrap();
        let first = s.active();
        let places: Vec<(Place, Vec<u8>)> = (0..10)
            .map(|i| {
                let (k, d) = block(i, 1000);
                (s.append(&k, &d).unwrap(), d)
            })
            .collect();
        assert!(s.active() > first, "rolled over");
        let segs: std::collections::BTreeSet<u32> = places.iter().map(|(p, _)| p.seg).collect();
        assert!(segs.len() >= 3, "{segs:?}");
        for (p, d) in &places {
            assert_eq!(&s.read(*p, d.len() as u32).unwrap(), d);
        }
        // A block larger than a segment still gets one, alone.
        let (k, big) = block(99, 10_000);
        let p = s.append(&k, &big).unwrap();
        assert_eq!(s.read(p, big.len() as u32).unwrap(), big);
    }

    #[test]
    fn an_open_reads_only_past_the_durable_point_and_cuts_a_torn_tail() {
        let tmp = tempfile::tempdir().unwrap();
        let (s, _) = Segments::open(tmp.path(), None, MAX, 1 << 20).unwrap();
        for i in 0..5 {
            let (k, d) = block(i, 500);
            s.append(&k, &d).unwrap();
        }
        let synced = s.sync().unwrap();
        // Appended after the sync: two whole records, then a torn one.
        let after: Vec<Id> = (5..7)
            .map(|i| {
                let (k, d) = block(i, 500);
                s.append(&k, &d).unwrap();
                k
            })
            .collect();
        let (k, d) = block(7, 500);
        s.append(&k, &d).unwrap();
        let seg = s.active();
        drop(s);
        let path = tmp.path().join(SEGMENTS_DIR).join(name(seg));
        let full = fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(full - 100).unwrap();
        drop(f);
        // Damage before the durable point is not read, so not seen.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0xff], FILE_HEADER_LEN + RECORD_HEADER_LEN + 10)
            .unwrap();
        drop(f);

        let (_s, rec) = Segments::open(tmp.path(), Some(synced), MAX, 1 << 20).unwrap();
        let keys: Vec<Id> = rec.tail.values().map(|(k, _)| *k).collect();
        assert_eq!(keys, after);
        assert_eq!(rec.bytes_cut, 500 + RECORD_HEADER_LEN - 100);
        let cut_to = fs::metadata(&path).unwrap().len();
        assert_eq!(cut_to, synced.len + 2 * (500 + RECORD_HEADER_LEN));
        assert_eq!(rec.lens[&seg], cut_to);
    }

    #[test]
    fn a_segment_born_after_the_durable_point_with_a_torn_header_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let (s, _) = Segments::open(tmp.path(), None, MAX, 1 << 20).unwrap();
        let (k, d) = block(1, 100);
        let p = s.append(&k, &d).unwrap();
        let synced = s.sync().unwrap();
        drop(s);
        let dir = tmp.path().join(SEGMENTS_DIR);
        fs::write(dir.join(name(synced.seg + 1)), b"DHTFS").unwrap();
        let (s, rec) = Segments::open(tmp.path(), Some(synced), MAX, 1 << 20).unwrap();
        assert_eq!(rec.files_removed, 1);
        assert!(!dir.join(name(synced.seg + 1)).exists());
        assert_eq!(s.read(p, 100).unwrap(), d);
        // Appends go on in the last good segment.
        assert_eq!(s.active(), synced.seg);
    }

    #[test]
    fn a_durable_segment_that_lost_bytes_is_corruption_not_a_silent_cut() {
        let tmp = tempfile::tempdir().unwrap();
        let (s, _) = Segments::open(tmp.path(), None, MAX, 1 << 20).unwrap();
        let (k, d) = block(1, 1000);
        s.append(&k, &d).unwrap();
        let synced = s.sync().unwrap();
        drop(s);
        let path = tmp.path().join(SEGMENTS_DIR).join(name(synced.seg));
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(synced.len - 1)
            .unwrap();
        let err = Segments::open(tmp.path(), Some(synced), MAX, 1 << 20)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("shorter"), "{err}");
    }

    #[test]
    fn a_synced_point_round_trips() {
        let s = Synced {
            seg: 3,
            len: 1 << 40,
        };
        assert_eq!(Synced::decode(&s.encode()), Some(s));
        assert_eq!(Synced::decode(&[0u8; 11]), None);
    }
}
