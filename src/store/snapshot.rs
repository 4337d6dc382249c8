//! The routing snapshot: the contacts a node knew, so a restart can rejoin
//! without a bootstrap node.
//!
//! One entry per contact in the `routing` tree: key `peer/` and the contact's
//! 32-byte id, value its address as text (`ip:port`). A change to the table
//! touches only the entries that changed, so recording every change as it
//! happens costs a few hundred bytes, not the whole table: [`Store::note_routing`]
//! applies it without an fsync, and the next group commit of blocks (or
//! sled's own flush, every half second) makes it durable with them;
//! [`Store::save_routing`] flushes at once. Entries that do not decode are
//! skipped with a warning: the snapshot is only a hint, and losing one
//! contact is better than refusing to start.
//!
//! Nodes before this layout kept one JSON array under the key `contacts`
//! (`[{"id": "<64 hex>", "addr": "<ip:port>"}]`); it is read when no entry
//! exists, and the first save replaces it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Store, StoreError};
use crate::contact::Contact;
use crate::id::Id;

/// Key of the earlier layout's snapshot inside the `routing` tree.
const SNAPSHOT_KEY: &[u8] = b"contacts";
/// Prefix of one contact's entry.
const PEER_PREFIX: &[u8] = b"peer/";

#[derive(Serialize, Deserialize)]
struct SavedContact {
    id: Id,
    addr: SocketAddr,
}

fn peer_key(id: &Id) -> Vec<u8> {
    let mut key = PEER_PREFIX.to_vec();
    key.extend_from_slice(&id.0);
    key
}

/// Makes the saved contacts `contacts`, touching only the entries that
/// differ, in one atomic batch; flushes if `durable`.
pub(crate) fn save(
    db: &sled::Db,
    routing: &sled::Tree,
    db_path: &Path,
    contacts: &[Contact],
    durable: bool,
) -> Result<(), StoreError> {
    let db_err = |e| StoreError::db(db_path, e);
    let mut stored: HashMap<Vec<u8>, sled::IVec> = HashMap::new();
    for item in routing.scan_prefix(PEER_PREFIX) {
        let (k, v) = item.map_err(db_err)?;
        stored.insert(k.to_vec(), v);
    }
    let mut batch = sled::Batch::default();
    let mut changed = false;
    for c in contacts {
        let key = peer_key(&c.id);
        let addr = c.addr.to_string();
        match stored.remove(&key) {
            Some(v) if v.as_ref() == addr.as_bytes() => {}
            _ => {
                batch.insert(key, addr.as_bytes());
                changed = true;
            }
        }
    }
    for gone in stored.into_keys() {
        batch.remove(gone);
        changed = true;
    }
    if routing.contains_key(SNAPSHOT_KEY).map_err(db_err)? {
        batch.remove(SNAPSHOT_KEY);
        changed = true;
    }
    if changed {
        routing.apply_batch(batch).map_err(db_err)?;
    }
    if durable {
        db.flush().map_err(db_err)?;
    }
    Ok(())
}

/// The saved contacts, without the ones that do not decode; empty if none was saved.
pub(crate) fn load(routing: &sled::Tree, db_path: &Path) -> Result<Vec<Contact>, StoreError> {
    let db_err = |e| StoreError::db(db_path, e);
    let (mut contacts, mut skipped) = (Vec::new(), 0usize);
    for item in routing.scan_prefix(PEER_PREFIX) {
        let (k, v) = item.map_err(db_err)?;
        let id = <[u8; 32]>::try_from(&k[PEER_PREFIX.len()..]).ok().map(Id);
        let addr = std::str::from_utf8(&v)
            .ok()
            .and_then(|a| a.parse::<SocketAddr>().ok());
        match (id, addr) {
            (Some(id), Some(addr)) => contacts.push(Contact::new(id, addr)),
            _ => skipped += 1,
        }
    }
    if skipped > 0 {
        tracing::warn!(
            skipped,
            "routing snapshot had entries that do not decode; skipped them"
        );
    }
    if !contacts.is_empty() || skipped > 0 {
        return Ok(contacts);
    }
    load_earlier(routing, db_path)
}

/// The earlier layout's snapshot: one JSON array.
fn load_earlier(routing: &sled::Tree, db_path: &Path) -> Result<Vec<Contact>, StoreError> {
    let Some(raw) = routing
        .get(SNAPSHOT_KEY)
        .map_err(|e| StoreError::db(db_path, e))?
    else {
        return Ok(Vec::new());
    };
    let items: Vec<serde_json::Value> = match serde_json::from_slice(&raw) {
        Ok(items) => items,
        Err(e) => {
            tracing::warn!(path = %db_path.display(), error = %e,
                "routing snapshot is not a JSON array; starting with no saved contacts");
            return Ok(Vec::new());
        }
    };
    let total = items.len();
    let contacts: Vec<Contact> = items
        .into_iter()
        .filter_map(|v| serde_json::from_value::<SavedContact>(v).ok())
        .map(|s| Contact::new(s.id, s.addr))
        .collect();
    if contacts.len() < total {
        tracing::warn!(
            skipped = total - contacts.len(),
            "routing snapshot had entries that do not decode; skipped them"
        );
    }
    Ok(contacts)
}

/// Writes a raw snapshot value, for tests that need a damaged one.
#[cfg(test)]
pub(crate) fn put_raw(routing: &sled::Tree, value: &[u8]) {
    routing.insert(SNAPSHOT_KEY, value).unwrap();
}

impl Store {
    /// Replaces the routing snapshot with `contacts`, durably.
    pub fn save_routing(&self, contacts: &[Contact]) -> Result<(), StoreError> {
        self.write_routing(contacts, true)
    }

    /// Records `contacts` as the routing snapshot without an fsync of its
    /// own: the next flush (a group commit of blocks, or sled's own every
    /// half second) makes it durable, with the blocks stored after it.
    pub fn note_routing(&self, contacts: &[Contact]) -> Result<(), StoreError> {
        self.write_routing(contacts, false)
    }

    fn write_routing(&self, contacts: &[Contact], durable: bool) -> Result<(), StoreError> {
        let inner = &*self.inner;
        let (db, routing, path) = (&inner.db, &inner.trees.routing, &inner.db_path);
        save(db, routing, path, contacts, durable)
    }

    /// The saved routing snapshot, skipping entries that do not decode.
    pub fn load_routing(&self) -> Result<Vec<Contact>, StoreError> {
        load(&self.inner.trees.routing, &self.inner.db_path)
    }
}
