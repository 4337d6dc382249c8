//! The clean-close summary: an open after `close` trusts it, an open after
//! anything else scans every block, and nothing a crash or a missing disk
//! leaves is hidden by it.

use std::fs;
use std::path::Path;

use super::tests::{block, open, with_raw_trees};
use super::*;

const FILE_LEN: usize = 200 * 1024;

/// A store with `inline` small blocks and `file` file blocks, closed cleanly.
fn closed_store(dir: &Path, inline: u64, file: u64) -> Vec<Vec<u8>> {
    let store = open(dir);
    let mut held = Vec::new();
    for seed in 0..inline {
        held.push(block(100 + seed as usize, seed));
    }
    for seed in 0..file {
        held.push(block(FILE_LEN, 1000 + seed));
    }
    for data in &held {
        store.put_verified(&Id::of_block(data), data).unwrap();
    }
    store.close().unwrap();
    held
}

fn has_summary(dir: &Path) -> bool {
    let mut found = false;
    with_raw_trees(dir, |t| {
        found = t.meta.get(summary::SUMMARY_KEY).unwrap().is_some();
    });
    found
}

fn counts(store: &Store) -> (u64, u64, u64) {
    (
        store.block_count(),
        store.bytes_stored(),
        store.charged_bytes(),
    )
}

#[test]
fn an_open_after_a_clean_close_takes_its_counts_and_leaves_none_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let held = closed_store(tmp.path(), 5, 3);
    let scanned = {
        // What a full scan counts, for comparison: the summary taken away.
        let before = has_summary(tmp.path());
        assert!(before, "close wrote no summary");
        let store = open(tmp.path());
        let c = counts(&store);
        store.close().unwrap();
        c
    };
    assert_eq!(scanned.0, held.len() as u64);
    let store = open(tmp.path());
    assert_eq!(counts(&store), scanned);
    drop(store);
    // That open took the summary: dropped without close, as a crash would
    // be, the next open finds none.
    assert!(!has_summary(tmp.path()));
    let store = open(tmp.path());
    assert_eq!(counts(&store), scanned, "the full scan counts the same");
    for data in &held {
        assert_eq!(
            store.get(&Id::of_block(data)).unwrap().as_deref(),
            Some(&data[..])
        );
    }
}

#[test]
fn a_put_or_delete_after_close_takes_the_summary_back() {
    let tmp = tempfile::tempdir().unwrap();
    let held = closed_store(tmp.path(), 3, 1);
    let store = open(tmp.path());
    store.close().unwrap();
    let extra = block(300, 77);
    store.put_verified(&Id::of_block(&extra), &extra).unwrap();
    assert!(
        !has_summary_of(&store),
        "a put after close left a stale summary"
    );
    store.close().unwrap();
    assert!(store.delete(&Id::of_block(&held[0])).unwrap());
    assert!(
        !has_summary_of(&store),
        "a delete after close left a stale summary"
    );
    let expected = counts(&store);
    drop(store);
    let store = open(tmp.path());
    assert_eq!(counts(&store), expected);
}

fn has_summary_of(store: &Store) -> bool {
    store
        .inner
        .trees
        .meta
        .get(summary::SUMMARY_KEY)
        .unwrap()
        .is_some()
}

#[test]
fn crash_leftovers_after_an_unclean_stop_are_still_repaired() {
    let tmp = tempfile::tempdir().unwrap();
    closed_store(tmp.path(), 2, 2);
    // Opened (taking the summary), then "crashed" with a stray block file.
    drop(open(tmp.path()));
    let stray = block(FILE_LEN, 999);
    let path = files::block_path(tmp.path(), &Id::of_block(&stray));
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, &stray).unwrap();
    let (store, report) =
        super::tests::when_unlocked(|| Store::open(tmp.path(), StoreConfig::default())).unwrap();
    assert_eq!(report.stray_files_removed, 1, "{report:?}");
    assert_eq!(store.block_count(), 4);
}

#[test]
fn block_files_gone_since_the_close_are_not_hidden_by_the_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let held = closed_store(tmp.path(), 1, 3);
    // One file block lost while the node was down: the sample finds it
    // (three file blocks are all in the sample), so the open scans and
    // drops its entry instead of trusting the summary's count.
    let lost = Id::of_block(&held[1]);
    fs::remove_file(files::block_path(tmp.path(), &lost)).unwrap();
    let (store, report) =
        super::tests::when_unlocked(|| Store::open(tmp.path(), StoreConfig::default())).unwrap();
    assert_eq!(report.index_entries_dropped, 1, "{report:?}");
    assert_eq!(store.block_count(), 3);
    assert_eq!(store.get(&lost).unwrap(), None);
}

#[test]
fn a_missing_blocks_dir_after_a_clean_close_is_still_refused() {
    let tmp = tempfile::tempdir().unwrap();
    closed_store(tmp.path(), 1, 20);
    fs::rename(tmp.path().join("blocks"), tmp.path().join("elsewhere")).unwrap();
    let err = super::tests::when_unlocked(|| Store::open(tmp.path(), StoreConfig::default()))
        .expect_err("an open with every block file gone must refuse");
    assert!(matches!(err, StoreError::BlocksMissing { .. }), "{err}");
}
