//! Migrations 3 (small blocks from the `inline` tree into segments) and 4
//! (block files into segments), each from a data dir laid out as the code
//! before it wrote it, whole and resumed after a crash part-way; and
//! compaction.

use super::index::{IndexEntry, Location, Trees, SCHEMA_VERSION_KEY};
use super::tests::{block, open, when_unlocked, with_raw_trees};
use super::tests_repair::legacy_inline;
use super::*;

/// Writes `blocks` the way a version-2 store did (a format-1 inline entry,
/// its record, its bytes in `inline`) and sets the dir back to version 2.
fn as_version_2(dir: &std::path::Path, blocks: &[Vec<u8>], extra: impl FnOnce(&Trees)) {
    with_raw_trees(dir, |trees| {
        for data in blocks {
            legacy_inline(trees, data, Some(data), Origin::Pinned);
        }
        extra(trees);
        trees
            .meta
            .insert(SCHEMA_VERSION_KEY, &2u32.to_be_bytes()[..])
            .unwrap();
    });
}

fn locations(dir: &std::path::Path, blocks: &[Vec<u8>]) -> (usize, usize, usize) {
    let mut counts = (0, 0, 0);
    with_raw_trees(dir, |trees| {
        for data in blocks {
            let raw = trees.index.get(Id::of_block(data).0).unwrap().unwrap();
            match IndexEntry::decode(&raw).unwrap().location {
                Location::Inline => counts.0 += 1,
                Location::Segment(_) => counts.1 += 1,
                Location::File => counts.2 += 1,
            }
        }
    });
    counts
}

/// 3,000 small blocks: over 8 MiB, so more than one batch.
fn small_blocks() -> Vec<Vec<u8>> {
    (0..3000)
        .map(|i| block(3000 + i % 7, 50_000 + i as u64))
        .collect()
}

#[test]
fn migration_3_moves_inline_blocks_into_segments_and_leaves_rot_and_orphans() {
    let tmp = tempfile::tempdir().unwrap();
    let file_block = block(200 * 1024, 9);
    open(tmp.path())
        .put_as(&Id::of_block(&file_block), &file_block, Origin::Pinned)
        .unwrap();
    let small = small_blocks();
    let rotten = block(500, 10);
    let rotten_key = Id::of_block(&rotten);
    let orphan = Id::of_block(b"orphan");
    as_version_2(tmp.path(), &small, |trees| {
        // An entry whose inline bytes rotted, and a value no entry reaches.
        let entry = IndexEntry {
            size: 500,
            location: Location::Inline,
            stored_at: 1,
        };
        trees.index.insert(rotten_key.0, entry.encode()).unwrap();
        trees
            .inline
            .insert(rotten_key.0, &block(500, 11)[..])
            .unwrap();
        trees.inline.insert(orphan.0, &b"orphan"[..]).unwrap();
    });

    let store = open(tmp.path());
    assert_eq!(store.schema_version(), SCHEMA_VERSION);
    for data in &small {
        let key = Id::of_block(data);
        assert_eq!(store.get(&key).unwrap().as_deref(), Some(&data[..]));
        assert_eq!(
            store.meta(&key).unwrap().unwrap().origin,
            Origin::Pinned,
            "its record is kept"
        );
    }
    assert_eq!(
        store.get(&Id::of_block(&file_block)).unwrap(),
        Some(file_block)
    );
    assert!(
        store.get(&rotten_key).is_err(),
        "rot is still refused, not hidden"
    );
    drop(store);
    assert_eq!(locations(tmp.path(), &small), (0, small.len(), 0));
    with_raw_trees(tmp.path(), |trees| {
        assert!(
            trees.inline.contains_key(rotten_key.0).unwrap(),
            "rot stays for scrub"
        );
        assert!(
            !trees.inline.contains_key(orphan.0).unwrap(),
            "the orphan was repaired away"
        );
        assert_eq!(trees.inline.len(), 1);
    });
}

