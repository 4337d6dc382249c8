//! Block records: beside each index entry, how the block came and when it was
//! stored and last refreshed. Kept in the `records` tree under the block's key,
//! and written in the same sled transaction as the index entry, so a block is
//! never held without its record nor a record kept without its block (a crash
//! inside a put's take-back can leave a record alone; the open-time repair
//! drops it).
//!
//! A record is a fixed 18-byte value, like an index entry:
//!
//! | bytes   | field                                                    |
//! |---------|----------------------------------------------------------|
//! | 0       | record format, always 1                                  |
//! | 1       | origin: 0 = replica, 1 = pinned                          |
//! | 2..10   | stored_at, unix seconds, u64 big-endian                  |
//! | 10..18  | refreshed_at, unix seconds, u64 big-endian               |
//!
//! Anything else (other length, format or origin byte) is corrupt.

/// Tree mapping a 32-byte key to its encoded [`BlockRecord`].
pub(crate) const RECORDS_TREE: &str = "records";

const FORMAT: u8 = 1;
const ENCODED_LEN: usize = 18;

/// How a block came to this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Stored by another node's `store_value`: held for the network, which
    /// may later let it go when this node is no longer among its closest.
    Replica,
    /// Put through this node's admin API (PutBlock) or pinned: kept until
    /// deleted by hand.
    Pinned,
}

impl Origin {
    /// The lowercase name, as logs and the admin API's docs say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Replica => "replica",
            Origin::Pinned => "pinned",
        }
    }
}

/// What the store remembers about how and when a block came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockRecord {
    pub origin: Origin,
    /// When it was first stored here, unix seconds.
    pub stored_at: u64,
    /// When it was last stored to us again (store_value) or republished by
    /// us, unix seconds; `stored_at` until then.
    pub refreshed_at: u64,
}

impl BlockRecord {
    /// A record for a block stored at `now`.
    pub fn new(origin: Origin, now: u64) -> BlockRecord {
        BlockRecord {
            origin,
            stored_at: now,
            refreshed_at: now,
        }
    }

    /// The fixed 18-byte value described in the module doc.
    pub fn encode(&self) -> [u8; ENCODED_LEN] {
        let mut out = [0u8; ENCODED_LEN];
        out[0] = FORMAT;
        out[1] = match self.origin {
            Origin::Replica => 0,
            Origin::Pinned => 1,
        };
        out[2..10].copy_from_slice(&self.stored_at.to_be_bytes());
        out[10..18].copy_from_slice(&self.refreshed_at.to_be_bytes());
        out
    }

    /// Parses a value; `None` for anything [`BlockRecord::encode`] would not write.
    pub fn decode(bytes: &[u8]) -> Option<BlockRecord> {
        let bytes: &[u8; ENCODED_LEN] = bytes.try_into().ok()?;
        if bytes[0] != FORMAT {
            return None;
        }
        let origin = match bytes[1] {
            0 => Origin::Replica,
            1 => Origin::Pinned,
            _ => return None,
        };
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_be_bytes(b)
        };
        Some(BlockRecord {
            origin,
            stored_at: u64_at(2),
            refreshed_at: u64_at(10),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_has_a_fixed_layout() {
        for origin in [Origin::Replica, Origin::Pinned] {
            let r = BlockRecord {
                origin,
                stored_at: 1_700_000_000,
                refreshed_at: 1_700_000_123,
            };
            assert_eq!(BlockRecord::decode(&r.encode()), Some(r));
        }
        let r = BlockRecord {
            origin: Origin::Pinned,
            stored_at: 5,
            refreshed_at: 7,
        };
        let mut want = vec![1u8, 1];
        want.extend_from_slice(&5u64.to_be_bytes());
        want.extend_from_slice(&7u64.to_be_bytes());
        assert_eq!(r.encode().to_vec(), want);
    }

    #[test]
    fn garbage_records_are_refused() {
        let good = BlockRecord::new(Origin::Replica, 9).encode();
        assert_eq!(BlockRecord::decode(&[]), None);
        assert_eq!(BlockRecord::decode(&good[..17]), None);
        let mut bad_format = good;
        bad_format[0] = 2;
        assert_eq!(BlockRecord::decode(&bad_format), None);
        let mut bad_origin = good;
        bad_origin[1] = 7;
        assert_eq!(BlockRecord::decode(&bad_origin), None);
    }
}
