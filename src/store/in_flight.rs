//! Keys whose put has begun but is not yet durable. While a key is here the
//! store does not claim to hold it, so nobody is told "saved" (or "I have it")
//! on the strength of an index entry that a crash or a failed flush could
//! still take back.

use std::collections::HashSet;
use std::sync::Mutex;

use super::lock;
use crate::id::Id;

/// The set of keys being put.
#[derive(Default)]
pub(crate) struct InFlight {
    keys: Mutex<HashSet<Id>>,
}

/// Marks one key in flight until dropped.
pub(crate) struct Marked<'a> {
    set: &'a InFlight,
    key: Id,
}

impl InFlight {
    /// Marks `key` in flight; call before its index entry becomes visible.
    pub fn mark(&self, key: Id) -> Marked<'_> {
        lock(&self.keys).insert(key);
        Marked { set: self, key }
    }

    /// Runs `held` (a look at the index) unless `key` is in flight, in which
    /// case the key counts as not held. Run under the set's lock, so a put
    /// cannot mark the key, insert its entry and unmark it around the look.
    pub fn durable(&self, key: &Id, held: impl FnOnce() -> bool) -> bool {
        let keys = lock(&self.keys);
        !keys.contains(key) && held()
    }
}

impl Drop for Marked<'_> {
    fn drop(&mut self) {
        lock(&self.set.keys).remove(&self.key);
    }
}
