//! Crash states crafted by hand: audit must report each, and open must repair and
//! count each while keeping every good block.

use std::fs;
use std::path::{Path, PathBuf};

use super::index::{IndexEntry, Location, Trees, SEGMENTS_SYNCED_KEY};
use super::tests::{audit_of, block, open, with_raw_trees};
use super::*;

const FILE_LEN: usize = 200 * 1024;

/// A closed store holding one inline and one file block that must survive repair.
fn store_with_good_blocks(dir: &Path) -> Vec<Vec<u8>> {
    let store = open(dir);
    let good = vec![block(100, 1000), block(FILE_LEN, 1001)];
    for data in &good {
        store.put_verified(&Id::of_block(data), data).unwrap();
    }
    good
}

fn assert_good_blocks_survive(dir: &Path, good: &[Vec<u8>]) {
    let store = open(dir);
    for data in good {
        assert_eq!(
            store.get(&Id::of_block(data)).unwrap().as_deref(),
            Some(&data[..])
        );
    }
    assert_eq!(store.block_count(), good.len() as u64);
    let bytes: usize = good.iter().map(Vec::len).sum();
    assert_eq!(store.bytes_stored(), bytes as u64);
}

/// Opens the dir, returning the repair report, then checks that it audits clean.
fn repair(dir: &Path) -> RepairReport {
    let (store, report) =
        super::tests::when_unlocked(|| Store::open(dir, StoreConfig::default())).unwrap();
    drop(store);
    let after = audit_of(dir);
    assert!(after.is_clean(), "still dirty after repair: {after:?}");
    report
}

/// Stores a file block, then closes the store; returns its key and file path.
fn file_block(dir: &Path, seed: u64) -> (Id, PathBuf) {
    let data = block(FILE_LEN, seed);
    let key = Id::of_block(&data);
    open(dir).put_verified(&key, &data).unwrap();
    (key, files::block_path(dir, &key))
}

#[test]
fn fresh_store_audits_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let good = store_with_good_blocks(tmp.path());
    let audit = audit_of(tmp.path());
    assert!(audit.is_clean(), "{audit:?}");
    assert_eq!(audit.blocks, 2);
    assert!(repair(tmp.path()).is_clean());
    assert_good_blocks_survive(tmp.path(), &good);
}

#[test]
fn audit_of_a_dir_without_a_store_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Store::audit(&tmp.path().join("nothing")).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err}");
}

#[test]
fn temp_files_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let good = store_with_good_blocks(tmp.path());
    fs::write(tmp.path().join("tmp/0123.tmp"), block(5000, 1)).unwrap();
    fs::create_dir(tmp.path().join("tmp/half-made-dir")).unwrap();
    fs::write(tmp.path().join("tmp/half-made-dir/x"), b"x").unwrap();
    let audit = audit_of(tmp.path());
    assert_eq!(audit.temp_files, 2, "{audit:?}");
    assert!(audit.index_without_bytes.is_empty() && audit.stray_files.is_empty());
    let report = repair(tmp.path());
    assert_eq!(
        report,
        RepairReport {
            temp_files_removed: 2,
            ..RepairReport::default()
        }
    );
    assert_eq!(fs::read_dir(tmp.path().join("tmp")).unwrap().count(), 0);
    assert_good_blocks_survive(tmp.path(), &good);
}

#[test]
fn file_without_index_entry_is_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let good = store_with_good_blocks(tmp.path());
    // The crash between rename and index insert, and odd files an operator left.
    let data = block(FILE_LEN, 2);
    let key = Id::of_block(&data);
    let orphan = files::block_path(tmp.path(), &key);
    fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    fs::write(&orphan, &data).unwrap();
    let note = tmp.path().join("blocks/notes.txt");
    fs::write(&note, b"hi").unwrap();
    let misplaced = tmp
        .path()
        .join("blocks/00/00")
        .join(Id::of_block(&good[1]).to_hex());
    fs::create_dir_all(misplaced.parent().unwrap()).unwrap();
    fs::write(&misplaced, &good[1]).unwrap();
    let audit = audit_of(tmp.path());
    let mut want = vec![orphan.clone(), note.clone(), misplaced.clone()];
    want.sort();
    assert_eq!(audit.stray_files, want);
    assert!(audit.index_without_bytes.is_empty());
    assert_eq!(audit.blocks, 2);
    let report = repair(tmp.path());
    assert_eq!(
        report,
        RepairReport {
            stray_files_removed: 3,
            ..RepairReport::default()
        }
    );
    assert!(!orphan.exists() && !note.exists() && !misplaced.exists());
    assert!(!open(tmp.path()).contains(&key));
    assert_good_blocks_survive(tmp.path(), &good);
}

