//! The consistency check run on every open: in repair mode it fixes what a crash
//! can leave behind, in audit mode it only reports it.
//!
//! The write protocol guarantees that a crash leaves at worst: files in `tmp/`,
//! a block file with no index entry (crash between rename and index insert, or
//! between index removal and file removal on delete). Index entries whose bytes
//! are missing or of the wrong size should never happen, but a disk or an
//! operator can cause them, and serving from such an entry would be worse than
//! dropping it. Sizes are checked here with one `stat` per block; full hashes are
//! checked lazily on `get`, since hashing every block on open would make restarts
//! take as long as reading the whole disk.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::charge::charge;
use super::files::{self, BLOCKS_DIR, DB_DIR, TMP_DIR};
use super::index::{IndexEntry, Location, Trees};
use super::segments::{Recovered, SEGMENTS_DIR};
use super::unmounted::{self, FileCensus};
use super::{AuditReport, RepairReport, StoreError};
use crate::id::{Id, ID_LEN};

/// What a scan found, and in repair mode what it fixed.
pub(crate) struct Scan {
    /// Findings as they were before any repair.
    pub audit: AuditReport,
    /// What was fixed; all zero in audit mode.
    pub repaired: RepairReport,
    /// Total size of the blocks that passed.
    pub bytes: u64,
    /// What the blocks that passed are charged against the quota.
    pub charged: u64,
}

/// Checks the data dir against the index; with `fix`, removes what is wrong,
/// unless most block files are missing (see `unmounted.rs`) and the loss was
/// not accepted, in which case it fails before changing anything.
pub(crate) fn scan(
    dir: &Path,
    trees: &Trees,
    segments: &Recovered,
    fix: bool,
    accept_loss: bool,
) -> Result<Scan, StoreError> {
    let db_path = dir.join(DB_DIR);
    let mut audit = AuditReport::default();
    let mut repaired = RepairReport::default();
    let blocks_dir_exists = dir.join(BLOCKS_DIR).is_dir();

    let walk = check_index(dir, trees, segments)?;
    if fix {
        let census = FileCensus {
            blocks_dir_exists,
            ..walk.census
        };
        unmounted::check(&dir.join(BLOCKS_DIR), census, accept_loss)?;
        unmounted::check(&dir.join(SEGMENTS_DIR), walk.segment_census, accept_loss)?;
    }
    let IndexWalk {
        bad,
        bad_keys,
        blocks,
        bytes,
        charged,
        ..
    } = walk;

    let temps = clean_tmp(&dir.join(TMP_DIR), fix)?;
    audit.temp_files = temps;
    if fix {
        repaired.temp_files_removed = temps;
    }
    audit.blocks = blocks;
    audit.index_without_bytes = bad.iter().copied().collect();
    audit.corrupt_entries = bad_keys.len() as u64;

    // Drop the index entries first and flush, so that no entry can point at a
    // file this scan is about to remove as a stray.
    if fix && !(bad.is_empty() && bad_keys.is_empty()) {
        for key in bad.iter().map(|id| id.0.to_vec()).chain(bad_keys) {
            trees
                .index
                .remove(&key)
                .map_err(|e| StoreError::db(&db_path, e))?;
            trees
                .inline
                .remove(&key)
                .map_err(|e| StoreError::db(&db_path, e))?;
            trees
                .records
                .remove(&key)
                .map_err(|e| StoreError::db(&db_path, e))?;
        }
        repaired.index_entries_dropped = bad.len() as u64;
        repaired.corrupt_entries_dropped = audit.corrupt_entries;
        trees.flush_all(&db_path)?;
    }

    let orphans = orphan_inline(trees, &bad, &db_path)?;
    audit.corrupt_entries += orphans.len() as u64;
    if fix && !orphans.is_empty() {
        for key in &orphans {
            trees
                .inline
                .remove(key)
                .map_err(|e| StoreError::db(&db_path, e))?;
        }
        repaired.corrupt_entries_dropped += orphans.len() as u64;
        trees.flush_all(&db_path)?;
    }

    // Records with no index entry: a put's take-back interrupted by a crash.
    let lone = lone_records(trees, &bad, &db_path)?;
    audit.corrupt_entries += lone.len() as u64;
    if fix && !lone.is_empty() {
        for key in &lone {
            trees
                .records
                .remove(key)
                .map_err(|e| StoreError::db(&db_path, e))?;
        }
        repaired.corrupt_entries_dropped += lone.len() as u64;
        trees.flush_all(&db_path)?;
    }

    audit.stray_files = strays(dir, trees, &bad, &db_path)?;
    if fix {
        for path in &audit.stray_files {
            files::remove_block(path).map_err(|e| StoreError::io(path, e))?;
            repaired.stray_files_removed += 1;
        }
    }
    audit.index_without_bytes.sort();
    audit.stray_files.sort();
    Ok(Scan {
        audit,
        repaired,
        bytes,
        charged,
    })
}

