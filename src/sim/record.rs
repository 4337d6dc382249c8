//! What the run records of each measured lookup and stored block.

use crate::id::Id;

/// Where a lookup ended relative to the partition (if any).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No partition yet (or none asked for).
    Before,
    /// The network was split.
    During,
    /// The partition had healed.
    After,
}

/// One measured lookup.
#[derive(Clone, Debug)]
pub struct LookupRecord {
    pub phase: Phase,
    /// It returned exactly the K live nodes closest to the target.
    pub exact: bool,
    /// It returned an id that no node has.
    pub made_up: bool,
    pub hops: u32,
    /// Requests it sent, and of those the ones that failed.
    pub requests: usize,
    pub failed: usize,
}

/// One block stored during the run.
#[derive(Clone, Debug)]
pub struct BlockRecord {
    pub key: Id,
    /// Nodes that answered "saved", and how many of them are honest nodes
    /// other than the origin (which keeps its own copy).
    pub saved: usize,
    pub honest_saved: usize,
    /// Its store has finished.
    pub done: bool,
}

/// The `p`-quantile (0..=1) of sorted `v`, nearest rank; 0 when empty.
pub fn quantile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&[7], 0.5), 7);
        assert_eq!(quantile(&[], 0.5), 0);
    }
}
