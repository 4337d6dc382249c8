//! The sled trees the store keeps, and the on-disk layout of an index entry.
//!
//! An index entry is a fixed-size record, not JSON, because it is read on every
//! `get`/`contains` and walked in full on every open after a crash. Format 1
//! (18 bytes) is a block in the `inline` tree or a file; format 2 (30 bytes)
//! is a block in a segment file (`segments.rs`):
//!
//! | bytes   | field                                                     |
//! |---------|-----------------------------------------------------------|
//! | 0       | record format: 1, or 2 for a segment                      |
//! | 1       | location: 0 = `inline` tree, 1 = file in blocks/, 2 = segment |
//! | 2..10   | size in bytes, u64 big-endian                             |
//! | 10..18  | stored_at, unix seconds, u64 big-endian                   |
//! | 18..22  | format 2 only: the segment's id, u32 big-endian            |
//! | 22..30  | format 2 only: offset of the block's first byte, u64 big-endian |
//!
//! Anything else (other length, format, or location for the format) is corrupt.

use std::path::Path;

use super::segments::Place;
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
/// Meta key of the segments' durable point (`segments::Synced`).
pub(crate) const SEGMENTS_SYNCED_KEY: &[u8] = b"segments_synced";
/// Meta key of the schema version: u32 big-endian.
pub(crate) const SCHEMA_VERSION_KEY: &[u8] = b"schema_version";

const FORMAT: u8 = 1;
const ENCODED_LEN: usize = 18;
const SEGMENT_FORMAT: u8 = 2;
const SEGMENT_ENCODED_LEN: usize = 30;

/// Where a block's bytes live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Location {
    /// In the `inline` tree under the same key.
    Inline,
    /// In `blocks/ab/cd/<hex>`.
    File,
    /// In a segment file, at this place.
    Segment(Place),
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
    /// The record described in the module doc: 18 bytes, or 30 for a segment.
    pub fn encode(&self) -> Vec<u8> {
        let (format, location) = match self.location {
            Location::Inline => (FORMAT, 0),
            Location::File => (FORMAT, 1),
            Location::Segment(_) => (SEGMENT_FORMAT, 2),
        };
        let mut out = Vec::with_capacity(SEGMENT_ENCODED_LEN);
        out.extend_from_slice(&[format, location]);
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.stored_at.to_be_bytes());
        if let Location::Segment(place) = self.location {
            out.extend_from_slice(&place.seg.to_be_bytes());
            out.extend_from_slice(&place.at.to_be_bytes());
        }
        out
    }

    /// Parses a record; `None` for anything [`IndexEntry::encode`] would not write.
    pub fn decode(bytes: &[u8]) -> Option<IndexEntry> {
        let u64_at = |i: usize| Some(u64::from_be_bytes(bytes.get(i..i + 8)?.try_into().ok()?));
        let location = match (bytes.len(), *bytes.first()?, *bytes.get(1)?) {
            (ENCODED_LEN, FORMAT, 0) => Location::Inline,
            (ENCODED_LEN, FORMAT, 1) => Location::File,
            (SEGMENT_ENCODED_LEN, SEGMENT_FORMAT, 2) => Location::Segment(Place {
                seg: u32::from_be_bytes(bytes.get(18..22)?.try_into().ok()?),
                at: u64_at(22)?,
            }),
            _ => return None,
        };
        Some(IndexEntry {
            size: u64_at(2)?,
            location,
            stored_at: u64_at(10)?,
        })
    }

    /// Whether the bytes live in sled or a segment rather than a file of
    /// their own (what the quota charges them differs).
    pub fn is_small(&self) -> bool {
        self.location != Location::File
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
        for location in [
            Location::Inline,
            Location::File,
            Location::Segment(Place {
                seg: 0xdead_beef,
                at: 1 << 40,
            }),
        ] {
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
        let mut bad_format = good.clone();
        bad_format[0] = 2;
        assert_eq!(
            IndexEntry::decode(&bad_format),
            None,
            "format 2 is 30 bytes"
        );
        let mut bad_location = good.clone();
        bad_location[1] = 9;
        assert_eq!(IndexEntry::decode(&bad_location), None);
        let mut segment_in_format_1 = good;
        segment_in_format_1[1] = 2;
        assert_eq!(IndexEntry::decode(&segment_in_format_1), None);
        let seg = IndexEntry {
            size: 1,
            location: Location::Segment(Place { seg: 1, at: 16 }),
            stored_at: 2,
        }
        .encode();
        assert_eq!(seg.len(), 30);
        assert_eq!(IndexEntry::decode(&seg[..29]), None);
        let mut file_in_format_2 = seg;
        file_in_format_2[1] = 1;
        assert_eq!(IndexEntry::decode(&file_in_format_2), None);
    }
}
