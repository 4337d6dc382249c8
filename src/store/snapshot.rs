//! The routing snapshot: the contacts a node knew when it last saved, so a restart
//! can rejoin without a bootstrap node.
//!
//! Stored as one value, key `contacts` in the `routing` tree, so replacing it is a
//! single atomic insert. The value is a JSON array of `{"id": "<64 hex>", "addr":
//! "<ip:port>"}`. JSON because the snapshot is small, written rarely, and readable
//! with any sled dump when debugging a node that cannot rejoin. Entries that do not
//! decode are skipped with a warning: the snapshot is only a hint, and losing one
//! contact is better than refusing to start.

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Store, StoreError};
use crate::contact::Contact;
use crate::id::Id;

/// Key of the snapshot inside the `routing` tree.
const SNAPSHOT_KEY: &[u8] = b"contacts";

#[derive(Serialize, Deserialize)]
struct SavedContact {
    id: Id,
    addr: SocketAddr,
}

/// Replaces the snapshot with `contacts` and flushes it.
pub(crate) fn save(
    db: &sled::Db,
    routing: &sled::Tree,
    db_path: &Path,
    contacts: &[Contact],
) -> Result<(), StoreError> {
    let saved: Vec<SavedContact> = contacts
        .iter()
        .map(|c| SavedContact {
            id: c.id,
            addr: c.addr,
        })
        .collect();
    let json = serde_json::to_vec(&saved).map_err(|e| {
        StoreError::corrupt(db_path, format!("cannot encode routing snapshot: {e}"))
    })?;
    routing
        .insert(SNAPSHOT_KEY, json)
        .map_err(|e| StoreError::db(db_path, e))?;
    db.flush().map_err(|e| StoreError::db(db_path, e))?;
    Ok(())
}

/// The saved contacts, without the ones that do not decode; empty if none was saved.
pub(crate) fn load(routing: &sled::Tree, db_path: &Path) -> Result<Vec<Contact>, StoreError> {
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
        let inner = &*self.inner;
        save(&inner.db, &inner.trees.routing, &inner.db_path, contacts)
    }

    /// The saved routing snapshot, skipping entries that do not decode.
    pub fn load_routing(&self) -> Result<Vec<Contact>, StoreError> {
        load(&self.inner.trees.routing, &self.inner.db_path)
    }
}
