//! Fetching a block as `dhtfs get` does (src/files/get.rs): a find_value
//! lookup, then holders and closest nodes in turn, hash-checked; a peer that
//! sends bytes not matching the key is avoided and the lookup rerun.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::net::Net;
use crate::id::Id;
use crate::lookup::LookupKind;
use crate::node::Node;

/// Rounds that unmask no liar, at most (as get's `ROUNDS`).
const ROUNDS: u32 = 3;
/// Rounds in all, at most (as get's `MAX_ROUNDS`).
const MAX_ROUNDS: u32 = 16;

/// Whether `node` gets block `key` with bytes that hash to it.
pub async fn fetch_verified(net: &Arc<Net>, node: &Node, key: Id) -> bool {
    if node.blocks().contains(&key) {
        return node.blocks().get(&key).ok().flatten().is_some();
    }
    let max = node.config().max_block_size;
    let me = node.me();
    let mut bad = HashSet::new();
    let (mut failed_rounds, mut rounds) = (0, 0);
    while failed_rounds < ROUNDS && rounds < MAX_ROUNDS {
        if failed_rounds > 0 {
            tokio::time::sleep(Duration::from_millis(200 * u64::from(failed_rounds))).await;
        }
        rounds += 1;
        let mut caught = false;
        let found = node.lookup_avoiding(key, LookupKind::FindValue, &bad).await;
        let mut candidates = found.holders;
        candidates.extend(found.closest);
        let mut seen = HashSet::new();
        for c in candidates {
            if c.id == me.id || !seen.insert(c.addr) || bad.contains(&c.addr) {
                continue;
            }
            match net.clone().fetch(me.addr, c.addr, key, max).await {
                Ok(data) if Id::of_block(&data) == key => return true,
                Ok(_) => caught |= bad.insert(c.addr),
                Err(_) => {}
            }
        }
        if !caught {
            failed_rounds += 1;
        }
    }
    false
}