#[test]
fn migration_3_resumes_after_a_crash_part_way() {
    let tmp = tempfile::tempdir().unwrap();
    drop(open(tmp.path()));
    let small = small_blocks();
    as_version_2(tmp.path(), &small, |_| {});

    migrate::crash_hook::mid_step(3);
    let err = when_unlocked(|| Store::open(tmp.path(), StoreConfig::default()));
    assert!(err.is_err(), "the injected crash stops the open");
    let (inline, segment, _) = locations(tmp.path(), &small);
    assert!(
        inline > 0 && segment > 0,
        "part-way: {inline} inline, {segment} in segments"
    );
    with_raw_trees(tmp.path(), |trees| {
        assert_eq!(
            trees.meta.get(SCHEMA_VERSION_KEY).unwrap().as_deref(),
            Some(&2u32.to_be_bytes()[..])
        );
    });

    let store = open(tmp.path());
    assert_eq!(store.schema_version(), SCHEMA_VERSION);
    assert_eq!(store.block_count(), small.len() as u64);
    for data in &small {
        assert_eq!(
            store.get(&Id::of_block(data)).unwrap().as_deref(),
            Some(&data[..])
        );
    }
    drop(store);
    assert_eq!(locations(tmp.path(), &small), (0, small.len(), 0));
    assert!(super::tests::audit_of(tmp.path()).is_clean());
}

/// A data dir as version 3 left it with `inline_max` 1 KiB: `blocks` as
/// files under `blocks/`; set back to version 3.
fn as_version_3_with_files(dir: &std::path::Path, blocks: &[Vec<u8>]) {
    let cfg = StoreConfig {
        inline_max: 1024,
        ..StoreConfig::default()
    };
    let store = when_unlocked(|| Store::open(dir, cfg.clone())).unwrap().0;
    for data in blocks {
        store
            .put_as(&Id::of_block(data), data, Origin::Pinned)
            .unwrap();
    }
    drop(store);
    with_raw_trees(dir, |trees| {
        trees
            .meta
            .insert(SCHEMA_VERSION_KEY, &3u32.to_be_bytes()[..])
            .unwrap();
    });
    assert_eq!(locations(dir, blocks), (0, 0, blocks.len()));
}

/// Opens `dir` with `inline_max` bytes (running the migrations).
fn open_inline_max(dir: &std::path::Path, inline_max: usize) -> Result<Store, StoreError> {
    let cfg = StoreConfig {
        inline_max,
        ..StoreConfig::default()
    };
    when_unlocked(|| Store::open(dir, cfg.clone())).map(|(s, _)| s)
}

/// 60 blocks of 100-300 KiB: 12 MiB, so more than one batch.
fn file_blocks() -> Vec<Vec<u8>> {
    (0..60)
        .map(|i| block(100 * 1024 + (i % 3) * 100 * 1024, 80_000 + i as u64))
        .collect()
}

#[test]
fn migration_4_moves_block_files_into_segments_and_leaves_rot_and_larger_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let blocks = file_blocks();
    let large = block(900 * 1024, 81);
    let rotten = block(50 * 1024, 82);
    let mut all = blocks.clone();
    all.extend([large.clone(), rotten.clone()]);
    as_version_3_with_files(tmp.path(), &all);
    let rotten_key = Id::of_block(&rotten);
    let rotten_path = super::files::block_path(tmp.path(), &rotten_key);
    std::fs::write(&rotten_path, block(50 * 1024, 83)).unwrap();

    let store = open_inline_max(tmp.path(), 512 * 1024).unwrap();
    assert_eq!(store.schema_version(), SCHEMA_VERSION);
    for data in blocks.iter().chain([&large]) {
        let key = Id::of_block(data);
        assert_eq!(store.get(&key).unwrap().as_deref(), Some(&data[..]));
        assert_eq!(store.meta(&key).unwrap().unwrap().origin, Origin::Pinned);
    }
    assert!(store.get(&rotten_key).is_err(), "rot is still refused");
    drop(store);
    assert_eq!(locations(tmp.path(), &blocks), (0, blocks.len(), 0));
    assert_eq!(
        locations(tmp.path(), &[large.clone(), rotten.clone()]),
        (0, 0, 2),
        "over inline_max, or rotten: still files"
    );
    for data in &blocks {
        let path = super::files::block_path(tmp.path(), &Id::of_block(data));
        assert!(!path.exists(), "{} was removed", path.display());
    }
    assert!(rotten_path.exists(), "rot stays for scrub");
}

