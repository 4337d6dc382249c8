//! SIGKILL during migration 3 (small blocks from sled's `inline` tree into
//! segment files) and migration 4 (block files into segment files): a data
//! dir laid out as dhtfs wrote it before each (schema versions 2 and 3) is
//! opened by the real binary, which is killed while the migration runs and
//! started again until it is done. Every block the old dir held must then
//! read back whole, and the dir audit clean.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::process::{node_command, Proc};
use dhtfs::id::Id;
use dhtfs::store::{BlockRecord, Origin, Store, StoreConfig};

const BLOCKS: usize = 20_000;
const LEN: usize = 4096;

fn data(i: usize) -> Vec<u8> {
    common::data::random_bytes(LEN, i as u64)
}

/// A version-2 data dir holding `BLOCKS` small blocks in `inline`, written
/// with sled directly in the old layout: a format-1 index entry (format,
/// location 0, size, stored_at), a record, the bytes.
fn old_dir(dir: &Path) {
    let db = sled::Config::new().path(dir.join("db")).open().unwrap();
    let meta = db.open_tree("meta").unwrap();
    meta.insert("node_id", &[0x42u8; 32][..]).unwrap();
    meta.insert("schema_version", &2u32.to_be_bytes()[..])
        .unwrap();
    let index = db.open_tree("index").unwrap();
    let inline = db.open_tree("inline").unwrap();
    let records = db.open_tree("records").unwrap();
    for i in 0..BLOCKS {
        let bytes = data(i);
        let key = Id::of_block(&bytes);
        let mut entry = vec![1u8, 0];
        entry.extend_from_slice(&(LEN as u64).to_be_bytes());
        entry.extend_from_slice(&1_700_000_000u64.to_be_bytes());
        index.insert(key.0, entry).unwrap();
        let record = BlockRecord::new(Origin::Pinned, 1_700_000_000).encode();
        records.insert(key.0, &record[..]).unwrap();
        inline.insert(key.0, bytes).unwrap();
    }
    db.flush().unwrap();
}

/// Values left in `inline`, read with the node stopped.
fn inline_left(dir: &Path) -> usize {
    let db = common::retry_while_locked(|| sled::Config::new().path(dir.join("db")).open());
    db.open_tree("inline").unwrap().len()
}

/// A version-3 data dir holding `FILE_BLOCKS` blocks as files under
/// `blocks/`, written directly in that layout: a format-1 index entry
/// (format, location 1, size, stored_at), a record, the file.
fn old_dir_with_files(dir: &Path) {
    let db = sled::Config::new().path(dir.join("db")).open().unwrap();
    let meta = db.open_tree("meta").unwrap();
    meta.insert("node_id", &[0x43u8; 32][..]).unwrap();
    meta.insert("schema_version", &3u32.to_be_bytes()[..])
        .unwrap();
    let index = db.open_tree("index").unwrap();
    let records = db.open_tree("records").unwrap();
    for i in 0..FILE_BLOCKS {
        let bytes = file_data(i);
        let key = Id::of_block(&bytes);
        let hex = key.to_hex();
        let sub = dir.join("blocks").join(&hex[0..2]).join(&hex[2..4]);
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(&hex), &bytes).unwrap();
        let mut entry = vec![1u8, 1];
        entry.extend_from_slice(&(FILE_LEN as u64).to_be_bytes());
        entry.extend_from_slice(&1_700_000_000u64.to_be_bytes());
        index.insert(key.0, entry).unwrap();
        let record = BlockRecord::new(Origin::Pinned, 1_700_000_000).encode();
        records.insert(key.0, &record[..]).unwrap();
    }
    db.flush().unwrap();
}

const FILE_BLOCKS: usize = 4000;
const FILE_LEN: usize = 16 << 10;

fn file_data(i: usize) -> Vec<u8> {
    common::data::random_bytes(FILE_LEN, 1_000_000 + i as u64)
}

/// Files left under `blocks/`.
fn files_left(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.join("blocks")];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                n += 1;
            }
        }
    }
    n
}

/// Starts the node on `dir` and SIGKILLs it after a delay, again and again,
/// until a start gets through a migration that an earlier kill stopped
/// part-way; `left` counts what the migration has still to move, `fresh`
/// lays out the old dir again. A kill that came before any batch was
/// durable waits longer next time; a start that got through it all before
/// any kill landed part-way (a fast build) starts over on a new old dir,
/// killed sooner. Returns the kills, and those that landed part-way.
fn kill_until_migrated(
    dir: &Path,
    total: usize,
    left: impl Fn(&Path) -> usize,
    fresh: impl Fn(&Path),
) -> (usize, usize) {
    let mut delay = Duration::from_millis(800);
    let (mut kills, mut mid_way) = (0, 0);
    loop {
        let mut before = left(dir);
        if before == 0 {
            if mid_way > 0 {
                return (kills, mid_way);
            }
            std::fs::remove_dir_all(dir).unwrap();
            fresh(dir);
            before = total;
            delay /= 2;
        }
        assert!(
            kills < 40,
            "no kill landed part-way: {kills} kills, the last {delay:?} after the start"
        );
        let mut node = Proc::spawn(
            node_command(dir, "127.0.0.1:0".parse().unwrap(), None)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            "dhtfs node",
        );
        std::thread::sleep(delay);
        node.signal(libc::SIGKILL);
        node.wait(Duration::from_secs(10), "the killed node");
        kills += 1;
        let after = left(dir);
        eprintln!("kill {kills} after {delay:?}: {before} -> {after} left to move");
        if after == before {
            delay = delay * 3 / 2;
        } else if after > 0 {
            mid_way += 1;
        }
    }
}

/// Opens the migrated `dir` and reads back every one of its `total`
/// blocks (block `i` is `data(i)`, pinned), then closes it.
fn all_read_back(dir: &Path, total: usize, data: fn(usize) -> Vec<u8>) {
    let (store, _) = common::retry_while_locked(|| Store::open(dir, StoreConfig::default()));
    assert_eq!(store.schema_version(), dhtfs::store::SCHEMA_VERSION);
    assert_eq!(store.block_count(), total as u64);
    for i in 0..total {
        let bytes = data(i);
        let key = Id::of_block(&bytes);
        assert_eq!(store.get(&key).unwrap(), Some(bytes), "block {i}");
        assert_eq!(store.meta(&key).unwrap().unwrap().origin, Origin::Pinned);
    }
    store.close().unwrap();
}

#[test]
fn every_block_survives_sigkill_during_migration_3() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    old_dir(&dir);
    let (kills, mid_way) = kill_until_migrated(&dir, BLOCKS, inline_left, old_dir);

    all_read_back(&dir, BLOCKS, data);
    let audit = common::retry_while_locked(|| Store::audit(&dir));
    assert!(audit.is_clean(), "{audit:?}");
    eprintln!("{kills} kills, {mid_way} part-way through; {BLOCKS} blocks read back whole");
}

#[test]
fn every_block_survives_sigkill_during_migration_4() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    old_dir_with_files(&dir);
    let (kills, mid_way) = kill_until_migrated(&dir, FILE_BLOCKS, files_left, old_dir_with_files);

    all_read_back(&dir, FILE_BLOCKS, file_data);
    assert_eq!(files_left(&dir), 0, "every block file moved");
    let audit = common::retry_while_locked(|| Store::audit(&dir));
    assert!(audit.is_clean(), "{audit:?}");
    eprintln!("{kills} kills, {mid_way} part-way through; {FILE_BLOCKS} block files moved and read back whole");
}