impl Trees {
    fn flush_all(&self, db_path: &Path) -> Result<(), StoreError> {
        self.index
            .flush()
            .and_then(|_| self.inline.flush())
            .and_then(|_| self.records.flush())
            .map(|_| ())
            .map_err(|e| StoreError::db(db_path, e))
    }
}

/// Counts the entries of `tmp/`, removing them when `fix`: nothing in it was ever
/// acknowledged, and nothing else refers to it.
pub(crate) fn clean_tmp(tmp: &Path, fix: bool) -> Result<u64, StoreError> {
    let entries = match fs::read_dir(tmp) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(StoreError::io(tmp, e)),
    };
    let mut count = 0;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(tmp, e))?;
        let path = entry.path();
        count += 1;
        if fix {
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            let removed = if is_dir {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.map_err(|e| StoreError::io(&path, e))?;
        }
    }
    Ok(count)
}

/// What a walk of the index found.
struct IndexWalk {
    /// Ids whose bytes are missing or the wrong size, or whose entry does not decode.
    bad: HashSet<Id>,
    /// Raw keys that are not ids at all.
    bad_keys: Vec<Vec<u8>>,
    /// Count, total size and quota charge of the good entries.
    blocks: u64,
    bytes: u64,
    charged: u64,
    /// File entries, and how many of their files are missing altogether.
    census: FileCensus,
    /// Segment entries, and how many point into a segment file that is
    /// missing altogether.
    segment_census: FileCensus,
}

/// Walks the index, checking each entry's bytes are there and the right size.
fn check_index(dir: &Path, trees: &Trees, segments: &Recovered) -> Result<IndexWalk, StoreError> {
    let db_path = dir.join(DB_DIR);
    let mut walk = IndexWalk {
        bad: HashSet::new(),
        bad_keys: Vec::new(),
        blocks: 0,
        bytes: 0,
        charged: 0,
        census: FileCensus {
            blocks_dir_exists: true,
            listed: 0,
            missing: 0,
        },
        segment_census: FileCensus {
            blocks_dir_exists: true,
            listed: 0,
            missing: 0,
        },
    };
    for item in trees.index.iter() {
        let (key, value) = item.map_err(|e| StoreError::db(&db_path, e))?;
        let Ok(raw) = <[u8; ID_LEN]>::try_from(key.as_ref()) else {
            walk.bad_keys.push(key.to_vec());
            continue;
        };
        let id = Id(raw);
        let Some(entry) = IndexEntry::decode(&value) else {
            walk.bad.insert(id);
            continue;
        };
        let presence = bytes_present(dir, trees, segments, &id, &entry)?;
        match entry.location {
            Location::File => {
                walk.census.listed += 1;
                walk.census.missing += u64::from(presence == Presence::Missing);
            }
            // A whole segment file gone, not a torn tail (which a crash
            // leaves): no crash removes a segment an entry points into.
            Location::Segment(place) => {
                walk.segment_census.listed += 1;
                walk.segment_census.missing += u64::from(!segments.lens.contains_key(&place.seg));
            }
            Location::Inline => {}
        }
        if presence == Presence::Good {
            walk.blocks += 1;
            walk.bytes += entry.size;
            walk.charged += charge(entry.size, entry.is_small());
        } else {
            walk.bad.insert(id);
        }
    }
    Ok(walk)
}

/// Whether an entry's bytes are there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Presence {
    Good,
    /// There, but the wrong size or not a plain file.
    Wrong,
    /// Not there at all.
    Missing,
}