#[test]
fn migration_4_resumes_after_a_crash_part_way() {
    let tmp = tempfile::tempdir().unwrap();
    let blocks = file_blocks();
    as_version_3_with_files(tmp.path(), &blocks);

    migrate::crash_hook::mid_step(4);
    assert!(
        open_inline_max(tmp.path(), 1 << 20).is_err(),
        "the injected crash stops the open"
    );
    let (_, segment, file) = locations(tmp.path(), &blocks);
    assert!(
        segment > 0 && file > 0,
        "part-way: {segment} in segments, {file} files"
    );
    with_raw_trees(tmp.path(), |trees| {
        assert_eq!(
            trees.meta.get(SCHEMA_VERSION_KEY).unwrap().as_deref(),
            Some(&3u32.to_be_bytes()[..])
        );
    });

    let store = open_inline_max(tmp.path(), 1 << 20).unwrap();
    assert_eq!(store.schema_version(), SCHEMA_VERSION);
    assert_eq!(store.block_count(), blocks.len() as u64);
    for data in &blocks {
        assert_eq!(
            store.get(&Id::of_block(data)).unwrap().as_deref(),
            Some(&data[..])
        );
    }
    drop(store);
    assert_eq!(locations(tmp.path(), &blocks), (0, blocks.len(), 0));
    assert!(super::tests::audit_of(tmp.path()).is_clean());
}

fn small_segments(dir: &std::path::Path) -> Store {
    let cfg = StoreConfig {
        segment_bytes: 1 << 20,
        ..StoreConfig::default()
    };
    when_unlocked(|| Store::open(dir, cfg.clone())).unwrap().0
}

#[test]
fn compaction_gives_back_what_deletes_left_and_every_live_block_still_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small_segments(tmp.path());
    let blocks: Vec<Vec<u8>> = (0..2000).map(|i| block(4096, 70_000 + i)).collect();
    for data in &blocks {
        store.put_verified(&Id::of_block(data), data).unwrap();
    }
    // Delete three of every four: punched holes give back little of 4 KiB records.
    for data in blocks
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 4 != 0)
        .map(|(_, d)| d)
    {
        assert!(store.delete(&Id::of_block(data)).unwrap());
    }
    assert_eq!(
        store.segment_reclaimable(),
        1500 * (4096 + 40),
        "each deleted record counts as reclaimable until a pass measures"
    );
    let before = store.segment_use().unwrap();
    let sealed: Vec<_> = before.iter().filter(|u| !u.active).collect();
    assert!(sealed.len() >= 5, "{before:?}");
    let dead_before: u64 = before.iter().map(SegmentUse::dead).sum();
    let live: u64 = before.iter().map(|u| u.live).sum();
    assert!(dead_before > live, "dead {dead_before}, live {live}");

    let mut moved = 0;
    for u in &sealed {
        let done = store.compact_segment(u.seg, &mut |_| true).unwrap();
        assert!(done.removed, "{done:?}");
        moved += done.blocks_moved;
    }
    assert!(moved > 0);
    let after = store.segment_use().unwrap();
    let allocated: u64 = after.iter().map(|u| u.allocated).sum();
    assert!(
        allocated < live * 13 / 10 + (1 << 20),
        "{allocated} bytes on disk for {live} live"
    );
    for (i, data) in blocks.iter().enumerate() {
        let got = store.get(&Id::of_block(data)).unwrap();
        assert_eq!(
            got.as_deref(),
            (i % 4 == 0).then_some(&data[..]),
            "block {i}"
        );
    }
    // And after a crash (no clean close), every live block is still there.
    drop(store);
    let store = small_segments(tmp.path());
    assert_eq!(store.block_count(), 500);
    for data in blocks.iter().step_by(4) {
        assert_eq!(
            store.get(&Id::of_block(data)).unwrap().as_deref(),
            Some(&data[..])
        );
    }
}

