//! The in-memory block store behind the same [`BlockStore`] trait as the sled
//! store. It outlives a node's crash (it stands for the disk), and holds its
//! blocks in key order so that walking it is deterministic.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::config::Bug;
use crate::id::Id;
use crate::store::{BlockStore, PutOutcome, StoreError};

/// Blocks by key.
#[derive(Default)]
pub struct MemStore {
    blocks: Mutex<BTreeMap<Id, Arc<Vec<u8>>>>,
    /// Blocks to be kept on fewer nodes than K (shards), by key.
    copies: Mutex<BTreeMap<Id, u8>>,
    bug: Option<Bug>,
}

impl MemStore {
    /// An empty store, with `bug` injected if given.
    pub fn new(bug: Option<Bug>) -> MemStore {
        MemStore {
            blocks: Mutex::default(),
            copies: Mutex::default(),
            bug,
        }
    }

    fn map(&self) -> MutexGuard<'_, BTreeMap<Id, Arc<Vec<u8>>>> {
        self.blocks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores a block the caller made itself (the origin of a store), with
    /// no bug applied: the origin's copy is the reference.
    pub fn insert_own(&self, data: Vec<u8>) -> Id {
        let key = Id::of_block(&data);
        self.map().insert(key, Arc::new(data));
        key
    }

    /// [`MemStore::insert_own`] of a block to be kept on `copies` nodes (0: K).
    pub fn insert_own_with(&self, data: Vec<u8>, copies: u8) -> Id {
        let key = self.insert_own(data);
        let mut all = self.copies.lock().unwrap_or_else(|p| p.into_inner());
        match copies {
            0 => all.remove(&key),
            c => all.insert(key, c),
        };
        key
    }

    /// Every key held, in order.
    pub fn keys(&self) -> Vec<Id> {
        self.map().keys().copied().collect()
    }

    /// Every key held, in order, with the copies it is kept on (0: K).
    pub fn keys_with_copies(&self) -> Vec<(Id, u8)> {
        let copies = self.copies.lock().unwrap_or_else(|p| p.into_inner());
        self.map()
            .keys()
            .map(|k| (*k, copies.get(k).copied().unwrap_or(0)))
            .collect()
    }

    /// Bytes held under `keys` (those held).
    pub fn bytes_of(&self, keys: &[Id]) -> u64 {
        let map = self.map();
        keys.iter()
            .filter_map(|k| map.get(k))
            .map(|v| v.len() as u64)
            .sum()
    }

    /// Drops a block the caller put with [`MemStore::insert_own`].
    pub fn remove(&self, key: &Id) {
        self.map().remove(key);
        self.copies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// How many blocks are held.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys whose bytes do not hash to them (none, unless a bug let them in).
    pub fn corrupt_keys(&self) -> Vec<Id> {
        self.map()
            .iter()
            .filter(|(k, v)| Id::of_block(v) != **k)
            .map(|(k, _)| *k)
            .collect()
    }
}

impl BlockStore for MemStore {
    fn contains(&self, key: &Id) -> bool {
        self.map().contains_key(key)
    }

    fn get(&self, key: &Id) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map().get(key).map(|v| v.as_ref().clone()))
    }

    fn put_verified(&self, key: &Id, data: &[u8]) -> Result<PutOutcome, StoreError> {
        let actual = Id::of_block(data);
        if actual != *key && self.bug != Some(Bug::StoreSkipsHashCheck) {
            return Err(StoreError::HashMismatch { key: *key, actual });
        }
        let mut map = self.map();
        if map.contains_key(key) {
            return Ok(PutOutcome::AlreadyHad);
        }
        // The forgetful bug drops half the keys, decided by the key alone.
        if self.bug == Some(Bug::StoreForgets) && key.0[0] & 1 == 0 {
            return Ok(PutOutcome::Stored);
        }
        map.insert(*key, Arc::new(data.to_vec()));
        Ok(PutOutcome::Stored)
    }

    fn put_copies(&self, key: &Id, data: &[u8], copies: u8) -> Result<PutOutcome, StoreError> {
        let outcome = self.put_verified(key, data)?;
        if self.map().contains_key(key) {
            let mut all = self.copies.lock().unwrap_or_else(|p| p.into_inner());
            let now = match (outcome, all.get(key).copied()) {
                (PutOutcome::AlreadyHad, None) => 0,
                (PutOutcome::AlreadyHad, Some(c)) => {
                    crate::store::BlockRecord::merge_copies(c, copies)
                }
                _ => copies,
            };
            match now {
                0 => all.remove(key),
                c => all.insert(*key, c),
            };
        }
        Ok(outcome)
    }

    fn drop_replica(&self, key: &Id) -> Result<bool, StoreError> {
        self.copies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        Ok(self.map().remove(key).is_some())
    }

    fn check_room(&self, _size: u64) -> Result<(), StoreError> {
        Ok(())
    }

    fn puts_may_block(&self) -> bool {
        false
    }
}

impl MemStore {
    /// Whether `key` is held (without the trait in scope).
    pub fn contains_key(&self, key: &Id) -> bool {
        self.map().contains_key(key)
    }
}
