//! The sled trees the store keeps, and the on-disk layout of an index entry.
//!
//! An index entry is a fixed 18-byte record, not JSON, because it is read on every
//! `get`/`contains` and walked in full on every open:
//!
//! | bytes   | field                                           |
//! |---------|-------------------------------------------------|
//! | 0       | record format, always 1                         |
//! | 1       | location: 0 = `inline` tree, 1 = file in blocks/ |
//! | 2..10   | size in bytes, u64 big-endian                   |
//! | 10..18  | stored_at, unix seconds, u64 big-endian         |
//!
//! Anything else (other length, format or location byte) is corrupt.

use std::path::Path;

use super::StoreError;

/// Tree holding `node_id` and `schema_version`.
pub(crate) const META_TREE: &str = "meta";
/// Tree mapping a 32-byte key to its encoded [`IndexEntry`].
pub(crate) const INDEX_TREE: &str = "index";
/// Tree mapping a 32-byte key to the bytes of a small block.
pub(crate) const INLINE_TREE: &str = "inline";
/// Tree holding the routing snapshot.
pub(crate) const ROUTING_TREE: &str = "routing";

/// Meta key of the node id: 32 raw bytes.
pub(crate) const NODE_ID_KEY: &[u8] = b"node_id";
/// Meta key of the schema version: u32 big-endian.
pub(crate) const SCHEMA_VERSION_KEY: &[u8] = b"schema_version";

const FORMAT: u8 = 1;
const ENCODED_LEN: usize = 18;

/// Where a block's bytes live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Location {
    /// In the `inline` tree under the same key.
    Inline,
    /// In `blocks/ab/cd/<hex>`.
    File,
}

/// What the index knows about one stored block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    /// Length of the block in bytes.
    pub size: u64,
    /// Where its bytes are.
    pub location: Location,
    /// When it was stored, unix seconds.
    pub stored_at: u64,
}

impl IndexEntry {
    /// The fixed 18-byte record described in the module doc.
    pub fn encode(&self) -> [u8; ENCODED_LEN] {
        let mut out = [0u8; ENCODED_LEN];
        out[0] = FORMAT;
        out[1] = match self.location {
            Location::Inline => 0,
            Location::File => 1,
        };
        out[2..10].copy_from_slice(&self.size.to_be_bytes());
        out[10..18].copy_from_slice(&self.stored_at.to_be_bytes());
        out
    }

    /// Parses a record; `None` for anything [`IndexEntry::encode`] would not write.
    pub fn decode(bytes: &[u8]) -> Option<IndexEntry> {
        let bytes: &[u8; ENCODED_LEN] = bytes.try_into().ok()?;
        if bytes[0] != FORMAT {
            return None;
        }
        let location = match bytes[1] {
            0 => Location::Inline,
            1 => Location::File,
            _ => return None,
        };
        let mut size = [0u8; 8];
        size.copy_from_slice(&bytes[2..10]);
        let mut stored_at = [0u8; 8];
        stored_at.copy_from_slice(&bytes[10..18]);
        Some(IndexEntry {
            size: u64::from_be_bytes(size),
            location,
            stored_at: u64::from_be_bytes(stored_at),
        })
    }
}

/// The open sled trees, cheap to clone (each is an `Arc` inside).
#[derive(Clone)]
pub(crate) struct Trees {
    pub meta: sled::Tree,
    pub index: sled::Tree,
    pub inline: sled::Tree,
    pub routing: sled::Tree,
    /// Block records (`records.rs`), from schema version 2.
    pub records: sled::Tree,
    /// Pinned roots (`pins.rs`); an absent or empty tree is no pins.
    pub pins: sled::Tree,
    /// The blocks of each sealed pin, root then block (`pins.rs`).
    pub pin_blocks: sled::Tree,
    /// Where the upkeep workers stand (`progress.rs`).
    pub upkeep: sled::Tree,
}

impl Trees {
    /// Opens (creating if absent) the trees of a store whose sled dir is `db_path`.
    pub fn open(db: &sled::Db, db_path: &Path) -> Result<Trees, StoreError> {
        let tree = |name: &str| db.open_tree(name).map_err(|e| StoreError::db(db_path, e));
        Ok(Trees {
            meta: tree(META_TREE)?,
            index: tree(INDEX_TREE)?,
            inline: tree(INLINE_TREE)?,
            routing: tree(ROUTING_TREE)?,
            records: tree(super::records::RECORDS_TREE)?,
            pins: tree(super::pins::PINS_TREE)?,
            pin_blocks: tree(super::pins::PIN_BLOCKS_TREE)?,
            upkeep: tree(super::progress::UPKEEP_TREE)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trips() {
        for location in [Location::Inline, Location::File] {
            let entry = IndexEntry {
                size: 0x0102_0304_0506_0708,
                location,
                stored_at: 1_700_000_000,
            };
            assert_eq!(IndexEntry::decode(&entry.encode()), Some(entry));
        }
    }

    #[test]
    fn entry_layout_is_fixed() {
        let entry = IndexEntry {
            size: 5,
            location: Location::File,
            stored_at: 7,
        };
        let mut want = vec![1u8, 1];
        want.extend_from_slice(&5u64.to_be_bytes());
        want.extend_from_slice(&7u64.to_be_bytes());
        assert_eq!(entry.encode().to_vec(), want);
    }

    #[test]
    fn garbage_entries_are_refused() {
        let good = IndexEntry {
            size: 1,
            location: Location::Inline,
            stored_at: 2,
        }
        .encode();
        assert_eq!(IndexEntry::decode(&[]), None);
        assert_eq!(IndexEntry::decode(&good[..17]), None);
        let mut longer = good.to_vec();
        longer.push(0);
        assert_eq!(IndexEntry::decode(&longer), None);
        let mut bad_format = good;
        bad_format[0] = 2;
        assert_eq!(IndexEntry::decode(&bad_format), None);
        let mut bad_location = good;
        bad_location[1] = 9;
        assert_eq!(IndexEntry::decode(&bad_location), None);
    }
}
