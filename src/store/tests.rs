//! Store tests against real sled in temporary dirs.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;

use super::files::DB_DIR;
use super::index::NODE_ID_KEY;
use super::*;
use crate::contact::Contact;

const MIB: usize = 1024 * 1024;

/// `len` bytes that differ per `seed`, so each call gives a distinct key.
pub(super) fn block(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Runs `f` (an open of a data dir) until it stops failing on sled's lock:
/// the flusher thread of a db just closed may hold the lock a moment.
/// Bounded; the last attempt's result is returned as it is.
pub(super) fn when_unlocked<T, E: std::fmt::Display>(
    mut f: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    for _ in 0..100 {
        match f() {
            Err(e) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            other => return other,
        }
    }
    f()
}

pub(super) fn open(dir: &Path) -> Store {
    when_unlocked(|| Store::open(dir, StoreConfig::default()))
        .unwrap()
        .0
}

/// The audit of a closed data dir, once its lock is free.
pub(super) fn audit_of(dir: &Path) -> AuditReport {
    when_unlocked(|| Store::audit(dir)).unwrap()
}

/// Runs `f` on the raw trees of a closed store, then flushes.
pub(super) fn with_raw_trees(dir: &Path, f: impl FnOnce(&Trees)) {
    let config = sled::Config::new().path(dir.join(DB_DIR));
    let db = when_unlocked(|| config.open()).unwrap();
    let trees = Trees::open(&db, &dir.join(DB_DIR)).unwrap();
    f(&trees);
    db.flush().unwrap();
}

#[test]
fn blocks_of_each_size_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let inline_max = StoreConfig::default().inline_max;
    let sizes = [0, 100, inline_max, inline_max + 1, MIB];
    for (seed, &len) in sizes.iter().enumerate() {
        let data = block(len, seed as u64);
        let key = Id::of_block(&data);
        assert_eq!(store.put_verified(&key, &data).unwrap(), PutOutcome::Stored);
        assert_eq!(
            store.put_verified(&key, &data).unwrap(),
            PutOutcome::AlreadyHad
        );
        assert!(store.contains(&key));
        assert_eq!(store.get(&key).unwrap().as_deref(), Some(&data[..]));
        let meta = store.meta(&key).unwrap().unwrap();
        assert_eq!(meta.size, len as u64);
        assert_eq!(meta.inline, len <= inline_max, "len {len}");
        assert!(meta.stored_at > 1_600_000_000);
        let path = files::block_path(tmp.path(), &key);
        assert_eq!(path.is_file(), !meta.inline, "len {len}");
    }
    let total: usize = sizes.iter().sum();
    assert_eq!(store.block_count(), sizes.len() as u64);
    assert_eq!(store.bytes_stored(), total as u64);

    drop(store);
    let store = open(tmp.path());
    assert_eq!(store.block_count(), sizes.len() as u64, "rebuilt on open");
    assert_eq!(store.bytes_stored(), total as u64);
    for (seed, &len) in sizes.iter().enumerate() {
        let data = block(len, seed as u64);
        let key = Id::of_block(&data);
        assert_eq!(store.get(&key).unwrap().as_deref(), Some(&data[..]));
        assert!(store.delete(&key).unwrap());
        assert!(!store.delete(&key).unwrap(), "second delete finds nothing");
        assert!(!store.contains(&key));
        assert_eq!(store.get(&key).unwrap(), None);
        assert_eq!(store.meta(&key).unwrap(), None);
        assert!(!files::block_path(tmp.path(), &key).exists());
    }
    assert_eq!((store.block_count(), store.bytes_stored()), (0, 0));
    drop(store);
    assert!(audit_of(tmp.path()).is_clean());
}

#[test]
fn hash_mismatch_is_refused_and_nothing_written() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    for len in [100, 200 * 1024] {
        let data = block(len, 1);
        let key = Id::of_block(b"something else");
        let err = store.put_verified(&key, &data).unwrap_err();
        assert!(
            matches!(err, StoreError::HashMismatch { key: k, actual } if k == key && actual == Id::of_block(&data)),
            "{err}"
        );
        assert!(err.to_string().contains("nothing was stored"), "{err}");
        assert!(!store.contains(&key));
        assert!(!store.contains(&Id::of_block(&data)));
    }
    assert_eq!(store.block_count(), 0);
    drop(store);
    let audit = audit_of(tmp.path());
    assert!(audit.is_clean(), "{audit:?}");
    assert_eq!(audit.blocks, 0);
}

