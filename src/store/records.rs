//! Block records: beside each index entry, how the block came and when it was
//! stored and last refreshed. Kept in the `records` tree under the block's key,
//! and written in the same sled transaction as the index entry, so a block is
//! never held without its record nor a record kept without its block (a crash
//! inside a put's take-back can leave a record alone; the open-time repair
//! drops it).
//!
//! A record is a fixed 20-byte value, like an index entry:
//!
//! | bytes   | field                                                    |
//! |---------|----------------------------------------------------------|
//! | 0       | record format, 3 (format 1 was bytes 0..18 alone, 2 0..19) |
//! | 1       | origin: 0 = replica, 1 = pinned                          |
//! | 2..10   | stored_at, unix seconds, u64 big-endian                  |
//! | 10..18  | refreshed_at, unix seconds, u64 big-endian               |
//! | 18      | what refreshed it last: 0 = nothing yet, 1 = another     |
//! |         | node stored it to us again, 2 = we republished it        |
//! | 19      | copies: nodes the network keeps it on; 0 = its K (a      |
//! |         | shard of an erasure-coded chunk asks for fewer)          |
//!
//! Format 1 records (written before the republish sweep needed byte 18) still
//! read, as refreshed by nothing known, and format 2 (before byte 19) as kept
//! on K; every write is format 3. Anything else (other length, format,
//! origin or refresh byte) is corrupt.

/// Tree mapping a 32-byte key to its encoded [`BlockRecord`].
pub(crate) const RECORDS_TREE: &str = "records";

const FORMAT: u8 = 3;
const ENCODED_LEN: usize = 20;
const FORMAT_2: u8 = 2;
const FORMAT_2_LEN: usize = 19;
const FORMAT_1: u8 = 1;
const FORMAT_1_LEN: usize = 18;

/// Nodes to keep a block whose record says `copies` on, in a network whose
/// replication is `k`: 0 means `k`, and no count exceeds it.
pub fn copies_of(copies: u8, k: usize) -> usize {
    match copies {
        0 => k,
        c => usize::from(c).min(k),
    }
}

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

/// What refreshed a block last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refresh {
    /// Nothing since it was first stored.
    None,
    /// Another node stored it to us again (a store_value for a block held):
    /// that node republished it, so we need not this interval.
    StoredAgain,
    /// We republished it.
    Republished,
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
    /// Which of the two that was.
    pub last_refresh: Refresh,
    /// Nodes the network should keep it on; 0 for its K.
    pub copies: u8,
}

impl BlockRecord {
    /// A record for a block stored at `now`.
    pub fn new(origin: Origin, now: u64) -> BlockRecord {
        BlockRecord {
            origin,
            stored_at: now,
            refreshed_at: now,
            last_refresh: Refresh::None,
            copies: 0,
        }
    }

    /// Whether another node stored it to us again, after our own last
    /// republish of it and less than `window` seconds before `now`: the
    /// paper's rule for skipping a republish, since that node just did it.
    pub fn stored_again_within(&self, now: u64, window: u64) -> bool {
        self.last_refresh == Refresh::StoredAgain && now.saturating_sub(self.refreshed_at) < window
    }

    /// Nodes to keep it on in a network whose replication is `k`.
    pub fn copies_of(&self, k: usize) -> usize {
        copies_of(self.copies, k)
    }

    /// The copies two stores of one block ask for: the more (0, K, wins).
    pub fn merge_copies(a: u8, b: u8) -> u8 {
        if a == 0 || b == 0 {
            0
        } else {
            a.max(b)
        }
    }

    /// The fixed 20-byte value described in the module doc.
    pub fn encode(&self) -> [u8; ENCODED_LEN] {
        let mut out = [0u8; ENCODED_LEN];
        out[0] = FORMAT;
        out[1] = match self.origin {
            Origin::Replica => 0,
            Origin::Pinned => 1,
        };
        out[2..10].copy_from_slice(&self.stored_at.to_be_bytes());
        out[10..18].copy_from_slice(&self.refreshed_at.to_be_bytes());
        out[18] = match self.last_refresh {
            Refresh::None => 0,
            Refresh::StoredAgain => 1,
            Refresh::Republished => 2,
        };
        out[19] = self.copies;
        out
    }

