//! The gateway's cache of resolved manifests: a root's name, size and chunk
//! list, kept after its first request so that the next ones for it (a video
//! player seeking sends one range request per seek) start on the chunks at
//! once, with no manifest lookup. Bounded by bytes, each entry charged for
//! its chunk list and head; the least recently used entries go first. What a root
//! names never changes and every block of its tree was verified against its
//! key, so an entry is never stale and nobody can poison it. Pure: no clock
//! and no I/O; recency is the order of use.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::files::{FileRef, Resolved};
use crate::manifest::Entry;

/// What an entry costs beside its chunk list and name: its key, its slot in
/// the map and in the recency order, the `Resolved` itself.
const ENTRY_OVERHEAD: u64 = 160;

/// The bytes `file` is charged in the cache.
pub fn charge(file: &Resolved) -> u64 {
    let chunks = file.chunks.len() as u64 * std::mem::size_of::<Entry>() as u64;
    let name = file.name.as_ref().map_or(0, |n| n.len() as u64);
    ENTRY_OVERHEAD + chunks + name + file.head.len() as u64
}

struct Slot {
    file: Arc<Resolved>,
    cost: u64,
    /// When it was last used, in uses of the cache.
    used: u64,
}

/// Resolved manifests by root, at most `capacity` bytes of them.
pub struct ManifestCache {
    capacity: u64,
    held: u64,
    slots: HashMap<FileRef, Slot>,
    /// Roots by last use, oldest first.
    order: BTreeMap<u64, FileRef>,
    uses: u64,
}

impl ManifestCache {
    /// An empty cache of at most `capacity` bytes (0: it keeps nothing).
    pub fn new(capacity: u64) -> ManifestCache {
        ManifestCache {
            capacity,
            held: 0,
            slots: HashMap::new(),
            order: BTreeMap::new(),
            uses: 0,
        }
    }

    /// The file `root` names, if cached; it becomes the most recently used.
    pub fn get(&mut self, root: &FileRef) -> Option<Arc<Resolved>> {
        self.uses += 1;
        let slot = self.slots.get_mut(root)?;
        self.order.remove(&slot.used);
        slot.used = self.uses;
        self.order.insert(slot.used, *root);
        Some(slot.file.clone())
    }

