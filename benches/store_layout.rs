//! Why large blocks are files: writes N random 1 MiB blocks (env
//! `DHTFS_BENCH_BLOCKS`, default 512) with two layouts and prints write rate and
//! disk use, then deletes half, rewrites that half with new blocks, and prints
//! them again.
//!
//! - `sled values`: raw sled 0.34.7, each block a value in one tree, one flush at
//!   the end of each phase (cheaper than the store's per-put durability).
//! - `sled, flush/put`: the same, flushed after every insert and remove, so as
//!   durable per put as the store.
//! - `Store`: `dhtfs::store::Store`, files plus a sled index, durable per put.
//!
//! Disk use is the real allocation (`st_blocks * 512`) of every file and directory
//! under the layout's dir, divided by the bytes of the blocks live at that moment.
//! Only the put/insert/flush calls are timed, so making random data does not count.
//! Set `DHTFS_BENCH_DIR` to measure on a disk other than the temp dir's.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use dhtfs::id::Id;
use dhtfs::store::{Store, StoreConfig};
use rand::RngCore;

const MIB: usize = 1024 * 1024;

/// Figures for one layout.
struct Row {
    name: &'static str,
    write_mib_s: f64,
    ratio_after_write: f64,
    rewrite_mib_s: f64,
    ratio_after_rewrite: f64,
}

/// A layout under test: put a block, delete one, make everything durable.
trait Layout {
    fn put(&mut self, key: &Id, data: &[u8]);
    fn delete(&mut self, key: &Id);
    fn flush(&mut self);
}

struct SledValues {
    db: sled::Db,
    tree: sled::Tree,
    flush_each: bool,
}

impl Layout for SledValues {
    fn put(&mut self, key: &Id, data: &[u8]) {
        self.tree.insert(key.0, data).expect("sled insert");
        if self.flush_each {
            self.flush();
        }
    }
    fn delete(&mut self, key: &Id) {
        self.tree.remove(key.0).expect("sled remove");
        if self.flush_each {
            self.flush();
        }
    }
    fn flush(&mut self) {
        self.db.flush().expect("sled flush");
    }
}

impl Layout for Store {
    fn put(&mut self, key: &Id, data: &[u8]) {
        self.put_verified(key, data).expect("store put");
    }
    fn delete(&mut self, key: &Id) {
        Store::delete(self, key).expect("store delete");
    }
    fn flush(&mut self) {
        Store::flush(self).expect("store flush");
    }
}

fn random_block() -> Vec<u8> {
    let mut data = vec![0u8; MIB];
    rand::thread_rng().fill_bytes(&mut data);
    data
}

/// Writes `count` new random blocks; returns their keys and the time spent in the layout.
fn write_blocks(layout: &mut dyn Layout, count: usize) -> (Vec<Id>, Duration) {
    let mut keys = Vec::with_capacity(count);
    let mut spent = Duration::ZERO;
    for _ in 0..count {
        let data = random_block();
        let started = Instant::now();
        // Both layouts pay for the hash: the store needs it to verify, sled to name.
        let key = Id::of_block(&data);
        layout.put(&key, &data);
        spent += started.elapsed();
        keys.push(key);
    }
    let started = Instant::now();
    layout.flush();
    (keys, spent + started.elapsed())
}

/// Real allocation of everything under `path`, in bytes.
fn disk_bytes(path: &Path) -> io::Result<u64> {
    let meta = fs::symlink_metadata(path)?;
    let mut total = meta.blocks() * 512;
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            total += disk_bytes(&entry?.path())?;
        }
    }
    Ok(total)
}

fn mib_per_s(blocks: usize, spent: Duration) -> f64 {
    blocks as f64 / spent.as_secs_f64().max(1e-9)
}

fn run(name: &'static str, dir: &Path, layout: &mut dyn Layout, n: usize) -> Row {
    let stored = (n * MIB) as f64;
    let (keys, spent) = write_blocks(layout, n);
    let write_mib_s = mib_per_s(n, spent);
    let ratio_after_write = disk_bytes(dir).expect("walk dir") as f64 / stored;

    let half = n / 2;
    let started = Instant::now();
    for key in &keys[..half] {
        layout.delete(key);
    }
    let delete_time = started.elapsed();
    let (_, rewrite) = write_blocks(layout, half);
    let rewrite_mib_s = mib_per_s(half, rewrite + delete_time);
    let ratio_after_rewrite = disk_bytes(dir).expect("walk dir") as f64 / stored;
    Row {
        name,
        write_mib_s,
        ratio_after_write,
        rewrite_mib_s,
        ratio_after_rewrite,
    }
}

fn main() {
    let n: usize = std::env::var("DHTFS_BENCH_BLOCKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let base = std::env::var_os("DHTFS_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let cache_bytes = StoreConfig::default().cache_bytes;
    println!(
        "{n} random 1 MiB blocks; delete half, rewrite half; dir {}",
        base.display()
    );

    let mut rows = Vec::new();
    for (name, flush_each) in [("sled values", false), ("sled, flush/put", true)] {
        let tmp = tempfile::tempdir_in(&base).expect("temp dir");
        let db = sled::Config::new()
            .path(tmp.path())
            .cache_capacity(cache_bytes)
            .open()
            .expect("open sled");
        let tree = db.open_tree("blocks").expect("open tree");
        let mut layout = SledValues {
            db,
            tree,
            flush_each,
        };
        rows.push(run(name, tmp.path(), &mut layout, n));
    }
    {
        let tmp = tempfile::tempdir_in(&base).expect("temp dir");
        let (mut store, _) = Store::open(tmp.path(), StoreConfig::default()).expect("open store");
        rows.push(run("Store (files)", tmp.path(), &mut store, n));
    }

    println!();
    println!(
        "{:<16} {:>12} {:>12} {:>14} {:>14}",
        "layout", "write MiB/s", "disk/stored", "rewrite MiB/s", "disk/stored'"
    );
    for r in &rows {
        println!(
            "{:<16} {:>12.0} {:>11.2}x {:>14.0} {:>13.2}x",
            r.name, r.write_mib_s, r.ratio_after_write, r.rewrite_mib_s, r.ratio_after_rewrite
        );
    }
    println!();
    println!(
        "disk/stored' is after deleting half and rewriting it; rewrite MiB/s counts the deletes."
    );
}