fn bytes_present(
    dir: &Path,
    trees: &Trees,
    segments: &Recovered,
    id: &Id,
    entry: &IndexEntry,
) -> Result<Presence, StoreError> {
    let good = |ok: bool| if ok { Presence::Good } else { Presence::Wrong };
    match entry.location {
        Location::Inline => {
            let value = trees
                .inline
                .get(id.0)
                .map_err(|e| StoreError::db(&dir.join(DB_DIR), e))?;
            Ok(match value {
                Some(v) => good(v.len() as u64 == entry.size),
                None => Presence::Missing,
            })
        }
        // Not read: before the durable point a segment is whole, and past
        // it the open's scan found (and hashed) every whole record.
        Location::Segment(place) => Ok(match segments.holds(place, id, entry.size) {
            true => Presence::Good,
            false => Presence::Missing,
        }),
        Location::File => {
            let path = files::block_path(dir, id);
            match fs::symlink_metadata(&path) {
                Ok(m) => Ok(good(m.is_file() && m.len() == entry.size)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Presence::Missing),
                Err(e) => Err(StoreError::io(&path, e)),
            }
        }
    }
}

/// Inline values with no inline index entry: unreachable, so only taking space.
/// Values of `bad` entries are left out: they are counted (and dropped) with them.
fn orphan_inline(
    trees: &Trees,
    bad: &HashSet<Id>,
    db_path: &Path,
) -> Result<Vec<sled::IVec>, StoreError> {
    let mut orphans = Vec::new();
    for item in trees.inline.iter() {
        let (key, _) = item.map_err(|e| StoreError::db(db_path, e))?;
        let id = <[u8; ID_LEN]>::try_from(key.as_ref()).ok().map(Id);
        if id.is_some_and(|id| bad.contains(&id)) {
            continue;
        }
        let entry = trees
            .index
            .get(&key)
            .map_err(|e| StoreError::db(db_path, e))?;
        let reachable = id.is_some()
            && entry
                .and_then(|v| IndexEntry::decode(&v))
                .is_some_and(|e| e.location == Location::Inline);
        if !reachable {
            orphans.push(key);
        }
    }
    Ok(orphans)
}

/// Records whose block has no index entry. Those of `bad` entries are left
/// out: they go with them.
fn lone_records(
    trees: &Trees,
    bad: &HashSet<Id>,
    db_path: &Path,
) -> Result<Vec<sled::IVec>, StoreError> {
    let mut lone = Vec::new();
    for item in trees.records.iter() {
        let (key, _) = item.map_err(|e| StoreError::db(db_path, e))?;
        let id = <[u8; ID_LEN]>::try_from(key.as_ref()).ok().map(Id);
        if id.is_some_and(|id| bad.contains(&id)) {
            continue;
        }
        let indexed = trees
            .index
            .contains_key(&key)
            .map_err(|e| StoreError::db(db_path, e))?;
        if !indexed {
            lone.push(key);
        }
    }
    Ok(lone)
}

/// Every non-directory under `blocks/` that is not the file of a good file entry.
fn strays(
    dir: &Path,
    trees: &Trees,
    bad: &HashSet<Id>,
    db_path: &Path,
) -> Result<Vec<PathBuf>, StoreError> {
    let root = dir.join(BLOCKS_DIR);
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(current) = stack.pop() {
        let entries = match fs::read_dir(&current) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::io(&current, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(&current, e))?;
            let path = entry.path();
            // file_type() does not follow symlinks, so a link is judged as itself.
            let file_type = entry.file_type().map_err(|e| StoreError::io(&path, e))?;
            if file_type.is_dir() {
                stack.push(path);
                continue;
            }
            let key = path
                .strip_prefix(&root)
                .ok()
                .and_then(files::parse_block_path);
            let wanted = match key {
                Some(id) if file_type.is_file() && !bad.contains(&id) => {
                    let entry = trees
                        .index
                        .get(id.0)
                        .map_err(|e| StoreError::db(db_path, e))?;
                    entry
                        .and_then(|v| IndexEntry::decode(&v))
                        .is_some_and(|e| e.location == Location::File)
                }
                _ => false,
            };
            if !wanted {
                out.push(path);
            }
        }
    }
    Ok(out)
}