    /// Parses a value; `None` for anything [`BlockRecord::encode`] would not write.
    pub fn decode(bytes: &[u8]) -> Option<BlockRecord> {
        let last_refresh = match (bytes.len(), bytes.first()) {
            (FORMAT_1_LEN, Some(&FORMAT_1)) => Refresh::None,
            (FORMAT_2_LEN, Some(&FORMAT_2)) | (ENCODED_LEN, Some(&FORMAT)) => match bytes[18] {
                0 => Refresh::None,
                1 => Refresh::StoredAgain,
                2 => Refresh::Republished,
                _ => return None,
            },
            _ => return None,
        };
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
            last_refresh,
            copies: match bytes.len() {
                ENCODED_LEN => bytes[19],
                _ => 0,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_has_a_fixed_layout() {
        for origin in [Origin::Replica, Origin::Pinned] {
            for last_refresh in [Refresh::None, Refresh::StoredAgain, Refresh::Republished] {
                let r = BlockRecord {
                    origin,
                    stored_at: 1_700_000_000,
                    refreshed_at: 1_700_000_123,
                    last_refresh,
                    copies: 1,
                };
                assert_eq!(BlockRecord::decode(&r.encode()), Some(r));
            }
        }
        let r = BlockRecord {
            origin: Origin::Pinned,
            stored_at: 5,
            refreshed_at: 7,
            last_refresh: Refresh::StoredAgain,
            copies: 0,
        };
        let mut want = vec![3u8, 1];
        want.extend_from_slice(&5u64.to_be_bytes());
        want.extend_from_slice(&7u64.to_be_bytes());
        want.push(1);
        want.push(0);
        assert_eq!(r.encode().to_vec(), want);
    }

    #[test]
    fn format_1_records_still_read() {
        let mut old = vec![1u8, 0];
        old.extend_from_slice(&5u64.to_be_bytes());
        old.extend_from_slice(&9u64.to_be_bytes());
        let r = BlockRecord::decode(&old).unwrap();
        assert_eq!(
            (r.origin, r.stored_at, r.refreshed_at),
            (Origin::Replica, 5, 9)
        );
        assert_eq!(r.last_refresh, Refresh::None);
    }

    #[test]
    fn only_a_recent_store_by_another_node_skips_a_republish() {
        let mut r = BlockRecord::new(Origin::Replica, 100);
        assert!(
            !r.stored_again_within(150, 3600),
            "a first store is not again"
        );
        r.refreshed_at = 200;
        r.last_refresh = Refresh::Republished;
        assert!(
            !r.stored_again_within(250, 3600),
            "our own republish does not count"
        );
        r.last_refresh = Refresh::StoredAgain;
        assert!(r.stored_again_within(250, 3600));
        assert!(
            !r.stored_again_within(200 + 3600, 3600),
            "older than the interval"
        );
    }

    #[test]
    fn format_2_records_read_as_kept_on_k() {
        let mut shard = BlockRecord::new(Origin::Replica, 9);
        shard.copies = 1;
        let mut old = shard.encode()[..19].to_vec();
        old[0] = 2;
        let r = BlockRecord::decode(&old).unwrap();
        assert_eq!(r.copies, 0);
        assert_eq!(r.copies_of(7), 7);
        assert_eq!(shard.copies_of(7), 1);
        assert_eq!(BlockRecord::merge_copies(1, 0), 0, "K wins");
        assert_eq!(BlockRecord::merge_copies(1, 2), 2);
    }

    #[test]
    fn garbage_records_are_refused() {
        let good = BlockRecord::new(Origin::Replica, 9).encode();
        assert_eq!(BlockRecord::decode(&[]), None);
        assert_eq!(BlockRecord::decode(&good[..17]), None);
        assert_eq!(BlockRecord::decode(&good[..18]), None, "format 3 cut short");
        assert_eq!(BlockRecord::decode(&good[..19]), None, "format 3 cut short");
        let mut bad_format = good;
        bad_format[0] = 4;
        assert_eq!(BlockRecord::decode(&bad_format), None);
        let mut bad_refresh = good;
        bad_refresh[18] = 3;
        assert_eq!(BlockRecord::decode(&bad_refresh), None);
        let mut bad_origin = good;
        bad_origin[1] = 7;
        assert_eq!(BlockRecord::decode(&bad_origin), None);
    }
}
