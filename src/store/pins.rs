//! The pinned roots: `pins` tree, key = the root's 32 bytes, value = JSON of
//! [`PinInfo`]. JSON because pins are few, written rarely and read by people
//! debugging a node. The blocks of a pinned file carry the pin themselves (their
//! record's origin); this list is what Unpin and ListPins start from.
//!
//! A sealed file's manifests cannot be read without its capability, which a
//! pinning node does not keep (it stores only ciphertext), so the blocks of
//! a sealed pin are listed in `pin_blocks`: key = root ++ block, no value.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::id::Id;

/// Tree of pinned roots.
pub(crate) const PINS_TREE: &str = "pins";
/// Tree of the blocks of sealed pins.
pub(crate) const PIN_BLOCKS_TREE: &str = "pin_blocks";

/// What a pin covers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinInfo {
    /// The file's name from its manifest, if it has one (never kept for a
    /// sealed file: its name is as private as its bytes).
    #[serde(default)]
    pub name: Option<String>,
    /// A sealed file, pinned by capability.
    #[serde(default)]
    pub sealed: bool,
    /// The file's size.
    pub size: u64,
    /// Blocks pinned: manifest blocks and distinct chunks.
    pub blocks: u64,
    /// Their bytes.
    pub bytes: u64,
    /// When the pin completed, unix seconds.
    pub pinned_at: u64,
}

pub(super) fn add(
    pins: &sled::Tree,
    db_path: &Path,
    root: &Id,
    info: &PinInfo,
) -> Result<(), StoreError> {
    let json = serde_json::to_vec(info)
        .map_err(|e| StoreError::corrupt(db_path, format!("cannot encode pin: {e}")))?;
    pins.insert(root.0, json)
        .map_err(|e| StoreError::db(db_path, e))?;
    Ok(())
}

pub(super) fn list(pins: &sled::Tree, db_path: &Path) -> Result<Vec<(Id, PinInfo)>, StoreError> {
    let mut out = Vec::new();
    for item in pins.iter() {
        let (key, value) = item.map_err(|e| StoreError::db(db_path, e))?;
        let id = <[u8; 32]>::try_from(key.as_ref()).ok().map(Id);
        let info = serde_json::from_slice::<PinInfo>(&value).ok();
        match (id, info) {
            (Some(id), Some(info)) => out.push((id, info)),
            _ => tracing::warn!(key = %hex::encode(&key), "a pin entry does not decode; skipped"),
        }
    }
    Ok(out)
}

pub(super) fn add_blocks(
    tree: &sled::Tree,
    db_path: &Path,
    root: &Id,
    blocks: &[Id],
) -> Result<(), StoreError> {
    let mut batch = sled::Batch::default();
    for block in blocks {
        let mut key = [0u8; 64];
        key[..32].copy_from_slice(&root.0);
        key[32..].copy_from_slice(&block.0);
        batch.insert(&key[..], &[][..]);
    }
    tree.apply_batch(batch)
        .map_err(|e| StoreError::db(db_path, e))
}

pub(super) fn blocks(tree: &sled::Tree, db_path: &Path, root: &Id) -> Result<Vec<Id>, StoreError> {
    let mut out = Vec::new();
    for item in tree.scan_prefix(root.0) {
        let (key, _) = item.map_err(|e| StoreError::db(db_path, e))?;
        if let Ok(id) = <[u8; 32]>::try_from(&key[32..]) {
            out.push(Id(id));
        }
    }
    Ok(out)
}

pub(super) fn remove_blocks(
    tree: &sled::Tree,
    db_path: &Path,
    root: &Id,
) -> Result<(), StoreError> {
    let mut batch = sled::Batch::default();
    for item in tree.scan_prefix(root.0) {
        let (key, _) = item.map_err(|e| StoreError::db(db_path, e))?;
        batch.remove(key);
    }
    tree.apply_batch(batch)
        .map_err(|e| StoreError::db(db_path, e))
}