#[test]
fn too_large_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let data = block(MIB + 1, 2);
    let key = Id::of_block(&data);
    let err = store.put_verified(&key, &data).unwrap_err();
    assert!(
        matches!(err, StoreError::TooLarge { size, max } if size == MIB as u64 + 1 && max == MIB as u64),
        "{err}"
    );
    assert!(
        err.to_string().contains("over the 1048576-byte limit"),
        "{err}"
    );
    assert!(!store.contains(&key));
    assert!(store.check_room(MIB as u64).is_ok());
    assert!(matches!(
        store.check_room(MIB as u64 + 1),
        Err(StoreError::TooLarge { .. })
    ));
}

#[test]
fn quota_is_enforced() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        quota_bytes: Some(250_000),
        ..StoreConfig::default()
    };
    let (store, _) = Store::open(tmp.path(), cfg).unwrap();
    let blocks: Vec<Vec<u8>> = (0..3).map(|i| block(100_000, i)).collect();
    let keys: Vec<Id> = blocks.iter().map(|b| Id::of_block(b)).collect();
    store.put_verified(&keys[0], &blocks[0]).unwrap();
    store.put_verified(&keys[1], &blocks[1]).unwrap();
    let err = store.put_verified(&keys[2], &blocks[2]).unwrap_err();
    // Each 100,000-byte file block is charged 25 4-KiB fs blocks plus 256
    // bytes of bookkeeping: 102,656.
    assert!(
        matches!(
            err,
            StoreError::QuotaExceeded {
                size: 102_656,
                used: 205_312,
                quota: 250_000
            }
        ),
        "{err}"
    );
    assert!(err.to_string().starts_with("storage quota full"), "{err}");
    assert!(!store.contains(&keys[2]));
    assert!(store.check_room(100_000).is_err());
    assert!(store.check_room(40_000).is_ok(), "inline: 40,256 charged");
    assert!(store.check_room(50_000).is_err(), "inline: 50,256 charged");
    // A block already held needs no room.
    assert_eq!(
        store.put_verified(&keys[0], &blocks[0]).unwrap(),
        PutOutcome::AlreadyHad
    );
    assert!(store.delete(&keys[0]).unwrap());
    assert_eq!(
        store.put_verified(&keys[2], &blocks[2]).unwrap(),
        PutOutcome::Stored
    );
    assert_eq!(store.bytes_stored(), 200_000);
    assert_eq!(store.charged_bytes(), 205_312);
}

#[test]
fn concurrent_puts_never_overshoot_the_quota() {
    let tmp = tempfile::tempdir().unwrap();
    let size = 100_000usize;
    let cfg = StoreConfig {
        quota_bytes: Some(5 * charge::charge(size as u64, false)),
        ..StoreConfig::default()
    };
    let (store, _) = Store::open(tmp.path(), cfg).unwrap();
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let (store, barrier) = (store.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                (0..4u64)
                    .filter(|i| {
                        let data = block(size, 100 + t * 10 + i);
                        store.put_verified(&Id::of_block(&data), &data).is_ok()
                    })
                    .count()
            })
        })
        .collect();
    let stored: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(stored, 5);
    assert_eq!(store.bytes_stored(), 5 * size as u64);
}

#[test]
fn concurrent_puts_of_one_key_store_it_once() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    for len in [1000, 300 * 1024] {
        let data = Arc::new(block(len, 7));
        let key = Id::of_block(&data);
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (store, data, barrier) = (store.clone(), data.clone(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    store.put_verified(&key, &data).unwrap()
                })
            })
            .collect();
        let outcomes: Vec<PutOutcome> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let stored = outcomes
            .iter()
            .filter(|o| **o == PutOutcome::Stored)
            .count();
        assert_eq!(stored, 1, "len {len}: {outcomes:?}");
        assert_eq!(store.get(&key).unwrap().as_deref(), Some(&data[..]));
    }
    assert_eq!(store.block_count(), 2);
    drop(store);
    assert!(audit_of(tmp.path()).is_clean());
}

