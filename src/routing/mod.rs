//! The Kademlia routing table: 256 k-buckets of contacts, kept fresh by the
//! least-recently-seen eviction rule (after libp2p's `kbucket`).
//!
//! Pure: the caller passes the time in as `now` (milliseconds) and performs
//! any ping the table asks for, reporting the outcome back.

mod bucket;
mod table;

pub use bucket::{Entry, Observed};
pub use table::RoutingTable;

/// Sizes and limits of the routing table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutingConfig {
    /// Bucket size: entries kept per distance range.
    pub k: usize,
    /// Nodes remembered per bucket to take the place of entries that die.
    pub replacement_cache: usize,
    /// Consecutive failed requests before an entry is dropped.
    pub max_failures: u32,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            k: 20,
            replacement_cache: 8,
            max_failures: 3,
        }
    }
}
