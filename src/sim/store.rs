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
    bug: Option<Bug>,
}

impl MemStore {
    /// An empty store, with `bug` injected if given.
    pub fn new(bug: Option<Bug>) -> MemStore {
        MemStore {
            blocks: Mutex::default(),
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

    /// Every key held, in order.
    pub fn keys(&self) -> Vec<Id> {
        self.map().keys().copied().collect()
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