#[test]
fn index_entry_whose_file_is_missing_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let good = store_with_good_blocks(tmp.path());
    let (key, path) = file_block(tmp.path(), 3);
    fs::remove_file(&path).unwrap();
    let audit = audit_of(tmp.path());
    assert_eq!(audit.index_without_bytes, vec![key]);
    assert!(audit.stray_files.is_empty());
    assert_eq!(audit.blocks, 2);
    let report = repair(tmp.path());
    assert_eq!(
        report,
        RepairReport {
            index_entries_dropped: 1,
            ..RepairReport::default()
        }
    );
    assert!(!open(tmp.path()).contains(&key));
    assert_good_blocks_survive(tmp.path(), &good);
}

#[test]
fn index_entry_whose_file_is_truncated_is_dropped_with_its_file() {
    let tmp = tempfile::tempdir().unwrap();
    let good = store_with_good_blocks(tmp.path());
    let (key, path) = file_block(tmp.path(), 4);
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..1000]).unwrap();
    let audit = audit_of(tmp.path());
    assert_eq!(audit.index_without_bytes, vec![key]);
    assert_eq!(
        audit.stray_files,
        vec![path.clone()],
        "the short file goes too"
    );
    let report = repair(tmp.path());
    assert_eq!(
        report,
        RepairReport {
            index_entries_dropped: 1,
            stray_files_removed: 1,
            ..RepairReport::default()
        }
    );
    assert!(!path.exists());
    assert!(!open(tmp.path()).contains(&key));
    assert_good_blocks_survive(tmp.path(), &good);
}

/// Writes a block the way a store before segments did: its bytes in the
/// `inline` tree, `value` there if given, under a format-1 entry, with a
/// record saying it came as `origin`.
pub(super) fn legacy_inline(
    trees: &Trees,
    data: &[u8],
    value: Option<&[u8]>,
    origin: Origin,
) -> Id {
    let key = Id::of_block(data);
    let entry = IndexEntry {
        size: data.len() as u64,
        location: Location::Inline,
        stored_at: 1_700_000_000,
    };
    trees.index.insert(key.0, entry.encode()).unwrap();
    let record = BlockRecord::new(origin, 1_700_000_000).encode();
    trees.records.insert(key.0, &record[..]).unwrap();
    if let Some(value) = value {
        trees.inline.insert(key.0, value).unwrap();
    }
    key
}

#[test]
fn a_block_stored_inline_before_segments_still_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let good = store_with_good_blocks(tmp.path());
    let data = block(300, 5);
    let mut key = Id::ZERO;
    with_raw_trees(tmp.path(), |trees| {
        key = legacy_inline(trees, &data, Some(&data), Origin::Replica)
    });
    assert!(audit_of(tmp.path()).is_clean());
    assert!(repair(tmp.path()).is_clean());
    let store = open(tmp.path());
    assert_eq!(store.get(&key).unwrap(), Some(data));
    assert!(store.meta(&key).unwrap().unwrap().inline);
    assert!(store.delete(&key).unwrap());
    drop(store);
    assert_good_blocks_survive(tmp.path(), &good);
}

#[test]
fn inline_entry_without_bytes_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let good = store_with_good_blocks(tmp.path());
    let mut key = Id::ZERO;
    with_raw_trees(tmp.path(), |trees| {
        key = legacy_inline(trees, &block(300, 5), None, Origin::Replica)
    });
    assert_eq!(audit_of(tmp.path()).index_without_bytes, vec![key]);
    let report = repair(tmp.path());
    assert_eq!(report.index_entries_dropped, 1, "{report:?}");
    assert_eq!(report.corrupt_entries_dropped, 0, "{report:?}");
    assert_good_blocks_survive(tmp.path(), &good);
}

#[test]
fn a_segment_entry_past_its_segment_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let good = store_with_good_blocks(tmp.path());
    let data = block(300, 5);
    let key = Id::of_block(&data);
    open(tmp.path()).put_verified(&key, &data).unwrap();
    with_raw_trees(tmp.path(), |trees| {
        let mut entry = IndexEntry::decode(&trees.index.get(key.0).unwrap().unwrap()).unwrap();
        let Location::Segment(place) = entry.location else {
            panic!("a small block goes to a segment: {entry:?}");
        };
        entry.location = Location::Segment(segments::Place {
            at: place.at + (1 << 20),
            ..place
        });
        trees.index.insert(key.0, entry.encode()).unwrap();
    });
    assert_eq!(audit_of(tmp.path()).index_without_bytes, vec![key]);
    let report = repair(tmp.path());
    assert_eq!(report.index_entries_dropped, 1, "{report:?}");
    assert_good_blocks_survive(tmp.path(), &good);
}