#[test]
fn get_refuses_bytes_that_rotted() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let data = block(200 * 1024, 3);
    let key = Id::of_block(&data);
    store.put_verified(&key, &data).unwrap();
    let path = files::block_path(tmp.path(), &key);
    std::fs::write(&path, block(200 * 1024, 4)).unwrap();
    let err = store.get(&key).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn node_id_is_stable_across_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let first = open(tmp.path()).node_id();
    assert_ne!(first, Id::ZERO);
    let second = open(tmp.path()).node_id();
    assert_eq!(first, second);
    let other = tempfile::tempdir().unwrap();
    assert_ne!(
        open(other.path()).node_id(),
        first,
        "each dir gets its own id"
    );
}

#[test]
fn schema_version_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    assert_eq!(store.schema_version(), SCHEMA_VERSION);
    assert_eq!(store.dir(), tmp.path());
    drop(store);
    with_raw_trees(tmp.path(), |trees| {
        let raw = trees.meta.get(index::SCHEMA_VERSION_KEY).unwrap().unwrap();
        assert_eq!(raw.as_ref(), SCHEMA_VERSION.to_be_bytes());
        let id = trees.meta.get(NODE_ID_KEY).unwrap().unwrap();
        assert_eq!(id.len(), 32);
    });
}

#[test]
fn newer_schema_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = block(100, 5);
    let store = open(tmp.path());
    store.put_verified(&Id::of_block(&data), &data).unwrap();
    drop(store);
    with_raw_trees(tmp.path(), |trees| {
        trees
            .meta
            .insert(index::SCHEMA_VERSION_KEY, &99u32.to_be_bytes())
            .unwrap();
    });
    std::fs::write(tmp.path().join("tmp/leftover"), b"x").unwrap();
    let err = Store::open(tmp.path(), StoreConfig::default()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NewerSchema {
                found: 99,
                supported: SCHEMA_VERSION,
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("upgrade dhtfs"), "{msg}");
    assert!(msg.contains(&tmp.path().display().to_string()), "{msg}");
    let err = Store::audit(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::NewerSchema { .. }), "{err}");
    // Refused before repair: the leftover temp file is still there.
    assert!(tmp.path().join("tmp/leftover").exists());
}

#[test]
fn list_pages_in_key_order() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let mut keys: Vec<Id> = (0..25)
        .map(|i| {
            let data = block(10 + i, i as u64);
            let key = Id::of_block(&data);
            store.put_verified(&key, &data).unwrap();
            key
        })
        .collect();
    keys.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list(after, 10).unwrap();
        assert!(page.len() <= 10);
        let Some(last) = page.last() else { break };
        after = Some(last.0);
        for (id, meta) in &page {
            assert_eq!(meta, &store.meta(id).unwrap().unwrap());
        }
        seen.extend(page.into_iter().map(|(id, _)| id));
    }
    assert_eq!(seen, keys);
    assert!(store.list(None, 0).unwrap().is_empty());
    assert_eq!(
        store.list(Some(keys[3]), 2).unwrap()[0].0,
        keys[4],
        "strictly after"
    );
}

#[test]
fn routing_snapshot_round_trips_and_replaces() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    assert!(store.load_routing().unwrap().is_empty());
    let addrs = ["10.0.0.1:4000", "[::1]:4001", "127.0.0.1:4002"];
    let contacts: Vec<Contact> = addrs
        .iter()
        .map(|a| Contact::new(Id::random(), a.parse::<SocketAddr>().unwrap()))
        .collect();
    let sorted = |mut c: Vec<Contact>| {
        c.sort_by_key(|c| c.id);
        c
    };
    store.save_routing(&contacts).unwrap();
    assert_eq!(
        sorted(store.load_routing().unwrap()),
        sorted(contacts.clone())
    );
    store.save_routing(&contacts[1..2]).unwrap();
    drop(store);
    let store = open(tmp.path());
    assert_eq!(store.load_routing().unwrap(), contacts[1..2].to_vec());
    // Noted changes (no fsync of their own) read back the same way; a
    // moved contact keeps one entry, at its new address.
    let moved = Contact::new(contacts[1].id, "10.0.0.9:4009".parse().unwrap());
    store.note_routing(&[moved, contacts[2]]).unwrap();
    assert_eq!(
        sorted(store.load_routing().unwrap()),
        sorted(vec![moved, contacts[2]])
    );
}

