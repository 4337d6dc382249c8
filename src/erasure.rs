//! Erasure coding of one chunk: `k` data shards and `n - k` recovery shards,
//! any `k` of which rebuild the chunk (Reed-Solomon over GF(2^16), by the
//! `reed-solomon-simd` crate). Pure: bytes in, bytes out.
//!
//! Each shard is an ordinary content-addressed block: a 2-byte header with
//! its index in the stripe (big-endian), then the shard's bytes. The header
//! keeps the shards of one chunk distinct blocks even when their bytes are
//! equal (the zero padding of a short chunk's last data shards), so no two
//! positions of a stripe ever share a block id, and a shard's holders are
//! spread over the keyspace like any other blocks.
//!
//! The chunk is cut into `k` equal data shards of [`Code::shard_len`] bytes,
//! the last zero-padded; the crate wants shard sizes that are a multiple of
//! 64 bytes (version 2) or even (version 3), and a multiple of 64 is both.
//! With encryption, the sealed block is what is encoded (seal, then encode).

use std::cell::RefCell;
use std::fmt;
use std::str::FromStr;

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

/// The most shards one chunk is cut into: it bounds a stripe's entry in a
/// manifest and the work one chunk's repair asks for.
pub const MAX_SHARDS: usize = 256;
/// Bytes before a shard's data in its block: the shard's index.
pub const HEADER_LEN: usize = 2;
/// Shard sizes are a multiple of this.
const ALIGN: usize = 64;

thread_local! {
    // The crate's working space (several MiB for 1 MiB chunks), kept per
    // thread and reset for each chunk rather than allocated and zeroed anew.
    static ENCODER: RefCell<Option<ReedSolomonEncoder>> = const { RefCell::new(None) };
    static DECODER: RefCell<Option<ReedSolomonDecoder>> = const { RefCell::new(None) };
}

/// A `k`-of-`n` code: `n` shards, any `k` of which rebuild the chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Code {
    k: usize,
    n: usize,
}

/// Why shards do not make a chunk, or a code is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErasureError {
    #[error("'{0}' is not a code: give k/n with 1 <= k < n <= {MAX_SHARDS}, for example 10/20")]
    BadCode(String),
    #[error("{have} distinct shards of a {k}-of-{n} stripe: {k} are needed")]
    TooFew { have: usize, k: usize, n: usize },
    #[error("shard {index} is not one of this stripe's {n}")]
    BadIndex { index: usize, n: usize },
    #[error("shard {index} is {found} bytes, the stripe's shards are {want}")]
    BadLength {
        index: usize,
        found: usize,
        want: usize,
    },
    #[error("the block at position {position} says it is shard {says}")]
    WrongPosition { position: usize, says: usize },
    #[error("decoding failed: {0}")]
    Decode(String),
}

impl Code {
    /// The default code (see docs/operators/erasure-coding.md for why).
    pub const DEFAULT: Code = Code { k: 24, n: 56 };

    /// A `k`-of-`n` code, if `1 <= k < n <= MAX_SHARDS`.
    pub fn new(k: usize, n: usize) -> Result<Code, ErasureError> {
        if k == 0 || k >= n || n > MAX_SHARDS {
            return Err(ErasureError::BadCode(format!("{k}/{n}")));
        }
        Ok(Code { k, n })
    }

    /// Shards needed to rebuild a chunk.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Shards made of each chunk.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Bytes stored per byte of chunk, padding and headers aside: `n / k`.
    pub fn expansion(&self) -> f64 {
        self.n as f64 / self.k as f64
    }

    /// Bytes of data in each shard of a `chunk_len`-byte chunk: a `k`th of
    /// it, rounded up to a multiple of 64.
    pub fn shard_len(&self, chunk_len: usize) -> usize {
        chunk_len.div_ceil(self.k).div_ceil(ALIGN).max(1) * ALIGN
    }

    /// The `n` shard blocks of `chunk`, in stripe order: the first `k` hold
    /// the chunk's bytes, the rest recovery data. Each starts with its index.
    pub fn encode(&self, chunk: &[u8]) -> Vec<Vec<u8>> {
        let len = self.shard_len(chunk.len());
        let mut blocks: Vec<Vec<u8>> = (0..self.k)
            .map(|i| {
                let from = (i * len).min(chunk.len());
                let to = ((i + 1) * len).min(chunk.len());
                let mut block = Vec::with_capacity(HEADER_LEN + len);
                block.extend_from_slice(&(i as u16).to_be_bytes());
                block.extend_from_slice(&chunk[from..to]);
                block.resize(HEADER_LEN + len, 0);
                block
            })
            .collect();
        ENCODER.with(|cell| {
            let mut cell = cell.borrow_mut();
            let recovery = self.n - self.k;
            let shape = "a checked code and an aligned shard size";
            let encoder = match cell.as_mut() {
                Some(e) => {
                    e.reset(self.k, recovery, len).expect(shape);
                    e
                }
                None => cell.insert(ReedSolomonEncoder::new(self.k, recovery, len).expect(shape)),
            };
            for block in &blocks {
                encoder
                    .add_original_shard(&block[HEADER_LEN..])
                    .expect("k shards of the encoder's size");
            }
            let result = encoder.encode().expect("k shards were added");
            let recovered: Vec<Vec<u8>> = result
                .recovery_iter()
                .enumerate()
                .map(|(i, shard)| block_of(self.k + i, shard))
                .collect();
            blocks.extend(recovered);
        });
        blocks
    }

