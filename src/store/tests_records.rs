//! Block records and migration 2, against real sled in temporary dirs.

use std::path::Path;

use super::files::DB_DIR;
use super::index::{
    IndexEntry, INDEX_TREE, INLINE_TREE, META_TREE, NODE_ID_KEY, ROUTING_TREE, SCHEMA_VERSION_KEY,
};
use super::records::RECORDS_TREE;
use super::tests::{audit_of, block, open, with_raw_trees};
use super::*;

/// The record as stored, bypassing the store's defaults.
fn raw_record(store: &Store, key: &Id) -> Option<BlockRecord> {
    store.record_raw(key).unwrap()
}

#[test]
fn each_put_writes_a_record_beside_its_index_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    // Inline and file blocks: the two write paths.
    for (seed, len, origin) in [
        (1, 100, Origin::Replica),
        (2, 200 << 10, Origin::Replica),
        (3, 100, Origin::Pinned),
        (4, 200 << 10, Origin::Pinned),
    ] {
        let data = block(len, seed);
        let key = Id::of_block(&data);
        assert_eq!(
            store.put_as(&key, &data, origin).unwrap(),
            PutOutcome::Stored
        );
        let meta = store.meta(&key).unwrap().unwrap();
        let record = raw_record(&store, &key).expect("a record beside the entry");
        assert_eq!(record.origin, origin);
        assert_eq!(
            record.stored_at, meta.stored_at,
            "one clock reading for both"
        );
        assert_eq!(record.refreshed_at, meta.stored_at);
        assert_eq!((meta.origin, meta.refreshed_at), (origin, meta.stored_at));
    }
    // put_verified (what store_value and tests use) is a replica.
    let data = block(300, 5);
    let key = Id::of_block(&data);
    store.put_verified(&key, &data).unwrap();
    assert_eq!(store.record(&key).unwrap().unwrap().origin, Origin::Replica);
    // ... and so is what the engine stores through the BlockStore trait.
    let data = block(301, 6);
    let key = Id::of_block(&data);
    BlockStore::put_verified(&store, &key, &data).unwrap();
    assert_eq!(store.record(&key).unwrap().unwrap().origin, Origin::Replica);
    // list shows every block's origin.
    let listed = store.list(None, 100).unwrap();
    assert_eq!(listed.len(), 6);
    let pinned = listed
        .iter()
        .filter(|(_, m)| m.origin == Origin::Pinned)
        .count();
    assert_eq!(pinned, 2);
}

#[test]
fn storing_again_refreshes_and_a_pin_sticks() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let data = block(100 << 10, 7);
    let key = Id::of_block(&data);
    store.put_verified(&key, &data).unwrap();
    // Age the record, so a refresh shows.
    let old = BlockRecord::new(Origin::Replica, 1_000);
    store
        .inner
        .trees
        .records
        .insert(key.0, &old.encode()[..])
        .unwrap();

    assert_eq!(
        store.put_verified(&key, &data).unwrap(),
        PutOutcome::AlreadyHad
    );
    let r = store.record(&key).unwrap().unwrap();
    assert_eq!((r.origin, r.stored_at), (Origin::Replica, 1_000));
    assert!(
        r.refreshed_at > 1_600_000_000,
        "stored to us again: refreshed now"
    );

    // A PutBlock of a held replica pins it...
    assert_eq!(
        store.put_as(&key, &data, Origin::Pinned).unwrap(),
        PutOutcome::AlreadyHad
    );
    assert_eq!(store.record(&key).unwrap().unwrap().origin, Origin::Pinned);
    // ... and a later store_value of it does not unpin it.
    store.put_verified(&key, &data).unwrap();
    BlockStore::stored_again(&store, &key);
    assert_eq!(store.record(&key).unwrap().unwrap().origin, Origin::Pinned);
    // The pin is durable: it survives a reopen.
    drop(store);
    let store = open(tmp.path());
    assert_eq!(store.record(&key).unwrap().unwrap().origin, Origin::Pinned);
}

