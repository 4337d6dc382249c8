//! Disk space and failed writes: the free-space floor, the per-block charge,
//! a write that fails midway, and "held" only once durable. Real sled in
//! temporary dirs; failures are made real (a path blocked on disk), not mocked.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use super::tests::block;
use super::*;

fn open_with(dir: &Path, cfg: StoreConfig) -> Store {
    super::tests::when_unlocked(|| Store::open(dir, cfg.clone()))
        .unwrap()
        .0
}

fn tmp_entries(dir: &Path) -> usize {
    fs::read_dir(dir.join(files::TMP_DIR)).unwrap().count()
}

/// Nothing of a refused or failed put may remain.
fn assert_nothing_stored(store: &Store, key: &Id) {
    assert!(!store.contains(key));
    assert_eq!(store.meta(key).unwrap(), None);
    assert_eq!(store.block_count(), 0);
    assert_eq!(store.charged_bytes(), 0);
    assert_eq!(tmp_entries(store.dir()), 0, "temp files left behind");
    assert!(!files::block_path(store.dir(), key).exists());
}

#[test]
fn a_floor_above_the_free_space_refuses_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        min_free_bytes: u64::MAX / 2,
        ..StoreConfig::default()
    };
    let store = open_with(tmp.path(), cfg);
    for len in [100, 200 * 1024] {
        let data = block(len, 40);
        let key = Id::of_block(&data);
        let err = store.put_verified(&key, &data).unwrap_err();
        assert!(matches!(err, StoreError::LowDisk { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("min_free_bytes"), "{text}");
        assert!(
            !text.contains(&tmp.path().display().to_string()),
            "peers see this text: no local path in it: {text}"
        );
        assert_nothing_stored(&store, &key);
    }
    assert!(matches!(
        store.check_room(0),
        Err(StoreError::LowDisk { .. })
    ));
    drop(store);
    assert!(super::tests::audit_of(tmp.path()).is_clean());
}

#[test]
fn the_percent_floor_refuses_too_and_no_floor_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let all = StoreConfig {
        min_free_bytes: 0,
        min_free_percent: 100,
        ..StoreConfig::default()
    };
    let store = open_with(tmp.path(), all);
    let data = block(1000, 41);
    let key = Id::of_block(&data);
    assert!(matches!(
        store.put_verified(&key, &data),
        Err(StoreError::LowDisk { .. })
    ));
    drop(store);
    let none = StoreConfig {
        min_free_bytes: 0,
        min_free_percent: 0,
        ..StoreConfig::default()
    };
    let store = open_with(tmp.path(), none);
    assert_eq!(store.put_verified(&key, &data).unwrap(), PutOutcome::Stored);
}

#[test]
fn the_quota_charges_bookkeeping_so_empty_blocks_are_not_free() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        quota_bytes: Some(10 * charge::BLOCK_OVERHEAD),
        ..StoreConfig::default()
    };
    let store = open_with(tmp.path(), cfg.clone());
    // Distinct empty-ish blocks: one byte each, 257 bytes charged.
    let mut stored = 0;
    for i in 0..20u8 {
        let data = [i];
        if store.put_verified(&Id::of_block(&data), &data).is_ok() {
            stored += 1;
        }
    }
    assert_eq!(stored, 9, "10 x 256 bytes of quota hold 9 blocks of 257");
    assert_eq!(store.charged_bytes(), 9 * (charge::BLOCK_OVERHEAD + 1));
    assert_eq!(store.bytes_stored(), 9);
    drop(store);
    let store = open_with(tmp.path(), cfg);
    assert_eq!(
        store.charged_bytes(),
        9 * (charge::BLOCK_OVERHEAD + 1),
        "the charge is rebuilt on open"
    );
}

#[test]
fn a_write_that_fails_midway_leaves_nothing_and_the_store_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_with(tmp.path(), StoreConfig::default());
    let data = block(200 * 1024, 42);
    let key = Id::of_block(&data);
    // blocks/ab is a file: the block's directory cannot be made, so the write
    // fails after its temp file was written and fsynced.
    let fan = files::block_path(tmp.path(), &key);
    let fan = fan.parent().unwrap().parent().unwrap().to_path_buf();
    fs::write(&fan, b"in the way").unwrap();
    let err = store.put_verified(&key, &data).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err}");
    assert_nothing_stored(&store, &key);
    // The next put of the same key, once the way is clear, stores it.
    fs::remove_file(&fan).unwrap();
    assert_eq!(store.put_verified(&key, &data).unwrap(), PutOutcome::Stored);
    assert_eq!(store.get(&key).unwrap().as_deref(), Some(&data[..]));
    drop(store);
    assert!(super::tests::audit_of(tmp.path()).is_clean());
}

#[test]
fn held_is_said_only_once_the_put_is_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_with(tmp.path(), StoreConfig::default());
    // A key whose put is in flight is not held, even with its entry written.
    let data = block(1000, 43);
    let key = Id::of_block(&data);
    store.put_verified(&key, &data).unwrap();
    {
        let _marked = store.inner.in_flight.mark(key);
        assert!(!store.contains(&key));
    }
    assert!(store.contains(&key));

    // Racing a watcher against real puts: whenever it sees the key held, the
    // put must have finished its flush (its charge is counted only after).
    for i in 0..20 {
        let data = block(1 << 20, 600 + i);
        let key = Id::of_block(&data);
        let before = store.charged_bytes();
        let done = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (store, done) = (store.clone(), done.clone());
            thread::spawn(move || {
                let mut early = 0;
                while !done.load(Ordering::SeqCst) {
                    if store.contains(&key) && store.charged_bytes() == before {
                        early += 1;
                    }
                }
                early
            })
        };
        store.put_verified(&key, &data).unwrap();
        done.store(true, Ordering::SeqCst);
        assert_eq!(watcher.join().unwrap(), 0, "held before durable");
    }
}
