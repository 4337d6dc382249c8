//! The pinned roots: `pins` tree, key = the root's 32 bytes, value = JSON of
//! [`PinInfo`]. JSON because pins are few, written rarely and read by people
//! debugging a node. The blocks of a pinned file carry the pin themselves (their
//! record's origin); this list is what Unpin and ListPins start from.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::id::Id;

/// Tree of pinned roots.
pub(crate) const PINS_TREE: &str = "pins";

/// What a pin covers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinInfo {
    /// The file's name from its manifest, if it has one.
    #[serde(default)]
    pub name: Option<String>,
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
