//! A data dir whose segment files are mostly dead, for the compaction
//! tests: `blocks` blocks of 4 KiB in 1 MiB segments (many sealed ones),
//! three of every four then deleted.

use std::path::Path;

use dhtfs::id::Id;
use dhtfs::store::{Origin, Store, StoreConfig};

/// Each block's length.
pub const LEN: usize = 4096;

/// A set of blocks, told apart from other tests' by `seed`.
#[derive(Clone, Copy, Debug)]
pub struct MostlyDead {
    pub blocks: usize,
    pub seed: u64,
}

impl MostlyDead {
    /// Block `i`'s bytes.
    pub fn data(&self, i: usize) -> Vec<u8> {
        super::data::random_bytes(LEN, self.seed + i as u64)
    }

    /// Whether block `i` is kept (one in four).
    pub fn kept(i: usize) -> bool {
        i.is_multiple_of(4)
    }

    /// The indices of the blocks kept.
    pub fn kept_ones(&self) -> impl Iterator<Item = usize> {
        (0..self.blocks).filter(|i| Self::kept(*i))
    }

    /// Writes the blocks into a store at `dir` (pinned), deletes three in
    /// four, and closes it.
    pub fn write(&self, dir: &Path) {
        let cfg = StoreConfig {
            segment_bytes: 1 << 20,
            ..StoreConfig::default()
        };
        let (store, _) = Store::open(dir, cfg).unwrap();
        for i in 0..self.blocks {
            let d = self.data(i);
            store.put_as(&Id::of_block(&d), &d, Origin::Pinned).unwrap();
        }
        for i in (0..self.blocks).filter(|i| !Self::kept(*i)) {
            assert!(store.delete(&Id::of_block(&self.data(i))).unwrap());
        }
        store.close().unwrap();
    }
}

/// The segment files in data dir `dir`.
pub fn segment_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("segments"))
        .map(|d| d.count())
        .unwrap_or(0)
}