#[test]
fn mark_refreshed_touches_only_held_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let data = block(100, 8);
    let key = Id::of_block(&data);
    store.put_verified(&key, &data).unwrap();
    let old = BlockRecord::new(Origin::Pinned, 1_000);
    store
        .inner
        .trees
        .records
        .insert(key.0, &old.encode()[..])
        .unwrap();
    assert!(store.mark_refreshed(&key, Refresh::Republished).unwrap());
    let r = store.record(&key).unwrap().unwrap();
    assert_eq!((r.origin, r.stored_at), (Origin::Pinned, 1_000));
    assert!(r.refreshed_at > 1_600_000_000);

    assert!(store.delete(&key).unwrap());
    assert_eq!(
        raw_record(&store, &key),
        None,
        "delete takes the record too"
    );
    assert!(!store.mark_refreshed(&key, Refresh::Republished).unwrap());
    assert_eq!(
        raw_record(&store, &key),
        None,
        "a refresh never brings a record back"
    );
    assert!(!store
        .mark_refreshed(&Id([9; 32]), Refresh::Republished)
        .unwrap());
}

#[test]
fn a_record_left_alone_by_a_crash_is_dropped_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let data = block(100, 9);
    let key = Id::of_block(&data);
    store.put_verified(&key, &data).unwrap();
    drop(store);
    let lone = Id([7; 32]);
    with_raw_trees(tmp.path(), |trees| {
        let r = BlockRecord::new(Origin::Replica, 5).encode();
        trees.records.insert(lone.0, &r[..]).unwrap();
    });
    let audit = audit_of(tmp.path());
    assert_eq!(audit.corrupt_entries, 1, "{audit:?}");
    let (store, repaired) =
        super::tests::when_unlocked(|| Store::open(tmp.path(), StoreConfig::default())).unwrap();
    assert_eq!(repaired.corrupt_entries_dropped, 1);
    assert_eq!(raw_record(&store, &lone), None);
    assert!(
        raw_record(&store, &key).is_some(),
        "the held block keeps its record"
    );
    drop(store);
    assert!(audit_of(tmp.path()).is_clean());
}

// ---------------------------------------------------------------------------
// Migration 2.

/// Blocks of a version 1 dir: (key, index stored_at, bytes).
type V1Blocks = Vec<(Id, u64, Vec<u8>)>;

/// Writes a data dir as dhtfs at schema version 1 left it, by hand: `meta`
/// (node id, version 1), `index` entries, `inline` values and block files, a
/// `routing` tree, and no `records` tree. Inline and file blocks, each with
/// its own old stored time.
fn write_v1_dir(dir: &Path, n: u64) -> V1Blocks {
    let db_path = dir.join(DB_DIR);
    let db = sled::Config::new().path(&db_path).open().unwrap();
    let meta = db.open_tree(META_TREE).unwrap();
    let index = db.open_tree(INDEX_TREE).unwrap();
    let inline = db.open_tree(INLINE_TREE).unwrap();
    db.open_tree(ROUTING_TREE).unwrap();
    meta.insert(NODE_ID_KEY, &[0x5a; 32][..]).unwrap();
    meta.insert(SCHEMA_VERSION_KEY, &1u32.to_be_bytes())
        .unwrap();
    let mut blocks = Vec::new();
    for i in 0..n {
        let len = if i % 2 == 0 { 1_000 } else { 100 << 10 };
        let data = block(len, 1_000 + i);
        let key = Id::of_block(&data);
        let stored_at = 1_650_000_000 + i * 60;
        let location = if i % 2 == 0 {
            inline.insert(key.0, &data[..]).unwrap();
            index::Location::Inline
        } else {
            let path = files::block_path(dir, &key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &data).unwrap();
            index::Location::File
        };
        let entry = IndexEntry {
            size: len as u64,
            location,
            stored_at,
        };
        index.insert(key.0, &entry.encode()[..]).unwrap();
        blocks.push((key, stored_at, data));
    }
    db.flush().unwrap();
    assert!(
        !db.tree_names()
            .iter()
            .any(|t| t.as_ref() == RECORDS_TREE.as_bytes()),
        "a version 1 dir has no records tree"
    );
    blocks
}

fn version_on_disk(dir: &Path) -> u32 {
    let mut v = 0;
    with_raw_trees(dir, |trees| {
        let raw = trees.meta.get(SCHEMA_VERSION_KEY).unwrap().unwrap();
        v = u32::from_be_bytes(raw.as_ref().try_into().unwrap());
    });
    v
}

