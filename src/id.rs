//! 256-bit identifiers for nodes and blocks, and the XOR metric between them.
//!
//! Node ids are 32 random bytes and block keys are `sha256(bytes)`, so both live
//! in one keyspace: the nodes whose ids are XOR-closest to a key hold it.

use std::fmt;
use std::str::FromStr;

use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Number of bytes in an id.
pub const ID_LEN: usize = 32;
/// Number of bits in an id, and so the number of k-buckets.
pub const ID_BITS: usize = ID_LEN * 8;

/// A node id or a block key: 32 bytes, shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(pub [u8; ID_LEN]);

/// The XOR of two ids, ordered as a big-endian unsigned integer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Distance(pub [u8; ID_LEN]);

/// Why a string is not an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("expected 64 hex digits, got {0} characters")]
    Length(usize),
    #[error("'{0}' is not a hex digit")]
    NotHex(char),
}

impl Id {
    /// The all-zero id.
    pub const ZERO: Id = Id([0; ID_LEN]);

    /// A fresh uniformly random id.
    pub fn random() -> Id {
        let mut bytes = [0u8; ID_LEN];
        rand::thread_rng().fill_bytes(&mut bytes);
        Id(bytes)
    }

    /// The key a block of `data` is stored under: its sha256.
    pub fn of_block(data: &[u8]) -> Id {
        Id(Sha256::digest(data).into())
    }

    /// XOR distance to `other`.
    pub fn distance(&self, other: &Id) -> Distance {
        let mut out = [0u8; ID_LEN];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = self.0[i] ^ other.0[i];
        }
        Distance(out)
    }

    /// The k-bucket `other` falls in from where `self` stands: 255 for ids that
    /// differ in the top bit, 0 for ids that differ only in the lowest; `None`
    /// for `other == self`.
    pub fn bucket_index(&self, other: &Id) -> Option<usize> {
        let zeros = self.distance(other).leading_zeros();
        if zeros == ID_BITS {
            None
        } else {
            Some(ID_BITS - 1 - zeros)
        }
    }

    /// A random id whose bucket index from `self` is `index` (so it shares the
    /// top `255 - index` bits with `self` and differs in the next one).
    pub fn random_in_bucket(&self, index: usize) -> Id {
        self.in_bucket_from(index, Id::random())
    }

    /// The id whose bucket index from `self` is `index`, its remaining bits
    /// taken from `noise` (random bits the caller drew, from a seeded RNG say).
    pub fn in_bucket_from(&self, index: usize, noise: Id) -> Id {
        assert!(index < ID_BITS, "bucket index {index} out of range");
        let mut noise = noise.0;
        let prefix_bits = ID_BITS - 1 - index; // bits shared with self
        for bit in 0..ID_BITS {
            let byte = bit / 8;
            let mask = 0x80u8 >> (bit % 8);
            if bit < prefix_bits {
                noise[byte] = (noise[byte] & !mask) | (self.0[byte] & mask);
            } else if bit == prefix_bits {
                noise[byte] = (noise[byte] & !mask) | (!self.0[byte] & mask);
            }
        }
        Id(noise)
    }

    /// Parses 64 hex digits of either case.
    pub fn from_hex(s: &str) -> Result<Id, IdError> {
        let bytes = s.as_bytes();
        if bytes.len() != ID_LEN * 2 {
            return Err(IdError::Length(s.chars().count()));
        }
        let mut out = [0u8; ID_LEN];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Ok(Id(out))
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex digits, for logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

fn nibble(c: u8) -> Result<u8, IdError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(IdError::NotHex(c as char)),
    }
}

impl Distance {
    /// Leading zero bits: 256 for a zero distance.
    pub fn leading_zeros(&self) -> usize {
        let mut zeros = 0;
        for byte in self.0 {
            if byte == 0 {
                zeros += 8;
            } else {
                return zeros + byte.leading_zeros() as usize;
            }
        }
        zeros
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

impl FromStr for Id {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Id, IdError> {
        Id::from_hex(s)
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Id::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_id() -> impl Strategy<Value = Id> {
        proptest::array::uniform32(any::<u8>()).prop_map(Id)
    }

    proptest! {
        #[test]
        fn distance_is_symmetric(a in arb_id(), b in arb_id()) {
            prop_assert_eq!(a.distance(&b), b.distance(&a));
        }

        #[test]
        fn distance_to_self_is_zero_and_only_then(a in arb_id(), b in arb_id()) {
            prop_assert_eq!(a.distance(&a), Distance([0; 32]));
            prop_assert_eq!(a.distance(&b) == Distance([0; 32]), a == b);
        }

        #[test]
        fn xor_triangle_equality(a in arb_id(), b in arb_id(), c in arb_id()) {
            // d(a,b) XOR d(b,c) == d(a,c): XOR is its own group.
            let ab = a.distance(&b).0;
            let bc = b.distance(&c).0;
            let mut x = [0u8; 32];
            for i in 0..32 { x[i] = ab[i] ^ bc[i]; }
            prop_assert_eq!(Distance(x), a.distance(&c));
        }

        #[test]
        fn distinct_points_have_distinct_distances(a in arb_id(), b in arb_id(), c in arb_id()) {
            // For a fixed a and distance, there is exactly one point: b != c means d(a,b) != d(a,c).
            prop_assume!(b != c);
            prop_assert_ne!(a.distance(&b), a.distance(&c));
        }

        #[test]
        fn hex_round_trips_in_either_case(a in arb_id()) {
            prop_assert_eq!(Id::from_hex(&a.to_hex()).unwrap(), a);
            prop_assert_eq!(Id::from_hex(&a.to_hex().to_uppercase()).unwrap(), a);
        }

        #[test]
        fn random_in_bucket_lands_in_that_bucket(a in arb_id(), index in 0usize..256) {
            prop_assert_eq!(a.bucket_index(&a.random_in_bucket(index)), Some(index));
        }
    }

    #[test]
    fn distance_orders_big_endian() {
        let zero = Id::ZERO;
        let mut low = [0u8; 32];
        low[31] = 0xff;
        let mut high = [0u8; 32];
        high[0] = 0x01;
        assert!(zero.distance(&Id(low)) < zero.distance(&Id(high)));
    }

    #[test]
    fn bucket_index_counts_from_the_top_bit() {
        let zero = Id::ZERO;
        let mut top = [0u8; 32];
        top[0] = 0x80;
        let mut bottom = [0u8; 32];
        bottom[31] = 0x01;
        assert_eq!(zero.bucket_index(&Id(top)), Some(255));
        assert_eq!(zero.bucket_index(&Id(bottom)), Some(0));
        assert_eq!(zero.bucket_index(&zero), None);
    }

    #[test]
    fn bad_hex_is_refused_with_a_reason() {
        assert_eq!(Id::from_hex("xyz"), Err(IdError::Length(3)));
        let mut s = "0".repeat(63);
        s.push('g');
        assert_eq!(Id::from_hex(&s), Err(IdError::NotHex('g')));
        // Multi-byte characters must not panic on slicing.
        let s = "é".repeat(32);
        assert!(Id::from_hex(&s).is_err());
    }

    #[test]
    fn block_key_is_sha256() {
        assert_eq!(
            Id::of_block(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn serde_uses_lowercase_hex() {
        let id = Id::of_block(b"abc");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", id.to_hex()));
        let back: Id = serde_json::from_str(&json.to_uppercase()).unwrap();
        assert_eq!(back, id);
    }
}