    /// The `chunk_len`-byte chunk rebuilt from shard blocks given with their
    /// positions in the stripe (already verified against their ids): the
    /// first `k` distinct positions are used, others ignored.
    pub fn decode(
        &self,
        chunk_len: usize,
        blocks: &[(usize, &[u8])],
    ) -> Result<Vec<u8>, ErasureError> {
        let len = self.shard_len(chunk_len);
        let mut originals: Vec<Option<&[u8]>> = vec![None; self.k];
        let mut recovery: Vec<(usize, &[u8])> = Vec::new();
        let mut seen = vec![false; self.n];
        let mut have = 0;
        for &(position, block) in blocks {
            if position >= self.n {
                return Err(ErasureError::BadIndex {
                    index: position,
                    n: self.n,
                });
            }
            let shard = shard_of(position, block, len)?;
            if seen[position] || have == self.k {
                continue;
            }
            seen[position] = true;
            have += 1;
            match position < self.k {
                true => originals[position] = Some(shard),
                false => recovery.push((position - self.k, shard)),
            }
        }
        if have < self.k {
            return Err(ErasureError::TooFew {
                have,
                k: self.k,
                n: self.n,
            });
        }
        let mut chunk = Vec::with_capacity(self.k * len);
        if originals.iter().all(Option::is_some) {
            for shard in originals.iter().flatten() {
                chunk.extend_from_slice(shard);
            }
            chunk.truncate(chunk_len);
            return Ok(chunk);
        }
        let failed = |e: reed_solomon_simd::Error| ErasureError::Decode(e.to_string());
        DECODER.with(|cell| {
            let mut cell = cell.borrow_mut();
            let recovery_count = self.n - self.k;
            let decoder = match cell.as_mut() {
                Some(d) => {
                    d.reset(self.k, recovery_count, len).map_err(failed)?;
                    d
                }
                None => cell
                    .insert(ReedSolomonDecoder::new(self.k, recovery_count, len).map_err(failed)?),
            };
            for (i, shard) in originals.iter().enumerate() {
                if let Some(shard) = shard {
                    decoder.add_original_shard(i, shard).map_err(failed)?;
                }
            }
            for (i, shard) in &recovery {
                decoder.add_recovery_shard(*i, shard).map_err(failed)?;
            }
            let restored = decoder.decode().map_err(failed)?;
            for (i, shard) in originals.iter().enumerate() {
                match shard {
                    Some(shard) => chunk.extend_from_slice(shard),
                    None => {
                        chunk.extend_from_slice(restored.restored_original(i).ok_or_else(|| {
                            ErasureError::Decode(format!("shard {i} was not restored"))
                        })?)
                    }
                }
            }
            Ok::<(), ErasureError>(())
        })?;
        chunk.truncate(chunk_len);
        Ok(chunk)
    }