/// Every block of `blocks` reads back, with a replica record stored (and
/// refreshed) at its index entry's time.
fn assert_migrated(store: &Store, blocks: &V1Blocks) {
    assert_eq!(store.schema_version(), SCHEMA_VERSION);
    assert_eq!(store.block_count(), blocks.len() as u64);
    for (key, stored_at, data) in blocks {
        assert_eq!(store.get(key).unwrap().as_deref(), Some(&data[..]));
        let r = raw_record(store, key).unwrap_or_else(|| panic!("block {key} has no record"));
        assert_eq!(
            r,
            BlockRecord::new(Origin::Replica, *stored_at),
            "block {key}"
        );
    }
    assert_eq!(store.inner.trees.records.len(), blocks.len());
}

#[test]
fn a_version_1_dir_opens_with_every_block_given_a_record() {
    let tmp = tempfile::tempdir().unwrap();
    let blocks = write_v1_dir(tmp.path(), 40);
    let (store, repaired) =
        super::tests::when_unlocked(|| Store::open(tmp.path(), StoreConfig::default())).unwrap();
    assert!(repaired.is_clean(), "{repaired:?}");
    assert_eq!(store.node_id(), Id([0x5a; 32]), "the node keeps its id");
    assert_migrated(&store, &blocks);
    drop(store);
    assert_eq!(version_on_disk(tmp.path()), SCHEMA_VERSION);
    assert!(audit_of(tmp.path()).is_clean());
    // Opening again runs nothing and changes nothing.
    let store = open(tmp.path());
    assert_migrated(&store, &blocks);
}

#[test]
fn a_crash_before_the_version_bump_reruns_the_migration_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let blocks = write_v1_dir(tmp.path(), 30);

    // The step completes, then the "crash": the version is never bumped.
    migrate::crash_hook::before_bump(2);
    let err = Store::open(tmp.path(), StoreConfig::default()).unwrap_err();
    assert!(err.to_string().contains("test crash"), "{err}");
    assert_eq!(version_on_disk(tmp.path()), 1, "no bump after the crash");
    let mut after_first = Vec::new();
    with_raw_trees(tmp.path(), |trees| {
        assert_eq!(
            trees.records.len(),
            blocks.len(),
            "the first run wrote them all"
        );
        after_first = trees.records.iter().map(Result::unwrap).collect();
    });

    // The next start runs step 2 again over its own output, then bumps.
    let store = open(tmp.path());
    assert_migrated(&store, &blocks);
    let after_rerun: Vec<_> = store
        .inner
        .trees
        .records
        .iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(after_rerun, after_first, "the rerun changed no record");
    drop(store);
    assert_eq!(version_on_disk(tmp.path()), SCHEMA_VERSION);
}

#[test]
fn a_crash_part_way_through_the_step_is_finished_by_the_rerun() {
    let tmp = tempfile::tempdir().unwrap();
    let blocks = write_v1_dir(tmp.path(), 20);
    // As if the first run got through some blocks only. One of them was
    // since pinned by hand: a rerun keeps whatever record a block has.
    let pinned = BlockRecord::new(Origin::Pinned, 1_700_000_000);
    with_raw_trees(tmp.path(), |trees| {
        for (key, stored_at, _) in &blocks[..5] {
            let r = BlockRecord::new(Origin::Replica, *stored_at).encode();
            trees.records.insert(key.0, &r[..]).unwrap();
        }
        trees
            .records
            .insert(blocks[0].0 .0, &pinned.encode()[..])
            .unwrap();
    });
    let store = open(tmp.path());
    assert_eq!(store.schema_version(), SCHEMA_VERSION);
    assert_eq!(raw_record(&store, &blocks[0].0), Some(pinned));
    for (key, stored_at, _) in &blocks[1..] {
        let r = raw_record(&store, key).unwrap_or_else(|| panic!("block {key} has no record"));
        assert_eq!(
            r,
            BlockRecord::new(Origin::Replica, *stored_at),
            "block {key}"
        );
    }
    assert_eq!(store.inner.trees.records.len(), blocks.len());
}

#[test]
fn upkeep_progress_survives_a_reopen_and_garbage_reads_as_none() {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Where {
        after: u64,
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    assert_eq!(store.load_progress::<Where>("scrub").unwrap(), None);
    store.save_progress("scrub", &Where { after: 7 }).unwrap();
    store.flush().unwrap();
    drop(store);
    let store = open(tmp.path());
    assert_eq!(
        store.load_progress::<Where>("scrub").unwrap(),
        Some(Where { after: 7 })
    );
    store
        .inner
        .trees
        .upkeep
        .insert("scrub", &b"{not json"[..])
        .unwrap();
    assert_eq!(store.load_progress::<Where>("scrub").unwrap(), None);
}
