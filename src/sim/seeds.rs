//! Every random stream of a run comes from the run's seed, split by purpose
//! and index, so that adding a draw in one place cannot shift another.

use rand::rngs::StdRng;
use rand::SeedableRng;

/// What a stream is for.
#[derive(Clone, Copy, Debug)]
pub enum Stream {
    /// The scenario: who joins, stores, looks up, churns, when.
    World = 1,
    /// The network: delay, loss, duplication.
    Net = 2,
    /// One node incarnation's magics and refresh targets.
    Node = 3,
    /// Block contents.
    Blocks = 4,
    /// File contents.
    Files = 5,
}

/// splitmix64, a good mixer of a counter into bits.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The RNG of `stream` number `index` of the run seeded by `seed`.
pub fn rng(seed: u64, stream: Stream, index: u64) -> StdRng {
    StdRng::seed_from_u64(mix(mix(mix(seed) ^ stream as u64) ^ index))
}