#[test]
fn an_earlier_one_value_snapshot_is_read_and_replaced_by_the_first_save() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let old = Contact::new(Id::of_block(b"old"), "127.0.0.1:9".parse().unwrap());
    let raw = format!(r#"[{{"id":"{}","addr":"127.0.0.1:9"}}]"#, old.id);
    snapshot::put_raw(&store.inner.trees.routing, raw.as_bytes());
    assert_eq!(store.load_routing().unwrap(), vec![old]);
    let new = Contact::new(Id::of_block(b"new"), "127.0.0.1:10".parse().unwrap());
    store.note_routing(&[new]).unwrap();
    assert_eq!(store.load_routing().unwrap(), vec![new]);
    assert!(!store.inner.trees.routing.contains_key(b"contacts").unwrap());
}

#[test]
fn routing_snapshot_skips_what_does_not_decode() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let good = Contact::new(Id::of_block(b"a"), "127.0.0.1:9".parse().unwrap());
    let raw = format!(
        r#"[{{"id":"{}","addr":"127.0.0.1:9"}},{{"id":"nothex","addr":"127.0.0.1:9"}},{{"id":"{}"}},7]"#,
        good.id, good.id
    );
    snapshot::put_raw(&store.inner.trees.routing, raw.as_bytes());
    assert_eq!(store.load_routing().unwrap(), vec![good]);
    snapshot::put_raw(&store.inner.trees.routing, b"\xff not json");
    assert!(store.load_routing().unwrap().is_empty());
}

#[test]
fn second_open_of_one_dir_gives_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let _first = open(tmp.path());
    let err = Store::open(tmp.path(), StoreConfig::default()).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("another dhtfs node"), "{msg}");
    assert!(msg.contains(&tmp.path().display().to_string()), "{msg}");
    assert!(msg.contains("could not acquire lock"), "{msg}");
    let err = Store::audit(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
}

#[test]
fn open_creates_a_missing_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b/data");
    let (store, report) = Store::open(&dir, StoreConfig::default()).unwrap();
    assert!(report.is_clean());
    assert!(dir.join("blocks").is_dir() && dir.join("tmp").is_dir() && dir.join("db").is_dir());
    assert_eq!(store.block_count(), 0);
}

#[test]
fn store_serves_as_a_block_store() {
    fn via_trait(s: &dyn BlockStore) {
        let data = block(5000, 9);
        let key = Id::of_block(&data);
        assert!(s.check_room(5000).is_ok());
        assert_eq!(s.put_verified(&key, &data).unwrap(), PutOutcome::Stored);
        assert!(s.contains(&key));
        assert_eq!(s.get(&key).unwrap(), Some(data));
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    via_trait(&store);
    store.flush().unwrap();
    assert_eq!(store.block_count(), 1);
}

#[test]
fn a_batch_indexes_each_block_once_and_a_key_twice_in_it_keeps_the_pin() {
    let tmp = tempfile::tempdir().unwrap();
    let inline_max = StoreConfig::default().inline_max;
    let (small, large, bad) = (block(100, 1), block(inline_max + 1, 2), block(100, 3));
    let (ks, kl) = (Id::of_block(&small), Id::of_block(&large));
    let item = |key: Id, data, origin, copies| write::PutItem {
        key,
        data,
        origin,
        copies,
    };
    {
        let store = open(tmp.path());
        let results = store.put_many(&[
            item(ks, &small, Origin::Replica, 3),
            item(kl, &large, Origin::Replica, 0),
            item(ks, &small, Origin::Pinned, 5),
            item(ks, &bad, Origin::Pinned, 0),
        ]);
        assert_eq!(results[0].as_ref().unwrap(), &PutOutcome::Stored);
        assert_eq!(results[1].as_ref().unwrap(), &PutOutcome::Stored);
        assert_eq!(results[2].as_ref().unwrap(), &PutOutcome::AlreadyHad);
        assert!(matches!(results[3], Err(StoreError::HashMismatch { .. })));
        assert_eq!(store.block_count(), 2);
        assert_eq!(store.bytes_stored(), (small.len() + large.len()) as u64);
    }
    // What the batch said is what a reopen finds.
    let store = open(tmp.path());
    assert_eq!(store.block_count(), 2);
    let record = store.record(&ks).unwrap().unwrap();
    assert_eq!(record.origin, Origin::Pinned);
    assert_eq!(record.copies, 5);
    assert_eq!(store.record(&kl).unwrap().unwrap().origin, Origin::Replica);
    assert_eq!(store.get(&ks).unwrap().as_deref(), Some(&small[..]));
    assert_eq!(store.get(&kl).unwrap().as_deref(), Some(&large[..]));
}