/// The crash segments exist for: sled wrote an entry before its segment's
/// bytes were durable, and the crash tore them. The open reads only past
/// the recorded durable point, cuts the torn record, and drops the entry;
/// blocks before the point are not read and stay.
#[test]
fn an_entry_whose_segment_bytes_were_torn_by_a_crash_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let good = store_with_good_blocks(tmp.path());
    let mut before = None;
    with_raw_trees(tmp.path(), |trees| {
        before = trees.meta.get(SEGMENTS_SYNCED_KEY).unwrap();
    });
    let point = segments::Synced::decode(&before.expect("a durable point")).unwrap();
    let torn = block(5000, 6);
    let kept = block(700, 7);
    let store = open(tmp.path());
    store.put_verified(&Id::of_block(&kept), &kept).unwrap();
    store.put_verified(&Id::of_block(&torn), &torn).unwrap();
    drop(store);
    // Back to the point before both puts, as if their flush never ran, and
    // the last record torn.
    with_raw_trees(tmp.path(), |trees| {
        trees
            .meta
            .insert(SEGMENTS_SYNCED_KEY, &point.encode()[..])
            .unwrap();
    });
    let seg = tmp
        .path()
        .join(segments::SEGMENTS_DIR)
        .join(format!("{:08x}.seg", point.seg));
    let len = fs::metadata(&seg).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    assert_eq!(
        audit_of(tmp.path()).index_without_bytes,
        vec![Id::of_block(&torn)]
    );
    let report = repair(tmp.path());
    assert_eq!(report.index_entries_dropped, 1, "{report:?}");
    let mut all = good.clone();
    all.push(kept);
    assert_good_blocks_survive(tmp.path(), &all);
    assert!(
        fs::metadata(&seg).unwrap().len() < len - 10,
        "the torn record was cut"
    );
}

#[test]
fn malformed_entries_are_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let good = store_with_good_blocks(tmp.path());
    let undecodable = Id::of_block(b"undecodable");
    with_raw_trees(tmp.path(), |trees| {
        trees.index.insert(undecodable.0, &b"garbage"[..]).unwrap();
        trees.index.insert(&b"short key"[..], &b"x"[..]).unwrap();
        trees
            .inline
            .insert(Id::of_block(b"orphan").0, &b"orphan"[..])
            .unwrap();
    });
    let audit = audit_of(tmp.path());
    assert_eq!(audit.index_without_bytes, vec![undecodable]);
    assert_eq!(audit.corrupt_entries, 2, "{audit:?}");
    let report = repair(tmp.path());
    assert_eq!(
        report,
        RepairReport {
            index_entries_dropped: 1,
            corrupt_entries_dropped: 2,
            ..RepairReport::default()
        }
    );
    let store = open(tmp.path());
    assert_eq!(store.list(None, 100).unwrap().len(), 2);
    drop(store);
    assert_good_blocks_survive(tmp.path(), &good);
}

#[test]
fn every_crash_state_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let good = store_with_good_blocks(tmp.path());
    let (_, missing) = file_block(tmp.path(), 6);
    let (_, truncated) = file_block(tmp.path(), 7);
    fs::remove_file(&missing).unwrap();
    fs::write(&truncated, b"short").unwrap();
    let stray = files::block_path(tmp.path(), &Id::of_block(b"stray"));
    fs::create_dir_all(stray.parent().unwrap()).unwrap();
    fs::write(&stray, b"stray").unwrap();
    fs::write(tmp.path().join("tmp/a"), b"a").unwrap();
    fs::write(tmp.path().join("tmp/b"), b"b").unwrap();
    let audit = audit_of(tmp.path());
    assert!(!audit.is_clean());
    assert_eq!(
        (
            audit.temp_files,
            audit.index_without_bytes.len(),
            audit.stray_files.len()
        ),
        (2, 2, 2)
    );
    let report = repair(tmp.path());
    assert_eq!(
        report,
        RepairReport {
            temp_files_removed: 2,
            index_entries_dropped: 2,
            stray_files_removed: 2,
            corrupt_entries_dropped: 0,
        }
    );
    assert_good_blocks_survive(tmp.path(), &good);
}

