//! Test data: random bytes from a seed, and random blocks with their keys.

use dhtfs::id::Id;
use rand::{RngCore, SeedableRng};

/// `len` random bytes, the same for the same `seed`.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

/// A block of `len` random bytes, and its key.
pub fn random_block(len: usize, rng: &mut impl RngCore) -> (Id, Vec<u8>) {
    let mut data = vec![0u8; len];
    rng.fill_bytes(&mut data);
    (Id::of_block(&data), data)
}