    /// Keeps `file` under `root`, making room by dropping the least recently
    /// used entries; a file charged more than the whole capacity is not kept.
    pub fn insert(&mut self, root: FileRef, file: Arc<Resolved>) {
        let cost = charge(&file);
        self.remove(&root);
        if cost > self.capacity {
            return;
        }
        while self.held + cost > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(slot) = self.slots.remove(&oldest) {
                self.held -= slot.cost;
            }
        }
        self.uses += 1;
        self.order.insert(self.uses, root);
        self.held += cost;
        self.slots.insert(
            root,
            Slot {
                file,
                cost,
                used: self.uses,
            },
        );
    }

    /// Drops `root`'s entry, if any.
    pub fn remove(&mut self, root: &FileRef) {
        if let Some(slot) = self.slots.remove(root) {
            self.order.remove(&slot.used);
            self.held -= slot.cost;
        }
    }

    /// The bytes charged for the entries held now.
    pub fn held_bytes(&self) -> u64 {
        self.held
    }

    /// The entries held now.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;

    /// A file of `chunks` 1-byte chunks, its root made from `seed`.
    fn file(seed: u8, chunks: usize) -> (FileRef, Arc<Resolved>) {
        let chunks: Vec<Entry> = (0..chunks)
            .map(|i| Entry::plain(Id::of_block(&[seed, i as u8, (i >> 8) as u8]), 1))
            .collect();
        let resolved = Resolved {
            name: Some(format!("f{seed}.bin")),
            size: chunks.len() as u64,
            chunk_size: 4096,
            chunks,
            stripes: false,
            head: Default::default(),
        };
        (FileRef::Plain(Id::of_block(&[seed])), Arc::new(resolved))
    }

    #[test]
    fn a_cached_file_comes_back_and_an_unknown_root_misses() {
        let mut c = ManifestCache::new(1 << 20);
        let (root, f) = file(1, 10);
        assert!(c.get(&root).is_none());
        c.insert(root, f.clone());
        let got = c.get(&root).expect("cached");
        assert_eq!(got.chunks, f.chunks);
        assert_eq!(got.name.as_deref(), Some("f1.bin"));
        assert!(c.get(&file(2, 1).0).is_none());
        assert_eq!(c.held_bytes(), charge(&f));
    }

    #[test]
    fn the_charge_grows_with_the_chunk_list() {
        let (_, small) = file(1, 1);
        let (_, big) = file(1, 1001);
        assert_eq!(
            charge(&big) - charge(&small),
            1000 * std::mem::size_of::<Entry>() as u64
        );
    }

    #[test]
    fn the_bytes_held_never_pass_the_capacity_and_the_least_recently_used_go_first() {
        let (a, fa) = file(1, 100);
        let (b, fb) = file(2, 100);
        let (d, fd) = file(3, 100);
        let each = charge(&fa);
        // Room for two.
        let mut c = ManifestCache::new(2 * each + each / 2);
        c.insert(a, fa);
        c.insert(b, fb);
        // `a` is used again, so `b` is now the least recently used.
        assert!(c.get(&a).is_some());
        c.insert(d, fd);
        assert!(c.held_bytes() <= 2 * each + each / 2);
        assert_eq!(c.len(), 2);
        assert!(c.get(&b).is_none(), "the least recently used went");
        assert!(c.get(&a).is_some());
        assert!(c.get(&d).is_some());
    }

    #[test]
    fn one_big_file_makes_room_by_dropping_several_small_ones() {
        let small: Vec<_> = (0..5).map(|i| file(i, 10)).collect();
        let (big, fbig) = file(100, 300);
        let mut c = ManifestCache::new(charge(&fbig) + charge(&small[0].1));
        for (root, f) in &small {
            c.insert(*root, f.clone());
        }
        assert_eq!(c.len(), 5);
        c.insert(big, fbig.clone());
        assert!(c.get(&big).is_some());
        assert!(c.held_bytes() <= charge(&fbig) + charge(&small[0].1));
        // Only the most recently used small one fits beside it.
        assert_eq!(c.len(), 2);
        assert!(c.get(&small[4].0).is_some());
    }

    #[test]
    fn a_file_larger_than_the_whole_cache_is_not_kept_and_evicts_nothing() {
        let (a, fa) = file(1, 10);
        let (big, fbig) = file(2, 1000);
        let mut c = ManifestCache::new(charge(&fa) * 2);
        c.insert(a, fa);
        c.insert(big, fbig);
        assert!(c.get(&big).is_none());
        assert!(c.get(&a).is_some(), "nothing was dropped for it");
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn a_zero_capacity_cache_keeps_nothing() {
        let mut c = ManifestCache::new(0);
        let (a, fa) = file(1, 1);
        c.insert(a, fa);
        assert!(c.is_empty());
        assert_eq!(c.held_bytes(), 0);
        assert!(c.get(&a).is_none());
    }

    #[test]
    fn inserting_a_root_again_replaces_it_and_charges_it_once() {
        let (a, fa) = file(1, 10);
        let mut c = ManifestCache::new(1 << 20);
        c.insert(a, fa.clone());
        c.insert(a, fa.clone());
        assert_eq!(c.len(), 1);
        assert_eq!(c.held_bytes(), charge(&fa));
        c.remove(&a);
        assert!(c.is_empty());
        assert_eq!(c.held_bytes(), 0);
    }

    #[test]
    fn many_uses_keep_the_order_and_the_accounts_consistent() {
        // A pseudo-random walk of inserts, gets and removes, checked against
        // the sum of what is held.
        let files: Vec<_> = (0..20)
            .map(|i| file(i, 1 + (i as usize * 37) % 90))
            .collect();
        let mut c = ManifestCache::new(charge(&files[0].1) * 6);
        let mut x = 12345u64;
        for _ in 0..5000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let (root, f) = &files[(x >> 33) as usize % files.len()];
            match (x >> 20) % 3 {
                0 => c.insert(*root, f.clone()),
                1 => {
                    c.get(root);
                }
                _ => c.remove(root),
            }
            let sum: u64 = c.slots.values().map(|s| s.cost).sum();
            assert_eq!(sum, c.held_bytes());
            assert!(c.held_bytes() <= c.capacity);
            assert_eq!(c.order.len(), c.slots.len());
        }
    }
}