/// Index entries in the raw `index` tree of a closed store.
fn raw_index_len(dir: &Path) -> usize {
    let mut n = 0;
    with_raw_trees(dir, |trees| n = trees.index.len());
    n
}

#[test]
fn an_unmounted_blocks_dir_is_refused_and_the_index_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = open(dir);
    for seed in 0..20 {
        let data = block(70 * 1024, 2000 + seed);
        store.put_verified(&Id::of_block(&data), &data).unwrap();
    }
    drop(store);
    let blocks = dir.join(files::BLOCKS_DIR);
    let away = dir.join("blocks.away");

    // An empty mount point where the disk should be.
    fs::rename(&blocks, &away).unwrap();
    fs::create_dir(&blocks).unwrap();
    let err = Store::open(dir, StoreConfig::default()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::BlocksMissing {
                listed: 20,
                missing: 20,
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("--accept-data-loss") && text.contains(&blocks.display().to_string()),
        "{text}"
    );
    assert_eq!(raw_index_len(dir), 20, "a refused open keeps every entry");

    // No blocks/ at all: refused too, and not created behind our back.
    fs::remove_dir(&blocks).unwrap();
    assert!(matches!(
        Store::open(dir, StoreConfig::default()),
        Err(StoreError::BlocksMissing { .. })
    ));
    assert!(!blocks.exists());
    assert_eq!(raw_index_len(dir), 20);

    // The disk is back: everything is there.
    fs::rename(&away, &blocks).unwrap();
    let (store, report) =
        super::tests::when_unlocked(|| Store::open(dir, StoreConfig::default())).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(store.block_count(), 20);
    drop(store);

    // Gone for good, and the operator says so: the entries are dropped.
    fs::remove_dir_all(&blocks).unwrap();
    let accept = StoreConfig {
        accept_data_loss: true,
        ..StoreConfig::default()
    };
    let (store, report) = Store::open(dir, accept).unwrap();
    assert_eq!(report.index_entries_dropped, 20);
    assert_eq!(store.block_count(), 0);
    assert!(blocks.is_dir());
}

#[test]
fn an_unmounted_segments_dir_is_refused_and_the_index_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = open(dir);
    for seed in 0..20 {
        let data = block(4096, 2500 + seed);
        store.put_verified(&Id::of_block(&data), &data).unwrap();
    }
    drop(store);
    let segments = dir.join(super::segments::SEGMENTS_DIR);
    let away = dir.join("segments.away");

    // An empty mount point where the disk should be.
    fs::rename(&segments, &away).unwrap();
    fs::create_dir(&segments).unwrap();
    let err = Store::open(dir, StoreConfig::default()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::BlocksMissing {
                listed: 20,
                missing: 20,
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("--accept-data-loss") && text.contains(&segments.display().to_string()),
        "{text}"
    );
    assert_eq!(raw_index_len(dir), 20, "a refused open keeps every entry");

    // The disk is back (the refused open left an empty segment file in the
    // mount point, as a mounted disk would hide it): everything is there.
    fs::remove_dir_all(&segments).unwrap();
    fs::rename(&away, &segments).unwrap();
    let (store, report) =
        super::tests::when_unlocked(|| Store::open(dir, StoreConfig::default())).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(store.block_count(), 20);
    drop(store);

    // Gone for good, and the operator says so: the entries are dropped.
    fs::remove_dir_all(&segments).unwrap();
    let accept = StoreConfig {
        accept_data_loss: true,
        ..StoreConfig::default()
    };
    let (store, report) = super::tests::when_unlocked(|| Store::open(dir, accept.clone())).unwrap();
    assert_eq!(report.index_entries_dropped, 20);
    assert_eq!(store.block_count(), 0);
}

#[test]
fn a_few_missing_files_among_many_are_still_repaired() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut paths = Vec::new();
    let store = open(dir);
    for seed in 0..20 {
        let data = block(70 * 1024, 3000 + seed);
        let key = Id::of_block(&data);
        store.put_verified(&key, &data).unwrap();
        paths.push(files::block_path(dir, &key));
    }
    drop(store);
    for path in &paths[..10] {
        fs::remove_file(path).unwrap();
    }
    let report = repair(dir);
    assert_eq!(report.index_entries_dropped, 10, "half is not most");
    assert_eq!(open(dir).block_count(), 10);
}