#[test]
fn a_stopped_pass_leaves_its_segment_and_the_next_one_finishes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = small_segments(tmp.path());
    let blocks: Vec<Vec<u8>> = (0..600).map(|i| block(60_000, 80_000 + i)).collect();
    for data in &blocks {
        store.put_verified(&Id::of_block(data), data).unwrap();
    }
    let first = store.segment_use().unwrap()[0];
    assert!(!first.active);
    // Stop after the first batch: the segment stays, all blocks read.
    let done = store.compact_segment(first.seg, &mut |_| false).unwrap();
    assert!(!done.removed && done.blocks_moved > 0, "{done:?}");
    for data in &blocks {
        assert_eq!(
            store.get(&Id::of_block(data)).unwrap().as_deref(),
            Some(&data[..])
        );
    }
    drop(store);
    let store = small_segments(tmp.path());
    let done = store.compact_segment(first.seg, &mut |_| true).unwrap();
    assert!(done.removed, "{done:?}");
    for data in &blocks {
        assert_eq!(
            store.get(&Id::of_block(data)).unwrap().as_deref(),
            Some(&data[..])
        );
    }
    drop(store);
    assert!(super::tests::audit_of(tmp.path()).is_clean());
}

#[test]
fn the_active_segment_is_never_compacted() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let data = block(100, 1);
    store.put_verified(&Id::of_block(&data), &data).unwrap();
    let uses = store.segment_use().unwrap();
    assert_eq!(uses.len(), 1);
    assert!(uses[0].active);
    let done = store.compact_segment(uses[0].seg, &mut |_| true).unwrap();
    assert_eq!(done, Compacted::default());
    assert_eq!(store.get(&Id::of_block(&data)).unwrap(), Some(data));
}

#[test]
fn compaction_running_beside_batches_of_puts_loses_none_of_them() {
    // Each batch fills several segments, so segments seal under batches
    // that have appended records and not yet indexed them (the middle ones
    // hold nothing else), while compaction takes every sealed segment it
    // sees: none of those records may go.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        segment_bytes: 256 << 10,
        ..StoreConfig::default()
    };
    let store = std::sync::Arc::new(
        when_unlocked(|| Store::open(tmp.path(), cfg.clone()))
            .unwrap()
            .0,
    );
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let compactor = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            let mut removed = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                for u in store.segment_use().unwrap().iter().filter(|u| !u.active) {
                    removed +=
                        u64::from(store.compact_segment(u.seg, &mut |_| true).unwrap().removed);
                }
            }
            removed
        })
    };
    let mut stored = Vec::new();
    for round in 0..150u64 {
        let blocks: Vec<Vec<u8>> = (0..64)
            .map(|i| block(16 << 10, 90_000 + round * 64 + i))
            .collect();
        let items: Vec<write::PutItem<'_>> = blocks
            .iter()
            .map(|data| write::PutItem {
                key: Id::of_block(data),
                data,
                origin: Origin::Replica,
                copies: 0,
            })
            .collect();
        for r in store.put_many(&items) {
            assert_eq!(r.unwrap(), PutOutcome::Stored);
        }
        stored.extend(blocks);
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let removed = compactor.join().unwrap();
    assert!(removed > 10, "compaction removed only {removed} segments");
    for (i, data) in stored.iter().enumerate() {
        assert_eq!(
            store.get(&Id::of_block(data)).unwrap().as_deref(),
            Some(&data[..]),
            "block {i} of {}, acknowledged as stored",
            stored.len()
        );
    }
}