    /// The shard blocks at `missing` positions, rebuilt from `k` others: a
    /// repair decodes the chunk and encodes it again.
    pub fn rebuild(
        &self,
        chunk_len: usize,
        blocks: &[(usize, &[u8])],
        missing: &[usize],
    ) -> Result<Vec<(usize, Vec<u8>)>, ErasureError> {
        if let Some(&index) = missing.iter().find(|&&i| i >= self.n) {
            return Err(ErasureError::BadIndex { index, n: self.n });
        }
        let chunk = self.decode(chunk_len, blocks)?;
        let all = self.encode(&chunk);
        Ok(missing.iter().map(|&i| (i, all[i].clone())).collect())
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

impl FromStr for Code {
    type Err = ErasureError;

    /// `k/n`, as `--ec` takes it.
    fn from_str(s: &str) -> Result<Code, ErasureError> {
        let bad = || ErasureError::BadCode(s.to_string());
        let (k, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let k = k.trim().parse().map_err(|_| bad())?;
        let n = n.trim().parse().map_err(|_| bad())?;
        Code::new(k, n).map_err(|_| bad())
    }
}

/// The block holding shard `index`: its index, then its bytes.
fn block_of(index: usize, shard: &[u8]) -> Vec<u8> {
    let mut block = Vec::with_capacity(HEADER_LEN + shard.len());
    block.extend_from_slice(&(index as u16).to_be_bytes());
    block.extend_from_slice(shard);
    block
}

/// The shard bytes in `block`, checked to be shard `position` of `len` bytes.
fn shard_of(position: usize, block: &[u8], len: usize) -> Result<&[u8], ErasureError> {
    if block.len() != HEADER_LEN + len {
        return Err(ErasureError::BadLength {
            index: position,
            found: block.len().saturating_sub(HEADER_LEN),
            want: len,
        });
    }
    let says = usize::from(u16::from_be_bytes([block[0], block[1]]));
    if says != position {
        return Err(ErasureError::WrongPosition { position, says });
    }
    Ok(&block[HEADER_LEN..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn codes_parse_from_k_slash_n_and_bad_ones_name_the_form() {
        let c: Code = "10/20".parse().unwrap();
        assert_eq!((c.k(), c.n(), c.to_string()), (10, 20, "10/20".into()));
        assert_eq!(c.expansion(), 2.0);
        for bad in ["", "10", "0/4", "4/4", "5/4", "1/257", "a/b", "3/x", "-1/4"] {
            let e = bad.parse::<Code>().unwrap_err();
            assert!(
                e.to_string().contains("k/n with 1 <= k < n <= 256"),
                "{bad}: {e}"
            );
        }
        assert!("1/256".parse::<Code>().is_ok());
    }

    #[test]
    fn shard_sizes_cover_the_chunk_in_multiples_of_64() {
        let c = Code::new(10, 20).unwrap();
        assert_eq!(c.shard_len(1 << 20), 104_896);
        assert_eq!(c.shard_len(1), 64);
        assert_eq!(c.shard_len(640), 64);
        assert_eq!(c.shard_len(641), 128);
        assert!(c.shard_len(1 << 20) * 10 >= 1 << 20);
    }

    #[test]
    fn every_shard_of_a_short_chunk_is_a_distinct_block() {
        // 100 bytes in 10 data shards: 9 of them are all padding.
        let c = Code::new(10, 20).unwrap();
        let blocks = c.encode(&bytes(100, 1));
        assert_eq!(blocks.len(), 20);
        let distinct: std::collections::HashSet<&Vec<u8>> = blocks.iter().collect();
        assert_eq!(distinct.len(), 20);
    }

    #[test]
    fn the_data_shards_alone_give_the_chunk_without_decoding() {
        let c = Code::new(3, 5).unwrap();
        let chunk = bytes(1000, 2);
        let blocks = c.encode(&chunk);
        let some: Vec<(usize, &[u8])> = (0..3).map(|i| (i, blocks[i].as_slice())).collect();
        assert_eq!(c.decode(1000, &some).unwrap(), chunk);
    }

    #[test]
    fn fewer_than_k_or_misplaced_or_cut_shards_are_refused() {
        let c = Code::new(3, 5).unwrap();
        let blocks = c.encode(&bytes(1000, 3));
        let two: Vec<(usize, &[u8])> = vec![(0, &blocks[0]), (4, &blocks[4]), (4, &blocks[4])];
        assert_eq!(
            c.decode(1000, &two),
            Err(ErasureError::TooFew {
                have: 2,
                k: 3,
                n: 5
            })
        );
        let swapped = vec![(0, blocks[1].as_slice())];
        assert_eq!(
            c.decode(1000, &swapped),
            Err(ErasureError::WrongPosition {
                position: 0,
                says: 1
            })
        );
        let cut = vec![(2, &blocks[2][..100])];
        assert!(matches!(
            c.decode(1000, &cut),
            Err(ErasureError::BadLength { .. })
        ));
        let outside = vec![(5, blocks[0].as_slice())];
        assert!(matches!(
            c.decode(1000, &outside),
            Err(ErasureError::BadIndex { .. })
        ));
    }

    #[test]
    fn a_rebuilt_shard_is_the_block_first_made() {
        let c = Code::new(4, 7).unwrap();
        let chunk = bytes(5000, 4);
        let blocks = c.encode(&chunk);
        let have: Vec<(usize, &[u8])> = [1, 4, 5, 6]
            .iter()
            .map(|&i| (i, blocks[i].as_slice()))
            .collect();
        let rebuilt = c.rebuild(5000, &have, &[0, 2, 3]).unwrap();
        for (i, block) in rebuilt {
            assert_eq!(block, blocks[i], "shard {i}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn any_k_of_n_shards_give_back_the_chunk(
            len in 1usize..20_000,
            k in 1usize..12,
            extra in 1usize..12,
            seed in any::<u8>(),
            order in any::<u64>(),
        ) {
            let c = Code::new(k, k + extra).unwrap();
            let chunk = bytes(len, seed);
            let blocks = c.encode(&chunk);
            prop_assert_eq!(blocks.len(), k + extra);
            // A pseudo-random choice of k positions, given in a scrambled order.
            let mut positions: Vec<usize> = (0..k + extra).collect();
            let mut x = order | 1;
            for i in (1..positions.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                positions.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let some: Vec<(usize, &[u8])> = positions[..k].iter().map(|&i| (i, blocks[i].as_slice())).collect();
            prop_assert_eq!(c.decode(len, &some).unwrap(), chunk);
        }
    }
}
